"""The grammar of a sandbox's ``network.allow`` entries, and which addresses are public.

Pure, no I/O: the spec's checks parse the entries with it (:mod:`runner.spec.checks_sandbox`);
the egress proxy (:func:`runner.sandbox.egress.resolve`) and ``http_request`` match hosts and
classify addresses with it.

A sandbox with ``network: {allow: [...]}`` has no network of its own; its processes reach
agentrun's egress proxy (:mod:`runner.sandbox.proxy`), which asks these rules about every
connection. The ``http_request`` tool shares the host matching and the address classes.

Pattern forms (:func:`parse_allow`), each optionally followed by ``:PORT`` (any port when
none is given):

- ``host.example.com``: that name exactly;
- ``*.example.com``: any subdomain of ``example.com``, at any depth, not ``example.com``
  itself;
- ``192.0.2.10``: an IPv4 address (dotted quad, nothing shorter);
- ``[2001:db8::1]``: an IPv6 address, in brackets;
- ``localhost``.

Case and a trailing dot are ignored; international names are compared in their ASCII
(IDNA 2003, as Python's ``idna`` codec) form.

Addresses: a host listed as an IP address or as ``localhost`` is reached as listed,
loopback and private addresses included. Any other listed name is resolved by
:func:`runner.sandbox.egress.resolve`, once per connection, and reached only at a public
address (:func:`address_is_public`); the caller
connects to the very address returned, so a name that answers with an internal address
(DNS rebinding, a split-horizon name) is refused before anything is sent.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import NamedTuple

_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_FORMS = "host, *.domain, an IPv4 address, [IPv6 address] or localhost, optionally with :PORT"


def address_is_public(address: str) -> bool:
    """Whether an IP address is a public (globally routed, unicast) one.

    Not public: private (10/8, 172.16/12, 192.168/16, fc00::/7), loopback, link-local
    (169.254/16, where cloud metadata services listen, and fe80::/10), shared (100.64/10),
    reserved, unspecified and multicast addresses, by :mod:`ipaddress`'s registry data. An
    IPv4 address written as IPv6 (``::ffff:10.0.0.1``) is judged as the IPv4 address.

    Raises:
        ValueError: ``address`` is not an IP address.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone ("fe80::1%eth0")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def normalize_host(host: str) -> str:
    """``host`` as the rules compare it: lower case, no trailing dot, no IPv6 brackets.

    An international name in its ASCII form; an IP address in its compressed form. Never
    raises: a name the ``idna`` codec refuses is returned lower-cased, and matches nothing
    a pattern can spell.
    """
    name = host.strip().lower().rstrip(".")
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    ip = literal_address(name)
    if ip is not None:
        return ip.compressed
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return name
    return name


def literal_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``text`` as an IP address when it is one (no brackets), else None."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class HostPattern(NamedTuple):
    """One parsed allowlist entry.

    Attributes:
        host: the normalized name, the domain of a wildcard, or the compressed address.
        wildcard: ``*.host``: subdomains of ``host`` only.
        port: the one port allowed (1-65535), or None for any.
        as_address: listed as an IP address or as ``localhost``: reached as listed,
            loopback and private addresses included.
        text: the entry as written.
    """

    host: str
    wildcard: bool
    port: int | None
    as_address: bool
    text: str

    def matches_host(self, name: str) -> bool:
        """Whether the normalized host ``name`` is this entry's host (any port)."""
        if self.wildcard:
            return name.endswith("." + self.host) and len(name) > len(self.host) + 1
        return name == self.host

    def matches(self, name: str, port: int) -> bool:
        """Whether the normalized host ``name`` at ``port`` is allowed by this entry."""
        return self.matches_host(name) and (self.port is None or self.port == port)


