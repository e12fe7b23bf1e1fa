"""The ``http_request`` tool: HTTP(S) requests to allowed hosts, through ``httpx``.

Confinement, for every request and every redirect hop:

- the scheme is ``http`` or ``https``;
- the host is in the spec's ``hosts``: ``*.example.com`` matches any subdomain of
  ``example.com`` (not ``example.com`` itself), any other entry matches exactly (case and a
  trailing dot ignored, international names compared in their ASCII form);
- the method is in the spec's ``methods``;
- redirects are not followed by the client: the tool follows at most
  :data:`MAX_REDIRECTS` of them itself, checking each new URL (and method) first, so a
  redirect to a host outside the list is refused before it is contacted;
- the response body is streamed and reading stops after ``max_bytes`` bytes;
- the whole exchange, redirects included, must end within ``timeout_s`` seconds.

Headers from ``headers_env`` are read from the environment at each call; they are sent
only to the origin (scheme, host, port) of the first URL and dropped on a redirect to
another origin, and their values are replaced by ``[REDACTED]`` wherever they would appear
in a result or an error. The model may add its own headers, but not ``Host`` and not one
the spec sets. Host names are checked as names: a name on the list that resolves to an
internal address is not caught here.
"""

from __future__ import annotations

import asyncio
import os
import re
from typing import Any

import httpx

from ..errors import SetupError, ToolError
from ..spec import HttpToolSpec
from . import Tool

#: Most redirects followed for one call.
MAX_REDIRECTS = 5
#: Methods that only read; any other method makes a call high-risk.
SAFE_METHODS = frozenset({"GET", "HEAD"})
#: Headers the model may not set (they would bypass the host check or the framing).
_FORBIDDEN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _normalize_host(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        return host


def host_allowed(host: str, patterns: tuple[str, ...]) -> bool:
    """Whether ``host`` is allowed by the ``hosts`` list ``patterns``.

    Args:
        host: a host name or IP address, as in a URL.
        patterns: the spec's ``hosts``; ``*.example.com`` matches subdomains only.

    Returns:
        True when one pattern matches.
    """
    name = _normalize_host(host)
    if not name:
        return False
    for pattern in patterns:
        if pattern.startswith("*."):
            suffix = "." + _normalize_host(pattern[2:])
            if name.endswith(suffix) and len(name) > len(suffix):
                return True
        elif name == _normalize_host(pattern):
            return True
    return False


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, _normalize_host(url.host), url.port or _DEFAULT_PORTS.get(url.scheme))


