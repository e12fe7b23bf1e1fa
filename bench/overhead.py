"""Harness overhead per step: agentrun's loop (with the run store) vs a bare litellm loop.

Both drive the same 20-step tool-calling conversation (19 `list_dir` calls, then an answer)
against the zero-latency fake OpenAI-compatible server (one per variant, each in a child
process, so that the server's CPU and its fight for the GIL stay out of the figures),
through `litellm.acompletion` in this process.

CPU time (getrusage: user plus system, all threads) is measured per run, each run ending
with a collection of its own garbage, the variants in interleaved rounds. The overhead per
step is the difference of the medians / 20 (the issue's definition), with the paired
median (each round's run minus the same round's bare runs) and its interquartile range.
Both come with a 95% bootstrap confidence interval (rounds resampled), and the target is
called met only when the whole interval of the difference of medians is under it, not met
when the whole interval is at or over it, and undecided otherwise.
The variants:
- the bare loop, and the bare loop again as a control: what the control shows over the
  bare loop is the machine's noise (a shared VM moves the bare loop's ~10 ms a step by
  ±20% from run to run). agentrun is compared with both: their runs pooled for the
  median, their mean in each round for the paired figure;
- agentrun with the store, with and without `max_tokens`/`max_cost_usd` budgets (these
  estimate every call's prompt first: the messages added since the last call's reported
  usage are tokenized with litellm's tokenizer);
- agentrun alone, with an instant model (no litellm, no HTTP), the store included.

Every child process (the servers, the valgrind runs) is stopped when the bench ends, fails
or is interrupted (:func:`stop_children`, in `main`'s `finally`).

With `--instructions`, the bare loop and agentrun run under valgrind's cachegrind instead
and the figure is user-space instructions per step, which do not drift with the machine
(system calls are not counted, so as time it is a lower bound). It takes about 2 minutes.

Run: python bench/overhead.py [--runs 60] | python bench/overhead.py --instructions [--runs 3]
Target: under 1 ms of CPU per step over the bare loop, storage included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import multiprocessing
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# Each asyncio.run leaves litellm's aiohttp session of that loop unclosed; collecting it
# logs a warning per run.
logging.getLogger("asyncio").setLevel(logging.CRITICAL)
os.environ["FAKE_API_KEY"] = "sk-bench"

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.compiler import compile_agent  # noqa: E402
from runner.loop import run_agent  # noqa: E402
from runner.models import (  # noqa: E402
    LiteLLMModel,
    Model,
    ModelReply,
    ToolCallRequest,
    Usage,
    import_litellm,
)
from runner.spec import load_spec  # noqa: E402
from runner.store import RunStore  # noqa: E402
from runner.testing import FakeOpenAIServer, call, text  # noqa: E402

STEPS = 20
#: The issue's target: agentrun's CPU time over the bare loop's, ms per step.
TARGET_MS = 1.0
#: Bootstrap resamples for the 95% confidence intervals.
RESAMPLES = 2000
#: Fewest rounds the issue accepts (its median is over at least 15 runs); fewer give no verdict.
MIN_ROUNDS = 15


def script() -> list[Any]:
    return [call("list_dir", {"path": f"data/d{i}"}) for i in range(STEPS - 1)] + [text("done")]


def make_data(folder: Path) -> None:
    for i in range(STEPS):
        (folder / "data" / f"d{i}").mkdir(parents=True, exist_ok=True)
        (folder / "data" / f"d{i}" / "file.txt").write_text("x")


class ServerProcess:
    """A :class:`FakeOpenAIServer` in a child process, so its CPU time (and its thread's fight
    with the client for the GIL) stays out of the measured process."""

    def __init__(self, replies: int) -> None:
        context = multiprocessing.get_context("fork")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=self._serve, args=(child, replies), daemon=True)
        self._process.start()
        SERVERS.append(self)
        self.api_base: str = self._conn.recv()

    @staticmethod
    def _serve(conn: Any, replies: int) -> None:
        with FakeOpenAIServer(script() * replies) as server:
            conn.send(server.api_base)
            conn.recv()  # until the parent says stop (or goes away)

    def close(self) -> None:
        """Stop the server: asked first, killed if it does not stop. Safe to call twice."""
        with contextlib.suppress(OSError):
            self._conn.send("stop")
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


#: Every server and valgrind child this bench started (see :func:`stop_children`).
SERVERS: list[ServerProcess] = []
CHILDREN: list[subprocess.Popen[bytes]] = []


def stop_children() -> None:
    """Stop every child process this bench started, whatever state it is in."""
    for server in SERVERS:
        server.close()
    for process in CHILDREN:
        if process.poll() is None:
            process.kill()
            process.wait()


HARNESS = "agentrun loop alone (instant model, store)"


class InstantModel(Model):
    """The script's replies, handed over at once: no litellm, no HTTP, nothing recorded.

    Measures the harness by itself (loop, policy, tool dispatch, events, redaction, store),
    free of the noise of litellm's ~10 ms a step.
    """

    name = "instant"

    def __init__(self) -> None:
        self.calls = 0

    async def complete(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], tool_choice: Any = None
    ) -> ModelReply:
        index, self.calls = self.calls, self.calls + 1
        usage = Usage(input_tokens=10, output_tokens=5)
        if index < STEPS - 1:
            arguments = json.dumps({"path": f"data/d{index}"})
            calls = [ToolCallRequest(f"call_{index}", "list_dir", arguments)]
            return ModelReply("", calls, usage, None, self.name, "tool_calls")
        return ModelReply("done", [], usage, None, self.name, "stop")


def write_spec(folder: Path, api_base: str, budgets: str) -> Path:
    path = folder / "bench.yaml"
    path.write_text(
        f"""version: 1
