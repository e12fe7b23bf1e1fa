"""The run store: every run, model call, tool call and approval, and the daemon's fires.

The only package that holds SQL. Everything else calls the typed methods of the
:class:`RunStore` interface::

    interface.py   RunStore: every write and query agentrun makes; ids, heartbeats, errors
    rows.py        what comes back: RunRow, FireRow, ToolCallRow, ... (typed)
    sqlite.py      SQLiteRunStore: the default implementation, one file under AGENTRUN_HOME
    schedule_sqlite.py  its part for the daemon's fires and cron cursors
    oversight_sqlite.py its part for checks, guards, questions, escalations, budget grants
    notify_sqlite.py    its part for notifications and decision links
    queries_sqlite.py   its part that reads runs back: lists, lookups, stats, the export
    migrations.py  the SQLite schema as named, ordered migrations, applied on every open
    export.py      one run as the JSONL export's events, from its rows (any backend)
    event_log.py   the append-only run event log a live view follows (SSE ids)
    sealing.py     the exact form of redacted messages, encrypted, for resume alone

``RunStore(path)`` and ``RunStore.default()`` open a :class:`SQLiteRunStore`.
"""

from __future__ import annotations

from .interface import (
    HEARTBEAT_S,
    HEARTBEAT_STALE_S,
    ResumeClaimed,
    RunAlreadyRecorded,
    RunStore,
    new_run_id,
    since_instant,
)
from .rows import (
    RESUMABLE_STOPS,
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
    StatsRow,
    ToolCallRow,
    ToolCallTiming,
)
from .sqlite import SQLiteRunStore

__all__ = [
    "HEARTBEAT_S",
    "HEARTBEAT_STALE_S",
    "RESUMABLE_STOPS",
    "ApprovalRow",
    "CheckRunRow",
    "DecisionLinkRow",
    "EscalationRow",
    "FireOutcome",
    "FireRow",
    "GrantRow",
    "GuardDecisionRow",
    "ModelCallRow",
    "NoticeRow",
    "NotificationRow",
    "QuestionRow",
    "ResumeClaimed",
    "RunAlreadyRecorded",
    "RunRow",
    "RunStore",
    "SQLiteRunStore",
    "StatsRow",
    "ToolCallRow",
    "ToolCallTiming",
    "new_run_id",
    "since_instant",
]
