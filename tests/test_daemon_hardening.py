"""The daemon's warm pool, `replace`, recovered fires and catch-up; benches that clean up.

Issue 16 items 13 (the pool over-spawned: N(N+1)/2 workers for N fires in one slot) and 10
(`replace` let runs waiting for a worker overlap), one of its "four that held" (recovered
fires restarted one at a time whatever the policy), and issue 18's catch-up run dispatched
twice after a restart.

The daemon runs in this process with the real scheduler and executor, a fixed clock, and a
fake spawn (:class:`FakeSpawn`) that hands the executor fake worker processes and counts
them: no process is started and nothing sleeps. The tests let the event loop run
(:func:`settle`) and say when a worker is warm and when a run ends; a fake worker records its
run's start and end in the store as the real one does.

The last tests start the bench harnesses for real (a daemon with real workers, the overhead
bench's servers, an MCP server), make them fail, and look for survivors.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from runner.daemon import executor as executor_module
from runner.daemon.lifecycle import Daemon
from runner.daemon.state import Fire
from runner.events import RunFinished, RunStarted, StopReason
from runner.processes import process_alive
from runner.store import RunStore, new_run_id
from runner.triggers import slot_run_id
from tests.conftest import ROOT
from tests.helpers import write_spec

#: Fake pids start above Linux's largest pid_max (2**22): a stray kill finds no process.
FAKE_PID = 10_000_000
T0 = datetime(2024, 5, 1, 12, 0, 30, tzinfo=UTC)


# -- fakes ---------------------------------------------------------------------------------


class FakeWorker:
    """A worker process that runs nothing: warm when told, ends its run when told.

    It has what :class:`runner.daemon.executor.WorkerProcess` names: ``pid``, ``returncode``,
    ``stdin`` (``write``, ``drain``), ``stdout`` (``readline``), ``wait``, ``send_signal``.
    """

    def __init__(self, spawn: FakeSpawn, pid: int) -> None:
        self.spawn = spawn
        self.pid = pid
        self.returncode: int | None = None
        self.stdin = self
        self.stdout = self
        self.lines: asyncio.Queue[bytes] = asyncio.Queue()
        self.exited = asyncio.Event()
        self.job: dict[str, Any] | None = None
        self.signals: list[int] = []

    def write(self, data: bytes) -> None:
        assert self.job is None, "a worker is handed one job"
        self.job = json.loads(data)
        self.spawn.job_started(self)

    async def drain(self) -> None:
        return None

    async def readline(self) -> bytes:
        return await self.lines.get()

    async def wait(self) -> int:
        await self.exited.wait()
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        self.signals.append(signum)  # the run ends when the test says (a cancel takes time)

    def warm(self) -> None:
        self.lines.put_nowait(b'{"ready": true}\n')

    def end(self, stop_reason: StopReason = StopReason.COMPLETED) -> None:
        """Its run ends (recorded, as the real worker does), then the process exits."""
        if self.job is not None:
            self.spawn.job_ended(self, stop_reason)
        self.exit(0)

    def exit(self, code: int) -> None:
        """The process exits (a run it had is left as it was recorded: SIGKILL)."""
        if self.job is not None:
            self.spawn.running.pop(self.job["run_id"], None)
        self.returncode = code
        self.lines.put_nowait(b"")
        self.exited.set()


class FakeSpawn:
    """A :data:`runner.daemon.executor.SpawnWorker` that counts the workers it starts.

    ``warm``: new workers are warm at once; ``held``: spawns wait for :meth:`release` (a slow
    fork), so several are in flight at once.
    """

    def __init__(self, store: RunStore, warm: bool = True, held: bool = False) -> None:
        self.store = store
        self.warm = warm
        self.released = asyncio.Event()
        if not held:
            self.released.set()
        self.workers: list[FakeWorker] = []
        self.jobs: list[str] = []  # run ids, in the order workers got them
        self.running: dict[str, tuple[str, FakeWorker]] = {}  # run id -> (agent, worker)
        self.most_at_once: dict[str, int] = {}
        self.failures = 0  # spawns that raise OSError before one succeeds
        self.paths: list[str] = []  # the model path of each spawn asked for, in order

    async def __call__(self, path: str = "direct") -> FakeWorker:
        await self.released.wait()
        self.paths.append(path)
        if self.failures:
            self.failures -= 1
            raise OSError(11, "Resource temporarily unavailable")
        worker = FakeWorker(self, FAKE_PID + len(self.workers))
        self.workers.append(worker)
        if self.warm:
            worker.warm()
        return worker

    def release(self) -> None:
        self.released.set()

    @property
    def count(self) -> int:
        return len(self.workers)

    def job_started(self, worker: FakeWorker) -> None:
        assert worker.job is not None
        run_id = worker.job["run_id"]
        agent = yaml.safe_load(worker.job["spec_source"])["name"]
        self.jobs.append(run_id)
        self.running[run_id] = (agent, worker)
        now = sum(1 for name, _ in self.running.values() if name == agent)
        self.most_at_once[agent] = max(self.most_at_once.get(agent, 0), now)
        self.store.record(
            RunStarted(
                run_id,
                agent,
                "openai/test-double",
                worker.job["spec_path"],
                "0" * 64,
                worker.job["inputs"],
                "hello",
                worker.job["trigger"],
            )
        )
        # The real worker's own pid, as the store records it in the worker process.
        self.store.db.execute("UPDATE runs SET pid = ? WHERE id = ?", (worker.pid, run_id))

    def job_ended(self, worker: FakeWorker, stop_reason: StopReason) -> None:
        assert worker.job is not None
        run_id = worker.job["run_id"]
        self.store.record(RunFinished(run_id, stop_reason, None, 1, 0, 0, 0, None, 0.0))

    def worker_of(self, run_id: str) -> FakeWorker:
        return self.running[run_id][1]


class Clock:
    """The daemon's injected clock."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def settle() -> None:
    """Let every task that can run, run: no time passes (nothing here sleeps)."""
    for _ in range(100):
        await asyncio.sleep(0)


