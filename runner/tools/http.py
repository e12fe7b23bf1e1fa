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
the spec sets.

Names are also checked where they lead: unless the spec sets ``private_addresses``, each
connection goes only to a public address of the name (not private, loopback, link-local,
shared, reserved or multicast:
:func:`runner.sandbox.egress.address_is_public`). The name is resolved once per
connection and the address checked is the address connected to, so a name that answers
with an internal address (DNS rebinding, a split-horizon name) is refused before anything
is sent. A host the spec lists as an IP address, or as ``localhost``, is reached as listed.
Through a proxy set in the environment (``HTTPS_PROXY``), the proxy resolves names and
this check does not apply.

The ``url`` argument is put in its canonical form once, when the call's arguments are parsed
(:func:`canonical_url`): the policy matches its rules against that text and the request is
made to that same text, so ``HTTP://Host:80/a//b``, ``%61`` for ``a`` and the like cannot
dodge a rule. A URL with user information (``user:password@``) is refused: credentials go in
``headers_env``, where they are kept out of the records.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import re
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from ..canonical import CanonicalURL, canonical_url_path, normalise_escapes
from ..errors import SetupError, ToolError
from ..sandbox.session import record_connection
from ..spec import HttpToolSpec
from ..spec.egress_rules import HostPattern, address_is_public, normalize_host, parse_pattern
from ..spec.vocabulary import Risk
from . import Tool

#: Most redirects followed for one call.
MAX_REDIRECTS = 5
#: Methods that only read; any other method makes a call high-risk.
SAFE_METHODS = frozenset({"GET", "HEAD"})
#: Headers the model may not set (they would bypass the host check or the framing).
_FORBIDDEN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def host_allowed(host: str, patterns: tuple[str, ...]) -> bool:
    """Whether ``host`` is allowed by the ``hosts`` list ``patterns``.

    An entry is matched as a sandbox's egress entry without a port
    (:class:`runner.sandbox.egress.HostPattern`); an entry that is not one (a port, a
    misplaced ``*``) matches only the host spelled exactly so, as it always did.

    Args:
        host: a host name or IP address, as in a URL.
        patterns: the spec's ``hosts``; ``*.example.com`` matches subdomains only.

    Returns:
        True when one pattern matches.
    """
    name = normalize_host(host)
    if not name:
        return False
    for text in patterns:
        pattern = _host_pattern(text)
        if pattern.matches_host(name) if pattern else name == normalize_host(text):
            return True
    return False


def _host_pattern(text: str) -> HostPattern | None:
    """The ``hosts`` entry ``text`` as a port-less egress entry, or None."""
    try:
        pattern = parse_pattern(text)
    except ValueError:
        return None
    return pattern if pattern.port is None else None


