"""Small builders shared by the tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

from runner.spec import AgentSpec, load_spec


def write_spec(folder: Path, body: str, name: str = "agent.yaml") -> Path:
    """Write a spec (dedented) into ``folder`` and return its path."""
    path = folder / name
    path.write_text(textwrap.dedent(body).lstrip(), encoding="utf-8")
    return path


def make_spec(folder: Path, extra: str = "", model: str = "openai/scripted") -> AgentSpec:
    """A valid spec with read_file and list_dir confined to ``folder/data``, plus ``extra``."""
    (folder / "data").mkdir(exist_ok=True)
    body = f"""
    version: 1
    name: tester
    model: {model}
    goal: Look at the data folder.
    tools:
      read_file:
        paths: [data]
      list_dir:
        paths: [data]
    """
    return load_spec(write_spec(folder, textwrap.dedent(body) + textwrap.dedent(extra)))
