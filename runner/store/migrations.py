"""Named, ordered migrations of the run store.

Each migration runs in its own transaction, in order, once; the ``migrations`` table
records which have been applied. They run on every open of the store, so an upgraded
agentrun moves an old store forward. Never edit a released migration: add a new one.
(The pattern follows simonw/llm's ``migrations.py``.)
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

MIGRATIONS: list[tuple[str, list[str]]] = [
    (
        "0001_runs_model_calls_tool_calls",
        [
            """CREATE TABLE runs (
                id TEXT PRIMARY KEY,
                agent TEXT NOT NULL,
                status TEXT NOT NULL,
                stop_reason TEXT,
                model TEXT NOT NULL,
                spec_path TEXT NOT NULL,
                spec_sha256 TEXT NOT NULL,
                trigger TEXT NOT NULL,
                inputs_json TEXT NOT NULL,
                goal TEXT NOT NULL,
                final TEXT,
                result_json TEXT,
                message TEXT,
                traceback TEXT,
                steps INTEGER NOT NULL DEFAULT 0,
                tool_calls INTEGER NOT NULL DEFAULT 0,
                input_tokens INTEGER NOT NULL DEFAULT 0,
                output_tokens INTEGER NOT NULL DEFAULT 0,
                cost_usd REAL,
                duration_s REAL,
                pid INTEGER,
                started_at TEXT NOT NULL,
                heartbeat_at TEXT,
                ended_at TEXT
            )""",
            "CREATE INDEX runs_agent_started ON runs (agent, started_at)",
            "CREATE INDEX runs_status ON runs (status)",
            """CREATE TABLE model_calls (
                id INTEGER PRIMARY KEY,
                run_id TEXT NOT NULL REFERENCES runs (id),
                step INTEGER NOT NULL,
                model TEXT NOT NULL,
                input_tokens INTEGER NOT NULL,
                output_tokens INTEGER NOT NULL,
                cost_usd REAL,
                duration_s REAL NOT NULL,
                content TEXT,
                tool_calls_json TEXT NOT NULL,
                error TEXT,
                created_at TEXT NOT NULL
            )""",
            "CREATE INDEX model_calls_run ON model_calls (run_id, step)",
            """CREATE TABLE tool_calls (
                id INTEGER PRIMARY KEY,
                run_id TEXT NOT NULL REFERENCES runs (id),
                step INTEGER NOT NULL,
                call_id TEXT NOT NULL,
                tool TEXT NOT NULL,
                risk TEXT NOT NULL,
                arguments TEXT NOT NULL,
                decision TEXT NOT NULL,
                status TEXT NOT NULL,
                result TEXT NOT NULL,
                error TEXT,
                duration_s REAL NOT NULL,
                created_at TEXT NOT NULL
            )""",
            "CREATE INDEX tool_calls_run ON tool_calls (run_id, step)",
        ],
    ),
    (
        "0002_journal_messages_approvals",
        [
            "ALTER TABLE runs ADD COLUMN hostname TEXT",
            "ALTER TABLE runs ADD COLUMN active_s REAL NOT NULL DEFAULT 0",
            """CREATE TABLE messages (
                run_id TEXT NOT NULL REFERENCES runs (id),
                seq INTEGER NOT NULL,
                message_json TEXT NOT NULL,
                PRIMARY KEY (run_id, seq)
            )""",
            "CREATE INDEX tool_calls_run_call ON tool_calls (run_id, call_id)",
            """CREATE TABLE approvals (
                id INTEGER PRIMARY KEY,
                run_id TEXT NOT NULL REFERENCES runs (id),
                call_id TEXT NOT NULL,
                tool TEXT NOT NULL,
                arguments TEXT NOT NULL,
                arguments_sha256 TEXT NOT NULL,
                risk TEXT NOT NULL,
                reason TEXT NOT NULL,
                note TEXT NOT NULL DEFAULT '',
                status TEXT NOT NULL,
                decision_reason TEXT,
                decided_by TEXT,
                created_at TEXT NOT NULL,
                decided_at TEXT
            )""",
            "CREATE INDEX approvals_run ON approvals (run_id, call_id)",
            "CREATE INDEX approvals_status ON approvals (status)",
        ],
    ),
    (
        "0003_daemon_fires",
        [
            """CREATE TABLE fires (
                id INTEGER PRIMARY KEY,
                agent TEXT NOT NULL,
                trigger TEXT NOT NULL,
                trigger_index INTEGER NOT NULL,
                slot TEXT,
                run_id TEXT,
                outcome TEXT NOT NULL,
                reason TEXT NOT NULL DEFAULT '',
                idempotency_key TEXT,
                inputs_json TEXT NOT NULL DEFAULT '{}',
                created_at TEXT NOT NULL
            )""",
            # One row per scheduled slot, whatever became of it: a slot is never run twice.
            """CREATE UNIQUE INDEX fires_slot ON fires (agent, trigger_index, slot)
               WHERE slot IS NOT NULL""",
            # A retried manual trigger or a redelivered webhook does not start a second run.
            """CREATE UNIQUE INDEX fires_key ON fires (agent, idempotency_key)
               WHERE idempotency_key IS NOT NULL""",
            "CREATE INDEX fires_outcome ON fires (outcome)",
            """CREATE TABLE cron_cursors (
                agent TEXT NOT NULL,
                trigger_key TEXT NOT NULL,
                cursor TEXT NOT NULL,
                PRIMARY KEY (agent, trigger_key)
            )""",
            """CREATE TABLE notices (
                id INTEGER PRIMARY KEY,
                at TEXT NOT NULL,
                level TEXT NOT NULL,
                agent TEXT,
                run_id TEXT,
                message TEXT NOT NULL
            )""",
        ],
    ),
    (
        "0004_drop_redundant_tool_calls_index",
        [
            # tool_calls_run_call (run_id, call_id) serves every lookup by run_id as well, and
            # each index is one more page written per recorded call.
            "DROP INDEX tool_calls_run",
        ],
    ),
    (
        "0005_sealed_messages",
        [
            # The exact form of conversation messages that redaction changed, encrypted
            # (AES-256-GCM, key in seal.key beside the database), kept only while the run can
            # be resumed. Never exported or shown: a resume alone reads it.
            """CREATE TABLE sealed_messages (
                run_id TEXT NOT NULL REFERENCES runs(id),
                seq INTEGER NOT NULL,
                nonce BLOB NOT NULL,
                ciphertext BLOB NOT NULL,
                PRIMARY KEY (run_id, seq)
            )""",
        ],
    ),
    (
        "0006_tool_messages_refer_to_results",
        [
            # A tool message whose content is its call's recorded result keeps no second copy:
            # message_json holds "content": null and tool_call_row names the tool_calls row
            # whose result is the content. Rows written before keep their content whole.
            "ALTER TABLE messages ADD COLUMN tool_call_row INTEGER REFERENCES tool_calls (id)",
        ],
    ),
    (
        "0007_run_events",
        [
            # The append-only log of what happened to runs, in the order it was recorded: what
            # a live view follows (Server-Sent Events resume from an id) without rereading
            # every table. AUTOINCREMENT: an id is never reused, even after a delete. A model
            # or tool call's event names its row (data_json's "row") rather than copying its
            # content; runner/store/event_log.py.
            """CREATE TABLE run_events (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                run_id TEXT NOT NULL REFERENCES runs(id),
                type TEXT NOT NULL,
                at TEXT NOT NULL,
                data_json TEXT NOT NULL
            )""",
            "CREATE INDEX run_events_run ON run_events (run_id, id)",
        ],
    ),
    (
        "0008_runs_listed_by_agent_and_stop_reason",
        [
            # The runs list is newest first (by id) and filtered by agent or stop reason: with
            # these, a page reads its own rows. Without, an agent's newest 50 of 100,000 runs
            # sorted all 20,000 of its rows first (30 ms a page; bench/console.py).
            "CREATE INDEX runs_agent_id ON runs (agent, id)",
            "CREATE INDEX runs_stop_reason_id ON runs (stop_reason, id)",
        ],
    ),
    (
        "0009_checks_guards_questions_escalations_notifications",
        [
            # Success checks run after a final answer (runner/success_checks.py), one row per
            # check per attempt.
            """CREATE TABLE check_runs (
                id INTEGER PRIMARY KEY,
                run_id TEXT NOT NULL REFERENCES runs(id),
                step INTEGER NOT NULL,
                attempt INTEGER NOT NULL,
                check_index INTEGER NOT NULL,
                kind TEXT NOT NULL,
                name TEXT NOT NULL,
                passed INTEGER NOT NULL,
                output TEXT NOT NULL,
                duration_s REAL NOT NULL,
                created_at TEXT NOT NULL
            )""",
            "CREATE INDEX check_runs_run ON check_runs (run_id, id)",
            # A guard's answer for one tool call (runner/guards.py).
            """CREATE TABLE guard_decisions (
                id INTEGER PRIMARY KEY,
                run_id TEXT NOT NULL REFERENCES runs(id),
                call_id TEXT NOT NULL,
                tool TEXT NOT NULL,
                guard TEXT NOT NULL,
                decision TEXT NOT NULL,
                reason TEXT NOT NULL,
                failed INTEGER NOT NULL DEFAULT 0,
                duration_s REAL NOT NULL,
                created_at TEXT NOT NULL
            )""",
            "CREATE INDEX guard_decisions_run ON guard_decisions (run_id, id)",
            # Questions to a person (the ask_human tool): status waiting | answered |
            # timed_out | cancelled.
            """CREATE TABLE questions (
                run_id TEXT NOT NULL REFERENCES runs(id),
                call_id TEXT NOT NULL,
                question TEXT NOT NULL,
                context TEXT NOT NULL DEFAULT '',
                choices_json TEXT NOT NULL DEFAULT '[]',
                status TEXT NOT NULL,
                answer TEXT,
                answered_by TEXT,
                created_at TEXT NOT NULL,
                answered_at TEXT,
                expires_at TEXT,
                PRIMARY KEY (run_id, call_id)
            )""",
            "CREATE INDEX questions_status ON questions (status, expires_at)",
            # An escalated run (escalate_on) and what a person did with it: status open |
            # continued | closed.
            """CREATE TABLE escalations (
                id INTEGER PRIMARY KEY,
                run_id TEXT NOT NULL REFERENCES runs(id),
                stop_reason TEXT NOT NULL,
                message TEXT NOT NULL DEFAULT '',
                status TEXT NOT NULL,
                decided_by TEXT,
                decision_reason TEXT,
                created_at TEXT NOT NULL,
                decided_at TEXT
            )""",
            "CREATE INDEX escalations_run ON escalations (run_id, id)",
            "CREATE INDEX escalations_status ON escalations (status)",
            # More budget granted by a person to continue an escalated run; the effective
            # limit is the spec's plus the grants, never past budgets.ceilings.
            """CREATE TABLE budget_grants (
                id INTEGER PRIMARY KEY,
                run_id TEXT NOT NULL REFERENCES runs(id),
                budget TEXT NOT NULL,
                amount REAL NOT NULL,
                granted_by TEXT NOT NULL,
                reason TEXT NOT NULL DEFAULT '',
                created_at TEXT NOT NULL
            )""",
            "CREATE INDEX budget_grants_run ON budget_grants (run_id, id)",
            # One notification to one channel about one event: status pending | sent | failed.
            # (event_key, channel) is unique: the same event is never sent twice to a channel,
            # whichever process saw it first. The channel is its URL with secrets masked.
            """CREATE TABLE notifications (
                id INTEGER PRIMARY KEY,
                run_id TEXT NOT NULL REFERENCES runs(id),
                event TEXT NOT NULL,
                event_key TEXT NOT NULL,
                channel TEXT NOT NULL,
                status TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                error TEXT,
                created_at TEXT NOT NULL,
                sent_at TEXT
            )""",
            "CREATE UNIQUE INDEX notifications_once ON notifications (event_key, channel)",
            "CREATE INDEX notifications_run ON notifications (run_id, id)",
            # Signed decision links sent in notifications: single use, bound to a call's
            # arguments hash (or a question), expiring. The token itself is never stored,
            # only its nonce.
            """CREATE TABLE decision_links (
                nonce TEXT PRIMARY KEY,
                run_id TEXT NOT NULL REFERENCES runs(id),
                call_id TEXT NOT NULL,
                action TEXT NOT NULL,
                arguments_sha256 TEXT NOT NULL DEFAULT '',
                created_at TEXT NOT NULL,
                expires_at TEXT NOT NULL,
                used_at TEXT,
                used_by TEXT,
                outcome TEXT
            )""",
            "CREATE INDEX decision_links_run ON decision_links (run_id)",
            # Every refused use of a decision link (used twice, expired, other arguments, bad
            # signature), for the record.
            """CREATE TABLE decision_link_refusals (
                id INTEGER PRIMARY KEY,
                nonce TEXT,
                run_id TEXT,
                reason TEXT NOT NULL,
                remote TEXT,
                created_at TEXT NOT NULL
            )""",
            "ALTER TABLE runs ADD COLUMN escalated_from TEXT",
        ],
    ),
    (
        "0010_leases",
        [
            # A named lease (runner/store/leases.py): the daemons' leadership. term is the
            # fencing token, +1 at each change of holder; acquired and expires are seconds
            # since the Unix epoch on the database's clock (DOUBLE PRECISION: a 4-byte REAL
            # cannot hold them to the millisecond).
            """CREATE TABLE leases (
                name TEXT PRIMARY KEY,
                holder TEXT NOT NULL,
                term BIGINT NOT NULL,
                acquired DOUBLE PRECISION NOT NULL,
                expires DOUBLE PRECISION NOT NULL
            )""",
        ],
    ),
    (
        "0011_sandbox_events",
        [
            # What the sandbox of a run's processes did (runner/sandbox/): a connection the
            # egress proxy or http_request allowed or refused (kind 'connection', allowed
            # 0 or 1), or a resource limit a process hit (kind 'limit', limit_name the spec's key).
            """CREATE TABLE sandbox_events (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                run_id TEXT NOT NULL REFERENCES runs (id),
                at TEXT NOT NULL,
                source TEXT NOT NULL,
                call_id TEXT,
                kind TEXT NOT NULL,
                allowed INTEGER,
                host TEXT,
                port INTEGER,
                address TEXT,
                limit_name TEXT,
                detail TEXT NOT NULL DEFAULT ''
            )""",
            "CREATE INDEX sandbox_events_run ON sandbox_events (run_id, id)",
        ],
    ),
    (
        "0012_lineage",
        [
            # Tamper-evident lineage (runner/store/lineage.py): each run_events entry's
            # SHA-256 (hex) chained to its run's previous one (prev_hash, '' for the first;
            # both NULL for entries recorded before this migration), the run's newest hash,
            # and its Ed25519 signature ('<fingerprint> <base64>') when a signing key exists.
            "ALTER TABLE run_events ADD COLUMN prev_hash TEXT",
            "ALTER TABLE run_events ADD COLUMN hash TEXT",
            "ALTER TABLE runs ADD COLUMN head_hash TEXT",
            "ALTER TABLE runs ADD COLUMN head_signature TEXT",
        ],
    ),
]


def migrate(connection: sqlite3.Connection) -> list[str]:
    """Apply every pending migration, each in its own transaction; the names applied.

    The connection must be in autocommit mode (``isolation_level=None``).
    """
    connection.execute(
        "CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
    )
    done = {row[0] for row in connection.execute("SELECT name FROM migrations")}
    applied = []
    for name, statements in MIGRATIONS:
        if name in done:
            continue
        connection.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have applied it while we waited for the lock.
            if connection.execute("SELECT 1 FROM migrations WHERE name = ?", (name,)).fetchone():
                connection.execute("ROLLBACK")
                continue
            for statement in statements:
                connection.execute(statement)
            connection.execute(
                "INSERT INTO migrations (name, applied_at) VALUES (?, ?)",
                (name, datetime.now(UTC).isoformat()),
            )
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied
