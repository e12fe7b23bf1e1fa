"""The run store's schema: migrations applied in order and once, an old store moved forward
with its records, and every lookup of a run's tool calls served by an index."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from runner.compiler import compile_agent
from runner.events import RunStarted, ToolCalled, ToolStarted
from runner.loop import run_agent
from runner.store import RunStore, event_log, migrations
from runner.store.migrations import MIGRATIONS, migrate
from runner.testing import ScriptedModel, call, text
from tests.helpers import make_spec


def indexes(db: sqlite3.Connection, table: str) -> set[str]:
    rows = db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?", (table,)
    )
    return {row[0] for row in rows}


def test_a_new_store_has_every_migration_once(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.db")
    applied = [row[0] for row in store.db.execute("SELECT name FROM migrations ORDER BY rowid")]
    assert applied == [name for name, _ in MIGRATIONS]
    assert "tool_calls_run" not in indexes(store.db, "tool_calls")
    store.close()
    again = sqlite3.connect(tmp_path / "runs.db", isolation_level=None)
    assert migrate(again) == []  # nothing left to apply
    again.close()


def test_an_old_store_is_moved_forward_with_its_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store written before ``0004`` (with the index it drops) opens, migrates, and keeps
    its runs and tool calls readable."""
    path = tmp_path / "runs.db"
    with monkeypatch.context() as old_release:
        old_release.setattr(migrations, "MIGRATIONS", MIGRATIONS[:3])
        old_release.setattr(event_log, "append", lambda *args: None)  # no log before 0007
        old = RunStore(path)
        assert "tool_calls_run" in indexes(old.db, "tool_calls")
        old.record(RunStarted("r1", "a", "m", "p", "sha", {}, "goal", "manual"))
        old.record(ToolStarted("r1", 1, "c1", "write_file", "{}", "allow", "medium"))
        old.record(
            ToolCalled("r1", 1, "c1", "write_file", "{}", "allow", "ok", "done", 0.1, "medium")
        )
        # The release before 0005 ended a run with this update (today's also deletes the
        # run's sealed messages, a table that release did not have).
        old.db.execute(
            """UPDATE runs SET status = 'finished', stop_reason = 'completed', final = 'ok',
               steps = 1, tool_calls = 1, ended_at = started_at WHERE id = 'r1'"""
        )
        old.close()
    store = RunStore(path)
    finished = store.run("r1")
    assert finished is not None and (finished.status, finished.stop_reason) == (
        "finished",
        "completed",
    )
    assert "tool_calls_run" not in indexes(store.db, "tool_calls")
    assert "tool_calls_run_call" in indexes(store.db, "tool_calls")
    [row] = store.tool_calls("r1")
    assert (row["call_id"], row["status"], row["result"]) == ("c1", "ok", "done")
    assert store.journal("r1", "c1") == row
    # runs recorded before the log have no entries; the log starts with what follows
    assert store.events_since(0) == [] and store.last_event_id() == 0


def test_every_lookup_of_a_runs_tool_calls_uses_an_index(tmp_path: Path) -> None:
    """Record a run whose medium-risk call is journaled, then updated (the ``max(id)``
    lookup), read it back, and ask SQLite how it ran each statement on ``tool_calls``: with
    the redundant index gone, none may scan the whole table."""
    spec = make_spec(tmp_path, "  write_file:\n    paths: [data]\nautonomy: autonomous\n")
    store = RunStore(tmp_path / "runs.db")
    statements: list[str] = []
    store.db.set_trace_callback(statements.append)
    model = ScriptedModel(
        [call("write_file", {"path": "data/a.txt", "content": "a"}), text("written")]
    )
    finished = asyncio.run(run_agent(compile_agent(spec), model, store=store))
    [row] = store.tool_calls(finished.run_id)
    assert store.journal(finished.run_id, row["call_id"]) == row
    store.export(finished.run_id)
    store.db.set_trace_callback(None)
    assert row["status"] == "ok"
    lookups = [
        sql
        for sql in statements
        if "tool_calls" in sql and sql.lstrip().upper().startswith(("SELECT", "UPDATE"))
    ]
    assert any(sql.lstrip().upper().startswith("UPDATE") for sql in lookups)
    assert len(lookups) >= 3
    for sql in lookups:
        plan = [detail for *_, detail in store.db.execute("EXPLAIN QUERY PLAN " + sql)]
        assert not any(detail.startswith("SCAN tool_calls") for detail in plan), (sql, plan)