name: bench
model:
  id: openai/fake
  api_base: {api_base}
  api_key_env: FAKE_API_KEY
  params: {{max_tokens: 100}}
  pricing: {{input_per_mtok: 1, output_per_mtok: 1}}
goal: List every folder.
tools:
  list_dir: {{paths: [data]}}
budgets: {{max_steps: 50{budgets}}}
"""
    )
    return path


async def bare_loop(api_base: str, folder: Path, tools: list[dict[str, Any]]) -> None:
    """The same conversation with nothing but litellm: same tools, same tool_choice."""
    litellm = import_litellm()
    messages: list[dict[str, Any]] = [{"role": "user", "content": "List every folder."}]
    while True:
        response = await litellm.acompletion(
            model="openai/fake",
            messages=messages,
            tools=tools,
            tool_choice="auto",
            api_base=api_base,
            api_key="sk-bench",
            max_tokens=100,
            num_retries=0,
            max_retries=0,
        )
        message = response.choices[0].message
        calls = message.tool_calls or []
        messages.append(
            {
                "role": "assistant",
                "content": message.content or "",
                "tool_calls": [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.function.name, "arguments": c.function.arguments},
                    }
                    for c in calls
                ],
            }
        )
        if not calls:
            return
        for c in calls:
            path = folder / json.loads(c.function.arguments)["path"]
            listing = "\n".join(sorted(p.name for p in path.iterdir()))
            messages.append({"role": "tool", "tool_call_id": c.id, "content": listing})


BARE = "bare litellm loop"
STORE_NO_BUDGETS = "agentrun (store, no token budgets)"
CONTROL = "bare litellm loop, again (control)"


def bootstrap(statistic: Callable[[list[int]], float], rounds: int) -> tuple[float, float]:
    """95% percentile bootstrap interval of ``statistic(round indices)``.

    The rounds are resampled with replacement :data:`RESAMPLES` times (a fixed seed, so the
    same samples give the same interval). Rounds, not runs, are the unit: a round's runs
    shared the machine's state of the moment, as the paired figure assumes.
    """
    rng = random.Random(0)
    values = sorted(
        statistic([rng.randrange(rounds) for _ in range(rounds)]) for _ in range(RESAMPLES)
    )
    return values[int(0.025 * RESAMPLES)], values[int(0.975 * RESAMPLES) - 1]


def cpu_times() -> tuple[float, float]:
    """(user, system) CPU seconds of this process so far, all threads (getrusage)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def timed(once: Any) -> tuple[float, float]:
    """(user, system) CPU seconds of ``once()``, ending with a collection of its garbage.

    The collection belongs to the run that made the garbage: without it, each run would
    pay at random for cycles the run before it left behind.
    """
    user, system = cpu_times()
    once()
    gc.collect()
    after_user, after_system = cpu_times()
    return after_user - user, after_system - system


