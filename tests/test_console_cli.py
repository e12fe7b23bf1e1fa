"""`agentrun console`: where it listens, what it refuses, its token, and Ctrl-C."""

from __future__ import annotations

import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from runner.cli.console import is_loopback, parse_address
from runner.errors import UsageError
from runner.web.auth import Credential, bearer_token, csrf_matches, load_token
from tests.conftest import ROOT
from tests.test_web_api import console_env, start_console


def console(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner", "console", "--no-browser", *args],
        cwd=ROOT,
        env=console_env(home),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "[::]", "example.org"])
def test_a_non_loopback_address_is_refused_without_allow_remote(tmp_path: Path, host: str) -> None:
    refused = console(tmp_path / "home", "--http", f"{host}:8790")
    assert refused.returncode == 2
    assert "--allow-remote" in refused.stderr and "TLS" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (tmp_path / "home" / "console.token").exists()  # refused before anything


@pytest.mark.parametrize("address", ["8790", "localhost:", "localhost:http", "[::1]:70000"])
def test_a_malformed_address_is_a_usage_error(tmp_path: Path, address: str) -> None:
    refused = console(tmp_path / "home", "--http", address)
    assert refused.returncode == 2 and "is not HOST:PORT" in refused.stderr


def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        failed = console(tmp_path / "home", "--http", f"127.0.0.1:{port}")
    assert failed.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in failed.stderr
    assert "--http HOST:PORT" in failed.stderr and "Traceback" not in failed.stderr


def test_serves_until_interrupted_and_keeps_its_token(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = start_console(home)
    try:
        token_file = home / "console.token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert first.login.startswith("http://127.0.0.1:") and first.token in first.login
        with first.client() as client:
            assert client.get("/api/v1/runs").json() == {"runs": [], "next_cursor": None}
            # An open event stream does not keep Ctrl-C from stopping the server.
            with client.stream("GET", "/api/v1/events/stream") as stream:
                assert stream.status_code == 200
                first.process.send_signal(signal.SIGINT)  # Ctrl-C
                assert first.process.wait(timeout=60) == 0
        assert first.process.stdout is not None
        rest = first.process.stdout.read()
        assert "agentrun console: stopped" in rest and "Traceback" not in rest, rest
    finally:
        first.stop()
    second = start_console(home)
    try:
        assert second.token == first.token  # the same token until the file is deleted
    finally:
        second.stop()


def test_allow_remote_listens_on_every_interface(tmp_path: Path) -> None:
    served = start_console(tmp_path / "home", "--http", "0.0.0.0:0", "--allow-remote")
    try:
        port = served.base.rsplit(":", 1)[1]
        answer = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/approvals",
            headers={"Authorization": f"Bearer {served.token}"},
            timeout=60,
        )
        assert answer.json() == {"approvals": []}
    finally:
        served.stop()


# ---------------------------------------------------------------------------------------------
# the pure parts


def test_addresses_and_loopback() -> None:
    assert parse_address("127.0.0.1:8790") == ("127.0.0.1", 8790)
    assert parse_address("[::1]:0") == ("::1", 0)
    with pytest.raises(UsageError):
        parse_address(":8790")
    assert is_loopback("localhost") and is_loopback("127.0.0.2") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1")
    assert not is_loopback("my-laptop.local")


def test_token_file_is_made_owner_only_and_tightened(tmp_path: Path) -> None:
    path = tmp_path / "console.token"
    made = load_token(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(made.token) >= 40
    path.chmod(0o644)
    again = load_token(path)
    assert again == made and stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("")
    assert load_token(path).token not in ("", made.token)


def test_credentials_compare_whole_values() -> None:
    credential = Credential("console", "s3cret-token")
    assert credential.matches_token("s3cret-token")
    assert not credential.matches_token("s3cret") and not credential.matches_token(None)
    assert credential.session != credential.token and credential.matches_session(credential.session)
    assert not credential.matches_session(credential.token)
    assert bearer_token("Bearer abc") == "abc" and bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None and bearer_token(None) is None
    assert csrf_matches("x", "x") and not csrf_matches("x", "y") and not csrf_matches("", "")
