"""The egress rules (runner/sandbox/egress.py): allowlist entries, address classes, resolving."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from runner.sandbox.egress import (
    EgressRefused,
    address_is_public,
    normalize_host,
    parse_allow,
    parse_pattern,
    resolve,
)
from runner.tools import http as http_tool

# -- entries ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entries", "host", "port", "expected"),
    [
        (["pypi.org"], "pypi.org", 443, True),
        (["pypi.org"], "PyPI.org.", 80, True),
        (["pypi.org"], "files.pypi.org", 443, False),
        (["pypi.org"], "pypi.org.evil.net", 443, False),
        (["pypi.org:443"], "pypi.org", 443, True),
        (["pypi.org:443"], "pypi.org", 80, False),
        (["*.pythonhosted.org"], "files.pythonhosted.org", 443, True),
        (["*.pythonhosted.org"], "a.b.pythonhosted.org", 443, True),
        (["*.pythonhosted.org"], "pythonhosted.org", 443, False),
        (["*.pythonhosted.org"], "evilpythonhosted.org", 443, False),
        (["*.pythonhosted.org"], ".pythonhosted.org", 443, False),
        (["*.pythonhosted.org:443"], "files.pythonhosted.org", 8443, False),
        (["bücher.example"], "xn--bcher-kva.example", 443, True),
        (["xn--bcher-kva.example"], "bücher.example", 443, True),
        (["127.0.0.1:8080"], "127.0.0.1", 8080, True),
        (["127.0.0.1:8080"], "127.0.0.2", 8080, False),
        (["127.0.0.1"], "2130706433", 80, False),  # the same address, spelt as a number
        (["127.0.0.1"], "127.1", 80, False),
        (["127.0.0.1"], "::ffff:127.0.0.1", 80, False),
        (["[::1]:8080"], "::1", 8080, True),
        (["[::1]:8080"], "[::1]", 8080, True),
        (["[2001:DB8:0::1]"], "2001:db8::1", 443, True),
        (["localhost"], "LOCALHOST.", 5000, True),
        (["localhost"], "127.0.0.1", 5000, False),
        (["localhost"], "", 80, False),
        ([], "pypi.org", 443, False),
        (["a.example", "*.b.example:8080"], "x.b.example", 8080, True),
    ],
)
def test_which_hosts_and_ports_the_rules_allow(
    entries: list[str], host: str, port: int, expected: bool
) -> None:
    assert parse_allow(entries).allows(host, port) is expected


@pytest.mark.parametrize(
    ("entries", "host", "expected"),
    [
        (["127.0.0.1"], "127.0.0.1", True),
        (["[::1]"], "::1", True),
        (["localhost:8080"], "localhost", True),
        (["10.0.0.5"], "10.0.0.5", True),
        (["internal.example"], "internal.example", False),
        (["*.localhost"], "app.localhost", False),
        (["localhost"], "internal.example", False),
    ],
)
def test_only_hosts_listed_as_addresses_or_localhost_may_reach_private_addresses(
    entries: list[str], host: str, expected: bool
) -> None:
    assert parse_allow(entries).private_allowed(host) is expected


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("", "empty egress host"),
        ("   ", "empty egress host"),
        ("pypi.org:0", "not a number 1-65535"),
        ("pypi.org:65536", "not a number 1-65535"),
        ("pypi.org:https", "not a number 1-65535"),
        ("pypi.org:", "not a number 1-65535"),
        ("::1", "in brackets"),
        ("2001:db8::1:443", "in brackets"),
        ("[::1", "not closed"),
        ("[::1]443", "expected ':PORT'"),
        ("[127.0.0.1]", "not an IPv6 address"),
        ("[nope]:80", "not an IPv6 address"),
        ("*", "'*' may only begin"),
        ("*example.com", "'*' may only begin"),
        ("a.*.example.com", "'*' may only begin"),
        ("*.*.example.com", "'*' may only begin"),
        ("256.1.1.1", "not a valid IPv4 address"),
        ("127.1", "not a valid IPv4 address"),
        ("*.10.0.0.1", "not a valid IPv4 address"),
        ("exa mple.com", "not a valid host name"),
        ("-bad-.example", "not a valid host name"),
        ("a..example", "not a valid host name"),
        ("http://pypi.org", "without a scheme or a path"),
        ("pypi.org/simple", "without a scheme or a path"),
        ("x" * 64 + ".example", "not a valid host name"),
    ],
)
def test_a_bad_entry_is_refused_with_the_expected_forms(entry: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        parse_allow(["pypi.org", entry])
    assert repr(entry) in str(caught.value)


def test_entries_keep_their_text_port_and_kind() -> None:
    pattern = parse_pattern(" *.Example.COM.:8443 ")
    assert (pattern.host, pattern.wildcard, pattern.port, pattern.as_address) == (
        "example.com",
        True,
        8443,
        False,
    )
    assert pattern.text == "*.Example.COM.:8443"
    assert parse_pattern("[2001:db8:0:0::1]").host == "2001:db8::1"
    assert parse_pattern("localhost").as_address
    assert not parse_pattern("*.localhost").as_address


@pytest.mark.parametrize(
    ("host", "normal"),
    [
        ("Example.COM.", "example.com"),
        ("[2001:DB8::0:1]", "2001:db8::1"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("  localhost ", "localhost"),
    ],
)
def test_hosts_are_compared_in_one_form(host: str, normal: str) -> None:
    assert normalize_host(host) == normal


# -- addresses -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True),
        ("2606:4700:4700::1111", True),
        ("::ffff:93.184.215.14", True),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("127.0.0.1", False),
        ("127.255.255.254", False),
        ("169.254.169.254", False),  # cloud metadata services
        ("169.254.0.1", False),
        ("100.64.0.1", False),  # shared address space (carrier-grade NAT)
        ("0.0.0.0", False),
        ("240.0.0.1", False),  # reserved
        ("255.255.255.255", False),
        ("224.0.0.1", False),
        ("::", False),
        ("::1", False),
        ("fe80::1%eth0", False),
        ("fd00::1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4 written as IPv6
        ("::ffff:169.254.169.254", False),
        ("::ffff:10.0.0.1", False),
    ],
)
def test_which_addresses_are_public(address: str, public: bool) -> None:
    assert address_is_public(address) is public


def test_http_request_keeps_importing_the_address_check() -> None:
    assert http_tool.address_is_public is address_is_public


# -- resolving -------------------------------------------------------------------------------


def _answers(monkeypatch: pytest.MonkeyPatch, table: dict[str, list[str]]) -> list[str]:
    """Make getaddrinfo answer from ``table``; returns the names asked, in order."""
    asked: list[str] = []

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        asked.append(host)
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (
                socket.AF_INET6 if ":" in address else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (address, port),
            )
            for address in table[host]
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def test_a_listed_name_resolves_to_its_first_public_address_ipv4_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _answers(monkeypatch, {"pypi.org": ["2a04:4e42::223", "10.0.0.9", "151.101.0.223"]})
    assert resolve("pypi.org", 443, parse_allow(["pypi.org"])) == "151.101.0.223"


def test_a_listed_name_with_only_ipv6_public_addresses_resolves_to_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _answers(monkeypatch, {"v6.example": ["2a04:4e42::223"]})
    assert resolve("v6.example", 443, parse_allow(["v6.example"])) == "2a04:4e42::223"


@pytest.mark.parametrize(
    "internal",
    [
        ["127.0.0.1"],
        ["169.254.169.254"],
        ["10.0.0.1", "192.168.0.1"],
        ["::ffff:127.0.0.1"],
        ["0.0.0.0"],
        ["::1"],
    ],
)
def test_a_listed_name_resolving_to_internal_addresses_is_refused(
    monkeypatch: pytest.MonkeyPatch, internal: list[str]
) -> None:
    _answers(monkeypatch, {"rebind.example": internal})
    with pytest.raises(EgressRefused, match="not a public address") as caught:
        resolve("rebind.example", 80, parse_allow(["*.example", "rebind.example"]))
    assert internal[0] in caught.value.reason


def test_localhost_listed_reaches_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    _answers(monkeypatch, {"localhost": ["::1", "127.0.0.1"]})
    assert resolve("localhost", 8080, parse_allow(["localhost:8080"])) == "127.0.0.1"


def test_an_address_listed_is_reached_as_listed_without_resolving(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked = _answers(monkeypatch, {})
    rules = parse_allow(["127.0.0.1:8080", "[::1]", "169.254.169.254"])
    assert resolve("127.0.0.1", 8080, rules) == "127.0.0.1"
    assert resolve("[::1]", 9000, rules) == "::1"
    assert resolve("169.254.169.254", 80, rules) == "169.254.169.254"
    assert asked == []


def test_what_is_not_listed_is_refused_before_resolving(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _answers(monkeypatch, {"pypi.org": ["151.101.0.223"]})
    rules = parse_allow(["pypi.org:443", "localhost"])
    for host, port in [
        ("pypi.org", 80),
        ("169.254.169.254", 80),
        ("127.0.0.1", 80),
        ("0.0.0.0", 443),
        ("::ffff:127.0.0.1", 443),
    ]:
        with pytest.raises(EgressRefused, match="not in the sandbox's network allowlist"):
            resolve(host, port, rules)
    assert asked == []


def test_a_name_that_does_not_resolve_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _answers(monkeypatch, {})
    with pytest.raises(EgressRefused, match="cannot resolve nowhere.example"):
        resolve("nowhere.example", 443, parse_allow(["nowhere.example"]))


# -- http_request's hosts: the same matcher, its documented behaviour kept ---------------------


@pytest.mark.parametrize(
    ("host", "patterns", "expected"),
    [
        ("api.example.com", ("*.example.com",), True),
        ("example.com", ("*.example.com",), False),
        ("[::1]", ("::1",), True),  # http_request takes IPv6 entries without brackets
        ("example.com", ("example.com:8080",), False),  # no ports in its hosts
        ("bücher.example", ("xn--bcher-kva.example",), True),
    ],
)
def test_http_request_host_matching(host: str, patterns: tuple[str, ...], expected: bool) -> None:
    assert http_tool.host_allowed(host, patterns) is expected
