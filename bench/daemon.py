"""Daemon latency and footprint: cron, file-watch and manual fires; 10,000 cron specs idle.

Runs real daemons (``python -m runner daemon``) in temporary homes, with the test double
model (``AGENTRUN_MODEL_FACTORY=tests.daemon_support:model``) so no provider is called, and
reads the instants from the run store.

- cron: N agents share a ``* * * * *`` trigger; over the next two minute boundaries, the
  delay from the slot instant to (a) the fire recorded and (b) the run recorded as started.
- file event: a watch trigger with a 100 ms debounce; the delay from a file write to the run
  start, minus the debounce.
- manual: ``trigger`` requests over the control socket; request sent → run started
  (including handing the job to a warm worker).
- direct: the same with a real model path, no test double: an ``openai/*`` spec whose
  endpoint is :class:`runner.testing.FakeOpenAIServer` in this process (``OPENAI_BASE_URL``),
  request sent → the fake server's receipt of the run's first model request, in a warm
  ``direct`` worker. Then the resident memory (RSS, and PSS) of an idle warm worker of each
  model path: ``direct`` (the openai SDK only) and ``litellm`` (for a spec on another
  provider; warmed against a loopback stub, so no key is needed).
- scale: 10,000 cron specs (daily, spread over the day so none fires) and 50 watched trees:
  startup time (process start → control socket up), idle CPU over 30 s, and RSS.

Run: python bench/daemon.py [--cron-agents 20] [--samples 30] [--skip-cron] [--skip-scale]
[--skip-manual] [--skip-watch] [--skip-direct]
Targets: cron p99 < 50 ms; file event p99 < 50 ms beyond the debounce; manual p99 < 100 ms;
manual → first model request (direct) p99 < 100 ms; a warm direct worker's RSS < 100 MB;
idle CPU < 2% of one core; RSS < 250 MB.

Every daemon is stopped when its measurement ends, fails or is interrupted (``with
Daemon(...)``): SIGTERM first (the daemon stops its workers), then SIGKILL to whatever is
still running with the bench's AGENTRUN_HOME in its environment (the daemon if it did not
stop, and its workers, which run in sessions of their own).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.testing import FakeOpenAIServer, text  # noqa: E402

SPEC = """version: 1
name: {name}
model: openai/test-double
goal: bench
concurrency: allow
triggers:
{triggers}
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def show(label: str, values_ms: list[float]) -> None:
    print(
        f"{label:<44} n={len(values_ms):<4} p50 {statistics.median(values_ms):7.1f} ms"
        f"   p99 {pct(values_ms, 0.99):7.1f} ms   max {max(values_ms):7.1f} ms"
    )


def leftovers(home: Path) -> list[int]:
    """Processes started for ``home``: AGENTRUN_HOME=home in their environment (Linux /proc)."""
    marker = b"\0AGENTRUN_HOME=" + os.fsencode(home) + b"\0"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = b"\0" + (entry / "environ").read_bytes()
        except OSError:  # gone, or not ours
            continue
        if marker in environ:
            found.append(int(entry.name))
    return found


def kill_leftovers(home: Path) -> None:
    """SIGKILL every process started for ``home``; a worker with its process group."""
    for pid in leftovers(home):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(pid) == pid:  # a worker: its session, tools and MCP servers too
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)


