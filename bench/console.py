"""The console and API under a large store: list latency, live-event latency, idle streams.

Fills a run store in a temporary AGENTRUN_HOME with N finished runs (default 100,000, five
agents, a few stop reasons), recorded through the store's own interface, then starts
``agentrun console --no-browser`` on a free loopback port over it and measures, over real
HTTP with one keep-alive client:

- the runs list, ``GET /api/v1/runs`` (50 a page): the first page, pages deep in the listing
  (following ``next_cursor``), and filtered by agent and by stop reason; and the console's
  runs page (``GET /runs``) when the pages are installed;
- an event's way to a live client: an SSE client follows ``/api/v1/events/stream``; this
  process records a run (``RunStarted``) and times from the record's commit to the event's
  arrival, for every sample;
- idle streams: 50 SSE clients hold ``/api/v1/events/stream`` open while nothing happens;
  the console process's CPU (user + system, from ``/proc/PID/stat``) over the window, as a
  share of one core.

The daemon serves the same app (``agentrun daemon --http``); the console alone is measured
here so that no scheduler or worker adds to the figures.

Run: python bench/console.py [--runs 100000] [--samples 200] [--idle-s 30]
Targets (issue 20): the runs page and API list p99 under 100 ms; an event recorded by a run
reaches an SSE client in p99 under 200 ms; 50 concurrent SSE clients cost under 5% of a
core while idle.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.events import RunFinished, RunStarted, StopReason  # noqa: E402
from runner.store import RunStore, new_run_id  # noqa: E402

AGENTS = ["triage", "reports", "upkeep", "checks", "digest"]
STOPS = [StopReason.COMPLETED] * 8 + [StopReason.MAX_STEPS, StopReason.ERROR]


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def show(label: str, values_ms: list[float], target_ms: float | None = None) -> None:
    """One line: count, p50, p99, max (ms), and the target's verdict when there is one."""
    p99 = pct(values_ms, 0.99)
    verdict = "" if target_ms is None else ("  met" if p99 < target_ms else "  NOT met")
    print(
        f"{label:<48} n={len(values_ms):<4} p50 {statistics.median(values_ms):7.1f} ms"
        f"   p99 {p99:7.1f} ms   max {max(values_ms):7.1f} ms{verdict}"
    )


