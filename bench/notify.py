"""What notifications cost a run: a live receiver, one that is down, one that hangs.

Each variant runs the same 5-step conversation (4 `list_dir` calls, then an answer) of the
scripted model (no network for the model), recorded in a run store, with `agentrun run`'s
own notifier (`runner.notify.inprocess.RunNotifier`) as the loop's sink and one `json://`
channel that opts into `run_completed`:

- `none`: no channel (the notifier is not created, as for a spec without `notify:`);
- `live`: a loopback HTTP server that answers 200 at once;
- `down`: a loopback port nobody listens on (connection refused, retried);
- `hanging`: a loopback server that accepts and never answers (each attempt times out).

Figures, per variant, over `--runs` runs:
- the run: seconds from starting the run to its recorded end (what the loop takes, the
  store included; the notifier's thread runs beside it);
- at exit: seconds `RunNotifier.finish()` waits after the run (what `agentrun run` adds
  before it exits: at most one send timeout, `--timeout`);
- delivered: for `live`, seconds from the run's recorded end to the notification's
  `sent_at` (the follower polls the run event log every 0.25 s).

Run: python bench/notify.py [--runs 20] [--timeout 2]
Target (issue 21): a receiver that is down or hangs changes nothing in the run's own time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.compiler import compile_agent  # noqa: E402
from runner.loop import run_agent  # noqa: E402
from runner.notify.inprocess import RunNotifier  # noqa: E402
from runner.spec import load_spec  # noqa: E402
from runner.store import RunStore  # noqa: E402
from runner.testing import ScriptedModel, call, text  # noqa: E402

SPEC = """\
version: 1
name: notify-bench
model: openai/scripted
goal: List the folder four times, then answer.
tools:
  list_dir: {{paths: ["."]}}
autonomy: autonomous
loop_detection: {{warn_after: 9, stop_after: 10}}
{notify}
"""


@contextlib.contextmanager
def live_receiver() -> Iterator[int]:
    """A loopback HTTP server answering every POST with 200 at once; yields its port."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def hanging_receiver() -> Iterator[int]:
    """A loopback port that accepts connections and never answers; yields it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        listener.close()


@contextlib.contextmanager
def down_receiver() -> Iterator[int]:
    """A loopback port nobody listens on; yields it."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    yield port


def one_run(folder: Path, port: int | None, timeout_s: float) -> tuple[float, float, float | None]:
    """One run: (run seconds, exit wait seconds, seconds to delivery or None)."""
    home = folder / "home"
    notify = ""
    if port is not None:
        notify = f'notify:\n  - {{url: "json://127.0.0.1:{port}/hook", events: [run_completed]}}'
    spec_path = folder / "agent.yaml"
    spec_path.write_text(SPEC.format(notify=notify), encoding="utf-8")
    spec = load_spec(spec_path)
    store = RunStore(home / "runs.db")
    notifier = RunNotifier(spec, home, environ={}, timeout_s=timeout_s) if port else None
    model = ScriptedModel([call("list_dir", {"path": "."}) for _ in range(4)] + [text("done")])
    sinks = [notifier.sink] if notifier else []
    started = time.perf_counter()
    finished = asyncio.run(run_agent(compile_agent(spec), model=model, store=store, sinks=sinks))
    ran = time.perf_counter() - started
    waited = 0.0
    if notifier is not None:
        started = time.perf_counter()
        notifier.finish()
        waited = time.perf_counter() - started
    delivered = None
    run = store.run(finished.run_id)
    sent = [n for n in store.notifications(finished.run_id) if n["status"] == "sent"]
    if sent and run is not None and run.ended_at and sent[0]["sent_at"]:
        end = datetime.fromisoformat(run.ended_at)
        delivered = (datetime.fromisoformat(sent[0]["sent_at"]) - end).total_seconds()
    store.close()
    return ran, waited, delivered


def describe(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"median {statistics.median(ordered) * 1000:7.1f} ms  p95 {p95 * 1000:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=2.0, help="send timeout, seconds")
    options = parser.parse_args()
    logging.getLogger("agentrun.notify").setLevel(logging.CRITICAL)  # the failures are wanted
    receivers: dict[str, Any] = {
        "none": None,
        "live": live_receiver,
        "down": down_receiver,
        "hanging": hanging_receiver,
    }
    print(f"{options.runs} runs of 5 steps per variant; send timeout {options.timeout:g} s")
    for name, receiver in receivers.items():
        runs, waits, deliveries = [], [], []
        with contextlib.ExitStack() as stack:
            port = stack.enter_context(receiver()) if receiver else None
            # Deliveries dropped at exit may still write to their run's store: the folders
            # go when the variant ends.
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            stack.callback(shutil.rmtree, scratch, ignore_errors=True)
            for index in range(options.runs):
                folder = scratch / str(index)
                folder.mkdir()
                ran, waited, delivered = one_run(folder, port, options.timeout)
                runs.append(ran)
                waits.append(waited)
                if delivered is not None:
                    deliveries.append(delivered)
        line = f"{name:<8} run: {describe(runs)}   at exit: {describe(waits)}"
        if deliveries:
            line += f"   delivered: {describe(deliveries)} after the run's end"
        print(line, flush=True)


if __name__ == "__main__":
    main()
