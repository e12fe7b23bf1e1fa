"""Deciding a paused run's pending tool calls: the one operation behind every face.

``agentrun approve`` / ``deny``, the API's ``POST /api/v1/runs/{run}/approvals[/{call}]``
and (later) the console's buttons all call :func:`decide`, so they find the run, refuse
the same way and record the decision with the same store call; they differ only in who
they record as its maker (``by``: ``cli``, ``api:console@127.0.0.1``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .errors import UsageError
from .store import RunRow, RunStore


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
