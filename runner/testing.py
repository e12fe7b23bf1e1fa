"""Test doubles, shipped for agentrun's tests and its users' tests.

- :class:`ScriptedModel`: a :class:`~runner.models.Model` that plays a queue of replies and
  tool calls and records what it was sent. No network, no litellm. :class:`FunctionModel`
  computes each reply from the conversation instead.
- :class:`FakeOpenAIServer`: an OpenAI-compatible HTTP server on loopback that plays the
  same kind of script, plus HTTP errors and delays, so litellm's real path (HTTP, retries,
  timeouts, malformed tool calls) is exercised. Point a spec's model at it with
  ``id: openai/fake`` and ``api_base: server.api_base``.

Script items are built with :func:`text`, :func:`call`, :func:`calls`, :func:`http_error`,
:func:`slow` and :func:`cut_off`. (The idea follows pydantic-ai's
``TestModel``/``FunctionModel`` and simonw/llm's ``MockModel.enqueue``.)
"""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import ModelError
from .models import Model, ModelReply, ToolCallRequest, Usage, cost_usd
from .models.server import BackendHTTPError, OpenAIServer
from .spec import Pricing


@dataclass(frozen=True)
class Scripted:
    """One scripted model turn: text, tool calls, an HTTP error, and a delay before it.

    ``tool_calls`` holds ``(name, raw JSON arguments)`` pairs; ``status`` non-zero makes the
    fake server answer with that HTTP status instead. ``finish_reason`` overrides the
    default one (``tool_calls`` with calls, else ``stop``), for example ``length``.
    """

    content: str | None = None
    tool_calls: tuple[tuple[str, str], ...] = ()
    status: int = 0
    delay_s: float = 0.0
    usage: Usage = field(default_factory=lambda: Usage(10, 5))
    finish_reason: str = ""


def _raw(arguments: dict[str, Any] | str) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


def text(content: str, usage: Usage | None = None) -> Scripted:
    """A reply with text and no tool calls (the model's final answer)."""
    return Scripted(content=content, usage=usage or Usage(10, 5))


def call(
    name: str, arguments: dict[str, Any] | str | None = None, content: str | None = None
) -> Scripted:
    """A reply with one tool call; a ``str`` for ``arguments`` is sent raw (may be bad JSON)."""
    return Scripted(content=content, tool_calls=((name, _raw(arguments or {})),))


def calls(*pairs: tuple[str, dict[str, Any] | str]) -> Scripted:
    """A reply with several tool calls."""
    return Scripted(tool_calls=tuple((name, _raw(args)) for name, args in pairs))


def http_error(status: int) -> Scripted:
    """The fake server answers this turn with HTTP ``status`` (for example 429 or 500)."""
    return Scripted(status=status)


def slow(item: Scripted, seconds: float) -> Scripted:
    """``item``, answered after ``seconds`` (for timeout tests)."""
    return replace(item, delay_s=seconds)


def cut_off(item: Scripted) -> Scripted:
    """``item`` with finish reason ``length``: the reply reached its ``max_tokens``."""
    return replace(item, finish_reason="length")


class ScriptExhausted(ModelError):
    """The script ran out of replies: the loop called the model more often than expected."""