def parse_pattern(text: str) -> HostPattern:
    """Parse one allowlist entry (see the module docstring for the forms).

    Raises:
        ValueError: an empty entry, a bad port, an IPv6 address without brackets, a bad
            name or address, or a misplaced ``*``; the message quotes the entry and gives
            the expected forms.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"empty egress host {text!r}; write {_FORMS}")
    written = text.strip()
    if "/" in written or "@" in written:
        raise ValueError(
            f"egress host {text!r}: write the host alone, without a scheme or a path, as in "
            "'pypi.org' or 'pypi.org:443'"
        )
    host, port = _split_port(written)
    host = host.lower().rstrip(".")
    wildcard = host.startswith("*.")
    if wildcard:
        host = host[2:]
    if "*" in host:
        raise ValueError(
            f"egress host {text!r}: '*' may only begin an entry, as in '*.example.com' "
            "(any subdomain of example.com)"
        )
    if host.startswith("[") and host.endswith("]"):
        address = literal_address(host[1:-1])
        if not isinstance(address, ipaddress.IPv6Address) or wildcard:
            raise ValueError(f"egress host {text!r}: {host!r} is not an IPv6 address")
        return HostPattern(address.compressed, False, port, True, written)
    if ":" in host:
        raise ValueError(
            f"egress host {text!r}: write an IPv6 address in brackets, as in '[2001:db8::1]:443'"
        )
    if _looks_numeric(host):
        address = literal_address(host)
        if address is None or wildcard:
            raise ValueError(
                f"egress host {text!r} is not a valid IPv4 address; write four numbers "
                "0-255 separated by dots, as in '192.0.2.10'"
            )
        return HostPattern(address.compressed, False, port, True, written)
    name = _ascii_name(host, text)
    return HostPattern(name, wildcard, port, name == "localhost" and not wildcard, written)


def _split_port(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"egress host {text!r}: the '[' of an IPv6 address is not closed")
        host, rest = text[: end + 1], text[end + 1 :]
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise ValueError(f"egress host {text!r}: expected ':PORT' after the ']'")
        return host, _port(rest[1:], text)
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, _port(port, text)
    return text, None


def _port(digits: str, text: str) -> int:
    if not digits.isascii() or not digits.isdigit() or not 1 <= int(digits) <= 65535:
        raise ValueError(f"egress host {text!r}: the port {digits!r} is not a number 1-65535")
    return int(digits)


def _looks_numeric(host: str) -> bool:
    """Whether the last label is all digits: an IPv4 address, or something resolvers read so."""
    last = host.rsplit(".", 1)[-1]
    return bool(last) and last.isascii() and last.isdigit()


def _ascii_name(host: str, text: str) -> str:
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as error:
            raise ValueError(f"egress host {text!r} is not a valid name: {error}") from None
    labels = host.split(".")
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ValueError(
            f"egress host {text!r} is not a valid host name (labels of letters, digits, '-' "
            f"and '_', 1-63 characters, separated by dots); write {_FORMS}"
        )
    return host


@dataclass(frozen=True)
class EgressRules:
    """A parsed egress allowlist; build it with :func:`parse_allow`.

    Attributes:
        patterns: the entries, in the order written.
    """

    patterns: tuple[HostPattern, ...]

    def allows(self, host: str, port: int) -> bool:
        """Whether some entry allows ``host`` (a name or an address, as requested) at ``port``."""
        name = normalize_host(host)
        return bool(name) and any(pattern.matches(name, port) for pattern in self.patterns)

    def private_allowed(self, host: str) -> bool:
        """Whether ``host`` may reach loopback and private addresses.

        True when an entry listing it as an IP address or as ``localhost`` matches it;
        a host matched only by names and wildcards must resolve to public addresses.
        """
        name = normalize_host(host)
        return any(p.as_address and p.matches_host(name) for p in self.patterns)


def parse_allow(patterns: tuple[str, ...] | list[str]) -> EgressRules:
    """Parse the ``network.allow`` entries of a sandbox.

    Args:
        patterns: the entries as written (see the module docstring for the forms).

    Returns:
        The rules; an empty list allows nothing.

    Raises:
        ValueError: the first entry that is not one of the forms, quoted, with the forms.
    """
    return EgressRules(tuple(parse_pattern(text) for text in patterns))
