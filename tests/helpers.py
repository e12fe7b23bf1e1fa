"""Small builders shared by the tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runner.spec import AgentSpec, load_spec
from runner.testing import ScriptedModel, call, text

#: The repository's root: where ``python -m runner`` finds the package (as tests/conftest.py).
ROOT = Path(__file__).resolve().parent.parent


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``agentrun ARGS`` as a separate process (``python -m runner``), output captured."""
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


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


def wait_for(predicate: Callable[[], Any], what: str, limit_s: float = 120.0) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``limit_s`` seconds.

    The limit only ends a stuck test; it is not a timing assertion.
    """
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def invoke(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the CLI in this process: its exit code, stdout and stderr."""
    from runner.cli import main

    with pytest.raises(SystemExit) as exited:
        main(argv)
    captured = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), captured.out, captured.err


def link_tree(source: Path, target: Path) -> Path:
    """``source`` copied to ``target`` as hard links where the file system allows (a copy
    otherwise): a checkout's own ``.ci-node`` in a test's copy of the checkout. A symlink
    out of the copy would not do: a sandbox does not follow one into a folder it hides (the
    real checkout may lie in /tmp or a home folder)."""

    def link(src: str, dst: str) -> object:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
        return dst

    shutil.copytree(source, target, symlinks=True, copy_function=link)
    return target


def notes_checkout(root: Path) -> Path:
    """A checkout at ``root`` for the notes-organiser example: its notes fixture copied to
    ``agents/fixtures/notes`` and the MCP filesystem server's ``.ci-node`` linked in (as
    :func:`link_tree`); returns ``root``, the example's workdir."""
    (root / "agents" / "fixtures").mkdir(parents=True)
    link_tree(ROOT / ".ci-node", root / ".ci-node")  # inside the checkout, as in a real one
    notes = ROOT / "agents" / "fixtures" / "notes"
    shutil.copytree(notes, root / "agents" / "fixtures" / "notes")
    return root


def notes_organiser_model(outside: Path | None = None) -> ScriptedModel:
    """The notes-organiser example's run: list the notes, read the stand-up, make
    ``meetings/`` and move the stand-up into it, then answer. With ``outside``, a read of
    that file (one outside the notes folder) comes after the stand-up's."""
    stray = [] if outside is None else [call("fs__read_text_file", {"path": str(outside)})]
    return ScriptedModel(
        [
            call("fs__list_directory", {"path": "."}),
            call("fs__read_text_file", {"path": "2026-03-02-standup.md"}),
            *stray,
            call("fs__create_directory", {"path": "meetings"}),
            call(
                "fs__move_file",
                {
                    "source": "2026-03-02-standup.md",
                    "destination": "meetings/2026-03-02-standup.md",
                },
            ),
            text("Moved 2026-03-02-standup.md to meetings/."),
        ]
    )