def measure_cpu(runs: int, freeze: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_data(folder)
        store = RunStore(folder / "runs.db")
        variants: dict[str, Any] = {}
        servers = []
        # One server per variant, each scripted for every run; the variants are measured in
        # interleaved rounds so drift in the machine hits all of them.
        for label in (BARE, CONTROL):
            server = ServerProcess(runs + 1)
            servers.append(server)
            schemas = compile_agent(
                load_spec(write_spec(folder, server.api_base, ""))
            ).tools.openai_schemas()
            variants[label] = lambda base=server.api_base, schemas=schemas: asyncio.run(
                bare_loop(base, folder, schemas)
            )
        for label, budgets in (
            (STORE_NO_BUDGETS, ""),
            (
                "agentrun (store, max_tokens + max_cost_usd)",
                ", max_tokens: 10000000, max_cost_usd: 100",
            ),
        ):
            server = ServerProcess(runs + 1)
            servers.append(server)
            agent = compile_agent(load_spec(write_spec(folder, server.api_base, budgets)))

            def once(agent: Any = agent) -> None:
                finished = asyncio.run(
                    run_agent(agent, LiteLLMModel(agent.spec.model), store=store)
                )
                assert finished.steps == STEPS, finished

            variants[label] = once

        instant_agent = compile_agent(load_spec(write_spec(folder, "http://127.0.0.1:9/v1", "")))

        def instant() -> None:
            finished = asyncio.run(run_agent(instant_agent, InstantModel(), store=store))
            assert finished.steps == STEPS, finished

        variants[HARNESS] = instant
        samples: dict[str, list[tuple[float, float]]] = {label: [] for label in variants}
        order = list(variants.items())
        for round_ in range(runs + 1):
            # Each round starts with the next variant (A B C, B C A, C A B, ...), so that no
            # variant always follows the same one.
            shift = round_ % len(order)
            for label, once in order[shift:] + order[:shift]:
                spent = timed(once)
                if round_:  # the first round warms up imports, pools and caches
                    samples[label].append(spent)
            if round_ == 0 and freeze:
                # What runner.daemon.worker does after its warm-up: move the imported modules' objects
                # out of the collector's reach, so collections only walk the run's own objects.
                gc.collect()
                gc.freeze()
        for server in servers:
            server.close()
    totals = {
        label: [user + system for user, system in values] for label, values in samples.items()
    }
    medians = {label: statistics.median(values) for label, values in totals.items()}
    for label, median in medians.items():
        system = statistics.median(system for _, system in samples[label])
        print(
            f"{label:<44} median {median * 1000:8.2f} ms CPU per run "
            f"({median / STEPS * 1000:.3f} ms/step, of which system {system / STEPS * 1000:.3f})"
        )

    def report(
        label: str,
        extra: list[float],
        of_medians: Callable[[list[int]], float],
        ratio: float,
        target: bool = False,
    ) -> None:
        """Print one comparison; ``of_medians(rounds)`` is the difference of medians (ms per
        step) over those round indices, so that it can be bootstrapped like the paired one."""
        low, mid, high = statistics.quantiles(extra, n=4)
        everything = list(range(len(extra)))
        difference = of_medians(everything)
        d_low, d_high = bootstrap(of_medians, len(extra))
        p_low, p_high = bootstrap(
            lambda rounds: statistics.median(extra[i] for i in rounds), len(extra)
        )
        print(
            f"{label:<64} {difference:6.3f} ms (difference of medians, "
            f"95% CI {d_low:.3f}..{d_high:.3f}, ratio {ratio:.3f}); paired {mid:.3f} ms (95% CI {p_low:.3f}..{p_high:.3f}, "
            f"IQR {low:.3f}..{high:.3f})"
        )
        if target:
            verdict = (
                f"no verdict from under {MIN_ROUNDS} rounds"
                if len(extra) < MIN_ROUNDS
                else "met"
                if d_high < TARGET_MS
                else "not met"
                if d_low >= TARGET_MS
                else "undecided: its 95% CI spans the target"
            )
            print(f"{'':<64} target under {TARGET_MS:g} ms per step: {verdict}")

    def per_step(values: list[float], rounds: list[int]) -> float:
        return statistics.median(values[i] for i in rounds) / STEPS * 1000

    # The noise: the same bare loop, twice. Paired: each round's run minus the same round's
    # bare run, so a slow stretch of the machine, which lifts both, cancels out.
    report(
        "noise: the bare loop again, over the bare loop per step",
        [(c - b) / STEPS * 1000 for c, b in zip(totals[CONTROL], totals[BARE], strict=True)],
        lambda rounds: per_step(totals[CONTROL], rounds) - per_step(totals[BARE], rounds),
        medians[CONTROL] / medians[BARE],
    )
    # agentrun against both bare loops: their runs pooled (twice the samples of either), and
    # per round the mean of the two.
    both = totals[BARE] + totals[CONTROL]
    pooled = statistics.median(both)
    rounds = [(b + c) / 2 for b, c in zip(totals[BARE], totals[CONTROL], strict=True)]
    for label in [name for name in medians if name not in (BARE, CONTROL, HARNESS)]:
        report(
            "over the bare loop per step, " + label.removeprefix("agentrun "),
            [
                (ours - bare) / STEPS * 1000
                for ours, bare in zip(totals[label], rounds, strict=True)
            ],
            lambda picked, label=label: (
                per_step(totals[label], picked)
                - per_step(both, picked + [i + runs for i in picked])
            ),
            medians[label] / pooled,
            target=label == STORE_NO_BUDGETS,
        )
    print(
        f"({runs} interleaved rounds, {STEPS} steps per run; python {sys.version.split()[0]}. "
        "The control runs the bare loop again: what it shows over the bare loop is this "
        "machine's noise; agentrun is compared with both bare loops.)"
    )


def child(variant: str, runs: int, api_base: str) -> None:
    """Under valgrind: warm up (one bare run, one agentrun run), then ``runs`` of ``variant``."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_data(folder)
        store = RunStore(folder / "runs.db")
        agent = compile_agent(load_spec(write_spec(folder, api_base, "")))
        schemas = agent.tools.openai_schemas()

        def bare() -> None:
            asyncio.run(bare_loop(api_base, folder, schemas))

        def ours() -> None:
            finished = asyncio.run(run_agent(agent, LiteLLMModel(agent.spec.model), store=store))
            assert finished.steps == STEPS, finished

        bare()
        ours()
        for _ in range(runs if variant != "none" else 0):
            (ours if variant == "agentrun" else bare)()


def instructions(path: Path) -> int:
    """The instruction count (``Ir``) in a cachegrind output file."""
    for line in path.read_text().splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise SystemExit(f"no summary in {path}")


def measure_instructions(runs: int) -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")
    env = dict(os.environ, PYTHONHASHSEED="0", LITELLM_LOCAL_MODEL_COST_MAP="True")
    with tempfile.TemporaryDirectory() as tmp:
        jobs = []
        servers = []
        for variant in ("none", "bare", "agentrun"):
            server = ServerProcess(runs + 2)  # outside valgrind: its work is not counted
            servers.append(server)
            out = Path(tmp) / f"cachegrind.{variant}"
            command = [
                "valgrind",
                "--tool=cachegrind",
                "--cache-sim=no",
                f"--cachegrind-out-file={out}",
                sys.executable,
                __file__,
                "--child",
                variant,
                "--runs",
                str(runs),
                "--api-base",
                server.api_base,
            ]
            # stderr to a file: the children run at once, and a full pipe would stall one.
            log = out.with_suffix(".log")
            with log.open("wb") as errors:
                process = subprocess.Popen(
                    command, env=env, stdout=subprocess.DEVNULL, stderr=errors
                )
            CHILDREN.append(process)
            jobs.append((variant, out, log, process))
        counts = {}
        try:
            for variant, out, log, process in jobs:
                if process.wait():
                    tail = log.read_text(errors="replace")[-2000:]
                    raise SystemExit(f"the {variant} child failed:\n{tail}")
                counts[variant] = instructions(out)
        finally:
            for server in servers:
                server.close()
    steps = runs * STEPS
    bare = (counts["bare"] - counts["none"]) / steps
    ours = (counts["agentrun"] - counts["none"]) / steps
    print(f"bare litellm loop           {bare / 1e6:8.3f} M instructions per step")
    print(f"agentrun (store)            {ours / 1e6:8.3f} M instructions per step")
    print(
        f"over the bare loop per step {(ours - bare) / 1e6:8.3f} M instructions "
        f"(ratio {ours / bare:.4f})"
    )
    # The bare loop's CPU time per instruction, natively, turns the count into time. It is a
    # lower bound: system calls are not counted, and agentrun's code (SQLite commits, a
    # thread handoff per tool call) runs fewer instructions per second than litellm's.
    server = ServerProcess(12)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_data(folder)
        schemas = compile_agent(
            load_spec(write_spec(folder, server.api_base, ""))
        ).tools.openai_schemas()
        native = []
        for run in range(11):
            native.append(
                sum(timed(lambda: asyncio.run(bare_loop(server.api_base, folder, schemas))))
            )
            if run == 0:  # as in the CPU measurement: warm up, then freeze the imports
                gc.collect()
                gc.freeze()
        native = native[1:]
    server.close()
    per_step_ms = statistics.median(native) / STEPS * 1000
    rate = per_step_ms / (bare / 1e6)
    print(
        f"as CPU time, at the bare loop's native {per_step_ms:.2f} ms a step ({rate:.3f} ms per "
        f"M instructions): at least {(ours - bare) / 1e6 * rate:.3f} ms per step over the bare "
        "loop (a lower bound: the CPU-time measurement is the figure to compare)"
    )
    print(
        f"({runs} runs of {STEPS} steps per variant under valgrind's cachegrind, after the same "
        "warm-up; user-space instructions only: system calls are not counted.)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--no-freeze", action="store_true", help="Leave gc.freeze() out.")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="Count instructions under valgrind instead of measuring CPU time.",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--api-base", help=argparse.SUPPRESS)
    options = parser.parse_args()
    try:
        if options.child:
            child(options.child, options.runs, options.api_base)
        elif options.instructions:
            measure_instructions(options.runs or 3)
        else:
            measure_cpu(options.runs or 60, freeze=not options.no_freeze)
    finally:
        stop_children()


if __name__ == "__main__":
    main()
