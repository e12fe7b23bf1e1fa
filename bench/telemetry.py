"""What telemetry costs a run: CPU per step with OpenTelemetry on and off.

The same 20-step tool-calling conversation (19 `list_dir` calls, then an answer) is run by
agentrun's loop with the run store and a scripted model (no HTTP, no litellm: what is
measured is agentrun's own work), in interleaved rounds of three variants:

- off: the spec's `telemetry: false` (what every run without telemetry does: no
  OpenTelemetry module is imported);
- off again, as a control: the difference between the two "off" variants is the machine's
  noise;
- on: `telemetry: {endpoint: ...}`, exporting every span and metric over OTLP/HTTP to a
  receiver in a child process (which answers 200 and drops the body), flushed at the end of
  each run as every run does.

CPU time (getrusage: user plus system, all threads, so the exporter's background thread
counts) and wall time are measured per run; the figures are medians over the rounds,
divided by the 20 steps, with the on-minus-off difference. Also printed: the one-time cost of
importing the OpenTelemetry packages (a fresh interpreter, median of 5), paid by the first
run with telemetry on in a process.

Run: python bench/telemetry.py [--runs 40]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.compiler import compile_agent  # noqa: E402
from runner.loop import run_agent  # noqa: E402
from runner.spec import load_spec  # noqa: E402
from runner.store import RunStore  # noqa: E402
from runner.testing import ScriptedModel, call, text  # noqa: E402

STEPS = 20


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve(conn: Any) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    conn.send(server.server_address[1])
    server.serve_forever()


def write_spec(folder: Path, telemetry: str) -> Path:
    path = folder / f"agent-{abs(hash(telemetry))}.yaml"
    path.write_text(
        "version: 1\nname: bench\nmodel: openai/scripted\ngoal: List the data folder.\n"
        "autonomy: autonomous\nbudgets: {max_steps: 50}\n"
        f"tools:\n  list_dir: {{paths: [data]}}\ntelemetry: {telemetry}\n"
    )
    return path


def one_run(spec_path: Path, store: RunStore) -> tuple[float, float]:
    """CPU seconds and wall seconds of one 20-step run."""
    spec = load_spec(spec_path)
    model = ScriptedModel(
        [*(call("list_dir", {"path": f"data/d{i}"}) for i in range(STEPS - 1)), text("ok")]
    )
    agent = compile_agent(spec, {})
    gc.collect()
    before = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.perf_counter()
    finished = asyncio.run(run_agent(agent, model=model, store=store))
    wall = time.perf_counter() - wall
    gc.collect()
    after = resource.getrusage(resource.RUSAGE_SELF)
    assert finished.stop_reason == "completed", finished
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def import_cost() -> float:
    """Median seconds a fresh interpreter takes to import runner.telemetry.otel, less a bare one."""

    def timed(code: str) -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
        return time.perf_counter() - started

    bare = statistics.median(timed("import runner.loop") for _ in range(5))
    otel = statistics.median(timed("import runner.loop, runner.telemetry.otel") for _ in range(5))
    return otel - bare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=40, help="rounds (each runs every variant)")
    args = parser.parse_args()
    parent, child = multiprocessing.Pipe()
    receiver = multiprocessing.Process(target=_serve, args=(child,), daemon=True)
    receiver.start()
    port = parent.recv()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "data").mkdir()
            for i in range(STEPS - 1):  # a folder a step: no loop detected
                (folder / "data" / f"d{i}").mkdir()
                (folder / "data" / f"d{i}" / "file.txt").write_text("x")
            variants = {
                "off": write_spec(folder, "false"),
                "off (control)": write_spec(folder, "{enabled: false}"),
                "on": write_spec(folder, f"{{endpoint: 'http://127.0.0.1:{port}'}}"),
            }
            store = RunStore(folder / "runs.db")
            for path in variants.values():  # warm up: imports, the providers, the store
                one_run(path, store)
            cpu: dict[str, list[float]] = {name: [] for name in variants}
            wall: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(args.runs):
                for name, path in variants.items():
                    c, w = one_run(path, store)
                    cpu[name].append(c)
                    wall[name].append(w)
    finally:
        receiver.terminate()
        receiver.join()
    per_step = {
        name: (
            statistics.median(cpu[name]) / STEPS * 1e3,
            statistics.median(wall[name]) / STEPS * 1e3,
        )
        for name in cpu
    }
    print(f"telemetry overhead, {STEPS}-step runs, {args.runs} rounds (medians per step)")
    for name, (c, w) in per_step.items():
        print(f"  {name:<14} CPU {c:7.3f} ms   wall {w:7.3f} ms")
    extra_cpu = per_step["on"][0] - per_step["off"][0]
    noise = per_step["off (control)"][0] - per_step["off"][0]
    print(f"  on - off       CPU {extra_cpu:+7.3f} ms/step   (off - control: {noise:+.3f} ms)")
    cost = import_cost()
    print(f"  importing the OpenTelemetry SDK and exporters once: {cost * 1e3:.0f} ms")
    print(
        json.dumps(
            {
                "cpu_ms_per_step": {k: round(v[0], 3) for k, v in per_step.items()},
                "wall_ms_per_step": {k: round(v[1], 3) for k, v in per_step.items()},
                "on_minus_off_cpu_ms_per_step": round(extra_cpu, 3),
                "import_ms": round(cost * 1e3),
            }
        )
    )


if __name__ == "__main__":
    main()
