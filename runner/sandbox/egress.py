"""Which address a sandboxed process may reach for a host: the egress rules applied.

The grammar of the entries and the address classes are :mod:`runner.spec.egress_rules`
(re-exported here); this module adds what needs I/O, resolving a name (:func:`resolve`).

A sandbox with ``network: {allow: [...]}`` has no network of its own; its processes reach
agentrun's egress proxy (:mod:`runner.sandbox.proxy`), which asks :func:`resolve` about every
connection and connects to the address it returns, nothing else.
"""

from __future__ import annotations

import socket

from ..spec.egress_rules import (
    EgressRules,
    HostPattern,
    address_is_public,
    literal_address,
    normalize_host,
    parse_allow,
    parse_pattern,
)

__all__ = [
    "EgressRefused",
    "EgressRules",
    "HostPattern",
    "address_is_public",
    "normalize_host",
    "parse_allow",
    "parse_pattern",
    "resolve",
]


class EgressRefused(Exception):
    """A connection the egress rules refuse; ``reason`` says why in plain words.

    A decision inside the egress proxy and the ``http_request`` tool, turned there into a
    refusal to the client and a recorded ``ConnectionDecided``; it never reaches the loop.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def resolve(host: str, port: int, rules: EgressRules) -> str:
    """The address to connect to for ``host:port``, after the rules allow it.

    A host listed as an address or ``localhost`` resolves to its first address, whatever
    its class; any other name to its first public address, IPv4 addresses before IPv6
    ones (a sandbox's host often has no IPv6 route).

    Args:
        host: the host as requested (a name, an address, an IPv6 address in brackets).
        port: the TCP port, 1-65535.
        rules: the allowlist.

    Returns:
        An IP address as text; the caller must connect to exactly this address.

    Raises:
        EgressRefused: the host and port are not listed, the name does not resolve, or it
            resolves to no address it may reach (the reason names the addresses found).
    """
    if not rules.allows(host, port):
        raise EgressRefused(f"{host}:{port} is not in the sandbox's network allowlist")
    name = normalize_host(host)
    private = rules.private_allowed(name)
    literal = literal_address(name)
    if literal is not None:
        if not private and not address_is_public(name):
            raise EgressRefused(f"{name} is not a public address")
        return name
    try:
        found = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise EgressRefused(f"cannot resolve {name}: {error}") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
    addresses.sort(key=lambda address: ":" in address)  # IPv4 first, order kept otherwise
    usable = addresses if private else [a for a in addresses if address_is_public(a)]
    if not usable:
        raise EgressRefused(
            f"{name} resolves to {', '.join(addresses) or 'no address'}, not a public address"
            " (list the host as an IP address or as localhost to reach internal addresses)"
        )
    return usable[0]
