"""The shell tool: injection refused or harmless, patterns on parsed words, confinement, limits."""

from __future__ import annotations

import os
import re
import shlex
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from runner.errors import SetupError, ToolArgumentError, ToolError
from runner.spec import SandboxSpec, ShellToolSpec
from runner.tools import ToolRegistry
from runner.tools import shell as shell_module
from runner.tools.shell import ShellTool, matches, parse_pattern, split_command_line

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the shell tool is POSIX-only")

PY = shlex.quote(sys.executable)


def make(
    workdir: Path,
    *commands: str,
    interpreter: str | None = None,
    cwd: str | None = None,
    env_allow: tuple[str, ...] = (),
    timeout_s: float = 30.0,
    max_output: int = 65_536,
    sandbox: str = "off",
) -> ShellTool:
    """A shell tool; ``sandbox: off`` by default, as these tests pin the tool's own
    confinement (patterns, environment, process group); the sandbox's own is pinned in
    tests/test_sandbox.py and tests/test_sandbox_hostile.py."""
    spec = ShellToolSpec(
        commands=commands, interpreter=interpreter, cwd=cwd, sandbox=SandboxSpec(mode=sandbox)
    )
    return ShellTool(spec, workdir, env_allow, timeout_s, max_output)


@pytest.fixture
def no_exec(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to start a process fails the test: refusals must happen before."""

    def popen(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"a process was started: {args!r}")

    monkeypatch.setattr(shell_module.subprocess, "Popen", popen)


def gone(pid: int, within: float = 15.0) -> bool:
    """Whether ``pid`` has ended (a zombie counts) before ``within`` seconds pass."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        except OSError:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
        else:
            if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                return True
        time.sleep(0.02)
    return False


# -- injection, without an interpreter -------------------------------------------------------

INJECTIONS = [
    "git status; rm -rf ~",
    "git status ;rm -rf ~",
    "git status && rm x",
    "git status || rm x",
    "git status | sh",
    "git status & rm x",
    "git log `rm -rf ~`",
    "git log $(rm -rf ~)",
    'git log "$(rm -rf ~)"',
    'git log "`id`"',
    "git status\nrm -rf ~",
    "git log > /etc/passwd",
    "git log < /etc/shadow",
    "git log 2>&1",
    "git log $HOME",
    "git log ${HOME}",
    "(git status)",
]


@pytest.mark.parametrize("line", INJECTIONS)
@pytest.mark.usefixtures("no_exec")
def test_shell_syntax_is_refused_without_an_interpreter(tmp_path: Path, line: str) -> None:
    tool = make(tmp_path, "git status", "git log *")
    with pytest.raises(ToolError, match="there is no shell"):
        tool.run({"argv": line})


@pytest.mark.parametrize("line", ["git status; rm -rf ~", "git status\nrm -rf ~", "git log $(id)"])
@pytest.mark.usefixtures("no_exec")
def test_chained_commands_are_refused_even_with_an_interpreter(tmp_path: Path, line: str) -> None:
    tool = make(tmp_path, "git status", "git log *", interpreter="/bin/sh")
    with pytest.raises(ToolError, match="not allowed"):
        tool.run({"argv": line})


@pytest.mark.parametrize(
    "line", ["echo `id`", 'echo "$(id)"', "echo $HOME", "echo hi > f", "echo hi 2>&1", "(echo)"]
)
@pytest.mark.usefixtures("no_exec")
def test_substitution_and_redirection_are_refused_with_an_interpreter(
    tmp_path: Path, line: str
) -> None:
    tool = make(tmp_path, "echo *", interpreter="/bin/sh")
    with pytest.raises(ToolError, match="not allowed"):
        tool.run({"argv": line})


def test_quoted_metacharacters_are_plain_arguments(tmp_path: Path) -> None:
    tool = make(tmp_path, "echo *")
    result = tool.run({"argv": "echo 'a;b' \"c|d\" 'e && $(f)' g\\;h"})
    assert result == "exit code 0\na;b c|d e && $(f) g;h\n"


def test_globs_are_not_expanded_without_an_interpreter(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_text("a")
    (tmp_path / "b.log").write_text("b")
    assert make(tmp_path, "echo *").run({"argv": "echo *"}) == "exit code 0\n*\n"
    assert make(tmp_path, "echo *").run({"argv": "echo ~"}) == "exit code 0\n~\n"


def test_globs_are_not_expanded_with_an_interpreter(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_text("a")
    tool = make(tmp_path, "echo *", interpreter="/bin/sh")
    assert tool.run({"argv": "echo *.log ~"}) == "exit code 0\n*.log ~\n"


def test_rm_star_is_refused_or_literal_never_expanded(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_text("a")
    (tmp_path / "keep.txt").write_text("k")
    with pytest.raises(ToolError, match="not allowed"):
        make(tmp_path, "rm build.log").run({"argv": "rm *"})
    with pytest.raises(ToolError, match="not allowed"):
        make(tmp_path, "rm *.log").run({"argv": "rm *"})
    result = make(tmp_path, "rm *.log").run({"argv": "rm *.log"})  # a literal '*.log'
    assert result.startswith("exit code 1\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.log", "keep.txt"]


def test_an_interpreter_runs_chains_of_allowed_commands(tmp_path: Path) -> None:
    tool = make(tmp_path, "echo *", "false", "tr a-z A-Z", interpreter="/bin/sh")
    result = tool.run({"argv": "echo a; false || echo b && echo c\necho d | tr a-z A-Z"})
    assert result == "exit code 0\na\nb\nc\nD\n"


def test_interpreter_words_are_never_assignments_or_keywords(tmp_path: Path) -> None:
    # a glob pattern that happens to accept 'X=1' must not turn it into an assignment
    tool = make(tmp_path, "*=* echo *", "! echo *", interpreter="/bin/sh")
    assert tool.run({"argv": "X=1 echo hi"}).startswith("exit code 127\n")
    assert tool.run({"argv": "! echo hi"}).startswith("exit code 127\n")


@pytest.mark.usefixtures("no_exec")
def test_one_disallowed_command_refuses_the_whole_chain(tmp_path: Path) -> None:
    tool = make(tmp_path, "echo *", interpreter="/bin/sh")
    with pytest.raises(ToolError, match="'sh' is not allowed"):
        tool.run({"argv": "echo a | sh"})


# -- pattern matching ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "pattern", "expected"),
    [
        (["git", "status"], "git status", True),
        (["git", "status", "--short"], "git status", False),
        (["git"], "git status", False),
        (["git", "log"], "git log *", True),
        (["git", "log", "-n", "5"], "git log *", True),
        (["git", "push"], "git log *", False),
        (["/usr/bin/git", "status"], "git status", False),
        (["pytest", "-q", "tests/a.py"], "pytest -q *.py", True),
        (["pytest", "-q", "tests/a.py", "-x"], "pytest -q *.py", False),
        (["rm", "*"], "rm *.log", False),
        (["rm", "*"], "rm build.log", False),
        (["cat", "a b.txt"], "cat 'a b.txt'", True),
        (["GIT", "status"], "git status", False),
        # [!-]* is one word that is not an option (docs/concepts/tools.md)
        (["git", "log", "--oneline", "v1.0..HEAD"], "git log --oneline [!-]*", True),
        (["git", "log", "--oneline", "--output=notes.txt"], "git log --oneline [!-]*", False),
        (["git", "log", "--oneline", "-o"], "git log --oneline [!-]*", False),
        (["git", "log", "--oneline"], "git log --oneline [!-]*", False),
        (["git", "log", "--oneline", "a", "b"], "git log --oneline [!-]*", False),
    ],
)
def test_patterns_match_parsed_words(words: list[str], pattern: str, expected: bool) -> None:
    assert matches(words, parse_pattern(pattern)) is expected


def test_split_gives_words_and_operators() -> None:
    assert split_command_line("git log -n 5 'a b'", interpreter=False) == (
        [["git", "log", "-n", "5", "a b"]],
        [],
    )
    assert split_command_line("a 'x;y' ; b && c | d &", interpreter=True) == (
        [["a", "x;y"], ["b"], ["c"], ["d"]],
        [";", "&&", "|", "&"],
    )


@pytest.mark.parametrize("line", ["", "   ", "; echo", "echo ;; echo", "echo && && echo"])
def test_empty_commands_are_refused(line: str) -> None:
    with pytest.raises(ToolError):
        split_command_line(line, interpreter=True)


def test_unbalanced_quotes_and_nul_are_refused(tmp_path: Path) -> None:
    tool = make(tmp_path, "echo *")
    with pytest.raises(ToolError, match="quot"):
        tool.run({"argv": "echo 'unclosed"})
    with pytest.raises(ToolError, match="NUL"):
        tool.run({"argv": "echo a\x00b"})


def test_bad_patterns_are_a_setup_error(tmp_path: Path) -> None:
    with pytest.raises(SetupError, match="cannot be parsed"):
        make(tmp_path, "git 'log")


# -- running ---------------------------------------------------------------------------------


def test_the_result_has_the_exit_code_and_both_streams(tmp_path: Path) -> None:
    tool = make(tmp_path, f"{PY} -c *")
    script = "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"
    result = tool.run({"argv": f"{PY} -c {shlex.quote(script)}"})
    assert result.startswith("exit code 3\n")
    assert "out" in result
    assert "err" in result


def test_a_missing_command_is_a_tool_error(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="command not found"):
        make(tmp_path, "no-such-command-agentrun *").run({"argv": "no-such-command-agentrun"})


def test_the_environment_is_path_plus_the_allowlist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTRUN_TEST_SECRET", "hunter2-secret")
    monkeypatch.setenv("AGENTRUN_TEST_ALLOWED", "visible-value")
    tool = make(tmp_path, "env", env_allow=("AGENTRUN_TEST_ALLOWED", "AGENTRUN_TEST_UNSET"))
    result = tool.run({"argv": "env"})
    assert "hunter2-secret" not in result
    names = {line.split("=", 1)[0] for line in result.splitlines()[1:] if "=" in line}
    assert names == {"PATH", "AGENTRUN_TEST_ALLOWED"}
    assert "AGENTRUN_TEST_ALLOWED=visible-value" in result


def test_the_command_runs_from_the_path_it_was_found_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # each read of the environment gives a PATH naming a different folder, as if the
    # process's environment changed mid-call: one read serves the lookup and the launch
    folders = []
    for name in ("first", "second"):
        folder = tmp_path / name
        folder.mkdir()
        script = folder / "which-one"
        script.write_text(f"#!/bin/sh\necho {name}\n")
        script.chmod(0o755)
        folders.append(folder)
    reads = iter(folders)

    def environment(allow: tuple[str, ...]) -> dict[str, str]:
        return {"PATH": str(next(reads))}

    monkeypatch.setattr(shell_module, "confined_environment", environment)
    workdir = tmp_path / "work"
    workdir.mkdir()
    assert make(workdir, "which-one").run({"argv": "which-one"}) == "exit code 0\nfirst\n"


def test_the_working_folder_is_the_workdir_or_the_spec_cwd(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    here = make(tmp_path, "pwd").run({"argv": "pwd"})
    assert here == f"exit code 0\n{os.path.realpath(tmp_path)}\n"
    there = make(tmp_path, "pwd", cwd="sub").run({"argv": "pwd"})
    assert there == f"exit code 0\n{os.path.realpath(tmp_path / 'sub')}\n"


def test_a_cwd_outside_the_workdir_is_a_setup_error(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "escape").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(SetupError, match="outside"):
        make(workdir, "pwd", cwd="..")
    with pytest.raises(SetupError, match="outside"):
        make(workdir, "pwd", cwd="escape")
    with pytest.raises(SetupError, match="outside"):
        make(workdir, "pwd", cwd="/")


def test_output_of_5_mb_is_capped_with_a_note(tmp_path: Path) -> None:
    tool = make(tmp_path, f"{PY} -c *", max_output=10_000)
    script = "import sys; sys.stdout.write('START' + 'x' * 5_000_000 + 'END')"
    result = tool.run({"argv": f"{PY} -c {shlex.quote(script)}"})
    assert len(result.encode()) <= 10_000
    assert result.startswith("exit code 0\nSTART")
    assert result.endswith("END")
    assert "[output truncated: 5000008 bytes" in result


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    script = (
        "import os, subprocess, time; "
        "child = subprocess.Popen(['sleep', '300']); "
        "print(os.getpid(), child.pid, flush=True); "
        "time.sleep(300)"
    )
    tool = make(tmp_path, f"{PY} -c *", interpreter="/bin/sh", timeout_s=3.0)
    with pytest.raises(ToolError, match=r"timed out after 3 s") as caught:
        tool.run({"argv": f"{PY} -c {shlex.quote(script)}"})
    found = re.search(r"^(\d+) (\d+)$", str(caught.value), re.MULTILINE)
    assert found, str(caught.value)
    leader, child = int(found.group(1)), int(found.group(2))
    assert gone(leader)
    assert gone(child)


def test_timeout_sends_sigterm_before_sigkill(tmp_path: Path) -> None:
    script = (
        "import signal, sys, time\n"
        "def bye(*_):\n"
        "    print('got SIGTERM', flush=True)\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "print('ready', flush=True)\n"
        "time.sleep(300)\n"
    )
    tool = make(tmp_path, f"{PY} -c *", timeout_s=2.0)
    with pytest.raises(ToolError, match="timed out") as caught:
        tool.run({"argv": f"{PY} -c {shlex.quote(script)}"})
    assert "ready\ngot SIGTERM" in str(caught.value)


def test_a_child_that_leaves_the_group_does_not_block_the_call(tmp_path: Path) -> None:
    # A child that calls setsid() escapes the group (a documented limit); it keeps the
    # output pipe open, and the call must return anyway instead of waiting for it.
    script = (
        "import subprocess; "
        "child = subprocess.Popen(['sleep', '300'], start_new_session=True); "
        "print(child.pid, flush=True)"
    )
    tool = make(tmp_path, f"{PY} -c *")
    outcome: list[str] = []
    worker = threading.Thread(
        target=lambda: outcome.append(tool.run({"argv": f"{PY} -c {shlex.quote(script)}"})),
        daemon=True,
    )
    worker.start()
    worker.join(120)  # far beyond the grace period; a blocked call would wait 300 s
    assert not worker.is_alive(), "the call waited for the escaped child"
    found = re.search(r"^(\d+)$", outcome[0], re.MULTILINE)
    assert found
    os.kill(int(found.group(1)), signal.SIGKILL)  # clean up the escapee
    assert outcome[0].startswith("exit code 0\n")
    assert "output may be incomplete" in outcome[0]


def test_background_children_do_not_outlive_the_call(tmp_path: Path) -> None:
    script = "import subprocess; child = subprocess.Popen(['sleep', '300']); print(child.pid)"
    tool = make(tmp_path, f"{PY} -c *")
    result = tool.run({"argv": f"{PY} -c {shlex.quote(script)}"})
    assert result.startswith("exit code 0\n")
    assert "incomplete" not in result
    assert gone(int(result.split()[-1]))


def test_run_enforces_the_timeout_when_called_from_a_thread(tmp_path: Path) -> None:
    import asyncio

    tool = make(tmp_path, "sleep *", timeout_s=0.5)

    async def main() -> str:
        return await tool.call({"argv": "sleep 300"})

    with pytest.raises(ToolError, match="timed out"):
        asyncio.run(main())


# -- schema and risk -------------------------------------------------------------------------


def test_schema_and_risk(tmp_path: Path) -> None:
    tool = make(tmp_path, "git status")
    assert tool.risk == "high"
    assert "git status" in tool.description
    registry = ToolRegistry([tool])
    assert registry.parse_arguments(tool, '{"argv": "git status"}') == {"argv": "git status"}
    with pytest.raises(ToolArgumentError):
        registry.parse_arguments(tool, '{"argv": ["git", "status"]}')
    with pytest.raises(ToolArgumentError):
        registry.parse_arguments(tool, '{"command": "git status"}')
