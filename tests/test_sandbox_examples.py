"""The example agents that start processes work unchanged under ``sandbox: auto`` (issue 23).

Each example in ``agents/`` that runs commands (the shell tool, check commands, a stdio MCP
server) runs here through the real loop with a :class:`runner.testing.ScriptedModel` making
its typical calls, twice: as written (``auto``, the default: bubblewrap on this machine) and
with every sandbox ``off``. The commands succeed sandboxed as they do unsandboxed: the same
exit codes and the same output (durations blanked). That bubblewrap was really used is
shown three ways: every process was launched through it (:func:`runner.sandbox.session.launch`
is watched), the run records no "could not sandbox" notice, and a probe that the example's
own commands can run (a test module in the example's folder) sees the sandbox's hostname and
not a file the sandbox hides, and fails unsandboxed.

incident-helper (autonomy ``suggest``) runs nothing; its commands are run here through its
own shell tool the way a person would run a proposal through agentrun. ``systemctl`` and
``journalctl`` are only started and stopped there: the sandbox hides ``/run``, so on a host
where systemd runs they cannot reach it. release-notes' workdir is a folder of this checkout:
its ``sandbox.readable`` lets git find the history at the checkout's root when the checkout
lies in a hidden place (the home folder).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from runner.compiler import compile_agent
from runner.events import RunFinished, StopReason
from runner.sandbox import session
from runner.spec import AgentSpec, check_spec, replace
from runner.store import RunStore
from runner.testing import ScriptedModel, call, calls, text
from runner.tools.shell import ShellTool
from tests.helpers import notes_checkout, notes_organiser_model
from tests.test_examples import (
    AGENTS,
    BUGGY_LINE,
    FIXED_LINE,
    Approver,
    commit,
    execute,
    filesystem_server,
    git,
    git_repo,
    load,
    tool_rows,
)

pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed"
)

#: A test module the example's own test command runs: it passes only inside the sandbox.
PROBE = """\
import os
import socket
import unittest


class Probe(unittest.TestCase):
    def test_runs_in_the_sandbox(self):
        self.assertEqual(socket.gethostname(), "sandbox")
        self.assertFalse(os.path.exists({secret!r}), "a file the sandbox hides is visible")
"""


# ---------------------------------------------------------------------------------------------
# helpers


@pytest.fixture(autouse=True)
def same_commits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fixed commit dates: two repositories made alike have the same commit ids."""
    for name in ("GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE"):
        monkeypatch.setenv(name, "2026-03-02T09:00:00+00:00")


@pytest.fixture
def launches(monkeypatch: pytest.MonkeyPatch) -> list[session.Launch]:
    """Every :class:`Launch` the run's processes start with (the real ones, watched)."""
    found: list[session.Launch] = []
    real = session.launch

    def watched(*args: Any, **kwargs: Any) -> session.Launch:
        launch = real(*args, **kwargs)
        found.append(launch)
        return launch

    monkeypatch.setattr(session, "launch", watched)
    return found


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file beside the examples' folders, where the sandbox hides it (under /tmp)."""
    path = tmp_path / "secret.txt"
    path.write_text("not for the agent\n")
    return path


def sources_in(spec: AgentSpec) -> list[tuple[str, str]]:
    """(source, mode) of every process source of ``spec``."""
    return [(source, sandbox.mode) for source, sandbox in session.sources(spec)]


def with_mode(spec: AgentSpec, mode: str) -> AgentSpec:
    """``spec`` with the agent's, the shell's and every MCP server's sandbox in ``mode``."""
    tools = spec.tools
    shell = tools.shell
    if shell is not None:
        shell = replace(shell, sandbox=replace(shell.sandbox, mode=mode))
    mcp = {
        name: replace(server, sandbox=replace(server.sandbox, mode=mode))
        for name, server in tools.mcp.items()
    }
    return replace(
        spec,
        sandbox=replace(spec.sandbox, mode=mode),
        tools=replace(tools, shell=shell, mcp=mcp),
    )


