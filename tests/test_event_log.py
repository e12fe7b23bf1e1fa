"""The run event log: every visible change of a run, in order, as the export shows it (on
both backends; tests/test_store_postgres.py shows ids become visible in order under
concurrent writers)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from runner.compiler import compile_agent
from runner.events import RunStarted, StopReason
from runner.loop import run_agent
from runner.spec import load_spec
from runner.store import RunStore, SQLiteRunStore
from runner.store.location import StoreLocation, open_store
from runner.testing import ScriptedModel, call
from tests.helpers import write_spec


def writer_run(folder: Path, store: RunStore) -> str:
    """A run that reads (low risk), then asks to write (queued for a person): its id."""
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "data" / "a.txt").write_text("hello")
    path = write_spec(
        folder,
        """
        version: 1
        name: writer
        model: openai/scripted
        goal: Copy a.txt.
        autonomy: approve-writes
        unattended: queue
        tools:
          read_file: {paths: [data]}
          write_file: {paths: [data]}
        """,
    )
    model = ScriptedModel(
        [
            call("read_file", {"path": "data/a.txt"}),
            call("write_file", {"path": "data/b.txt", "content": "x"}),
        ]
    )
    finished = asyncio.run(run_agent(compile_agent(load_spec(path)), model=model, store=store))
    assert finished.stop_reason is StopReason.WAITING_APPROVAL, finished.message
    return finished.run_id


def test_a_run_is_logged_in_order_as_the_export_shows_it(tmp_path: Path, store: RunStore) -> None:
    run_id = writer_run(tmp_path, store)
    events = store.events_since(0)
    assert [e["type"] for e in events] == [
        "run_started",
        "model_call",
        "tool_started",  # shown while it runs (a low-risk call has no journal row)
        "tool_call",
        "model_call",
        "approval_requested",
        "run_finished",
    ]
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert store.last_event_id() == ids[-1]
    assert all(e["run_id"] == run_id for e in events)
    # the same events as the export, plus the log's id and its own instant
    exported = store.export(run_id)
    shown = [e for e in events if e["type"] in {x["type"] for x in exported}]
    assert len(shown) == len(exported)
    for event, expected in zip(shown, exported, strict=True):
        assert {k: v for k, v in event.items() if k != "id"} == {**expected, "at": event["at"]}
    asked = events[5]
    assert asked["tool"] == "write_file" and '"data/b.txt"' in asked["arguments"]
    assert events[-1]["stop_reason"] == StopReason.WAITING_APPROVAL


def test_a_decision_is_logged_with_who_made_it_and_the_log_resumes_after_an_id(
    tmp_path: Path, store_location: StoreLocation, store: RunStore
) -> None:
    run_id = writer_run(tmp_path, store)
    seen = store.last_event_id()
    [pending] = store.approvals(run_id)
    # another process decides (the CLI, the API): its own connection
    other = open_store(store_location)
    assert other.decide(run_id, pending["call_id"], False, "not now", by="api:ops@127.0.0.1") == 1
    other.close()
    [decided] = store.events_since(seen)
    assert decided["type"] == "approval_decided" and decided["id"] > seen
    assert (decided["call_id"], decided["approved"], decided["reason"], decided["by"]) == (
        pending["call_id"],
        False,
        "not now",
        "api:ops@127.0.0.1",
    )
    assert store.events_since(decided["id"]) == []
    # a decided approval decides nothing more, and logs nothing
    assert store.decide(run_id, pending["call_id"], True, by="cli") == 0
    assert store.events_since(decided["id"]) == []


def test_the_log_of_one_run_and_a_limit(tmp_path: Path, store: RunStore) -> None:
    first = writer_run(tmp_path / "a", store)
    second = writer_run(tmp_path / "b", store)
    mine = store.events_since(0, run_id=second)
    assert mine and {e["run_id"] for e in mine} == {second}
    assert {e["run_id"] for e in store.events_since(0)} == {first, second}
    two = store.events_since(0, limit=2)
    assert [e["id"] for e in two] == [e["id"] for e in store.events_since(0)][:2]


def test_a_row_and_its_log_entry_land_together(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.db")
    assert isinstance(store, SQLiteRunStore)
    store.db.execute(
        """CREATE TRIGGER refuse BEFORE INSERT ON run_events
           BEGIN SELECT RAISE(ABORT, 'log refused'); END"""
    )
    with pytest.raises(sqlite3.IntegrityError, match="log refused"):
        store.record(RunStarted("R1", "a", "m", "p", "sha", {}, "goal"))
    assert store.run("R1") is None  # not a run without its entry
