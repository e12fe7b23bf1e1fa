"""Deciding a paused run's pending tool calls: the one operation behind every face.

``agentrun approve`` / ``deny``, the API's ``POST /api/v1/runs/{run}/approvals[/{call}]``
and (later) the console's buttons all call :func:`decide`, so they find the run, refuse
the same way and record the decision with the same store call; they differ only in who
they record as its maker (``by``: ``cli``, ``api:console@127.0.0.1``, ...). An escalated
run is continued or closed the same way, by :func:`continue_escalated` and
:func:`close_escalated`, and a question the model asked a person (``ask_human``) is answered
by :func:`answer` (``agentrun answer``, ``POST /api/v1/runs/{run}/questions/{call}/answer``,
the console's answer form).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import SpecError, StopReason, UsageError
from .escalation import GrantRefused, check_grants, grant_amount
from .spec.checks_escalation import NEEDS_GRANT
from .store import EscalationRow, QuestionRow, RunRow, RunStore

if TYPE_CHECKING:
    from .spec import AgentSpec


class Refusal(StrEnum):
    """Why a decision was not recorded (the API maps each to a status code)."""

    NO_RUN = "no_run"
    """No run has that id, or the prefix names more than one (HTTP 404)."""
    NO_CALL = "no_call"
    """The run never asked for approval of that call (HTTP 404)."""
    DECIDED = "decided"
    """The call was already decided (HTTP 409)."""
    NOTHING_PENDING = "nothing_pending"
    """Deciding all of a run's calls, and none is pending (HTTP 409)."""
    NOT_ESCALATED = "not_escalated"
    """Continuing or closing a run that was never escalated (HTTP 409)."""
    GRANT_INVALID = "grant_invalid"
    """A grant names no grantable limit, has a bad amount, or lacks the limit the run's
    escalation needs raised (HTTP 422)."""
    GRANT_REFUSED = "grant_refused"
    """A grant past ``budgets.ceilings``, of a limit without a ceiling, or of a limit the spec
    leaves unset (HTTP 403)."""
    SPEC_CHANGED = "spec_changed"
    """The run's spec file is gone or changed since the run started (HTTP 409)."""
    NO_QUESTION = "no_question"
    """The run never asked that question, or (no call given) no question of it waits, or
    several do (HTTP 404)."""
    ANSWERED = "answered"
    """The question was already answered, or timed out, or its run ended (HTTP 409)."""
    NOT_A_CHOICE = "not_a_choice"
    """The question has choices and the answer is none of them, or is empty (HTTP 422)."""


class DecisionRefused(UsageError):
    """A decision that cannot be made; the message says why and what to do instead.

    Attributes:
        refusal: which case it is.
    """

    def __init__(self, message: str, refusal: Refusal) -> None:
        super().__init__(message)
        self.refusal = refusal


@dataclass(frozen=True)
class Decided:
    """What :func:`decide` recorded.

    Attributes:
        run: the run, as it was found (its full id even when a prefix was given).
        approved: approve (True) or deny (False).
        calls: the ids of the calls decided, in the order they were asked.
    """

    run: RunRow
    approved: bool
    calls: tuple[str, ...]


def find_run(store: RunStore, run_id: str) -> RunRow:
    """The run with id ``run_id`` or a unique prefix of it.

    Raises:
        DecisionRefused: ``NO_RUN`` when none matches or the prefix is ambiguous (the
            store's :meth:`~runner.store.RunStore.run` does not tell the two apart).
    """
    # Run ids are letters and digits; anything else (``%``, ``_``: wildcards of the store's
    # prefix match) names no run.
    row = store.run(run_id) if run_id.isascii() and run_id.isalnum() else None
    if row is None:
        raise DecisionRefused(
            f"no run with id {run_id!r} (or the prefix is ambiguous); see `agentrun runs`",
            Refusal.NO_RUN,
        )
    return row


