"""agentrun side by side with peer agent loops (issue 19, "What it must show").

The peers: a raw openai SDK loop, a bare litellm loop, smolagents (``ToolCallingAgent``),
pydantic-ai, langgraph (its prebuilt ReAct agent) with and without its SQLite checkpointer,
openai-agents with and without a ``SQLiteSession``, and agentrun (durable: its SQLite run
store, in a temporary ``AGENTRUN_HOME``). They are installed, pinned by
``bench/peers-requirements.txt``, in a bench-only virtual environment, ``bench/.peers-venv``
(git-ignored), which this script creates on first use (and again when the requirements
change), with agentrun from this checkout (``pip install -e``); the script then runs itself
again inside it. None of the peers is a dependency of agentrun.

Every variant drives the same scripted conversation, with the same tool (``read_file``: a
file's text), against the zero-latency fake OpenAI-compatible server
(:class:`runner.testing.FakeOpenAIServer`, in a child process, so its CPU stays out of the
figures). The server answers from the conversation it is sent: while it has seen fewer tool
results than the script's steps less one, it asks for the next file; then it answers (for
smolagents, whose agent ends through a tool, with a ``final_answer`` call). A step is one
model call. Each variant runs in a worker process of its own (so no peer's imports or heap
weigh on another's), in one event loop kept for all its runs; it warms up with one run and
freezes the collector's heap (``gc.freeze()``, as agentrun's daemon worker does), then
measures each run by getrusage (user plus system CPU seconds, all threads), each run ending
with a collection of its own garbage. The workers take turns in interleaved rounds, each
round starting with the next variant, so drift in the machine hits all of them.

Scenarios (all by default; name some with ``--scenario``):

- ``steps``: the 20-step tool conversation, every variant. CPU per step (ms), median over
  the rounds; the ratio to the fastest in-memory peer and to the bare litellm loop, each a
  ratio of medians with a 95% bootstrap confidence interval (rounds resampled).
  Target: agentrun at most 0.8x the fastest in-memory peer.
- ``large``: 80 steps, each tool result 30 KB. Target: agentrun at most 1.1x the raw SDK loop.
- ``cold``: wall time from process start to the first model request arriving at the fake
  server (seconds), fresh processes, interleaved: ``agentrun run spec.yaml`` (an
  ``openai/*`` spec, with ``OPENAI_BASE_URL`` at the fake server and a dummy
  ``OPENAI_API_KEY``) and the equivalent minimal scripts of smolagents, pydantic-ai and the
  raw SDK; for agentrun also from the run's last record to process exit (as
  bench/startup.py measures it). Targets: agentrun at most 1.3 s and at most 1.1x
  smolagents; exit under 0.1 s after the last record.
- ``concurrent``: 100 concurrent 10-step runs in one process (``asyncio.gather``), total CPU
  (seconds) per batch, every variant that runs concurrently in one event loop (smolagents
  is synchronous and left out). Target: agentrun at most the fastest peer's CPU.

A target is called met when the whole 95% interval is on its good side, not met when the
whole interval is on the other, and undecided otherwise.

Run: python bench/peers.py [--scenario steps large cold concurrent] [--quick]
  [--rounds 30] [--large-rounds 10] [--cold-runs 10] [--concurrent-rounds 3]
  [--concurrent-runs 100] [--profile PREFIX]
``--quick`` is a smoke run (3 rounds, 1 of 80 steps, 2 cold starts, one batch of 10
concurrent runs: about 4 minutes, most of it the workers' imports), too short for verdicts. The defaults take about 12 minutes
on a quiet 2-core machine (about 20 on a loaded one), after the environment is made (a few
minutes, once). ``--profile PREFIX`` writes each worker's cProfile statistics of its measured
runs to ``PREFIX.<variant>.prof`` (the CPU figures then include the profiler's cost).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import json
import multiprocessing
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "bench" / ".peers-venv"
REQUIREMENTS = ROOT / "bench" / "peers-requirements.txt"
#: Written in the environment once it is made: the digest of what it was made from.
MARKER = VENV / "peers-requirements.sha256"

TASK = "Read the files one by one, then say done."
#: Every tool result starts with it; the fake server counts it to know where a run is.
RESULT_MARK = "RESULT-7f3a"
#: Bootstrap resamples for the 95% confidence intervals.
RESAMPLES = 2000
#: Fewest rounds that give a verdict.
MIN_ROUNDS = 8
API_KEY = "sk-bench"

#: (name, records durably, runs concurrently in one event loop)
VARIANTS: list[tuple[str, str, bool]] = [
    ("raw openai SDK loop", "no", True),
    ("bare litellm loop", "no", True),
    ("smolagents", "no", False),
    ("pydantic-ai", "no", True),
    ("langgraph", "no", True),
    ("langgraph + SQLite checkpointer", "yes", True),
    ("openai-agents", "no", True),
    ("openai-agents + SQLiteSession", "conversation only", True),
    ("agentrun", "yes", True),
]
DURABLE = {name: durable for name, durable, _ in VARIANTS}
RAW = "raw openai SDK loop"
BARE = "bare litellm loop"
AGENTRUN = "agentrun"


# --- the bench-only environment ------------------------------------------------------------


def environment_digest() -> str:
    """What the environment is made from: the requirements and this Python's version."""
    text = REQUIREMENTS.read_text() + sys.version + str(ROOT)
    return hashlib.sha256(text.encode()).hexdigest()


