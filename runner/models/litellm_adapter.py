"""The model adapter: OpenAI-compatible endpoints directly, every other provider through litellm.

``openai/*`` and the embedded ``local/*`` model go through the openai SDK's client
(:mod:`runner.models.openai_direct`); any other provider through ``litellm.acompletion``.
Retries with backoff, fallbacks to other models, error classification, usage and cost are
the adapter's own, the same for both paths (tenacity for the retries).

litellm takes seconds to import and fetches its price list from the network on import
unless ``LITELLM_LOCAL_MODEL_COST_MAP=True`` is set first; it is therefore imported only
inside :func:`import_litellm`, never at module import. ``local/NAME`` ids are routed to the
embedded model's loopback server (:mod:`runner.models.local`).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from ..errors import ModelError, SetupError
from ..spec import ModelSpec, Pricing
from ..spec.prices import LOCAL_PREFIX, price_for, price_table
from .base import Model, ModelReply, ToolCallRequest, Usage, cost_usd
from .openai_direct import (
    BASE_URL_VARIABLES,
    DIRECT_PROVIDERS,
    OPENAI_API_BASE,
    DirectClients,
    is_direct,
)
from .tokens import LONG_TEXT_CHARS as LONG_TEXT_CHARS
from .tokens import SAMPLE_CHARS as SAMPLE_CHARS
from .tokens import SAMPLE_MARGIN as SAMPLE_MARGIN
from .tokens import SAMPLES as SAMPLES
from .tokens import TokenCounter, message_tokens, tiktoken_counter
from .tokens import text_tokens as text_tokens


def import_litellm() -> Any:
    """Import litellm with its network price fetch off and its logging quiet (seconds)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    return litellm


#: Provider errors worth retrying: 429, 5xx, timeouts, connection resets (litellm's names).
TRANSIENT_ERRORS = (
    "RateLimitError",
    "InternalServerError",
    "ServiceUnavailableError",
    "BadGatewayError",
    "APIConnectionError",
    "Timeout",
)
#: Attempts per model (the first call plus retries) before the next fallback is tried.
RETRY_ATTEMPTS = 3
#: Backoff before the first retry, and its cap, in seconds (doubling, with full jitter).
RETRY_INITIAL_S = 0.5
RETRY_MAX_S = 8.0
#: Output tokens assumed for the budget estimate when neither the spec nor litellm's table
#: gives a maximum.
DEFAULT_MAX_OUTPUT_TOKENS = 4096


#: What a provider or its SDK says when it was given no usable key. The OpenAI SDK's
#: "Missing credentials" reaches us as litellm's ``InternalServerError``: it is a
#: configuration error all the same, and retrying it cannot help.
CREDENTIAL_MARKERS = ("missing credentials", "api key", "api_key", "no key is set")
#: litellm's names of a failure to reach the provider at all (DNS, refused, reset).
CONNECTION_MARKERS = ("connection error", "connecterror", "name or service not known")


def is_credentials_error(error: BaseException) -> bool:
    """Whether a litellm exception says the provider had no usable API key (or a wrong one)."""
    if any(cls.__name__ == "AuthenticationError" for cls in type(error).__mro__):
        return True
    text = str(error).lower()
    said = "missing" in text or "must be set" in text  # litellm's / the openai SDK's wording
    return said and any(marker in text for marker in CREDENTIAL_MARKERS)


def is_connection_error(error: BaseException) -> bool:
    """Whether a litellm exception says the provider's endpoint could not be reached."""
    if any(cls.__name__ == "APIConnectionError" for cls in type(error).__mro__):
        return True
    text = str(error).lower()
    return any(marker in text for marker in CONNECTION_MARKERS)


def is_transient(error: BaseException) -> bool:
    """Whether a litellm exception is a provider hiccup worth retrying (429, 5xx, timeout).

    A missing or wrong API key never is, whatever class litellm gave it.
    """
    if is_credentials_error(error):
        return False
    return any(cls.__name__ in TRANSIENT_ERRORS for cls in type(error).__mro__)