def agent_spec(folder: Path, name: str, concurrency: str, trigger: str = "manual: true") -> None:
    write_spec(
        folder,
        f"""
        version: 1
        name: {name}
        model: openai/test-double
        goal: hello
        concurrency: {concurrency}
        triggers:
          - {trigger}
        """,
        name=f"{name}.yaml",
    )


def scenario(
    home: Path,
    agents: Path,
    body: Callable[[Daemon, FakeSpawn, Clock], Any],
    pool: int = 1,
    **spawn_options: bool,
) -> None:
    """Run ``body(daemon, spawn, clock)`` in a fresh event loop with a fake-spawn daemon."""

    async def main() -> None:
        worker_store = RunStore(home / "runs.db")  # the workers' own connection
        spawn = FakeSpawn(worker_store, **spawn_options)
        clock = Clock(T0)
        daemon = Daemon([agents], home, pool_size=pool, spawn=spawn, clock=clock)
        try:
            await body(daemon, spawn, clock)
        finally:
            daemon.store.close()
            worker_store.close()

    asyncio.run(main())


def fires(daemon: Daemon) -> dict[str, tuple[str, str]]:
    """Each recorded fire: run id -> (outcome, reason)."""
    rows = daemon.store.db.execute("SELECT run_id, outcome, reason FROM fires").fetchall()
    return {row[0]: (row[1], row[2]) for row in rows}


def trigger(daemon: Daemon, agent: str) -> dict[str, Any]:
    """A manual trigger through the control API's own code."""
    return daemon.trigger({"agent": agent})


# -- item 13: the warm pool ----------------------------------------------------------------


def twenty_cron_agents(agents: Path) -> None:
    for i in range(20):
        agent_spec(agents, f"c{i:02d}", "allow", "cron: '* * * * *'")


def test_twenty_fires_in_one_slot_with_a_pool_of_twenty_start_exactly_twenty_workers(
    home: Path, agents: Path
) -> None:
    twenty_cron_agents(agents)

    async def body(daemon: Daemon, spawn: FakeSpawn, clock: Clock) -> None:
        daemon.take_over()
        await daemon.tick()  # the main loop's pass: the pool warms up
        await settle()
        assert spawn.count == 20 and len(daemon.executor.free_workers()) == 20
        clock.now = datetime(2024, 5, 1, 12, 1, tzinfo=UTC)  # one slot for all twenty
        await daemon.tick()
        await settle()
        await daemon.tick()
        await settle()
        slot_ids = {slot_run_id(f"c{i:02d}", 0, clock.now) for i in range(20)}
        assert set(spawn.jobs) == slot_ids and len(spawn.jobs) == 20
        # The twenty runs took the twenty warm workers; the pool is refilled once: 20 more.
        assert spawn.count - 20 == 20
        assert len(daemon.executor.free_workers()) == 20 and daemon.executor.spawning == 0
        assert len(daemon.executor.running) == 20

    scenario(home, agents, body, pool=20)


