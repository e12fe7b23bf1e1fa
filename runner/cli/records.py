"""`agentrun runs`: list, show, export, verify, replay and stats of the run store."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import StopReason, UsageError
from .base import (
    EXIT_ERROR,
    _count,
    _short,
    cli,
)

if TYPE_CHECKING:
    from ..store import CheckRunRow, RunStore, SandboxEventRow, lineage
    from ..store.database import Database

#: Most allowed connections ``runs show`` lists one by one; above it, only their count.
ALLOWED_CONNECTIONS_SHOWN = 20

#: What ``runs --status`` filters on: a stop reason, or ``running`` for runs not ended.
RUN_STATUSES = ["running", *(str(reason) for reason in StopReason)]

# ---------------------------------------------------------------------------------------------
# runs


def _since(value: str | None) -> str | None:
    """``--since``: an ISO date/time, or a duration back from now (``90m``, ``2h``, ``7d``)."""
    if value is None:
        return None
    from ..store import since_instant

    try:
        return since_instant(value)
    except ValueError as error:
        raise UsageError(f"--since {error}") from None


@cli.group(invoke_without_command=True)
@click.option("--limit", "-n", default=20, show_default=True, help="How many runs to list.")
@click.option("--agent", "-a", default=None, help="Only runs of this agent.")
@click.option(
    "--status",
    "-s",
    default=None,
    type=click.Choice(RUN_STATUSES),
    metavar="STATUS",
    help="Only runs with this stop reason (completed, max_steps, ...; see "
    "docs/concepts/budgets.md) or 'running'.",
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
    from ..store import RunStore

    store = RunStore.default()
    store.sweep_interrupted()
    rows = store.runs(limit=limit, agent=agent, status=status, since=_since(since))
    if not rows:
        click.echo("no runs recorded yet")
        return
    click.echo(
        f"{'RUN':<26}  {'AGENT':<20} {'TRIGGER':<8} {'STATUS':<18} {'STEPS':>5} {'TOKENS':>7}"
        "  STARTED"
    )
    for row in rows:
        status = row.stop_reason or row.status
        click.echo(
            f"{row.id:<26}  {row.agent[:20]:<20} {row.trigger[:8]:<8} {status:<18} "
            f"{row.steps:>5} {row.input_tokens + row.output_tokens:>7}  {row.started_at[:19]}"
        )


@runs.command("show")
@click.argument("run_id", metavar="ID")
def runs_show(run_id: str) -> None:
    """Show one run's steps: model calls, tool calls, results, stop reason."""
    from ..store import RunStore

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
    decisions = {
        approval["call_id"]: approval
        for approval in store.approvals(row.id, status=None)
        if approval["decided_by"]
    }
    guarded: dict[str, list[str]] = {}
    for answer in store.guard_decisions(row.id):
        failed = " (guard failed: counts as ask)" if answer["failed"] else ""
        guarded.setdefault(answer["call_id"], []).append(
            f"    guard {answer['guard']}: {answer['decision']}{failed}: "
            f"{_short(answer['reason'], 100)}"
        )
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
            for line in guarded.get(tool["call_id"], []):
                click.echo(line)
            decision = decisions.get(tool["call_id"])
            if decision is not None:
                reason = decision["decision_reason"]
                click.echo(
                    f"    {decision['status']} by {decision['decided_by']}"
                    + (f" at {decision['decided_at'][:19]}" if decision["decided_at"] else "")
                    + (f": {_short(reason, 100)}" if reason else "")
                )
            click.echo(f"    → {_short(tool['result'], 160)}")
    for line in [
        *_check_run_lines(store.check_runs(row.id)),
        *_notice_lines(store, row.id),
        *_sandbox_event_lines(store.sandbox_events(row.id)),
    ]:
        click.echo(line)
    for question in store.questions(row.id, status=None):  # ask_human
        by = f" by {question['answered_by']}" if question["answered_by"] else ""
        said = f": {_short(question['answer'], 100)}" if question["answer"] else ""
        click.echo(
            f"question {question['call_id']}: {_short(question['question'], 100)} "
            f"[{question['status']}{by}{said}]"
        )
    click.echo(
        f"stop reason: {row.stop_reason or row.status} · {_count(row.steps, 'step')} · "
        f"{_count(row.tool_calls, 'tool call')} · "
        f"{row.input_tokens} in / {row.output_tokens} out tokens · {cost}"
    )
    if row.message:
        click.echo(f"message: {row.message}")
    if row.final:
        click.echo(f"final answer:\n{row.final}")
    if row.traceback:
        click.echo(f"traceback:\n{row.traceback}")
    from .escalations import show_escalations

    show_escalations(store, row.id)
    sent = store.notifications(row.id)
    if sent:
        click.echo("notifications:")
    for note in sent:  # the channel is stored with its secrets masked
        error = f": {_short(note['error'], 120)}" if note["error"] else ""
        click.echo(
            f"  {note['event']} → {_short(note['channel'], 70)}: {note['status']} "
            f"({_count(note['attempts'], 'attempt')}){error}"
        )


