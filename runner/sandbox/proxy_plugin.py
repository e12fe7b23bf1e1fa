"""The egress proxy's proxy.py plugin: every upstream connection through the egress rules.

Imported only inside the egress proxy's own process (:func:`runner.sandbox.proxy.main`
names it to proxy.py), never by agentrun itself: it imports proxy.py (PyPI ``proxy.py``,
abhinavsingh/proxy.py), which agentrun's other processes do not need.

For each request, CONNECT (``https``) or plain HTTP in absolute form alike, the plugin
resolves and checks the host itself (:func:`runner.sandbox.egress.resolve`) before proxy.py
connects, refuses with ``403 Forbidden`` what the rules refuse, and hands proxy.py the
address it checked, so proxy.py never resolves a name on its own. Each decision is one
JSON line on standard output, ``{"host", "port", "allowed", "address", "reason"}``, which
:class:`runner.sandbox.proxy.EgressProxy` reads.

The rules come from the environment variable :data:`ALLOW_VARIABLE` (a JSON list of the
allowlist entries), set by :func:`runner.sandbox.proxy.main` before proxy.py starts its
acceptor processes, which inherit it.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

from proxy.common.utils import text_
from proxy.http.exception import HttpRequestRejected
from proxy.http.parser import HttpParser
from proxy.http.proxy import HttpProxyBasePlugin

from .egress import EgressRefused, EgressRules, parse_allow, resolve

#: The environment variable holding the allowlist, a JSON list of strings.
ALLOW_VARIABLE = "AGENTRUN_EGRESS_ALLOW"


@functools.cache
def rules() -> EgressRules:
    """The rules of this proxy process, parsed once from :data:`ALLOW_VARIABLE`.

    An unset or unreadable variable allows nothing (the entry point checks it first).
    """
    try:
        entries = json.loads(os.environ.get(ALLOW_VARIABLE, "[]"))
        return parse_allow([str(entry) for entry in entries])
    except (ValueError, TypeError):
        return parse_allow([])


def report(host: str, port: int, allowed: bool, address: str | None, reason: str) -> None:
    """Write one decision as a JSON line on standard output, in one write (lines never mix)."""
    line = json.dumps(
        {"host": host, "port": port, "allowed": allowed, "address": address, "reason": reason}
    )
    os.write(1, line.encode() + b"\n")


class EgressFilter(HttpProxyBasePlugin):
    """Checks each upstream connection against :func:`rules`; see the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._checked: dict[tuple[str, int], str] = {}

    def before_upstream_connection(self, request: HttpParser) -> HttpParser:
        """Resolve and check the request's host and port; refuse with 403, or remember it.

        Raises:
            HttpRequestRejected: the rules refuse the connection (proxy.py answers 403).
        """
        host = text_(request.host) if request.host else ""
        port = int(request.port or 0)
        try:
            if not host or not port:
                raise EgressRefused("the request names no host and port")
            address = resolve(host, port, rules())
        except EgressRefused as refused:
            report(host, port, False, None, refused.reason)
            raise HttpRequestRejected(
                status_code=403,
                reason=b"Forbidden",
                headers={b"Content-Type": b"text/plain; charset=utf-8"},
                body=f"agentrun sandbox: {refused.reason}\n".encode(),
            ) from None
        self._checked[(host, port)] = address
        report(host, port, True, address, "")
        return request

    def resolve_dns(self, host: str, port: int) -> tuple[str, None]:
        """The address checked for ``host:port`` by :meth:`before_upstream_connection`.

        Raises:
            EgressRefused: nothing was checked for it (proxy.py answers 502 Bad Gateway);
                proxy.py never connects to a name by itself.
        """
        address = self._checked.pop((host, port), None)
        if address is None:
            report(host, port, False, None, "the connection was not checked first")
            raise EgressRefused(f"{host}:{port} was not checked")
        return address, None

    def handle_client_request(self, request: HttpParser) -> HttpParser:
        """Pass the request on unchanged."""
        return request

    def handle_upstream_chunk(self, chunk: memoryview) -> memoryview:
        """Pass the response on unchanged."""
        return chunk

    def on_upstream_connection_close(self) -> None:
        """Nothing to do."""
