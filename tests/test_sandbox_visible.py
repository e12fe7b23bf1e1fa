"""The sandbox made visible: ``agentrun explain`` and ``agentrun runs show`` (issue 23).

``explain`` shows each kind of process the agent starts with its effective sandbox (mode,
whether bubblewrap can enforce it here, paths, network, limits) and says which tools run in
agentrun's own process instead; whether bubblewrap works is the probe's answer
(``runner.sandbox.bwrap.unavailable``), replaced here so both answers are tested on any
machine. ``runs show`` lists what a run's sandbox recorded, written straight into the test's
own store as the loop would record it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from runner.cli.records import ALLOWED_CONNECTIONS_SHOWN
from runner.cli.specs import _byte_size
from runner.events import (
    ConnectionDecided,
    LimitHit,
    RunFinished,
    RunNotice,
    RunStarted,
    StopReason,
)
from runner.sandbox import bwrap
from runner.store import RunStore, new_run_id
from tests.helpers import invoke, write_spec

NOT_HERE = "bubblewrap cannot create its namespaces here (uid map: Permission denied)"

HEAD = """\
version: 1
name: boxed
model: openai/scripted
goal: Run the tests.
"""

SHELL = """\
tools:
  read_file: {paths: [.]}
  shell:
    commands: ["pytest -q *"]
"""


def workdir(tmp_path: Path) -> Path:
    """The spec's folder and workdir: beside the test's AGENTRUN_HOME, which a sandbox hides."""
    folder = tmp_path / "work"
    folder.mkdir(exist_ok=True)
    return folder.resolve()


def explain(
    tmp_path: Path,
    body: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    reason: str | None = None,
) -> list[str]:
    """``agentrun explain`` of HEAD + ``body``, bubblewrap answering ``reason``: its sandbox part.

    The part runs from the ``sandbox`` line to the line before ``budgets:``.
    """
    monkeypatch.setattr(bwrap, "unavailable", lambda: reason)
    path = write_spec(workdir(tmp_path), HEAD + body)
    code, out, err = invoke(["explain", str(path)], capsys)
    assert code == 0, err
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("sandbox"))
    end = next(i for i, line in enumerate(lines) if line.startswith("budgets:"))
    return lines[start:end]


# ---------------------------------------------------------------------------------------------
# explain


def test_the_word_form_applies_to_every_process_with_the_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    body = SHELL + "sandbox: required\nchecks:\n  - {command: pytest -q}\n"
    shown = explain(tmp_path, body, capsys, monkeypatch)
    work = workdir(tmp_path)
    assert shown == [
        "sandbox (bubblewrap works here):",
        "  shell tool, check commands: required, enforced",
        f"    writable: {work}, a private /tmp",
        "    network: none",
        "    limits: cpu_time 600 s, memory 8 GiB, file_size 1 GiB per process; 512 processes",
        "  read_file: in agentrun's own process, not the sandbox; confined to its paths",
    ]


def test_the_object_form_and_a_tools_own_keys_over_the_agents(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (workdir(tmp_path) / "build").mkdir()
    (workdir(tmp_path) / "venv").mkdir()
    body = """\
sandbox:
  mode: required
  writable: [., build]
  readable: [venv]
  network: {allow: [pypi.org, "*.pythonhosted.org:443"]}
  limits: {cpu_time: 30s, memory: 512MiB, processes: 64, file_size: 100MB}
tools:
  shell:
    commands: ["pytest -q *"]
    sandbox: {writable: [], network: none}
  mcp:
    fs: {command: node, args: [server.js], allow: ["*"]}
    tracker: {url: "http://127.0.0.1:3001/mcp", allow: ["*"]}
  http_request: {hosts: [api.github.com]}
guards:
  - {name: lint, tools: [shell], command: python guard.py}