@runs.command("export")
@click.argument("run_id", metavar="ID")
def runs_export(run_id: str) -> None:
    """Print one run as JSONL: one event per line (format in docs/run-store.md)."""
    from ..store import RunStore

    store = RunStore.default()
    row = store.run(run_id)
    if row is None:
        raise UsageError(
            f"no run with id {run_id!r} (or the prefix is ambiguous); see `agentrun runs`"
        )
    try:
        for record in store.export_with_chain(row.id):
            click.echo(json.dumps(record, ensure_ascii=False))
    finally:
        store.close()


@runs.command("replay")
@click.argument("run_id", metavar="RUN")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the cassette to FILE instead of stdout.",
)
def runs_replay(run_id: str, output: Path | None) -> None:
    """Rebuild a cassette from one recorded run, for `agentrun run SPEC --replay FILE`.

    The conversation before each model call and the model's reply come from the run store
    (redacted as recorded). The store keeps no tool lists, so a replay of the rebuilt
    cassette compares the conversation only.
    """
    from ..models import ModelReply, ToolCallRequest, Usage
    from ..models.cassette_file import cassette_from_run
    from ..store import RunStore

    store = RunStore.default()
    try:
        row = store.run(run_id)
        if row is None:
            raise UsageError(
                f"no run with id {run_id!r} (or the prefix is ambiguous); see `agentrun runs`"
            )
        messages = store.messages(row.id)
        replies = []
        for call in store.model_calls(row.id):
            asked = [
                ToolCallRequest(str(c["id"]), str(c["name"]), str(c["arguments"]))
                for c in json.loads(call["tool_calls_json"] or "[]")
            ]
            replies.append(
                ModelReply(
                    content=call["content"],
                    tool_calls=asked,
                    usage=Usage(call["input_tokens"], call["output_tokens"]),
                    cost_usd=call["cost_usd"],
                    model=call["model"],
                    finish_reason="tool_calls" if asked else "stop",
                )
            )
    finally:
        store.close()
    cassette = cassette_from_run(
        row.agent, row.model, messages, replies, workdir=_spec_workdir(row.spec_path)
    )
    text = cassette.to_yaml()
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as error:
        raise UsageError(f"cannot write the cassette {output}: {error.strerror or error}") from None
    held = len(cassette.interactions)
    click.echo(f"wrote {_count(held, 'model call')} of run {row.id} to {output}", err=True)


def _spec_workdir(spec_path: str) -> Path | None:
    """The workdir of the spec at ``spec_path``, or None when it no longer loads."""
    from ..errors import AgentrunError
    from ..spec import load_spec

    try:
        return load_spec(Path(spec_path)).workdir
    except (AgentrunError, OSError):
        return None