def blank_durations(output: str) -> str:
    """``output`` with durations (``in 0.01s``, ``in 0.001s``) made equal."""
    return re.sub(r"\b\d+(\.\d+)?s\b", "N s", output)


def sandboxed_run(
    store: RunStore, finished: RunFinished, launches: list[session.Launch]
) -> set[str]:
    """Assert that every process of ``finished`` ran under bubblewrap; their sources."""
    assert finished.stop_reason in (StopReason.COMPLETED, StopReason.PROPOSED), finished.message
    notices = [row["message"] for row in store.notices(finished.run_id)]
    assert not any("could not sandbox" in str(message) for message in notices), notices
    assert launches, "no process was started"
    for launch in launches:
        assert launch.sandboxed, launch.source
        assert Path(launch.argv[0]).name in ("prlimit", "bwrap")
        assert "--unshare-net" in launch.argv
    return {launch.source for launch in launches}


def results(store: RunStore, finished: RunFinished, workdir: Path) -> list[str]:
    """The results of ``finished``'s shell calls, durations and ``workdir`` blanked."""
    return [
        blank_durations(str(row["result"]).replace(str(workdir), "WORKDIR"))
        for row in tool_rows(store, finished)
        if row["tool"] == "shell"
    ]


# ---------------------------------------------------------------------------------------------
# repo-health: git and pytest in the repository, a report written by agentrun


def health_repo(folder: Path, probe: str | None = None) -> Path:
    repo = git_repo(folder)
    commit(repo, "app.py", "def answer():\n    return 42\n", "Add the app")
    commit(
        repo,
        "test_app.py",
        "from app import answer\n\n\ndef test_answer():\n    assert answer() == 42\n",
        "Test the app",
    )
    (repo / ".gitignore").write_text("__pycache__/\n.pytest_cache/\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-q", "-m", "Ignore caches")
    if probe is not None:
        (repo / "test_probe.py").write_text(probe)
    return repo


def health_model() -> ScriptedModel:
    return ScriptedModel(
        [
            call("shell", {"argv": "git status --short --branch"}),
            call("shell", {"argv": "git log --oneline -n 15"}),
            call("shell", {"argv": "python -m pytest -q -x test_app.py"}),
            call(
                "write_file",
                {"path": "reports/repo-health.md", "content": "HEALTHY\n\n## Tests\n"},
            ),
            text("HEALTHY"),
        ]
    )


def test_repo_health_works_sandboxed(
    tmp_path: Path, launches: list[session.Launch], secret: Path
) -> None:
    store = RunStore(tmp_path / "runs.db")
    spec = load("repo-health", workdir=health_repo(tmp_path / "boxed"))
    assert sources_in(spec) == [("shell", "auto")]
    boxed = execute(compile_agent(spec), health_model(), store)
    assert sandboxed_run(store, boxed, launches) == {"shell"}
    launches.clear()
    plain_spec = with_mode(load("repo-health", workdir=health_repo(tmp_path / "plain")), "off")
    plain = execute(compile_agent(plain_spec), health_model(), store)
    assert plain.stop_reason is StopReason.COMPLETED, plain.message
    assert not any(launch.sandboxed for launch in launches)
    status, log, tests = results(store, boxed, tmp_path / "boxed")
    assert results(store, plain, tmp_path / "plain") == [status, log, tests]
    assert status == "exit code 0\n## main\n"
    assert log.startswith("exit code 0\n") and "Ignore caches" in log
    assert tests.startswith("exit code 0\n") and "1 passed in N s" in tests
    for run in ("boxed", "plain"):
        report = tmp_path / run / "reports" / "repo-health.md"
        assert report.read_text().startswith("HEALTHY")


