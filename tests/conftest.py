"""Shared fixtures: an isolated AGENTRUN_HOME per test, and no network beyond loopback."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

try:  # pytest imports this file as `conftest`, with tests/ on sys.path
    from services import postgres_server, postgres_url, redis_server, redis_url
    from store_backends import store, store_location
except ModuleNotFoundError:  # a worker process importing a test module (`tests.conftest`)
    from tests.services import postgres_server, postgres_url, redis_server, redis_url
    from tests.store_backends import store, store_location

__all__ = [
    "postgres_server",
    "postgres_url",
    "redis_server",
    "redis_url",
    "store",
    "store_location",
]

ROOT = Path(__file__).resolve().parent.parent

_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address: Any) -> Any:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        host = address[0]
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise ConnectionRefusedError(f"tests may not reach the network ({host!r})")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def agentrun_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own AGENTRUN_HOME, no provider keys, and loopback-only sockets."""
    home = tmp_path / "agentrun-home"
    monkeypatch.setenv("AGENTRUN_HOME", str(home))
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    for name in (
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "GEMINI_API_KEY",
        "AGENTRUN_DEBUG",
        "AGENTRUN_STORE",
        "AGENTRUN_BROKER",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(socket.socket, "connect", _loopback_only)
    return home


@pytest.fixture(params=["direct", "litellm"])
def model_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a model behaviour test on both paths to OpenAI-compatible endpoints: the direct
    openai SDK client and litellm (``AGENTRUN_OPENAI_PATH``, runner.models.openai_direct)."""
    if request.param == "litellm":
        monkeypatch.setenv("AGENTRUN_OPENAI_PATH", "litellm")
    else:
        monkeypatch.delenv("AGENTRUN_OPENAI_PATH", raising=False)
    return str(request.param)


# -- daemons run as real processes (tests/test_daemon.py's DaemonProcess) -----------------------


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """The AGENTRUN_HOME of a daemon a test starts (a folder of its own)."""
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def agents(tmp_path: Path) -> Path:
    """The spec folder a daemon a test starts watches."""
    folder = tmp_path / "agents"
    folder.mkdir()
    return folder


@pytest.fixture
def daemons() -> Iterator[list[Any]]:
    """Daemons a test started (``DaemonProcess``); the ones still running are killed after."""
    started: list[Any] = []
    yield started
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait()
        daemon.log.close()
