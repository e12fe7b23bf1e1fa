"""Policy: allow, ask or deny for each tool call, and the approvers that answer "ask".

The decision combines the autonomy level, the tool's risk and the spec's rules::

    level            runs without asking
    suggest          nothing (calls are proposed and recorded, never executed)
    approve-all      nothing (every call asks)
    approve-writes   low
    approve-risky    low, medium
    autonomous       low, medium, high

Rules refine it per tool and per argument: ``deny`` beats ``ask`` beats ``allow``. A rule
pattern is ``TOOL`` or ``TOOL:ARG=GLOB`` (``fnmatch`` globs; ``shell:argv=...`` matches the
parsed words joined by single spaces, never the raw string). The scale follows the usual
five levels of human involvement (operator, collaborator, consultant, approver, observer).

Path and URL arguments arrive in canonical form (:mod:`runner.canonical`: a file tool's
``path`` relative to the workdir with symlinks resolved, ``http_request``'s ``url`` with case,
ports, escapes and dot segments normalised), and a rule's glob for such an argument is put in
the same form before it is matched (``./data/secrets/*`` and the absolute spelling of
``data/secrets/*`` are that glob), so no spelling of a target escapes a rule naming it.
"""

from __future__ import annotations

import fnmatch
import shlex
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from .canonical import CanonicalPath, CanonicalURL, canonical_path_glob, canonical_url_glob
from .spec import AutonomyLevel, Risk, RulesSpec


class Decision(StrEnum):
    """The policy's answer for one tool call."""

    ALLOW = "allow"
    """Run it."""
    ASK = "ask"
    """Run it only if an approver says yes."""
    DENY = "deny"
    """Refuse it; the model is told and may work around it."""
    PROPOSE = "propose"
    """Autonomy ``suggest``: record it as a proposal, never run it."""


#: The risks that run without asking at each autonomy level (the table above).
_RUNS_ALONE: dict[AutonomyLevel, frozenset[Risk]] = {
    AutonomyLevel.SUGGEST: frozenset(),
    AutonomyLevel.APPROVE_ALL: frozenset(),
    AutonomyLevel.APPROVE_WRITES: frozenset({Risk.LOW}),
    AutonomyLevel.APPROVE_RISKY: frozenset({Risk.LOW, Risk.MEDIUM}),
    AutonomyLevel.AUTONOMOUS: frozenset({Risk.LOW, Risk.MEDIUM, Risk.HIGH}),
}


def _argument_text(name: str, value: Any) -> str:
    if name == "argv" and isinstance(value, list):
        return " ".join(str(v) for v in value)
    if name == "argv" and isinstance(value, str):
        try:
            return " ".join(shlex.split(value))
        except ValueError:
            return value
    return value if isinstance(value, str) else str(value)


def _canonical_glob(glob: str, value: Any) -> str:
    """``glob`` in the canonical form of ``value``'s kind (path, URL), or as written."""
    if isinstance(value, CanonicalPath):
        return canonical_path_glob(glob, value.workdir)
    if isinstance(value, CanonicalURL):
        return canonical_url_glob(glob)
    return glob


def rule_matches(pattern: str, tool: str, arguments: dict[str, Any]) -> bool:
    """Whether ``TOOL`` or ``TOOL:ARG=GLOB`` matches a call of ``tool`` with ``arguments``.

    A path or URL argument (:class:`~runner.canonical.CanonicalPath`,
    :class:`~runner.canonical.CanonicalURL`) is matched against the glob put in the same
    canonical form; a path glob's leading literal folders are resolved at this moment, against
    the same filesystem the argument was resolved against.
    """
    tool_pattern, _, condition = pattern.partition(":")
    if not fnmatch.fnmatchcase(tool, tool_pattern):
        return False
    if not condition:
        return True
    name, _, glob = condition.partition("=")
    if name not in arguments:
        return False
    value = arguments[name]
    return fnmatch.fnmatchcase(_argument_text(name, value), _canonical_glob(glob, value))


@dataclass(frozen=True)
class Policy:
    """The autonomy level and rules of one agent."""

    autonomy: AutonomyLevel
    rules: RulesSpec

    def decide(self, tool: str, risk: Risk, arguments: dict[str, Any]) -> Decision:
        """Allow, ask, deny or propose for one call of ``tool`` at ``risk``."""
        if any(rule_matches(p, tool, arguments) for p in self.rules.deny):
            return Decision.DENY
        if self.autonomy == AutonomyLevel.SUGGEST:
            return Decision.PROPOSE
        if any(rule_matches(p, tool, arguments) for p in self.rules.ask):
            return Decision.ASK
        if any(rule_matches(p, tool, arguments) for p in self.rules.allow):
            return Decision.ALLOW
        if risk in _RUNS_ALONE[self.autonomy]:
            return Decision.ALLOW
        return Decision.ASK

    def decide_statically(self, tool: str, risk: Risk) -> Decision:
        """The decision for a call with arguments no rule matches (for ``explain``)."""
        return self.decide(tool, risk, {})