class LiteLLMModel(Model):
    """A model reached through ``litellm.acompletion``, with retries and fallbacks.

    Each model (the spec's, then each of ``fallbacks`` in order) gets
    :data:`RETRY_ATTEMPTS` attempts; transient provider errors (:func:`is_transient`) are
    retried with exponential backoff and full jitter (tenacity); any other error, or a
    model out of attempts, moves on to the next fallback. When every model failed,
    :class:`~runner.errors.ModelError` carries each one's last error.

    Args:
        spec: the spec's model section. ``api_key_env`` names the variable read at call
            time; its value is passed to litellm and never stored.
    """

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.name = spec.id
        self.pricing = spec.pricing or price_for(spec.id)
        self.estimate_pricing = _highest(
            [self.pricing, *(price_for(fallback) for fallback in spec.fallbacks)]
        )
        self._routes: dict[str, tuple[str, str | None, str | None]] = {}
        self._token_counts: list[tuple[int, int | None]] = []
        self._tools_tokens: tuple[list[dict[str, Any]], int, int] | None = None
        # The last call's prompt as the provider counted it: (its length in messages, its
        # last message, input plus output tokens reported). See count_prompt_tokens.
        self._anchor: tuple[int, dict[str, Any], int] | None = None
        self._reply_overhead: int | None = None
        self._direct = DirectClients()

    def _resolve(self, model_id: str) -> tuple[str, str | None, str | None]:
        """``(litellm model, api_base, api_key)`` for ``model_id`` (starts a local model)."""
        route = self._routes.get(model_id)
        if route is None:
            api_key: str | None = None
            if self.spec.api_key_env:
                api_key = os.environ.get(self.spec.api_key_env)
                if not api_key:
                    raise SetupError(
                        f"environment variable {self.spec.api_key_env!r} (model.api_key_env) "
                        "is not set"
                    )
            if model_id.startswith(LOCAL_PREFIX):
                from .local import local_api_base

                name = model_id[len(LOCAL_PREFIX) :]
                route = (f"openai/{name}", local_api_base(name), "local")
            elif model_id.split("/", 1)[0] == self.spec.id.split("/", 1)[0]:
                # The primary, or a fallback at the same provider: same endpoint and key.
                route = (model_id, self.spec.api_base, api_key)
            else:
                # A fallback at another provider finds its key the litellm way (its
                # provider's environment variable), never the primary's key or endpoint.
                route = (model_id, None, None)
            self._routes[model_id] = route
        return route

    def prepare(self) -> None:
        """Resolve the primary route now (starts a local model); import the client library.

        litellm is imported only when a model of the spec (the primary or a fallback) is not
        reached directly (:func:`runner.models.openai_direct.is_direct`); else the openai
        SDK is.

        Raises:
            SetupError: a missing extra or key variable.
        """
        self._resolve(self.spec.id)
        if self._needs_litellm():
            import_litellm()
        else:
            import openai  # noqa: F401  (paid here, not in the first call)

    async def aclose(self) -> None:
        """Close the direct path's HTTP connections (litellm keeps its own client cache)."""
        await self._direct.aclose()

    def _needs_litellm(self) -> bool:
        """Whether any model of the spec goes through litellm."""
        return not all(
            is_direct(self._litellm_name(model_id))
            for model_id in (self.spec.id, *self.spec.fallbacks)
        )

    @staticmethod
    def _litellm_name(model_id: str) -> str:
        """The litellm model name of ``model_id`` (``local/NAME`` is served as ``openai/NAME``)."""
        if model_id.startswith(LOCAL_PREFIX):
            return "openai/" + model_id[len(LOCAL_PREFIX) :]
        return model_id

    @property
    def prepare_is_quick(self) -> bool:
        """Whether :meth:`prepare` returns at once.

        True when the client library is imported already (a daemon worker imports it
        before its run) and no local model has to start. The loop then calls it directly
        instead of on a thread (a thread costs a few hundred µs per run).
        """
        if self.spec.id.startswith(LOCAL_PREFIX):
            return False
        return ("litellm" if self._needs_litellm() else "openai") in sys.modules

    @property
    def max_output_tokens(self) -> int:
        """Most output tokens one call may produce.

        From ``params.max_tokens``, else litellm's table, else
        :data:`DEFAULT_MAX_OUTPUT_TOKENS`.
        """
        configured = self.spec.params.get("max_tokens")
        if isinstance(configured, int):
            return configured
        entry = price_table().get(self.spec.id.split("/", 1)[-1], {})
        table = entry.get("max_output_tokens") if isinstance(entry, dict) else None
        return int(table) if isinstance(table, int) else DEFAULT_MAX_OUTPUT_TOKENS

    def count_prompt_tokens(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
    ) -> int:
        """Prompt tokens of the next call with ``messages`` and ``tools``.

        After a call whose usage the provider reported, the conversation up to and including
        that call's reply is taken at the provider's own count: the call's input tokens
        (its messages and tools) plus its output tokens (the reply, which is now the next
        message), plus the few tokens a message costs around its content. Only the messages
        added since are counted locally, by :func:`token_counter_for` the primary model
        (litellm's tokenizer, or tiktoken's without litellm on the direct path: the same
        counts). The provider's count is exact where the local one approximates it, and
        each reply is not tokenized again (``litellm.token_counter`` took 80-160 µs for a
        reply with one tool call, timed with ``timeit`` on the reference machine). Without
        such a call (the first of a run, a provider that reports no usage, a changed
        conversation), everything is counted locally. Messages are append-only within a run,
        so each is counted once and cached by position (keyed by the identity of the dict).
        A long text in a message (a megabyte of tool result) is estimated from samples, high
        rather than low (:func:`runner.models.tokens.message_tokens`).
        """
        model, _, _ = self._resolve(self.spec.id)
        counter = token_counter_for(model)
        anchor = self._anchor
        if (
            anchor is not None
            and len(messages) > anchor[0]
            and messages[anchor[0] - 1] is anchor[1]
            and messages[anchor[0]].get("role") == "assistant"
        ):
            if self._reply_overhead is None:
                empty = [{"role": "assistant", "content": ""}]
                self._reply_overhead = int(counter.token_counter(model=model, messages=empty))
            reply = anchor[2] + self._reply_overhead
            return reply + self._counts(counter, model, messages, start=anchor[0] + 1)
        total = self._counts(counter, model, messages)
        if tools:
            # The loop offers the same list of tools on every call: count it once.
            counted = self._tools_tokens
            if counted is None or counted[0] is not tools or counted[1] != len(tools):
                count = int(counter.token_counter(model=model, text=json.dumps(tools)))
                counted = self._tools_tokens = (tools, len(tools), count)
            total += counted[2]
        return total

    def _counts(
        self, counter: TokenCounter, model: str, messages: list[dict[str, Any]], start: int = 0
    ) -> int:
        """Tokens of ``messages[start:]`` by ``counter`` (:func:`.tokens.message_tokens`).

        Each message is counted once, cached by position (keyed by its identity); the ones
        before ``start`` are not counted now.
        """
        counts = self._token_counts
        if len(counts) > len(messages) or any(
            counts[i][0] != id(messages[i]) for i in range(len(counts))
        ):
            counts.clear()
        while len(counts) < len(messages):
            counts.append((id(messages[len(counts)]), None))
        total = 0
        for position in range(start, len(messages)):
            key, count = counts[position]
            if count is None:
                count = message_tokens(counter, model, messages[position])
                counts[position] = (key, count)
            total += count
        return total

    async def complete(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        tool_choice: str | dict[str, Any] | None = None,
    ) -> ModelReply:
        """One model call, retried and falling back as needed.

        Raises:
            ModelError: every model failed; the message names each one's last error.
            SetupError: a missing extra or key variable.
        """
        failures: list[str] = []
        credentials: list[str] = []
        models = (self.spec.id, *self.spec.fallbacks)
        for model_id in models:
            model, api_base, api_key = self._resolve(model_id)
            kwargs: dict[str, Any] = dict(self.spec.params)
            if tools:
                kwargs["tools"] = tools
                kwargs["tool_choice"] = tool_choice or "auto"
            if api_base:
                kwargs["api_base"] = api_base
            if api_key:
                kwargs["api_key"] = api_key
            if self.spec.timeout:
                kwargs["timeout"] = self.spec.timeout
            kwargs.update(model=model, messages=messages, num_retries=0, max_retries=0)
            try:
                try:
                    # The first attempt is made directly: most calls succeed, and tenacity's
                    # machinery (about 25 µs a call) is then paid only when retrying.
                    acompletion = (
                        self._direct.acompletion
                        if is_direct(model)
                        else import_litellm().acompletion
                    )
                    response: Any = await acompletion(**kwargs)
                except Exception as error:
                    if not is_transient(error):
                        raise
                    response = await _retry(acompletion, error, kwargs)
            except Exception as error:  # litellm maps provider failures to its own exceptions
                if is_credentials_error(error):
                    credentials.append(model_id)
                    failures.append(f"{model_id}: {self._credentials_message(model_id, model)}")
                else:
                    where = _host_note(error, model, api_base)
                    failures.append(
                        f"{model_id}: {type(error).__name__}: {_first_line(error)}{where}"
                    )
                continue
            pricing = self.pricing if model_id == self.spec.id else price_for(model_id)
            reply = reply_from_openai(response, model_id, pricing)
            if reply.usage.input_tokens > 0 and messages:
                self._anchor = (len(messages), messages[-1], reply.usage.total)
            else:
                self._anchor = None
            return reply if not failures else _with_failures(reply, failures)
        if len(credentials) == len(models):
            # Nothing the provider did: the machine lacks a key (a configuration error).
            raise SetupError("; ".join(failures))
        raise ModelError("every model failed: " + "; ".join(failures))

    def _credentials_message(self, model_id: str, model: str) -> str:
        """What to set when the provider of ``model_id`` had no usable API key."""
        same_key = model_id.split("/", 1)[0] == self.spec.id.split("/", 1)[0]
        if same_key and self.spec.api_key_env:
            variables = [self.spec.api_key_env]
        else:
            variables = provider_key_variables(model)
        wanted = " or ".join(repr(v) for v in variables) or "its provider's key variable"
        return (
            f"no usable API key for {model_id!r} (authentication failed, not retried): "
            f"set the environment variable {wanted}, or name the variable holding the key "
            "with model.api_key_env"
        )