def test_repo_healths_test_command_runs_inside_the_sandbox(tmp_path: Path, secret: Path) -> None:
    repo = health_repo(tmp_path / "repo", PROBE.format(secret=str(secret)))
    spec = load("repo-health", workdir=repo)
    boxed = compile_agent(spec).tools.get("shell")
    plain = compile_agent(with_mode(spec, "off")).tools.get("shell")
    assert isinstance(boxed, ShellTool) and isinstance(plain, ShellTool)
    inside = boxed.execute("python -m pytest -q -x test_probe.py")
    assert inside.exit_code == 0 and "1 passed" in inside.text
    outside = plain.execute("python -m pytest -q -x test_probe.py")
    assert outside.exit_code == 1 and "1 failed" in outside.text


# ---------------------------------------------------------------------------------------------
# release-notes: git log and git tag, the changelog edited by agentrun


def release_repo(folder: Path) -> Path:
    repo = git_repo(folder)
    shutil.copy(AGENTS / "fixtures" / "release-notes" / "CHANGELOG.md", repo / "CHANGELOG.md")
    commit(repo, "CHANGELOG.md", (repo / "CHANGELOG.md").read_text(), "Release 0.1.0")
    git(repo, "tag", "v0.1.0")
    commit(repo, "export.py", "stream = True\n", "Stream CSV exports row by row")
    commit(repo, "billing.py", "retry = 1\n", "Fix a double charge when a payment is retried")
    return repo


SECTION = "## 0.2.0\n\n### Added\n- Streaming CSV export.\n"


def release_model() -> ScriptedModel:
    return ScriptedModel(
        [
            call("shell", {"argv": "git log --no-merges --format=%s v0.1.0..HEAD"}),
            call("shell", {"argv": "git tag --list"}),
            call("read_file", {"path": "CHANGELOG.md"}),
            call(
                "edit_file",
                {
                    "path": "CHANGELOG.md",
                    "old": "# Changelog\n",
                    "new": f"# Changelog\n\n{SECTION}",
                },
            ),
            text(SECTION),
        ]
    )


def test_release_notes_works_sandboxed(tmp_path: Path, launches: list[session.Launch]) -> None:
    store = RunStore(tmp_path / "runs.db")
    spec = load("release-notes", workdir=release_repo(tmp_path / "boxed"))
    inputs = {"since": "v0.1.0", "version": "0.2.0"}
    assert sources_in(spec) == [("shell", "auto")]
    boxed = execute(compile_agent(spec, inputs), release_model(), store)
    assert sandboxed_run(store, boxed, launches) == {"shell"}
    plain_spec = with_mode(load("release-notes", workdir=release_repo(tmp_path / "plain")), "off")
    plain = execute(compile_agent(plain_spec, inputs), release_model(), store)
    assert plain.stop_reason is StopReason.COMPLETED, plain.message
    log, tags = results(store, boxed, tmp_path / "boxed")
    assert results(store, plain, tmp_path / "plain") == [log, tags]
    assert log == (
        "exit code 0\nFix a double charge when a payment is retried\nStream CSV exports row by row\n"
    )
    assert tags == "exit code 0\nv0.1.0\n"
    for run in ("boxed", "plain"):
        assert (tmp_path / run / "CHANGELOG.md").read_text().startswith(f"# Changelog\n\n{SECTION}")