def decide(
    store: RunStore, run_id: str, call_id: str | None, approved: bool, reason: str, by: str
) -> Decided:
    """Approve or deny one pending call of a run, or all of them when ``call_id`` is None.

    Args:
        store: the run store.
        run_id: the run's id or a unique prefix.
        call_id: the tool call's id as stored (``agentrun approvals`` lists them), or None.
        approved: approve (True) or deny (False).
        reason: why, in words; a denial's reason is sent to the model when the run resumes.
        by: who decides (``cli``, ``api:<label>@<address>``, ``console:<label>@<address>``).

    The call's state is read before it is decided, since the store's ``decide`` records
    an unknown call as a new decided row for any maker but ``cli`` (what the terminal
    approver needs). Two deciders of one call at the same moment: the store's update
    decides it once; the other is refused as ``DECIDED``.

    Raises:
        DecisionRefused: no such run (``NO_RUN``), no such call (``NO_CALL``), the call was
            decided already (``DECIDED``), or no call of the run is pending
            (``NOTHING_PENDING``).
    """
    run = find_run(store, run_id)
    if call_id is None:
        pending = tuple(row["call_id"] for row in store.approvals(run.id))
    else:
        latest = store.latest_approval(run.id, call_id)
        if latest is None:
            raise DecisionRefused(
                f"run {run.id} never asked for approval of call {call_id!r}; "
                "see `agentrun approvals`",
                Refusal.NO_CALL,
            )
        if latest["status"] != "pending":
            raise _decided_already(run, call_id, latest["status"], latest["decided_by"])
        pending = (call_id,)
    count = store.decide(run.id, call_id, approved, reason, by=by) if pending else 0
    if count == 0:
        if call_id is not None:
            latest = store.latest_approval(run.id, call_id)
            status = latest["status"] if latest else "decided"
            raise _decided_already(run, call_id, status, latest["decided_by"] if latest else None)
        raise DecisionRefused(
            f"run {run.id} has no pending approval for any call; see `agentrun approvals`",
            Refusal.NOTHING_PENDING,
        )
    return Decided(run, approved, pending)


def _decided_already(
    run: RunRow, call_id: str, status: str, decided_by: str | None
) -> DecisionRefused:
    maker = f" by {decided_by}" if decided_by else ""
    return DecisionRefused(
        f"run {run.id} has no pending approval for call {call_id!r}: it was {status}{maker}; "
        "see `agentrun approvals`",
        Refusal.DECIDED,
    )


# -- escalated runs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class EscalationDecided:
    """What :func:`continue_escalated` or :func:`close_escalated` recorded.

    Attributes:
        run: the run, as it was found before the decision.
        escalation: its escalation, as it was open.
        grants: limit name → amount added (empty when closed, or continued without).
        limits: limit name → the run's limit after the grants, for the names granted.
    """

    run: RunRow
    escalation: EscalationRow
    grants: dict[str, float]
    limits: dict[str, float]


def run_spec(run: RunRow) -> AgentSpec:
    """The spec run ``run`` ran, loaded again from its file.

    Raises:
        DecisionRefused: ``SPEC_CHANGED`` when the file is gone, changed since the run
            started (its SHA-256), or no longer loads: the recorded conversation belongs to
            the version that ran (``agentrun resume RUN --force`` continues with a new one).
    """
    from .spec import load_spec

    path = Path(run.spec_path)
    try:
        source = path.read_bytes()
    except OSError:
        raise DecisionRefused(
            f"the spec of run {run.id} is gone: {path}", Refusal.SPEC_CHANGED
        ) from None
    if hashlib.sha256(source).hexdigest() != run.spec_sha256:
        raise DecisionRefused(
            f"{path} changed since run {run.id} started: its ceilings cannot be trusted; "
            f"continue it with: agentrun resume {run.id} --force --add NAME=VALUE",
            Refusal.SPEC_CHANGED,
        )
    try:
        return load_spec(path, source)
    except SpecError as error:
        raise DecisionRefused(
            f"the spec of run {run.id} no longer loads: {error}", Refusal.SPEC_CHANGED
        ) from None


def open_escalation(store: RunStore, run_id: str) -> tuple[RunRow, EscalationRow]:
    """The run (id or unique prefix) and its open escalation.

    Raises:
        DecisionRefused: no such run (``NO_RUN``), a run never escalated
            (``NOT_ESCALATED``), or one whose escalation was decided already (``DECIDED``).
    """
    run = find_run(store, run_id)
    if run.stop_reason == StopReason.ESCALATED:
        found = store.escalations(run.id)
        if found:
            return run, found[-1]
    decided = store.escalations(run.id, status=None)
    if not decided:
        raise DecisionRefused(
            f"run {run.id} is not escalated (stop reason {run.stop_reason or run.status}); "
            "see `agentrun escalations`",
            Refusal.NOT_ESCALATED,
        )
    last = decided[-1]
    maker = f" by {last['decided_by']}" if last["decided_by"] else ""
    raise DecisionRefused(
        f"run {run.id}'s escalation was {last['status']}{maker} already; "
        "see `agentrun escalations`",
        Refusal.DECIDED,
    )


