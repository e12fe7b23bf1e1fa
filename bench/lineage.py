"""What the tamper-evident lineage costs: chaining an entry, signing a head, verifying runs.

- chaining: ``lineage.chain`` (read the run's head, hash the entry, move the head), each
  call timed inside one open transaction, on a SQLite store;
- recording: ``store.record`` of a notice (its row, its chained log entry, the commit);
- signing: ``lineage.sign_head`` with an Ed25519 key (the key file's check included);
- verifying: ``read_chains`` + ``verify_chain`` with the public key over 1,000 signed runs of
  three entries each (started, a notice, finished), as ``agentrun runs verify --all`` does.

Medians over the samples; the store is a temporary SQLite file.

Run: python bench/lineage.py [--samples 2000] [--runs 1000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.events import RunFinished, RunNotice, RunStarted, StopReason  # noqa: E402
from runner.store import RunStore, lineage, new_run_id  # noqa: E402
from runner.store.recording import SQLRunStore  # noqa: E402


def record_run(store: RunStore) -> str:
    run_id = new_run_id()
    store.record(RunStarted(run_id, "bench", "openai/x", "a.yaml", "0" * 64, {}, "Go."))
    store.record(RunNotice(run_id, "bench", "a notice"))
    store.record(RunFinished(run_id, StopReason.COMPLETED, "done", 1, 0, 10, 5, 0.001, 0.5))
    return run_id


def median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        os.environ["AGENTRUN_HOME"] = str(home)
        store = RunStore(home / "runs.db")
        assert isinstance(store, SQLRunStore)
        db = store.db
        run_id = record_run(store)
        data = '{"level": "warning", "message": "a notice"}'
        chained = []
        db.execute("BEGIN")  # one transaction: what is timed is the chaining alone
        for _ in range(args.samples):
            started = time.perf_counter()
            lineage.chain(db, run_id, "notice", data, "2026-12-04T00:00:00+00:00")
            chained.append(time.perf_counter() - started)
        db.rollback()
        live = new_run_id()
        store.record(RunStarted(live, "bench", "openai/x", "a.yaml", "0" * 64, {}, "Go."))
        recording = []
        for number in range(args.samples):
            started = time.perf_counter()
            store.record(RunNotice(live, "bench", f"notice {number}"))
            recording.append(time.perf_counter() - started)
        key = lineage.create_signing_key(lineage.signing_key_path())
        signing = []
        for _ in range(args.samples):
            started = time.perf_counter()
            lineage.sign_head(run_id, "ab" * 32)
            signing.append(time.perf_counter() - started)
        for _ in range(args.runs):
            record_run(store)
        started = time.perf_counter()
        verdicts = [lineage.verify_chain(c, key.public_key()) for c in lineage.read_chains(db)]
        verify_s = time.perf_counter() - started
        assert all(v.intact for v in verdicts), [v for v in verdicts if not v.intact][:1]
        signed = sum(1 for v in verdicts if v.signed_by)
        store.close()
    print(f"lineage, {args.samples} samples (medians)")
    print(
        f"  chaining an entry (head read, hash, head moved), in a transaction: "
        f"{median_us(chained):.1f} us"
    )
    print(f"  recording a notice (row, chained entry, commit): {median_us(recording):.1f} us")
    print(f"  signing a head (Ed25519, key file checked): {median_us(signing):.1f} us")
    print(
        f"  verifying {len(verdicts)} runs ({signed} signed), signatures checked: "
        f"{verify_s:.2f} s ({verify_s / len(verdicts) * 1e3:.2f} ms a run)"
    )


if __name__ == "__main__":
    main()
