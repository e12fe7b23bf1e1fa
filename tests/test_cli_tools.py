"""`agentrun tools SPEC`: every tool the model would see, MCP servers started to list theirs."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.cli import main
from tests.helpers import write_spec
from tests.test_mcp import time_server_command


def test_tools_lists_builtin_and_mcp_tools_with_decisions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    command = time_server_command()
    (tmp_path / "data").mkdir()
    spec = write_spec(
        tmp_path,
        f"""
        version: 1
        name: lister
        model: openai/gpt-4o-mini
        goal: list
        tools:
          read_file: {{paths: [data]}}
          write_file: {{paths: [data]}}
          mcp:
            time:
              command: "{command}"
              allow: [get_current_time]
              trusted: true
        autonomy: approve-writes
        rules:
          deny: ["write_file:path=data/secret*"]
        """,
    )
    with pytest.raises(SystemExit) as exited:
        main(["tools", str(spec)])
    out = capsys.readouterr().out
    assert exited.value.code == 0
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:]}
    assert lines["read_file"][:2] == ["low", "runs"]
    assert lines["write_file"][:2] == ["medium", "asks"]
    # readOnlyHint from a trusted server: low, so it runs at approve-writes.
    assert lines["time__get_current_time"] == ["low", "runs", "mcp:time"]
    assert "time__convert_time" not in lines  # not in the allow list: never offered
