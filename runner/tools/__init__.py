"""The tool protocol and registry.

A :class:`Tool` has a name, a description, a JSON Schema for its arguments, a risk level
(``low`` reads, ``medium`` undoable writes, ``high`` irreversible) and a source (``builtin``,
``function``, ``mcp:SERVER``). The :class:`ToolRegistry` holds exactly the tools a spec
declares: it is what the model is offered, and a call to any other name is refused.
Arguments are checked against the tool's schema before the tool runs
(:class:`~runner.errors.ToolArgumentError` otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import os
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import ToolArgumentError
from ..spec.vocabulary import Risk


class DaemonThreads:
    """Reusable daemon threads for blocking work (tool calls), each job on an idle thread.

    Starting a thread for every tool call cost about 0.9 ms of CPU a step in the 20-step
    conversation of ``bench/overhead.py`` (measured against the same run with the tool called
    inline: thread creation, teardown and the scheduling around them); a warm thread costs
    one queue hand-off. Unlike :class:`concurrent.futures.ThreadPoolExecutor`,
    the threads are daemons, so a job stuck in a blocking call never keeps the process from
    exiting, and there is no bound: when no thread is idle (every one busy, or stuck in an
    abandoned call) a new one starts, so a hung job never delays the next. A thread idle for
    ``idle_s`` seconds exits.
    """

    def __init__(self, name: str, idle_s: float = 60.0) -> None:
        self.name = name
        self.idle_s = idle_s
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # idle threads not yet promised a job
        self._started = 0
        # A forked child has none of the parent's threads: it starts from an empty pool.
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._jobs = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job()`` on an idle thread, or on a new one when none is idle."""
        with self._lock:
            if self._idle:
                self._idle -= 1  # that thread will take this job from the queue
                spawn = ""
            else:
                self._started += 1
                spawn = f"{self.name}-{self._started}"
        self._jobs.put(job)
        if spawn:
            threading.Thread(target=self._serve, name=spawn, daemon=True).start()

    def idle_threads(self) -> int:
        """How many threads wait for work now."""
        with self._lock:
            return self._idle

    def _serve(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=self.idle_s)
            except queue.Empty:
                with self._lock:
                    if self._idle:  # nobody was promised this thread: leave
                        self._idle -= 1
                        return
                continue  # a job is on its way to this thread
            with contextlib.suppress(Exception):  # jobs report their own errors
                job()
            with self._lock:
                self._idle += 1


#: The threads :meth:`Tool.call` runs tools on.
TOOL_THREADS = DaemonThreads("tool")


