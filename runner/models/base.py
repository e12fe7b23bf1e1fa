"""The model protocol and what a model call returns: replies, tool calls, usage and cost.

Everything here is plain data and arithmetic: no provider library is imported, so the loop,
the budgets and the test doubles use it without paying for litellm.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from ..spec import Pricing


@dataclass(frozen=True)
class ToolCallRequest:
    """A tool call as the model asked for it.

    Attributes:
        id: the provider's call id, echoed in the tool result.
        name: the tool name the model used (may be one that does not exist).
        arguments: the raw JSON text of the arguments (may be malformed).
    """

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Usage:
    """Tokens used by one model call."""

    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class ModelReply:
    """One model response.

    Attributes:
        content: the text of the answer, or None.
        tool_calls: the tool calls asked for, in order.
        usage: tokens of this call.
        cost_usd: USD cost of this call, or None when the price is unknown.
        model: the model id that answered (a fallback, perhaps).
        finish_reason: the provider's finish reason (``stop``, ``tool_calls``, ``length``).
        failed_attempts: models that failed before this one answered (``fallbacks`` used).
    """

    content: str | None
    tool_calls: list[ToolCallRequest] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = None
    model: str = ""
    finish_reason: str = ""
    failed_attempts: tuple[str, ...] = ()

    def as_message(self) -> dict[str, Any]:
        """The assistant message to append to the conversation (OpenAI format).

        A message with tool calls and no text has ``"content": null``, as the OpenAI chat API
        returns it, not ``""``: the openai SDK walks an empty string through its content
        union on every later call (issue 19 measured +28% of its request transform), and
        providers reached through litellm convert null as they convert a missing text.
        """
        content = self.content or (None if self.tool_calls else "")
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if self.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in self.tool_calls
            ]
        return message


class Model(Protocol):
    """What the loop needs from a model.

    One ability every model has (:meth:`complete`), and optional ones with defaults that a
    model overrides when it has them. A model class subclasses this protocol explicitly to
    inherit the defaults (the loop calls every ability directly; nothing is probed).

    Attributes:
        name: the model id recorded with each call.
        pricing: USD per million tokens of the model itself, or None when unknown.
        estimate_pricing: the price a budget estimate assumes: the dearest of the model and
            its fallbacks (whichever answers, the cap holds); None to use ``pricing``.
    """

    name: str
    pricing: Pricing | None = None
    estimate_pricing: Pricing | None = None

    async def complete(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        tool_choice: str | dict[str, Any] | None = None,
    ) -> ModelReply:
        """One model call. Raises :class:`~runner.errors.ModelError` when the provider fails."""
        ...

    def prepare(self) -> None:
        """Get ready before the first call (import a client library, start a local server).

        Raises:
            SetupError: something the model needs is missing; the run ends before it starts.
        """
        return None

    @property
    def prepare_is_quick(self) -> bool:
        """Whether :meth:`prepare` returns at once (the loop then skips the thread)."""
        return True

    async def aclose(self) -> None:
        """Release what the calls opened (HTTP connections), in the loop that opened them.

        The loop calls it when a run ends, on every exit path; the model may be used again
        after (it opens afresh).
        """
        return None

    @property
    def max_output_tokens(self) -> int:
        """Most output tokens one call may produce, for budget estimates (0: unknown)."""
        return 0

    def count_prompt_tokens(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
    ) -> int:
        """Tokens the next call's prompt holds, for budget estimates (0: not counted)."""
        return 0


def cost_usd(pricing: Pricing | None, usage: Usage) -> float | None:
    """USD cost of ``usage`` at ``pricing``, or None when the price is unknown."""
    if pricing is None:
        return None
    return (
        usage.input_tokens * pricing.input_per_mtok + usage.output_tokens * pricing.output_per_mtok
    ) / 1e6
