"""Autonomy ``suggest`` marks a proposal the tool itself would refuse (issue 18).

A proposed call outside a file tool's roots, a shell command not on the list, or a host not
allowed was listed like any other proposal: approving it would only have produced an error.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from runner.compiler import compile_agent
from runner.events import StopReason, ToolCalled
from runner.loop import Run
from runner.spec import load_spec
from runner.testing import FakeOpenAIServer, ScriptedModel, calls
from tests.helpers import write_spec
from tests.test_cli import fake_spec, invoke

TOOLS = """
autonomy: suggest
tools:
  read_file: {paths: [data]}
  shell: {commands: ["ls *"]}
  http_request: {hosts: [api.example.com]}
"""


def test_proposals_the_tools_would_refuse_are_marked(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    spec = load_spec(
        write_spec(
            tmp_path,
            "version: 1\nname: suggester\nmodel: openai/scripted\ngoal: Tidy up.\n" + TOOLS,
        )
    )
    model = ScriptedModel(
        [
            calls(
                ("read_file", {"path": "data/a.txt"}),
                ("read_file", {"path": "/etc/passwd"}),
                ("shell", {"argv": "rm -rf data"}),
                ("http_request", {"url": "https://evil.example.net/x"}),
                ("http_request", {"url": "https://api.example.com/ok"}),
            )
        ]
    )
    events: list[object] = []
    finished = asyncio.run(Run(compile_agent(spec), model, [events.append]).execute())
    assert finished.stop_reason is StopReason.PROPOSED
    lines = (finished.final or "").splitlines()[1:]
    marked = ["[would be refused:" in line for line in lines]
    assert marked == [False, True, True, True, False], lines
    assert "outside the allowed paths" in lines[1]
    assert "'rm -rf data' is not allowed" in lines[2]
    assert "'evil.example.net' is not in the allowed hosts" in lines[3]
    recorded = [e for e in events if isinstance(e, ToolCalled)]
    assert [e.status for e in recorded] == ["proposed"] * 5
    assert [bool(e.error) for e in recorded] == [False, True, True, True, False]


def test_the_cli_shows_the_mark(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_API_KEY", "sk-test-not-a-real-key")
    with FakeOpenAIServer([calls(("read_file", {"path": "../secrets.txt"}))]) as server:
        spec = fake_spec(tmp_path, server.api_base, "autonomy: suggest\n")
        code, out, err = invoke(["run", str(spec)], capsys)
    assert code == 0, err
    assert "read_file" in out and "[would be refused: path '../secrets.txt' contains '..'" in out
