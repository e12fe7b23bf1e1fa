"""`agentrun store migrate` and `agentrun store copy SQLITE_FILE POSTGRES_URL`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from runner.compiler import compile_agent
from runner.events import StopReason
from runner.loop import run_agent
from runner.spec import load_spec
from runner.store import FireRow, RunStore
from runner.store.location import open_store, redacted
from runner.store.migrations import MIGRATIONS
from runner.testing import ScriptedModel, call, text
from tests.helpers import invoke, write_spec


def test_migrate_applies_what_is_pending_once(
    postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = invoke(["store", "migrate", "--store", postgres_url], capsys)
    assert code == 0
    assert [line.split()[1] for line in out.splitlines()[:-1]] == [n for n, _ in MIGRATIONS]
    assert out.splitlines()[-1].endswith(f"up to date ({len(MIGRATIONS)} applied)")
    code, out, _ = invoke(["store", "migrate", "--store", postgres_url], capsys)
    assert (code, out.splitlines()) == (
        0,
        [f"{redacted(postgres_url)}: up to date (no migration was pending)"],
    )
    # A SQLite file through AGENTRUN_STORE-style URL, and a bad one refused as usage.
    code, out, _ = invoke(["store", "migrate", "--store", f"sqlite:///{tmp_path}/a.db"], capsys)
    assert code == 0 and f"applied {MIGRATIONS[0][0]}" in out
    code, _, err = invoke(["store", "migrate", "--store", "mysql://x/y"], capsys)
    assert code == 2 and "--store" in err and "not a store URL" in err


def history(folder: Path) -> tuple[Path, list[str]]:
    """A SQLite store with two runs of the loop (one done, one waiting), fires, notices."""
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "a.txt").write_text("hello")
    spec = write_spec(
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
    path = folder / "home" / "runs.db"
    store = RunStore(path)
    ids = []
    for script in (
        [call("read_file", {"path": "data/a.txt"}), text("done")],
        [call("write_file", {"path": "data/b.txt", "content": "x"})],
    ):
        agent = compile_agent(load_spec(spec))
        ran = asyncio.run(run_agent(agent, model=ScriptedModel(script), store=store))
        ids.append(ran.run_id)
    assert store.run(ids[1]).stop_reason is StopReason.WAITING_APPROVAL  # type: ignore[union-attr]
    slot = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    store.record_fire(FireRow("writer", "cron", 0, ids[0], "started", "cron", slot=slot))
    store.record_notice("warning", "a spec error", agent="writer")
    store.seal_message(ids[1], 1, {"role": "assistant", "content": "sealed"})
    store.close()
    return path, ids


def test_copy_moves_every_table_with_its_ids_and_verifies_it(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path, ids = history(tmp_path)
    code, out, err = invoke(["store", "copy", str(path), postgres_url], capsys)
    assert code == 0, err
    counts = {
        line.split()[0]: line.split()[1:]
        for line in out.splitlines()[1:]
        if "verified" not in line and "sealed" not in line
    }
    for table in ("runs", "model_calls", "tool_calls", "messages", "run_events", "fires"):
        assert counts[table][0] == counts[table][1] != "0", (table, counts)
    assert counts["runs"] == ["2", "2"]
    assert "verified: 2 runs" in out and "AGENTRUN_SEAL_KEY_FILE" in out
    source, target = RunStore(path), open_store(postgres_url)
    for run_id in ids:
        assert target.export(run_id) == source.export(run_id)
        assert target.events_since(0, run_id=run_id) == source.events_since(0, run_id=run_id)
    assert target.approvals(ids[1]) == source.approvals(ids[1])
    # The sequences were moved past the copied ids: new rows follow them.
    last = source.last_event_id()
    target.record_notice("info", "after the copy")
    assert target.decide(ids[1], None, False, "no", by="cli") == 1
    assert target.last_event_id() > last
    # Sealed rows still open with the SQLite store's key beside it.
    assert source.seal_key.path.exists()
    source.close()
    target.close()
    # A target that holds runs is refused, and nothing changes.
    code, _, err = invoke(["store", "copy", str(path), postgres_url], capsys)
    assert code == 1 and "already holds 2 runs" in err


def test_a_copy_that_differs_exits_1_naming_the_run(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path, ids = history(tmp_path)
    open_store(postgres_url).close()  # migrated, then made to change what it is given
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(
            """CREATE FUNCTION garble() RETURNS trigger AS $$
               BEGIN NEW.result := NEW.result || ' (changed)'; RETURN NEW; END $$
               LANGUAGE plpgsql"""
        )
        admin.execute(
            "CREATE TRIGGER garble BEFORE INSERT ON tool_calls FOR EACH ROW "
            "EXECUTE FUNCTION garble()"
        )
    code, out, err = invoke(["store", "copy", str(path), postgres_url], capsys)
    assert code == 1
    assert f"run {ids[0]}: its export differs" in err and "does not match" in err
    assert "verified" not in out


def test_copy_refuses_a_missing_file_and_a_url_of_another_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = invoke(
        ["store", "copy", str(tmp_path / "none.db"), "postgresql://u@127.0.0.1:1/x"], capsys
    )
    assert code == 1 and "no SQLite run store at" in err
    code, _, err = invoke(["store", "copy", str(tmp_path / "a.db"), "sqlite:////tmp/b.db"], capsys)
    assert code == 2 and "not a postgresql:// URL" in err
