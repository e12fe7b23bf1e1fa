"""`agentrun run`, and the approval commands: `approvals`, `approve`, `deny`, `resume`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from ..errors import StopReason, UsageError
from .base import (
    EXIT_ERROR,
    EXIT_TIMEOUT,
    EXIT_WAITING,
    STOP_EXIT_CODES,
    _count,
    _fail,
    _short,
    cli,
)

# ---------------------------------------------------------------------------------------------
# run


@cli.command()
@click.argument("spec_file", metavar="SPEC", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--input", "-i", "inputs", multiple=True, metavar="KEY=VALUE", help="Set an input; repeatable."
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON result instead of the progress."
)
@click.option("--quiet", "-q", is_flag=True, help="Print only the final answer.")
@click.option(
    "--unattended",
    is_flag=True,
    help="Never prompt, even at a terminal: the spec's `unattended` decides what 'ask' means.",
)
@click.option(
    "--record",
    "record_to",
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the run's model traffic to a cassette FILE (YAML, secrets redacted).",
)
@click.option(
    "--replay",
    "replay_from",
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Answer from a cassette FILE instead of the model (no network, no API key); "
    "the run fails at the first request that differs from the recording.",
)
def run(
    spec_file: Path,
    inputs: tuple[str, ...],
    as_json: bool,
    quiet: bool,
    unattended: bool,
    record_to: Path | None,
    replay_from: Path | None,
) -> None:
    """Run the agent in SPEC once, to a recorded stop reason.

    Progress goes to stderr as it happens; the final answer goes to stdout. The exit code
    says how the run ended (see the README's table). A call that needs approval is asked at
    the terminal when a person is attached; otherwise the spec's `unattended` decides.
    `--record FILE` keeps the model's traffic in a cassette that `--replay FILE` plays back
    (docs/concepts/testing.md, "Record and replay"). With telemetry on, a W3C trace context
    in the TRACEPARENT variable makes the run's trace a child of that span (docs/telemetry.md).
    """
    from ..compiler import compile_agent, parse_input_flags
    from ..spec import load_spec

    if record_to is not None and replay_from is not None:
        raise UsageError("--record and --replay cannot be used together; choose one")
    spec = load_spec(spec_file)
    agent = compile_agent(spec, parse_input_flags(inputs))
    model = _cassette_model(spec, record_to, replay_from)
    _execute(agent, as_json, quiet, unattended, model=model)


def _cassette_model(spec: Any, record_to: Path | None, replay_from: Path | None) -> Any:
    """The model of `--record` or `--replay`, or None for the spec's own (run_agent's default).

    Raises:
        CassetteInvalid: the `--replay` file is not a valid cassette (exit 2).
    """
    if replay_from is not None:
        from ..models.cassette import ReplayModel

        return ReplayModel(replay_from, redact=_redact(spec), workdir=spec.workdir)
    if record_to is not None:
        from ..models import LiteLLMModel
        from ..models.cassette import RecordingModel

        return RecordingModel(
            LiteLLMModel(spec.model),
            record_to,
            redact=_redact(spec),
            workdir=spec.workdir,
            agent=spec.name,
        )
    return None  # nothing imported: the spec's model, as without the flags


def _redact(spec: Any) -> Any:
    """The run's own redaction (the spec's secret variables), for what a cassette holds."""
    from ..redact import Redactor, secret_variables

    return Redactor(secret_variables(spec)).value


def _approver(unattended: bool) -> Any:
    from ..policy import TerminalApprover

    attended = sys.stdin.isatty() and sys.stderr.isatty() and not unattended
    return TerminalApprover() if attended else None


def _execute(
    agent: Any,
    as_json: bool,
    quiet: bool,
    unattended: bool,
    run_id: str | None = None,
    resume: Any = None,
    store: Any = None,
    model: Any = None,
) -> NoReturn:
    """Run (or resume) a compiled agent with the store and the console; exit with its code.

    ``model``: the model to call (a cassette's, for `--record`/`--replay`); None for the
    spec's own.
    """
    import asyncio

    from ..loop import CANCEL_SIGNALS, Sink, run_agent
    from ..store import RunStore
    from .progress import Progress

    store = store or RunStore.default()
    progress = Progress(enabled=False if (as_json or quiet) else None).start()
    printer = ConsolePrinter(progress.echo)
    sinks: list[Sink] = [] if (as_json or quiet) else [printer.print, progress.event]
    notifier = None
    if agent.spec.notify:  # sent from a thread; the run never waits for it
        from ..notify.inprocess import RunNotifier

        notifier = RunNotifier(agent.spec, _home_of(store))
        sinks.append(notifier.sink)
    try:
        # SIGTERM, SIGINT (Ctrl-C) and SIGHUP cancel the run: recorded, resumable, exit 6.
        finished = asyncio.run(
            run_agent(
                agent,
                model=model,
                store=store,
                sinks=sinks,
                approver=_approver(unattended),
                run_id=run_id,
                resume=resume,
                cancel_on=CANCEL_SIGNALS,
                # A CI job or a script that traces itself hands its span down the way
                # process environments carry trace context (OpenTelemetry's TRACEPARENT).
                traceparent=os.environ.get("TRACEPARENT"),
            )
        )
    except KeyboardInterrupt:  # before the run started or after it ended
        progress.stop()
        _fail("interrupted", EXIT_TIMEOUT)
    progress.stop()
    if notifier is not None:
        notifier.finish()  # waits at most one send timeout; the exit code is the run's
    stop = finished.stop_reason
    if as_json:
        click.echo(
            json.dumps(
                {
                    "run_id": finished.run_id,
                    "agent": agent.spec.name,
                    "stop_reason": stop,
                    "final": finished.final,
                    "result": finished.result,
                    "message": finished.message,
                    "steps": finished.steps,
                    "tool_calls": finished.tool_calls,
                    "input_tokens": finished.input_tokens,
                    "output_tokens": finished.output_tokens,
                    "cost_usd": finished.cost_usd,
                    "duration_s": round(finished.duration_s, 3),
                }
            )
        )
    else:
        if finished.final is not None:
            click.echo(finished.final)
        if not quiet:
            cost = "unknown" if finished.cost_usd is None else f"${finished.cost_usd:.6f}"
            click.echo(
                f"[{stop}] run {finished.run_id} · {_count(finished.steps, 'step')} · "
                f"{_count(finished.tool_calls, 'tool call')} · {finished.input_tokens} in / "
                f"{finished.output_tokens} out tokens · {cost} · {finished.duration_s:.1f} s",
                err=True,
            )
        if finished.message and stop != StopReason.COMPLETED:
            click.echo(f"agentrun: {finished.message}", err=True)
        if finished.traceback:
            click.echo(
                f"agentrun: the traceback is in the run store: "
                f"agentrun runs show {finished.run_id}",
                err=True,
            )
    _cassette_notes(model, as_json)
    sys.exit(STOP_EXIT_CODES.get(stop, EXIT_ERROR))


def _cassette_notes(model: Any, as_json: bool) -> None:
    """Say where a recording went, or that a replay used fewer calls than recorded."""
    if model is None:
        return
    from ..models.cassette import RecordingModel, ReplayModel

    if isinstance(model, RecordingModel) and not as_json:
        held = len(model.cassette.interactions)
        click.echo(f"agentrun: recorded {_count(held, 'model call')} to {model.path}", err=True)
    elif isinstance(model, ReplayModel) and model.divergence is None and model.remaining:
        click.echo(
            f"agentrun: warning: the run made {model.calls} of the "
            f"{model.calls + model.remaining} model calls the cassette {model.path} holds",
            err=True,
        )


# ---------------------------------------------------------------------------------------------
# approvals, approve, deny, resume


def _home_of(store: Any) -> Path:
    """The AGENTRUN_HOME of a run's store: a SQLite file's folder, else AGENTRUN_HOME."""
    from ..paths import home
    from ..store.sqlite import SQLiteRunStore

    return store.path.parent if isinstance(store, SQLiteRunStore) else home()


def _find_run(store: Any, run_id: str) -> Any:
    row = store.run(run_id)
    if row is None:
        raise UsageError(
            f"no run with id {run_id!r} (or the prefix is ambiguous); see `agentrun runs`"
        )
    return row


@cli.command()
def approvals() -> None:
    """List tool calls waiting for approval, across runs."""
    from ..store import RunStore

    pending = RunStore.default().approvals()
    if not pending:
        click.echo("no pending approvals")
        return
    # Call ids are printed whole: `agentrun approve RUN CALL` needs them exactly as stored.
    width = max(len("CALL"), *(len(row["call_id"]) for row in pending))
    click.echo(f"{'RUN':<26}  {'CALL':<{width}} {'TOOL':<16} {'RISK':<6} ARGUMENTS")
    for row in pending:
        click.echo(
            f"{row['run_id']:<26}  {row['call_id']:<{width}} {row['tool'][:16]:<16} "
            f"{row['risk']:<6} {_short(row['arguments'], 60)}"
        )
        if row["note"]:
            click.echo(f"{'':<28}note: {row['note']}")


def _decide(run_id: str, call_id: str | None, approved: bool, reason: str) -> None:
    from ..decisions import decide
    from ..store import RunStore

    store = RunStore.default()
    decided = decide(store, run_id, call_id, approved, reason, by="cli")
    count = len(decided.calls)
    verb = "approved" if approved else "denied"
    waiting = len(store.approvals(decided.run.id))
    if waiting:
        then = (
            f"{waiting} more call{'s' if waiting != 1 else ''} of the run wait: agentrun approvals"
        )
    elif _continued_by_a_daemon(decided.run.trigger):
        then = "the daemon continues the run"
    else:
        then = f"continue with: agentrun resume {decided.run.id}"
    click.echo(f"{verb} {count} call{'s' if count != 1 else ''}; {then}")


def _continued_by_a_daemon(trigger: str) -> bool:
    """Whether a run with ``trigger`` is the daemon's and a daemon runs (it continues it)."""
    from ..daemon.continuation import DAEMON_TRIGGERS
    from ..daemon.lifecycle import daemon_running
    from ..paths import home

    return trigger in DAEMON_TRIGGERS and daemon_running(home())


@cli.command()
@click.argument("run_id", metavar="RUN")
@click.argument("call_id", metavar="[CALL]", required=False)
def approve(run_id: str, call_id: str | None) -> None:
    """Approve a paused run's pending call (all of them without CALL)."""
    _decide(run_id, call_id, True, "approved with agentrun approve")


@cli.command()
@click.argument("run_id", metavar="RUN")
@click.argument("call_id", metavar="[CALL]", required=False)
@click.option("--reason", "-r", default="", help="Why; the model is told.")
def deny(run_id: str, call_id: str | None, reason: str) -> None:
    """Deny a paused run's pending call (all of them without CALL)."""
    _decide(run_id, call_id, False, reason)


@cli.command()
@click.argument("run_id", metavar="RUN")
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON result instead of the progress."
)
@click.option("--quiet", "-q", is_flag=True, help="Print only the final answer.")
@click.option("--unattended", is_flag=True, help="Never prompt, even at a terminal.")
@click.option(
    "--force", is_flag=True, help="Resume even though the spec file changed since the run started."
)
@click.option(
    "--add",
    "adds",
    multiple=True,
    metavar="NAME=VALUE",
    help="Continue an escalated run with more budget: max_steps=10, max_cost_usd=0.5, "
    "max_duration=15m, ... (within budgets.ceilings); repeatable.",
)
@click.option("--reason", "-r", default="", help="Why it is continued (recorded with a grant).")
def resume(
    run_id: str,
    as_json: bool,
    quiet: bool,
    unattended: bool,
    force: bool,
    adds: tuple[str, ...],
    reason: str,
) -> None:
    """Continue a paused (approval, answer), escalated, interrupted or cancelled run.

    It goes on exactly where it stopped, with the arguments the model sent. Calls that
    completed are never run again; a call that was running when the process died runs again
    only if its tool is low risk, otherwise a person is asked again (an approval given
    before it ran does not count). Of two resumes of one run started together, one runs it
    and the other says who holds it. An escalated run stopped by a budget (max_steps, ...)
    or checks_failed goes on only with a grant of more (--add max_steps=10, within the
    spec's budgets.ceilings); one escalated for another reason goes on without. A running
    daemon continues its own escalated run by itself once the grant is recorded.
    """
    import hashlib

    from ..compiler import compile_agent
    from ..resume import restore_state
    from ..spec import load_spec
    from ..store import ResumeClaimed, RunStore
    from .escalations import spec_for_resume

    store = RunStore.default()
    store.sweep_interrupted()
    row = _find_run(store, run_id)
    if not row.resumable:
        raise UsageError(str(ResumeClaimed(row)))
    pending = store.approvals(row.id)
    if pending and (unattended or not (sys.stdin.isatty() and sys.stderr.isatty())):
        calls = ", ".join(f"{p['call_id']} ({p['tool']})" for p in pending)
        _fail(
            f"run {row.id} still waits for approval of {calls}: "
            f"agentrun approve {row.id} or agentrun deny {row.id} --reason TEXT",
            EXIT_WAITING,
        )
    from ..decisions import waiting_questions  # marks questions past answer_timeout first

    asked = waiting_questions(store, row.id)
    if asked and (unattended or not (sys.stdin.isatty() and sys.stderr.isatty())):
        calls = ", ".join(q["call_id"] for q in asked)
        _fail(
            f"run {row.id} still waits for an answer to its question ({calls}): "
            f"agentrun answer {row.id} TEXT",
            EXIT_WAITING,
        )
    spec_path = Path(row.spec_path)
    if not spec_path.exists():
        raise UsageError(f"the spec of run {row.id} is gone: {spec_path}")
    if hashlib.sha256(spec_path.read_bytes()).hexdigest() != row.spec_sha256 and not force:
        raise UsageError(
            f"{spec_path} changed since run {row.id} started; pass --force to resume with "
            "the new version"
        )
    spec, continued = spec_for_resume(store, row, load_spec(spec_path), adds, reason)
    if continued and _continued_by_a_daemon(row.trigger):
        click.echo(f"continued run {row.id}; the daemon continues the run")
        return
    agent = compile_agent(spec, json.loads(row.inputs_json))
    try:
        store.claim_for_resume(row.id)  # one atomic step: a second resume loses here
    except ResumeClaimed as error:
        raise UsageError(str(error)) from None
    try:
        state = restore_state(store, row.id)  # read after the claim: nobody changes it now
    except BaseException:
        store.release_claim(row)
        raise
    _execute(agent, as_json, quiet, unattended, run_id=row.id, resume=state, store=store)


