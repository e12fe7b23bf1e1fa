"""The example agents in agents/: each validates cleanly, together they cover the spec
language, and each runs through the real loop with a scripted model and real tools.

Runs go through :func:`runner.loop.run_agent` with a :class:`runner.testing.ScriptedModel`;
the tools are the real ones (files, shell, the MCP filesystem server from npm). Examples
that write get a temporary copy of their working folder (the spec is otherwise unchanged);
``http_request`` gets an ``httpx.MockTransport`` behind the real host, method and redirect
checks. The watch and webhook examples also run in a real daemon, with real worker
processes whose model comes from ``AGENTRUN_MODEL_FACTORY`` (:func:`daemon_model`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from runner.cli import STOP_EXIT_CODES, main
from runner.compiler import CompiledAgent, compile_agent
from runner.errors import ToolError
from runner.events import RunFinished, StopReason
from runner.loop import run_agent
from runner.models import price_for
from runner.policy import Approval, ApprovalRequest
from runner.resume import restore_state
from runner.spec import (
    AUTONOMY_LEVELS,
    BUILTIN_TOOLS,
    TRIGGER_KINDS,
    AgentSpec,
    check_spec,
    replace,
)
from runner.store import RunStore
from runner.testing import FunctionModel, Scripted, ScriptedModel, call, calls, text
from runner.tools import ToolRegistry
from runner.tools.http import HttpTool
from runner.tools.shell import ShellTool
from tests.conftest import ROOT
from tests.helpers import notes_checkout, notes_organiser_model, wait_for

AGENTS = ROOT / "agents"
EXAMPLES = sorted(AGENTS.glob("*.yaml"))
SCHEMA = json.loads((ROOT / "schemas" / "agent.schema.json").read_text(encoding="utf-8"))
FILESYSTEM_SERVER = (
    ROOT / ".ci-node" / "node_modules" / "@modelcontextprotocol" / "server-filesystem"
)
#: A generous bound that makes a waiting test end; nothing here measures speed.
DEADLINE = 60.0


# ---------------------------------------------------------------------------------------------
# helpers


def load(name: str, workdir: Path | None = None) -> AgentSpec:
    """The example ``agents/NAME.yaml``, its working folder moved to ``workdir`` if given."""
    spec, diagnostics = check_spec(AGENTS / f"{name}.yaml")
    assert spec is not None, [d.headline() for d in diagnostics]
    return spec if workdir is None else replace(spec, workdir=workdir)


def execute(
    agent: CompiledAgent, model: ScriptedModel, store: RunStore, **options: Any
) -> RunFinished:
    return asyncio.run(asyncio.wait_for(run_agent(agent, model, store=store, **options), 120))


def tool_rows(store: RunStore, finished: RunFinished) -> list[dict[str, Any]]:
    return store.tool_calls(finished.run_id)


def resume(agent: CompiledAgent, model: ScriptedModel, store: RunStore, run_id: str) -> RunFinished:
    """Continue a paused run, as `agentrun resume` does."""
    return execute(agent, model, store, run_id=run_id, resume=restore_state(store, run_id))


class Approver:
    """Approves (or denies) every request and remembers what it was asked."""

    name = "test"

    def __init__(self, approve: bool = True) -> None:
        self.approve = approve
        self.requests: list[ApprovalRequest] = []

    async def request(self, request: ApprovalRequest) -> Approval:
        self.requests.append(request)
        return Approval(self.approve, "checked by the test")


def with_http(agent: CompiledAgent, handler: Callable[[httpx.Request], httpx.Response]) -> Any:
    """``agent`` whose http_request tool sends through ``handler`` instead of the network."""
    spec = agent.spec
    assert spec.tools.http_request is not None
    tool = HttpTool(
        spec.tools.http_request, spec.budgets.tool_timeout, transport=httpx.MockTransport(handler)
    )
    others = [t for t in agent.tools if t.name != "http_request"]
    return dataclasses.replace(agent, tools=ToolRegistry([*others, tool]))


def git(folder: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=Ada", "-c", "user.email=ada@example.com", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def git_repo(folder: Path) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    folder.mkdir(parents=True, exist_ok=True)
    git(folder, "init", "-q", "-b", "main")
    return folder


def commit(folder: Path, name: str, content: str, message: str) -> None:
    (folder / name).write_text(content, encoding="utf-8")
    git(folder, "add", name)
    git(folder, "commit", "-q", "-m", message)


# ---------------------------------------------------------------------------------------------
# every example: valid, documented, and together covering the language


def test_there_are_at_least_eight_examples_and_each_has_a_run_test() -> None:
    names = {path.stem for path in EXAMPLES}
    assert len(names) >= 8
    tested = {
        name.removeprefix("test_").removesuffix("_runs").replace("_", "-")
        for name in globals()
        if name.startswith("test_") and name.endswith("_runs")
    }
    assert names == tested, f"examples without a run test: {sorted(names - tested)}"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_validates_without_any_warning(path: Path) -> None:
    spec, diagnostics = check_spec(path)
    assert spec is not None and spec.name == path.stem
    assert [d.headline() for d in diagnostics] == []


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_starts_with_a_header_saying_what_it_does_and_how_to_try_it(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    header = []
    for line in lines:
        if not line.startswith("#"):
            break
        header.append(line.lstrip("# "))
    assert header and header[0].startswith(f"{path.stem}: "), header[:1]
    assert "Try it" in "\n".join(header)
    # every agentrun command the header shows names a spec file that exists
    for spec_file in re.findall(r"agentrun \w+ (agents/[\w.-]+\.yaml)", "\n".join(header)):
        assert (ROOT / spec_file).is_file(), spec_file


def test_validate_accepts_the_agents_folder(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The examples read their keys from these; with them set, `validate` has nothing to say.
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.setenv(name, "sk-test-not-a-real-key")
    with pytest.raises(SystemExit) as exited:
        main(["validate", str(AGENTS)])
    captured = capsys.readouterr()
    assert exited.value.code == 0, captured.err
    assert f"{len(EXAMPLES)} of {len(EXAMPLES)} specs valid" in captured.out
    assert "warning" not in captured.out + captured.err


def test_the_examples_cover_every_trigger_autonomy_level_tool_and_budget() -> None:
    raws = [yaml.safe_load(path.read_text(encoding="utf-8")) for path in EXAMPLES]
    used: dict[str, set[str]] = {
        "trigger": set(),
        "autonomy": set(),
        "tool": set(),
        "budget": set(),
        "concurrency": set(),
        "unattended": set(),
    }
    for raw in raws:
        used["autonomy"].add(raw.get("autonomy", "approve-writes"))
        used["unattended"].add(raw.get("unattended", "fail"))
        used["concurrency"].add(raw.get("concurrency", "forbid"))
        used["tool"].update(raw.get("tools") or {})
        used["budget"].update(raw.get("budgets") or {})
        for trigger in raw.get("triggers") or []:
            used["trigger"].update(k for k in trigger if k in TRIGGER_KINDS)
    properties = SCHEMA["properties"]
    assert used["trigger"] == set(TRIGGER_KINDS)
    assert used["autonomy"] == set(AUTONOMY_LEVELS) == set(properties["autonomy"]["enum"])
    assert used["tool"] >= {*BUILTIN_TOOLS, "mcp"}
    assert used["budget"] == set(properties["budgets"]["properties"])
    assert used["concurrency"] == set(properties["concurrency"]["enum"])
    assert used["unattended"] == set(properties["unattended"]["enum"])
    assert any((raw.get("output") or {}).get("schema") for raw in raws)
    assert any(raw.get("rules") for raw in raws)


# ---------------------------------------------------------------------------------------------
# each example through the real loop


def test_hello_runs(tmp_path: Path) -> None:
    agent = compile_agent(load("hello"))
    store = RunStore(tmp_path / "runs.db")
    model = ScriptedModel(
        [
            call("read_file", {"path": "README.md"}),
            call("read_file", {"path": "about-agentrun.txt"}),
            text("The project is agentrun."),
        ]
    )
    finished = execute(agent, model, store)
    assert finished.stop_reason is StopReason.COMPLETED, finished.message
    assert [t["function"]["name"] for t in model.requests[0][1]] == ["read_file"]
    assert "about-agentrun.txt" in agent.goal
    outside, about = tool_rows(store, finished)
    assert outside["status"] == "error" and "outside the allowed paths" in outside["result"]
    assert about["status"] == "ok" and about["result"].startswith("The project is agentrun.")
    assert finished.final == "The project is agentrun."


def test_repo_health_runs(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo")
    commit(repo, "app.py", "print('hi')\n", "Add the app")
    commit(repo, "app.py", "print('hello')\n", "Say hello")
    (repo / "scratch.txt").write_text("untracked\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("mine\n")
    spec = load("repo-health", workdir=repo)
    store = RunStore(tmp_path / "runs.db")
    model = ScriptedModel(
        [
            call("shell", {"argv": "git status --short --branch"}),
            call("shell", {"argv": "git log --oneline -n 15"}),
            call("shell", {"argv": "git push origin main"}),
            call("shell", {"argv": "git status; rm -rf ."}),
            # Options that write or delete outside the one writable folder.
            call("shell", {"argv": f"git log --oneline -n 15 --output={elsewhere / 'log'}"}),
            call("shell", {"argv": f"python -m pytest -q -x --basetemp={elsewhere}"}),
            call("write_file", {"path": "app.py", "content": "oops"}),
            call(
                "write_file",
                {"path": "reports/repo-health.md", "content": "NEEDS ATTENTION\n\n## Tests\n"},
            ),
            text("NEEDS ATTENTION"),
        ],
        pricing=price_for(spec.model.id),
    )
    finished = execute(compile_agent(spec), model, store)
    assert finished.stop_reason is StopReason.COMPLETED, finished.message
    status, log, push, chained, log_out, basetemp, outside, report = tool_rows(store, finished)
    assert status["status"] == "ok" and "## main" in status["result"]
    assert "?? scratch.txt" in status["result"]
    assert log["status"] == "ok" and "Say hello" in log["result"] and "Add the app" in log["result"]
    assert all(row["decision"] == "allow" for row in (status, log, report))  # autonomous
    assert push["status"] == "error" and "is not allowed" in push["result"]
    assert chained["status"] == "error" and "no shell" in chained["result"]
    for smuggled in (log_out, basetemp):
        assert smuggled["status"] == "error" and "is not allowed" in smuggled["result"]
    assert sorted(p.name for p in elsewhere.iterdir()) == ["keep.txt"]
    assert outside["status"] == "error" and (repo / "app.py").read_text() == "print('hello')\n"
    assert (repo / "reports" / "repo-health.md").read_text().startswith("NEEDS ATTENTION")
    assert finished.tool_calls <= spec.budgets.max_tool_calls  # type: ignore[operator]
    assert finished.cost_usd is not None and finished.cost_usd < 0.05  # a priced model


def test_repo_health_stops_at_its_tool_call_budget(tmp_path: Path) -> None:
    spec = load("repo-health", workdir=git_repo(tmp_path / "repo"))
    store = RunStore(tmp_path / "runs.db")
    model = ScriptedModel(
        [call("shell", {"argv": f"git log --oneline -n {n}"}) for n in range(1, 12)]
    )
    finished = execute(compile_agent(spec), model, store)
    assert finished.stop_reason is StopReason.MAX_TOOL_CALLS
    assert finished.tool_calls == spec.budgets.max_tool_calls == 8
    assert STOP_EXIT_CODES[str(finished.stop_reason)] == 3


def test_inbox_triage_runs(tmp_path: Path) -> None:
    mailbox = tmp_path / "mailbox"
    shutil.copytree(AGENTS / "fixtures" / "mailbox", mailbox)
    message = "inbox/2026-03-02-export-crash.md"
    agent = compile_agent(load("inbox-triage", workdir=mailbox), {"changed_paths": [message]})
    assert f"New messages: {message}." in agent.goal
    store = RunStore(tmp_path / "runs.db")
    note = "category: bug\nurgency: high\nsummary: CSV export fails.\nreply: We are on it.\n"
    model = ScriptedModel(
        [
            call("read_file", {"path": message}),
            call("write_file", {"path": "triage/2026-03-02-export-crash.md", "content": note}),
        ]
    )
    paused = execute(agent, model, store)  # nobody attached: unattended: queue pauses
    assert paused.stop_reason is StopReason.WAITING_APPROVAL
    assert STOP_EXIT_CODES[str(paused.stop_reason)] == 5
    [pending] = store.approvals(paused.run_id)
    assert (pending["tool"], pending["risk"]) == ("write_file", "medium")
    assert not (mailbox / "triage").exists()
    read = tool_rows(store, paused)[0]
    assert read["decision"] == "allow" and "10,000 rows" in read["result"]

    assert store.decide(paused.run_id, None, True, "fine", by="test") == 1  # agentrun approve
    done = resume(agent, ScriptedModel([text("Triaged 1 message.")]), store, paused.run_id)
    assert done.stop_reason is StopReason.COMPLETED, done.message
    assert (mailbox / "triage" / "2026-03-02-export-crash.md").read_text() == note
    assert [r["status"] for r in tool_rows(store, done)] == ["ok", "ok"]


def test_inbox_triage_asks_a_person_when_unsure_of_the_urgency(tmp_path: Path) -> None:
    from runner.decisions import answer

    mailbox = tmp_path / "mailbox"
    shutil.copytree(AGENTS / "fixtures" / "mailbox", mailbox)
    message = "inbox/2026-03-02-export-crash.md"
    agent = compile_agent(load("inbox-triage", workdir=mailbox), {"changed_paths": [message]})
    store = RunStore(tmp_path / "runs.db")
    urgency = {"question": "How urgent is the export crash?", "choices": ["low", "normal", "high"]}
    paused = execute(
        agent,
        ScriptedModel([call("read_file", {"path": message}), call("ask_human", urgency)]),
        store,
    )
    assert paused.stop_reason is StopReason.WAITING_INPUT
    assert STOP_EXIT_CODES[str(paused.stop_reason)] == 5
    [question] = store.questions(paused.run_id)
    assert question["choices"] == ["low", "normal", "high"] and question["expires_at"]
    answer(store, paused.run_id, None, "high", by="test")  # agentrun answer RUN high
    model = ScriptedModel([text("Triaged: high urgency.")])
    done = resume(agent, model, store, paused.run_id)
    assert done.stop_reason is StopReason.COMPLETED, done.message
    assert model.requests[0][0][-1] == {
        "role": "tool",
        "tool_call_id": question["call_id"],
        "content": "high",
    }


def test_release_notes_runs(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo")
    shutil.copy(AGENTS / "fixtures" / "release-notes" / "CHANGELOG.md", repo / "CHANGELOG.md")
    commit(repo, "CHANGELOG.md", (repo / "CHANGELOG.md").read_text(), "Release 0.1.0")
    git(repo, "tag", "v0.1.0")
    commit(repo, "export.py", "stream = True\n", "Stream CSV exports row by row")
    commit(repo, "billing.py", "retry = 1\n", "Fix a double charge when a payment is retried")
    spec = load("release-notes", workdir=repo)
    agent = compile_agent(spec, {"since": "v0.1.0", "version": "0.2.0"})
    assert "You write release notes for users." in agent.instructions
    section = "## 0.2.0\n\n### Added\n- Streaming CSV export.\n\n### Fixed\n- Double charge.\n"
    store = RunStore(tmp_path / "runs.db")
    outside = tmp_path / "written-by-git-log"
    model = ScriptedModel(
        [
            call("shell", {"argv": "git log --no-merges --format=%s v0.1.0..HEAD"}),
            # An option where the range goes: git log would write the file (any path).
            call("shell", {"argv": f"git log --no-merges --format=%s --output={outside}"}),
            call("shell", {"argv": "git tag --list"}),
            call("shell", {"argv": "git diff HEAD~1"}),
            call("read_file", {"path": "CHANGELOG.md"}),
            call(
                "edit_file",
                {
                    "path": "CHANGELOG.md",
                    "old": "# Changelog\n",
                    "new": f"# Changelog\n\n{section}",
                },
            ),
            text(section),
        ]
    )
    finished = execute(agent, model, store)
    assert finished.stop_reason is StopReason.COMPLETED, finished.message
    log, smuggled, tags, diff, read, edit = tool_rows(store, finished)
    assert log["decision"] == "allow" and log["status"] == "ok"  # rules.allow: runs unasked
    # The rule does not let it run unasked, and nobody is there to ask...
    assert smuggled["decision"] == "ask" and smuggled["status"] == "refused"
    assert not outside.exists()
    # ...and a person who approved it would still be refused by the command patterns.
    shell = agent.tools.get("shell")
    assert isinstance(shell, ShellTool)
    with pytest.raises(ToolError, match="is not allowed"):
        shell.check(f"git log --no-merges --format=%s --output={outside} v0.1.0..HEAD")
    assert shell.check("git log --no-merges --format=%s v0.1.0..HEAD")
    assert "Stream CSV exports" in log["result"] and "Release 0.1.0" not in log["result"]
    assert tags["decision"] == "allow" and "v0.1.0" in tags["result"]
    # high risk, no rule allows it: it would ask, but its command is not on the shell
    # tool's list, so nobody is asked and the model hears why
    assert diff["decision"] == "ask" and diff["status"] == "refused"
    assert "is not allowed; allowed commands:" in diff["result"]
    assert read["status"] == edit["status"] == "ok" and edit["decision"] == "allow"
    changelog = (repo / "CHANGELOG.md").read_text()
    assert changelog.startswith("# Changelog\n\n## 0.2.0\n") and "## 0.1.0" in changelog
    assert finished.input_tokens + finished.output_tokens <= spec.budgets.max_tokens  # type: ignore[operator]


def test_release_notes_needs_its_inputs() -> None:
    from runner.errors import UsageError

    with pytest.raises(UsageError, match="needs input 'since'"):
        compile_agent(load("release-notes"), {"version": "0.2.0"})
    with pytest.raises(UsageError, match="must be one of users, developers"):
        compile_agent(load("release-notes"), {"since": "v1", "version": "2", "audience": "all"})


def test_log_anomalies_runs(tmp_path: Path) -> None:
    agent = compile_agent(load("log-anomalies"))
    store = RunStore(tmp_path / "runs.db")
    answer = {
        "status": "anomalies",
        "findings": [
            {
                "severity": "critical",
                "summary": "CSV export MemoryError",
                "file": "app.log",
                "line": 5,
            }
        ],
    }
    model = ScriptedModel(
        [
            call("list_dir", {"path": "."}),
            call("read_file", {"path": "app.log"}),
            text("There were two MemoryErrors in the CSV export."),  # not JSON: corrected
            text(f"```json\n{json.dumps(answer)}\n```"),
        ]
    )
    finished = execute(agent, model, store)
    assert finished.stop_reason is StopReason.COMPLETED, finished.message
    assert finished.result == answer
    listing, log = tool_rows(store, finished)
    assert "app.log" in listing["result"] and "worker.log" in listing["result"]
    assert "MemoryError in export_csv" in log["result"]
    retry = model.requests[3][0][-1]["content"]
    assert retry.startswith("Your answer must be a single JSON value")


def test_log_anomalies_gives_up_on_an_answer_that_never_fits(tmp_path: Path) -> None:
    agent = compile_agent(load("log-anomalies"))
    model = ScriptedModel([text('{"status": "fine"}')], repeat_last=True)
    finished = execute(agent, model, RunStore(tmp_path / "runs.db"))
    assert finished.stop_reason is StopReason.OUTPUT_INVALID
    assert "'fine' is not one of ['ok', 'anomalies']" in finished.message
    assert len(model.requests) == 1 + agent.spec.output.max_retries
    assert STOP_EXIT_CODES[str(finished.stop_reason)] == 1


ISSUE_INPUTS = {
    "action": "opened",
    "repo": "acme/shop",
    "number": 7,
    "title": "CSV export crashes",
    "body": "Exporting more than 10,000 rows fails with a 500.",
}


def test_issue_labeller_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = "Bearer github_pat_example_0123456789"
    monkeypatch.setenv("GITHUB_AUTH_HEADER", token)
    received: list[httpx.Request] = []

    def github(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(200, json=[{"name": "bug"}])

    agent = with_http(compile_agent(load("issue-labeller"), ISSUE_INPUTS), github)
    assert "issue #7 in acme/shop" in agent.goal
    url = "https://api.github.com/repos/acme/shop/issues/7"
    labels = {
        "url": f"{url}/labels",
        "method": "POST",
        "headers": {"Accept": "application/vnd.github+json"},
        "body": json.dumps({"labels": ["bug"]}),
    }
    store = RunStore(tmp_path / "runs.db")
    model = ScriptedModel(
        [
            call("http_request", {"url": f"{url}/comments", "method": "POST", "body": "{}"}),
            call("http_request", labels),
        ]
    )
    paused = execute(agent, model, store)
    assert paused.stop_reason is StopReason.WAITING_APPROVAL, paused.message
    comment = tool_rows(store, paused)[0]
    assert comment["decision"] == "deny" and "policy denies" in comment["result"]
    [pending] = store.approvals(paused.run_id)
    assert pending["tool"] == "http_request" and pending["risk"] == "high"
    assert received == []  # nothing was sent before the approval

    store.decide(paused.run_id, pending["call_id"], True, "ok", by="test")
    done = resume(agent, ScriptedModel([text("Labelled: bug")]), store, paused.run_id)
    assert done.stop_reason is StopReason.COMPLETED, done.message
    [sent] = received
    assert (sent.method, str(sent.url)) == ("POST", labels["url"])
    assert sent.headers["Authorization"] == token
    assert json.loads(sent.content) == {"labels": ["bug"]}
    rows = tool_rows(store, done)
    assert rows[-1]["status"] == "ok" and rows[-1]["result"].startswith("HTTP 200")
    exported = json.dumps(store.export(done.run_id))
    assert "github_pat_example" not in exported  # the secret header is redacted


def test_link_checker_runs(tmp_path: Path) -> None:
    def web(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/moved":
            return httpx.Response(301, headers={"Location": "https://evil.example/"})
        if request.url.path == "/gone":
            return httpx.Response(404)
        return httpx.Response(200, text="fine")

    agent = with_http(compile_agent(load("link-checker")), web)
    store = RunStore(tmp_path / "runs.db")
    answer = {
        "checked": 3,
        "unchecked": ["https://example.com/x"],
        "broken": [{"url": "https://github.com/gone", "file": "docs/quickstart.md", "status": 404}],
    }
    model = ScriptedModel(
        [
            call("list_dir", {"path": "docs"}),
            call("read_file", {"path": "docs/quickstart.md"}),
            call(
                "http_request", {"url": "https://docs.litellm.ai/docs/providers", "method": "HEAD"}
            ),
            call("http_request", {"url": "https://github.com/gone", "method": "HEAD"}),
            call("http_request", {"url": "https://github.com/moved"}),
            call("http_request", {"url": "https://example.com/x"}),
            call("http_request", {"url": "http://github.com/plain"}),
            text(json.dumps(answer)),
        ]
    )
    finished = execute(agent, model, store)
    assert finished.stop_reason is StopReason.COMPLETED, finished.message
    assert finished.result == answer
    listing, quickstart, ok, gone, moved, other, plain = tool_rows(store, finished)
    assert "quickstart.md" in listing["result"] and "agentrun" in quickstart["result"]
    assert ok["decision"] == "allow" and ok["result"].startswith("HTTP 200")  # medium: runs
    assert gone["status"] == "ok" and gone["result"].startswith("HTTP 404")
    assert moved["status"] == "error" and "not in the allowed hosts" in moved["result"]
    assert (
        other["status"] == "error"
        and "'example.com' is not in the allowed hosts" in other["result"]
    )
    assert plain["decision"] == "deny" and plain["status"] == "refused"


def filesystem_server() -> Path:
    script = FILESYSTEM_SERVER / "dist" / "index.js"
    if not script.exists():
        pytest.skip(
            "the MCP filesystem server is not installed: npm install --prefix .ci-node "
            "@modelcontextprotocol/server-filesystem@2026.8.31"
        )
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    return script


def test_notes_organiser_runs(tmp_path: Path) -> None:
    filesystem_server()
    root = notes_checkout(tmp_path / "checkout")
    notes = root / "agents" / "fixtures" / "notes"
    (tmp_path / "secret.txt").write_text("private")
    agent = compile_agent(load("notes-organiser", workdir=root))
    store = RunStore(tmp_path / "runs.db")
    model = notes_organiser_model(outside=tmp_path / "secret.txt")
    approver = Approver()
    finished = execute(agent, model, store, approver=approver)
    assert finished.stop_reason is StopReason.COMPLETED, finished.message
    offered = sorted(t["function"]["name"] for t in model.requests[0][1])
    assert offered == [
        "fs__create_directory",
        "fs__list_directory",
        "fs__move_file",
        "fs__read_text_file",
    ]
    listing, read, secret, mkdir, move = tool_rows(store, finished)
    assert "2026-03-02-standup.md" in listing["result"] and "meetings" in listing["result"]
    assert read["status"] == "ok" and "CSV export" in read["result"]
    assert secret["status"] == "error" and "private" not in secret["result"]
    assert (mkdir["risk"], mkdir["decision"]) == ("medium", "allow")
    assert (move["risk"], move["decision"], move["status"]) == ("high", "ask", "ok")
    assert [r.tool for r in approver.requests] == ["fs__move_file"]
    assert (notes / "meetings" / "2026-03-02-standup.md").exists()
    assert not (notes / "2026-03-02-standup.md").exists()


def test_incident_helper_runs(tmp_path: Path) -> None:
    agent = compile_agent(load("incident-helper"), {"alert": "disk usage 93% on /var"})
    assert agent.goal.strip() == "Alert for service web: disk usage 93% on /var"
    store = RunStore(tmp_path / "runs.db")
    model = ScriptedModel(
        [calls(("shell", {"argv": "df -h /var"}), ("shell", {"argv": "du -sh /var/log"}))]
    )
    finished = execute(agent, model, store)
    assert finished.stop_reason is StopReason.PROPOSED
    assert STOP_EXIT_CODES[str(finished.stop_reason)] == 0
    rows = tool_rows(store, finished)
    assert [(r["decision"], r["status"]) for r in rows] == [("propose", "proposed")] * 2
    assert finished.final is not None and "df -h /var" in finished.final
    assert finished.tool_calls == 0  # nothing was executed


def fix_failing_test_copy(tmp_path: Path) -> Path:
    """A copy of the fix-failing-test fixture (the example edits it; the original stays)."""
    folder = tmp_path / "project"
    shutil.copytree(AGENTS / "fixtures" / "fix-failing-test", folder)
    return folder


BUGGY_LINE = "    return round(discounted * (1 + vat) * (1 - discount), 2)"
FIXED_LINE = "    return round(discounted * (1 + vat), 2)"


def test_fix_failing_test_runs(tmp_path: Path) -> None:
    project = fix_failing_test_copy(tmp_path)
    original = (AGENTS / "fixtures" / "fix-failing-test" / "pricing.py").read_text()
    spec = load("fix-failing-test", workdir=project)
    store = RunStore(tmp_path / "runs.db")
    model = ScriptedModel(
        [
            call("read_file", {"path": "pricing.py"}),
            call("shell", {"argv": "python -m unittest -v"}),
            call("edit_file", {"path": "test_pricing.py", "old": "108.0", "new": "97.2"}),
            text("FIXED: the test expected the wrong total."),  # the checks still fail
            call("edit_file", {"path": "pricing.py", "old": BUGGY_LINE, "new": FIXED_LINE}),
            call("shell", {"argv": "python -m unittest -v"}),
            text("FIXED: total() took the discount off twice."),
        ]
    )
    finished = execute(compile_agent(spec), model, store)
    assert finished.stop_reason is StopReason.COMPLETED, finished.message
    read, first_run, cheat, edit, second_run = tool_rows(store, finished)
    assert "discounted * (1 + vat) * (1 - discount)" in read["result"]
    assert first_run["decision"] == "allow" and "FAILED (failures=1)" in first_run["result"]
    assert cheat["status"] == "error" and "outside the allowed paths" in cheat["result"]
    assert edit["status"] == "ok" and "OK" in second_run["result"]
    # The first answer failed the test suite: the model was told, with the output.
    told = model.requests[4][0][-1]["content"]
    assert "the test suite passes" in told and "AssertionError: 97.2 != 108.0" in told
    checks = [(r["attempt"], r["name"], r["passed"]) for r in store.check_runs(finished.run_id)]
    assert checks == [
        (1, "the test suite passes", False),
        (1, "the answer says what was fixed", True),
        (2, "the test suite passes", True),
        (2, "the answer says what was fixed", True),
    ]
    assert (project / "pricing.py").read_text().count(FIXED_LINE) == 1
    assert (AGENTS / "fixtures" / "fix-failing-test" / "pricing.py").read_text() == original


def test_fix_failing_test_escalates_when_its_checks_keep_failing(tmp_path: Path) -> None:
    spec = load("fix-failing-test", workdir=fix_failing_test_copy(tmp_path))
    store = RunStore(tmp_path / "runs.db")
    model = ScriptedModel([text("FIXED: nothing to do.")], repeat_last=True)
    finished = execute(compile_agent(spec), model, store)
    # checks_failed is in its escalate_on: a person decides (exit code 5), not just an end.
    assert finished.stop_reason is StopReason.ESCALATED, finished.message
    assert finished.escalated_from is StopReason.CHECKS_FAILED
    assert STOP_EXIT_CODES[str(finished.stop_reason)] == 5
    assert len(model.requests) == spec.max_check_retries + 1 == 3
    failed = [r["attempt"] for r in store.check_runs(finished.run_id) if not r["passed"]]
    assert failed == [1, 2, 3]


# ---------------------------------------------------------------------------------------------
# the watch and webhook examples in a real daemon


def daemon_model(spec: Any) -> FunctionModel:
    """The model of the daemon's workers (``AGENTRUN_MODEL_FACTORY``): plays both examples."""

    def respond(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Scripted:
        goal = next(m["content"] for m in messages if m["role"] == "user")
        done = [m for m in messages if m["role"] == "tool"]
        names = {t["function"]["name"] for t in tools}
        if "write_file" in names:  # inbox-triage
            path = re.search(r"inbox/[\w.-]+\.md", goal)
            if path is None:
                return text("no message named")
            if not done:
                return call("read_file", {"path": path.group(0)})
            if len(done) == 1:
                target = "triage/" + path.group(0).rsplit("/", 1)[1]
                return call("write_file", {"path": target, "content": "category: bug\n"})
            return text("triaged")
        number = re.search(r"issue #(\d+) in ([\w.-]+/[\w.-]+)", goal)
        if number is not None and not done:
            url = f"https://api.github.com/repos/{number.group(2)}/issues/{number.group(1)}/labels"
            return call(
                "http_request", {"url": url, "method": "POST", "body": '{"labels":["bug"]}'}
            )
        return text("done")

    return FunctionModel(respond)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=DEADLINE) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def daemon_home(tmp_path: Path) -> Iterator[tuple[Path, Path, int, dict[str, str]]]:
    """A daemon on copies of the inbox-triage and issue-labeller examples."""
    folder = tmp_path / "agents"
    (folder / "fixtures").mkdir(parents=True)
    for name in ("inbox-triage", "issue-labeller"):
        shutil.copy(AGENTS / f"{name}.yaml", folder / f"{name}.yaml")
    shutil.copytree(AGENTS / "fixtures" / "mailbox", folder / "fixtures" / "mailbox")
    home = tmp_path / "home"
    port = free_port()
    env = {
        **os.environ,
        "AGENTRUN_HOME": str(home),
        "AGENTRUN_MODEL_FACTORY": "tests.test_examples:daemon_model",
        "PYTHONPATH": str(ROOT),
        "WEBHOOK_SECRET": "a shared secret",
    }
    log = (tmp_path / "daemon.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "runner", "daemon", str(folder), "--webhook-port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: (home / "daemon.sock").exists() or process.poll() is not None, "daemon")
        assert process.poll() is None, (tmp_path / "daemon.log").read_text()
        yield folder, home, port, env
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def test_the_daemon_runs_the_watch_and_webhook_examples(
    daemon_home: tuple[Path, Path, int, dict[str, str]],
) -> None:
    folder, home, port, env = daemon_home
    store = RunStore(home / "runs.db")

    def finished_runs(agent: str) -> list[Any]:
        return [r for r in store.runs(agent=agent) if r.status != "running"]

    # webhook: a signed delivery starts a run with inputs taken from the payload
    payload = {
        "action": "opened",
        "issue": {"number": 7, "title": "CSV export crashes", "body": "More than 10k rows."},
        "repository": {"full_name": "acme/shop"},
    }
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(b"a shared secret", body, hashlib.sha256).hexdigest()
    url = f"http://127.0.0.1:{port}/hooks/issue-labeller"
    headers = {"Content-Type": "application/json", "X-GitHub-Delivery": "delivery-1"}
    forged = post(url, body, {**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64})
    assert forged[0] == 401
    status, answer = post(url, body, {**headers, "X-Hub-Signature-256": signature})
    assert (status, answer["outcome"]) == (202, "started"), answer
    replay = post(url, body, {**headers, "X-Hub-Signature-256": signature})
    assert replay[0] == 409

    # watch: a new file in inbox/ starts a run with changed_paths
    (folder / "fixtures" / "mailbox" / "inbox" / "new-message.md").write_text(
        "From: kim@example.com\nSubject: the export is down\n"
    )

    [labeller] = wait_for(lambda: finished_runs("issue-labeller"), "the labeller run")
    assert labeller.id == answer["run_id"]
    assert labeller.trigger == "webhook"
    assert json.loads(labeller.inputs_json) == {
        **payload_inputs(payload),
        "body": "More than 10k rows.",
    }
    assert labeller.stop_reason == "waiting_approval"  # approve-all, unattended: queue
    [labels] = store.approvals(labeller.id)
    assert labels["tool"] == "http_request" and "acme/shop/issues/7/labels" in labels["arguments"]

    [triage] = wait_for(lambda: finished_runs("inbox-triage"), "the inbox-triage run")
    assert triage.trigger == "watch"
    assert json.loads(triage.inputs_json) == {"changed_paths": ["inbox/new-message.md"]}
    assert triage.stop_reason == "waiting_approval"
    [write] = store.approvals(triage.id)
    assert write["tool"] == "write_file" and "triage/new-message.md" in write["arguments"]
    read = store.tool_calls(triage.id)[0]
    assert read["status"] == "ok" and "the export is down" in read["result"]

    status_run = subprocess.run(
        [sys.executable, "-m", "runner", "daemon", "status"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert status_run.returncode == 0, status_run.stderr
    assert "webhook /hooks/issue-labeller" in status_run.stdout
    assert "watch inbox" in status_run.stdout


def payload_inputs(payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "action": payload["action"],
        "repo": payload["repository"]["full_name"],
        "number": payload["issue"]["number"],
        "title": payload["issue"]["title"],
    }
