"""What the PostgreSQL run store adds to the contract suite: migrations applied once by
processes starting together, event log ids visible in order under concurrent writers, a
lost connection named (password masked) and recovered, values stored as SQLite stores
them, the seal key shared by machines, and ``agentrun run`` / ``runs`` against it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from runner.errors import StoreError
from runner.events import (
    MessageAdded,
    ModelCalled,
    QuestionAsked,
    RunFinished,
    RunNotice,
    RunStarted,
    StopReason,
    ToolCalled,
    ToolStarted,
)
from runner.spec import Risk
from runner.store import RunStore
from runner.store.location import open_store
from runner.store.migrations import MIGRATIONS
from runner.store.postgres import PostgresRunStore
from tests.helpers import ROOT, run_cli

PASSWORD = "s3cret-pw"


def with_password(url: str) -> str:
    """``url`` with a password (the test servers trust local connections: any is taken)."""
    parts = urlsplit(url)
    if parts.password:
        return url
    netloc = f"{parts.username}:{PASSWORD}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def test_processes_starting_together_apply_each_migration_once(postgres_url: str) -> None:
    probe = (
        "import sys; from runner.store.postgres import PostgresRunStore;"
        "PostgresRunStore(sys.argv[1]).close(); print('opened')"
    )
    starting = [
        subprocess.Popen(
            [sys.executable, "-c", probe, postgres_url],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    for process in starting:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0 and out.strip() == "opened", err
    with psycopg.connect(postgres_url) as connection:
        names = [r[0] for r in connection.execute("SELECT name FROM migrations ORDER BY name")]
    assert names == [name for name, _ in MIGRATIONS]  # each once, in order


def _writer(url: str, prefix: str, runs: int, errors: list[BaseException]) -> None:
    """Log entries in transactions held open a moment between the entry and the commit."""
    try:
        store = open_store(url)
        for n in range(runs):
            run_id = f"{prefix}{n:04d}"
            store.record(RunStarted(run_id, "a", "m", "p", "sha", {}, "goal"))
            # ModelCalled is followed at once: its entry is written, the transaction open.
            store.record(ModelCalled(run_id, 1, "m", 1, 1, None, 0.1, "x", []))
            time.sleep(0.002)
            store.record(RunNotice(run_id, "a", "commits"))
        store.close()
    except BaseException as error:  # the test thread reports it
        errors.append(error)


def test_a_follower_never_misses_an_event_log_id_of_concurrent_writers(
    postgres_url: str,
) -> None:
    follower = open_store(postgres_url)
    errors: list[BaseException] = []
    writers = [
        threading.Thread(target=_writer, args=(postgres_url, prefix, 40, errors))
        for prefix in ("A", "B", "C")
    ]
    for writer in writers:
        writer.start()
    seen: list[int] = []
    last = 0
    while any(w.is_alive() for w in writers) or follower.events_since(last):
        for event in follower.events_since(last):
            seen.append(event["id"])
            last = event["id"]
    for writer in writers:
        writer.join()
    assert errors == []
    everything = [e["id"] for e in follower.events_since(0, limit=10_000)]
    assert len(everything) == 3 * 40 * 3
    assert seen == everything  # every id, in order, none skipped
    follower.close()


def _backend_pid(store: RunStore) -> int:
    assert isinstance(store, PostgresRunStore)
    return int(store.db.execute("SELECT pg_backend_pid()").fetchone()[0])


def _terminate(admin_url: str, pid: int) -> None:
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_a_lost_connection_is_named_masked_and_the_next_call_reconnects(
    postgres_url: str,
) -> None:
    url = with_password(postgres_url)
    password = urlsplit(url).password
    assert password
    store = open_store(url)
    store.record(RunStarted("R1", "a", "m", "p", "sha", {}, "goal"))
    # Lost between calls (the server restarted, say).
    _terminate(postgres_url, _backend_pid(store))
    with pytest.raises(StoreError, match="lost the connection to the run store") as lost:
        store.runs()
    assert password not in str(lost.value) and ":***@" in str(lost.value)
    assert [r.id for r in store.runs()] == ["R1"]  # connected again
    # Lost inside a transaction: its records are gone, the store goes on.
    store.record(ModelCalled("R1", 1, "m", 1, 1, None, 0.1, "x", []))  # left open
    _terminate(postgres_url, _backend_pid(store))
    with pytest.raises(StoreError, match="lost the connection"):
        store.record(MessageAdded("R1", 0, {"role": "user", "content": "hi"}))
    assert store.model_calls("R1") == [] and store.messages("R1") == []
    store.record(RunNotice("R1", "a", "after", "info"))
    assert [n["message"] for n in store.notices("R1")] == ["after"]
    store.close()


def test_an_unreachable_server_is_a_store_error_without_the_password(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql://agentrun:{PASSWORD}@127.0.0.1:{port}/agentrun"
    with pytest.raises(StoreError, match="cannot connect to the run store") as refused:
        open_store(url)
    assert PASSWORD not in str(refused.value)
    assert f"agentrun:***@127.0.0.1:{port}" in str(refused.value)


def _record_the_same_run(store: RunStore) -> None:
    store.record(RunStarted("R1", "Agent", "m", "p", "sha", {"n": 1}, "goal", "manual"))
    store.record(RunStarted("R2", "agent", "m", "p", "sha", {}, "goal", "cron"))
    store.record(MessageAdded("R1", 0, {"role": "user", "content": "goal 100%?"}))
    store.record(ModelCalled("R1", 1, "m", 120, 30, 0.0125, 0.4, None, [{"id": "c1"}]))
    store.record(ToolStarted("R1", 1, "c1", "write_file", "{}", "allow", Risk.MEDIUM))
    store.record(ToolCalled("R1", 1, "c1", "write_file", "{}", "allow", "ok", "r", 0.2, "medium"))
    store.record(QuestionAsked("R1", "c2", "Which?", "", ["a", "b"], None))
    store.record(RunFinished("R1", StopReason.COMPLETED, "done", 1, 1, 120, 30, 0.0125, 0.9))
    store.record(RunFinished("R2", StopReason.MAX_STEPS, "", 3, 0, 7, 2, None, 1.5))


def _shape(value: Any) -> Any:
    """``value`` with instants and row ids replaced by their types (they differ by nature)."""
    if isinstance(value, dict):
        return {
            key: type(item).__name__
            if key.endswith("_at") or key in ("at", "id", "pid", "row")
            else _shape(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_shape(item) for item in value]
    return value


def test_both_backends_give_back_the_same_values_and_types(
    tmp_path: Path, postgres_url: str
) -> None:
    stores = [open_store(tmp_path / "runs.db"), open_store(postgres_url)]
    read: list[list[Any]] = []
    for store in stores:
        _record_the_same_run(store)
        stats = store.stats()
        assert all(type(row["cost_usd"]) in (float, type(None)) for row in stats)
        read.append(
            [
                [(k, v, type(v)) for row in stats for k, v in row.items()],
                [_shape(vars(run)) for run in store.runs()],  # ordered by id, bytewise
                _shape(store.export("R1")),
                _shape(store.tool_calls("R1")),
                _shape(store.model_calls("R1")),
                _shape(store.questions()),
                store.messages("R1"),
                [r.id for r in store.runs_by_prefix("r")],
            ]
        )
        store.close()
    for sqlite_part, postgres_part in zip(read[0], read[1], strict=True):
        assert sqlite_part == postgres_part


def test_the_seal_key_is_read_from_agentrun_seal_key_file(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = {"role": "assistant", "content": "the token is tok-123"}
    monkeypatch.setenv("AGENTRUN_SEAL_KEY_FILE", str(tmp_path / "shared.key"))
    sealing = open_store(postgres_url)
    sealing.record(RunStarted("R1", "a", "m", "p", "sha", {}, "goal"))
    sealing.seal_message("R1", 1, message)
    assert (tmp_path / "shared.key").stat().st_size == 32
    sealing.close()
    # Another machine with the same key file opens it.
    resuming = open_store(postgres_url)
    assert resuming.sealed_messages("R1") == {1: message}
    resuming.close()
    # One whose key is another refuses, saying where the key is read from.
    (tmp_path / "other.key").write_bytes(os.urandom(32))
    (tmp_path / "other.key").chmod(0o600)
    monkeypatch.setenv("AGENTRUN_SEAL_KEY_FILE", str(tmp_path / "other.key"))
    other = open_store(postgres_url)
    with pytest.raises(StoreError, match="does not open with the key .*AGENTRUN_SEAL_KEY_FILE"):
        other.sealed_messages("R1")
    monkeypatch.setenv("AGENTRUN_SEAL_KEY_FILE", str(tmp_path / "missing.key"))
    missing = open_store(postgres_url)
    with pytest.raises(StoreError, match="missing .*AGENTRUN_SEAL_KEY_FILE"):
        missing.sealed_messages("R1")
    missing.close()
    other.close()


def test_agentrun_run_and_runs_against_a_postgresql_store(
    tmp_path: Path, postgres_url: str
) -> None:
    """The run (with a notification channel, sent from the same store) and its reading."""
    from runner.testing import FakeOpenAIServer, call, text
    from tests.receivers import HttpReceiver

    receiver = HttpReceiver()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("hello from a file")
    with FakeOpenAIServer([call("read_file", {"path": "data/a.txt"}), text("done")]) as server:
        spec = tmp_path / "reader.yaml"
        spec.write_text(
            "version: 1\nname: reader\n"
            f'model: {{id: openai/fake, api_base: "{server.api_base}", api_key_env: FAKE_KEY}}\n'
            "goal: Read data/a.txt.\ntools: {read_file: {paths: [data]}}\n"
            f'notify: [{{url: "json://127.0.0.1:{receiver.port}/hook", events: [run_completed]}}]\n',
            encoding="utf-8",
        )
        url = with_password(postgres_url)
        env = {
            **os.environ,
            "FAKE_KEY": "sk-fake-000000",
            "AGENTRUN_STORE": url,
            "AGENTRUN_HOME": str(tmp_path / "home"),
        }
        ran = run_cli(["run", "-q", str(spec)], env)
        assert ran.returncode == 0, ran.stderr
    listed = run_cli(["runs"], env)
    assert listed.returncode == 0 and "reader" in listed.stdout, listed.stderr
    with psycopg.connect(postgres_url) as connection:
        [(run_id,)] = connection.execute("SELECT id FROM runs").fetchall()
    assert run_id in listed.stdout
    shown = run_cli(["runs", "show", run_id], env)
    assert shown.returncode == 0 and "read_file" in shown.stdout, shown.stderr
    exported = run_cli(["runs", "export", run_id], env)
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    events = [e for e in lines if not e["type"].startswith("log_")]  # lineage: docs/audit.md
    assert lines[-1]["type"] == "log_head" and lines[-1]["head"]
    assert [e["type"] for e in events] == [
        "run_started",
        "model_call",
        "tool_call",
        "model_call",
        "run_finished",
    ]
    assert "hello from a file" in events[2]["result"]
    assert events[-1]["stop_reason"] == "completed"
    [body] = receiver.json_bodies("/hook")
    assert run_id[:8] in json.dumps(body)
    receiver.close()
    with psycopg.connect(postgres_url) as connection:
        [(status,)] = connection.execute("SELECT status FROM notifications").fetchall()
    assert status == "sent"
    for output in (ran, listed, shown, exported):
        assert urlsplit(url).password not in output.stdout + output.stderr


def test_a_daemon_serves_its_api_from_the_postgresql_store(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    from tests.test_daemon import DaemonProcess, free_port

    home, agents = tmp_path / "home", tmp_path / "agents"
    home.mkdir()
    agents.mkdir()
    recorded = open_store(postgres_url)
    recorded.record(RunStarted("01RECORDEDELSEWHERE0000000", "a", "m", "p", "sha", {}, "goal"))
    recorded.close()
    monkeypatch.setenv("AGENTRUN_STORE", with_password(postgres_url))
    port = free_port()
    daemon = DaemonProcess(agents, home, "--http", f"127.0.0.1:{port}")
    try:
        token = (home / "console.token").read_text().strip()
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as client:
            listed = client.get("/api/v1/runs").json()
        assert [run["id"] for run in listed["runs"]] == ["01RECORDEDELSEWHERE0000000"]
        assert not (home / "runs.db").exists()  # no SQLite file beside it
    finally:
        daemon.stop()
    assert PASSWORD not in Path(daemon.log.name).read_text()


def test_a_row_and_its_log_entry_land_together_in_postgresql(postgres_url: str) -> None:
    store = open_store(postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(
            """CREATE FUNCTION refuse() RETURNS trigger AS $$
               BEGIN RAISE EXCEPTION 'log refused'; END $$ LANGUAGE plpgsql"""
        )
        admin.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON run_events FOR EACH ROW "
            "EXECUTE FUNCTION refuse()"
        )
    with pytest.raises(psycopg.Error, match="log refused"):
        store.record(RunStarted("R1", "a", "m", "p", "sha", {}, "goal"))
    assert store.run("R1") is None  # not a run without its entry
    store.close()