def continue_escalated(
    store: RunStore,
    spec: AgentSpec | None,
    run_id: str,
    grants: Mapping[str, Any],
    reason: str,
    by: str,
) -> EscalationDecided:
    """Continue an escalated run, with more budget: record the decision and its grants.

    The run itself goes on when it is resumed (``agentrun resume``; a daemon's run by
    itself), with its spec's limits raised by every grant recorded for it
    (:func:`runner.escalation.effective_spec`).

    Args:
        store: the run store.
        spec: the run's spec (its limits and ceilings); None to load it from the run's
            file (:func:`run_spec`).
        run_id: the run's id or a unique prefix.
        grants: limit name → amount to add (a number, or its text; ``max_duration`` also a
            duration such as ``15m``). A run escalated by a budget stop (``max_steps``, ...)
            or ``checks_failed`` needs a grant of that limit (``max_check_retries``): it would
            stop again at once without one; other reasons continue without grants.
        reason: why, in words (recorded).
        by: who decides (``cli``, ``api:<label>@<address>``, ``console:<label>@<address>``).

    Of two people continuing (or closing) at once, the store's update lets one decide;
    the other is refused as ``DECIDED``.

    Raises:
        DecisionRefused: ``NO_RUN``, ``NOT_ESCALATED``, ``DECIDED`` (see
            :func:`open_escalation`), ``SPEC_CHANGED`` (see :func:`run_spec`),
            ``GRANT_INVALID`` (an unknown limit, a bad amount, the needed limit missing) or
            ``GRANT_REFUSED`` (past a ceiling, no ceiling, an unset limit); nothing is
            recorded then.
    """
    run, escalation = open_escalation(store, run_id)
    try:
        amounts = {name: grant_amount(name, value) for name, value in grants.items()}
    except GrantRefused as error:
        raise DecisionRefused(str(error), Refusal.GRANT_INVALID) from None
    need = NEEDS_GRANT.get(StopReason(escalation["stop_reason"]))
    if need is not None and need not in amounts:
        raise DecisionRefused(
            f"run {run.id} stopped at {escalation['stop_reason']}: it would stop again at once "
            f"without more of it; grant some: agentrun resume {run.id} --add {need}=N "
            f"(or close it: agentrun runs close {run.id})",
            Refusal.GRANT_INVALID,
        )
    if spec is None:
        spec = run_spec(run)
    try:
        limits = check_grants(spec, store.grants(run.id), amounts)
    except GrantRefused as error:
        raise DecisionRefused(f"run {run.id}: {error}", Refusal.GRANT_REFUSED) from None
    if not store.decide_escalation(run.id, "continued", by, reason, grants=amounts):
        raise _decided_first(store, run)
    return EscalationDecided(run, escalation, amounts, limits)


def close_escalated(store: RunStore, run_id: str, reason: str, by: str) -> EscalationDecided:
    """Close an escalated run: it ends with the stop reason that escalated it, for good.

    Args: as :func:`continue_escalated`'s (no spec, no grants).

    Raises:
        DecisionRefused: ``NO_RUN``, ``NOT_ESCALATED`` or ``DECIDED`` (see
            :func:`open_escalation`).
    """
    run, escalation = open_escalation(store, run_id)
    if not store.decide_escalation(run.id, "closed", by, reason):
        raise _decided_first(store, run)
    return EscalationDecided(run, escalation, {}, {})


def _decided_first(store: RunStore, run: RunRow) -> DecisionRefused:
    """The refusal of a decision that lost to another person's on the same escalation."""
    records = store.escalations(run.id, status=None)
    last = records[-1] if records else None
    who = f" by {last['decided_by']}" if last is not None and last["decided_by"] else ""
    status = last["status"] if last is not None else "decided"
    return DecisionRefused(f"run {run.id}: its escalation was {status}{who} first", Refusal.DECIDED)


# ---------------------------------------------------------------------------------------------
# answering questions (the ask_human tool)


@dataclass(frozen=True)
class Answered:
    """What :func:`answer` recorded.

    Attributes:
        run: the run, as it was found (its full id even when a prefix was given).
        question: the question, as it was before the answer.
        answer: the answer recorded (a choice in its own spelling when choices were given).
    """

    run: RunRow
    question: QuestionRow
    answer: str


