"""The Celery worker's side: ``agentrun worker`` and the task that runs one run.

:func:`start_worker` starts a Celery worker (prefork pool) on the queues it is given. The
worker is pre-warmed as the daemon's local workers are (:mod:`runner.daemon.worker`): the
main process pays the imports and first call of its model path once, before the pool
forks, so every pool process inherits them; each pool process then makes the model path's
first call again in its own event loop (cheap: the imports are done) and opens the run
store (``AGENTRUN_STORE``) for itself. No run pays an import.

The task :data:`~runner.daemon.celery_app.TASK_NAME` takes the daemon's job (``run_id``,
``spec_path``, ``spec_source``, ``inputs``, ``trigger``, ``resume``) and decides from the
run's row what to do (:func:`plan_task`), since a message may be delivered more than once
(Celery's ``acks_late``: a worker killed mid-run never acknowledged it):

- no row: a new run; it is run (and if another delivery recorded it first, this one stops
  at :class:`runner.store.RunAlreadyRecorded` before any step);
- ``running``, its worker alive (same machine: its process exists; else a heartbeat younger
  than ``HEARTBEAT_STALE_S``): another delivery runs it. This one is retried
  :data:`RECHECK_S` seconds later (a new message, this one acknowledged), until the run ends
  or its worker is found dead: never run twice, never left without a message;
- ``running``, its worker dead: it is marked ``interrupted`` and continued from its journal
  as ``agentrun resume`` does (a completed call is never run again; a call that was in
  flight re-runs only if its tool is low risk, else a person is asked: :mod:`runner.resume`);
- ``interrupted``, or a resume job: claimed (:meth:`runner.store.RunStore.claim_for_resume`,
  one claimant wins) and continued;
- ended otherwise: nothing to do.

A cancel is the run's fire recorded ``cancelled`` in the store (see
:mod:`runner.daemon.celery_executor`): checked when the task starts, and every
:data:`CANCEL_POLL_S` seconds while the run runs; a run that has not ended
:data:`~runner.daemon.executor.CANCEL_GRACE_S` seconds after the cancel has its pool process
killed (its next delivery ends it ``cancelled``). A resume obeys only a cancel recorded
after it began (a fire's reason that changed): one recorded before was for an earlier part
of the run (a person resumed a cancelled run, which paused again), and must not swallow the
continuation the daemon sends once it is decided. A task that fails before its run is
recorded (a spec that no longer loads) records its fire ``failed`` with the error, which is
how the daemon learns of it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from ..errors import StopReason
from ..store.interface import HEARTBEAT_STALE_S
from ..store.rows import FireOutcome
from .celery_app import TASK_NAME, broker_url, check_broker, make_app
from .executor import CANCEL_GRACE_S, LITELLM
from .worker import claim_run, model_factory, warm_imports

if TYPE_CHECKING:
    from ..store import RunStore

log = logging.getLogger("agentrun.worker")

#: Seconds between a running run's looks at its cancel flag (its fire's outcome).
CANCEL_POLL_S = 1.0
#: Seconds before a delivery of a run that is alive elsewhere looks again.
RECHECK_S = 5.0
#: Seconds a pool process may take to warm up before Celery counts it as failed to start.
PROCESS_START_TIMEOUT_S = 120.0
#: The environment variable carrying the model path from the worker to its pool processes.
PATH_VARIABLE = "AGENTRUN_WORKER_MODEL_PATH"


class Plan(StrEnum):
    """What a delivery of a task does, decided from the run's row (:func:`plan_task`)."""

    RUN = "run"
    """A new run: run it."""
    RESUME = "resume"
    """Claim the recorded run and continue it from its journal."""
    WAIT = "wait"
    """The run is alive on another delivery: retry this one later."""
    SKIP = "skip"
    """Nothing to do: the run ended, or was cancelled before it began."""
    END_CANCELLED = "end_cancelled"
    """The run was cancelled and its worker died: record it ended ``cancelled``."""