class HttpTool(Tool):
    """Make one HTTP request to an allowed host and return the status, headers and body.

    Args:
        spec: the spec's ``tools.http_request``: ``hosts``, ``methods``, ``max_bytes``
            (most body bytes read), ``headers_env`` (header name to variable name), ``risk``.
        timeout_s: seconds the whole call (redirects included) may take.
        transport: an ``httpx`` transport to use instead of the network (for tests).

    Raises:
        SetupError: the spec allows no method.
    """

    name = "http_request"

    def __init__(
        self,
        spec: HttpToolSpec,
        timeout_s: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.spec = spec
        self.hosts = tuple(spec.hosts)
        self.methods = tuple(dict.fromkeys(method.upper() for method in spec.methods))
        if not self.methods:
            raise SetupError("the http_request tool allows no method; list some under 'methods'")
        self.default_method = "GET" if "GET" in self.methods else self.methods[0]
        self.max_bytes = int(spec.max_bytes)
        self.timeout_s = float(timeout_s)
        self.transport = transport
        self.risk = spec.risk or (
            "medium" if all(m in SAFE_METHODS for m in self.methods) else "high"
        )
        hosts = ", ".join(self.hosts)
        self.description = (
            f"Make an HTTP request. Allowed hosts: {hosts} (`*.` allows subdomains); "
            f"methods: {', '.join(self.methods)}. Redirects are followed only to allowed "
            f"hosts; at most {self.max_bytes} bytes of the body are returned."
        )
        self.parameters = {
            "type": "object",
            "properties": {
                "url": {
                    "type": "string",
                    "minLength": 1,
                    "description": f"Absolute http:// or https:// URL on one of: {hosts}.",
                },
                "method": {
                    "enum": list(self.methods),
                    "default": self.default_method,
                    "description": f"HTTP method. Default: {self.default_method}.",
                },
                "headers": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                    "description": "Extra request headers (name to value).",
                },
                "body": {
                    "type": "string",
                    "description": "Request body, sent as UTF-8 (set Content-Type in headers).",
                },
            },
            "required": ["url"],
            "additionalProperties": False,
        }

    def risk_for(self, arguments: dict[str, Any]) -> str:
        """The risk of one call: the spec's ``risk`` if set, else by method.

        Args:
            arguments: the call's arguments.

        Returns:
            ``"medium"`` for GET and HEAD, ``"high"`` for any other method.
        """
        if self.spec.risk:
            return self.spec.risk
        method = str(arguments.get("method") or self.default_method).upper()
        return "medium" if method in SAFE_METHODS else "high"

    def run(self, arguments: dict[str, Any]) -> str:
        """Synchronous form of :meth:`call` (runs its own event loop).

        Raises:
            ToolError: see :meth:`call`.
        """
        return asyncio.run(self.call(arguments))

    async def call(self, arguments: dict[str, Any]) -> str:
        """Make the request, following allowed redirects.

        Args:
            arguments: ``{"url": str, "method"?: str, "headers"?: {str: str},
                "body"?: str}``.

        Returns:
            ``HTTP <status> <reason>``, the final URL, the redirects taken, the
            ``Content-Type``, a blank line, then the body decoded as text (with a note when
            it was cut at ``max_bytes``; binary bodies are described, not shown).

        Raises:
            ToolError: a disallowed method, scheme or host (first URL or redirect), a bad
                header, too many redirects, a timeout, or a network failure. HTTP error
                statuses (4xx, 5xx) are results, not errors.
        """
        secrets = self._secret_headers()
        try:
            async with asyncio.timeout(self.timeout_s):
                return self._redact(await self._exchange(arguments, secrets), secrets)
        except TimeoutError:
            raise ToolError(
                f"the request timed out after {self.timeout_s:g} s and was abandoned"
            ) from None
        except ToolError as error:
            raise ToolError(self._redact(str(error), secrets)) from None
        except httpx.TimeoutException:
            raise ToolError(
                f"the request timed out after {self.timeout_s:g} s and was abandoned"
            ) from None
        except httpx.HTTPError as error:
            detail = self._redact(f"{type(error).__name__}: {error}", secrets)
            raise ToolError(f"the request failed: {detail}") from None

    def check_url(self, text: str) -> httpx.URL:
        """Parse ``text`` and check its scheme and host.

        Raises:
            ToolError: not an absolute http(s) URL, or a host not on the list.
        """
        try:
            url = httpx.URL(text)
        except (httpx.InvalidURL, ValueError, TypeError) as error:
            raise ToolError(f"invalid URL {text!r}: {error}") from None
        self._check(url)
        return url

    def _check(self, url: httpx.URL, redirect_from: httpx.URL | None = None) -> None:
        prefix = (
            f"redirect from {str(redirect_from)!r} to {str(url)!r} refused: "
            if (redirect_from is not None)
            else ""
        )
        if url.scheme not in ("http", "https"):
            raise ToolError(f"{prefix}only http:// and https:// URLs are allowed")
        if not url.host:
            raise ToolError(f"{prefix}the URL has no host; give an absolute URL")
        if not host_allowed(url.host, self.hosts):
            raise ToolError(
                f"{prefix}host {url.host!r} is not in the allowed hosts ({', '.join(self.hosts)})"
            )

    def _secret_headers(self) -> dict[str, str]:
        secrets: dict[str, str] = {}
        for header, variable in self.spec.headers_env.items():
            value = os.environ.get(variable)
            if value is None:
                raise ToolError(
                    f"header {header!r} cannot be sent: environment variable {variable} is not set"
                )
            secrets[header] = value
        return secrets

    def _model_headers(self, arguments: dict[str, Any], secrets: dict[str, str]) -> dict[str, str]:
        headers: dict[str, str] = {}
        configured = {name.lower() for name in secrets}
        for name, value in (arguments.get("headers") or {}).items():
            if not isinstance(name, str) or not _TOKEN.match(name):
                raise ToolError(f"invalid header name {name!r}")
            if not isinstance(value, str) or any(c in value for c in "\r\n\x00"):
                raise ToolError(f"invalid value for header {name!r}")
            if name.lower() in _FORBIDDEN_HEADERS:
                raise ToolError(f"the header {name!r} cannot be set")
            if name.lower() in configured:
                raise ToolError(f"the header {name!r} is set by the agent's configuration")
            headers[name] = value
        return headers

    async def _exchange(self, arguments: dict[str, Any], secrets: dict[str, str]) -> str:
        method = str(arguments.get("method") or self.default_method).upper()
        if method not in self.methods:
            raise ToolError(
                f"method {method} is not allowed; allowed methods: {', '.join(self.methods)}"
            )
        url = self.check_url(str(arguments["url"]))
        headers = {**self._model_headers(arguments, secrets), **secrets}
        body = arguments.get("body")
        content = body.encode("utf-8", errors="replace") if isinstance(body, str) else None
        first_origin = _origin(url)
        hops: list[str] = []
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout_s),
            follow_redirects=False,
            transport=self.transport,
        ) as client:
            try:
                request = client.build_request(method, url, headers=headers, content=content)
            except (UnicodeError, ValueError, TypeError) as error:
                raise ToolError(f"invalid request: {error}") from None
            while True:
                response = await client.send(request, stream=True)
                try:
                    following = response.next_request
                    if following is None:
                        return await self._result(response, hops)
                    if len(hops) >= MAX_REDIRECTS:
                        raise ToolError(
                            f"more than {MAX_REDIRECTS} redirects (last to "
                            f"{str(following.url)!r}); not followed"
                        )
                    self._check(following.url, redirect_from=request.url)
                    if following.method not in self.methods:
                        raise ToolError(
                            f"redirect from {str(request.url)!r} refused: it needs method "
                            f"{following.method}, which is not allowed"
                        )
                    if _origin(following.url) != first_origin:
                        for name in secrets:
                            following.headers.pop(name, None)
                    hops.append(f"{response.status_code} -> {following.url}")
                    request = following
                finally:
                    await response.aclose()

    async def _result(self, response: httpx.Response, hops: list[str]) -> str:
        data = bytearray()
        truncated = False
        if response.request.method != "HEAD":
            async for chunk in response.aiter_bytes():
                room = self.max_bytes - len(data)
                if len(chunk) > room:
                    data += chunk[:room]
                    truncated = True
                    break
                data += chunk
        lines = [f"HTTP {response.status_code} {response.reason_phrase}".rstrip()]
        lines.append(f"URL: {response.url}")
        lines.extend(f"redirected: {hop}" for hop in hops)
        content_type = response.headers.get("content-type", "")
        if content_type:
            lines.append(f"Content-Type: {content_type}")
        if response.request.method == "HEAD":
            length = response.headers.get("content-length")
            if length:
                lines.append(f"Content-Length: {length}")
            return "\n".join(lines)
        if b"\x00" in data[:8192]:
            more = " or more" if truncated else ""
            text = f"[binary body: {len(data)} bytes{more}; not shown]"
        else:
            try:
                text = data.decode(response.encoding or "utf-8", errors="replace")
            except LookupError:
                text = data.decode("utf-8", errors="replace")
            if truncated:
                text += (
                    f"\n[body truncated: only the first {self.max_bytes} bytes were read; "
                    "the rest was not downloaded]"
                )
        return "\n".join(lines) + "\n\n" + text

    @staticmethod
    def _redact(text: str, secrets: dict[str, str]) -> str:
        for value in sorted(secrets.values(), key=len, reverse=True):
            if value.strip():
                text = text.replace(value, "[REDACTED]")
        return text
