"""The daemon's control API: a Unix socket in AGENTRUN_HOME, owner-only.

One JSON request per connection, one JSON answer: ``{"op": "status"}``,
``{"op": "trigger", "agent": ..., "inputs": {...}, "key": ...}`` and ``{"op": "stop"}``.
:func:`control_request` is the client the CLI uses (no asyncio, no heavy imports);
:class:`ControlServer` answers inside the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..errors import AgentrunError, UsageError


class DaemonError(AgentrunError):
    """The daemon cannot start (another one holds the lock) or cannot be reached (exit 1)."""


def socket_path(home: Path) -> Path:
    """The daemon's control socket in ``home`` (owner-only permissions)."""
    return home / "daemon.sock"


def control_request(home: Path, request: dict[str, Any], timeout_s: float = 10.0) -> dict[str, Any]:
    """Send one request to the running daemon and return its answer.

    Raises:
        DaemonError: no daemon is running for ``home``, or it did not answer.
    """
    path = socket_path(home)
    if not path.exists():
        raise DaemonError(
            f"no daemon is running for AGENTRUN_HOME={home}; start one with: agentrun daemon DIR"
        )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout_s)
        try:
            client.connect(str(path))
            client.sendall((json.dumps(request) + "\n").encode())
            data = b""
            while not data.endswith(b"\n"):
                chunk = client.recv(65536)
                if not chunk:
                    break
                data += chunk
        except (ConnectionRefusedError, FileNotFoundError):
            raise DaemonError(
                f"no daemon is running for AGENTRUN_HOME={home} (stale socket); "
                "start one with: agentrun daemon DIR"
            ) from None
        except TimeoutError:
            raise DaemonError(f"the daemon did not answer within {timeout_s:g} s") from None
    if not data:
        raise DaemonError("the daemon closed the connection without an answer")
    answer: dict[str, Any] = json.loads(data)
    if "error" in answer:
        raise UsageError(str(answer["error"]))
    return answer


#: Answers one control request (the parsed JSON object) with a JSON-ready dict.
#: Raises :class:`runner.errors.UsageError`, ValueError or KeyError for a bad request.
Handler = Callable[[dict[str, Any]], dict[str, Any]]


class ControlServer:
    """Answers control requests on the owner-only socket in ``home``.

    Args:
        home: AGENTRUN_HOME (the socket is :func:`socket_path`).
        handlers: ``op`` -> its :data:`Handler` (the daemon gives ``status``, ``trigger``
            and ``stop``).
    """

    def __init__(self, home: Path, handlers: Mapping[str, Handler]) -> None:
        self.home = home
        self.handlers = dict(handlers)
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        """Listen on the owner-only control socket (a stale socket file is replaced)."""
        path = socket_path(self.home)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a stale socket: the lock proves no daemon owns it
        old = os.umask(0o177)
        try:
            self.server = await asyncio.start_unix_server(self.handle, path=str(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o600)

    async def close(self) -> None:
        """Stop listening and remove the socket file."""
        if self.server is not None:
            self.server.close()
        with contextlib.suppress(FileNotFoundError):
            socket_path(self.home).unlink()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One request line in, one answer line out."""
        try:
            line = await reader.readline()
            answer = self.answer(json.loads(line or b"{}"))
        except (UsageError, ValueError, KeyError) as error:
            answer = {"error": str(error)}
        writer.write((json.dumps(answer) + "\n").encode())
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one control request by its ``op``.

        Raises:
            UsageError: an unknown ``op`` (or what the handler raises).
        """
        op = request.get("op") if isinstance(request, dict) else None
        handler = self.handlers.get(str(op))
        if handler is None:
            raise UsageError(f"unknown control request {op!r}")
        return handler(request)


def new_idempotency_key() -> str:
    """A fresh key for a manual trigger (the CLI reuses it when it retries)."""
    import uuid

    return uuid.uuid4().hex
