"""The status line at the terminal (issue 18, item 3): what the run waits for, only at a tty."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

from runner.cli.progress import ERASE_LINE, Progress
from runner.events import (
    ApprovalDecided,
    ApprovalRequested,
    ModelCalled,
    RunStarted,
    ToolCalled,
    ToolStarted,
)
from runner.spec import Risk
from runner.testing import FakeOpenAIServer, call, text
from tests.helpers import write_spec


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_line_follows_the_run_and_steps_aside() -> None:
    stream, clock = io.StringIO(), Clock()
    progress = Progress(stream, enabled=True, clock=clock)
    progress.event(RunStarted("R", "a", "openai/gpt-4o", "", "", {}, "goal"))
    assert stream.getvalue().endswith("⋯ starting openai/gpt-4o (step 1) · 0.0 s")
    clock.now += 2.5
    progress.echo("  step 1: model → read_file")
    out = stream.getvalue()
    # the line is erased, the event line printed, the line drawn again with its seconds
    assert out.endswith(
        f"{ERASE_LINE}  step 1: model → read_file\n{ERASE_LINE}"
        "⋯ starting openai/gpt-4o (step 1) · 2.5 s"
    )
    progress.event(ModelCalled("R", 1, "openai/gpt-4o", 1, 1, None, 2.5, None, [{"name": "x"}]))
    progress.event(ToolStarted("R", 1, "c1", "read_file", "{}", "allow"))
    assert stream.getvalue().endswith("⋯ running read_file · 0.0 s")
    progress.event(ToolCalled("R", 1, "c1", "read_file", "{}", "allow", "ok", "text", 0.1))
    assert stream.getvalue().endswith("⋯ waiting for openai/gpt-4o (step 2) · 0.0 s")
    # an approval prompt gets a clean line, and nothing is drawn while it is asked
    progress.event(ApprovalRequested("R", "c2", "write_file", "{}", "sha", Risk.MEDIUM, "why"))
    asked = stream.getvalue()
    assert asked.endswith(ERASE_LINE)
    progress.set("running write_file")
    assert stream.getvalue() == asked
    progress.event(ApprovalDecided("R", "c2", approved=True))
    assert stream.getvalue().endswith("⋯ running write_file · 0.0 s")
    progress.stop()
    assert stream.getvalue().endswith(ERASE_LINE)


def test_nothing_is_drawn_when_not_enabled() -> None:
    stream = io.StringIO()  # not a terminal
    progress = Progress(stream)
    assert not progress.enabled
    progress.event(RunStarted("R", "a", "openai/gpt-4o", "", "", {}, "goal"))
    progress.echo("a line")
    progress.stop()
    assert stream.getvalue() == "a line\n"


def _run(tmp_path: Path, api_base: str, stderr_tty: bool) -> str:
    spec = write_spec(
        tmp_path,
        f"""
        version: 1
        name: reader
        model: {{id: openai/fake, api_base: {api_base}, api_key_env: FAKE_API_KEY}}
        goal: Read data/a.txt.
        tools:
          read_file: {{paths: [data]}}
        """,
    )
    env = {**os.environ, "AGENTRUN_HOME": str(tmp_path / "home"), "FAKE_API_KEY": "sk-fake-0"}
    argv = [sys.executable, "-m", "runner", "run", str(spec)]
    if not stderr_tty:
        done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        assert done.returncode == 0, done.stderr
        return done.stderr
    parent, child = pty.openpty()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=child, env=env)
    os.close(child)
    chunks = []
    while True:
        ready, _, _ = select.select([parent], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(parent, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    assert process.wait(timeout=60) == 0
    os.close(parent)
    return b"".join(chunks).decode("utf-8", "replace")


def test_agentrun_run_shows_the_line_at_a_terminal_only(tmp_path: Path) -> None:
    for folder in ("tty", "pipe"):
        (tmp_path / folder / "data").mkdir(parents=True)
        (tmp_path / folder / "data" / "a.txt").write_text("alpha\n")
    script = [call("read_file", {"path": "data/a.txt"}), text("alpha")]
    with FakeOpenAIServer(list(script)) as server:
        shown = _run(tmp_path / "tty", server.api_base, stderr_tty=True)
    assert "⋯ starting openai/fake (step 1)" in shown
    assert "⋯ waiting for openai/fake (step 2)" in shown
    # the last thing on the terminal is the summary line, the status line erased before it
    assert shown.rindex("[completed]") > shown.rindex("\x1b[2K")
    with FakeOpenAIServer(list(script)) as server:
        piped = _run(tmp_path / "pipe", server.api_base, stderr_tty=False)
    assert "[completed]" in piped and "⋯" not in piped and "\x1b[2K" not in piped