def test_release_notes_as_shipped_reads_the_history_of_a_checkout_in_a_hidden_place(
    tmp_path: Path,
) -> None:
    """The example's workdir is a folder of the checkout; git finds the history at the
    checkout's root. A checkout in a hidden place (here /tmp, as in the home folder) shows
    only the workdir, unless the checkout is readable: the example says so."""
    checkout = release_repo(tmp_path / "checkout")
    (checkout / "agents" / "fixtures" / "release-notes").mkdir(parents=True)
    shutil.copy(AGENTS / "release-notes.yaml", checkout / "agents")
    spec, diagnostics = check_spec(checkout / "agents" / "release-notes.yaml")
    assert spec is not None and spec.tools.shell is not None, diagnostics
    assert spec.workdir == checkout / "agents" / "fixtures" / "release-notes"
    assert spec.tools.shell.sandbox.readable == ("../../..",)
    inputs = {"since": "v0.1.0", "version": "0.2.0"}
    line = "git log --no-merges --format=%s v0.1.0..HEAD"

    def execute_in(agent_spec: AgentSpec) -> tuple[int | None, str]:
        tool = compile_agent(agent_spec, inputs).tools.get("shell")
        assert isinstance(tool, ShellTool)
        result = tool.execute(line)
        return result.exit_code, result.text

    expected = execute_in(with_mode(spec, "off"))
    assert expected[0] == 0 and "Stream CSV exports" in expected[1]
    assert execute_in(spec) == expected
    unlisted = replace(spec.tools.shell, sandbox=replace(spec.tools.shell.sandbox, readable=()))
    code, hidden = execute_in(replace(spec, tools=replace(spec.tools, shell=unlisted)))
    assert code == 128 and "not a git repository" in hidden


# ---------------------------------------------------------------------------------------------
# fix-failing-test: python -m unittest as a tool call and as agentrun's own check


def fix_copy(folder: Path, probe: str | None = None) -> Path:
    shutil.copytree(AGENTS / "fixtures" / "fix-failing-test", folder)
    if probe is not None:
        (folder / "test_probe.py").write_text(probe)
    return folder


def fix_model() -> ScriptedModel:
    return ScriptedModel(
        [
            call("shell", {"argv": "python -m unittest -v"}),
            call("edit_file", {"path": "pricing.py", "old": BUGGY_LINE, "new": FIXED_LINE}),
            call("shell", {"argv": "python -m unittest -v test_pricing.TotalTest"}),
            text("FIXED: total() took the discount off twice."),
        ]
    )


def test_fix_failing_test_works_sandboxed(tmp_path: Path, launches: list[session.Launch]) -> None:
    store = RunStore(tmp_path / "runs.db")
    spec = load("fix-failing-test", workdir=fix_copy(tmp_path / "boxed"))
    assert sources_in(spec) == [("shell", "auto")]
    boxed = execute(compile_agent(spec), fix_model(), store)
    assert sandboxed_run(store, boxed, launches) == {"shell", "check"}
    plain_spec = with_mode(load("fix-failing-test", workdir=fix_copy(tmp_path / "plain")), "off")
    plain = execute(compile_agent(plain_spec), fix_model(), store)
    assert plain.stop_reason is StopReason.COMPLETED, plain.message
    failing, passing = results(store, boxed, tmp_path / "boxed")
    assert results(store, plain, tmp_path / "plain") == [failing, passing]
    assert failing.startswith("exit code 1\n") and "FAILED (failures=1)" in failing
    assert passing.startswith("exit code 0\n") and "\nOK" in passing
    checks = [
        [(r["name"], r["passed"], blank_durations(str(r["output"]))) for r in store.check_runs(run)]
        for run in (boxed.run_id, plain.run_id)
    ]
    assert checks[0] == checks[1]
    assert [passed for _, passed, _ in checks[0]] == [True, True]


def test_fix_failing_tests_check_runs_inside_the_sandbox(tmp_path: Path, secret: Path) -> None:
    project = fix_copy(tmp_path / "project", PROBE.format(secret=str(secret)))
    pricing = project / "pricing.py"
    pricing.write_text(pricing.read_text().replace(BUGGY_LINE, FIXED_LINE))  # the fix, made
    spec = load("fix-failing-test", workdir=project)
    boxed = compile_agent(spec).tools.get("shell")
    plain = compile_agent(with_mode(spec, "off")).tools.get("shell")
    assert isinstance(boxed, ShellTool) and isinstance(plain, ShellTool)
    inside = boxed.execute("python -m unittest -v", source="check")  # the spec's check
    assert inside.exit_code == 0 and "test_runs_in_the_sandbox" in inside.text
    outside = plain.execute("python -m unittest -v", source="check")
    assert outside.exit_code == 1 and "FAILED" in outside.text


