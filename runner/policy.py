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
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
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


@dataclass
class Question:
    """A question the model asks a person (the ``ask_human`` tool).

    ``choices`` empty means a free-text answer; ``expires_at`` (UTC ISO-8601) is when the
    wait ends with stop reason ``answer_timeout``, None for no limit.
    """

    run_id: str
    call_id: str
    question: str
    context: str = ""
    choices: list[str] = field(default_factory=list)
    expires_at: str | None = None

    def seconds_left(self) -> float | None:
        """Seconds until :attr:`expires_at` (0 when past), or None without a limit."""
        if self.expires_at is None:
            return None
        from datetime import UTC, datetime

        left = datetime.fromisoformat(self.expires_at) - datetime.now(UTC)
        return max(left.total_seconds(), 0.0)


class Approver(Protocol):
    """Answers "ask" decisions and the model's questions (``ask_human``).

    Either raises :class:`~runner.errors.RunStop` to end (or pause) the run.

    Attributes:
        name: who decided, recorded with each decision (``terminal``, ``unattended:deny``).
    """

    name: str

    async def request(self, request: ApprovalRequest) -> Approval:
        """Approve or deny ``request``."""
        ...

    async def answer(self, question: Question) -> str:
        """The answer to ``question``, as text.

        Raises:
            RunStop: :class:`~runner.errors.WaitingInput` to pause the run until a person
                answers elsewhere, :class:`~runner.errors.AnswerTimeout` when nobody
                answered by ``question.expires_at``, or another stop that ends the run.
        """
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

    async def answer(self, question: Question) -> str:
        """Per ``unattended``: say nobody can answer (``deny``), pause (``queue``), or end.

        Raises:
            WaitingInput: ``queue``: the run pauses until ``agentrun answer`` (or the API,
                or the console) answers and the run is resumed.
            ApprovalRequired: ``fail``: the run ends, its message says a question needed
                an answer.
        """
        from .errors import ApprovalRequired, WaitingInput

        if self.mode == "deny":
            return (
                "nobody is attached to answer questions (unattended: deny); "
                "go on without an answer, or say in your final answer what you need"
            )
        if self.mode == "queue":
            raise WaitingInput(
                f"a question waits for an answer: agentrun answer {question.run_id} "
                f"{question.call_id} TEXT; then agentrun resume {question.run_id}"
            )
        raise ApprovalRequired(
            f"the model asked a question that needed an answer and nobody is attached "
            f"(unattended: {self.mode}): {question.question!r}"
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

    async def answer(self, question: Question) -> str:
        """Show the question and read the answer (a choice's number or text, or free text).

        The run's clock is stopped by the loop while this waits, as for approvals.

        Raises:
            AnswerTimeout: nobody answered by ``question.expires_at``.
        """
        import asyncio

        from .errors import AnswerTimeout

        left = question.seconds_left()
        try:
            async with asyncio.timeout(left):
                return await _prompt_in_thread(lambda stop: self._ask_question(question, stop))
        except TimeoutError:
            raise AnswerTimeout(
                f"nobody answered the question of call {question.call_id} by "
                f"{question.expires_at} (the ask_human tool's answer_timeout)"
            ) from None

    def _ask_question(self, question: Question, stop: threading.Event) -> str:
        import click

        click.echo("", err=True)
        click.echo("  question from the model:", err=True)
        for line in question.question.strip().splitlines()[:40]:
            click.echo(f"    {line}", err=True)
        if question.context.strip():
            click.echo("  context:", err=True)
            for line in question.context.strip().splitlines()[:40]:
                click.echo(f"    {line}", err=True)
        if question.expires_at is not None:
            click.echo(f"  answer by {question.expires_at[:19].replace('T', ' ')} UTC", err=True)
        if not question.choices:
            while True:
                text = _read_line("  your answer: ", stop)
                if text:
                    return text
        for number, choice in enumerate(question.choices, 1):
            click.echo(f"    [{number}] {choice}", err=True)
        while True:
            picked = _read_line("  your choice (number or text): ", stop)
            if picked.isdigit() and 1 <= int(picked) <= len(question.choices):
                return question.choices[int(picked) - 1]
            if picked in question.choices:
                return picked
            click.echo(f"  {picked!r} is not one of the choices", err=True)


def _read_line(prompt: str, stop: threading.Event) -> str:
    """Show ``prompt`` on stderr and read one line from stdin, stripped.

    Waits with ``select`` in short slices rather than blocking in ``readline``, so that once
    ``stop`` is set (the wait timed out or the run was cancelled) the reading thread ends
    instead of holding stdin's lock while the interpreter shuts down.

    Raises:
        click.Abort: end of input, or ``stop`` was set.
    """
    import select
    import sys

    import click

    click.echo(prompt, nl=False, err=True)
    while not stop.is_set():
        ready, _, _ = select.select([sys.stdin], [], [], 0.2)
        if ready:
            line = sys.stdin.readline()
            if not line:
                raise click.Abort()
            return line.strip()
    raise click.Abort()


async def _prompt_in_thread(ask: Callable[[threading.Event], str]) -> str:
    """``ask(stop)`` (a blocking prompt) on a daemon thread; its result, awaited.

    The event loop keeps running meanwhile. When the wait ends without an answer (a
    timeout, the run cancelled) ``stop`` is set, and ``ask`` ends its read
    (:func:`_read_line`).
    """
    import asyncio
    import contextlib

    loop = asyncio.get_running_loop()
    stop = threading.Event()
    answer: asyncio.Future[str] = loop.create_future()

    def settle(text: str | None, error: BaseException | None) -> None:
        if answer.done():
            return
        if error is not None:
            answer.set_exception(error)
        else:
            answer.set_result(text or "")

    def work() -> None:
        text: str | None = None
        failure: BaseException | None = None
        try:
            text = ask(stop)
        except BaseException as error:  # click.Abort on end of input, for one
            failure = error
        with contextlib.suppress(RuntimeError):  # the run ended meanwhile: loop closed
            loop.call_soon_threadsafe(settle, text, failure)

    threading.Thread(target=work, name="agentrun-question-prompt", daemon=True).start()
    try:
        return await answer
    finally:
        stop.set()