class Daemon:
    """``python -m runner daemon`` in ``home``; use it with ``with``, which always stops it."""

    #: How long a stopping daemon may take (it gives running runs 30 s), in seconds.
    stop_timeout_s = 120.0

    def __init__(
        self, agents: Path, home: Path, *args: str, env: dict[str, str] | None = None
    ) -> None:
        """``env``: variables for the daemon; without it, the test double model is used."""
        self.home = home
        if env is None:
            env = {"AGENTRUN_MODEL_FACTORY": "tests.daemon_support:model"}
        env = {
            **{k: v for k, v in os.environ.items() if k != "AGENTRUN_MODEL_FACTORY"},
            "AGENTRUN_HOME": str(home),
            "PYTHONPATH": str(ROOT),
            **env,
        }
        self.started = time.monotonic()
        self.log = (home / "daemon.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "runner", "daemon", str(agents), *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        try:
            while not (home / "daemon.sock").exists():
                if self.process.poll() is not None:
                    sys.exit((home / "daemon.log").read_text())
                if time.monotonic() - self.started > self.stop_timeout_s:
                    sys.exit(f"the daemon did not start within {self.stop_timeout_s:.0f} s")
                time.sleep(0.01)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - self.started

    def __enter__(self) -> Daemon:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def request(self, payload: dict[str, object]) -> dict[str, object]:
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(self.home / "daemon.sock"))
            client.sendall((json.dumps(payload) + "\n").encode())
            data = b""
            while not data.endswith(b"\n"):
                data += client.recv(65536)
        return json.loads(data)

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.home / "runs.db")

    def stop(self) -> None:
        """SIGTERM, wait; then kill whatever of this home still runs. Safe to call twice."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            print(f"the daemon did not stop within {self.stop_timeout_s:.0f} s: killing it")
        finally:
            kill_leftovers(self.home)
            if self.process.poll() is None:  # not found in /proc: kill it all the same
                self.process.kill()
            self.process.wait()
            self.log.close()


def started_at(db: sqlite3.Connection, run_id: str, limit_s: float = 60) -> float:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        row = db.execute("SELECT started_at FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row:
            return datetime.fromisoformat(row[0]).timestamp()
        time.sleep(0.005)
    raise SystemExit(f"run {run_id} never started")


def wait_workers(daemon: Daemon, count: int) -> None:
    deadline = time.monotonic() + 120
    while daemon.request({"op": "status"})["workers_idle"] < count:  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit("workers did not warm up")
        time.sleep(0.1)


def bench_cron(tmp: Path, agents_count: int) -> None:
    agents = tmp / "cron-agents"
    agents.mkdir()
    for i in range(agents_count):
        (agents / f"c{i}.yaml").write_text(
            SPEC.format(name=f"c{i}", triggers="  - cron: '* * * * *'\n    catchup: none")
        )
    home = tmp / "cron-home"
    home.mkdir()
    with Daemon(agents, home, "--workers", str(agents_count)) as daemon:
        wait_workers(daemon, agents_count)
        fired, started = [], []
        db = daemon.db()
        for _ in range(2):
            now = time.time()
            boundary = (int(now) // 60 + 1) * 60
            time.sleep(boundary - now + 3)
            rows = db.execute(
                "SELECT slot, created_at, run_id FROM fires WHERE slot = ?",
                (datetime.fromtimestamp(boundary, UTC).isoformat(timespec="milliseconds"),),
            ).fetchall()
            for slot, created, run_id in rows:
                slot_s = datetime.fromisoformat(slot).timestamp()
                fired.append((datetime.fromisoformat(created).timestamp() - slot_s) * 1000)
                started.append((started_at(db, run_id) - slot_s) * 1000)
            wait_workers(daemon, agents_count)
    show("cron instant → fire recorded", fired)
    show("cron instant → run recorded (started)", started)


def bench_watch(tmp: Path, samples: int) -> None:
    agents = tmp / "watch-agents"
    agents.mkdir()
    tree = tmp / "tree"
    tree.mkdir()
    (agents / "w.yaml").write_text(
        SPEC.format(
            name="w",
            triggers=f"  - watch: {{paths: ['{tree}'], patterns: ['*.txt'], debounce: 100ms}}",
        )
    )
    home = tmp / "watch-home"
    home.mkdir()
    with Daemon(agents, home, "--workers", "2") as daemon:
        wait_workers(daemon, 2)
        db = daemon.db()
        delays = []
        for i in range(samples):
            before = {r[0] for r in db.execute("SELECT id FROM runs")}
            wrote = time.time()
            (tree / f"f{i}.txt").write_text(str(i))
            while True:
                new = db.execute("SELECT id, started_at FROM runs").fetchall()
                fresh = [r for r in new if r[0] not in before]
                if fresh:
                    delays.append(
                        (datetime.fromisoformat(fresh[0][1]).timestamp() - wrote - 0.1) * 1000
                    )
                    break
                time.sleep(0.002)
            wait_workers(daemon, 2)
    show("file event → run started, beyond debounce", delays)


def bench_manual(tmp: Path, samples: int) -> None:
    agents = tmp / "manual-agents"
    agents.mkdir()
    (agents / "m.yaml").write_text(SPEC.format(name="m", triggers="  - manual: true"))
    home = tmp / "manual-home"
    home.mkdir()
    with Daemon(agents, home, "--workers", "2") as daemon:
        wait_workers(daemon, 2)
        db = daemon.db()
        delays = []
        for _ in range(samples):
            sent = time.time()
            answer = daemon.request({"op": "trigger", "agent": "m", "inputs": {}, "key": None})
            delays.append((started_at(db, str(answer["run_id"])) - sent) * 1000)
            wait_workers(daemon, 2)
    show("manual trigger → run started (warm worker)", delays)


class TimedFakeServer(FakeOpenAIServer):
    """The fake OpenAI server, noting when each request arrives (``time.monotonic``)."""

    def __init__(self) -> None:
        self.received: list[float] = []
        super().__init__([text("done")], repeat_last=True)

    def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        self.received.append(time.monotonic())
        return super()._answer(request)


def idle_workers(daemon: Daemon) -> dict[str, int]:
    answer = daemon.request({"op": "status"})
    return dict(answer.get("workers_idle_by_path") or {})  # type: ignore[call-overload]


def wait_idle(daemon: Daemon, wanted: dict[str, int]) -> None:
    deadline = time.monotonic() + 120
    while any(idle_workers(daemon).get(path, 0) < n for path, n in wanted.items()):
        if time.monotonic() > deadline:
            raise SystemExit(f"workers did not warm up: {idle_workers(daemon)} of {wanted}")
        time.sleep(0.05)


def worker_pids(daemon_pid: int) -> dict[int, str]:
    """The daemon's worker processes: pid -> model path (the worker's argument)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) != daemon_pid:
            continue
        if b"runner.daemon.worker" in argv:
            found[int(entry.name)] = argv[argv.index(b"runner.daemon.worker") + 1].decode()
    return found


