"""Reading runs back (both backends): lists, lookups, stats, the export, the daemon's queries.

Split from :mod:`runner.store.recording` along what it does: the queries that read finished and
running records, as opposed to recording a run as it happens. The class is a part of
:class:`runner.store.recording.SQLRunStore`, which holds the connection.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any, cast

from ..events import StopReason, ToolCallStatus
from ..spec import Risk
from .database import Database
from .export import export_events
from .rows import ModelCallRow, RunRow, StatsRow, ToolCallRow, ToolCallTiming
from .schedule import iso


class RunQueries:
    """Queries over the runs, model calls and tool calls, on the store's connection."""

    db: Database

    def _run_row(self, row: Any) -> RunRow:
        columns = {name: row[name] for name in RunRow.__dataclass_fields__}
        stop = columns["stop_reason"]
        return RunRow(**columns | {"stop_reason": None if stop is None else StopReason(stop)})

    def runs(
        self,
        limit: int = 20,
        agent: str | None = None,
        status: str | None = None,
        since: str | None = None,
        before_id: str | None = None,
    ) -> list[RunRow]:
        """The most recent runs, newest first.

        Args:
            limit: most rows returned.
            agent: only this agent's runs.
            status: only runs with this stop reason (or ``running``).
            since: only runs started at or after this UTC ISO-8601 instant.
            before_id: only runs whose id sorts before it: the next page after a page whose
                last run it is (keyset paging: run ids are ULIDs, in order of their start).
        """
        query = "SELECT * FROM runs WHERE 1 = 1"
        params: list[Any] = []
        if agent:
            query += " AND agent = ?"
            params.append(agent)
        if status == "running":
            query += " AND status = 'running'"  # a running run has no stop reason yet
        elif status:
            query += " AND stop_reason = ?"
            params.append(status)
        if since:
            query += " AND started_at >= ?"
            params.append(since)
        if before_id:
            query += " AND id < ?"
            params.append(before_id)
        query += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        return [self._run_row(row) for row in self.db.execute(query, params)]

    def stats(self, since: str | None = None) -> list[StatsRow]:
        """Runs, stop reasons, tokens and USD per agent and per UTC day, newest day first."""
        query = """SELECT agent, substr(started_at, 1, 10) AS day, count(*) AS runs,
                   coalesce(stop_reason, status) AS stop_reason,
                   CAST(sum(input_tokens) AS BIGINT) AS input_tokens,
                   CAST(sum(output_tokens) AS BIGINT) AS output_tokens,
                   sum(cost_usd) AS cost_usd, count(cost_usd) AS priced_runs
                   FROM runs {where}
                   GROUP BY agent, day, coalesce(stop_reason, status)
                   ORDER BY day DESC, agent, stop_reason"""
        params: list[Any] = []
        where = ""
        if since:
            where = "WHERE started_at >= ?"
            params.append(since)
        return [
            cast(StatsRow, dict(row)) for row in self.db.execute(query.format(where=where), params)
        ]

    def export(self, run_id: str) -> list[dict[str, Any]]:
        """One run as a list of events, in order (:func:`runner.store.export.export_events`).

        Each event has ``type`` (``run_started``, ``model_call``, ``tool_call``,
        ``run_finished``), ``run_id``, ``at`` (UTC ISO-8601) and the event's fields.
        """
        row = self.db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            return []
        return export_events(self._run_row(row), self.model_calls(run_id), self.tool_calls(run_id))

    def export_with_chain(self, run_id: str) -> list[dict[str, Any]]:
        """:meth:`export`, then the run's chain (:func:`runner.store.lineage.export_records`)."""
        from .lineage import export_records, read_chains

        chained = [r for c in read_chains(self.db, [run_id]) for r in export_records(c)]
        return [*self.export(run_id), *chained]

    def run(self, run_id: str) -> RunRow | None:
        """One run by id, or by a unique prefix of its id (None when none or several)."""
        rows = self.runs_by_prefix(run_id, limit=2)
        return rows[0] if len(rows) == 1 else None

    def runs_by_prefix(self, prefix: str, limit: int = 2) -> list[RunRow]:
        """Runs whose id starts with ``prefix`` (any case), newest first, at most ``limit``.

        ``%`` and ``_`` in ``prefix`` are matched as themselves, not as wildcards.
        """
        pattern = prefix.upper().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self.db.execute(
            # upper(id): LIKE ignores ASCII case in SQLite but not in PostgreSQL; this reads
            # the same in both (SQLite's LIKE on a BINARY column uses no index either way).
            "SELECT * FROM runs WHERE upper(id) LIKE ? ESCAPE '\\' ORDER BY id DESC LIMIT ?",
            (pattern + "%", limit),
        )
        return [self._run_row(row) for row in rows]

    def model_calls(self, run_id: str) -> list[ModelCallRow]:
        """The model calls of a run, in step order."""
        rows = self.db.execute(
            "SELECT * FROM model_calls WHERE run_id = ? ORDER BY step, id", (run_id,)
        )
        return [cast(ModelCallRow, dict(row)) for row in rows]

    def tool_calls(self, run_id: str) -> list[ToolCallRow]:
        """The tool calls of a run, in order."""
        rows = self.db.execute("SELECT * FROM tool_calls WHERE run_id = ? ORDER BY id", (run_id,))
        return [tool_call_row(row) for row in rows]

    # -- what the daemon reads back ------------------------------------------------------

    def last_ended_run(self, agent: str) -> RunRow | None:
        """The agent's run that ended most recently (by ``ended_at``), or None."""
        row = self.db.execute(
            """SELECT * FROM runs WHERE agent = ? AND status != 'running'
               AND ended_at IS NOT NULL ORDER BY ended_at DESC, id DESC LIMIT 1""",
            (agent,),
        ).fetchone()
        return None if row is None else self._run_row(row)

    def running_runs(self) -> list[RunRow]:
        """Runs recorded ``running``."""
        rows = self.db.execute("SELECT * FROM runs WHERE status = 'running'")
        return [self._run_row(row) for row in rows]

    def paused_runs(self, triggers: Collection[str]) -> list[RunRow]:
        """Runs started by one of ``triggers`` that wait for a person or were interrupted.

        Oldest first; what a starting daemon may continue by itself.
        """
        wanted = tuple(triggers)
        if not wanted:
            return []
        marks = ",".join("?" * len(wanted))
        rows = self.db.execute(
            f"""SELECT * FROM runs WHERE status != 'running' AND trigger IN ({marks})
                AND stop_reason IN ('waiting_approval', 'waiting_input', 'interrupted', 'escalated')
                ORDER BY id""",
            wanted,
        )
        return [self._run_row(row) for row in rows]

    def recent_tool_calls(
        self, agent: str, tools: Collection[str], since: datetime
    ) -> list[ToolCallTiming]:
        """Calls of ``tools`` by the agent's runs that started at or after ``since``."""
        names = sorted(tools)
        rows = self.db.execute(
            f"""SELECT t.run_id, t.tool, t.arguments, t.created_at, t.duration_s
               FROM tool_calls t JOIN runs r ON r.id = t.run_id
               WHERE r.agent = ? AND t.tool IN ({", ".join("?" * len(names))})
               AND t.created_at >= ?""",
            (agent, *names, iso(since)),
        )
        return [
            ToolCallTiming(
                run_id=row["run_id"],
                tool=row["tool"],
                arguments=row["arguments"],
                started_at=datetime.fromisoformat(row["created_at"]),
                duration_s=float(row["duration_s"] or 0),
            )
            for row in rows
        ]


def tool_call_row(row: Any) -> ToolCallRow:
    """A ``tool_calls`` row, its status and risk as their enums (risk ``""``: no such tool)."""
    call = cast(ToolCallRow, dict(row))
    call["status"] = ToolCallStatus(call["status"])
    call["risk"] = Risk(call["risk"]) if call["risk"] else ""
    return call