def waiting_questions(store: RunStore, run_id: str | None = None) -> list[QuestionRow]:
    """Questions that wait for a person (of run ``run_id``, a full id, or of every run).

    Oldest first. Questions past their ``expires_at`` are marked ``timed_out`` first
    (:meth:`~runner.store.RunStore.expire_questions`). Only questions of paused runs
    (status ``waiting_input``, or another resumable stop) are listed: a run that is
    running asks at its terminal, and one that ended for good waits for nothing.
    """
    store.expire_questions()
    runs: dict[str, RunRow | None] = {}
    waiting = []
    for row in store.questions(run_id, status="waiting"):
        if row["run_id"] not in runs:
            runs[row["run_id"]] = store.run(row["run_id"])
        run = runs[row["run_id"]]
        if run is not None and run.status != "running" and run.resumable:
            waiting.append(row)
    return waiting


def answer(store: RunStore, run_id: str, call_id: str | None, text: str, by: str) -> Answered:
    """Answer a run's question to a person (the ``ask_human`` tool's call ``call_id``).

    The one operation behind ``agentrun answer``, the API's
    ``POST /api/v1/runs/{run}/questions/{call}/answer`` and the console's answer form.

    Args:
        store: the run store.
        run_id: the run's id or a unique prefix.
        call_id: the ``ask_human`` call's id (``agentrun questions`` lists them), or None
            when the run has exactly one waiting question.
        text: the answer; surrounding white space is dropped. When the question has
            choices it must be one of them (compared without regard to case; the choice's
            own spelling is recorded).
        by: who answers (``cli``, ``api:<label>@<address>``, ``console:<label>@<address>``).

    A question past its ``answer_timeout`` is marked ``timed_out`` and refused. Two
    answerers of one question at the same moment: the store's update records one; the
    other is refused as ``ANSWERED``.

    Raises:
        DecisionRefused: no such run (``NO_RUN``); no such question, none waiting, or
            several waiting and no call named (``NO_QUESTION``); answered already, timed
            out, or its run is running or ended (``ANSWERED``); an empty answer or not one of the
            choices (``NOT_A_CHOICE``).
    """
    run = find_run(store, run_id)
    if call_id is None:
        waiting = waiting_questions(store, run.id)
        if not waiting:
            raise DecisionRefused(
                f"run {run.id} has no question waiting for an answer; see `agentrun questions`",
                Refusal.NO_QUESTION,
            )
        if len(waiting) > 1:
            calls = ", ".join(row["call_id"] for row in waiting)
            raise DecisionRefused(
                f"run {run.id} has {len(waiting)} questions waiting ({calls}): name one, "
                f"agentrun answer {run.id} CALL TEXT",
                Refusal.NO_QUESTION,
            )
        question = waiting[0]
    else:
        store.expire_questions()
        found = store.question(run.id, call_id)
        if found is None:
            raise DecisionRefused(
                f"run {run.id} never asked a question with call {call_id!r}; "
                "see `agentrun questions`",
                Refusal.NO_QUESTION,
            )
        question = found
    if question["status"] != "waiting":
        raise _answered_already(run, question)
    if run.status == "running":
        raise DecisionRefused(
            f"run {run.id} is running: its question is asked at its terminal, or the run is "
            "about to pause; answer there, or here once `agentrun questions` lists it",
            Refusal.ANSWERED,
        )
    if not run.resumable:
        raise DecisionRefused(
            f"run {run.id} ended ({run.stop_reason or run.status}): nothing waits for an "
            "answer any more",
            Refusal.ANSWERED,
        )
    given = text.strip()
    if not given:
        raise DecisionRefused(
            "an answer cannot be empty; say what the model should know", Refusal.NOT_A_CHOICE
        )
    choices = question["choices"]
    if choices:
        matching = [c for c in choices if c == given] or [
            c for c in choices if c.casefold() == given.casefold()
        ]
        if len(matching) != 1:
            listed = ", ".join(repr(c) for c in choices)
            raise DecisionRefused(
                f"{given!r} is not one of the choices of call {question['call_id']}: {listed}",
                Refusal.NOT_A_CHOICE,
            )
        given = matching[0]
    if not store.answer_question(run.id, question["call_id"], given, by=by):
        latest = store.question(run.id, question["call_id"])
        raise _answered_already(run, latest or question)
    return Answered(run, question, given)


def _answered_already(run: RunRow, question: QuestionRow) -> DecisionRefused:
    call = question["call_id"]
    if question["status"] == "timed_out":
        what = f"it timed out at {question['expires_at']}"
    else:
        maker = f" by {question['answered_by']}" if question["answered_by"] else ""
        what = f"it was {question['status']}{maker}"
    return DecisionRefused(
        f"the question of call {call!r} of run {run.id} no longer waits: {what}; "
        "see `agentrun questions`",
        Refusal.ANSWERED,
    )
