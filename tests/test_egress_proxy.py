"""The egress proxy (runner/sandbox/proxy.py): a real proxy.py process on a Unix socket.

Driven from the host side, as the sandbox's socat bridge would: a client connects to the
Unix socket and speaks HTTP to the proxy (CONNECT, or plain HTTP in absolute form), which
reaches a real HTTP server on loopback.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.errors import SetupError
from runner.sandbox.proxy import EgressDecision, EgressProxy
from tests.receivers import hello_server

DECISION_TIMEOUT_S = 10


@pytest.fixture
def server_port() -> Iterator[int]:
    with hello_server() as port:
        yield port


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty home folder for the proxy process: it must stay empty."""
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("HOME", str(folder))
    return folder


class Proxy:
    """An :class:`EgressProxy` started for a test, with its decisions in a queue."""

    def __init__(self, allow: tuple[str, ...]) -> None:
        self.decisions: queue.Queue[EgressDecision] = queue.Queue()
        self.proxy = EgressProxy(allow, self.decisions.put)
        self.socket = self.proxy.start()

    def decision(self) -> EgressDecision:
        return self.decisions.get(timeout=DECISION_TIMEOUT_S)

    def connect(self) -> socket.socket:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.settimeout(DECISION_TIMEOUT_S)
        client.connect(str(self.socket))
        return client

    def get(self, url: str) -> tuple[int, bytes]:
        """GET ``url`` through the proxy, as plain HTTP in absolute form."""
        connection = http.client.HTTPConnection("proxy", timeout=DECISION_TIMEOUT_S)
        connection.sock = self.connect()
        connection.request("GET", url)
        response = connection.getresponse()
        result = response.status, response.read()
        connection.close()
        return result

    def tunnel_get(self, host: str, port: int, path: str) -> tuple[int, bytes]:
        """CONNECT to ``host:port``, then GET ``path`` through the tunnel when it is open.

        Returns:
            The CONNECT's status and body when refused, else the GET's.
        """
        client = self.connect()
        client.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        reply = http.client.HTTPResponse(client, method="CONNECT")
        reply.begin()
        if reply.status != 200:
            result = reply.status, reply.read()
            client.close()
            return result
        connection = http.client.HTTPConnection(host, port, timeout=DECISION_TIMEOUT_S)
        connection.sock = client
        connection.request("GET", path)
        response = connection.getresponse()
        result = response.status, response.read()
        connection.close()
        return result

    def close(self) -> None:
        self.proxy.close()


@pytest.fixture
def make_proxy(home: Path) -> Iterator[type[Proxy]]:
    started: list[Proxy] = []

    class Started(Proxy):
        def __init__(self, allow: tuple[str, ...]) -> None:
            super().__init__(allow)
            started.append(self)

    yield Started
    for proxy in started:
        proxy.close()
    assert list(home.iterdir()) == []  # proxy.py wrote nothing into the home folder


def test_a_listed_host_is_reached_by_plain_http_and_recorded(
    make_proxy: type[Proxy], server_port: int
) -> None:
    proxy = make_proxy((f"localhost:{server_port}",))
    status, body = proxy.get(f"http://localhost:{server_port}/plain")
    assert (status, body) == (200, b"hello from /plain")
    assert proxy.decision() == EgressDecision("localhost", server_port, True, "127.0.0.1", "")


def test_a_listed_host_is_reached_through_a_connect_tunnel(
    make_proxy: type[Proxy], server_port: int
) -> None:
    proxy = make_proxy(("localhost",))
    status, body = proxy.tunnel_get("localhost", server_port, "/tunnelled")
    assert (status, body) == (200, b"hello from /tunnelled")
    assert proxy.decision() == EgressDecision("localhost", server_port, True, "127.0.0.1", "")


def test_the_same_server_under_an_unlisted_host_is_refused_and_recorded(
    make_proxy: type[Proxy], server_port: int
) -> None:
    proxy = make_proxy((f"localhost:{server_port}",))
    status, body = proxy.get(f"http://127.0.0.1:{server_port}/plain")
    assert status == 403
    assert b"not in the sandbox's network allowlist" in body
    refused = proxy.decision()
    assert (refused.host, refused.port, refused.allowed, refused.address) == (
        "127.0.0.1",
        server_port,
        False,
        None,
    )
    assert "not in the sandbox's network allowlist" in refused.reason

    status, _ = proxy.tunnel_get("127.0.0.1", server_port, "/tunnelled")
    assert status == 403
    assert proxy.decision().allowed is False


def test_a_listed_host_on_another_port_is_refused(
    make_proxy: type[Proxy], server_port: int
) -> None:
    proxy = make_proxy((f"localhost:{server_port + 1 if server_port < 65535 else 1}",))
    status, _ = proxy.tunnel_get("localhost", server_port, "/")
    assert status == 403
    assert proxy.decision().allowed is False


def test_the_metadata_address_is_refused(make_proxy: type[Proxy]) -> None:
    proxy = make_proxy(("localhost", "*.example.com"))
    status, _ = proxy.get("http://169.254.169.254/latest/meta-data/")
    assert status == 403
    decision = proxy.decision()
    assert (decision.host, decision.port, decision.allowed) == ("169.254.169.254", 80, False)
    status, _ = proxy.tunnel_get("169.254.169.254", 443, "/")
    assert status == 403
    assert proxy.decision().allowed is False


def test_closing_stops_the_process_and_its_acceptors_and_removes_the_socket(
    make_proxy: type[Proxy],
) -> None:
    proxy = make_proxy(("localhost",))
    pid = proxy.proxy.pid
    assert pid is not None
    assert _session_members(pid)  # proxy.py's acceptor runs in the proxy's session
    proxy.close()
    assert _session_members(pid) == []
    assert not proxy.socket.exists()
    assert not proxy.socket.parent.exists()
    with (
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client,
        pytest.raises(FileNotFoundError),
    ):
        client.connect(str(proxy.socket))
    proxy.close()  # again: nothing to do