def _listed_as_address(host: str) -> bool:
    """Whether a ``hosts`` entry names a machine directly: an IP address or ``localhost``."""
    name = normalize_host(host)
    if name == "localhost":
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class PublicAddressBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting names to their public addresses only.

    Args:
        as_listed: normalized hosts reached as they are (IP addresses and ``localhost``
            the spec lists).
    """

    def __init__(self, as_listed: Iterable[str]) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._as_listed = frozenset(as_listed)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Resolve ``host`` and connect to its first public address that answers.

        Each decision is recorded in the run's sandbox events
        (:func:`runner.sandbox.session.record_connection`): the address connected to, or
        why the name was refused.

        Raises:
            httpcore.ConnectError: it has no public address (the message names the ones
                it has), or none could be connected.
        """
        if normalize_host(host) in self._as_listed:
            stream = await self._inner.connect_tcp(
                host, port, timeout, local_address, socket_options
            )
            peer = stream.get_extra_info("server_addr")
            address = str(peer[0]) if isinstance(peer, tuple) and peer else None
            record_connection("http_request", host, port, True, address)
            return stream
        try:
            found = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError as error:
            record_connection("http_request", host, port, False, None, f"cannot resolve: {error}")
            raise httpcore.ConnectError(f"cannot resolve {host}: {error}") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
        public = [address for address in addresses if address_is_public(address)]
        if not public:
            reason = f"{host} resolves to {', '.join(addresses)}, not a public address"
            record_connection("http_request", host, port, False, None, reason)
            raise httpcore.ConnectError(
                f"{reason}; refused "
                "(set private_addresses: true under http_request to allow internal addresses)"
            )
        failure: Exception | None = None
        for address in public:
            record_connection("http_request", host, port, True, address)
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error
        raise failure or httpcore.ConnectError(f"cannot connect to {host}")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Never used: the tool makes no Unix socket requests."""
        raise httpcore.ConnectError("Unix sockets are not reachable through http_request")

    async def sleep(self, seconds: float) -> None:
        """As the wrapped backend."""
        await self._inner.sleep(seconds)


def canonical_url(text: str) -> str:
    """The canonical form of the URL ``text``, parsed as the request will parse it.

    Scheme and host in lower case, the host's trailing dot dropped, an international name
    in its ASCII (IDNA) form, an IPv6 address compressed, the default port (80 for http, 443
    for https) dropped; the path by :func:`runner.canonical.canonical_url_path` (escapes of
    unreserved characters decoded, others in upper case, repeated ``/`` collapsed, ``.`` and
    ``..`` removed); escapes in the query normalised the same way, an empty query dropped;
    the fragment (never sent) dropped.

    Args:
        text: the URL as the model wrote it.

    Returns:
        A :class:`~runner.canonical.CanonicalURL`; or ``text`` unchanged when the tool
        refuses it on its text (not a URL, not http or https, no host, user information).
        Never raises.
    """
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, ValueError, TypeError):
        return text
    host = url.raw_host.decode("ascii", errors="replace").lower().rstrip(".")
    if url.scheme not in _DEFAULT_PORTS or not host or url.userinfo:
        return text
    if ":" in host:  # an IPv6 address
        with contextlib.suppress(ValueError):
            host = ipaddress.ip_address(host).compressed
        host = f"[{host}]"
    if url.port is not None and url.port != _DEFAULT_PORTS[url.scheme]:
        host += f":{url.port}"
    path = canonical_url_path(url.raw_path.split(b"?", 1)[0].decode("ascii"))
    query = normalise_escapes(url.query.decode("ascii"))
    return CanonicalURL(f"{url.scheme}://{host}{path}" + (f"?{query}" if query else ""))


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, normalize_host(url.host), url.port or _DEFAULT_PORTS.get(url.scheme))


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
        self.private_addresses = bool(spec.private_addresses)
        self._ssl_context: ssl.SSLContext | None = None
        self.risk = spec.risk or (
            Risk.MEDIUM if all(m in SAFE_METHODS for m in self.methods) else Risk.HIGH
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

    def canonical_arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """``arguments`` with ``url`` in canonical form (:func:`canonical_url`)."""
        url = arguments.get("url")
        if not isinstance(url, str):
            return arguments
        return {**arguments, "url": canonical_url(url)}

    def refusal(self, arguments: dict[str, Any]) -> str | None:
        """Why the URL would be refused (:meth:`check_url`), or None; sends nothing."""
        url = arguments.get("url")
        if not isinstance(url, str):
            return None
        try:
            self.check_url(url)
        except ToolError as error:
            return str(error)
        return None

    def risk_for(self, arguments: dict[str, Any]) -> Risk:
        """The risk of one call: the spec's ``risk`` if set, else by method.

        Args:
            arguments: the call's arguments.

        Returns:
            :attr:`Risk.MEDIUM` for GET and HEAD, :attr:`Risk.HIGH` for any other method.
        """
        if self.spec.risk:
            return self.spec.risk
        method = str(arguments.get("method") or self.default_method).upper()
        return Risk.MEDIUM if method in SAFE_METHODS else Risk.HIGH

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

    def _network(self) -> httpx.AsyncBaseTransport | None:
        """The transport of one call: httpx's, connecting through :class:`PublicAddressBackend`.

        None (httpx's default transport) when the spec allows private addresses.
        """
        if self.private_addresses:
            return None
        if self._ssl_context is None:  # loading the CA bundle takes milliseconds: once
            self._ssl_context = httpx.create_ssl_context()
        transport = httpx.AsyncHTTPTransport(verify=self._ssl_context)
        # httpx takes no network backend; the httpcore pool it wraps does (its public API).
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=self._ssl_context,
            network_backend=PublicAddressBackend(
                normalize_host(host) for host in self.hosts if _listed_as_address(host)
            ),
        )
        return transport

    def check_url(self, text: str) -> httpx.URL:
        """Parse ``text`` and check its scheme and host.

        Raises:
            ToolError: not an absolute http(s) URL, a host not on the list, or user
                information (``user:password@``) in the URL.
        """
        try:
            url = httpx.URL(text)
        except (httpx.InvalidURL, ValueError, TypeError) as error:
            raise ToolError(f"invalid URL {text!r}: {error}") from None
        self._check(url)
        if url.userinfo:
            raise ToolError(
                "the URL holds user information (user:password@ before the host), which is "
                "not sent; send credentials as headers set by the spec's headers_env"
            )
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
            transport=self.transport or self._network(),
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
