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
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import AgentrunError, UsageError

if TYPE_CHECKING:
    from .scheduler import Daemon


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


class ControlServer:
    """Answers control requests for a :class:`runner.scheduler.Daemon`."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    async def start(self) -> None:
        """Listen on the owner-only control socket."""
        path = socket_path(self.daemon.home)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a stale socket: the lock proves no daemon owns it
        old = os.umask(0o177)
        try:
            server = await asyncio.start_unix_server(self.handle, path=str(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        self.daemon._servers.append(server)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One request line in, one answer line out."""
        try:
            line = await reader.readline()
            request = json.loads(line or b"{}")
            answer = self.answer(request)
        except (UsageError, ValueError, KeyError) as error:
            answer = {"error": str(error)}
        writer.write((json.dumps(answer) + "\n").encode())
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one control request (``status``, ``trigger``, ``stop``)."""
        op = request.get("op")
        if op == "status":
            return self.status()
        if op == "stop":
            self.daemon.request_stop()
            return {"stopping": True, "running": sorted(self.daemon.executor.running)}
        if op == "trigger":
            return self.manual(request)
        raise UsageError(f"unknown control request {op!r}")

    def manual(self, request: dict[str, Any]) -> dict[str, Any]:
        """A manual trigger; a key seen before returns the run it started."""
        from .compiler import coerce_inputs
        from .scheduler import Fire
        from .store import new_run_id

        name = str(request.get("agent"))
        agent = self.daemon.agents.get(name)
        if agent is None:
            known = ", ".join(sorted(self.daemon.agents)) or "none"
            raise UsageError(f"no agent named {name!r} in the daemon; agents: {known}")
        manual = [t for t in agent.spec.triggers if t.kind == "manual" and t.manual]
        if not manual:
            raise UsageError(f"agent {name!r} has no manual trigger (add '- manual: true')")
        if self.daemon.stopping:
            raise UsageError("the daemon is stopping")
        key = request.get("key") or None
        if key:
            seen = self.daemon.store.fire_by_key(name, key)
            if seen is not None:
                return {"run_id": seen.run_id, "outcome": seen.outcome, "duplicate": True}
        inputs = coerce_inputs(agent.spec, request.get("inputs") or {})
        fire = Fire(name, "manual", manual[0].index, new_run_id(), inputs, key=key)
        outcome = self.daemon.fire(fire)
        return {"run_id": fire.run_id, "outcome": outcome, "duplicate": outcome == "duplicate"}

    def status(self) -> dict[str, Any]:
        """Agents, triggers, next fire times, running runs, last outcomes."""
        from .scheduler import _iso

        agents = []
        for agent in sorted(self.daemon.agents.values(), key=lambda a: a.name):
            triggers = []
            for trigger in agent.spec.triggers:
                entry: dict[str, Any] = {"kind": trigger.kind}
                if trigger.kind == "cron":
                    entry["cron"] = trigger.cron
                    entry["timezone"] = trigger.timezone
                    nxt = agent.next_fire.get(trigger.index)
                    entry["next"] = _iso(nxt) if nxt else None
                elif trigger.kind == "watch" and trigger.watch:
                    entry["paths"] = list(trigger.watch.paths)
                elif trigger.kind == "webhook" and trigger.webhook:
                    entry["path"] = trigger.webhook.path or f"/hooks/{agent.name}"
                triggers.append(entry)
            agents.append(
                {
                    "name": agent.name,
                    "path": str(agent.path),
                    "triggers": triggers,
                    "running": sorted(agent.active),
                    "queued": [q.run_id for q in agent.queued],
                    "last": agent.last_outcome,
                }
            )
        return {
            "pid": os.getpid(),
            "started": _iso(self.daemon.started_at),
            "agents": agents,
            "errors": [e.split(":", 1)[1] for e in self.daemon.errors.values()],
            "workers_idle": len([w for w in self.daemon.executor.idle if w.ready.is_set()]),
            # The daemon's own process never imports litellm: its workers do.
            "litellm_imported": "litellm" in sys.modules,
        }


def new_idempotency_key() -> str:
    """A fresh key for a manual trigger (the CLI reuses it when it retries)."""
    import uuid

    return uuid.uuid4().hex