def _session_members(session: int) -> list[int]:
    """Processes of session ``session`` still alive (not zombies), from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) == session and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def test_the_socket_lies_in_a_private_folder(make_proxy: type[Proxy]) -> None:
    proxy = make_proxy(("localhost",))
    assert proxy.socket.parent.stat().st_mode & 0o777 == 0o700


def test_a_bad_entry_is_refused_before_anything_starts() -> None:
    with pytest.raises(SetupError, match="network allowlist is invalid: egress host 'a b'"):
        EgressProxy(("a b",), lambda decision: None)


def test_a_proxy_that_cannot_start_names_its_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'no module named proxy' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(broken))
    proxy = EgressProxy(("localhost",), lambda decision: None)
    with pytest.raises(SetupError, match="exited before listening") as caught:
        proxy.start()
    assert "no module named proxy" in str(caught.value)
    proxy.close()


# -- the proxy's own process -----------------------------------------------------------------


def _run(tmp_path: Path, *allow: str) -> subprocess.Popen[bytes]:
    socket_path = tmp_path / "p.sock"
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runner.sandbox.proxy",
            "--socket",
            str(socket_path),
            "--allow",
            *allow,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "HOME": str(tmp_path)},
    )


def _ready(process: subprocess.Popen[bytes]) -> dict[str, str]:
    assert process.stdout is not None
    ready: dict[str, str] = json.loads(process.stdout.readline())
    return ready


def test_sigterm_stops_the_process_cleanly(tmp_path: Path) -> None:
    process = _run(tmp_path, "localhost")
    assert _ready(process) == {"ready": str(tmp_path / "p.sock")}
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=DECISION_TIMEOUT_S)
    assert process.returncode == 0
    assert b"Traceback" not in stderr
    assert not (tmp_path / "p.sock").exists()


def test_the_end_of_its_input_stops_the_process(tmp_path: Path) -> None:
    process = _run(tmp_path, "localhost")
    _ready(process)
    _, stderr = process.communicate(timeout=DECISION_TIMEOUT_S)  # closes its input
    assert process.returncode == 0
    assert b"Traceback" not in stderr


def test_a_bad_entry_on_the_command_line_is_a_message(tmp_path: Path) -> None:
    process = _run(tmp_path, "pypi.org", "*.*.bad")
    out, stderr = process.communicate(timeout=DECISION_TIMEOUT_S)
    assert process.returncode == 2
    assert out == b""
    assert b"agentrun egress proxy: egress host '*.*.bad'" in stderr
    assert b"Traceback" not in stderr


def test_importing_the_module_does_not_import_proxy_py() -> None:
    code = "import sys, runner.sandbox.proxy; print(sorted(m for m in sys.modules if m == 'proxy' or m.startswith('proxy.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- the plugin, in this process: what the proxy process cannot be made to resolve -------------


@pytest.fixture
def plugin(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The proxy's plugin with the rules ``rebind.example``, ``pypi.org:443`` and a resolver
    answering a loopback address for the first and a public one for the second."""
    from runner.sandbox import proxy_plugin

    monkeypatch.setenv(proxy_plugin.ALLOW_VARIABLE, json.dumps(["rebind.example", "pypi.org:443"]))
    proxy_plugin.rules.cache_clear()
    answers = {"rebind.example": "127.0.0.1", "pypi.org": "151.101.0.223"}

    def getaddrinfo(host: str, port: int, *args: object, **kwargs: object) -> list[object]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield proxy_plugin.EgressFilter("test", None, None, None)
    proxy_plugin.rules.cache_clear()


def _request(raw: bytes) -> Any:
    from proxy.http.parser import HttpParser

    return HttpParser.request(raw)


def _reported(capfd: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capfd.readouterr().out.splitlines()]


def test_the_plugin_refuses_a_listed_name_that_resolves_to_loopback(
    plugin: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    from proxy.http.exception import HttpRequestRejected

    request = _request(b"CONNECT rebind.example:443 HTTP/1.1\r\nHost: rebind.example:443\r\n\r\n")
    with pytest.raises(HttpRequestRejected) as refused:
        plugin.before_upstream_connection(request)
    assert refused.value.status_code == 403
    assert b"rebind.example resolves to 127.0.0.1, not a public address" in (
        refused.value.body or b""
    )
    assert _reported(capfd) == [
        {
            "host": "rebind.example",
            "port": 443,
            "allowed": False,
            "address": None,
            "reason": "rebind.example resolves to 127.0.0.1, not a public address (list the host "
            "as an IP address or as localhost to reach internal addresses)",
        }
    ]


def test_the_plugin_hands_proxy_py_the_address_it_checked(
    plugin: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    request = _request(b"GET http://pypi.org:443/simple/ HTTP/1.1\r\nHost: pypi.org\r\n\r\n")
    assert plugin.before_upstream_connection(request) is request
    assert plugin.resolve_dns("pypi.org", 443) == ("151.101.0.223", None)
    assert _reported(capfd) == [
        {"host": "pypi.org", "port": 443, "allowed": True, "address": "151.101.0.223", "reason": ""}
    ]


def test_the_plugin_never_lets_proxy_py_resolve_an_unchecked_name(
    plugin: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    from runner.sandbox.egress import EgressRefused

    with pytest.raises(EgressRefused):  # proxy.py answers 502 Bad Gateway
        plugin.resolve_dns("pypi.org", 443)
    assert _reported(capfd)[0]["allowed"] is False