def test_the_old_refill_arithmetic_spawns_n_n_plus_1_over_2(
    home: Path, agents: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test above can fail: counting only idle workers, as before, spawns 210."""
    twenty_cron_agents(agents)
    monkeypatch.setattr(
        executor_module,
        "workers_to_spawn",
        lambda pool_size, free, spawning, waiting: max(pool_size - free, 0),
    )

    async def body(daemon: Daemon, spawn: FakeSpawn, clock: Clock) -> None:
        daemon.take_over()
        await daemon.tick()
        await settle()
        clock.now = datetime(2024, 5, 1, 12, 1, tzinfo=UTC)
        await daemon.tick()
        await settle()
        assert spawn.count - 20 == 20 * 21 // 2

    scenario(home, agents, body, pool=20)


@pytest.mark.parametrize(("pool", "fired"), [(4, 4), (0, 3), (2, 5)])
def test_fires_while_the_pool_warms_up_spawn_one_worker_each(
    home: Path, agents: Path, pool: int, fired: int
) -> None:
    """Spawns in flight are counted: the pool's own, and one for each start that waits."""
    agent_spec(agents, "many", "allow")

    async def body(daemon: Daemon, spawn: FakeSpawn, clock: Clock) -> None:
        daemon.take_over()
        await daemon.tick()
        await settle()
        assert daemon.executor.spawning == pool and spawn.count == 0  # held: still forking
        ids = [trigger(daemon, "many")["run_id"] for _ in range(fired)]
        await settle()
        await daemon.tick()
        assert daemon.executor.spawning == pool + fired and daemon.executor.waiting == fired
        spawn.release()
        await settle()
        await daemon.tick()
        await settle()
        assert sorted(spawn.jobs) == sorted(ids)
        assert spawn.count == pool + fired
        assert len(daemon.executor.free_workers()) == pool and daemon.executor.waiting == 0

    scenario(home, agents, body, pool=pool, held=True)


def test_a_failed_spawn_is_retried_and_counted_once(
    home: Path, agents: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent_spec(agents, "solo", "allow")
    monkeypatch.setattr(executor_module, "SPAWN_RETRY_S", 0.0)

    async def body(daemon: Daemon, spawn: FakeSpawn, clock: Clock) -> None:
        spawn.failures = 1
        daemon.take_over()
        run_id = trigger(daemon, "solo")["run_id"]
        await settle()
        await daemon.tick()
        await settle()
        assert spawn.jobs == [run_id]
        assert daemon.executor.spawning == 0 and spawn.count == 1

    scenario(home, agents, body, pool=0)


# -- item 10: replace ----------------------------------------------------------------------


def test_replace_cancels_queued_runs_too_and_never_runs_two(home: Path, agents: Path) -> None:
    agent_spec(agents, "solo", "replace")

    async def body(daemon: Daemon, spawn: FakeSpawn, clock: Clock) -> None:
        daemon.take_over()
        await daemon.tick()
        await settle()  # one worker, still warming up
        # Five quick fires: each finds the one before it waiting for a worker.
        waiting = []
        for _ in range(5):
            answer = trigger(daemon, "solo")
            assert answer["outcome"] == "started"
            waiting.append(answer["run_id"])
            await settle()
        r1, r2, r3, r4, r5 = waiting
        assert set(daemon.starting) == {r5} and daemon.agents["solo"].active == {r5}
        spawn.warm = True
        for worker in spawn.workers:
            worker.warm()
        await settle()
        assert spawn.jobs == [r5]  # the four before it never reached a worker
        # While r5 runs: r6 cancels it and waits; r7 drops r6 and waits in its place.
        r6_answer, r7_answer = trigger(daemon, "solo"), None
        await settle()
        r6 = r6_answer["run_id"]
        assert r6_answer["outcome"] == "queued" and spawn.jobs == [r5]
        r5_worker = spawn.worker_of(r5)
        assert r5_worker.signals == [signal.SIGTERM]
        r7_answer = trigger(daemon, "solo")
        await settle()
        r7 = r7_answer["run_id"]
        assert r7_answer["outcome"] == "queued" and spawn.jobs == [r5]
        assert r5_worker.signals == [signal.SIGTERM]  # cancelled once
        assert [q.run_id for q in daemon.agents["solo"].queued] == [r7]
        r5_worker.end(StopReason.CANCELLED)  # it exits: only now does r7 start
        await settle()
        await daemon.tick()
        await settle()
        assert spawn.jobs == [r5, r7]
        spawn.worker_of(r7).end()
        await settle()
        await daemon.tick()
        assert spawn.most_at_once == {"solo": 1}
        # The withdrawn starts gave their claimed worker back: one worker, then one
        # replacement for each run that got a worker.
        assert spawn.count == 3
        recorded = fires(daemon)
        for old, new in [(r1, r2), (r2, r3), (r3, r4), (r4, r5)]:
            outcome, reason = recorded[old]
            assert outcome == "cancelled" and f"replaced by run {new}" in reason
            assert "before it had a worker" in reason
        assert recorded[r5] == ("cancelled", f"replaced by run {r6}")
        assert recorded[r6] == ("cancelled", f"replaced by run {r7} while it waited")
        assert recorded[r7][0] == "started"
        runs = {r.id: r.stop_reason for r in daemon.store.runs(limit=50)}
        assert runs == {r5: "cancelled", r7: "completed"}
        status = daemon.status()["agents"][0]
        assert status["running"] == [] and status["queued"] == []

    scenario(home, agents, body, pool=1, warm=False)


def test_a_replaced_run_that_ignores_sigterm_is_killed_after_the_grace(
    home: Path, agents: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent_spec(agents, "solo", "replace")
    killed: list[tuple[int, int]] = []

    async def body(daemon: Daemon, spawn: FakeSpawn, clock: Clock) -> None:
        seconds = [1000.0]
        daemon.executor.monotonic = lambda: seconds[0]

        def killpg(pid: int, signum: int) -> None:  # the worker's group, as the kernel would
            killed.append((pid, signum))
            next(w for w in spawn.workers if w.pid == pid).exit(-signum)

        monkeypatch.setattr(os, "killpg", killpg)
        daemon.take_over()
        first = trigger(daemon, "solo")["run_id"]
        await settle()
        second = trigger(daemon, "solo")["run_id"]
        await settle()
        stubborn = spawn.worker_of(first)
        assert stubborn.signals == [signal.SIGTERM] and spawn.jobs == [first]
        seconds[0] += executor_module.CANCEL_GRACE_S - 1
        await daemon.tick()
        await settle()
        assert killed == [] and spawn.jobs == [first]  # still within the grace
        seconds[0] += 2
        await daemon.tick()  # past it: SIGKILL to the group
        await settle()
        await daemon.tick()
        await settle()
        assert killed == [(stubborn.pid, signal.SIGKILL)]
        assert spawn.jobs == [first, second] and spawn.most_at_once == {"solo": 1}
        row = daemon.store.run(first)
        assert row is not None and (row.status, row.stop_reason) == ("finished", "cancelled")
        assert f"replaced by run {second}" in (row.message or "")

    scenario(home, agents, body)


def test_a_duplicate_replace_fire_cancels_nothing(home: Path, agents: Path) -> None:
    agent_spec(agents, "solo", "replace")

    async def body(daemon: Daemon, spawn: FakeSpawn, clock: Clock) -> None:
        daemon.take_over()
        first = daemon.trigger({"agent": "solo", "key": "k1"})
        await settle()
        await daemon.tick()
        await settle()
        again = daemon.trigger({"agent": "solo", "key": "k1"})
        assert again["duplicate"] and again["run_id"] == first["run_id"]
        assert spawn.worker_of(first["run_id"]).signals == []

    scenario(home, agents, body)


# -- recovered fires follow the policy -----------------------------------------------------


def record_fires(home: Path, agents: Path, name: str, count: int) -> list[str]:
    """Fires a daemon recorded as started before it died, their runs never begun."""
    ids = [new_run_id(1_714_564_800_000 + i) for i in range(count)]

    async def body(daemon: Daemon, spawn: FakeSpawn, clock: Clock) -> None:
        daemon.rescan()
        for run_id in ids:
            assert daemon.planner.record_fire(Fire(name, "manual", 0, run_id), "started", "manual")

    scenario(home, agents, body)
    return ids


@pytest.mark.parametrize(
    ("policy", "started", "queued", "skipped", "cancelled"),
    [
        ("allow", slice(0, 13), slice(0, 0), slice(0, 0), slice(0, 0)),
        ("forbid", slice(0, 1), slice(0, 0), slice(1, 13), slice(0, 0)),
        ("queue", slice(0, 1), slice(1, 2), slice(2, 13), slice(0, 0)),
        ("replace", slice(12, 13), slice(0, 0), slice(0, 0), slice(0, 12)),
    ],
)
def test_recovered_fires_follow_the_concurrency_policy(
    home: Path,
    agents: Path,
    policy: str,
    started: slice,
    queued: slice,
    skipped: slice,
    cancelled: slice,
) -> None:
    agent_spec(agents, "ack", policy)
    ids = record_fires(home, agents, "ack", 13)

    async def body(daemon: Daemon, spawn: FakeSpawn, clock: Clock) -> None:
        daemon.take_over()
        await settle()
        await daemon.tick()
        await settle()
        assert spawn.jobs == ids[started]  # at once, oldest first
        assert spawn.most_at_once.get("ack", 0) == len(ids[started])
        assert [q.run_id for q in daemon.agents["ack"].queued] == ids[queued]
        recorded = fires(daemon)
        assert {i for i in ids if recorded[i][0] == "started"} == set(ids[started])
        assert {i for i in ids if recorded[i][0] == "queued"} == set(ids[queued])
        assert {i for i in ids if recorded[i][0] == "skipped"} == set(ids[skipped])
        assert {i for i in ids if recorded[i][0] == "cancelled"} == set(ids[cancelled])
        assert all("recovered after a restart" in recorded[i][1] for i in ids)
        if policy == "queue":  # the waiting one starts when the first ends
            spawn.worker_of(ids[0]).end()
            await settle()
            await daemon.tick()
            await settle()
            assert spawn.jobs == ids[0:2]
        assert spawn.most_at_once.get("ack", 0) == (13 if policy == "allow" else 1)

    scenario(home, agents, body, pool=2)


def test_a_recovered_replace_waits_for_an_older_adopted_run_and_never_signals_it(
    home: Path, agents: Path
) -> None:
    agent_spec(agents, "ack", "replace")
    older, newer = record_fires(home, agents, "ack", 2)
    orphan_id = new_run_id(1_714_564_700_000)  # begun before both, by the daemon that died
    orphan = subprocess.Popen(["sleep", "600"])  # its worker, still alive
    try:
        store = RunStore(home / "runs.db")
        store.record(RunStarted(orphan_id, "ack", "m", "p", "0" * 64, {}, "goal", "manual"))
        store.db.execute("UPDATE runs SET pid = ? WHERE id = ?", (orphan.pid, orphan_id))
        store.close()

        async def body(daemon: Daemon, spawn: FakeSpawn, clock: Clock) -> None:
            daemon.take_over()
            await settle()
            await daemon.tick()
            await settle()
            assert spawn.jobs == [] and orphan.poll() is None  # not signalled: not ours
            assert [q.run_id for q in daemon.agents["ack"].queued] == [newer]
            assert fires(daemon)[older][0] == "cancelled"
            orphan.kill()
            orphan.wait()
            await daemon.tick()  # the adopted run is gone: the newest starts
            await settle()
            assert spawn.jobs == [newer]

        scenario(home, agents, body)
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()


def test_an_adopted_run_newer_than_the_recovered_fires_replaces_them(
    home: Path, agents: Path
) -> None:
    agent_spec(agents, "ack", "replace")
    ids = record_fires(home, agents, "ack", 3)
    orphan_id = new_run_id(1_714_564_900_000)  # begun after them
    store = RunStore(home / "runs.db")
    store.record(RunStarted(orphan_id, "ack", "m", "p", "0" * 64, {}, "goal", "manual"))
    store.close()  # its pid is this process: alive

    async def body(daemon: Daemon, spawn: FakeSpawn, clock: Clock) -> None:
        daemon.take_over()
        await settle()
        assert spawn.jobs == [] and daemon.agents["ack"].queued == []
        assert {fires(daemon)[i][0] for i in ids} == {"cancelled"}
        assert daemon.agents["ack"].active == {orphan_id}

    scenario(home, agents, body)


# -- issue 18: the catch-up run after a restart is dispatched once -------------------------


def test_a_catch_up_run_after_a_restart_is_dispatched_once(home: Path, agents: Path) -> None:
    agent_spec(agents, "ticker", "forbid", "cron: '* * * * *'")

    async def first(daemon: Daemon, spawn: FakeSpawn, clock: Clock) -> None:
        daemon.take_over()  # its cursor: T0; then it goes down for five minutes

    scenario(home, agents, first)

    async def second(daemon: Daemon, spawn: FakeSpawn, clock: Clock) -> None:
        clock.now = T0 + timedelta(minutes=5)
        daemon.take_over()
        slot = datetime(2024, 5, 1, 12, 5, tzinfo=UTC)
        catch_up = slot_run_id("ticker", 0, slot)
        status = daemon.status()["agents"][0]
        assert status["running"] == [catch_up] and status["queued"] == []
        await settle()
        await daemon.tick()
        await settle()
        spawn.worker_of(catch_up).end()
        await settle()
        await daemon.tick()
        await settle()
        assert spawn.jobs == [catch_up]  # started once, not again when it ended
        recorded = fires(daemon)
        assert recorded[catch_up][0] == "started"
        assert sorted(o for o, _ in recorded.values()) == ["missed"] * 4 + ["started"]

    scenario(home, agents, second)


# -- benches leave nothing behind ----------------------------------------------------------


def load_bench(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def processes_of(home: Path) -> list[int]:
    """Live processes with AGENTRUN_HOME=home in their environment (this test's own scan)."""
    marker = f"AGENTRUN_HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                variables = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if marker in variables and process_alive(int(entry.name)):
                found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("hung", [False, True], ids=["graceful", "daemon-hung"])
def test_the_daemon_bench_leaves_no_process_when_it_fails(
    home: Path, agents: Path, hung: bool
) -> None:
    bench = load_bench("daemon")
    (agents / "m.yaml").write_text(bench.SPEC.format(name="m", triggers="  - manual: true"))
    seen: list[int] = []
    with (  # noqa: PT012
        pytest.raises(RuntimeError, match="the measurement failed"),
        bench.Daemon(agents, home, "--workers", "2") as daemon,
    ):
        bench.wait_workers(daemon, 2)
        seen = processes_of(home)
        if hung:  # a daemon that does not stop on SIGTERM: killed, and its workers too
            daemon.stop_timeout_s = 1.0
            os.kill(daemon.process.pid, signal.SIGSTOP)
        raise RuntimeError("the measurement failed")
    assert len(seen) >= 3, seen  # the scan sees the daemon and its two workers
    assert processes_of(home) == []


@pytest.mark.slow
def test_the_overhead_bench_stops_its_servers_when_it_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAKE_API_KEY", "restored after the test")
    asyncio_logger = logging.getLogger("asyncio")
    monkeypatch.setattr(asyncio_logger, "level", asyncio_logger.level)
    bench = load_bench("overhead")

    def fail(once: Any) -> tuple[float, float]:
        raise RuntimeError("the measurement failed")

    monkeypatch.setattr(bench, "timed", fail)
    monkeypatch.setattr(sys, "argv", ["overhead.py", "--runs", "1"])
    with pytest.raises(RuntimeError, match="the measurement failed"):
        bench.main()
    assert len(bench.SERVERS) == 4
    assert [s._process.is_alive() for s in bench.SERVERS] == [False] * 4


@pytest.mark.slow
def test_the_mcp_bench_stops_its_server_when_a_measurement_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bench = load_bench("mcp_latency")
    started: list[Any] = []

    class FailingAfterStart(bench.McpServer):  # type: ignore[name-defined,misc]
        async def start(self) -> None:
            await super().start()
            started.append(self)
            raise RuntimeError("the measurement failed")

    monkeypatch.setattr(bench, "McpServer", FailingAfterStart)
    spec, _, _ = bench.server_spec("toy")

    async def measure() -> tuple[int, bool]:
        with pytest.raises(RuntimeError, match="the measurement failed"):
            await bench.time_startup(spec, 1)
        # Checked before this event loop ends (its end would stop the server anyway).
        return started[0].pid, process_alive(started[0].pid)

    pid, alive = asyncio.run(measure())
    assert pid and not alive
