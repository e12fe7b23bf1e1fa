"""The RunStore interface: what ``RunStore(path)`` opens, and the daemon's typed records
(fires, cron cursors, notices, runs left running), each written and read back, on both
backends (the ``store`` fixture: tests/store_backends.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from runner.events import RunStarted, StopReason, ToolCalled, ToolStarted
from runner.store import (
    FireRow,
    RunAlreadyRecorded,
    RunStore,
    SQLiteRunStore,
    ToolCallTiming,
)

SLOT = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
NOW = datetime(2026, 3, 29, 2, 0, 0, 123000, tzinfo=UTC)


def test_run_store_opens_the_sqlite_store(tmp_path: Path) -> None:
    assert type(RunStore(tmp_path / "a.db")) is SQLiteRunStore
    assert type(SQLiteRunStore(tmp_path / "b.db")) is SQLiteRunStore
    assert type(RunStore.default()) is SQLiteRunStore


def test_a_fire_is_recorded_once_per_slot_and_per_key(store: RunStore) -> None:
    slot = FireRow("a", "cron", 0, "R1", "started", "cron", slot=SLOT, created_at=NOW)
    assert store.record_fire(slot)
    assert not store.record_fire(FireRow("a", "cron", 0, "R2", "started", slot=SLOT))
    keyed = FireRow(
        "a", "manual", 1, "R3", "queued", "", idempotency_key="k", inputs={"n": 1}, created_at=NOW
    )
    assert store.record_fire(keyed)
    assert not store.record_fire(FireRow("a", "manual", 1, "R4", "started", idempotency_key="k"))
    assert store.fire_of_run("R1") == slot
    assert store.fire_of_run("R2") is None
    assert store.fire_by_key("a", "k") == keyed
    assert store.fire_by_key("b", "k") is None


def test_fires_whose_runs_never_began_and_their_outcomes(store: RunStore) -> None:
    for run_id, outcome in [("R1", "started"), ("R2", "queued"), ("R3", "skipped")]:
        store.record_fire(FireRow("a", "manual", 0, run_id, outcome, created_at=NOW))
    store.record(RunStarted("R1", "a", "m", "p", "sha", {}, "goal", "manual"))
    assert [f.run_id for f in store.unstarted_fires()] == ["R2"]
    store.set_fire_outcome("R2", "cancelled", "replaced")
    assert store.unstarted_fires() == []
    fire = store.fire_of_run("R2")
    assert fire is not None and (fire.outcome, fire.reason) == ("cancelled", "replaced")


def test_cron_cursors_and_notices(store: RunStore) -> None:
    assert store.cron_cursor("a", "0:* * * * *:UTC") is None
    store.set_cron_cursor("a", "0:* * * * *:UTC", NOW)
    store.set_cron_cursor("a", "0:* * * * *:UTC", NOW + timedelta(minutes=1))
    assert store.cron_cursor("a", "0:* * * * *:UTC") == NOW + timedelta(minutes=1)
    store.record_notice("error", "a.yaml:1:1: bad", at=NOW)
    store.record_notice("warning", "webhook refused", agent="a")
    [error, warning] = store.notices()
    assert (error["at"], error["level"], error["agent"]) == (
        "2026-03-29T02:00:00.123+00:00",
        "error",
        None,
    )
    assert (warning["level"], warning["agent"], warning["run_id"]) == ("warning", "a", None)


def test_a_run_left_running_is_ended_once(store: RunStore) -> None:
    store.record(RunStarted("R1", "a", "m", "p", "sha", {}, "goal", "cron"))
    assert [run.id for run in store.running_runs()] == ["R1"]
    store.end_run_left_running("R1", "interrupted", StopReason.INTERRUPTED, "its worker exited")
    store.end_run_left_running("R1", "finished", StopReason.CANCELLED, "too late")
    row = store.run("R1")
    assert row is not None
    assert (row.status, row.stop_reason, row.message) == (
        "interrupted",
        "interrupted",
        "its worker exited",
    )
    assert store.running_runs() == []


def test_a_taken_run_id_is_refused_with_a_store_error(store: RunStore) -> None:
    store.record(RunStarted("R1", "a", "m", "p", "sha", {}, "goal", "cron"))
    with pytest.raises(RunAlreadyRecorded, match="R1"):
        store.record(RunStarted("R1", "a", "m", "p", "sha", {}, "goal", "cron"))


def test_recent_tool_calls_of_an_agent(store: RunStore) -> None:
    store.record(RunStarted("R1", "a", "m", "p", "sha", {}, "goal", "watch"))
    store.record(RunStarted("R2", "b", "m", "p", "sha", {}, "goal", "watch"))
    for run_id, call_id, tool in [("R1", "c1", "write_file"), ("R1", "c2", "shell")]:
        arguments = '{"path": "out.txt"}'
        store.record(ToolStarted(run_id, 1, call_id, tool, arguments, "allow", "medium"))
        store.record(
            ToolCalled(run_id, 1, call_id, tool, arguments, "allow", "ok", "", 0.25, "medium")
        )
    store.record(ToolStarted("R2", 1, "c3", "write_file", "{}", "allow", "medium"))
    before = datetime.now(UTC) - timedelta(minutes=1)
    [call] = store.recent_tool_calls("a", ("write_file", "edit_file"), before)
    assert isinstance(call, ToolCallTiming)
    assert (call.run_id, call.tool, call.arguments, call.duration_s) == (
        "R1",
        "write_file",
        '{"path": "out.txt"}',
        0.25,
    )
    assert call.started_at >= before
    assert store.recent_tool_calls("a", ("write_file",), datetime.now(UTC) + timedelta(1)) == []


def test_runs_page_by_keyset_and_prefixes_match_literally(store: RunStore) -> None:
    ids = [f"01ABC{n:021d}" for n in range(5)]
    for run_id in ids:
        store.record(RunStarted(run_id, "a", "m", "p", "sha", {}, "goal"))
    first = store.runs(limit=2)
    assert [r.id for r in first] == ids[:2:-1][:2] == [ids[4], ids[3]]
    second = store.runs(limit=2, before_id=first[-1].id)
    assert [r.id for r in second] == [ids[2], ids[1]]
    assert [r.id for r in store.runs(limit=2, before_id=second[-1].id)] == [ids[0]]
    # a prefix names one run only when it is unique; % and _ are not wildcards
    assert store.run("01abc") is None  # five runs
    assert [r.id for r in store.runs_by_prefix("01ABC", limit=10)] == ids[::-1]
    assert store.run(ids[3].lower()) is not None
    assert store.runs_by_prefix("01AB_") == [] and store.runs_by_prefix("%") == []
    assert store.run("01ABC%") is None


def test_a_decision_without_a_request_is_recorded_only_when_asked(
    store: RunStore,
) -> None:
    store.record(RunStarted("R1", "a", "m", "p", "sha", {}, "goal"))
    assert store.decide("R1", "call_x", True, by="api:console@127.0.0.1") == 0
    assert store.approvals("R1", status=None) == []
    store.decide("R1", "call_y", True, by="terminal", record_unasked=True)
    [row] = store.approvals("R1", status=None)
    assert (row["call_id"], row["status"], row["decided_by"]) == ("call_y", "approved", "terminal")


def test_since_names_an_instant_by_date_or_by_duration_back() -> None:
    from runner.store import since_instant

    now = datetime(2026, 3, 29, 12, 0, tzinfo=UTC)
    assert since_instant("7d", now) == "2026-03-22T12:00:00.000+00:00"
    assert since_instant(" 90m ", now) == "2026-03-29T10:30:00.000+00:00"
    assert since_instant("2026-03-01") == "2026-03-01T00:00:00.000+00:00"
    assert since_instant("2026-03-01T08:00+02:00") == "2026-03-01T06:00:00.000+00:00"
    with pytest.raises(ValueError, match="neither a date .* nor a duration"):
        since_instant("last week", now)
