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
import json
import threading
from collections.abc import Iterator
from typing import Any

from ..errors import ToolArgumentError


class Tool:
    """Base class of every tool. Subclasses set the attributes and implement :meth:`run`.

    Attributes:
        name: the name the model calls.
        description: what it does, for the model.
        parameters: JSON Schema (draft 2020-12) of the arguments object.
        risk: ``low``, ``medium`` or ``high`` (the spec's ``risk`` overrides it).
        source: ``builtin``, ``function`` or ``mcp:SERVER``.
    """

    name: str = ""
    description: str = ""
    parameters: dict[str, Any] = {"type": "object", "properties": {}}  # noqa: RUF012
    risk: str = "high"
    source: str = "builtin"

    def run(self, arguments: dict[str, Any]) -> str:
        """Execute with schema-valid ``arguments``; the result text for the model.

        Raises:
            ToolError: a failure the model should hear about.
        """
        raise NotImplementedError

    async def call(self, arguments: dict[str, Any]) -> str:
        """Execute :meth:`run` in its own daemon thread without blocking the event loop.

        Not ``asyncio.to_thread``: a tool stuck in a blocking call would keep the default
        executor, and so the process, from ever shutting down. A daemon thread that
        outlives its timeout is abandoned; its late result is dropped.
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

        threading.Thread(target=work, name=f"tool-{self.name}", daemon=True).start()
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
        """Parse the model's raw JSON arguments and check them against the tool's schema.

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
        return arguments