def token_counter_for(model: str) -> TokenCounter:
    """What counts prompt tokens for ``model`` (a litellm model name), for budget estimates.

    litellm's ``token_counter`` when ``model`` goes through litellm, or when litellm is
    imported in this process already (nothing to save, and no second copy of the encoding
    in memory); else, on the direct path, :func:`runner.models.tokens.tiktoken_counter`,
    which counts the same without importing litellm.
    """
    if is_direct(model) and "litellm" not in sys.modules:
        return tiktoken_counter()
    litellm: TokenCounter = import_litellm()
    return litellm


def _is_openai_compatible(model: str) -> bool:
    """Whether ``model``'s provider speaks the OpenAI API (``openai/*``), whichever the path."""
    return "/" in model and model.split("/", 1)[0] in DIRECT_PROVIDERS


def provider_key_variables(model: str) -> list[str]:
    """The environment variables the key of ``model``'s provider is read from.

    ``model`` is a litellm model name (``openai/gpt-4o-mini``). ``OPENAI_API_KEY`` for
    ``openai/*`` (the openai SDK's variable, litellm's too), without litellm; for another
    provider, the ones litellm's ``validate_environment`` finds missing (imports litellm),
    empty when litellm does not know.
    """
    if _is_openai_compatible(model):
        return ["OPENAI_API_KEY"]
    litellm = import_litellm()
    try:
        found = litellm.validate_environment(model=model)
    except Exception:  # an unknown provider: nothing to name
        return []
    return [str(v) for v in found.get("missing_keys") or []]