def fill(store: RunStore, runs: int) -> None:
    """Record ``runs`` finished runs (two records each), oldest first."""
    start = time.monotonic_ns() // 1_000_000 - runs * 1000
    for index in range(runs):
        run_id = new_run_id(start + index * 1000)
        agent = AGENTS[index % len(AGENTS)]
        store.record(RunStarted(run_id, agent, "openai/gpt-4o-mini", "a.yaml", "sha", {}, "go"))
        store.record(
            RunFinished(run_id, STOPS[index % len(STOPS)], "done", 2, 1, 300, 40, 0.0001, 1.5)
        )


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def console(home: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, str]]:
    """``agentrun console`` over ``home``: the process, its base URL and the login token."""
    port = free_port()
    env = {**os.environ, "AGENTRUN_HOME": str(home), "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "runner", "console", "--no-browser", "--http", f"127.0.0.1:{port}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            token_file = home / "console.token"
            with contextlib.suppress(httpx.HTTPError, OSError):
                token = token_file.read_text().strip()
                if httpx.get(f"{base}/api/v1/runs?limit=1", headers=_auth(token)).status_code:
                    break
            time.sleep(0.1)
        else:
            raise SystemExit("the console did not start within 60 s")
        yield process, base, token
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def timed_get(client: httpx.Client, url: str) -> tuple[float, httpx.Response]:
    """GET ``url``: milliseconds to the whole answer, and the answer (must be 200)."""
    began = time.perf_counter()
    answer = client.get(url)
    elapsed = (time.perf_counter() - began) * 1000
    if answer.status_code != 200:
        raise SystemExit(f"GET {url}: {answer.status_code} {answer.text[:200]}")
    return elapsed, answer


def measure_lists(base: str, token: str, samples: int) -> None:
    """The runs list: first page, deep pages, filters; the runs page when it exists."""
    with httpx.Client(base_url=base, headers=_auth(token), timeout=30) as client:
        timed_get(client, "/api/v1/runs?limit=50")  # warm
        first = [timed_get(client, "/api/v1/runs?limit=50")[0] for _ in range(samples)]
        show("GET /api/v1/runs, first page (50)", first, 100)
        deep: list[float] = []
        cursor = None
        while len(deep) < samples:
            url = "/api/v1/runs?limit=50" + (f"&cursor={cursor}" if cursor else "")
            elapsed, answer = timed_get(client, url)
            deep.append(elapsed)
            cursor = answer.json()["next_cursor"] or None
        show(f"GET /api/v1/runs, the next {samples} pages", deep, 100)
        filtered = [
            timed_get(client, f"/api/v1/runs?limit=50&agent={AGENTS[i % len(AGENTS)]}")[0]
            for i in range(samples)
        ]
        show("GET /api/v1/runs?agent=...", filtered, 100)
        by_stop = [
            timed_get(client, "/api/v1/runs?limit=50&status=max_steps")[0] for _ in range(samples)
        ]
        show("GET /api/v1/runs?status=max_steps", by_stop, 100)
        if client.get("/runs").status_code == 200:
            pages = [timed_get(client, "/runs")[0] for _ in range(samples)]
            show("GET /runs (the console's runs page)", pages, 100)
        else:
            print("GET /runs: no console pages installed; not measured")


def follow(
    base: str, token: str, arrived: queue.Queue[tuple[str, float]], ready: threading.Event
) -> None:
    """Follow the global event stream; put (run id, arrival instant) of each run_started."""
    headers = {**_auth(token), "Accept": "text/event-stream"}
    with (
        httpx.Client(base_url=base, headers=headers, timeout=None) as client,
        client.stream("GET", "/api/v1/events/stream") as stream,
    ):
        ready.set()
        for line in stream.iter_lines():
            if line.startswith("data:") and '"run_started"' in line:
                event = json.loads(line.partition(":")[2])
                arrived.put((event["run_id"], time.perf_counter()))


def measure_live(base: str, token: str, store: RunStore, samples: int) -> None:
    """Record a run, time until the SSE client sees it; ``samples`` times."""
    arrived: queue.Queue[tuple[str, float]] = queue.Queue()
    ready = threading.Event()
    threading.Thread(target=follow, args=(base, token, arrived, ready), daemon=True).start()
    ready.wait(30)
    time.sleep(1.0)  # the stream has caught up with the past
    while not arrived.empty():
        arrived.get_nowait()
    delays = []
    for _ in range(samples):
        run_id = new_run_id()
        recorded = time.perf_counter()
        store.record(RunStarted(run_id, "live", "m", "a.yaml", "sha", {}, "go"))
        while True:
            seen, at = arrived.get(timeout=30)
            if seen == run_id:
                delays.append((at - recorded) * 1000)
                break
        time.sleep(0.02)
    show("run recorded → its event at an SSE client", delays, 200)


def cpu_s(pid: int) -> float:
    """User plus system CPU seconds of process ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_idle(base: str, token: str, pid: int, clients: int, window_s: float) -> None:
    """``clients`` open SSE streams, nothing recorded: the console's CPU share of one core."""
    ready = [threading.Event() for _ in range(clients)]
    sink: queue.Queue[tuple[str, float]] = queue.Queue()
    for event in ready:
        threading.Thread(target=follow, args=(base, token, sink, event), daemon=True).start()
    for event in ready:
        event.wait(30)
    time.sleep(2.0)  # every stream has read its past
    before, began = cpu_s(pid), time.monotonic()
    time.sleep(window_s)
    used, elapsed = cpu_s(pid) - before, time.monotonic() - began
    share = 100 * used / elapsed
    verdict = "met" if share < 5 else "NOT met"
    print(
        f"{clients} idle SSE clients: console CPU {share:.2f}% of one core over {elapsed:.0f} s "
        f"(target under 5%: {verdict})"
    )


def main() -> None:
    """Fill the store, start the console, measure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000, help="runs in the store")
    parser.add_argument("--samples", type=int, default=200, help="requests per measurement")
    parser.add_argument("--idle-s", type=float, default=30.0, help="idle window, seconds")
    parser.add_argument("--clients", type=int, default=50, help="idle SSE clients")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        store = RunStore(home / "runs.db")
        began = time.monotonic()
        fill(store, args.runs)
        print(f"store: {args.runs:,} runs recorded in {time.monotonic() - began:.1f} s")
        with console(home) as (process, base, token):
            measure_lists(base, token, args.samples)
            measure_live(base, token, store, args.samples)
            measure_idle(base, token, process.pid, args.clients, args.idle_s)
        store.close()
    print(f"(python {sys.version.split()[0]}, {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
