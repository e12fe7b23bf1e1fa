"""The sandbox's modes and policy (issue 23): what a sandboxed process can see, and when.

``policy.resolve`` (paths against the workdir, agentrun's own places hidden), the bubblewrap
command line (mount order, the proxy bridge, the rlimits), the three modes through real runs
(``required`` where bubblewrap cannot run stops before anything runs; ``auto`` runs with one
warning; ``off`` runs as it is), a tool's own sandbox over the agent's, a program in a hidden
folder, SIGTERM reaching a sandboxed program at its timeout, and the spec's errors.

"Bubblewrap cannot run here" is the probe's answer replaced
(``runner.sandbox.bwrap.unavailable`` is ``functools.cache``'d: the module attribute is
patched), so both answers are tested on any machine. Everything else runs real bubblewrap
(CI installs it; a machine without ``bwrap`` skips those tests).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from runner.compiler import compile_agent
from runner.errors import SetupError, ToolError
from runner.events import RunFinished, StopReason
from runner.loop import run_agent
from runner.sandbox import bwrap, policy
from runner.spec import AgentSpec, SandboxSpec, ShellToolSpec, check_spec, load_spec
from runner.store import RunStore
from runner.testing import ScriptedModel, call, text
from runner.tools.shell import ShellTool
from tests.helpers import write_spec

needs_bwrap = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed"
)
NOT_HERE = "bubblewrap cannot create its namespaces here (test: uid map: Permission denied)"

HEAD = """\
version: 1
name: boxed
model: openai/scripted
goal: Touch the files.
autonomy: autonomous
"""


# ---------------------------------------------------------------------------------------------
# helpers


def work(tmp_path: Path) -> Path:
    """The agent's workdir: a folder beside the test's AGENTRUN_HOME (both under /tmp)."""
    folder = tmp_path / "work"
    folder.mkdir(exist_ok=True)
    return folder.resolve()


def shell(
    workdir: Path,
    commands: tuple[str, ...],
    sandbox: SandboxSpec,
    timeout_s: float = 60.0,
) -> ShellTool:
    """A shell tool in ``workdir`` allowing ``commands``, under ``sandbox``."""
    spec = ShellToolSpec(commands=commands, sandbox=sandbox)
    return ShellTool(spec, workdir, (), timeout_s, 65_536)


def agent_spec(tmp_path: Path, body: str) -> AgentSpec:
    """HEAD + ``body`` written to the workdir and loaded."""
    return load_spec(write_spec(work(tmp_path), HEAD + body))


def execute(spec: AgentSpec, model: ScriptedModel, store: RunStore) -> RunFinished:
    return asyncio.run(asyncio.wait_for(run_agent(compile_agent(spec), model, store=store), 120))


def unsandboxed_notices(store: RunStore, run_id: str) -> list[dict[str, Any]]:
    return [
        dict(row) for row in store.notices(run_id) if "could not sandbox" in str(row["message"])
    ]


# ---------------------------------------------------------------------------------------------
# policy.resolve


def test_resolve_makes_writable_and_readable_paths_absolute_against_the_workdir(
    tmp_path: Path,
) -> None:
    workdir = work(tmp_path)
    (workdir / "build").mkdir()
    tools = tmp_path / "toolchain"
    tools.mkdir()
    spec = SandboxSpec(mode="auto", writable=(".", "build"), readable=(str(tools), "build"))
    resolved = policy.resolve(spec, workdir)
    assert resolved.workdir == workdir
    assert resolved.writable == (workdir, workdir / "build")
    assert resolved.readable[:2] == (tools.resolve(), workdir / "build")
    assert Path(os.path.realpath(sys.prefix)) in resolved.readable  # python works inside
    for hidden in (Path("/home"), Path("/root"), Path("/run"), Path("/tmp")):
        assert hidden in resolved.hidden_first
    assert Path(os.path.realpath(Path.home())) in resolved.hidden_first


def test_resolve_refuses_a_writable_path_that_does_not_exist_naming_it(tmp_path: Path) -> None:
    spec = SandboxSpec(mode="auto", writable=(".", "dist"))
    with pytest.raises(SetupError, match=r"sandbox\.writable: 'dist' \(.*work/dist'\) does not"):
        policy.resolve(spec, work(tmp_path))


def test_resolve_refuses_a_writable_path_inside_agentruns_home(
    tmp_path: Path, agentrun_home: Path
) -> None:
    (agentrun_home / "runs").mkdir(parents=True)
    spec = SandboxSpec(mode="auto", writable=(str(agentrun_home / "runs"),))
    with pytest.raises(SetupError, match=r"sandbox\.writable: .* agentrun's own home"):
        policy.resolve(spec, work(tmp_path))


@needs_bwrap
def test_agentrun_home_inside_the_workdir_stays_hidden_from_a_sandboxed_shell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = work(tmp_path)
    home = workdir / ".agentrun"
    home.mkdir()
    (home / "console-token").write_text("s3cret-token\n")
    (workdir / "notes.txt").write_text("visible\n")
    monkeypatch.setenv("AGENTRUN_HOME", str(home))
    assert policy.resolve(SandboxSpec(mode="auto"), workdir).hidden_last == (home,)
    tool = shell(workdir, ("cat *", "ls -A *"), SandboxSpec(mode="auto"))
    assert tool.run({"argv": "cat notes.txt"}) == "exit code 0\nvisible\n"
    token = tool.run({"argv": "cat .agentrun/console-token"})
    assert token.startswith("exit code 1") and "No such file" in token
    assert "s3cret" not in token
    assert tool.run({"argv": "ls -A .agentrun"}) == "exit code 0\n(no output)"  # empty tmpfs


@needs_bwrap
def test_a_sqlite_store_outside_agentruns_home_cannot_be_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = work(tmp_path)
    (workdir / "state").mkdir()
    store = workdir / "state" / "runs.db"
    RunStore(store).close()
    assert store.stat().st_size > 0
    monkeypatch.setenv("AGENTRUN_STORE", f"sqlite:///{store}")
    assert store in policy.resolve(SandboxSpec(mode="auto"), workdir).hidden_files
    unboxed = shell(workdir, ("head -c 15 *",), SandboxSpec(mode="off"))
    assert unboxed.run({"argv": "head -c 15 state/runs.db"}) == "exit code 0\nSQLite format 3"
    # Covered by /dev/null, which a mount made in a user namespace cannot open (nodev).
    tool = shell(workdir, ("head -c 15 *",), SandboxSpec(mode="auto"))
    hidden = tool.run({"argv": "head -c 15 state/runs.db"})
    assert "SQLite" not in hidden
    assert hidden.startswith("exit code 1") and "Permission denied" in hidden


# ---------------------------------------------------------------------------------------------
# bwrap.command


def index(argv: list[str], *words: str) -> int:
    """Where the words appear in ``argv`` one after another (fails when they do not)."""
    for start in range(len(argv) - len(words) + 1):
        if tuple(argv[start : start + len(words)]) == words:
            return start
    raise AssertionError(f"{words} not in {argv}")


def test_the_command_hides_first_shows_the_workdir_then_hides_agentruns_home_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = work(tmp_path)
    (workdir / "out").mkdir()
    home = workdir / ".agentrun"
    home.mkdir()
    monkeypatch.setenv("AGENTRUN_HOME", str(home))
    resolved = policy.resolve(SandboxSpec(mode="auto", writable=("out",)), workdir)
    argv = bwrap.command(resolved, ["make", "test"], workdir)
    root = index(argv, "--ro-bind", "/", "/")
    shown = index(argv, "--ro-bind", str(workdir), str(workdir))  # not writable: read-only
    out = index(argv, "--bind", str(workdir / "out"), str(workdir / "out"))
    hides = [index(argv, "--tmpfs", str(folder)) for folder in resolved.hidden_first]
    assert root < min(hides) and max(hides) < shown < out
    assert out < index(argv, "--tmpfs", str(home))  # agentrun's home: after every visible path
    assert argv[-3:] == ["--", "make", "test"]
    assert argv[: len(bwrap.limits_prefix(resolved))] == bwrap.limits_prefix(resolved)
    assert "--unshare-net" in argv and "--die-with-parent" in argv
    assert bwrap.PROXY_SOCKET not in argv and "/bin/sh" not in argv  # no allowlist: no bridge


def test_the_proxy_bridge_appears_only_with_an_allowlist(tmp_path: Path) -> None:
    workdir = work(tmp_path)
    resolved = policy.resolve(SandboxSpec(mode="auto", network=("pypi.org",)), workdir)
    socket = tmp_path / "egress.sock"
    argv = bwrap.command(resolved, ["pip", "download", "x"], workdir, socket)
    bound = index(argv, "--ro-bind", str(socket), bwrap.PROXY_SOCKET)
    assert index(argv, "--tmpfs", "/run") < bound  # bound after /run is hidden, so it shows
    bridge = index(argv, "/bin/sh", "-c")
    assert "socat TCP-LISTEN:3128" in argv[bridge + 2] and bwrap.PROXY_SOCKET in argv[bridge + 2]
    assert argv[bridge + 3 :] == ["agentrun-egress", "pip", "download", "x"]
    assert "--unshare-net" in argv  # still no network of its own: only the bridge
    assert bwrap.proxy_environment()["HTTPS_PROXY"] == "http://127.0.0.1:3128"


def test_limits_prefix_carries_the_specs_limits_and_is_empty_without_prlimit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = load_spec(
        write_spec(
            work(tmp_path),
            HEAD + "sandbox:\n  limits: {cpu_time: 30s, memory: 2GiB, file_size: 10MiB}\n",
        )
    )
    resolved = policy.resolve(spec.sandbox, work(tmp_path))
    if shutil.which("prlimit") is not None:
        prefix = bwrap.limits_prefix(resolved)
        assert prefix[1:] == [
            "--cpu=30:31",
            f"--as={2 * 2**30}",
            f"--fsize={10 * 2**20}",
            "--core=0",
            "--",
        ]
    real_which = shutil.which

    def which(name: str, *args: Any, **kwargs: Any) -> str | None:
        return None if name == "prlimit" else real_which(name, *args, **kwargs)

    monkeypatch.setattr(bwrap.shutil, "which", which)
    assert bwrap.limits_prefix(resolved) == []


# ---------------------------------------------------------------------------------------------
# the modes through real runs


def test_required_where_bubblewrap_cannot_run_stops_the_run_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bwrap, "unavailable", lambda: NOT_HERE)
    spec = agent_spec(tmp_path, "sandbox: required\ntools:\n  shell:\n    commands: ['touch *']\n")
    store = RunStore(tmp_path / "runs.db")
    model = ScriptedModel([call("shell", {"argv": "touch made.txt"}), text("done")])
    finished = execute(spec, model, store)
    assert finished.stop_reason is StopReason.ERROR
    assert "shell has sandbox: required" in finished.message
    assert NOT_HERE in finished.message and "Nothing was run" in finished.message
    assert not (work(tmp_path) / "made.txt").exists()
    assert model.requests == []  # not even the model was asked
    row = store.run(finished.run_id)
    assert row is not None and row.stop_reason is StopReason.ERROR
    assert NOT_HERE in str(row.message)


def test_required_on_one_mcp_server_names_that_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bwrap, "unavailable", lambda: NOT_HERE)
    body = (
        "tools:\n  mcp:\n    files:\n      command: node\n      args: [server.js]\n"
        "      allow: [read]\n      sandbox: required\n"
    )
    store = RunStore(tmp_path / "runs.db")
    finished = execute(agent_spec(tmp_path, body), ScriptedModel([text("done")]), store)
    assert finished.stop_reason is StopReason.ERROR
    assert "mcp:files has sandbox: required" in finished.message and NOT_HERE in finished.message


def test_auto_where_bubblewrap_cannot_run_runs_and_warns_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bwrap, "unavailable", lambda: NOT_HERE)
    spec = agent_spec(tmp_path, "sandbox: auto\ntools:\n  shell:\n    commands: ['touch *']\n")
    store = RunStore(tmp_path / "runs.db")
    model = ScriptedModel(
        [
            call("shell", {"argv": "touch one.txt"}),
            call("shell", {"argv": "touch two.txt"}),
            text("done"),
        ]
    )
    finished = execute(spec, model, store)
    assert finished.stop_reason is StopReason.COMPLETED, finished.message
    assert (work(tmp_path) / "one.txt").exists() and (work(tmp_path) / "two.txt").exists()
    (notice,) = unsandboxed_notices(store, finished.run_id)
    assert notice["level"] == "warning"
    assert "could not sandbox shell" in notice["message"] and NOT_HERE in notice["message"]
    assert "without file, network or process isolation" in notice["message"]


@needs_bwrap
def test_off_written_explicitly_runs_unsandboxed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "diary.txt").write_text("dear diary\n")
    monkeypatch.setenv("HOME", str(home))
    commands = f"['cat {home}/diary.txt', hostname]"
    store = RunStore(tmp_path / "runs.db")
    results = {}
    for mode in ("off", "auto"):
        spec = agent_spec(
            tmp_path, f"sandbox: {mode}\ntools:\n  shell:\n    commands: {commands}\n"
        )
        assert spec.tools.shell is not None and spec.tools.shell.sandbox.mode == mode
        model = ScriptedModel(
            [
                call("shell", {"argv": f"cat {home}/diary.txt"}),
                call("shell", {"argv": "hostname"}),
                text("done"),
            ]
        )
        finished = execute(spec, model, store)
        assert finished.stop_reason is StopReason.COMPLETED, finished.message
        assert unsandboxed_notices(store, finished.run_id) == []
        results[mode] = [row["result"] for row in store.tool_calls(finished.run_id)]
    assert results["off"][0] == "exit code 0\ndear diary\n"
    assert results["off"][1] != "exit code 0\nsandbox\n"
    assert "No such file" in results["auto"][0] and results["auto"][1] == "exit code 0\nsandbox\n"


@needs_bwrap
def test_a_tools_own_sandbox_overrides_the_agents(tmp_path: Path) -> None:
    body = (
        "sandbox:\n  writable: [.]\n"
        "tools:\n  shell:\n    commands: ['touch *']\n    sandbox:\n      writable: []\n"
    )
    spec = agent_spec(tmp_path, body)
    assert spec.sandbox.writable == (".",)
    assert spec.tools.shell is not None and spec.tools.shell.sandbox.writable == ()
    tool = compile_agent(spec).tools.get("shell")
    assert isinstance(tool, ShellTool)
    result = tool.run({"argv": "touch new.txt"})
    assert result.startswith("exit code 1") and "Read-only file system" in result
    assert not (work(tmp_path) / "new.txt").exists()


@needs_bwrap
def test_a_program_in_a_hidden_folder_needs_sandbox_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    tools = home / ".local" / "bin"
    tools.mkdir(parents=True)
    script = tools / "greet"
    script.write_text("#!/bin/sh\necho hello from the home folder\n")
    script.chmod(0o755)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    hidden = shell(work(tmp_path), ("greet",), SandboxSpec(mode="auto"))
    with pytest.raises(ToolError) as refused:
        hidden.run({"argv": "greet"})
    message = str(refused.value)
    assert "'greet'" in message and str(script) in message and "sandbox.readable" in message
    shown = shell(work(tmp_path), ("greet",), SandboxSpec(mode="auto", readable=(str(tools),)))
    assert shown.run({"argv": "greet"}) == "exit code 0\nhello from the home folder\n"


TRAP = """\
import signal, sys, time