class ScriptedModel(Model):
    """A model that answers from a script and records every request.

    Attributes:
        requests: ``(messages, tools)`` of each call, deep-copied at call time.
        repeat_last: when True, the last item answers every further call (a model that
            never stops).
        pricing: when given, each reply's cost is its scripted usage at this price, and
            :meth:`count_prompt_tokens` estimates 4 characters per token.
        max_output_tokens: the output bound the loop's budget estimate assumes.
    """

    def __init__(
        self,
        script: list[Scripted],
        name: str = "scripted",
        repeat_last: bool = False,
        pricing: Pricing | None = None,
        max_output_tokens: int = 100,
    ) -> None:
        self.script = deque(script)
        self.name = name
        self.repeat_last = repeat_last
        self.pricing = pricing
        self._max_output_tokens = max_output_tokens
        self.requests: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = []

    @property
    def max_output_tokens(self) -> int:
        """The output bound given to the constructor."""
        return self._max_output_tokens

    def count_prompt_tokens(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
    ) -> int:
        """A rough prompt size: 4 characters of JSON per token."""
        return len(json.dumps(messages)) // 4 + len(json.dumps(tools)) // 4

    def _next(self) -> Scripted:
        if not self.script:
            raise ScriptExhausted(
                f"the scripted model has no reply left (call {len(self.requests)})"
            )
        if self.repeat_last and len(self.script) == 1:
            return self.script[0]
        return self.script.popleft()

    async def complete(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        tool_choice: str | dict[str, Any] | None = None,
    ) -> ModelReply:
        """The next scripted reply."""
        self.requests.append((copy.deepcopy(messages), copy.deepcopy(tools)))
        item = self._next()
        if item.status:
            raise ModelError(f"scripted HTTP {item.status}")
        return ModelReply(
            content=item.content,
            tool_calls=[
                ToolCallRequest(f"call_{uuid.uuid4().hex[:16]}", name, arguments)
                for name, arguments in item.tool_calls
            ],
            usage=item.usage,
            cost_usd=cost_usd(self.pricing, item.usage),
            model=self.name,
            finish_reason=item.finish_reason or ("tool_calls" if item.tool_calls else "stop"),
        )


class FakeOpenAIServer:
    """An OpenAI-compatible server on ``127.0.0.1`` that plays a script over real HTTP.

    Use as a context manager. ``requests`` records every request body received.
    ``models`` gives a separate ``(script, repeat_last)`` per requested model name (the
    part after ``openai/``), for fallback tests.
    """

    def __init__(
        self,
        script: list[Scripted],
        repeat_last: bool = False,
        models: dict[str, tuple[list[Scripted], bool]] | None = None,
    ) -> None:
        self.script = deque(script)
        self.repeat_last = repeat_last
        self.models = {
            name: (deque(items), repeat) for name, (items, repeat) in (models or {}).items()
        }
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = OpenAIServer(self._answer, model_name="fake")

    @property
    def api_base(self) -> str:
        """``http://127.0.0.1:PORT/v1``."""
        return self._server.api_base

    def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.requests.append(request)
            script, repeat = self.models.get(
                request.get("model", ""), (self.script, self.repeat_last)
            )
            if not script:
                raise BackendHTTPError(500, "the fake server's script is exhausted")
            item = script[0] if repeat and len(script) == 1 else script.popleft()
        if item.delay_s:
            time.sleep(item.delay_s)
        if item.status:
            headers = {"Retry-After": "0"} if item.status == 429 else {}
            raise BackendHTTPError(item.status, f"scripted HTTP {item.status}", headers)
        message: dict[str, Any] = {"role": "assistant", "content": item.content}
        if item.tool_calls:
            message["tool_calls"] = [
                {
                    "id": f"call_{uuid.uuid4().hex[:12]}",
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
                for name, arguments in item.tool_calls
            ]
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", "fake"),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": item.finish_reason
                    or ("tool_calls" if item.tool_calls else "stop"),
                }
            ],
            "usage": {
                "prompt_tokens": item.usage.input_tokens,
                "completion_tokens": item.usage.output_tokens,
                "total_tokens": item.usage.total,
            },
        }

    def __enter__(self) -> FakeOpenAIServer:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()


class FunctionModel(ScriptedModel):
    """A model whose reply is computed from the conversation by ``respond(messages, tools)``.

    Stateless replies make a run reproducible across processes: a resumed run asks again
    for the step it lost and gets the same answer.
    """

    def __init__(
        self,
        respond: Callable[[list[dict[str, Any]], list[dict[str, Any]]], Scripted],
        name: str = "function",
    ) -> None:
        super().__init__([], name=name)
        self.respond = respond

    async def complete(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        tool_choice: str | dict[str, Any] | None = None,
    ) -> ModelReply:
        """The reply ``respond`` computes for this conversation."""
        self.script.append(self.respond(messages, tools))
        return await super().complete(messages, tools, tool_choice)