@dataclass(frozen=True)
class Approval:
    """An approver's answer: approved or not, and a reason that goes back to the model."""

    approved: bool
    reason: str = ""
    for_run: bool = False


@dataclass
class ApprovalRequest:
    """What an approver is shown: the tool, its arguments, its risk, the model's reason.

    ``note`` says why it asks beyond the policy (an interrupted call that may have partly
    happened); ``done`` summarises what the run has done so far.
    """

    run_id: str
    call_id: str
    tool: str
    arguments: dict[str, Any]
    risk: Risk
    reason: str
    note: str = ""
    done: str = ""


class Approver(Protocol):
    """Answers "ask" decisions. Raises :class:`~runner.errors.RunStop` to end the run.

    Attributes:
        name: who decided, recorded with each decision (``terminal``, ``unattended:deny``).
    """

    name: str

    async def request(self, request: ApprovalRequest) -> Approval:
        """Approve or deny ``request``."""
        ...


class UnattendedApprover:
    """The approver when nobody is attached: the spec's ``unattended`` decides.

    ``fail`` ends the run with stop reason ``approval_required``; ``deny`` refuses the call
    and tells the model. (``queue`` pauses the run; it is handled by the loop's checkpoint.)
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.name = f"unattended:{mode}"

    async def request(self, request: ApprovalRequest) -> Approval:
        """Deny, end the run (``fail``), or pause it (``queue``), per ``unattended``."""
        from .errors import ApprovalRequired, WaitingApproval

        if self.mode == "deny":
            return Approval(False, "nobody is attached to approve it (unattended: deny)")
        if self.mode == "queue":
            raise WaitingApproval(
                f"tool call {request.tool} waits for approval: agentrun approve "
                f"{request.run_id} {request.call_id}, or agentrun deny {request.run_id} "
                f"{request.call_id} --reason TEXT; then agentrun resume {request.run_id}"
            )
        raise ApprovalRequired(
            f"tool call {request.tool} needs an approval and nobody is attached "
            f"(unattended: {self.mode})"
        )


class TerminalApprover:
    """Asks the person at the terminal: approve once, approve the tool for the run, or deny.

    Reads answers with ``click.prompt`` in a daemon thread so the event loop keeps running
    (heartbeats go on while the person thinks), and a run cancelled mid-question (Ctrl-C,
    SIGTERM, ``max_duration``) ends without waiting for a line that may never come.
    """

    name = "terminal"

    async def request(self, request: ApprovalRequest) -> Approval:
        """Show the call and ask."""
        import asyncio
        import contextlib
        import threading

        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Approval] = loop.create_future()

        def settle(approval: Approval | None, error: BaseException | None) -> None:
            if answer.done():
                return
            if error is not None:
                answer.set_exception(error)
            elif approval is not None:
                answer.set_result(approval)

        def ask() -> None:
            approval: Approval | None = None
            failure: BaseException | None = None
            try:
                approval = self._ask(request)
            except BaseException as error:  # click.Abort on end of input, for one
                failure = error
            with contextlib.suppress(RuntimeError):  # the run ended meanwhile: loop closed
                loop.call_soon_threadsafe(settle, approval, failure)

        threading.Thread(target=ask, name="agentrun-approval-prompt", daemon=True).start()
        return await answer

    def _ask(self, request: ApprovalRequest) -> Approval:
        import json

        import click

        click.echo("", err=True)
        click.echo(f"  approval needed: {request.tool} (risk {request.risk})", err=True)
        if request.note:
            click.echo(f"  note: {request.note}", err=True)
        shown = json.dumps(request.arguments, indent=2, ensure_ascii=False)
        for line in shown.splitlines()[:40]:
            click.echo(f"    {line}", err=True)
        if request.reason:
            click.echo(f"  the model says: {request.reason.strip()[:500]}", err=True)
        if request.done:
            click.echo(f"  so far: {request.done}", err=True)
        answer = click.prompt(
            "  [y] approve once, [a] approve this tool for the run, [n] deny",
            type=click.Choice(["y", "a", "n"]),
            err=True,
        )
        if answer == "n":
            reason = click.prompt("  reason (sent to the model)", default="", err=True)
            return Approval(False, reason)
        return Approval(True, "approved at the terminal", for_run=answer == "a")
