"""What recording a run costs in each run store: SQLite (a file) against PostgreSQL.

Each run is the same 5-step conversation of the scripted model (4 `list_dir` calls, then an
answer; no network for the model) through the real loop, recorded in the store under test.
Every call of the store's `record` is timed, so the figures are the store's own share:

- store per step: milliseconds the store spent recording, divided by the run's 5 steps
  (median over the runs), and its p90;
- run: milliseconds from starting the run to its recorded end (median), the loop included;
- the store's share of the run.

SQLite is a file in a temporary folder (WAL, synchronous=NORMAL, as agentrun opens it).
PostgreSQL is a new database made for the bench on the server `--postgres` names (an admin
URL, default `AGENTRUN_BENCH_POSTGRES`, else the local server at 127.0.0.1:5432), dropped
after; on loopback, so the figures are the server's and the protocol's cost, without a
network's latency (add one round trip per statement and two per commit for a remote server).

Options in the URL reach the server (libpq's ``options``): with
``?options=-csynchronous_commit%3Doff`` a commit does not wait for its WAL flush, which shows
how much of PostgreSQL's figure is the disk (not a setting to use for the store: a crash
could lose the last commits the runs relied on).

Run: python bench/store_backends.py [--runs 200] [--postgres postgresql://user:pw@host/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.compiler import compile_agent  # noqa: E402
from runner.events import Event  # noqa: E402
from runner.loop import run_agent  # noqa: E402
from runner.spec import load_spec  # noqa: E402
from runner.store import RunStore  # noqa: E402
from runner.store.location import open_store, redacted  # noqa: E402
from runner.testing import ScriptedModel, call, text  # noqa: E402

STEPS = 5
SPEC = """\
version: 1
name: store-bench
model: openai/scripted
goal: List the folder four times, then answer.
tools:
  list_dir: {paths: ["."]}
autonomy: autonomous
loop_detection: {warn_after: 9, stop_after: 10}
"""


class TimedRecord:
    """A store's ``record``, timed (seconds summed in :attr:`spent_s`)."""

    def __init__(self, record: Callable[[Event], None]) -> None:
        self.original = record
        self.spent_s = 0.0

    def __call__(self, event: Event) -> None:
        started = time.perf_counter()
        self.original(event)
        self.spent_s += time.perf_counter() - started


def one_run(folder: Path, store: RunStore) -> tuple[float, float]:
    """One 5-step run: (seconds in the store's record, seconds of the whole run)."""
    spec = load_spec(folder / "agent.yaml")
    model = ScriptedModel([call("list_dir", {"path": "."}) for _ in range(4)] + [text("done")])
    original: Callable[[Event], None] = store.record
    timed = TimedRecord(original)
    store.record = timed  # type: ignore[method-assign]
    started = time.perf_counter()
    try:
        finished = asyncio.run(run_agent(compile_agent(spec), model=model, store=store))
    finally:
        store.record = original  # type: ignore[method-assign]
    total = time.perf_counter() - started
    assert finished.steps == STEPS, finished.stop_reason
    return timed.spent_s, total


def measure(name: str, store: RunStore, folder: Path, runs: int) -> dict[str, float]:
    for _ in range(5):  # warm: imports, prepared statements, caches
        one_run(folder, store)
    spent, totals = [], []
    for _ in range(runs):
        store_s, total_s = one_run(folder, store)
        spent.append(store_s / STEPS * 1000)
        totals.append(total_s * 1000)
    figures = {
        "store_ms_per_step": statistics.median(spent),
        "store_ms_per_step_p90": statistics.quantiles(spent, n=10)[-1],
        "run_ms": statistics.median(totals),
    }
    share = figures["store_ms_per_step"] * STEPS / figures["run_ms"]
    print(
        f"{name:<11} store per step: median {figures['store_ms_per_step']:.3f} ms, "
        f"p90 {figures['store_ms_per_step_p90']:.3f} ms; run median {figures['run_ms']:.2f} ms; "
        f"the store's share {share:.0%}"
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "AGENTRUN_BENCH_POSTGRES", "postgresql://agentrun:agentrun@127.0.0.1:5432/postgres"
        ),
    )
    arguments = parser.parse_args()
    import psycopg

    folder = Path(tempfile.mkdtemp(prefix="agentrun-store-bench-"))
    (folder / "agent.yaml").write_text(SPEC, encoding="utf-8")
    os.environ["AGENTRUN_HOME"] = str(folder / "home")
    print(f"{arguments.runs} runs of {STEPS} steps per backend")
    sqlite = open_store(folder / "home" / "runs.db")
    sqlite_figures = measure("SQLite", sqlite, folder, arguments.runs)
    sqlite.close()
    database = f"agentrun_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(arguments.postgres, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    try:
        url = urlunsplit(urlsplit(arguments.postgres)._replace(path=f"/{database}"))
        postgres = open_store(url)
        print(f"PostgreSQL: {redacted(url)}")
        postgres_figures = measure("PostgreSQL", postgres, folder, arguments.runs)
        postgres.close()
    finally:
        with psycopg.connect(arguments.postgres, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    ratio = postgres_figures["store_ms_per_step"] / sqlite_figures["store_ms_per_step"]
    print(f"PostgreSQL's per-step store cost: {ratio:.1f}x SQLite's")


if __name__ == "__main__":
    main()
