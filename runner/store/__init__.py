"""The run store: every run, model call, tool call and approval, and the daemon's fires.

The only package that holds SQL. Everything else calls the typed methods of the
:class:`RunStore` interface::

    interface.py   RunStore: every write and query agentrun makes; ids, heartbeats, errors
    rows.py        what comes back: RunRow, FireRow, ToolCallRow, ... (typed)
    location.py    which store a process opens: AGENTRUN_STORE, else runs.db in AGENTRUN_HOME
    database.py    the connection the SQL runs on: the subset of sqlite3 both backends give
    recording.py   SQLRunStore: recording runs as they happen, in SQL both backends take
    schedule.py    its part for the daemon's fires and cron cursors
    oversight.py   its part for checks, guards, questions, escalations, budget grants
    notifications.py  its part for notifications and decision links
    queries.py     its part that reads runs back: lists, lookups, stats, the export
    leases.py      its part for named leases (the daemons' leadership)
    sqlite.py      SQLiteRunStore: the default, one file under AGENTRUN_HOME
    postgres.py    PostgresRunStore: one PostgreSQL database many machines share (psycopg)
    migrations.py  the schema as named, ordered migrations, applied on every open
    migrations_postgres.py  their PostgreSQL form, applied once under an advisory lock
    copy.py        a SQLite store's whole history moved to PostgreSQL, verified
    export.py      one run as the JSONL export's events, from its rows (any backend)
    event_log.py   the append-only run event log a live view follows (SSE ids)
    lineage.py     that log as a SHA-256 hash chain per run, heads signed (Ed25519), verified
    sealing.py     the exact form of redacted messages, encrypted, for resume alone

``RunStore(path)`` opens a :class:`SQLiteRunStore`; ``RunStore.default()`` the store
``AGENTRUN_STORE`` names (:mod:`runner.store.location`). psycopg is imported only when a
PostgreSQL store is opened.
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
    SandboxEventRow,
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
    "SandboxEventRow",
    "StatsRow",
    "ToolCallRow",
    "ToolCallTiming",
    "new_run_id",
    "since_instant",
]