def pss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return 0.0


def bench_direct(tmp: Path, samples: int) -> None:
    """Manual trigger → the first model request of the run, and the warm workers' memory."""
    agents = tmp / "direct-agents"
    agents.mkdir()
    (agents / "d.yaml").write_text(
        SPEC.format(name="d", triggers="  - manual: true").replace(
            "openai/test-double", "openai/bench"
        )
    )
    home = tmp / "direct-home"
    home.mkdir()
    with TimedFakeServer() as server:
        env = {"OPENAI_BASE_URL": server.api_base, "OPENAI_API_KEY": "sk-bench-000000"}
        with Daemon(agents, home, "--workers", "1", env=env) as daemon:
            wait_idle(daemon, {"direct": 1})
            db = daemon.db()
            delays, starts = [], []
            for _ in range(samples):
                seen = len(server.received)
                sent = time.monotonic()
                answer = daemon.request({"op": "trigger", "agent": "d", "inputs": {}, "key": None})
                deadline = sent + 60
                while len(server.received) <= seen:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"no model request for run {answer.get('run_id')}")
                    time.sleep(0.001)
                delays.append((server.received[seen] - sent) * 1000)
                run_id = str(answer["run_id"])
                # The same instant on the wall clock, for the run store's started_at.
                request_wall = time.time() - (time.monotonic() - server.received[seen])
                starts.append((request_wall - started_at(db, run_id)) * 1000)
                while db.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone() in (
                    None,
                    ("running",),
                ):
                    time.sleep(0.005)
                wait_idle(daemon, {"direct": 1})
            show("manual trigger → first model request (direct)", delays)
            show("  of which run started → first model request", starts)
            # A spec on another provider: the daemon starts the litellm pool for it.
            (agents / "l.yaml").write_text(
                SPEC.format(name="l", triggers="  - manual: true").replace(
                    "openai/test-double", "anthropic/claude-3-5-haiku-latest"
                )
            )
            wait_idle(daemon, {"direct": 1, "litellm": 1})
            time.sleep(1)  # let the warm-up's garbage settle
            for pid, path in sorted(worker_pids(daemon.process.pid).items(), key=lambda i: i[1]):
                print(
                    f"{f'idle warm {path} worker: RSS':<44} {rss_mb(pid):7.1f} MB"
                    f"   (PSS {pss_mb(pid):.1f} MB)"
                )


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def bench_scale(tmp: Path) -> None:
    agents = tmp / "scale-agents"
    agents.mkdir()
    trees = tmp / "trees"
    for i in range(10_000):
        minute, hour = i % 60, (i // 60) % 24
        (agents / f"s{i:05d}.yaml").write_text(
            SPEC.format(name=f"s{i:05d}", triggers=f"  - cron: '{minute} {hour} * * *'")
        )
    for i in range(50):
        (trees / f"t{i}").mkdir(parents=True)
        (agents / f"w{i:02d}.yaml").write_text(
            SPEC.format(name=f"w{i:02d}", triggers=f"  - watch: {{paths: ['{trees / f't{i}'}']}}")
        )
    home = tmp / "scale-home"
    home.mkdir()
    with Daemon(agents, home, "--workers", "0") as daemon:
        print(f"{'10,000 cron + 50 watch specs: startup':<44} {daemon.startup_s:7.1f} s")
        time.sleep(5)
        before = cpu_seconds(daemon.process.pid)
        time.sleep(30)
        used = cpu_seconds(daemon.process.pid) - before
        print(f"{'idle CPU over 30 s':<44} {used / 30 * 100:7.2f} % of one core")
        print(f"{'RSS':<44} {rss_mb(daemon.process.pid):7.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cron-agents", type=int, default=20)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--skip-cron", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--skip-manual", action="store_true")
    parser.add_argument("--skip-watch", action="store_true")
    parser.add_argument("--skip-direct", action="store_true")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        if not options.skip_manual:
            bench_manual(tmp, options.samples)
        if not options.skip_direct:
            bench_direct(tmp, options.samples)
        if not options.skip_watch:
            bench_watch(tmp, options.samples)
        if not options.skip_cron:
            bench_cron(tmp, options.cron_agents)
        if not options.skip_scale:
            bench_scale(tmp)


if __name__ == "__main__":
    main()
