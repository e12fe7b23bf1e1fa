"""The Celery executor with real processes: a daemon (--executor celery), `agentrun worker`
processes, a real Redis broker (the `redis_url` fixture) and one SQLite store they share.

The runs are the 5-step scripted conversation of tests/celery_support.py: four calls of a
tool whose side effect (a line in a file) is counted, then an answer.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.events import RunStarted
from runner.store import RunStore
from runner.store.location import open_store
from tests.conftest import ROOT
from tests.helpers import wait_for, write_spec
from tests.test_daemon import WAIT_S, DaemonProcess, free_port

#: The visibility timeout of the tests' broker, in seconds: a message of a killed worker
#: goes to another worker this long after it was taken.
VISIBILITY_S = "3"


class WorkerProcess:
    """`agentrun worker` in a session of its own (so kill -9 reaches its pool processes)."""

    def __init__(self, tmp: Path, name: str, queues: str = "agentrun", **env: str) -> None:
        self.name = f"{name}@test"
        self.log_path = tmp / f"worker-{name}.log"
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "runner",
                "worker",
                "--queues",
                queues,
                "--concurrency",
                "1",
                "--model-path",
                "direct",
                "--hostname",
                self.name,
            ],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(
            lambda: f"{self.name} ready." in self.output() or self.process.poll() is not None,
            f"worker {self.name} to be ready",
            WAIT_S,
        )
        assert self.process.poll() is None, self.output()

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text()

    def kill9(self) -> None:
        """SIGKILL the worker and its pool processes, at once (no shutdown of any kind)."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=WAIT_S)

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=WAIT_S)
        self.log.close()


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.close()


