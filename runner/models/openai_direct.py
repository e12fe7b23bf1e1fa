"""The direct path to OpenAI-compatible endpoints: the openai SDK's client, without litellm.

``openai/*`` models (with or without an ``api_base``) and the embedded ``local/*`` model
speak the OpenAI chat API; for them a call goes through :class:`openai.AsyncOpenAI` (its
HTTP client, timeouts, error types) rather than ``litellm.acompletion``, so a run on such a
model never imports litellm for its calls, and the request body the loop prepared is sent
as it is (``client.post``): the SDK's per-call transform of typed parameters is skipped, as
its public API allows. The answer is read as JSON and given the attribute shape of an SDK
response (:func:`as_attributes`), so :func:`runner.models.litellm_adapter.reply_from_openai`
reads either path's answers.

Retries, fallbacks, error classification and cost accounting are the adapter's
(:class:`runner.models.litellm_adapter.LiteLLMModel`): the SDK's own retries are off, and its
exception names (``RateLimitError``, ``InternalServerError``, ``APIConnectionError``,
``APITimeoutError``, ``AuthenticationError``) are the ones the adapter already classifies.
"""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

#: litellm provider prefixes whose models are reached directly.
DIRECT_PROVIDERS = ("openai",)
#: The OpenAI API's default endpoint, for ``openai/*`` without an ``api_base``.
OPENAI_API_BASE = "https://api.openai.com/v1"
#: Where the endpoint of ``openai/*`` without an ``api_base`` is read from, in this order
#: (the openai SDK's variable, then litellm's), as litellm's path reads them.
BASE_URL_VARIABLES = ("OPENAI_BASE_URL", "OPENAI_API_BASE")
#: Request keys that are litellm's, not the chat API's.
LITELLM_ONLY = ("api_base", "api_key", "timeout", "num_retries", "max_retries")


#: Set to ``litellm`` to send OpenAI-compatible calls through litellm too (the tests run the
#: model behaviour suite both ways; a user can fall back to it if the direct path misbehaves).
PATH_VARIABLE = "AGENTRUN_OPENAI_PATH"


def is_direct(litellm_model: str) -> bool:
    """Whether ``litellm_model`` (``openai/gpt-4o-mini``) goes through the direct path.

    False for every model when :data:`PATH_VARIABLE` is ``litellm``.
    """
    if os.environ.get(PATH_VARIABLE) == "litellm":
        return False
    return "/" in litellm_model and litellm_model.split("/", 1)[0] in DIRECT_PROVIDERS


def as_attributes(value: Any) -> Any:
    """JSON (dicts, lists) as nested objects with attributes, as the SDK's models read."""
    if isinstance(value, dict):
        return SimpleNamespace(**{key: as_attributes(item) for key, item in value.items()})
    if isinstance(value, list):
        return [as_attributes(item) for item in value]
    return value


_ssl_context: Any = None


def ssl_context() -> Any:
    """The process's one :class:`ssl.SSLContext` for the direct path's HTTP clients.

    Made on first use with :func:`httpx.create_ssl_context` (certifi's CA bundle, or
    ``SSL_CERT_FILE``/``SSL_CERT_DIR`` when set, as httpx reads them) and shared by every
    client: loading the CA bundle took 78-87 ms of each new client (profiled in a daemon
    worker, issue 19), and a worker makes a client per run. An SSL context is safe to share
    between clients, threads and event loops.
    """
    global _ssl_context
    if _ssl_context is None:
        import httpx

        _ssl_context = httpx.create_ssl_context()
    return _ssl_context


class DirectClients:
    """One :class:`openai.AsyncOpenAI` client per (endpoint, key, timeout), made on first use.

    A client keeps its HTTP connections open between calls (keep-alive), as litellm's
    cached clients do. Its connections belong to the event loop they were opened in, so the
    clients are kept for one loop: a call in another loop (a second ``asyncio.run``) starts
    afresh. Every client shares the process's SSL context (:func:`ssl_context`).
    """

    def __init__(self) -> None:
        self._clients: dict[tuple[str, str, float | None], Any] = {}
        self._loop: Any = None

    def client(self, api_base: str | None, api_key: str | None, timeout: float | None) -> Any:
        """The client for one endpoint.

        Raises:
            openai.OpenAIError: no key given and ``OPENAI_API_KEY`` unset (a credentials
                error: the adapter reports it as such, never retried).
        """
        import asyncio

        import openai

        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._clients.clear()
            self._loop = loop
        base = api_base or next(
            (os.environ[name] for name in BASE_URL_VARIABLES if os.environ.get(name)),
            OPENAI_API_BASE,
        )
        key = (base, api_key or "", timeout)
        client = self._clients.get(key)
        if client is None:
            client = openai.AsyncOpenAI(
                base_url=base,
                api_key=api_key,
                max_retries=0,  # the adapter retries (tenacity), as for every provider
                timeout=timeout if timeout else openai.DEFAULT_TIMEOUT,
                http_client=openai.DefaultAsyncHttpxClient(verify=ssl_context()),
            )
            self._clients[key] = client
        return client

    async def aclose(self) -> None:
        """Close every client's connections (call in the loop that opened them)."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()

    async def acompletion(self, **kwargs: Any) -> Any:
        """A chat completion with litellm's keyword arguments, through the SDK's client.

        ``model`` is litellm's name (``openai/gpt-4o-mini``): the provider prefix is dropped.
        The other chat parameters (``messages``, ``tools``, ``tool_choice``, the spec's
        ``params``) are the request body as they are.

        Raises:
            openai.APIError: the SDK's error for a failed call (status, connection, timeout).
        """
        import httpx

        client = self.client(kwargs.get("api_base"), kwargs.get("api_key"), kwargs.get("timeout"))
        body = {key: value for key, value in kwargs.items() if key not in LITELLM_ONLY}
        body["model"] = str(body["model"]).split("/", 1)[1]
        response: httpx.Response = await client.post(
            "/chat/completions", cast_to=httpx.Response, body=body
        )
        return as_attributes(response.json())