# ---------------------------------------------------------------------------------------------
# notes-organiser: the MCP filesystem server (Node.js) as a sandboxed stdio server


def test_notes_organiser_works_sandboxed(tmp_path: Path, launches: list[session.Launch]) -> None:
    filesystem_server()
    store = RunStore(tmp_path / "runs.db")
    spec = load("notes-organiser", workdir=notes_checkout(tmp_path / "boxed"))
    assert sources_in(spec) == [("mcp:fs", "auto")]
    boxed = execute(compile_agent(spec), notes_organiser_model(), store, approver=Approver())
    assert sandboxed_run(store, boxed, launches) == {"mcp:fs"}
    plain_spec = with_mode(
        load("notes-organiser", workdir=notes_checkout(tmp_path / "plain")), "off"
    )
    plain = execute(compile_agent(plain_spec), notes_organiser_model(), store, approver=Approver())
    assert plain.stop_reason is StopReason.COMPLETED, plain.message

    def outcome(finished: RunFinished) -> list[tuple[str, str, str]]:
        return [(r["tool"], r["status"], r["result"]) for r in tool_rows(store, finished)]

    assert outcome(boxed) == outcome(plain)
    assert [status for _, status, _ in outcome(boxed)] == ["ok"] * 4
    for run in ("boxed", "plain"):
        notes = tmp_path / run / "agents" / "fixtures" / "notes"
        assert (notes / "meetings" / "2026-03-02-standup.md").exists()
        assert not (notes / "2026-03-02-standup.md").exists()


# ---------------------------------------------------------------------------------------------
# incident-helper: proposals only; its commands, run through its tool, work sandboxed


def test_incident_helper_starts_nothing(tmp_path: Path, launches: list[session.Launch]) -> None:
    spec = load("incident-helper")
    assert sources_in(spec) == [("shell", "auto")]
    store = RunStore(tmp_path / "runs.db")
    model = ScriptedModel(
        [calls(("shell", {"argv": "df -h /var"}), ("shell", {"argv": "free -m"}))]
    )
    finished = execute(compile_agent(spec, {"alert": "disk usage 93% on /var"}), model, store)
    assert finished.stop_reason is StopReason.PROPOSED
    assert launches == []  # suggest: nothing is executed, sandboxed or not


def test_incident_helpers_commands_work_sandboxed(
    tmp_path: Path, launches: list[session.Launch]
) -> None:
    folder = AGENTS / "fixtures"  # visible inside: the system is read-only, not hidden
    spec = load("incident-helper")
    boxed = compile_agent(spec, {"alert": "x"}).tools.get("shell")
    plain = compile_agent(with_mode(spec, "off"), {"alert": "x"}).tools.get("shell")
    assert isinstance(boxed, ShellTool) and isinstance(plain, ShellTool)
    for line in ("df -h /", f"du -sh {folder}", "free -m"):
        inside, outside = boxed.execute(line), plain.execute(line)
        assert inside.exit_code == outside.exit_code == 0, (line, inside.text)
        # The header and the first column agree; free space and memory move between calls.
        firsts = [
            [row.split()[0] for row in result.text.splitlines()[1:] if row.split()]
            for result in (inside, outside)
        ]
        assert firsts[0] == firsts[1], line
    # systemd is reached through /run, which the sandbox hides: these only start and end.
    for line in ("systemctl status web", "journalctl -u web -n 20 --no-pager"):
        if shutil.which(line.split()[0]) is not None:
            assert boxed.execute(line).exit_code is not None
    assert [launch.sandboxed for launch in launches][:6] == [True, False] * 3