def ensure_environment() -> Path:
    """The peers' environment's python, made (or remade) when missing or out of date."""
    python = VENV / "bin" / "python"
    if python.exists() and MARKER.exists() and MARKER.read_text() == environment_digest():
        return python
    print(f"making {VENV} from {REQUIREMENTS.name} (once; a few minutes)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS), "-e", str(ROOT)],
        check=True,
    )
    MARKER.write_text(environment_digest())
    return python


def inside_environment() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


# --- the fake server -----------------------------------------------------------------------


def next_reply(request: dict[str, Any], steps: int, kind: str) -> Any:
    """The scripted reply to ``request``: the next file to read, or the answer."""
    from runner.testing import call, text

    seen = json.dumps(request.get("messages", [])).count(RESULT_MARK)
    if seen < steps - 1:
        return call("read_file", {"path": f"data/{kind}{seen}.txt"})
    offered = {tool.get("function", {}).get("name") for tool in request.get("tools") or []}
    if "final_answer" in offered:
        return call("final_answer", {"answer": "done"})
    return text("done")


def serve(conn: Any, steps: int, kind: str) -> None:
    """In the server's child process: answer until the parent says stop.

    The parent may ask ``first``: the time (``time.time()``, seconds) the first request
    since the last such question arrived, or None.
    """
    from collections import deque

    from runner.testing import FakeOpenAIServer

    class ConversationServer(FakeOpenAIServer):
        """Answers from the conversation sent (see :func:`next_reply`), keeping no requests."""

        def __init__(self) -> None:
            super().__init__([], repeat_last=True)
            # socketserver listens with a backlog of 5: 100 clients connecting at once
            # overflow it, and the kernel resets connections. Listening again raises it.
            self._server._server.socket.listen(1024)
            self.first: float | None = None
            self._turn = threading.Lock()

        def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
            arrived = time.time()
            item = next_reply(request, steps, kind)
            with self._turn:
                if self.first is None:
                    self.first = arrived
                self.script = deque([item])
                answer = super()._answer(request)
                self.requests.clear()
            return answer

    with ConversationServer() as server:
        conn.send(server.api_base)
        while True:
            try:
                message = conn.recv()
            except EOFError:
                return
            if message != "first":
                return
            conn.send(server.first)
            server.first = None


class ServerProcess:
    """The fake server in a child process (its CPU stays out of the measured processes)."""

    def __init__(self, steps: int, kind: str) -> None:
        context = multiprocessing.get_context("fork")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=serve, args=(child, steps, kind), daemon=True)
        self._process.start()
        SERVERS.append(self)
        self.api_base: str = self._conn.recv()

    def first_request(self) -> float | None:
        """When the first request since the last call arrived (``time.time()`` seconds)."""
        self._conn.send("first")
        return self._conn.recv()

    def close(self) -> None:
        """Stop the server: asked first, killed if it does not stop. Safe to call twice."""
        with contextlib.suppress(OSError):
            self._conn.send("stop")
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


SERVERS: list[ServerProcess] = []
WORKERS: list[subprocess.Popen[str]] = []


def stop_children() -> None:
    """Stop every server and worker this bench started."""
    for server in SERVERS:
        server.close()
    for process in WORKERS:
        if process.poll() is None:
            process.kill()
            process.wait()