def _database(store: RunStore) -> Database:
    """The SQL connection of ``store`` (both backends are SQL stores)."""
    from ..store.recording import SQLRunStore

    if not isinstance(store, SQLRunStore):  # pragma: no cover - every backend is SQL
        raise UsageError(f"the run store {type(store).__name__} keeps no event log")
    return store.db


@runs.command("verify")
@click.argument("run_ids", nargs=-1, metavar="[RUN...]")
@click.option("--all", "every", is_flag=True, help="Verify every run in the store.")
@click.option(
    "--file",
    "export_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Verify a `runs export` JSONL file instead of the store.",
)
@click.option(
    "--public-key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Check head signatures with this Ed25519 public key (PEM, as `agentrun keys` "
    "prints); default: the local signing key's, when there is one.",
)
@click.option(
    "--require-signature",
    is_flag=True,
    help="An ended run whose head is not signed is bad too.",
)
def runs_verify(
    run_ids: tuple[str, ...],
    every: bool,
    export_file: Path | None,
    public_key: Path | None,
    require_signature: bool,
) -> None:
    """Recompute runs' hash chains and name the first bad event.

    An event changed, removed, inserted or reordered, or a head signature that does not
    verify, makes the run bad: exit code 1 (docs/audit.md).
    """
    from ..store import lineage

    if export_file is not None and (run_ids or every):
        raise UsageError("give runs or --all to verify the store, or --file alone")
    if export_file is None and bool(run_ids) == every:
        raise UsageError("give the runs to verify, or --all (or --file EXPORT.jsonl)")
    if public_key is not None:
        key = lineage.load_public_key(public_key)
    elif lineage.signing_key_path().is_file():
        key = lineage.load_signing_key(lineage.signing_key_path()).public_key()
    else:
        key = None
    if require_signature and key is None:
        raise UsageError(
            "--require-signature needs a public key: --public-key FILE, or a local signing "
            "key (`agentrun keys --create`)"
        )
    if export_file is not None:
        try:
            with export_file.open(encoding="utf-8") as handle:
                chains = lineage.chains_from_export(handle, str(export_file))
        except (OSError, UnicodeDecodeError) as error:
            raise UsageError(f"cannot read {str(export_file)!r}: {error}") from None
    else:
        from ..store import RunStore

        store = RunStore.default()
        try:
            wanted = None
            if run_ids:
                wanted = []
                for run_id in run_ids:
                    found = store.run(run_id)
                    if found is None:
                        raise UsageError(f"no run with id {run_id!r} (or the prefix is ambiguous)")
                    wanted.append(found.id)
            chains = list(lineage.read_chains(_database(store), wanted))
        finally:
            store.close()
    verdicts = [lineage.verify_chain(c, key, require_signature) for c in chains]
    bad = [v for v in verdicts if not v.intact]
    for verdict in verdicts:
        if not verdict.intact or not every:
            click.echo(_verdict_line(verdict, key is not None))
    legacy = sum(1 for v in verdicts if v.legacy)
    summary = f"{_count(len(verdicts), 'run')} verified: {len(verdicts) - len(bad)} intact"
    summary += f", {len(bad)} bad" if bad else ""
    if legacy:
        summary += (
            f"; {legacy} with entries recorded before lineage existed (migration 0012), "
            "which have no hashes and cannot be verified"
        )
    click.echo(summary)
    if bad:
        sys.exit(EXIT_ERROR)