class ConsolePrinter:
    """Prints loop events to stderr as they happen, one short line each.

    Args:
        echo: writes one line to stderr (the status line's :meth:`~.progress.Progress.echo`,
            which keeps the two apart); default ``click.echo(..., err=True)``.
    """

    def __init__(self, echo: Any = None) -> None:
        self.echo = echo or (lambda line: click.echo(line, err=True))

    def print(self, event: Any) -> None:
        """Show one event."""
        from ..events import ModelCalled, RunStarted, ToolCalled

        if isinstance(event, RunStarted):
            self.echo(f"▶ {event.agent} · {event.model} · run {event.run_id}")
        elif isinstance(event, ModelCalled):
            wanted = ", ".join(c["name"] for c in event.tool_calls) or "answer"
            self.echo(
                f"  step {event.step}: model → {wanted} "
                f"({event.input_tokens} in / {event.output_tokens} out tokens, "
                f"{event.duration_s:.1f} s)"
            )
        elif isinstance(event, ToolCalled):
            arguments = _short(event.arguments, 80)
            self.echo(f"    {event.tool} {arguments}")
            marker = "✗" if event.status != "ok" else "←"
            result = event.result.removeprefix("error: ")
            self.echo(f"      {marker} {event.status}: {_short(result, 100)}")
