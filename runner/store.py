"""The run store: every run, model call and tool call, in SQLite under ``AGENTRUN_HOME``.

One :class:`RunStore` per process. It migrates the database forward on open
(:mod:`runner.migrations`), uses WAL so readers never block a running agent, and records
:mod:`runner.events` as they happen (:meth:`RunStore.record`). Run ids are ULIDs: 26
Crockford base-32 characters that sort by creation time. Timestamps are UTC ISO-8601.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import StoreError
from .events import Event, ModelCalled, RunFinished, RunStarted, ToolCalled
from .migrations import migrate

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_run_id(now_ms: int | None = None) -> str:
    """A ULID: 48 bits of milliseconds since the epoch, then 80 random bits, base 32."""
    value = ((now_ms if now_ms is not None else int(time.time() * 1000)) << 80) | secrets.randbits(
        80
    )
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class RunRow:
    """One run as stored (see ``runs`` in :mod:`runner.migrations`)."""

    id: str
    agent: str
    status: str
    stop_reason: str | None
    model: str
    trigger: str
    goal: str
    final: str | None
    message: str | None
    steps: int
    tool_calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    duration_s: float | None
    started_at: str
    ended_at: str | None
    traceback: str | None
    inputs_json: str
    result_json: str | None


class RunStore:
    """The SQLite run store.

    Args:
        path: the database file (created with its folder if missing).

    Raises:
        StoreError: when the file cannot be opened or migrated.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(
                path, isolation_level=None, timeout=30, check_same_thread=False
            )
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            migrate(self.db)
        except sqlite3.Error as error:
            raise StoreError(f"cannot open the run store {str(path)!r}: {error}") from error

    @classmethod
    def default(cls) -> RunStore:
        """The store in ``AGENTRUN_HOME``."""
        from .paths import store_path

        return cls(store_path())

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    # -- recording -------------------------------------------------------------------------

    def record(self, event: Event) -> None:
        """Write one loop event (each write is its own transaction)."""
        if isinstance(event, RunStarted):
            self.db.execute(
                """INSERT INTO runs (id, agent, status, model, spec_path, spec_sha256, trigger,
                   inputs_json, goal, pid, started_at, heartbeat_at)
                   VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    event.run_id,
                    event.agent,
                    event.model,
                    event.spec_path,
                    event.spec_sha256,
                    event.trigger,
                    json.dumps(event.inputs),
                    event.goal,
                    os.getpid(),
                    _now(),
                    _now(),
                ),
            )
        elif isinstance(event, ModelCalled):
            self.db.execute(
                """INSERT INTO model_calls (run_id, step, model, input_tokens, output_tokens,
                   cost_usd, duration_s, content, tool_calls_json, error, created_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    event.run_id,
                    event.step,
                    event.model,
                    event.input_tokens,
                    event.output_tokens,
                    event.cost_usd,
                    event.duration_s,
                    event.content,
                    json.dumps(event.tool_calls),
                    event.error,
                    _now(),
                ),
            )
            self.db.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ?", (_now(), event.run_id))
        elif isinstance(event, ToolCalled):
            self.db.execute(
                """INSERT INTO tool_calls (run_id, step, call_id, tool, risk, arguments, decision,
                   status, result, error, duration_s, created_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    event.run_id,
                    event.step,
                    event.call_id,
                    event.tool,
                    event.risk,
                    event.arguments,
                    event.decision,
                    event.status,
                    event.result,
                    event.error,
                    event.duration_s,
                    _now(),
                ),
            )
        elif isinstance(event, RunFinished):
            self.db.execute(
                """UPDATE runs SET status = 'finished', stop_reason = ?, final = ?, result_json = ?,
                   message = ?, traceback = ?, steps = ?, tool_calls = ?, input_tokens = ?,
                   output_tokens = ?, cost_usd = ?, duration_s = ?, ended_at = ?, heartbeat_at = ?
                   WHERE id = ?""",
                (
                    str(event.stop_reason),
                    event.final,
                    None if event.result is None else json.dumps(event.result),
                    event.message,
                    event.traceback,
                    event.steps,
                    event.tool_calls,
                    event.input_tokens,
                    event.output_tokens,
                    event.cost_usd,
                    event.duration_s,
                    _now(),
                    _now(),
                    event.run_id,
                ),
            )

    # -- queries ---------------------------------------------------------------------------

    def _run_row(self, row: sqlite3.Row) -> RunRow:
        return RunRow(**{name: row[name] for name in RunRow.__dataclass_fields__})

    def runs(self, limit: int = 20, agent: str | None = None) -> list[RunRow]:
        """The most recent runs, newest first."""
        query = "SELECT * FROM runs"
        params: list[Any] = []
        if agent:
            query += " WHERE agent = ?"
            params.append(agent)
        query += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        return [self._run_row(row) for row in self.db.execute(query, params)]

    def run(self, run_id: str) -> RunRow | None:
        """One run by id, or by a unique prefix of its id."""
        rows = self.db.execute(
            "SELECT * FROM runs WHERE id LIKE ? ORDER BY id DESC LIMIT 2", (run_id.upper() + "%",)
        ).fetchall()
        if len(rows) != 1:
            return None
        return self._run_row(rows[0])

    def model_calls(self, run_id: str) -> list[dict[str, Any]]:
        """The model calls of a run, in step order."""
        rows = self.db.execute(
            "SELECT * FROM model_calls WHERE run_id = ? ORDER BY step, id", (run_id,)
        )
        return [dict(row) for row in rows]

    def tool_calls(self, run_id: str) -> list[dict[str, Any]]:
        """The tool calls of a run, in order."""
        rows = self.db.execute("SELECT * FROM tool_calls WHERE run_id = ? ORDER BY id", (run_id,))
        return [dict(row) for row in rows]
