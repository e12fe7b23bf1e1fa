"""Warm workers per model path (issue 19, item 3): a direct worker never imports litellm.

The daemon keeps idle workers only for the model paths its loaded specs use
(:func:`runner.daemon.executor.model_path`): ``direct`` (every model an OpenAI-compatible
endpoint, the openai SDK only) or ``litellm``. The first test runs a real daemon with real
workers and no test double: an ``openai/*`` spec pointed at the fake OpenAI-compatible
server (``OPENAI_BASE_URL``), with a ``litellm`` package earlier on ``PYTHONPATH`` that
records the pid of any process importing it. The others use the in-process daemon and fake
spawn of ``tests/test_daemon_hardening.py`` to see which path each worker was spawned for.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.daemon.control import control_request
from runner.daemon.executor import DIRECT, LITELLM, model_path
from runner.daemon.lifecycle import Daemon
from runner.spec import load_spec
from runner.store import RunStore
from runner.testing import FakeOpenAIServer, text
from tests.conftest import ROOT
from tests.helpers import wait_for, write_spec
from tests.test_daemon_hardening import Clock, FakeSpawn, scenario, settle, trigger

#: Stands in for litellm in the daemon's processes: notes who imported it, then fails.
TRIPWIRE = """
import os
open(os.path.join(os.environ["LITELLM_TRIPWIRE"], str(os.getpid())), "w").close()
raise ImportError("litellm imported by a process that must not import it")
"""


def spec_text(name: str, model: str, extra: str = "") -> str:
    return textwrap.dedent(
        f"""
        version: 1
        name: {name}
        model: {model}
        goal: hello
        concurrency: allow
        triggers:
          - manual: true
        """
    ) + textwrap.dedent(extra)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer([text("hello from the fake server")], repeat_last=True) as fake:
        yield fake


@pytest.mark.slow
def test_an_openai_daemon_runs_a_manual_trigger_in_a_direct_worker_without_litellm(
    tmp_path: Path, server: FakeOpenAIServer
) -> None:
    agents = tmp_path / "agents"
    agents.mkdir()
    write_spec(agents, spec_text("direct", "openai/fake"), name="direct.yaml")
    home = tmp_path / "home"
    home.mkdir()
    shadow = tmp_path / "shadow"
    (shadow / "litellm").mkdir(parents=True)
    (shadow / "litellm" / "__init__.py").write_text(TRIPWIRE)
    tripped = tmp_path / "tripped"
    tripped.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("AGENTRUN_MODEL_FACTORY", "AGENTRUN_OPENAI_PATH", "OPENAI_API_BASE")
    }
    env |= {
        "AGENTRUN_HOME": str(home),
        "PYTHONPATH": os.pathsep.join([str(shadow), str(ROOT)]),
        "LITELLM_TRIPWIRE": str(tripped),
        "OPENAI_BASE_URL": server.api_base,
        "OPENAI_API_KEY": "sk-fake-000000",
    }
    log = (tmp_path / "daemon.log").open("w")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "runner", "daemon", str(agents), "--grace", "1"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: (home / "daemon.sock").exists() or daemon.poll() is not None, "socket")
        assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()
        wait_for(lambda: control_request(home, {"op": "status"})["workers_idle"], "a warm worker")
        answer = control_request(home, {"op": "trigger", "agent": "direct", "inputs": {}})
        run_id = answer["run_id"]
        store = RunStore(home / "runs.db")
        try:
            row = wait_for(
                lambda: (r := store.run(run_id)) is not None and r.status != "running" and r,
                "the run's end",
            )
        finally:
            store.close()
        assert (row.status, row.stop_reason) == ("finished", "completed"), row.message
        assert len(server.requests) == 1  # the run's one call reached the fake server
        status = control_request(home, {"op": "status"})
        assert status["litellm_imported"] is False
        assert status.get("workers_idle_by_path", {}).keys() == {DIRECT}  # no litellm pool
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=120)
        log.close()
    output = (tmp_path / "daemon.log").read_text()
    assert "direct worker" in output, output
    # No process of the daemon (itself, its idle workers, the run's worker) imported it.
    assert sorted(p.name for p in tripped.iterdir()) == [], output


def test_model_path_of_specs(tmp_path: Path) -> None:
    def path_of(model: str, extra: str = "") -> str:
        spec = write_spec(tmp_path, spec_text("a", model, extra), name="a.yaml")
        return model_path(load_spec(spec))

    assert path_of("openai/gpt-4o-mini") == DIRECT
    assert path_of("local/smollm2") == DIRECT
    assert path_of("anthropic/claude-3-5-haiku-latest") == LITELLM
    # A fallback at another provider goes through litellm: the run needs it.
    fallback = "model:\n  id: openai/gpt-4o-mini\n  fallbacks: [anthropic/claude-3-5-haiku]\n"
    spec = write_spec(
        tmp_path,
        spec_text("a", "openai/gpt-4o-mini").replace("model: openai/gpt-4o-mini\n", fallback),
        name="a.yaml",
    )
    assert model_path(load_spec(spec)) == LITELLM
    # A budget does not need litellm: the direct path counts its estimate with tiktoken.
    assert path_of("openai/gpt-4o-mini", "budgets: {max_cost_usd: 1.0}\n") == DIRECT


def agents_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "agents"
    folder.mkdir(exist_ok=True)
    return folder


def test_only_openai_specs_keep_only_direct_workers(tmp_path: Path, home: Path) -> None:
    agents = agents_folder(tmp_path)
    write_spec(agents, spec_text("a", "openai/gpt-4o-mini"), name="a.yaml")

    async def body(daemon: Daemon, spawn: FakeSpawn, clock: Clock) -> None:
        daemon.take_over()
        await daemon.tick()
        await settle()
        assert spawn.paths == [DIRECT]
        run_id = trigger(daemon, "a")["run_id"]
        await settle()
        assert spawn.jobs == [run_id] and daemon.executor.running[run_id].path == DIRECT
        await daemon.tick()
        await settle()
        assert spawn.paths == [DIRECT, DIRECT]  # the replacement

    scenario(home, agents, body)


def test_a_spec_needing_litellm_gets_a_litellm_worker(tmp_path: Path, home: Path) -> None:
    agents = agents_folder(tmp_path)
    write_spec(agents, spec_text("a", "openai/gpt-4o-mini"), name="a.yaml")
    write_spec(agents, spec_text("b", "anthropic/claude-3-5-haiku-latest"), name="b.yaml")

    async def body(daemon: Daemon, spawn: FakeSpawn, clock: Clock) -> None:
        daemon.take_over()
        await daemon.tick()
        await settle()
        assert sorted(spawn.paths) == [DIRECT, LITELLM]  # one idle worker for each path in use
        status = daemon.status()
        assert status["workers_idle_by_path"] == {DIRECT: 1, LITELLM: 1}
        direct, litellm = trigger(daemon, "a")["run_id"], trigger(daemon, "b")["run_id"]
        await settle()
        assert sorted(spawn.jobs) == sorted([direct, litellm])
        assert daemon.executor.running[direct].path == DIRECT
        assert daemon.executor.running[litellm].path == LITELLM

    scenario(home, agents, body)


def test_a_run_whose_path_has_no_idle_worker_gets_one_spawned(tmp_path: Path, home: Path) -> None:
    agents = agents_folder(tmp_path)
    write_spec(agents, spec_text("b", "anthropic/claude-3-5-haiku-latest"), name="b.yaml")

    async def body(daemon: Daemon, spawn: FakeSpawn, clock: Clock) -> None:
        daemon.take_over()
        await daemon.tick()
        await settle()
        assert spawn.paths == []  # --workers 0: nothing idle
        run_id = trigger(daemon, "b")["run_id"]
        await settle()
        assert spawn.paths == [LITELLM] and spawn.jobs == [run_id]
        assert daemon.executor.running[run_id].path == LITELLM

    scenario(home, agents, body, pool=0)


def test_idle_workers_of_a_path_no_spec_uses_any_more_are_stopped(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agents = agents_folder(tmp_path)
    write_spec(agents, spec_text("a", "openai/gpt-4o-mini"), name="a.yaml")
    second = write_spec(agents, spec_text("b", "anthropic/claude-3-5-haiku"), name="b.yaml")
    killed: list[int] = []
    monkeypatch.setattr(os, "killpg", lambda pid, signum: killed.append(pid))

    async def body(daemon: Daemon, spawn: FakeSpawn, clock: Clock) -> None:
        daemon.take_over()
        await daemon.tick()
        await settle()
        litellm = next(w for w in daemon.executor.idle if w.path == LITELLM)
        second.unlink()
        daemon.rescan_needed = True
        await daemon.tick()
        await settle()
        assert killed == [litellm.process.pid]
        assert [w.path for w in daemon.executor.free_workers()] == [DIRECT]
        assert spawn.paths.count(LITELLM) == 1  # and none spawned again

    scenario(home, agents, body)