def make_data(folder: Path, steps: int, kind: str, size: int) -> None:
    """The files the conversation reads: ``data/{kind}{i}.txt``, ``size`` bytes each."""
    (folder / "data").mkdir(exist_ok=True)
    for i in range(steps):
        head = f"{RESULT_MARK} file {i}\n"
        line = "the quick brown fox jumps over the lazy dog.\n"
        body = head + (line * (size // len(line) + 1))[: max(size - len(head), 0)]
        (folder / "data" / f"{kind}{i}.txt").write_text(body)


# --- the variants (in a worker process) ----------------------------------------------------

TOOL_SCHEMA = {
    "type": "function",
    "function": {
        "name": "read_file",
        "description": "Read a text file and return its contents.",
        "parameters": {
            "type": "object",
            "properties": {"path": {"type": "string", "description": "The file's path."}},
            "required": ["path"],
        },
    },
}


class Counter:
    """Tool calls made, to check that each run went the whole way."""

    calls = 0


def make_read_file(folder: Path) -> Callable[[str], str]:
    def read_file(path: str) -> str:
        """Read a text file and return its contents.

        Args:
            path: The file's path.
        """
        Counter.calls += 1
        return (folder / path).read_text()

    return read_file


def message_of(reply: Any) -> dict[str, Any]:
    """An SDK (or litellm) reply's message as the next request's assistant message."""
    calls = reply.tool_calls or []
    entry: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if calls:
        entry["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.function.name, "arguments": c.function.arguments},
            }
            for c in calls
        ]
    return entry


async def setup_loops(
    name: str, api_base: str, folder: Path, steps: int, read_file: Callable[[str], str]
) -> Callable[[], Any]:
    """The run of the raw SDK or the bare litellm loop (see :func:`setup_variant`)."""
    if name == RAW:
        from openai import AsyncOpenAI

        client = AsyncOpenAI(base_url=api_base, api_key=API_KEY, max_retries=0)

        async def complete(messages: list[dict[str, Any]]) -> Any:
            return await client.chat.completions.create(
                model="fake",
                messages=messages,  # type: ignore[arg-type]
                tools=[TOOL_SCHEMA],  # type: ignore[list-item]
                tool_choice="auto",
                max_tokens=100,
            )
    else:
        import litellm

        async def complete(messages: list[dict[str, Any]]) -> Any:
            return await litellm.acompletion(
                model="openai/fake",
                messages=messages,
                tools=[TOOL_SCHEMA],
                tool_choice="auto",
                api_base=api_base,
                api_key=API_KEY,
                max_tokens=100,
                num_retries=0,
                max_retries=0,
            )

    async def loop_once() -> None:
        messages: list[dict[str, Any]] = [{"role": "user", "content": TASK}]
        while True:
            reply = (await complete(messages)).choices[0].message
            messages.append(message_of(reply))
            if not reply.tool_calls:
                return
            for c in reply.tool_calls:
                result = read_file(**json.loads(c.function.arguments))
                messages.append({"role": "tool", "tool_call_id": c.id, "content": result})

    return loop_once


async def setup_smolagents(
    name: str, api_base: str, folder: Path, steps: int, read_file: Callable[[str], str]
) -> Callable[[], Any]:
    """The run of smolagents (see :func:`setup_variant`)."""
    from smolagents import OpenAIServerModel, ToolCallingAgent, tool

    model = OpenAIServerModel(
        model_id="fake",
        api_base=api_base,
        api_key=API_KEY,
        client_kwargs={"max_retries": 0},
        max_tokens=100,
    )
    agent = ToolCallingAgent(
        tools=[tool(read_file)], model=model, verbosity_level=0, max_steps=steps + 5
    )

    def smol_once() -> None:
        agent.run(TASK, reset=True)

    return smol_once


async def setup_pydantic_ai(
    name: str, api_base: str, folder: Path, steps: int, read_file: Callable[[str], str]
) -> Callable[[], Any]:
    """The run of pydantic-ai (see :func:`setup_variant`)."""
    from openai import AsyncOpenAI
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider
    from pydantic_ai.usage import UsageLimits

    client = AsyncOpenAI(base_url=api_base, api_key=API_KEY, max_retries=0)
    model = OpenAIChatModel("fake", provider=OpenAIProvider(openai_client=client))
    pydantic_agent = Agent(model, tools=[read_file], model_settings={"max_tokens": 100})

    async def pydantic_once() -> None:
        await pydantic_agent.run(TASK, usage_limits=UsageLimits(request_limit=None))

    return pydantic_once


async def setup_langgraph(
    name: str, api_base: str, folder: Path, steps: int, read_file: Callable[[str], str]
) -> Callable[[], Any]:
    """The run of langgraph (see :func:`setup_variant`)."""
    from langchain_core.tools import tool as langchain_tool
    from langchain_openai import ChatOpenAI
    from langgraph.prebuilt import create_react_agent

    saver = None
    if "SQLite" in name:
        import aiosqlite
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        saver = AsyncSqliteSaver(await aiosqlite.connect(str(folder / "langgraph.db")))
        await saver.setup()
    llm = ChatOpenAI(
        model="fake", base_url=api_base, api_key=API_KEY, max_retries=0, max_tokens=100
    )  # type: ignore[call-arg]
    graph = create_react_agent(llm, [langchain_tool(read_file)], checkpointer=saver)

    async def graph_once() -> None:
        config = {
            "recursion_limit": 4 * steps + 10,
            "configurable": {"thread_id": uuid.uuid4().hex},
        }
        await graph.ainvoke({"messages": [{"role": "user", "content": TASK}]}, config)

    return graph_once


async def setup_openai_agents(
    name: str, api_base: str, folder: Path, steps: int, read_file: Callable[[str], str]
) -> Callable[[], Any]:
    """The run of openai-agents (see :func:`setup_variant`)."""
    from openai import AsyncOpenAI

    from agents import (
        Agent as SDKAgent,
    )
    from agents import (
        ModelSettings,
        OpenAIChatCompletionsModel,
        Runner,
        SQLiteSession,
        function_tool,
        set_tracing_disabled,
    )

    set_tracing_disabled(True)
    client = AsyncOpenAI(base_url=api_base, api_key=API_KEY, max_retries=0)
    sdk_agent = SDKAgent(
        name="bench",
        tools=[function_tool(read_file)],
        model=OpenAIChatCompletionsModel(model="fake", openai_client=client),
        model_settings=ModelSettings(max_tokens=100),
    )
    database = str(folder / "sessions.db")
    with_session = "Session" in name

    async def sdk_once() -> None:
        session = SQLiteSession(uuid.uuid4().hex, database) if with_session else None
        await Runner.run(sdk_agent, TASK, max_turns=steps + 5, session=session)

    return sdk_once


async def setup_agentrun(
    name: str, api_base: str, folder: Path, steps: int, read_file: Callable[[str], str]
) -> Callable[[], Any]:
    """The run of agentrun (see :func:`setup_variant`)."""
    from runner.compiler import compile_agent
    from runner.loop import run_agent
    from runner.spec import load_spec
    from runner.store import RunStore

    spec = folder / "agentrun.yaml"
    spec.write_text(
        f"""version: 1
name: bench
model:
  id: openai/fake
  api_base: {api_base}
  api_key_env: FAKE_API_KEY
  params: {{max_tokens: 100}}
  pricing: {{input_per_mtok: 1, output_per_mtok: 1}}
goal: {TASK}
tools:
  read_file: {{paths: [data]}}
budgets: {{max_steps: {steps + 5}}}
"""
    )
    os.environ["FAKE_API_KEY"] = API_KEY
    compiled = compile_agent(load_spec(spec))
    store = RunStore(Path(os.environ["AGENTRUN_HOME"]) / "runs.db")

    async def agentrun_once() -> None:
        finished = await run_agent(compiled, store=store)
        assert finished.steps == steps, finished

    return agentrun_once


async def setup_variant(name: str, api_base: str, folder: Path, steps: int) -> Callable[[], Any]:
    """``name``'s one run: a coroutine function (or, for smolagents, a plain function)."""
    read_file = make_read_file(folder)
    if name in (RAW, BARE):
        return await setup_loops(name, api_base, folder, steps, read_file)
    if name == "smolagents":
        return await setup_smolagents(name, api_base, folder, steps, read_file)
    if name == "pydantic-ai":
        return await setup_pydantic_ai(name, api_base, folder, steps, read_file)
    if name.startswith("langgraph"):
        return await setup_langgraph(name, api_base, folder, steps, read_file)
    if name.startswith("openai-agents"):
        return await setup_openai_agents(name, api_base, folder, steps, read_file)
    if name == AGENTRUN:
        return await setup_agentrun(name, api_base, folder, steps, read_file)
    raise SystemExit(f"no variant {name!r}")


def cpu_seconds() -> tuple[float, float]:
    """(user, system) CPU seconds of this process so far, all threads (getrusage)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def worker(options: argparse.Namespace) -> None:
    """One variant's process: set up, warm up, then one measured run (or batch) per line.

    Answers each ``run`` line on the original stdout with JSON: ``user`` and ``system`` CPU
    seconds and ``wall`` seconds of the run (or of the batch of ``--concurrent`` runs).
    Whatever the libraries print goes to stderr.
    """
    warnings.simplefilter("ignore")  # langgraph's deprecation of create_react_agent
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    folder = Path(options.folder)
    os.chdir(folder)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    once = loop.run_until_complete(
        setup_variant(options.worker, options.api_base, folder, options.steps)
    )
    is_async = asyncio.iscoroutinefunction(once)
    profiler = None

    def batch(count: int) -> None:
        before = Counter.calls
        if not is_async:
            for _ in range(count):
                once()
        elif count == 1:
            loop.run_until_complete(once())
        else:

            async def together() -> None:
                await asyncio.gather(*(once() for _ in range(count)))

            loop.run_until_complete(together())
        made = Counter.calls - before
        # agentrun's own read_file runs its tool calls (each run checks its steps itself).
        expected = 0 if options.worker == AGENTRUN else count * (options.steps - 1)
        assert made == expected, (options.worker, made)

    batch(1)  # the warm-up: imports, connection pools, caches
    gc.collect()
    gc.freeze()
    if options.profile:
        import cProfile

        profiler = cProfile.Profile()
    answers.write("ready\n")
    answers.flush()
    for line in sys.stdin:
        if line.strip() != "run":
            break
        user, system = cpu_seconds()
        wall = time.perf_counter()
        if profiler:
            profiler.enable()
        batch(options.concurrent)
        gc.collect()
        if profiler:
            profiler.disable()
        after_user, after_system = cpu_seconds()
        wall = time.perf_counter() - wall
        spent = {"user": after_user - user, "system": after_system - system, "wall": wall}
        answers.write(json.dumps(spent) + "\n")
        answers.flush()
    if profiler:
        profiler.dump_stats(options.profile)


class Worker:
    """The parent's handle on one worker process."""

    def __init__(
        self,
        name: str,
        server: ServerProcess,
        folder: Path,
        steps: int,
        concurrent: int,
        log: Path,
        profile: str = "",
    ) -> None:
        self.name = name
        home = folder / f"home-{abs(hash(name))}"
        home.mkdir(exist_ok=True)
        env = {
            **os.environ,
            "AGENTRUN_HOME": str(home),
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "PYTHONHASHSEED": "0",
        }
        argv = [
            sys.executable,
            __file__,
            "--worker",
            name,
            "--api-base",
            server.api_base,
            "--folder",
            str(folder),
            "--steps",
            str(steps),
            "--concurrent",
            str(concurrent),
        ]
        if profile:
            argv += ["--profile", profile]
        with log.open("a") as errors:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
                env=env,
            )
        WORKERS.append(self.process)
        self.log = log

    def expect(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise SystemExit(f"the {self.name} worker failed:\n{tail}")
        return line

    def run(self) -> dict[str, float]:
        assert self.process.stdin is not None
        self.process.stdin.write("run\n")
        self.process.stdin.flush()
        return json.loads(self.expect())

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            with contextlib.suppress(OSError):
                self.process.stdin.write("quit\n")
                self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --- statistics ----------------------------------------------------------------------------


def bootstrap(statistic: Callable[[list[int]], float], rounds: int) -> tuple[float, float]:
    """95% percentile bootstrap interval of ``statistic(round indices)`` (fixed seed)."""
    rng = random.Random(0)
    values = sorted(
        statistic([rng.randrange(rounds) for _ in range(rounds)]) for _ in range(RESAMPLES)
    )
    return values[int(0.025 * RESAMPLES)], values[int(0.975 * RESAMPLES) - 1]


def ratio_of_medians(ours: list[float], theirs: list[float]) -> tuple[float, tuple[float, float]]:
    """median(ours) / median(theirs), and its 95% interval, resampling paired rounds."""

    def statistic(rounds: list[int]) -> float:
        return statistics.median(ours[i] for i in rounds) / statistics.median(
            theirs[i] for i in rounds
        )

    return statistic(list(range(len(ours)))), bootstrap(statistic, len(ours))


def verdict(
    interval: tuple[float, float], target: float, rounds: int, fewest: int = MIN_ROUNDS
) -> str:
    """met / not met / undecided, for a figure whose target is "at most ``target``"."""
    low, high = interval
    if rounds < fewest:
        return f"no verdict from under {fewest} rounds"
    if high <= target:
        return "met"
    if low > target:
        return "not met"
    return "undecided: its 95% CI spans the target"


# --- the scenarios -------------------------------------------------------------------------


def interleaved(
    names: list[str],
    steps: int,
    kind: str,
    size: int,
    rounds: int,
    concurrent: int = 1,
    profile: str = "",
) -> dict[str, list[float]]:
    """CPU seconds (user plus system) per run (or batch) of each variant, per round."""
    with tempfile.TemporaryDirectory(prefix="peers-") as tmp:
        folder = Path(tmp)
        make_data(folder, steps, kind, size)
        server = ServerProcess(steps, kind)
        log = folder / "workers.log"
        workers = [
            Worker(
                name,
                server,
                folder,
                steps,
                concurrent,
                log,
                profile=f"{profile}.{name.replace(' ', '_')}.prof" if profile else "",
            )
            for name in names
        ]
        try:
            for each in workers:  # one at a time: their warm-ups would fight for the cores
                assert each.expect().strip() == "ready"
            samples: dict[str, list[float]] = {name: [] for name in names}
            for round_ in range(rounds):
                shift = round_ % len(workers)
                for each in workers[shift:] + workers[:shift]:
                    spent = each.run()
                    samples[each.name].append(spent["user"] + spent["system"])
        finally:
            for each in workers:
                each.close()
            server.close()
    return samples


def per_step_table(samples: dict[str, list[float]], steps: int, fastest: str) -> None:
    rounds = len(next(iter(samples.values())))
    print(
        f"{'loop':<34} {'records durably':<18} {'ms/step':>8}  "
        f"{'x ' + fastest + ' (95% CI)':<38} {'x bare litellm (95% CI)':<26}"
    )
    for name in sorted(samples, key=lambda n: statistics.median(samples[n])):
        values = samples[name]
        ms = statistics.median(values) / steps * 1000
        cells = []
        for other in (fastest, BARE):
            if other in samples:
                ratio, (low, high) = ratio_of_medians(values, samples[other])
                cells.append(f"{ratio:.2f} ({low:.2f}..{high:.2f})")
            else:
                cells.append("-")
        print(f"{name:<34} {DURABLE[name]:<18} {ms:>8.2f}  {cells[0]:<38} {cells[1]:<26}")
    print(f"({rounds} interleaved rounds, {steps} steps a run; CPU = getrusage user + system)")


def scenario_steps(rounds: int, profile: str) -> None:
    steps = 20
    print(f"\n== {steps}-step tool conversation: CPU per step (ms), median of {rounds} rounds")
    names = [name for name, _, _ in VARIANTS]
    samples = interleaved(names, steps, "small", 0, rounds, profile=profile)
    in_memory = [n for n in names if DURABLE[n] == "no"]
    fastest = min(in_memory, key=lambda n: statistics.median(samples[n]))
    per_step_table(samples, steps, fastest)
    ratio, interval = ratio_of_medians(samples[AGENTRUN], samples[fastest])
    print(
        f"target: agentrun at most 0.8x the fastest in-memory peer ({fastest}): "
        f"{ratio:.2f} (95% CI {interval[0]:.2f}..{interval[1]:.2f}): "
        f"{verdict(interval, 0.8, rounds)}"
    )
    frameworks = [n for n in in_memory if n not in (RAW, BARE)]
    best = min(frameworks, key=lambda n: statistics.median(samples[n]))
    ratio, interval = ratio_of_medians(samples[AGENTRUN], samples[best])
    print(
        f"(for comparison, against the fastest in-memory framework, {best}: {ratio:.2f}, "
        f"95% CI {interval[0]:.2f}..{interval[1]:.2f})"
    )


def scenario_large(rounds: int, profile: str) -> None:
    steps = 80
    print(f"\n== {steps} steps x 30 KB tool results: CPU per step (ms), median of {rounds} rounds")
    names = [RAW, BARE, AGENTRUN]
    samples = interleaved(names, steps, "large", 30 * 1024, rounds, profile=profile)
    per_step_table(samples, steps, RAW)
    ratio, interval = ratio_of_medians(samples[AGENTRUN], samples[RAW])
    print(
        f"target: agentrun at most 1.1x the raw SDK loop: {ratio:.2f} "
        f"(95% CI {interval[0]:.2f}..{interval[1]:.2f}): {verdict(interval, 1.1, rounds)}"
    )


def scenario_concurrent(rounds: int, count: int, profile: str) -> None:
    steps = 10
    print(f"\n== {count} concurrent {steps}-step runs in one process: CPU seconds per batch")
    names = [name for name, _, concurrent in VARIANTS if concurrent]
    samples = interleaved(names, steps, "small", 0, rounds, concurrent=count, profile=profile)
    peers = [n for n in names if n != AGENTRUN]
    fastest = min(peers, key=lambda n: statistics.median(samples[n]))
    print(f"{'loop':<34} {'records durably':<18} {'CPU s':>7}  {'agentrun / it (95% CI)':<24}")
    for name in sorted(names, key=lambda n: statistics.median(samples[n])):
        ratio, (low, high) = ratio_of_medians(samples[AGENTRUN], samples[name])
        print(
            f"{name:<34} {DURABLE[name]:<18} {statistics.median(samples[name]):>7.2f}  "
            f"{ratio:.2f} ({low:.2f}..{high:.2f})"
        )
    ratio, interval = ratio_of_medians(samples[AGENTRUN], samples[fastest])
    print(
        f"target: agentrun's CPU at most the fastest peer's ({fastest}): {ratio:.2f}x "
        f"(95% CI {interval[0]:.2f}..{interval[1]:.2f}): {verdict(interval, 1.0, rounds, fewest=3)}"
    )
    print(f"({rounds} interleaved rounds; smolagents is synchronous and left out)")


COLD_SCRIPTS = {
    "raw openai SDK": """
import json, os, pathlib
from openai import OpenAI
client = OpenAI(max_retries=0)
tools = [json.loads(os.environ["BENCH_TOOL"])]
messages = [{"role": "user", "content": os.environ["BENCH_TASK"]}]
reply = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=tools)
print(reply.choices[0].message.content)
""",
    "smolagents": """
import os, pathlib
from smolagents import OpenAIServerModel, ToolCallingAgent, tool

@tool
def read_file(path: str) -> str:
    \"\"\"Read a text file and return its contents.

    Args:
        path: The file's path.
    \"\"\"
    return pathlib.Path(path).read_text()

model = OpenAIServerModel(model_id="gpt-4o-mini", api_base=os.environ["OPENAI_BASE_URL"],
                          api_key=os.environ["OPENAI_API_KEY"])
print(ToolCallingAgent(tools=[read_file], model=model, verbosity_level=0).run(os.environ["BENCH_TASK"]))
""",
    "pydantic-ai": """
import os, pathlib
from pydantic_ai import Agent

def read_file(path: str) -> str:
    \"\"\"Read a text file and return its contents.

    Args:
        path: The file's path.
    \"\"\"
    return pathlib.Path(path).read_text()

print(Agent("openai-chat:gpt-4o-mini", tools=[read_file]).run_sync(os.environ["BENCH_TASK"]).output)
""",
}

COLD_SPEC = f"""version: 1
name: cold
model: openai/gpt-4o-mini
goal: {TASK}
tools:
  read_file: {{paths: [data]}}
"""


def scenario_cold(runs: int) -> None:
    import compileall

    import runner

    print(f"\n== cold start: process start to the first model request (s), median of {runs}")
    # As bench/startup.py: the checkout's bytecode compiled, as pip install does.
    compileall.compile_dir(Path(runner.__file__).parent, quiet=1)
    agentrun = str(Path(sys.executable).parent / "agentrun")
    with tempfile.TemporaryDirectory(prefix="peers-cold-") as tmp:
        folder = Path(tmp)
        make_data(folder, 1, "small", 0)
        (folder / "spec.yaml").write_text(COLD_SPEC)
        server = ServerProcess(1, "small")
        commands = {AGENTRUN + " run spec.yaml": [agentrun, "run", str(folder / "spec.yaml")]}
        for name, code in COLD_SCRIPTS.items():
            script = folder / f"cold_{name.split()[0].replace('-', '_')}.py"
            script.write_text(code)
            commands[name] = [sys.executable, str(script)]
        first: dict[str, list[float]] = {name: [] for name in commands}
        exit_after: list[float] = []
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        total: list[float] = []
        try:
            for number in range(runs):
                order = list(commands.items())
                shift = number % len(order)
                for name, argv in order[shift:] + order[:shift]:
                    home = folder / f"home-{number}"
                    env = {
                        **os.environ,
                        "AGENTRUN_HOME": str(home),
                        "OPENAI_BASE_URL": server.api_base,
                        "OPENAI_API_KEY": API_KEY,
                        "BENCH_TASK": TASK,
                        "BENCH_TOOL": json.dumps(TOOL_SCHEMA),
                    }
                    env.pop("LITELLM_LOCAL_MODEL_COST_MAP", None)
                    server.first_request()  # forget any earlier arrival
                    children = resource.getrusage(resource.RUSAGE_CHILDREN)
                    started = time.time()
                    result = subprocess.run(
                        argv, cwd=folder, env=env, capture_output=True, text=True, check=False
                    )
                    exited = time.time()
                    after = resource.getrusage(resource.RUSAGE_CHILDREN)
                    cpu[name].append(
                        after.ru_utime - children.ru_utime + after.ru_stime - children.ru_stime
                    )
                    arrived = server.first_request()
                    if result.returncode or arrived is None:
                        raise SystemExit(
                            f"{name} failed:\n{result.stdout}\n{result.stderr[-3000:]}"
                        )
                    first[name].append(arrived - started)
                    if name.startswith(AGENTRUN):
                        exit_after.append(exited - last_record(home))
                        total.append(exited - started)
        finally:
            server.close()
    smol = first["smolagents"]
    print(
        f"{'command':<26} {'to first request s':>19} {'min':>6} {'max':>6} "
        f"{'whole process CPU s':>20}"
    )
    for name, values in sorted(first.items(), key=lambda item: statistics.median(item[1])):
        print(
            f"{name:<26} {statistics.median(values):>19.3f} {min(values):>6.3f} "
            f"{max(values):>6.3f} {statistics.median(cpu[name]):>20.3f}"
        )
    print(
        "(whole process CPU: user + system of the process, start to exit, median; "
        "unlike the wall time it does not grow with the machine's other load)"
    )
    ours = first[AGENTRUN + " run spec.yaml"]
    interval = bootstrap(lambda rounds: statistics.median(ours[i] for i in rounds), runs)
    print(
        f"target: agentrun run to the first request at most 1.3 s: {statistics.median(ours):.3f} s "
        f"(95% CI {interval[0]:.3f}..{interval[1]:.3f}): {verdict(interval, 1.3, runs)}"
    )
    ratio, interval = ratio_of_medians(ours, smol)
    print(
        f"target: at most 1.1x smolagents': {ratio:.2f} (95% CI {interval[0]:.2f}..{interval[1]:.2f}): "
        f"{verdict(interval, 1.1, runs)}"
    )
    interval = bootstrap(lambda rounds: statistics.median(exit_after[i] for i in rounds), runs)
    print(
        f"target: from the run's last record to process exit under 0.1 s: "
        f"{statistics.median(exit_after):.3f} s (95% CI {interval[0]:.3f}..{interval[1]:.3f}): "
        f"{verdict(interval, 0.1, runs)}; the whole agentrun run: {statistics.median(total):.3f} s"
    )


def last_record(home: Path) -> float:
    """When the only run in ``home``'s store ended (``time.time()`` seconds)."""
    from runner.store import RunStore

    store = RunStore(home / "runs.db")
    try:
        row = store.runs()[0]
    finally:
        store.close()
    assert row.ended_at is not None
    return datetime.fromisoformat(row.ended_at).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scenario",
        nargs="+",
        choices=["steps", "large", "cold", "concurrent"],
        default=["steps", "large", "cold", "concurrent"],
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="A smoke run of about 4 minutes, too short for verdicts.",
    )
    parser.add_argument("--rounds", type=int, help="Rounds of the 20-step scenario (30).")
    parser.add_argument("--large-rounds", type=int, help="Rounds of the 80-step scenario (10).")
    parser.add_argument("--cold-runs", type=int, help="Cold starts of each command (10).")
    parser.add_argument("--concurrent-rounds", type=int, help="Batches of each variant (3).")
    parser.add_argument("--concurrent-runs", type=int, help="Runs in one batch (100).")
    parser.add_argument(
        "--profile", default="", help="Write each worker's cProfile stats to PREFIX.<variant>.prof"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--api-base", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--concurrent", type=int, default=1, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker:
        worker(options)
        return
    if not inside_environment():
        python = ensure_environment()
        os.execv(str(python), [str(python), __file__, *sys.argv[1:]])
    quick = options.quick
    defaults = (3, 1, 2, 1, 10) if quick else (30, 10, 10, 3, 100)
    rounds, large, cold, batches, count = (
        given if given is not None else default
        for given, default in zip(
            (
                options.rounds,
                options.large_rounds,
                options.cold_runs,
                options.concurrent_rounds,
                options.concurrent_runs,
            ),
            defaults,
            strict=True,
        )
    )
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cores; peers from {REQUIREMENTS.name}"
    )
    try:
        if "steps" in options.scenario:
            scenario_steps(rounds, options.profile)
        if "large" in options.scenario:
            scenario_large(large, options.profile)
        if "cold" in options.scenario:
            scenario_cold(cold)
        if "concurrent" in options.scenario:
            scenario_concurrent(batches, count, options.profile)
    finally:
        stop_children()


if __name__ == "__main__":
    main()
