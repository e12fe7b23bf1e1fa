"""The :class:`RunStore` interface: every write and query the rest of agentrun makes.

Callers hold a :class:`RunStore` and call its methods; only the implementations in
:mod:`runner.store` write SQL. ``RunStore(path)`` opens the default implementation,
:class:`runner.store.sqlite.SQLiteRunStore` (as ``Path(...)`` gives a ``PosixPath``);
:meth:`RunStore.default` the store ``AGENTRUN_STORE`` names, SQLite or
:class:`runner.store.postgres.PostgresRunStore`: a second backend is a second subclass
(both share their SQL: :class:`runner.store.recording.SQLRunStore`), not a change to any
caller.

Run ids are ULIDs (:func:`new_run_id`): 26 Crockford base-32 characters that sort by
creation time. Timestamps are UTC ISO-8601.
"""

from __future__ import annotations

import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any, TypeVar

from ..errors import StopReason, StoreError
from ..events import Event
from .leases import Lease
from .rows import (
    ApprovalRow,
    CheckRunRow,
    DecisionLinkRow,
    EscalationRow,
    FireOutcome,
    FireRow,
    GrantRow,
    GuardDecisionRow,
    ModelCallRow,
    NoticeRow,
    NotificationRow,
    QuestionRow,
    RunRow,
    SandboxEventRow,
    StatsRow,
    ToolCallRow,
    ToolCallTiming,
)

_T = TypeVar("_T")

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: Seconds between a running run's heartbeats.
HEARTBEAT_S = 5.0
#: A running run whose heartbeat is older than this many seconds counts as interrupted.
HEARTBEAT_STALE_S = 60.0


def since_instant(text: str, now: datetime | None = None) -> str:
    """The instant a ``since`` filter of the runs list names, as UTC ISO 8601 (ms).

    ``text`` is a date or date and time (UTC unless it says otherwise: ``2026-01-31``,
    ``2026-01-31T08:00+02:00``) or a duration back from ``now`` (default: the clock):
    ``90m``, ``2h``, ``7d``, or any duration a spec takes. ``agentrun runs --since`` and the
    API's ``since`` read it alike.

    Raises:
        ValueError: ``text`` is neither; the message gives the accepted forms.
    """
    from datetime import UTC, timedelta

    from ..spec import parse_duration

    value = text.strip()
    try:
        if value.endswith("d") and value[:-1].isdigit():
            delta = timedelta(days=int(value[:-1]))
        else:
            delta = timedelta(seconds=parse_duration(value))
        return ((now or datetime.now(UTC)) - delta).isoformat(timespec="milliseconds")
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a date (2026-01-31, 2026-01-31T08:00) "
            "nor a duration (90m, 2h, 7d)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def new_run_id(now_ms: int | None = None) -> str:
    """A ULID: 48 bits of milliseconds since the epoch, then 80 random bits, base 32."""
    value = ((now_ms if now_ms is not None else int(time.time() * 1000)) << 80) | secrets.randbits(
        80
    )
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


class ResumeClaimed(StoreError):
    """Another process claimed the run for resume first (or it is no longer resumable).

    Attributes:
        row: the run as it is now (``pid`` and ``hostname`` say who holds it).
    """

    def __init__(self, row: RunRow) -> None:
        self.row = row
        if row.status == "running":
            where = f"pid {row.pid} on {row.hostname}" if row.pid else "another process"
            message = f"run {row.id} is already running ({where}); it was not resumed twice"
        else:
            message = f"run {row.id} cannot be resumed: it is {row.stop_reason or row.status}"
        super().__init__(message)


class RunAlreadyRecorded(StoreError):
    """A run with this id is already in the store (another worker runs the same fire)."""