@pytest.fixture
def stores() -> Iterator[list[RunStore]]:
    """Stores a test opened, closed after it."""
    opened: list[RunStore] = []
    yield opened
    for store in opened:
        store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def shared(
    request: pytest.FixtureRequest, tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> str:
    """The environment every process of a test shares: broker, store, model, counted file.

    The store (its location: a ``sqlite:///`` or ``postgresql://`` URL) is each backend's.
    """
    if request.param == "postgres":
        location = request.getfixturevalue("postgres_url")
    else:
        (tmp_path / "store").mkdir()
        location = f"sqlite:///{tmp_path / 'store' / 'runs.db'}"
    monkeypatch.setenv("AGENTRUN_BROKER", redis_url)
    monkeypatch.setenv("AGENTRUN_STORE", location)
    monkeypatch.setenv("AGENTRUN_VISIBILITY_TIMEOUT", VISIBILITY_S)
    monkeypatch.setenv("AGENTRUN_MODEL_FACTORY", "tests.celery_support:model")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("CELERY_TEST_FILE", str(tmp_path / "steps.txt"))
    monkeypatch.setenv("CELERY_TEST_HOLD", str(tmp_path / "hold"))
    return location


def counter_spec(agents: Path, name: str = "counter", extra: str = "") -> Path:
    body = textwrap.dedent(
        f"""
        version: 1
        name: {name}
        model: openai/test-double
        goal: count
        tools:
          functions:
            step: {{function: "tests.celery_support:step", risk: low}}
        triggers:
          - manual: true
        """
    )
    return write_spec(agents, body + extra, name=f"{name}.yaml")


def run_id_of(started: subprocess.CompletedProcess[str]) -> str:
    assert started.returncode == 0, started.stderr
    return started.stdout.split()[1].rstrip(":")


def steps(path: Path) -> list[tuple[str, int]]:
    """The counted side effects: ``(step-N, pid)`` per line."""
    if not path.exists():
        return []
    return [
        (line.split()[0], int(line.split()[2]))
        for line in path.read_text().splitlines()
        if line.strip()
    ]


def ended(store: RunStore, run_id: str) -> object:
    """The run once it ended (``interrupted`` is a moment between two deliveries)."""
    row = store.run(run_id)
    done = row is not None and row.status != "running" and row.stop_reason != "interrupted"
    return row if done else None


def test_a_run_completes_on_a_worker_and_status_shows_the_workers(
    tmp_path: Path,
    agents: Path,
    home: Path,
    shared: str,
    daemons: list,
    workers: list,
    stores: list,
) -> None:
    counter_spec(agents, extra="concurrency: allow\n")
    workers.append(WorkerProcess(tmp_path, "one"))
    daemon = DaemonProcess(agents, home, "--executor", "celery")
    daemons.append(daemon)
    done = daemon.cli("trigger", "counter", "--wait")
    assert done.returncode == 0, done.stderr + daemon.output() + workers[0].output()
    assert "4 steps done" in done.stdout
    run_id = done.stdout.split()[1].rstrip(":")
    store = open_store(shared)
    stores.append(store)
    row = store.run(run_id)
    assert row is not None and row.stop_reason == "completed" and row.steps == 5
    # It ran in the worker's pool process, not in the daemon nor a local worker of its own.
    assert row.pid not in (daemon.process.pid, None)
    assert [s for s, _ in steps(tmp_path / "steps.txt")] == ["step-0", "step-1", "step-2", "step-3"]
    assert {pid for _, pid in steps(tmp_path / "steps.txt")} == {row.pid}
    assert not (home / "runs.db").exists()  # the store is AGENTRUN_STORE's, shared

    def seen() -> dict | None:
        answer = json.loads(daemon.cli("daemon", "status", "--json").stdout)
        hosts = {w["hostname"]: w for w in answer["workers"]}
        return answer if hosts.get("one@test", {}).get("queues") == ["agentrun"] else None

    status = wait_for(seen, "the worker in the daemon's status", WAIT_S)
    assert status["executor"] == "celery" and status["litellm_imported"] is False
    text = daemon.cli("daemon", "status").stdout
    assert "executor celery" in text and "worker one@test (queues agentrun)" in text
    assert daemon.stop() == 0


def test_a_worker_killed_mid_run_has_its_run_finished_by_another_with_no_call_repeated(
    tmp_path: Path,
    agents: Path,
    home: Path,
    shared: str,
    daemons: list,
    workers: list,
    stores: list,
) -> None:
    counter_spec(agents)
    hold = tmp_path / "hold"
    hold.write_text("")  # step 2 waits while it exists: the worker is killed there
    first = WorkerProcess(tmp_path, "first")
    workers.append(first)
    daemon = DaemonProcess(agents, home, "--executor", "celery")
    daemons.append(daemon)
    run_id = run_id_of(daemon.cli("trigger", "counter"))
    wait_for(lambda: Path(str(hold) + ".holding").exists(), "step 2 to begin", WAIT_S)
    second = WorkerProcess(tmp_path, "second")
    workers.append(second)
    first.kill9()
    hold.unlink()
    store = open_store(shared)
    stores.append(store)
    row = wait_for(lambda: ended(store, run_id), "the run to end on the second worker", WAIT_S)
    assert row.stop_reason == "completed", daemon.output() + second.output()
    counted = steps(tmp_path / "steps.txt")
    # Completed calls ran once; step 2 was in flight when the worker died and re-ran (its
    # tool is low risk: the in-flight rule of `agentrun resume`).
    assert Counter(s for s, _ in counted) == {"step-0": 1, "step-1": 1, "step-2": 2, "step-3": 1}
    pids = [pid for _, pid in counted]
    assert pids[0] == pids[1] == pids[2] != pids[3] == pids[4]  # the first, then the second
    assert "continuing it from its journal" in second.output()
    assert [r.id for r in store.runs()] == [run_id]  # one run, one row, one stop reason
    finished = [e for e in store.export(run_id) if e.get("type") == "run_finished"]
    assert [e.get("stop_reason") for e in finished][-1] == "completed"

    def collected() -> bool:
        answer = json.loads(daemon.cli("daemon", "status", "--json").stdout)
        return not answer["agents"][0]["running"]

    wait_for(collected, "the daemon to collect the run", WAIT_S)
    assert f"run {run_id} of counter ended: completed" in daemon.output()


def test_replace_cancels_a_run_on_a_worker_before_the_next_starts(
    tmp_path: Path,
    agents: Path,
    home: Path,
    shared: str,
    daemons: list,
    workers: list,
    stores: list,
) -> None:
    counter_spec(agents, extra="concurrency: replace\n")
    hold = tmp_path / "hold"
    hold.write_text("")
    workers.append(WorkerProcess(tmp_path, "one"))
    daemon = DaemonProcess(agents, home, "--executor", "celery")
    daemons.append(daemon)
    old = run_id_of(daemon.cli("trigger", "counter"))
    wait_for(lambda: Path(str(hold) + ".holding").exists(), "step 2 to begin", WAIT_S)
    new = run_id_of(daemon.cli("trigger", "counter"))
    store = open_store(shared)
    stores.append(store)
    cancelled = wait_for(lambda: ended(store, old), "the replaced run to end", WAIT_S)
    assert cancelled.stop_reason == "cancelled", daemon.output() + workers[0].output()
    hold.unlink()
    completed = wait_for(lambda: ended(store, new), "the replacing run to end", WAIT_S)
    assert completed.stop_reason == "completed"
    assert completed.started_at >= cancelled.ended_at  # never two runs of it at once
    fire = store.fire_of_run(old)
    assert fire is not None and fire.outcome == "cancelled" and new in fire.reason
    assert "cancelled by the daemon" in workers[0].output()


def test_an_agent_with_a_queue_runs_only_on_the_workers_of_that_queue(
    tmp_path: Path,
    agents: Path,
    home: Path,
    shared: str,
    daemons: list,
    workers: list,
    stores: list,
) -> None:
    counter_spec(agents, "gpu-counter", "concurrency: allow\nexecutor: {queue: gpu}\n")
    counter_spec(agents, "cpu-counter")
    cpu_steps, gpu_steps = tmp_path / "cpu.txt", tmp_path / "gpu.txt"
    workers.append(WorkerProcess(tmp_path, "cpu", CELERY_TEST_FILE=str(cpu_steps)))
    workers.append(WorkerProcess(tmp_path, "gpu", "gpu", CELERY_TEST_FILE=str(gpu_steps)))
    daemon = DaemonProcess(agents, home, "--executor", "celery")
    daemons.append(daemon)
    for _ in range(2):
        done = daemon.cli("trigger", "gpu-counter", "--wait")
        assert done.returncode == 0, done.stderr + daemon.output()
    assert len(steps(gpu_steps)) == 8 and steps(cpu_steps) == []
    done = daemon.cli("trigger", "cpu-counter", "--wait")
    assert done.returncode == 0, done.stderr
    assert len(steps(gpu_steps)) == 8 and len(steps(cpu_steps)) == 4
    explained = daemon.cli("explain", str(agents / "gpu-counter.yaml"))
    assert "executor queue: gpu" in explained.stdout


def test_a_missing_or_unreachable_broker_is_a_clear_error(
    tmp_path: Path, agents: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter_spec(agents)
    monkeypatch.setenv("AGENTRUN_HOME", str(home))

    def agentrun(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "runner", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=WAIT_S,
        )

    for command in (["daemon", str(agents), "--executor", "celery"], ["worker"]):
        unset = agentrun(*command)
        assert unset.returncode == 1 and "no broker: set AGENTRUN_BROKER" in unset.stderr
        assert "Traceback" not in unset.stderr
    dead = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    for command in (["daemon", str(agents), "--executor", "celery"], ["worker"]):
        down = agentrun(*command, "--broker", dead)
        assert down.returncode == 1, down.stderr
        assert "cannot reach the broker at redis://:***@127.0.0.1:" in down.stderr
        assert "hunter2" not in down.stderr and "Traceback" not in down.stderr
    wrong = agentrun("worker", "--broker", "http://example.invalid/")
    assert wrong.returncode == 1 and "is not a redis:// or rediss:// URL" in wrong.stderr
    bad_queue = agentrun("worker", "--queues", "gpu,no way", "--broker", dead)
    assert bad_queue.returncode == 2 and "'no way' is not a queue name" in bad_queue.stderr


def test_a_delivery_waits_while_its_run_is_alive_and_continues_it_once_dead(
    tmp_path: Path,
) -> None:
    from runner.daemon.celery_worker import Plan, plan_task
    from runner.events import StopReason

    store = RunStore(tmp_path / "runs.db")
    job = {"run_id": "R1", "resume": False}
    assert plan_task(store, job, cancelled=False) is Plan.RUN
    assert plan_task(store, job, cancelled=True) is Plan.SKIP  # withdrawn before it began
    # Recorded by this (live) process, heartbeat fresh: another delivery runs it.
    store.record(RunStarted("R1", "a", "openai/x", "a.yaml", "0", {}, "go", "manual"))
    assert plan_task(store, job, cancelled=False) is Plan.WAIT
    assert plan_task(store, job, cancelled=True) is Plan.WAIT
    assert store.run("R1").status == "running"
    # Its process gone (a pid that no longer exists on this machine): continued.
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    store.db.execute("UPDATE runs SET pid = ? WHERE id = 'R1'", (int(gone.stdout),))
    assert plan_task(store, job, cancelled=False) is Plan.RESUME
    assert store.run("R1").stop_reason == "interrupted"
    assert plan_task(store, job, cancelled=False) is Plan.RESUME  # interrupted: continue it
    assert plan_task(store, job, cancelled=True) is Plan.SKIP
    # Ended: nothing to do, unless the daemon sends it as a resume (then the claim decides).
    store.record(RunStarted("R2", "a", "openai/x", "a.yaml", "0", {}, "go", "manual"))
    store.end_run_left_running("R2", "finished", StopReason.COMPLETED, "")
    assert plan_task(store, {"run_id": "R2"}, cancelled=False) is Plan.SKIP
    # A worker died while a cancel was pending: the run ends cancelled, not continued.
    store.record(RunStarted("R3", "a", "openai/x", "a.yaml", "0", {}, "go", "manual"))
    store.db.execute("UPDATE runs SET pid = ? WHERE id = 'R3'", (int(gone.stdout),))
    assert plan_task(store, {"run_id": "R3"}, cancelled=True) is Plan.END_CANCELLED


def test_the_spec_names_its_queue_and_a_bad_name_is_located(tmp_path: Path) -> None:
    from runner.errors import SpecError
    from runner.spec import load_spec

    assert load_spec(counter_spec(tmp_path)).executor.queue == "agentrun"
    gpu = load_spec(counter_spec(tmp_path, "gpu", "executor: {queue: gpu.large-1}\n"))
    assert gpu.executor.queue == "gpu.large-1"
    bad = counter_spec(tmp_path, "bad", "executor:\n  queue: no way\n  node: x\n")
    with pytest.raises(SpecError) as raised:
        load_spec(bad)
    shown = "\n".join(d.render() for d in raised.value.diagnostics)
    assert "bad.yaml:11:10" in shown and "'no way'" in shown
    assert "bad.yaml:12:3" in shown and "node" in shown


def test_a_task_that_fails_before_its_run_is_recorded_ends_its_fire_failed(
    tmp_path: Path,
    agents: Path,
    home: Path,
    shared: str,
    daemons: list,
    workers: list,
    stores: list,
) -> None:
    # The spec loads (the daemon checks it) but its run cannot compile on the worker: a
    # function tool that does not exist. No run row is ever written: the fire says why.
    spec = counter_spec(agents).read_text().replace("celery_support:step", "celery_support:nope")
    (agents / "counter.yaml").write_text(spec)
    workers.append(WorkerProcess(tmp_path, "one"))
    daemon = DaemonProcess(agents, home, "--executor", "celery")
    daemons.append(daemon)
    done = daemon.cli("trigger", "counter", "--wait")
    assert done.returncode != 0, done.stdout
    run_id = done.stdout.split()[1].rstrip(":")
    store = open_store(shared)
    stores.append(store)
    fire = store.fire_of_run(run_id)
    assert fire is not None and fire.outcome == "failed", daemon.output()
    assert "could not start it" in fire.reason and "nope" in fire.reason
    assert store.run(run_id) is None

    def collected() -> bool:
        answer = json.loads(daemon.cli("daemon", "status", "--json").stdout)
        return not answer["agents"][0]["running"]

    wait_for(collected, "the daemon to count the run ended", WAIT_S)
