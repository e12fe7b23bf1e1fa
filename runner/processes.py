"""Process helpers shared by the store, the daemon, the MCP client, the shell tool, guards."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterable


def confined_environment(env_allow: Iterable[str]) -> dict[str, str]:
    """``PATH`` plus the variables named in ``env_allow`` that are set, from ``os.environ``.

    The environment of a command started on an agent's behalf (the ``shell`` tool, a
    ``command`` guard): nothing else of agentrun's own environment leaks into it.
    """
    env = {"PATH": os.environ.get("PATH", os.defpath)}
    for name in env_allow:
        value = os.environ.get(name)
        if value is not None:
            env[name] = value
    return env


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` is running on this machine.

    A zombie (exited, not yet reaped by its parent) counts as dead: it will never write
    another heartbeat. A process of another user counts as alive.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (not Linux): kill(0) is all we know


def kill_group(pgid: int) -> None:
    """Send SIGKILL to process group ``pgid``; nothing when it is gone or not ours."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
