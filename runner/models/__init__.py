"""Models: the protocol the loop talks to, and the models behind it.

The loop talks to a :class:`Model`: ``complete(messages, tools, tool_choice)`` returns a
:class:`ModelReply` with the text, the tool calls (arguments as the raw JSON text the model
produced, parsed later by the loop so a malformed call can be sent back for correction),
token usage and cost in USD when known. Its optional abilities (``prepare``, token counting,
the output bound and prices for budget estimates) have defaults in the protocol.

- :mod:`runner.models.base`: the protocol, replies, usage, :func:`cost_usd`; no provider
  library;
- :mod:`runner.models.litellm_adapter`: :class:`LiteLLMModel`, any provider through
  litellm (imported on first use), retries and fallbacks;
- :mod:`runner.models.openai_direct`: OpenAI-compatible endpoints through the openai SDK,
  without litellm;
- :mod:`runner.models.tokens`: prompt tokens for the budget's estimate, counted by litellm
  or, on the direct path, by tiktoken without litellm (the same counts);
- :mod:`runner.models.local`: the embedded SmolLM2 model on llama.cpp;
- :mod:`runner.models.server`: the loopback OpenAI-compatible server the local model and
  the test suite's fake provider share;
- :mod:`runner.models.cassette`: record a model's traffic to a YAML cassette, and replay
  one with no network, failing at the first request that differs (``--record``/``--replay``);
  :mod:`runner.models.cassette_file`: the cassette file's data, YAML and checked reading.

Prices come from :mod:`runner.spec.prices` (litellm's bundled table, read without litellm).
"""

from ..spec.prices import price_for
from .base import Model, ModelReply, ToolCallRequest, Usage, cost_usd
from .litellm_adapter import (
    DEFAULT_MAX_OUTPUT_TOKENS,
    RETRY_ATTEMPTS,
    RETRY_INITIAL_S,
    RETRY_MAX_S,
    TRANSIENT_ERRORS,
    LiteLLMModel,
    import_litellm,
    is_transient,
    reply_from_openai,
)

__all__ = [
    "DEFAULT_MAX_OUTPUT_TOKENS",
    "RETRY_ATTEMPTS",
    "RETRY_INITIAL_S",
    "RETRY_MAX_S",
    "TRANSIENT_ERRORS",
    "LiteLLMModel",
    "Model",
    "ModelReply",
    "ToolCallRequest",
    "Usage",
    "cost_usd",
    "import_litellm",
    "is_transient",
    "price_for",
    "reply_from_openai",
]
