"""Runs through the Celery executor (1, 2 and 4 `agentrun worker` processes) against the local one.

Each run is the 5-step scripted conversation of ``tests/celery_support.py`` (four calls of a
function tool, then an answer; no network for the model), fired by manual triggers sent as
fast as the daemon's control socket takes them (``concurrency: allow``), all against one
SQLite store (``AGENTRUN_STORE``) and, for Celery, the Redis broker ``--broker`` names (a
database number of its own, flushed first). For each configuration:

- runs per second: runs fired, divided by the seconds from the first fire to the last run's
  recorded end;
- run: the run's own time in its worker (``duration_s`` of its row, median), and per step
  (divided by its 5 steps);
- fire to start: from sending the trigger to the run's recorded start (median, p90): the
  executor's overhead (the local executor: a warm process per run; Celery: the broker and a
  pool process);
- the store's share of a step: the same conversation run in this process with every
  ``record`` call of the store timed (median over 20 runs), the store's milliseconds per step
  and their share of the step.

Workers run with ``--concurrency 1`` each; the local executor keeps as many warm workers as
the largest Celery configuration (``--workers 4``).

Run: python bench/celery_executor.py [--runs 100] [--local-runs N] [--broker redis://127.0.0.1:6379/15]
(``--runs 1000 --local-runs 200`` for the issue's figure: the local executor starts a process
per run, about 10 minutes for 1,000)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SPEC = textwrap.dedent(
    """
    version: 1
    name: counter
    model: openai/test-double
    goal: count
    concurrency: allow
    tools:
      functions:
        step: {function: "tests.celery_support:step", risk: low}
    triggers:
      - manual: true
    """
)


def wait(predicate, what: str, limit_s: float = 600.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {what}")
        time.sleep(0.05)


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "runner", *args],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def measure(tmp: Path, executor: str, workers: int, runs: int, broker: str) -> dict[str, float]:
    """Fire ``runs`` runs through a daemon with ``executor`` and ``workers`` workers."""
    import redis

    from runner.daemon.control import control_request
    from runner.store import RunStore

    case = tmp / f"{executor}-{workers}"
    (case / "agents").mkdir(parents=True)
    (case / "home").mkdir()
    (case / "agents" / "counter.yaml").write_text(SPEC)
    store_path = case / "runs.db"
    env = {
        **os.environ,
        "AGENTRUN_HOME": str(case / "home"),
        "AGENTRUN_STORE": f"sqlite:///{store_path}",
        "AGENTRUN_BROKER": broker,
        "AGENTRUN_MODEL_FACTORY": "tests.celery_support:model",
        "PYTHONPATH": str(ROOT),
    }
    redis.Redis.from_url(broker).flushdb()
    processes = []
    try:
        for n in range(workers if executor == "celery" else 0):
            name = f"w{n}@bench"
            log = case / f"worker-{n}.log"
            processes.append(
                start(
                    ["worker", "--concurrency", "1", "--model-path", "direct", "--hostname", name],
                    env,
                    log,
                )
            )
            wait(lambda log=log, name=name: f"{name} ready." in log.read_text(), "a worker")
        extra = ["--executor", "celery"] if executor == "celery" else ["--workers", str(workers)]
        daemon = start(["daemon", str(case / "agents"), *extra], env, case / "daemon.log")
        processes.append(daemon)
        wait(lambda: (case / "home" / "daemon.sock").exists(), "the daemon")
        time.sleep(1.0)  # the local pool warms up
        sent: dict[str, float] = {}
        first = time.time()
        for _ in range(runs):
            at = time.time()
            answer = control_request(case / "home", {"op": "trigger", "agent": "counter"})
            sent[answer["run_id"]] = at
        store = RunStore(store_path)

        def all_ended() -> bool:
            rows = store.runs(limit=runs + 10)
            return len(rows) >= runs and all(r.status != "running" for r in rows)

        wait(all_ended, "every run to end", 3600)
        rows = store.runs(limit=runs + 10)
        last = max(datetime.fromisoformat(r.ended_at or r.started_at).timestamp() for r in rows)
        starts = sorted(
            (datetime.fromisoformat(r.started_at).timestamp() - sent[r.id]) * 1000 for r in rows
        )
        durations = [float(r.duration_s or 0) * 1000 for r in rows]
        completed = sum(1 for r in rows if r.stop_reason == "completed")
        store.close()
        return {
            "runs_per_s": runs / (last - first),
            "run_ms": statistics.median(durations),
            "step_ms": statistics.median(durations) / 5,
            "start_p50_ms": statistics.median(starts),
            "start_p90_ms": starts[int(len(starts) * 0.9)],
            "completed": completed,
        }
    finally:
        for process in processes:
            stop(process)


def store_share(tmp: Path, samples: int = 20) -> tuple[float, float]:
    """The store's milliseconds per step and a step's milliseconds, in this process (median)."""
    from runner.compiler import compile_agent
    from runner.loop import Run
    from runner.spec import load_spec
    from runner.store import RunStore
    from tests.celery_support import model

    path = tmp / "share" / "counter.yaml"
    path.parent.mkdir()
    path.write_text(SPEC)
    spec = load_spec(path)
    store = RunStore(tmp / "share" / "runs.db")
    store_ms, step_ms = [], []
    for _ in range(samples):
        spent = [0.0]

        def timed(event: object, spent: list[float] = spent) -> None:
            began = time.perf_counter()
            store.record(event)  # type: ignore[arg-type]
            spent[0] += time.perf_counter() - began

        began = time.perf_counter()
        asyncio.run(Run(compile_agent(spec, {}), model(spec.model), [timed]).execute())
        step_ms.append((time.perf_counter() - began) * 1000 / 5)
        store_ms.append(spent[0] * 1000 / 5)
    store.close()
    return statistics.median(store_ms), statistics.median(step_ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument(
        "--local-runs",
        type=int,
        default=None,
        help="runs through the local executor (default: --runs; it starts a process per run)",
    )
    parser.add_argument(
        "--broker",
        default=os.environ.get("AGENTRUN_BENCH_REDIS", "redis://127.0.0.1:6379/15"),
    )
    args = parser.parse_args()
    os.environ.pop("AGENTRUN_STORE", None)
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        store_ms, step_ms = store_share(tmp)
        print(
            f"store per step (in process): {store_ms:.2f} ms of a {step_ms:.2f} ms step "
            f"({store_ms / step_ms:.0%})"
        )
        local_runs = args.runs if args.local_runs is None else args.local_runs
        print(
            f"{args.runs} runs of 5 steps each ({local_runs} through the local executor); "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        print("executor      runs/s   run ms  step ms  fire->start p50  p90    completed")
        for executor, workers in (("local", 4), ("celery", 1), ("celery", 2), ("celery", 4)):
            runs = local_runs if executor == "local" else args.runs
            figures = measure(tmp, executor, workers, runs, args.broker)
            label = "local (4 warm)" if executor == "local" else f"celery x{workers}"
            print(
                f"{label:<13} {figures['runs_per_s']:6.1f} {figures['run_ms']:8.1f} "
                f"{figures['step_ms']:8.2f} {figures['start_p50_ms']:12.1f} "
                f"{figures['start_p90_ms']:8.1f} {figures['completed']:8.0f}"
            )


if __name__ == "__main__":
    main()
