"""The scripted model and the counted tool of the Celery executor's tests (and its bench).

``model`` (AGENTRUN_MODEL_FACTORY=tests.celery_support:model): a 5-step conversation, four
calls of ``step`` (n = 0..3) and an answer. ``step`` appends ``step-N HOST PID`` to the file
$CELERY_TEST_FILE (the side effect the tests count), and while $CELERY_TEST_HOLD names a
file that exists, step 2 waits after its side effect (for a kill, or a cancel).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from runner.testing import FunctionModel, Scripted, call, text

#: The tool calls of one run; with the final answer, five model steps.
STEPS = 4


def model(spec: Any) -> FunctionModel:
    """Call ``step`` with n = 0, 1, 2, 3, then answer (the goal says which run it is)."""

    def respond(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Scripted:
        done = sum(1 for m in messages if m["role"] == "tool")
        if done < STEPS:
            return call("step", {"n": done})
        return text(f"{STEPS} steps done")

    return FunctionModel(respond)


def step(n: int) -> str:
    """Append one line to $CELERY_TEST_FILE; step 2 then waits while $CELERY_TEST_HOLD exists.

    Args:
        n: the step's number.
    """
    target = os.environ.get("CELERY_TEST_FILE")
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(f"step-{n} {socket.gethostname()} {os.getpid()}\n")
            handle.flush()
            os.fsync(handle.fileno())
    hold = os.environ.get("CELERY_TEST_HOLD")
    if n == 2 and hold:
        Path(hold + ".holding").write_text(str(os.getpid()))
        deadline = time.monotonic() + 120
        while Path(hold).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    return json.dumps({"step": n})