"""
    monkeypatch.setattr(bwrap, "network_unavailable", lambda: None)
    shown = explain(tmp_path, body, capsys, monkeypatch)
    work = workdir(tmp_path)
    limits = "    limits: cpu_time 30 s, memory 512 MiB, file_size 100 MB per process; 64 processes"
    assert shown == [
        "sandbox (bubblewrap works here):",
        # the shell's own writable and network; the agent's mode, readable and limits
        "  shell tool: required, enforced",
        "    writable: a private /tmp only (the workdir is read-only too)",
        f"    readable although hidden: {work / 'venv'}",
        "    network: none",
        limits,
        # the MCP server and the guard have no keys of their own: one block, the agent's
        "  MCP server fs, lint (command guard): required, enforced",
        f"    writable: {work}, {work / 'build'}, a private /tmp",
        f"    readable although hidden: {work / 'venv'}",
        "    network: only through agentrun's egress proxy, to pypi.org, *.pythonhosted.org:443",
        limits,
        "  http_request: in agentrun's own process, not the sandbox; only its hosts, at public "
        "addresses unless private_addresses",
        "  MCP server tracker: over HTTP, not started by agentrun",
    ]


def test_off_is_shown_as_unsandboxed_without_details(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    body = SHELL.replace('["pytest -q *"]', '["pytest -q *"]\n    sandbox: "off"')
    body += "  mcp:\n    fs: {command: node, args: [server.js], allow: ['*']}\n"
    shown = explain(tmp_path, body, capsys, monkeypatch)
    assert shown[1] == "  shell tool: off: not sandboxed (runs with your user's rights)"
    assert shown[2] == "  MCP server fs: auto, enforced"
    assert shown[3].startswith("    writable: ")


def test_where_bubblewrap_cannot_run_it_says_why_and_what_each_mode_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    body = (
        SHELL + "  mcp:\n    fs: {command: node, args: [s.js], allow: ['*'], sandbox: required}\n"
    )
    shown = explain(tmp_path, body, capsys, monkeypatch, reason=NOT_HERE)
    assert shown[0] == f"sandbox (bubblewrap cannot run here: {NOT_HERE}):"
    assert shown[1] == (
        "  shell tool: auto, NOT enforced here: they run unsandboxed (resource limits only) and "
        "the run records a notice"
    )
    at = shown.index(
        "  MCP server fs: required, cannot be enforced here: the run refuses to start them"
    )
    assert at > 1


def test_an_allowlist_without_socat_is_not_enforced_though_bubblewrap_works(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = "socat is not installed (Debian/Ubuntu: apt-get install socat)"
    monkeypatch.setattr(bwrap, "network_unavailable", lambda: missing)
    body = SHELL + "  mcp:\n    fs: {command: node, args: [s.js], allow: ['*']}\n"
    body = body.replace(
        '["pytest -q *"]', '["pytest -q *"]\n    sandbox: {network: {allow: [pypi.org]}}'
    )
    shown = explain(tmp_path, body, capsys, monkeypatch)
    assert shown[0] == "sandbox (bubblewrap works here):"
    assert shown[1] == (
        "  shell tool: auto, NOT enforced here: they run unsandboxed (resource limits only) and "
        f"the run records a notice ({missing})"
    )
    assert "  MCP server fs: auto, enforced" in shown  # no allowlist, no socat needed


def test_a_sandbox_that_cannot_start_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    body = SHELL + "sandbox: {writable: [., out]}\n"
    shown = explain(tmp_path, body, capsys, monkeypatch)
    out = workdir(tmp_path) / "out"
    assert f"    writable: {workdir(tmp_path)}, {out} (missing), a private /tmp" in shown
    assert any(
        line.startswith("    cannot start here: sandbox.writable: 'out'")
        and "does not exist" in line
        for line in shown
    ), shown


def test_a_spec_that_starts_no_process_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    body = "tools:\n  read_file: {paths: [.]}\n  write_file: {paths: [.]}\n"

    def probed() -> str:
        raise AssertionError("no process, no probe")

    path = write_spec(workdir(tmp_path), HEAD + body)
    monkeypatch.setattr(bwrap, "unavailable", probed)
    code, out, err = invoke(["explain", str(path)], capsys)
    assert code == 0, err
    assert (
        "sandbox: no process started (no shell tool, stdio MCP server, check command or command "
        "guard)\n  read_file, write_file: in agentrun's own process, not the sandbox; confined to "
        "their paths\n"
    ) in out


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")
def test_explain_asks_this_machines_bubblewrap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_spec(workdir(tmp_path), HEAD + SHELL)
    code, out, err = invoke(["explain", str(path)], capsys)
    assert code == 0, err
    reason = bwrap.unavailable()
    expected = (
        "bubblewrap works here" if reason is None else f"bubblewrap cannot run here: {reason}"
    )
    assert f"sandbox ({expected}):" in out.splitlines()


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        (8 * 2**30, "8 GiB"),
        (512 * 2**20, "512 MiB"),
        (64 * 2**10, "64 KiB"),
        (100 * 10**6, "100 MB"),
        (2 * 10**9, "2 GB"),
        (1536 * 2**20, "1536 MiB"),
        (123_456_789, "117.7 MiB"),
        (1000, "1 KB"),
        (999, "999 bytes"),
    ],
)
def test_sizes_are_shown_in_a_unit_they_fill(size: int, shown: str) -> None:
    assert _byte_size(size) == shown


# ---------------------------------------------------------------------------------------------
# runs show


def recorded_run(events: list[object]) -> str:
    """A finished run in the default store with ``events`` (ids filled in) between."""
    store = RunStore.default()
    run_id = new_run_id()
    store.record(RunStarted(run_id, "boxed", "openai/fake", "agent.yaml", "0" * 64, {}, "Go."))
    for event in events:
        event.run_id = run_id  # type: ignore[attr-defined]
        store.record(event)  # type: ignore[arg-type]
    store.record(RunFinished(run_id, StopReason.COMPLETED, "done", 1, 1, 10, 5, None, 0.1))
    store.close()
    return run_id


def show(run_id: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    code, out, err = invoke(["runs", "show", run_id], capsys)
    assert code == 0, err
    return out.splitlines()


def test_runs_show_lists_refused_connections_and_limits_hit(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_id = recorded_run(
        [
            RunNotice("", "boxed", "sandbox: auto, but the MCP server fs ran unsandboxed"),
            ConnectionDecided("", "shell", "call_1", "pypi.org", 443, True, "151.101.0.223"),
            ConnectionDecided(
                "", "shell", "call_1", "evil.example", 443, False, reason="not on the allowlist"
            ),
            ConnectionDecided(
                "", "mcp:fs", None, "169.254.169.254", 80, False, reason="a link-local address"
            ),
            ConnectionDecided("", "check", None, "::1", 8080, False, reason="loopback"),
            LimitHit("", "shell", "call_2", "processes", "65 processes, over 64: killed"),
        ]
    )
    lines = show(run_id, capsys)
    at = lines.index("sandbox: 3 connections refused, 1 limit hit, 1 allowed:")
    assert lines[at + 1 : at + 6] == [
        "  allowed    shell call_1: pypi.org:443 (151.101.0.223)",
        "  refused    shell call_1: evil.example:443: not on the allowlist",
        "  refused    mcp:fs: 169.254.169.254:80: a link-local address",
        "  refused    check: [::1]:8080: loopback",
        "  limit hit  shell call_2: processes: 65 processes, over 64: killed",
    ]
    notice = "notice (warning): sandbox: auto, but the MCP server fs ran unsandboxed"
    assert lines.index(notice) == at - 1


def test_runs_show_counts_many_allowed_connections_without_listing_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    many = ALLOWED_CONNECTIONS_SHOWN + 1
    run_id = recorded_run(
        [
            *(
                ConnectionDecided("", "shell", "call_1", "pypi.org", 443, True, "151.101.0.223")
                for _ in range(many)
            ),
            LimitHit("", "check", None, "cpu_time", "killed by SIGXCPU after 30 s of CPU"),
        ]
    )
    lines = show(run_id, capsys)
    at = lines.index(f"sandbox: 0 connections refused, 1 limit hit, {many} allowed:")
    assert lines[at + 1 : at + 3] == [
        "  limit hit  check: cpu_time: killed by SIGXCPU after 30 s of CPU",
        f"  allowed connections not listed (over {ALLOWED_CONNECTIONS_SHOWN}); the console's "
        "run page and the store's sandbox_events table have each",
    ]
    assert not any(line.startswith("  allowed    ") for line in lines)


def test_runs_show_says_nothing_of_a_sandbox_that_recorded_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines = show(recorded_run([]), capsys)
    assert any(line.startswith("stop reason: completed") for line in lines), lines
    assert not any(line.startswith(("sandbox", "notice")) for line in lines)


# ---------------------------------------------------------------------------------------------
# the console's run page


def test_the_run_page_shows_what_the_sandbox_recorded_in_the_timeline(agentrun_home: Path) -> None:
    from tests.test_web_api import start_console

    run_id = recorded_run(
        [
            ConnectionDecided(
                "", "shell", "call_1", "evil.example", 443, False, reason="not on the allowlist"
            ),
            ConnectionDecided("", "mcp:fs", None, "pypi.org", 443, True, "151.101.0.223"),
            LimitHit("", "check", None, "file_size", "a file grew past 100 MB"),
        ]
    )
    console = start_console(agentrun_home)
    try:
        with console.client() as client:
            page = client.get(f"/runs/{run_id}")
    finally:
        console.stop()
    assert page.status_code == 200, page.text
    text = " ".join(page.text.split())
    assert (
        "<b>Connection refused</b> from shell (<code>call_1</code>): <code>evil.example:443</code>:"
        " “not on the allowlist”"
    ) in text
    assert (
        "<b>Connection allowed</b> from mcp:fs: <code>pypi.org:443</code> at 151.101.0.223"
    ) in text
    assert "<b>Sandbox limit hit</b> by check: file_size: a file grew past 100 MB" in text
    # A live page fetches its timeline again when the sandbox records something.
    live = page.text.split('hx-trigger="', 1)[1].split('"', 1)[0]
    assert "connection" in live and "limit_hit" in live
