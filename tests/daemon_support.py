"""The model the daemon's workers use in tests (AGENTRUN_MODEL_FACTORY), and test tools."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from runner.testing import FunctionModel, Scripted, call, text


def model(spec: Any) -> FunctionModel:
    """Echo the goal; agents whose goal starts with 'write' first write a file, 'sleep' sleeps."""

    def respond(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Scripted:
        goal = next(m["content"] for m in messages if m["role"] == "user")
        done = any(m["role"] == "tool" for m in messages)
        names = {t["function"]["name"] for t in tools}
        if not done and goal.startswith("write") and "write_file" in names:
            return call("write_file", {"path": "inbox/reply.txt", "content": goal})
        if goal.startswith("ask") and "ask_human" in names:
            # ask a person (choices after "ask:", separated by "|"), then say what came back
            results = [m["content"] for m in messages if m["role"] == "tool"]
            if not results:
                listed = goal.partition("ask:")[2]
                choices = [c.strip() for c in listed.split("|")] if listed else []
                asked = {"question": "Which one?", "context": goal}
                return call("ask_human", {**asked, **({"choices": choices} if choices else {})})
            return text(f"the person said: {results[-1]}")
        if not done and goal.startswith("sleep") and "nap" in names:
            return call("nap", {"seconds": 30})
        if goal.startswith("write then hold") and "hold" in names:
            # write (medium risk, journaled), then hold while the file named last exists
            called = [c["function"]["name"] for m in messages for c in m.get("tool_calls") or []]
            if "write_file" not in called:
                return call("write_file", {"path": "inbox/reply.txt", "content": goal})
            if "hold" not in called:
                return call("hold", {"path": goal.split()[-1]})
        return text(f"done: {goal}")

    return FunctionModel(respond)


def nap(seconds: float) -> str:
    """Sleep.

    Args:
        seconds: how long.
    """
    time.sleep(seconds)
    return json.dumps({"slept": seconds})


def hold(path: str) -> str:
    """Wait while the file ``path`` exists (at most 120 s); ``path``.holding says it began.

    Args:
        path: the file to wait for.
    """
    Path(path + ".holding").write_text("")
    deadline = time.monotonic() + 120
    while Path(path).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return json.dumps({"held": path})
