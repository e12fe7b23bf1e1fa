"""The http_request tool against a local server: allowlists, redirects, caps, secrets."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from runner.errors import SetupError, ToolArgumentError, ToolError
from runner.spec import HttpToolSpec
from runner.tools import ToolRegistry
from runner.tools.http import HttpTool, address_is_public, host_allowed

SECRET = "sk-agentrun-test-0123456789abcdef"


@dataclass
class Server:
    """A loopback HTTP server that records what it receives."""

    base: str
    port: int
    received: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    other: Server | None = None

    def paths(self) -> list[str]:
        return [r["path"] for r in self.received]


def _handler(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes = b"", **headers: str) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name.replace("_", "-"), value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _route(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            server.received.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": dict(self.headers.items()),
                    "body": body,
                }
            )
            path = self.path
            if path == "/hello":
                self._send(200, b"hello there", Content_Type="text/plain; charset=utf-8")
            elif path == "/echo":
                data = json.dumps(dict(self.headers.items())).encode()
                self._send(200, data, Content_Type="application/json")
            elif path == "/submit":
                self._send(201, b"created: " + body, Content_Type="text/plain")
            elif path == "/redirect-local":
                self._send(302, Location="/hello")
            elif path == "/redirect-internal":
                self._send(302, Location=f"http://internal.test:{server.port}/hello")
            elif path == "/redirect-localhost":
                self._send(302, Location=f"http://localhost:{server.port}/hello")
            elif path == "/redirect-invalid":
                self._send(301, Location="http://evil.invalid/steal")
            elif path == "/redirect-ftp":
                self._send(302, Location=f"ftp://127.0.0.1:{server.port}/x")
            elif path == "/redirect-other-origin":
                assert server.other is not None
                self._send(307, Location=f"{server.other.base}/echo")
            elif path == "/redirect-same-origin-echo":
                self._send(302, Location="/echo")
            elif path.startswith("/loop"):
                self._send(302, Location="/loop")
            elif path == "/binary":
                self._send(200, b"\x89PNG\x00\x00\x01", Content_Type="image/png")
            elif path == "/endless":
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                chunk = b"x" * 65_536
                try:
                    for _ in range(2_000):  # 128 MiB unless the client stops reading
                        self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    pass
            elif path == "/slow":
                server.release.wait(60)
                self._send(200, b"late")
            else:
                self._send(404, b"not found")

        do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _route

    return Handler


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("all_proxy", raising=False)


def _start() -> tuple[Server, ThreadingHTTPServer, threading.Thread]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = httpd.server_address[1]
    server = Server(base=f"http://127.0.0.1:{port}", port=port)
    httpd.RequestHandlerClass = _handler(server)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    return server, httpd, thread


@pytest.fixture
def server() -> Iterator[Server]:
    first, httpd1, thread1 = _start()
    second, httpd2, thread2 = _start()
    first.other = second
    yield first
    for srv, httpd, thread in ((first, httpd1, thread1), (second, httpd2, thread2)):
        srv.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def make(
    methods: tuple[str, ...] = ("GET",),
    hosts: tuple[str, ...] = ("127.0.0.1",),
    max_bytes: int = 1_048_576,
    headers_env: dict[str, str] | None = None,
    timeout_s: float = 30.0,
    risk: str | None = None,
    private_addresses: bool = False,
) -> HttpTool:
    spec = HttpToolSpec(
        hosts=hosts,
        methods=methods,
        max_bytes=max_bytes,
        headers_env=headers_env or {},
        private_addresses=private_addresses,
        risk=risk,
    )
    return HttpTool(spec, timeout_s)


# -- allowed requests ------------------------------------------------------------------------


def test_get_from_an_allowed_host(server: Server) -> None:
    result = make().run({"url": f"{server.base}/hello"})
    assert result.startswith("HTTP 200 OK\n")
    assert "Content-Type: text/plain" in result
    assert result.endswith("\n\nhello there")


def test_http_errors_are_results_not_tool_errors(server: Server) -> None:
    assert make().run({"url": f"{server.base}/nope"}).startswith("HTTP 404 Not Found")


def test_the_async_call_works_on_a_running_loop(server: Server) -> None:
    tool = make()
    result = asyncio.run(tool.call({"url": f"{server.base}/hello"}))
    assert result.endswith("hello there")


def test_head_returns_no_body(server: Server) -> None:
    result = make(methods=("GET", "HEAD")).run({"url": f"{server.base}/hello", "method": "HEAD"})
    assert result.startswith("HTTP 200 OK")
    assert "hello there" not in result
    assert server.received[-1]["method"] == "HEAD"


def test_post_with_a_body_when_the_spec_allows_it(server: Server) -> None:
    tool = make(methods=("GET", "POST"))
    result = tool.run({"url": f"{server.base}/submit", "method": "POST", "body": "payload ✓"})
    assert result.startswith("HTTP 201 Created")
    assert server.received[-1]["body"] == "payload ✓".encode()


def test_binary_bodies_are_described_not_shown(server: Server) -> None:
    result = make().run({"url": f"{server.base}/binary"})
    assert "[binary body: 7 bytes; not shown]" in result
    assert "PNG" not in result


# -- refused requests ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:{port}/hello",
        "http://evil.invalid/",
        "http://127.0.0.1.evil.invalid:{port}/",
        "http://127.0.0.1@evil.invalid/",
        "http://[::1]:{port}/hello",
    ],
)
def test_a_host_outside_the_allowlist_is_refused(server: Server, url: str) -> None:
    with pytest.raises(ToolError, match="is not in the allowed hosts"):
        make().run({"url": url.format(port=server.port)})
    assert server.received == []


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1/x", "file:///etc/passwd", "/hello", "127.0.0.1/hello"]
)
def test_only_absolute_http_urls_are_accepted(server: Server, url: str) -> None:
    with pytest.raises(ToolError, match="http|absolute|host"):
        make().run({"url": url})
    assert server.received == []


def test_a_disallowed_method_is_refused(server: Server) -> None:
    tool = make(methods=("GET",))
    with pytest.raises(ToolError, match="method POST is not allowed"):
        tool.run({"url": f"{server.base}/submit", "method": "POST", "body": "x"})
    assert server.received == []
    with pytest.raises(ToolArgumentError, match="method"):
        ToolRegistry([tool]).parse_arguments(
            tool, json.dumps({"url": f"{server.base}/submit", "method": "DELETE"})
        )


def test_the_model_cannot_set_host_or_configured_headers(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTRUN_TEST_KEY", SECRET)
    tool = make(headers_env={"X-Api-Key": "AGENTRUN_TEST_KEY"})
    with pytest.raises(ToolError, match="Host"):
        tool.run({"url": f"{server.base}/echo", "headers": {"Host": "evil.invalid"}})
    with pytest.raises(ToolError, match="configuration"):
        tool.run({"url": f"{server.base}/echo", "headers": {"x-api-key": "mine"}})
    with pytest.raises(ToolError, match="invalid"):
        tool.run({"url": f"{server.base}/echo", "headers": {"X-A": "a\r\nInjected: 1"}})
    assert server.received == []


# -- where names lead ------------------------------------------------------------------------


@pytest.fixture
def internal_name(monkeypatch: pytest.MonkeyPatch) -> str:
    """A name that resolves to the loopback server, as a split-horizon name or a rebinding
    DNS answer would."""
    real = socket.getaddrinfo

    def resolve(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        internal = host in ("internal.test", b"internal.test")  # anyio passes bytes
        return real("127.0.0.1" if internal else host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    return "internal.test"


def test_a_name_that_resolves_to_an_internal_address_is_refused(
    server: Server, internal_name: str
) -> None:
    with pytest.raises(
        ToolError, match=r"internal\.test resolves to 127\.0\.0\.1, not a public address"
    ) as refused:
        make(hosts=(internal_name,)).run({"url": f"http://{internal_name}:{server.port}/hello"})
    assert "private_addresses: true" in str(refused.value)  # what to change, if it is meant
    assert server.received == []  # nothing was sent


def test_private_addresses_lets_names_reach_internal_addresses(
    server: Server, internal_name: str
) -> None:
    tool = make(hosts=(internal_name,), private_addresses=True)
    assert tool.run({"url": f"http://{internal_name}:{server.port}/hello"}).endswith("hello there")


def test_a_redirect_to_a_name_with_an_internal_address_is_refused(
    server: Server, internal_name: str
) -> None:
    """The first URL's host is listed as an address and reached; the redirect's name is on
    the list too, but leads to an internal address: it is never contacted."""
    tool = make(hosts=("127.0.0.1", internal_name))
    with pytest.raises(ToolError, match="not a public address"):
        tool.run({"url": f"{server.base}/redirect-internal"})
    assert server.paths() == ["/redirect-internal"]


def test_hosts_listed_as_addresses_or_localhost_are_reached_as_listed(server: Server) -> None:
    local = make(hosts=("localhost",)).run({"url": f"http://localhost:{server.port}/hello"})
    assert local.endswith("hello there")
    assert make().run({"url": f"{server.base}/hello"}).endswith("hello there")  # 127.0.0.1


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True),
        ("2606:4700:4700::1111", True),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("127.0.0.1", False),
        ("169.254.169.254", False),  # cloud metadata services
        ("100.64.0.1", False),  # shared address space (carrier-grade NAT)
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1%eth0", False),
        ("fd00::1", False),
        ("::ffff:10.0.0.1", False),  # IPv4 written as IPv6
        ("::ffff:93.184.215.14", True),
    ],
)
def test_which_addresses_are_public(address: str, public: bool) -> None:
    assert address_is_public(address) is public


# -- redirects -------------------------------------------------------------------------------


def test_a_redirect_within_the_allowlist_is_followed(server: Server) -> None:
    result = make().run({"url": f"{server.base}/redirect-local"})
    assert f"redirected: 302 -> {server.base}/hello" in result
    assert f"URL: {server.base}/hello" in result
    assert result.endswith("hello there")


@pytest.mark.parametrize(
    ("path", "host"), [("/redirect-localhost", "localhost"), ("/redirect-invalid", "evil.invalid")]
)
def test_a_redirect_to_a_host_outside_the_allowlist_is_refused(
    server: Server, path: str, host: str
) -> None:
    with pytest.raises(ToolError, match=rf"redirect from .* refused: host '{host}'"):
        make().run({"url": f"{server.base}{path}"})
    assert server.paths() == [path]  # the target was never contacted


def test_a_redirect_to_another_scheme_is_refused(server: Server) -> None:
    with pytest.raises(ToolError, match="refused: only http"):
        make().run({"url": f"{server.base}/redirect-ftp"})


def test_redirects_are_limited(server: Server) -> None:
    with pytest.raises(ToolError, match="more than 5 redirects"):
        make().run({"url": f"{server.base}/loop"})
    assert len(server.received) == 6


def test_a_redirect_that_keeps_post_needs_post_allowed(server: Server) -> None:
    # 307 keeps the method; the second server is on another port of the same host
    tool = make(methods=("POST",))
    result = tool.run({"url": f"{server.base}/redirect-other-origin", "method": "POST"})
    assert result.startswith("HTTP 200")
    assert server.other is not None
    assert server.other.received[-1]["method"] == "POST"


# -- size cap and timeout --------------------------------------------------------------------


def test_the_body_is_capped_and_reading_stops(server: Server) -> None:
    result = make(max_bytes=1000).run({"url": f"{server.base}/endless"})
    body = result.split("\n\n", 1)[1]
    assert body.startswith("x" * 1000 + "\n[body truncated: only the first 1000 bytes")
    assert body.count("x") == 1000


def test_a_body_exactly_at_the_cap_is_not_marked_truncated(server: Server) -> None:
    result = make(max_bytes=len("hello there")).run({"url": f"{server.base}/hello"})
    assert result.endswith("\n\nhello there")


def test_a_slow_server_times_out(server: Server) -> None:
    with pytest.raises(ToolError, match="timed out"):
        make(timeout_s=0.5).run({"url": f"{server.base}/slow"})


# -- secret headers --------------------------------------------------------------------------


def test_env_headers_are_sent_but_never_shown(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTRUN_TEST_KEY", SECRET)
    tool = make(headers_env={"X-Api-Key": "AGENTRUN_TEST_KEY"})
    result = tool.run({"url": f"{server.base}/echo"})
    assert server.received[-1]["headers"]["X-Api-Key"] == SECRET
    assert SECRET not in result
    assert "[REDACTED]" in result


def test_env_headers_follow_same_origin_redirects_only(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTRUN_TEST_KEY", SECRET)
    tool = make(methods=("GET", "POST"), headers_env={"X-Api-Key": "AGENTRUN_TEST_KEY"})
    tool.run({"url": f"{server.base}/redirect-same-origin-echo"})
    assert server.received[-1]["headers"].get("X-Api-Key") == SECRET
    tool.run({"url": f"{server.base}/redirect-other-origin", "method": "POST"})
    assert server.other is not None
    assert "X-Api-Key" not in server.other.received[-1]["headers"]


def test_a_missing_header_variable_names_the_variable(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AGENTRUN_TEST_MISSING", raising=False)
    tool = make(headers_env={"Authorization": "AGENTRUN_TEST_MISSING"})
    with pytest.raises(ToolError, match="AGENTRUN_TEST_MISSING is not set"):
        tool.run({"url": f"{server.base}/hello"})


def test_secret_values_are_redacted_from_errors(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTRUN_TEST_KEY", SECRET)
    tool = make(headers_env={"X-Api-Key": "AGENTRUN_TEST_KEY"})
    with pytest.raises(ToolError) as caught:
        tool.run({"url": f"http://{SECRET}.invalid/"})
    assert SECRET not in str(caught.value)


# -- allowlist, risk, schema -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "patterns", "expected"),
    [
        ("api.example.com", ("*.example.com",), True),
        ("a.b.example.com", ("*.example.com",), True),
        ("example.com", ("*.example.com",), False),
        ("evilexample.com", ("*.example.com",), False),
        ("example.com.evil.net", ("*.example.com",), False),
        ("API.GitHub.com.", ("api.github.com",), True),
        ("api.github.com.evil.net", ("api.github.com",), False),
        ("github.com", ("api.github.com",), False),
        ("xn--bcher-kva.example", ("bücher.example",), True),
        ("127.0.0.1", ("127.0.0.1",), True),
        ("127.0.0.2", ("127.0.0.1",), False),
        ("", ("*",), False),
    ],
)
def test_host_patterns(host: str, patterns: tuple[str, ...], expected: bool) -> None:
    assert host_allowed(host, patterns) is expected


def test_risk_follows_the_methods() -> None:
    assert make(methods=("GET", "HEAD")).risk == "medium"
    tool = make(methods=("GET", "POST"))
    assert tool.risk == "high"
    assert tool.risk_for({"url": "http://x/"}) == "medium"
    assert tool.risk_for({"url": "http://x/", "method": "HEAD"}) == "medium"
    assert tool.risk_for({"url": "http://x/", "method": "POST"}) == "high"
    overridden = make(methods=("GET", "POST"), risk="low")
    assert overridden.risk == "low"
    assert overridden.risk_for({"url": "http://x/", "method": "POST"}) == "low"


def test_schema_lists_only_the_allowed_methods() -> None:
    tool = make(methods=("GET", "PUT"))
    assert tool.parameters["properties"]["method"]["enum"] == ["GET", "PUT"]
    registry = ToolRegistry([tool])
    assert registry.parse_arguments(tool, '{"url": "http://127.0.0.1/"}') == {
        "url": "http://127.0.0.1/"
    }
    with pytest.raises(ToolArgumentError):
        registry.parse_arguments(tool, '{"url": "http://127.0.0.1/", "verb": "GET"}')


def test_a_spec_without_methods_is_a_setup_error() -> None:
    with pytest.raises(SetupError, match="no method"):
        make(methods=())
