"""`agentrun escalations` and `agentrun runs close`; the grants of `agentrun resume --add`."""

from __future__ import annotations

from typing import Any

import click

from ..errors import StopReason, UsageError
from .base import _short, cli
from .records import runs


@cli.command()
def escalations() -> None:
    """List escalated runs waiting for a person to close or continue them, across runs."""
    from ..store import RunStore

    store = RunStore.default()
    rows = store.escalations()
    if not rows:
        click.echo("no open escalations")
        return
    click.echo(f"{'RUN':<26}  {'AGENT':<20} {'STOPPED AT':<16} {'SINCE':<19}  WHAT")
    for row in rows:
        run = store.run(row["run_id"])
        agent = run.agent if run is not None else "?"
        first = row["message"].splitlines()[0] if row["message"] else ""
        click.echo(
            f"{row['run_id']:<26}  {agent[:20]:<20} {row['stop_reason'][:16]:<16} "
            f"{row['created_at'][:19]:<19}  {_short(first, 70)}"
        )
    click.echo(
        "continue one: agentrun resume RUN --add max_steps=N · close one: agentrun runs close RUN"
    )


def show_escalations(store: Any, run_id: str) -> None:
    """``agentrun runs show``'s lines on a run's escalations and the grants made to it."""
    found = store.escalations(run_id, status=None)
    if not found:
        return
    click.echo("escalations:")
    for row in found:
        decided = (
            f" by {row['decided_by']} at {(row['decided_at'] or '')[:19]}"
            + (f": {_short(row['decision_reason'], 100)}" if row["decision_reason"] else "")
            if row["decided_by"]
            else ""
        )
        click.echo(f"  {row['stop_reason']} at {row['created_at'][:19]}: {row['status']}{decided}")
    for grant in store.grants(run_id):
        click.echo(
            f"  granted {grant['budget']} +{grant['amount']:g} by {grant['granted_by']} "
            f"at {grant['created_at'][:19]}"
            + (f": {_short(grant['reason'], 100)}" if grant["reason"] else "")
        )


@runs.command("close")
@click.argument("run_id", metavar="RUN")
@click.option("--reason", "-r", default="", help="Why it is closed (recorded).")
def runs_close(run_id: str, reason: str) -> None:
    """Close an escalated run: it ends with the stop reason that escalated it, for good."""
    from ..decisions import close_escalated
    from ..store import RunStore

    decided = close_escalated(RunStore.default(), run_id, reason, by="cli")
    click.echo(
        f"closed run {decided.run.id}: its stop reason is "
        f"{decided.escalation['stop_reason']}; it can no longer be resumed"
    )


def spec_for_resume(
    store: Any, row: Any, spec: Any, adds: tuple[str, ...], reason: str
) -> tuple[Any, bool]:
    """The spec a resume of ``row`` runs with (its grants applied), and whether it decided.

    The second is True when this call continued an open escalation (``adds`` recorded).

    An escalated run with an open escalation is continued here (``continue_escalated``,
    by ``cli``) with the grants in ``adds`` (``NAME=VALUE``); a plain resume continues one
    escalated by a reason that needs no more budget (``error``, ``loop_detected``, ...).
    Any other run refuses ``adds``: grants are a person's answer to an escalation.

    Raises:
        UsageError: a bad or refused grant (the message says which and why), or ``adds``
            for a run that is not waiting on an escalation.
    """
    from ..decisions import continue_escalated
    from ..escalation import applied, parse_grants

    waiting = row.stop_reason == StopReason.ESCALATED and bool(store.escalations(row.id))
    if waiting:
        grants = parse_grants(adds)
        decided = continue_escalated(store, spec, row.id, grants, reason, by="cli")
        if decided.limits:
            raised = ", ".join(f"{name} {value:g}" for name, value in decided.limits.items())
            click.echo(f"granted run {row.id}: {raised}", err=True)
    elif adds:
        raise UsageError(
            f"--add is a grant to an escalated run waiting for a person, and run {row.id} is "
            f"{row.stop_reason or row.status}; see `agentrun escalations`"
        )
    return applied(spec, store, row.id), waiting