def _verdict_line(verdict: lineage.Verdict, keyed: bool) -> str:
    """One line of ``runs verify``: the run, and what is wrong or how it stands."""
    if verdict.intact:
        if verdict.legacy == verdict.entries:
            return f"unchained {verdict.run_id}: recorded before lineage existed, no hashes"
        note = "1 entry" if verdict.entries == 1 else f"{verdict.entries} entries"
        if verdict.legacy:
            note += f", the first {verdict.legacy} recorded before lineage (no hashes)"
        if verdict.signed_by:
            checked = "signature verified" if keyed else "signed, not checked (no public key)"
            note += f", {checked}: {verdict.signed_by}"
        return f"ok {verdict.run_id} ({note})"
    where = f" {verdict.entry.describe()}" if verdict.entry is not None else ""
    return f"BAD {verdict.run_id}: {verdict.problem}{where}: {verdict.detail}"


@runs.command("stats")
@click.option(
    "--since", default=None, help="Only runs since a date/time or a duration ago (2h, 7d)."
)
def runs_stats(since: str | None) -> None:
    """Runs, stop reasons, tokens and cost per agent and per day."""
    from ..store import RunStore

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


def _check_run_lines(rows: list[CheckRunRow]) -> list[str]:
    """``runs show``'s lines for the success checks: attempt, check, verdict, first line.

    For a command the first line is its exit code, so the first line of its output follows.
    """
    if not rows:
        return []
    lines = ["checks:"]
    for row in rows:
        said = row["output"].splitlines() or [""]
        first = said[0]
        if row["kind"] == "command" and len(said) > 1:
            first = f"{first} · {said[1]}"
        verdict = "passed" if row["passed"] else "failed"
        lines.append(
            f"  attempt {row['attempt']} (step {row['step']}): {row['name']} "
            f"[{row['kind']}] {verdict}, {row['duration_s']:.2f} s: {_short(first, 120)}"
        )
    return lines


def _notice_lines(store: RunStore, run_id: str) -> list[str]:
    """``runs show``'s lines for the run's notices: a sandbox not enforced, a tool skipped."""
    return [f"notice ({row['level']}): {row['message']}" for row in store.notices(run_id)]


def _sandbox_event_lines(rows: list[SandboxEventRow]) -> list[str]:
    """``runs show``'s lines for what the sandbox did; none when it recorded nothing.

    Refused connections and limits hit one a line, in order (source, call id, what, why);
    allowed connections counted, and listed too when there are at most
    :data:`ALLOWED_CONNECTIONS_SHOWN`.
    """
    if not rows:
        return []
    refused = [r for r in rows if r["kind"] == "connection" and not r["allowed"]]
    allowed = [r for r in rows if r["kind"] == "connection" and r["allowed"]]
    limits = [r for r in rows if r["kind"] == "limit"]
    lines = [
        f"sandbox: {_count(len(refused), 'connection')} refused, {len(limits)} "
        f"limit{'s' if len(limits) != 1 else ''} hit, {len(allowed)} allowed:"
    ]
    for row in rows:
        where = row["source"] + (f" {row['call_id']}" if row["call_id"] else "")
        if row["kind"] == "limit":
            detail = f": {_short(row['detail'], 160)}" if row["detail"] else ""
            lines.append(f"  limit hit  {where}: {row['limit_name']}{detail}")
        elif not row["allowed"]:
            reason = f": {_short(row['detail'], 160)}" if row["detail"] else ""
            lines.append(f"  refused    {where}: {_host_port(row)}{reason}")
        elif len(allowed) <= ALLOWED_CONNECTIONS_SHOWN:
            address = f" ({row['address']})" if row["address"] else ""
            lines.append(f"  allowed    {where}: {_host_port(row)}{address}")
    if len(allowed) > ALLOWED_CONNECTIONS_SHOWN:
        lines.append(
            f"  allowed connections not listed (over {ALLOWED_CONNECTIONS_SHOWN}); the console's "
            "run page and the store's sandbox_events table have each"
        )
    return lines


def _host_port(row: SandboxEventRow) -> str:
    """``host:port`` of a connection, an IPv6 address in brackets (``[::1]:443``)."""
    host = row["host"] or "?"
    return f"[{host}]:{row['port']}" if ":" in host else f"{host}:{row['port']}"