class RunStore(ABC):
    """The record of every run, and the daemon's own state (fires, cron cursors, notices).

    Implementations: :class:`runner.store.sqlite.SQLiteRunStore` (the default) and
    :class:`runner.store.postgres.PostgresRunStore`. ``RunStore(path)`` opens the first on
    the database file ``path``; :func:`runner.store.location.open_store` either.

    Raises:
        StoreError: from any method, when the store cannot be opened, migrated or read.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> RunStore:
        """``RunStore(path)`` is a :class:`~runner.store.sqlite.SQLiteRunStore` on ``path``."""
        implementation: type[RunStore] = cls
        if cls is RunStore:
            from .sqlite import SQLiteRunStore

            implementation = SQLiteRunStore
        return object.__new__(implementation)

    @classmethod
    def default(cls) -> RunStore:
        """The store ``AGENTRUN_STORE`` names, else ``runs.db`` in ``AGENTRUN_HOME``.

        See :mod:`runner.store.location`.

        Raises:
            StoreError: a bad ``AGENTRUN_STORE``, or a store that cannot be opened.
        """
        from .location import open_store, store_location

        return open_store(store_location())

    @abstractmethod
    def close(self) -> None:
        """Commit anything still pending and close the store."""

    # -- recording a run -------------------------------------------------------------------

    @abstractmethod
    def record(self, event: Event) -> None:
        """Write one loop event (the sink a :class:`runner.loop.Run` is given).

        Everything is committed before the run waits for anything (a model call, a tool, a
        person); the records of one step that follow each other with no wait in between
        share a transaction (``docs/run-store.md``, "When records are written").

        Raises:
            RunAlreadyRecorded: a :class:`~runner.events.RunStarted` whose run id is taken.
        """

    @abstractmethod
    def seal_message(self, run_id: str, seq: int, message: dict[str, Any]) -> None:
        """Keep the exact (unredacted) form of message ``seq`` of a run, encrypted."""

    @abstractmethod
    def sealed_messages(self, run_id: str) -> dict[int, dict[str, Any]]:
        """The sealed messages of a run, opened: ``{seq: message}``."""

    @abstractmethod
    def claim_for_resume(self, run_id: str) -> None:
        """Mark a resumable run ``running`` by this process, in one atomic step.

        Raises:
            ResumeClaimed: the run is running elsewhere, or not resumable.
            StoreError: there is no such run.
        """

    @abstractmethod
    def release_claim(self, run: RunRow) -> None:
        """Undo :meth:`claim_for_resume`; ``run`` is the run as it was read before it."""

    @abstractmethod
    def decide(
        self,
        run_id: str,
        call_id: str | None,
        approved: bool,
        reason: str = "",
        by: str = "cli",
        record_unasked: bool = False,
    ) -> int:
        """Approve or deny pending calls of ``run_id`` (all when ``call_id`` is None); how many."""

    @abstractmethod
    def sweep_interrupted(
        self, stale_after_s: float = HEARTBEAT_STALE_S, keep: Collection[str] = ()
    ) -> list[str]:
        """Mark runs whose process died as ``interrupted`` (except those in ``keep``); ids."""

    # -- oversight: checks, guards, questions, escalations, grants --------------------------

    @abstractmethod
    def check_runs(self, run_id: str) -> list[CheckRunRow]:
        """The success checks run for ``run_id``, in order."""

    @abstractmethod
    def guard_decisions(self, run_id: str) -> list[GuardDecisionRow]:
        """The guards' answers for ``run_id``'s tool calls, in order."""

    @abstractmethod
    def questions(
        self, run_id: str | None = None, status: str | None = "waiting"
    ) -> list[QuestionRow]:
        """Questions to people (``ask_human``), oldest first, of one run and/or one status."""

    @abstractmethod
    def question(self, run_id: str, call_id: str) -> QuestionRow | None:
        """One question, or None."""

    @abstractmethod
    def answer_question(self, run_id: str, call_id: str, answer: str, by: str = "cli") -> bool:
        """Answer a waiting question; False when it is not waiting. Logged for the daemon."""

    @abstractmethod
    def expire_questions(self, now: str | None = None) -> list[QuestionRow]:
        """Mark waiting questions past their ``expires_at`` (UTC ISO-8601) ``timed_out``."""

    @abstractmethod
    def escalations(
        self, run_id: str | None = None, status: str | None = "open"
    ) -> list[EscalationRow]:
        """Escalated runs' records, oldest first, of one run and/or one status."""

    @abstractmethod
    def decide_escalation(
        self,
        run_id: str,
        status: str,
        by: str,
        reason: str = "",
        grants: dict[str, float] | None = None,
    ) -> bool:
        """Close or continue an open escalation with ``grants``; False when none is open."""

    @abstractmethod
    def grants(self, run_id: str) -> list[GrantRow]:
        """The budget grants of ``run_id``, oldest first."""

    # -- the run event log -----------------------------------------------------------------

    @abstractmethod
    def events_since(
        self,
        after_id: int = 0,
        run_id: str | None = None,
        limit: int = 500,
        types: Collection[str] = (),
    ) -> list[dict[str, Any]]:
        """Run event log entries after ``after_id``, oldest first, of one run or all.

        Each is an event as the JSONL export has it (``type``, ``run_id``, ``at``, fields)
        with the log's ``id`` (an integer that only grows) first; see
        :mod:`runner.store.event_log` for the types. ``types``: only those, when given.
        """

    @abstractmethod
    def last_event_id(self) -> int:
        """The newest entry's id of the run event log; 0 when it is empty."""

    # -- reading runs ----------------------------------------------------------------------

    @abstractmethod
    def run(self, run_id: str) -> RunRow | None:
        """One run by id, or by a unique prefix of its id."""

    @abstractmethod
    def runs(
        self,
        limit: int = 20,
        agent: str | None = None,
        status: str | None = None,
        since: str | None = None,
        before_id: str | None = None,
    ) -> list[RunRow]:
        """The most recent runs, newest first (``status`` matches the stop reason too).

        ``before_id``: only runs whose id sorts before it (the next page, keyset paging).
        """

    @abstractmethod
    def runs_by_prefix(self, prefix: str, limit: int = 2) -> list[RunRow]:
        """Runs whose id starts with ``prefix`` (any case, no wildcards), newest first."""

    @abstractmethod
    def stats(self, since: str | None = None) -> list[StatsRow]:
        """Runs, stop reasons, tokens and USD per agent and per UTC day, newest day first."""

    @abstractmethod
    def export(self, run_id: str) -> list[dict[str, Any]]:
        """One run as a list of events, in order (the JSONL export format)."""

    @abstractmethod
    def export_with_chain(self, run_id: str) -> list[dict[str, Any]]:
        """:meth:`export`'s events, then the run's hash chain (entries, then its head).

        The ``log_entry`` lines and the ``log_head`` line: what ``agentrun runs export``
        prints and ``agentrun runs verify --file`` checks (``docs/audit.md``).

        Raises:
            StoreError: the store predates lineage (its migration not applied).
        """

    @abstractmethod
    def model_calls(self, run_id: str) -> list[ModelCallRow]:
        """The model calls of a run, in step order."""

    @abstractmethod
    def tool_calls(self, run_id: str) -> list[ToolCallRow]:
        """The tool calls of a run, in order."""

    @abstractmethod
    def journal(self, run_id: str, call_id: str) -> ToolCallRow | None:
        """The newest journal row of one tool call, or None when it never started."""

    @abstractmethod
    def messages(self, run_id: str) -> list[dict[str, Any]]:
        """The run's conversation as recorded (redacted), in order."""

    @abstractmethod
    def approvals(
        self, run_id: str | None = None, status: str | None = "pending"
    ) -> list[ApprovalRow]:
        """Approval requests, oldest first, optionally for one run and/or one status."""

    @abstractmethod
    def latest_approval(self, run_id: str, call_id: str) -> ApprovalRow | None:
        """The newest approval row of one call, or None."""

    @abstractmethod
    def active_seconds(self, run_id: str) -> float:
        """Run time recorded so far (waits for approval excluded), in seconds."""

    @abstractmethod
    def notices(self, run_id: str | None = None) -> list[NoticeRow]:
        """Notices (warnings of runs, spec errors of the daemon), oldest first."""

    @abstractmethod
    def sandbox_events(self, run_id: str) -> list[SandboxEventRow]:
        """What the run's sandbox did (connections allowed and refused, limits hit), in order."""

    # -- the daemon's own records ----------------------------------------------------------

    @abstractmethod
    def record_notice(
        self, level: str, message: str, agent: str | None = None, at: datetime | None = None
    ) -> None:
        """Keep a notice of the daemon's (a spec error, a refused webhook delivery).

        Args:
            level: ``error`` or ``warning``.
            message: what happened, in words.
            agent: the agent it concerns, or None.
            at: when (the daemon's clock), or None for now.
        """

    @abstractmethod
    def record_fire(self, fire: FireRow) -> bool:
        """Write a fire's row; False (nothing written) when its slot or key was recorded."""

    @abstractmethod
    def set_fire_outcome(self, run_id: str, outcome: FireOutcome, reason: str = "") -> None:
        """Change what became of the fire of run ``run_id``."""

    @abstractmethod
    def fire_of_run(self, run_id: str) -> FireRow | None:
        """The fire that started (or was to start) run ``run_id``, or None."""

    @abstractmethod
    def fire_by_key(self, agent: str, key: str) -> FireRow | None:
        """The agent's fire recorded under idempotency key ``key``, or None."""

    @abstractmethod
    def unstarted_fires(self) -> list[FireRow]:
        """Fires recorded ``started`` or ``queued`` whose runs never began, oldest first."""

    @abstractmethod
    def cron_cursor(self, agent: str, trigger_key: str) -> datetime | None:
        """The instant up to which every slot of a cron trigger was handled, or None."""

    @abstractmethod
    def set_cron_cursor(self, agent: str, trigger_key: str, cursor: datetime) -> None:
        """Persist that every slot of a cron trigger at or before ``cursor`` was handled."""

    @abstractmethod
    def last_ended_run(self, agent: str) -> RunRow | None:
        """The agent's run that ended most recently (by ``ended_at``), or None."""

    @abstractmethod
    def running_runs(self) -> list[RunRow]:
        """Runs recorded ``running`` (a daemon adopts their workers when it starts)."""

    @abstractmethod
    def paused_runs(self, triggers: Collection[str]) -> list[RunRow]:
        """Runs started by one of ``triggers`` that wait for a person or were interrupted.

        Oldest first; waiting for a person: for an approval, or escalated.
        """

    @abstractmethod
    def end_run_left_running(
        self, run_id: str, status: str, stop_reason: StopReason, message: str
    ) -> None:
        """End a run its worker left ``running`` (it exited without recording an end).

        Nothing changes when the run is no longer ``running``.
        """

    @abstractmethod
    def recent_tool_calls(
        self, agent: str, tools: Collection[str], since: datetime
    ) -> list[ToolCallTiming]:
        """Calls of ``tools`` by the agent's runs that started at or after ``since``."""

    # -- notifications and decision links (runner.store.notify_sqlite) ---------------------

    @abstractmethod
    def claim_notification(
        self, run_id: str, event: str, event_key: str, channel: str
    ) -> int | None:
        """Claim sending ``event_key`` to ``channel`` (masked); the row's id, None if taken."""

    @abstractmethod
    def notification_attempted(
        self, notification_id: int, status: str, attempts: int, error: str | None
    ) -> None:
        """Record an attempt: ``pending`` (more follow), ``sent`` or ``failed`` (the last)."""

    @abstractmethod
    def notifications(self, run_id: str | None = None) -> list[NotificationRow]:
        """Notifications, oldest first, of one run or of all."""

    @abstractmethod
    def add_decision_link(
        self,
        nonce: str,
        run_id: str,
        call_id: str,
        action: str,
        arguments_sha256: str,
        expires_at: str,
    ) -> None:
        """Record a decision link minted for a notification (its nonce, never the token)."""

    @abstractmethod
    def decision_link(self, nonce: str) -> DecisionLinkRow | None:
        """The decision link with ``nonce``, or None."""

    @abstractmethod
    def use_decision_link(
        self, nonce: str, by: str, decide: Callable[[], tuple[_T, str]]
    ) -> tuple[_T, str] | None:
        """Mark link ``nonce`` used and run ``decide`` in one transaction; None if used."""

    @abstractmethod
    def refuse_decision_link(
        self, nonce: str | None, run_id: str | None, reason: str, remote: str | None
    ) -> None:
        """Record a refused use of a decision link."""

    @abstractmethod
    def decision_link_refusals(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Refused uses of decision links, oldest first, of one run or of all."""

    # -- leases (runner/store/leases.py: portable SQL, the database's clock) ------------------

    @abstractmethod
    def acquire_lease(self, name: str, holder: str, ttl_s: float) -> Lease | None:
        """Take lease ``name`` for ``ttl_s`` seconds, or renew it; the lease if ``holder`` has it.

        Atomically: taken when free or expired, renewed when ``holder`` holds it; else None.

        Raises:
            ValueError: ``ttl_s`` is not positive.
        """

    @abstractmethod
    def release_lease(self, name: str, holder: str) -> bool:
        """Let lease ``name`` expire now if ``holder`` holds it; True if it did."""

    @abstractmethod
    def lease(self, name: str) -> Lease | None:
        """Lease ``name`` (held or expired), or None if never taken."""