class Tool:
    """Base class of every tool. Subclasses set the attributes and implement :meth:`run`.

    Attributes:
        name: the name the model calls.
        description: what it does, for the model.
        parameters: JSON Schema (draft 2020-12) of the arguments object.
        risk: how much harm a call can do (the spec's ``risk`` overrides it).
        source: ``builtin``, ``function`` or ``mcp:SERVER``.
        rule_name: the name spec rules use for it (``SERVER.TOOL`` for an MCP tool, whose
            model-facing name is ``SERVER__TOOL``); ``name`` by default.
    """

    name: str = ""
    description: str = ""
    parameters: dict[str, Any] = {"type": "object", "properties": {}}  # noqa: RUF012
    risk: Risk = Risk.HIGH
    source: str = "builtin"

    @property
    def rule_name(self) -> str:
        """The name spec rules match (see the class attributes)."""
        return self.name

    def risk_for(self, arguments: dict[str, Any]) -> Risk:
        """The risk of one call with ``arguments``: :attr:`risk` unless a tool overrides it.

        ``http_request`` overrides it: it rates a call by its method.
        """
        return self.risk

    def canonical_arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """``arguments`` with every path and URL in its one canonical form.

        :meth:`ToolRegistry.parse_arguments` calls it once per call, after the schema check,
        and the loop hands what it returns to both the policy and :meth:`call`, so rules
        and confinement look at the very text the tool acts on (:mod:`runner.canonical`).
        A tool that takes paths or URLs overrides it; the default, for tools that take
        neither, returns ``arguments`` unchanged.

        Args:
            arguments: schema-valid arguments, as the model sent them.

        Returns:
            A new dictionary (or ``arguments`` itself when nothing changes). A value the
            tool refuses on its text alone (a path with ``..``, a URL with a password) is
            left as written; the tool refuses it when it runs. It never raises.
        """
        return arguments

    def refusal(self, arguments: dict[str, Any]) -> str | None:
        """Why the tool would refuse a call with ``arguments`` when run, or None.

        The tool's own limits (a path outside its declared roots, a command not on its
        list, a host not allowed), checked without acting: nothing is read, written, run
        or sent. Autonomy ``suggest`` marks a proposed call that would be refused. The
        default, for tools without such limits, is None.
        """
        return None

    def run(self, arguments: dict[str, Any]) -> str:
        """Execute with schema-valid ``arguments``; the result text for the model.

        Raises:
            ToolError: a failure the model should hear about.
        """
        raise NotImplementedError

    async def call(self, arguments: dict[str, Any]) -> str:
        """Execute :meth:`run` on a daemon thread without blocking the event loop.

        Not ``asyncio.to_thread``: a tool stuck in a blocking call would keep the default
        executor, and so the process, from ever shutting down. The threads come from
        :data:`TOOL_THREADS`, daemon threads reused from call to call; one that outlives its
        call's timeout is abandoned (another takes the next call) and its late result is
        dropped.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()

        def settle(result: str | None, error: BaseException | None) -> None:
            if future.done():  # timed out or cancelled meanwhile
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result or "")

        def work() -> None:
            try:
                result, error = self.run(arguments), None
            except BaseException as exc:  # handed to the awaiting coroutine
                result, error = None, exc
            # RuntimeError: the event loop is closed, nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, result, error)

        # The thread runs in this task's context: the run's sandbox and the call it serves.
        context = contextvars.copy_context()
        TOOL_THREADS.submit(lambda: context.run(work))
        return await future

    def openai_schema(self) -> dict[str, Any]:
        """The tool as an OpenAI ``tools`` entry."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


class ToolRegistry:
    """The tools one agent may use, by name."""

    def __init__(self, tools: list[Tool]) -> None:
        self._tools = {tool.name: tool for tool in tools}
        self._validators: dict[str, Any] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def get(self, name: str) -> Tool | None:
        """The tool called ``name``, or None when the spec does not declare it."""
        return self._tools.get(name)

    def names(self) -> list[str]:
        """Tool names in declaration order."""
        return list(self._tools)

    def openai_schemas(self) -> list[dict[str, Any]]:
        """Every tool as an OpenAI ``tools`` entry (what the model is offered)."""
        return [tool.openai_schema() for tool in self._tools.values()]

    def parse_arguments(self, tool: Tool, raw: str) -> dict[str, Any]:
        """Parse the model's raw JSON arguments, check them, and put them in canonical form.

        Returns:
            The arguments after :meth:`Tool.canonical_arguments`: what the policy decides
            on and what the tool is called with.

        Raises:
            ToolArgumentError: not JSON, not an object, or not valid for the schema; the
                message says what to send instead.
        """
        from jsonschema import Draft202012Validator

        text = raw.strip() or "{}"
        try:
            arguments = json.loads(text)
        except json.JSONDecodeError as error:
            raise ToolArgumentError(
                f"the arguments of {tool.name} are not valid JSON ({error.msg} at character "
                f"{error.pos}); send the call again with a JSON object matching its schema"
            ) from None
        if not isinstance(arguments, dict):
            raise ToolArgumentError(
                f"the arguments of {tool.name} must be a JSON object, "
                f"not {type(arguments).__name__}"
            )
        validator = self._validators.get(tool.name)
        if validator is None:
            validator = self._validators[tool.name] = Draft202012Validator(tool.parameters)
        problems = sorted(validator.iter_errors(arguments), key=lambda e: list(e.path))
        if problems:
            details = "; ".join(
                (f"{'.'.join(map(str, p.path))}: " if p.path else "") + p.message
                for p in problems[:5]
            )
            raise ToolArgumentError(f"invalid arguments for {tool.name}: {details}")
        return tool.canonical_arguments(arguments)