def plan_task(store: RunStore, job: dict[str, Any], cancelled: bool) -> Plan:
    """What this delivery of ``job`` does (see the module doc); ``cancelled``: the fire's flag.

    A ``running`` row whose worker is dead is marked ``interrupted`` here (by
    :meth:`~runner.store.RunStore.sweep_interrupted`, which also marks any other run whose
    worker is dead).
    """
    run_id = str(job["run_id"])
    row = store.run(run_id)
    if row is None:
        return Plan.SKIP if cancelled else Plan.RUN
    if row.status == "running":
        if run_id not in store.sweep_interrupted(HEARTBEAT_STALE_S):
            return Plan.WAIT
        log.warning("run %s: its worker died mid-run; continuing it from its journal", run_id)
        return Plan.END_CANCELLED if cancelled else Plan.RESUME
    if cancelled:
        return Plan.SKIP
    if row.stop_reason == StopReason.INTERRUPTED or job.get("resume"):
        return Plan.RESUME
    return Plan.SKIP


def fire_cancel(store: RunStore, run_id: str) -> tuple[str, str] | None:
    """``(outcome, reason)`` of the run's fire when it is recorded ``cancelled``, else None."""
    fire = store.fire_of_run(run_id)
    if fire is None or fire.outcome != FireOutcome.CANCELLED:
        return None
    return (str(fire.outcome), fire.reason)


async def execute(job: dict[str, Any], store: RunStore) -> str:
    """Carry out one delivery of ``job``; what became of it (a stop reason or a :class:`Plan`).

    Raises:
        Exception: anything raised before the run is recorded (a spec that no longer loads
            or compiles); its fire is recorded ``failed`` with the error first.
    """
    from ..compiler import compile_agent
    from ..escalation import applied
    from ..loop import Run
    from ..models import LiteLLMModel
    from ..spec import load_spec
    from ..store import RunAlreadyRecorded

    run_id = str(job["run_id"])
    # A resume continues a run the daemon decided to continue: a cancel recorded before it
    # (a person resumed a cancelled run, which then paused) is not obeyed again; only a
    # cancel recorded since (another reason) is.
    before = fire_cancel(store, run_id)
    cancelled = before is not None and not job.get("resume")
    plan = plan_task(store, job, cancelled)
    if plan is Plan.END_CANCELLED:
        store.end_run_left_running(
            run_id, "finished", StopReason.CANCELLED, "cancelled; its worker died before it ended"
        )
        return str(StopReason.CANCELLED)
    if plan in (Plan.WAIT, Plan.SKIP):
        return str(plan)
    resume = plan is Plan.RESUME
    try:
        source = job.get("spec_source")
        spec = load_spec(job["spec_path"], source.encode("utf-8") if source is not None else None)
        if resume:  # a continued escalated run goes on with the budget granted it
            spec = applied(spec, store, run_id)
        agent = compile_agent(spec, job.get("inputs") or {})
    except Exception as error:
        if store.run(run_id) is None:
            store.set_fire_outcome(
                run_id,
                FireOutcome.FAILED,
                f"the worker on {socket.gethostname()} could not start it: "
                f"{type(error).__name__}: {error}",
            )
        raise
    state = None
    if resume:
        state = claim_run(store, run_id)
        if state is None:
            return str(Plan.SKIP)  # another process continues it
    factory = model_factory()
    run = Run(
        agent,
        factory(spec.model) if factory else LiteLLMModel(spec.model),
        [store.record],
        run_id=run_id,
        trigger=job.get("trigger", "daemon"),
        sealer=store.seal_message,
        resume=state,
        traceparent=job.get("traceparent"),
    )
    watcher = asyncio.get_running_loop().create_task(_watch_cancel(store, run_id, run, before))
    try:
        finished = await run.execute()
    except RunAlreadyRecorded:
        return str(Plan.SKIP)  # another delivery recorded it first and runs it
    finally:
        watcher.cancel()
    return str(finished.stop_reason)


