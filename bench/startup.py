"""Cold start of the light commands: `agentrun --help` and `agentrun validate` of 10 specs.

Each command runs as a fresh process under `/usr/bin/time -v`, several times; the script
prints the median and worst wall time and the peak resident memory, and whether litellm
was imported (it must not be).

The package's bytecode is compiled first (``compileall``), as ``pip install`` does when it
installs agentrun: an editable install never writes it when ``PYTHONDONTWRITEBYTECODE`` is
set (as on the reference machine), and every cold start would then compile agentrun's
modules from source, which is not what a user's installed copy does. ``--from-source``
measures that case instead (it removes the compiled files first).

Then ``agentrun run`` split into its phases, read from the run store's record of each run:
to the run's start (process start to its first record: imports, spec, compile), the model
calls as recorded (the first one pays litellm's import, which is lazy), and after the answer
(the run's last record to process exit). Two specs: one on the zero-latency fake OpenAI-compatible server (the
harness alone), and ``agents/hello.yaml`` on the embedded model with ``--local``.

Run: python bench/startup.py [--runs 15] [--from-source] [--local]
Targets on the 2-core reference machine: --help under 100 ms; validate of 10 specs under
200 ms; ``agentrun run`` to the first model request under 1.3 s, its exit under 0.1 s after
the run's last record (issue 19).
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import shutil
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

import runner  # noqa: E402  (where the package being measured lives)

SPEC = """\
version: 1
name: bench-{i}
description: Benchmark spec {i}.
model: {{id: openai/gpt-4o-mini, params: {{temperature: 0, max_tokens: 300}}}}
inputs:
  folder: {{type: path, default: docs, description: Where to look.}}
  depth: {{type: integer, default: 2}}
instructions: You are careful. Look {{{{ depth }}}} levels deep.
goal: Summarise {{{{ folder }}}}.
tools:
  read_file: {{paths: [docs]}}
  list_dir: {{paths: [docs]}}
rules:
  deny: ["read_file:path=*secret*"]
autonomy: approve-risky
budgets: {{max_steps: 10, max_tokens: 50000, max_duration: 5m}}
triggers:
  - cron: "0 {hour} * * 1-5"
    timezone: Europe/Berlin
  - manual: true
concurrency: forbid
"""


def measure(argv: list[str], runs: int) -> tuple[list[float], list[int]]:
    walls, rss = [], []
    for _ in range(runs):
        result = subprocess.run(
            ["/usr/bin/time", "-v", *argv], capture_output=True, text=True, check=False
        )
        if result.returncode not in (0,):
            sys.exit(f"{argv} failed ({result.returncode}):\n{result.stderr[-2000:]}")
        wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", result.stderr)
        peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)
        assert wall and peak, result.stderr
        hours = int(wall.group(1) or 0)
        walls.append(hours * 3600 + int(wall.group(2)) * 60 + float(wall.group(3)))
        rss.append(int(peak.group(1)))
    return walls, rss


def imports_litellm(args: list[str]) -> bool:
    probe = textwrap.dedent(
        f"""
        import sys, runner.cli
        try:
            runner.cli.main({args!r})
        except SystemExit:
            pass
        print("litellm" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT)
    return out.stdout.strip().endswith("True")


FAKE_SPEC = """\
version: 1
name: bench-run
model: {{id: openai/fake, api_base: "{api_base}", api_key_env: FAKE_API_KEY}}
goal: Say done.
"""