def provider_host(model: str, api_base: str | None) -> str:
    """The host a call to ``model`` goes to: ``api_base``'s, else the provider's default.

    For ``openai/*`` without ``api_base``, the openai SDK's endpoint: ``OPENAI_BASE_URL``
    (or ``OPENAI_API_BASE``) when set, else ``api.openai.com``, without litellm. For another
    provider, litellm's ``get_api_base`` (imports litellm). Empty when neither is known.
    """
    from urllib.parse import urlsplit

    base = api_base
    if not base and _is_openai_compatible(model):
        base = next(
            (os.environ[name] for name in BASE_URL_VARIABLES if os.environ.get(name)),
            OPENAI_API_BASE,
        )
    if not base:
        litellm = import_litellm()
        try:
            base = litellm.get_api_base(model, {})
        except Exception:  # an unknown provider: no endpoint to name
            base = None
    if not base:
        return ""
    parts = urlsplit(base if "//" in base else f"//{base}")
    return parts.netloc or base


def _host_note(error: BaseException, model: str, api_base: str | None) -> str:
    """`` (could not reach HOST)`` for a connection failure, else empty."""
    if not is_connection_error(error):
        return ""
    host = provider_host(model, api_base)
    return f" (could not reach {host}; check the address and the network)" if host else ""