async def _watch_cancel(
    store: RunStore, run_id: str, run: Any, before: tuple[str, str] | None
) -> None:
    """Cancel ``run`` once its fire is recorded ``cancelled``; kill this process if it hangs.

    ``before``: the cancel already recorded when a resume began, for an earlier part of the
    run; only a different one (its reason changed) is obeyed.
    """
    while (seen := fire_cancel(store, run_id)) is None or seen == before:
        await asyncio.sleep(CANCEL_POLL_S)
    log.info("run %s: cancelled by the daemon", run_id)
    run.cancel(StopReason.CANCELLED)
    backstop = threading.Timer(CANCEL_GRACE_S, os.kill, (os.getpid(), signal.SIGKILL))
    backstop.daemon = True
    backstop.start()
    try:
        await asyncio.Event().wait()  # until the run ends and cancels this watcher
    finally:
        backstop.cancel()


class _PoolProcess:
    """What a pool process keeps between tasks: its event loop and its store."""

    runner: asyncio.Runner | None = None
    store: Any = None


def _init_pool_process(**_: Any) -> None:
    """Celery's ``worker_process_init``: warm this pool process and open its store."""
    from ..store import RunStore

    runner = asyncio.Runner()
    warm_imports(runner, os.environ.get(PATH_VARIABLE, LITELLM))
    _PoolProcess.runner = runner
    _PoolProcess.store = RunStore.default()


def _close_pool_process(**_: Any) -> None:
    """Celery's ``worker_process_shutdown``: close the store and the event loop."""
    if _PoolProcess.store is not None:
        _PoolProcess.store.close()
    if _PoolProcess.runner is not None:
        _PoolProcess.runner.close()


def register(app: Any) -> Any:
    """Register the run task and the pool processes' warm-up on ``app``; the task."""
    from celery.signals import worker_process_init, worker_process_shutdown

    worker_process_init.connect(_init_pool_process, weak=False)
    worker_process_shutdown.connect(_close_pool_process, weak=False)

    @app.task(name=TASK_NAME, bind=True, max_retries=None, acks_late=True)  # type: ignore[untyped-decorator]
    def run_task(self: Any, job: dict[str, Any]) -> str:
        if _PoolProcess.runner is None:  # a solo pool (no fork): warm up here, once
            _init_pool_process()
        assert _PoolProcess.runner is not None
        outcome = _PoolProcess.runner.run(execute(job, _PoolProcess.store))
        if outcome == Plan.WAIT:
            raise self.retry(countdown=RECHECK_S)
        log.info("run %s: %s", job.get("run_id"), outcome)
        return outcome

    return run_task


def start_worker(
    queues: list[str],
    concurrency: int,
    broker: str | None = None,
    path: str = LITELLM,
    hostname: str | None = None,
    loglevel: str = "INFO",
) -> int:
    """Run a Celery worker on ``queues`` with ``concurrency`` pool processes; its exit code.

    Blocks until the worker stops (SIGTERM: Celery's warm shutdown, the runs in progress
    finish first; SIGQUIT: cold, their tasks are delivered again to another worker).

    Raises:
        SetupError: no broker URL, or the broker cannot be reached.
        StoreError: the run store cannot be opened.
    """
    from ..store import RunStore

    url = broker_url(broker)
    check_broker(url)
    RunStore.default().close()  # a bad AGENTRUN_STORE fails here, not in every pool process
    app = make_app(url)
    app.conf.worker_proc_alive_timeout = PROCESS_START_TIMEOUT_S
    register(app)
    os.environ[PATH_VARIABLE] = path
    with asyncio.Runner() as runner:  # paid once here; the pool's processes inherit it
        warm_imports(runner, path)
    worker = app.Worker(
        queues=queues,
        concurrency=concurrency,
        pool="prefork",
        hostname=hostname,
        loglevel=loglevel,
        without_mingle=True,
        without_gossip=True,
        optimization="fair",
    )
    worker.start()
    return int(worker.exitcode or 0)
