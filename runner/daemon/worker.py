"""A pre-warmed run worker: ``python -m runner.daemon.worker [direct|litellm]``.

The daemon keeps one or more of these idle for each model path its specs use
(:func:`runner.daemon.executor.model_path`). Each pays, while idle, the imports and first
call of its path and the loop's imports, then freezes what it holds (``gc.freeze``):

- ``direct``: a chat completion with a tool through the openai SDK (the direct path of
  ``openai/*`` and ``local/*`` models) against a loopback stub. It never imports litellm
  (about 115 MB resident with tiktoken's encoding, instead of 260).
- ``litellm`` (the default): the same call on the direct path and on litellm's, and a token
  count with litellm's tokenizer: any spec can run in it.

Then it prints ``{"ready": true}``, reads one job (a JSON line on stdin: ``run_id``,
``spec_path``, ``inputs``, ``trigger``, and ``resume`` when it continues a recorded run that
paused or was interrupted: claimed and rebuilt from the store as ``agentrun resume`` does),
runs it to a stop reason recorded in the run
store, prints ``{"finished": ..., "stop_reason": ..., "litellm_imported": ...}`` and exits:
one process per run, so a run that crashes or leaks cannot take the daemon down.

Testing hook: when ``AGENTRUN_MODEL_FACTORY`` names a ``module:callable``, the worker calls
it with the spec's model section to get the model (for example a
:class:`runner.testing.FunctionModel`), and skips the model path's warm-up. It is how the
daemon's own tests run real runs in real worker processes without a provider.

Signals: SIGTERM cancels the run (stop reason ``cancelled``: a replacing run or a cancel);
SIGUSR1 interrupts it (stop reason ``interrupted``, resumable with ``agentrun resume``: the
daemon is shutting down). ``max_duration`` is enforced by the run itself
(:class:`runner.loop.Run`), a model call in flight included.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import json
import os
import signal
import sys
from typing import Any

from .executor import DIRECT, LITELLM


def model_factory() -> Any:
    """The callable ``AGENTRUN_MODEL_FACTORY`` names (``module:callable``), or None."""
    target = os.environ.get("AGENTRUN_MODEL_FACTORY")
    if not target:
        return None
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


#: The reply of the loopback stub a worker warms its model path against: one tool call.
_WARMUP_REPLY = {
    "id": "chatcmpl-warmup",
    "object": "chat.completion",
    "created": 0,
    "model": "warmup",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_warmup",
                        "type": "function",
                        "function": {"name": "warmup", "arguments": "{}"},
                    }
                ],
            },
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


def _warm_model_path(runner: asyncio.Runner, path: str) -> None:
    """A chat completion with a tool on ``path`` against a loopback stub.

    ``direct``: through the openai SDK only (litellm is not imported), and a token count
    with tiktoken (the budget estimate: loading its encoding takes about a second).
    ``litellm``: on both paths (a spec that needs litellm may still reach its primary
    directly), and a token count with litellm's tokenizer.

    A first call with tools imports what ``import litellm`` does not (the openai SDK's
    request and response types, the HTTP client's transports: about 700 modules, 1.1 s on
    the reference machine, issue 19); made here, while the worker is idle, the run's first
    call does not pay it. The call runs in ``runner``, the event loop the job runs in later
    (litellm's logging worker is bound to its first loop). The stub speaks the OpenAI chat
    API; other providers' own conversions are still imported on their first call. A
    failure is reported on stderr and the worker goes on: the run pays the cost instead.
    """
    from ..models import LiteLLMModel
    from ..models.openai_direct import PATH_VARIABLE
    from ..models.server import OpenAIServer
    from ..spec.types import ModelSpec

    key = "AGENTRUN_WARMUP_KEY"
    os.environ[key] = "warmup"
    previous = os.environ.get(PATH_VARIABLE)
    tools = [
        {
            "type": "function",
            "function": {"name": "warmup", "description": "", "parameters": {"type": "object"}},
        }
    ]
    try:
        with OpenAIServer(lambda request: _WARMUP_REPLY, model_name="warmup") as server:
            model = LiteLLMModel(
                ModelSpec(id="openai/warmup", api_base=server.api_base, api_key_env=key)
            )
            messages = [{"role": "user", "content": "warm up"}]
            runner.run(model.complete(messages, tools))  # the direct path (openai SDK)
            if path == LITELLM:
                os.environ[PATH_VARIABLE] = "litellm"
                runner.run(model.complete(messages, tools))  # litellm's, for other providers
            # the budget estimate: tiktoken on a direct worker; litellm's tokenizer once
            # litellm is imported (runner.models.tokens.token_counter_for)
            model.count_prompt_tokens(messages, tools)
            runner.run(model.aclose())
    except Exception as error:  # warming is an optimisation, never a failure
        print(f"agentrun worker: warm-up call failed: {error!r}", file=sys.stderr)
    finally:
        os.environ.pop(key, None)
        if previous is None:
            os.environ.pop(PATH_VARIABLE, None)
        else:
            os.environ[PATH_VARIABLE] = previous


def _warm(runner: asyncio.Runner, path: str = LITELLM) -> Any:
    """Pay every import and first-use cost of ``path`` before the job arrives; the open store."""
    from ..store import RunStore

    warm_imports(runner, path)
    store = RunStore.default()
    # Move everything imported so far out of the garbage collector's reach: collections
    # during the run then walk only the run's own objects (measured in bench/overhead.py).
    gc.collect()
    gc.freeze()
    return store


def warm_imports(runner: asyncio.Runner, path: str = LITELLM) -> None:
    """Import what a run of ``path`` needs, and make its model path's first call in ``runner``.

    The Celery worker (:mod:`runner.daemon.celery_worker`) calls it too: once in its main
    process before the pool forks, then in each pool process for the call's loop.
    """
    if model_factory() is None:
        _warm_model_path(runner, path)
    import croniter  # noqa: F401  (spec checks of cron triggers)
    import jinja2.meta
    import jinja2.sandbox  # noqa: F401

    from .. import compiler, loop, spec  # noqa: F401
    from ..spec import build, checks, templates, yamlpos  # noqa: F401
    from ..spec.validation import validator
    from ..tools import builtin, functions, http, shell  # noqa: F401

    validator()  # the spec schema, compiled once


async def _run(job: dict[str, Any], store: Any) -> str:
    from ..compiler import compile_agent
    from ..escalation import applied
    from ..events import StopReason
    from ..loop import Run
    from ..models import LiteLLMModel
    from ..spec import load_spec
    from ..store import RunAlreadyRecorded

    source = job.get("spec_source")
    spec = load_spec(job["spec_path"], source.encode("utf-8") if source is not None else None)
    if job.get("resume"):  # a continued escalated run goes on with the budget granted it
        spec = applied(spec, store, job["run_id"])
    agent = compile_agent(spec, job.get("inputs") or {})
    factory = model_factory()
    state = None
    if job.get("resume"):
        state = claim_run(store, job["run_id"])
        if state is None:
            return "duplicate"
    run = Run(
        agent,
        factory(spec.model) if factory else LiteLLMModel(spec.model),
        [store.record],
        run_id=job["run_id"],
        trigger=job.get("trigger", "daemon"),
        sealer=store.seal_message,
        resume=state,
        traceparent=job.get("traceparent"),
    )
    loop = asyncio.get_running_loop()
    # max_duration is the run's own (runner.loop); the signals come from the daemon.
    loop.add_signal_handler(signal.SIGTERM, run.cancel, StopReason.CANCELLED)
    loop.add_signal_handler(signal.SIGUSR1, run.cancel, StopReason.INTERRUPTED)
    try:
        finished = await run.execute()
    except RunAlreadyRecorded:
        # The run id is already in the store: another worker runs this fire (a daemon that
        # restarted re-sent a job whose first worker had already begun). Leave it alone.
        return "duplicate"
    return str(finished.stop_reason)


def claim_run(store: Any, run_id: str) -> Any:
    """Claim a paused or interrupted run and rebuild where it stopped; None if it is taken.

    The claim is the same atomic step as ``agentrun resume``'s: of two processes continuing
    one run (this worker and a person's ``resume``), one wins and the other leaves it.
    """
    from ..resume import restore_state
    from ..store import ResumeClaimed

    row = store.run(run_id)
    if row is None:
        return None
    try:
        store.claim_for_resume(run_id)
    except ResumeClaimed:
        return None
    try:
        return restore_state(store, run_id)  # read after the claim: nobody changes it now
    except BaseException:
        store.release_claim(row)
        raise


def _report(message: dict[str, Any]) -> None:
    """Tell the daemon ``message`` (one JSON line on stdout), if it is still listening.

    A daemon killed while this worker ran is gone, and its end of the pipe with it: the
    write fails with ``BrokenPipeError``. The run is recorded in the store already, which is
    what a restarted daemon reads (it adopted this run), so the line is dropped, quietly:
    stdout is pointed at ``/dev/null`` so that the interpreter's own flush at exit does not
    fail again.
    """
    try:
        print(json.dumps(message), flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def main() -> None:
    """Warm up, say ready, run one job, report, exit (one event loop for all of it)."""
    path = sys.argv[1] if len(sys.argv) > 1 else LITELLM
    if path not in (DIRECT, LITELLM):
        sys.exit(f"agentrun worker: unknown model path {path!r} (direct or litellm)")
    with asyncio.Runner() as runner:
        store = _warm(runner, path)
        _report({"ready": True})
        line = sys.stdin.readline()
        if not line.strip():
            return  # the daemon went away before giving a job
        job = json.loads(line)
        try:
            stop = runner.run(_run(job, store))
        except Exception as error:  # a spec that no longer loads, a store that cannot open
            _report({"error": f"{type(error).__name__}: {error}"})
            sys.exit(1)
    _report(
        {
            "finished": job["run_id"],
            "stop_reason": stop,
            "litellm_imported": "litellm" in sys.modules,
        }
    )


if __name__ == "__main__":
    main()
