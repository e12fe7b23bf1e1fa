"""Tools for the kill tests: a side effect (a line appended to a file) that takes a moment."""

from __future__ import annotations

import os
import time


def _append(line: str) -> None:
    """Append ``line`` to $KILL_TEST_FILE, durably."""
    with open(os.environ["KILL_TEST_FILE"], "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def append_line(line: str) -> str:
    """Append one line to the file named by $KILL_TEST_FILE.

    Args:
        line: the text to append.
    """
    time.sleep(0.02)
    _append(line)
    time.sleep(0.02)
    return f"appended {line}"


def append_then_hang(line: str) -> str:
    """Append one line to $KILL_TEST_FILE, then wait (for a kill) for up to an hour.

    Args:
        line: the text to append.
    """
    _append(line)
    time.sleep(3600)
    return f"appended {line}"


def mark(token: str) -> str:
    """Append ``TOKEN PID PGID TIME`` to $KILL_TEST_FILE: one line per execution of a call.

    The fault test's model gives each call a fresh ``token`` (a UUID), which the run store
    records in the call's arguments: the token names the run and call id of a line, the
    process group (an ``agentrun worker``'s session) the worker that executed it, and TIME
    (Unix seconds) when, to compare with the recorded call's ``created_at``.

    Args:
        token: the call's token.
    """
    _append(f"{token} {os.getpid()} {os.getpgid(0)} {time.time():.6f}")
    time.sleep(0.05)
    return f"marked {token}"
