"""Harness overhead per step: agentrun's loop (with the run store) vs a bare litellm loop.

Both drive the same 20-step tool-calling conversation (19 `list_dir` calls, then an answer)
against the zero-latency fake OpenAI-compatible server (one per variant, each in a child
process, so that the server's CPU and its thread's contention for the GIL stay out of the
figures), through `litellm.acompletion` in this process. CPU time (process_time, all threads) is measured per run, the variants
in interleaved rounds. Agentrun's overhead per step is the median over the rounds of (its run
minus the same round's bare run) / 20, with the interquartile range: pairing the runs of a
round cancels the drift of a shared machine, which moves the bare loop's ~15 ms a step by
more than the overhead being measured.
A third variant adds `max_tokens`/`max_cost_usd` budgets, which count prompt tokens with
litellm's tokenizer before every call.

Run: python bench/overhead.py [--runs 30]
Target: under 1 ms of CPU per step over the bare loop, storage included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ["FAKE_API_KEY"] = "sk-bench"

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.compiler import compile_agent  # noqa: E402
from runner.loop import run_agent  # noqa: E402
from runner.models import (  # noqa: E402
    LiteLLMModel,
    ModelReply,
    ToolCallRequest,
    Usage,
    import_litellm,
)
from runner.spec import load_spec  # noqa: E402
from runner.store import RunStore  # noqa: E402
from runner.testing import FakeOpenAIServer, call, text  # noqa: E402

STEPS = 20


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
        self.api_base: str = self._conn.recv()

    @staticmethod
    def _serve(conn: Any, replies: int) -> None:
        with FakeOpenAIServer(script() * replies) as server:
            conn.send(server.api_base)
            conn.recv()  # until the parent says stop (or goes away)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.send("stop")
        self._process.join(timeout=10)


HARNESS = "agentrun loop alone (instant model, store)"


class InstantModel:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--no-freeze", action="store_true", help="Leave gc.freeze() out.")
    options = parser.parse_args()
    runs, freeze = options.runs, not options.no_freeze
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_data(folder)
        store = RunStore(folder / "runs.db")
        variants: dict[str, Any] = {}
        servers = []
        # One server per variant, each scripted for every run; the variants are measured in
        # interleaved rounds (A B C, A B C, ...) so drift in the machine hits all of them.
        bare_server = ServerProcess(runs + 1)
        servers.append(bare_server)
        schemas = compile_agent(
            load_spec(write_spec(folder, bare_server.api_base, ""))
        ).tools.openai_schemas()
        variants["bare litellm loop"] = lambda: asyncio.run(
            bare_loop(bare_server.api_base, folder, schemas)
        )
        for label, budgets in (
            ("agentrun (store, no token budgets)", ""),
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
        samples: dict[str, list[float]] = {label: [] for label in variants}
        order = list(variants.items())
        for round_ in range(runs + 1):
            # Each round starts with the next variant (A B C, B C A, C A B, ...): whatever a run
            # leaves behind (litellm's unclosed aiohttp session of that event loop, garbage) is
            # paid by the run after it, and the rotation spreads that over every variant.
            shift = round_ % len(order)
            for label, once in order[shift:] + order[:shift]:
                start = time.process_time()
                once()
                if round_:  # the first round warms up imports, pools and caches
                    samples[label].append(time.process_time() - start)
            if round_ == 0 and freeze:
                # What runner.worker does after its warm-up: move the imported modules' objects
                # out of the collector's reach, so collections only walk the run's own objects.
                gc.collect()
                gc.freeze()
        for server in servers:
            server.close()
        medians = {label: statistics.median(values) for label, values in samples.items()}
        for label, median in medians.items():
            print(
                f"{label:<44} median {median * 1000:8.2f} ms CPU per run ({median / STEPS * 1000:.3f} ms/step)"
            )
        bare_label = "bare litellm loop"
        for label in [name for name in list(medians)[1:] if name != HARNESS]:
            # Paired: each round's agentrun run minus the same round's bare run, so a slow
            # stretch of the machine, which lifts both, cancels out.
            extra = [
                (ours - bare) / STEPS * 1000
                for ours, bare in zip(samples[label], samples[bare_label], strict=True)
            ]
            low, mid, high = statistics.quantiles(extra, n=4)
            of_medians = (medians[label] - medians[bare_label]) / STEPS * 1000
            print(
                f"overhead per step, {label.removeprefix('agentrun '):<36} {of_medians:6.3f} ms "
                f"(difference of medians); paired {mid:.3f} ms (IQR {low:.3f}..{high:.3f})"
            )
        print(
            f"({runs} interleaved rounds, {STEPS} steps per run; python {sys.version.split()[0]})"
        )


if __name__ == "__main__":
    main()