async def _retry(call: Any, first_error: BaseException, kwargs: dict[str, Any]) -> Any:
    """Retry ``call(**kwargs)``, whose first attempt failed with the transient ``first_error``.

    tenacity drives the retries: it is handed that failure as its own first attempt, so the
    attempts (:data:`RETRY_ATTEMPTS` in all), the backoff before each retry (exponential
    from :data:`RETRY_INITIAL_S` up to :data:`RETRY_MAX_S` seconds, full jitter) and which
    errors are retried (:func:`is_transient`) are all its own.

    Raises:
        Exception: the last attempt's error, once attempts run out or an error is not
            transient.
    """
    from tenacity import (
        AsyncRetrying,
        retry_if_exception,
        stop_after_attempt,
        wait_random_exponential,
    )

    failed = [first_error]

    async def attempt() -> Any:
        if failed:
            raise failed.pop()
        return await call(**kwargs)

    retrying = AsyncRetrying(
        stop=stop_after_attempt(RETRY_ATTEMPTS),
        wait=wait_random_exponential(multiplier=RETRY_INITIAL_S, max=RETRY_MAX_S),
        retry=retry_if_exception(is_transient),
        reraise=True,
    )
    return await retrying(attempt)


def _highest(prices: list[Pricing | None]) -> Pricing | None:
    """The component-wise highest price, or None if any is unknown (for budget estimates)."""
    if any(price is None for price in prices):
        return None
    known = [price for price in prices if price is not None]
    return Pricing(max(p.input_per_mtok for p in known), max(p.output_per_mtok for p in known))


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else ""


def _with_failures(reply: ModelReply, failures: list[str]) -> ModelReply:
    from dataclasses import replace

    return replace(reply, failed_attempts=tuple(failures))


def reply_from_openai(response: Any, model: str, pricing: Pricing | None) -> ModelReply:
    """Convert a litellm/OpenAI chat completion into a :class:`ModelReply`.

    Raises:
        ModelError: when the response has no choices (a garbage answer).
    """
    choices = getattr(response, "choices", None) or []
    if not choices:
        raise ModelError(f"model {model!r} returned no choices")
    message = choices[0].message
    calls = []
    for index, call in enumerate(getattr(message, "tool_calls", None) or []):
        function = call.function
        arguments = function.arguments
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        calls.append(
            ToolCallRequest(
                id=call.id or f"call_{index}", name=function.name or "", arguments=arguments or ""
            )
        )
    raw_usage = getattr(response, "usage", None)
    usage = Usage(
        input_tokens=int(getattr(raw_usage, "prompt_tokens", 0) or 0),
        output_tokens=int(getattr(raw_usage, "completion_tokens", 0) or 0),
    )
    return ModelReply(
        content=message.content,
        tool_calls=calls,
        usage=usage,
        cost_usd=cost_usd(pricing, usage),
        model=model,
        finish_reason=str(choices[0].finish_reason or ""),
    )