def run_phases(argv: list[str], home: Path, env: dict[str, str]) -> tuple[float, float, float]:
    """One ``agentrun run``: seconds to its first record, in model calls, and to exit after."""
    from runner.store import RunStore

    started = time.time()
    result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    exited = time.time()
    if result.returncode != 0:
        sys.exit(f"{argv} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    store = RunStore(home / "runs.db")
    try:
        row = store.runs()[0]
        model_s = sum(call["duration_s"] for call in store.model_calls(row.id))
    finally:
        store.close()
    assert row.ended_at is not None
    first = datetime.fromisoformat(row.started_at).timestamp()
    last = datetime.fromisoformat(row.ended_at).timestamp()
    return first - started, model_s, exited - last


def measure_runs(agentrun: str, runs: int, local: bool) -> None:
    """Print the phases of ``agentrun run``, each a median over ``runs`` fresh processes."""
    from runner.testing import FakeOpenAIServer, text

    cases: dict[str, list[str]] = {}
    with (
        FakeOpenAIServer([text("done")], repeat_last=True) as server,
        tempfile.TemporaryDirectory() as folder,
    ):
        spec = Path(folder, "run.yaml")
        spec.write_text(FAKE_SPEC.format(api_base=server.api_base))
        cases["agentrun run <fake OpenAI server>"] = [agentrun, "run", str(spec)]
        if local:
            cases["agentrun run agents/hello.yaml"] = [
                agentrun,
                "run",
                str(ROOT / "agents/hello.yaml"),
            ]
        phases: dict[str, list[tuple[float, float, float]]] = {label: [] for label in cases}
        for number in range(runs):
            for label, argv in cases.items():
                home = Path(folder, f"home-{len(phases[label])}-{number}-{len(label)}")
                env = {**os.environ, "AGENTRUN_HOME": str(home), "FAKE_API_KEY": "sk-fake-0"}
                phases[label].append(run_phases(argv, home, env))
    print(f"{'run':<40} {'to run start ms':>16} {'model calls ms':>15} {'exit after ms':>14}")
    for label, measured in phases.items():
        first, model, after = (statistics.median(m[i] for m in measured) for i in range(3))
        print(f"{label:<40} {first * 1000:>16.0f} {model * 1000:>15.0f} {after * 1000:>14.0f}")
    print(
        "(to run start: process start to the run's first record; model calls: as recorded, the "
        "first one paying litellm's import; exit after: the run's last record to process exit)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument(
        "--from-source", action="store_true", help="Measure without agentrun's bytecode."
    )
    parser.add_argument(
        "--local", action="store_true", help="Also time agents/hello.yaml on the embedded model."
    )
    options = parser.parse_args()
    package = Path(runner.__file__).parent
    if options.from_source:
        for cache in package.rglob("__pycache__"):
            shutil.rmtree(cache)
        bytecode = "from source (no bytecode)"
    else:
        compileall.compile_dir(package, quiet=1)
        bytecode = "bytecode compiled, as pip install does"
    agentrun = shutil.which("agentrun") or str(Path(sys.executable).parent / "agentrun")
    with tempfile.TemporaryDirectory() as folder:
        for i in range(10):
            Path(folder, f"bench-{i}.yaml").write_text(SPEC.format(i=i, hour=i + 6))
        cases = {
            "agentrun --help": [agentrun, "--help"],
            "agentrun validate <10 specs>": [agentrun, "validate", folder],
            # The machine's speed right now: what the issue puts at about 140 ms.
            "python -c 'import yaml, jsonschema, jinja2, click'": [
                sys.executable,
                "-c",
                "import yaml, jsonschema, jinja2, click",
            ],
        }
        # Interleaved (one run of each command, then again), so a slow stretch of a shared
        # machine hits every command alike.
        walls: dict[str, list[float]] = {label: [] for label in cases}
        rss: dict[str, list[int]] = {label: [] for label in cases}
        for _ in range(options.runs):
            for label, argv in cases.items():
                wall, peak = measure(argv, 1)
                walls[label] += wall
                rss[label] += peak
        print(f"{'command':<52} {'median ms':>10} {'max ms':>8} {'peak RSS MB':>12}  litellm")
        for label, argv in cases.items():
            loaded = "" if argv[0] == sys.executable else imports_litellm(argv[1:])
            shown = {"": "", True: "imported", False: "not imported"}[loaded]
            print(
                f"{label:<52} {statistics.median(walls[label]) * 1000:>10.0f} "
                f"{max(walls[label]) * 1000:>8.0f} {max(rss[label]) / 1024:>12.1f}  {shown}"
            )
        validate = statistics.median(walls["agentrun validate <10 specs>"])
        libraries = statistics.median(walls["python -c 'import yaml, jsonschema, jinja2, click'"])
        print(
            f"validate beyond the bare library imports: {(validate - libraries) * 1000:.0f} ms; "
            f"scaled to a machine where those take 140 ms: {validate / libraries * 140:.0f} ms"
        )
    measure_runs(agentrun, max(3, options.runs // 3), options.local)
    print(
        f"({options.runs} cold runs each, /usr/bin/time -v; python {sys.version.split()[0]}; "
        f"{bytecode}; agentrun run: a third as many)"
    )


if __name__ == "__main__":
    main()