def bye(number, frame):
    print("got SIGTERM", flush=True)
    sys.exit(0)

signal.signal(signal.SIGTERM, bye)
print("waiting", flush=True)
while True:
    time.sleep(0.1)
"""


@needs_bwrap
def test_sigterm_at_the_timeout_reaches_the_sandboxed_program(tmp_path: Path) -> None:
    workdir = work(tmp_path)
    (workdir / "trap.py").write_text(TRAP)
    tool = shell(workdir, ("python3 trap.py",), SandboxSpec(mode="auto"), timeout_s=3.0)
    result = tool.execute("python3 trap.py")
    assert result.exit_code is None  # timed out
    assert "command timed out after 3 s" in result.text
    assert "waiting" in result.text and "got SIGTERM" in result.text


# ---------------------------------------------------------------------------------------------
# the spec


def diagnostics(tmp_path: Path, body: str) -> list[str]:
    """The headlines of HEAD + ``body``'s diagnostics, each starting ``agent.yaml:LINE:COL``."""
    path = write_spec(work(tmp_path), HEAD + body)
    spec, found = check_spec(path)
    assert spec is None
    return [d.headline().replace(str(path), "agent.yaml") for d in found]


def test_an_unquoted_off_means_off(tmp_path: Path) -> None:
    spec = agent_spec(tmp_path, "sandbox: off\ntools:\n  shell:\n    commands: [ls]\n")
    assert spec.sandbox.mode == "off"
    assert spec.tools.shell is not None and spec.tools.shell.sandbox.mode == "off"


def test_an_unknown_sandbox_word_is_an_error_at_its_line(tmp_path: Path) -> None:
    (headline,) = diagnostics(tmp_path, "sandbox: bogus\n")
    assert headline.startswith("agent.yaml:6:10: ") and "'sandbox'" in headline


def test_a_bad_network_pattern_is_an_error_at_its_entry(tmp_path: Path) -> None:
    body = "sandbox:\n  network:\n    allow:\n      - pypi.org\n      - https://pypi.org/simple\n"
    (headline,) = diagnostics(tmp_path, body)
    assert headline.startswith("agent.yaml:10:9: ")
    assert "'https://pypi.org/simple'" in headline and "without a scheme" in headline


def test_a_bad_byte_size_is_an_error_at_its_line(tmp_path: Path) -> None:
    (headline,) = diagnostics(tmp_path, "sandbox:\n  limits:\n    memory: 12 parsecs\n")
    assert headline.startswith("agent.yaml:8:13: ")
    assert "sandbox.limits.memory" in headline and "'12 parsecs'" in headline
