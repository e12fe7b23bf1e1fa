"""A tool result is stored once (issue 19, item 5): in ``tool_calls.result``, and the tool
message of the conversation refers to it instead of holding a second copy. Both backends,
but the file's size, which only SQLite has."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from runner.compiler import compile_agent
from runner.events import MessageAdded, RunFinished, RunStarted, StopReason, ToolCalled, ToolStarted
from runner.loop import run_agent
from runner.resume import restore_state
from runner.spec import Risk, load_spec
from runner.store import RunStore, SQLiteRunStore
from runner.store.location import StoreLocation, open_store
from runner.store.recording import SQLRunStore
from runner.testing import ScriptedModel, call, text

MEGABYTE = 1024 * 1024


def record_run(location: StoreLocation, result: str, risk: Risk = Risk.MEDIUM) -> RunStore:
    """One run as the loop records it: a tool call with ``result``, its tool message."""
    store = open_store(location)
    store.record(RunStarted("R1", "a", "m", "p", "sha", {}, "goal", "manual"))
    store.record(MessageAdded("R1", 0, {"role": "user", "content": "goal"}))
    calls = [{"id": "c1", "type": "function", "function": {"name": "read_file", "arguments": "{}"}}]
    store.record(MessageAdded("R1", 1, {"role": "assistant", "tool_calls": calls}))
    store.record(ToolStarted("R1", 1, "c1", "read_file", "{}", "allow", risk))
    store.record(ToolCalled("R1", 1, "c1", "read_file", "{}", "allow", "ok", result, 0.1, risk))
    store.record(MessageAdded("R1", 2, {"role": "tool", "tool_call_id": "c1", "content": result}))
    store.record(MessageAdded("R1", 3, {"role": "assistant", "content": "done"}))
    store.record(RunFinished("R1", StopReason.COMPLETED, "done", 2, 1, 10, 5, None, 0.5))
    return store


def database_bytes(store: SQLiteRunStore) -> int:
    """The database's size with everything checkpointed out of the WAL."""
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return store.path.stat().st_size


def test_a_megabyte_result_is_stored_once(tmp_path: Path) -> None:
    for risk in (Risk.LOW, Risk.MEDIUM):  # low-risk calls have no journal row before
        small = record_run(tmp_path / f"small-{risk}.db", "x", risk)
        large = record_run(tmp_path / f"large-{risk}.db", "y" * MEGABYTE, risk)
        assert isinstance(small, SQLiteRunStore) and isinstance(large, SQLiteRunStore)
        grown = database_bytes(large) - database_bytes(small)
        assert MEGABYTE <= grown < 1.1 * MEGABYTE, grown  # was 2.0 MB before


def test_the_conversation_and_the_export_read_as_before(store_location: StoreLocation) -> None:
    result = "line é 字\n" * 50_000
    store = record_run(store_location, result)
    messages = store.messages("R1")
    assert messages[2] == {"role": "tool", "tool_call_id": "c1", "content": result}
    assert list(messages[2]) == ["role", "tool_call_id", "content"]
    assert restore_state(store, "R1").messages == messages
    exported: list[dict[str, Any]] = store.export("R1")
    store.close()
    (tool_call,) = [event for event in exported if event["type"] == "tool_call"]
    assert tool_call["result"] == result


def test_a_tool_message_unlike_the_recorded_result_is_kept_whole(store: RunStore) -> None:
    """Only an exact copy is replaced by a reference (redaction could differ, say)."""
    store.record(RunStarted("R1", "a", "m", "p", "sha", {}, "goal", "manual"))
    store.record(ToolCalled("R1", 1, "c1", "read_file", "{}", "allow", "ok", "a", 0.1, Risk.LOW))
    store.record(MessageAdded("R1", 0, {"role": "tool", "tool_call_id": "c1", "content": "b"}))
    store.record(MessageAdded("R1", 1, {"role": "tool", "tool_call_id": "c9", "content": "a"}))
    assert [m["content"] for m in store.messages("R1")] == ["b", "a"]


def test_a_run_of_the_loop_stores_its_read_once(tmp_path: Path, store: RunStore) -> None:
    """Through the real loop: the tool message refers to the result, and reads back whole."""
    (tmp_path / "data").mkdir()
    content = "row,value\n" + "a,1\n" * 100_000
    (tmp_path / "data" / "a.csv").write_text(content)
    (tmp_path / "a.yaml").write_text(
        "version: 1\nname: a\nmodel: openai/x\ngoal: go\n"
        "budgets: {max_tool_output: 1000000}\ntools: {read_file: {paths: [data]}}\n"
    )
    model = ScriptedModel([call("read_file", {"path": "data/a.csv"}), text("done")])
    agent = compile_agent(load_spec(tmp_path / "a.yaml"))
    finished = asyncio.run(run_agent(agent, model, store))
    (result,) = [row["result"] for row in store.tool_calls(finished.run_id)]
    assert content in result
    (tool_message,) = [m for m in store.messages(finished.run_id) if m["role"] == "tool"]
    assert tool_message["content"] == result
    # What the model was sent is what the store gives back.
    assert model.requests[-1][0][2] == tool_message
    assert restore_state(store, finished.run_id).messages == store.messages(finished.run_id)
    assert isinstance(store, SQLRunStore)
    rows = store.db.execute(
        "SELECT tool_call_row, length(message_json) FROM messages WHERE message_json LIKE "
        '\'%"role": "tool"%\''
    ).fetchall()
    assert [(row[0] is not None, row[1] < 200) for row in rows] == [(True, True)]
