"""The daemon's frictions of issue 18: what its log, status, stop and workers left unsaid.

In-process daemons with the fake spawn of ``tests/test_daemon_hardening.py`` (no process
started, nothing sleeps), a real worker process for the broken pipe, and the CLI through
click's ``CliRunner``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import runner.daemon.control
from runner.cli import cli
from runner.daemon.lifecycle import Daemon, lock_path
from runner.events import RunFinished, RunStarted, StopReason
from runner.store import RunStore, new_run_id
from tests.conftest import ROOT
from tests.helpers import write_spec
from tests.test_daemon_hardening import (
    Clock,
    FakeSpawn,
    agent_spec,
    fires,
    record_fires,
    scenario,
    settle,
    trigger,
)


@pytest.fixture
def daemon_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    logger = logging.getLogger("agentrun.daemon")
    logger.propagate = True  # configure_logging (a CLI test may have run it) turns it off
    caplog.set_level(logging.INFO, logger="agentrun.daemon")
    return caplog


def test_the_log_gives_a_failed_runs_reason_and_message(
    home: Path, agents: Path, daemon_log: pytest.LogCaptureFixture
) -> None:
    agent_spec(agents, "ack", "allow")

    async def body(daemon: Daemon, spawn: FakeSpawn, clock: Clock) -> None:
        daemon.rescan()
        run_id = trigger(daemon, "ack")["run_id"]
        await settle()
        worker = spawn.worker_of(run_id)
        spawn.store.record(
            RunFinished(
                run_id,
                StopReason.MODEL_ERROR,
                None,
                1,
                0,
                0,
                0,
                None,
                0.1,
                message="every model failed: openai/x: could not reach api.example.com\nmore",
            )
        )
        worker.exit(0)
        await settle()
        daemon.reap()

    scenario(home, agents, body)
    [ended] = [r.getMessage() for r in daemon_log.records if " ended: " in r.getMessage()]
    assert ended.endswith(
        "ended: model_error: every model failed: openai/x: could not reach api.example.com"
    )


def test_loading_warns_of_a_missing_key_variable_and_a_webhook_without_a_listener(
    home: Path,
    agents: Path,
    daemon_log: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HOOKED_KEY", raising=False)
    write_spec(
        agents,
        """
        version: 1
        name: hooked
        model: {id: openai/gpt-4o-mini, api_key_env: HOOKED_KEY}
        goal: hello
        triggers:
          - webhook: {secret_env: HOOK_SECRET}
        """,
        name="hooked.yaml",
    )

    write_spec(
        agents,
        "version: 1\nname: plain\nmodel: openai/gpt-4o-mini\ngoal: hello\n",
        name="plain.yaml",
    )

    async def body(daemon: Daemon, spawn: FakeSpawn, clock: Clock) -> None:
        daemon.rescan()
        assert {"hooked", "plain"} <= set(daemon.agents)  # loaded all the same

    scenario(home, agents, body)
    warnings = [r.getMessage() for r in daemon_log.records if r.levelno == logging.WARNING]
    assert any(
        w.startswith("agent hooked: ") and "'HOOKED_KEY'" in w and "not set" in w for w in warnings
    ), warnings
    assert any(
        w.startswith("agent plain: ") and "OPENAI_API_KEY" in w and "not set" in w for w in warnings
    ), warnings
    assert any(
        w.startswith("agent hooked: ") and "webhook" in w and "--http HOST:PORT" in w
        for w in warnings
    ), warnings


def test_status_shows_the_last_outcome_after_a_restart(home: Path, agents: Path) -> None:
    agent_spec(agents, "ack", "allow")
    finished = new_run_id()
    store = RunStore(home / "runs.db")
    store.record(RunStarted(finished, "ack", "m", "p", "0" * 64, {}, "goal", "manual"))
    store.record(RunFinished(finished, StopReason.DENIED, None, 1, 0, 0, 0, None, 0.1))
    store.close()

    async def body(daemon: Daemon, spawn: FakeSpawn, clock: Clock) -> None:
        daemon.take_over()
        [status] = daemon.status()["agents"]
        assert status["last"] == f"denied ({finished})"

    scenario(home, agents, body)


def test_daemon_stop_waits_for_the_daemon_to_exit(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTRUN_HOME", str(home))
    monkeypatch.setattr(
        runner.daemon.control,
        "control_request",
        lambda home, request: {"stopping": True, "running": []},
    )
    held = lock_path(home).open("a+")
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the daemon, still up
    try:
        result = CliRunner().invoke(cli, ["daemon", "stop", "--wait", "--timeout", "0.3"])
        assert result.exit_code == 6, result.output
        assert "still running after 0.3 s" in result.output
        released = threading.Timer(0.2, held.close)  # the daemon exits a moment later
        released.start()
        result = CliRunner().invoke(cli, ["daemon", "stop", "--wait", "--timeout", "30"])
        released.join()
        assert result.exit_code == 0, result.output
        assert result.output.splitlines()[-1] == "daemon stopped"
    finally:
        held.close()


def test_a_worker_whose_daemon_died_reports_nothing_and_logs_no_traceback(
    tmp_path: Path, home: Path
) -> None:
    spec = write_spec(
        tmp_path, "version: 1\nname: orphaned\nmodel: openai/test-double\ngoal: hello\n"
    )
    env = {
        **os.environ,
        "AGENTRUN_HOME": str(home),
        "AGENTRUN_MODEL_FACTORY": "tests.daemon_support:model",
        "PYTHONPATH": str(ROOT),
    }
    read_end, write_end = os.pipe()
    worker = subprocess.Popen(
        [sys.executable, "-m", "runner.daemon.worker"],
        stdin=subprocess.PIPE,
        stdout=write_end,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )
    os.close(write_end)
    with os.fdopen(read_end, "rb") as stdout:
        assert json.loads(stdout.readline()) == {"ready": True}
    # The daemon is gone: nobody reads the worker's stdout any more.
    run_id = new_run_id()
    job = {"run_id": run_id, "spec_path": str(spec), "inputs": {}, "trigger": "manual"}
    _, stderr = worker.communicate(json.dumps(job).encode() + b"\n", timeout=120)
    assert b"Traceback" not in stderr and b"BrokenPipeError" not in stderr, stderr.decode()
    assert worker.returncode == 0
    store = RunStore(home / "runs.db")
    row = store.run(run_id)
    store.close()
    assert row is not None and row.stop_reason is StopReason.COMPLETED


def test_a_recovered_allow_fire_starts_beside_an_adopted_run_at_once(
    home: Path, agents: Path
) -> None:
    agent_spec(agents, "ack", "allow")
    [recovered] = record_fires(home, agents, "ack", 1)
    orphan_id = new_run_id(1_714_564_700_000)
    orphan = subprocess.Popen(["sleep", "600"])  # the adopted run's worker, still alive
    try:
        store = RunStore(home / "runs.db")
        store.record(RunStarted(orphan_id, "ack", "m", "p", "0" * 64, {}, "goal", "manual"))
        store.db.execute("UPDATE runs SET pid = ? WHERE id = ?", (orphan.pid, orphan_id))
        store.close()

        async def body(daemon: Daemon, spawn: FakeSpawn, clock: Clock) -> Any:
            daemon.take_over()
            await settle()
            await daemon.tick()
            await settle()
            assert spawn.jobs == [recovered] and orphan.poll() is None
            assert fires(daemon)[recovered][0] == "started"

        scenario(home, agents, body)
    finally:
        orphan.kill()
        orphan.wait()
