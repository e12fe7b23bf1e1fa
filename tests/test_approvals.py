"""Autonomy levels x risk x rules, approvals at a terminal, pause and resume across processes."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runner.compiler import compile_agent
from runner.events import StopReason
from runner.loop import Run
from runner.policy import Decision, Policy
from runner.spec import RulesSpec, load_spec
from runner.store import RunStore
from runner.testing import FakeOpenAIServer, ScriptedModel, call, text
from runner.tools import Tool, ToolRegistry
from tests.conftest import ROOT
from tests.helpers import run_cli as cli
from tests.helpers import write_spec

LEVELS = ["suggest", "approve-all", "approve-writes", "approve-risky", "autonomous"]
RISKS = ["low", "medium", "high"]
# DESIGN.md: what runs without asking at each level.
RUNS_ALONE = {
    "suggest": set(),
    "approve-all": set(),
    "approve-writes": {"low"},
    "approve-risky": {"low", "medium"},
    "autonomous": {"low", "medium", "high"},
}
RULES = {
    "none": RulesSpec(),
    "allow": RulesSpec(allow=("probe",)),
    "ask": RulesSpec(ask=("probe",)),
    "deny": RulesSpec(deny=("probe",)),
    "allow+ask": RulesSpec(allow=("probe",), ask=("probe",)),
    "ask+deny": RulesSpec(ask=("probe",), deny=("probe",)),
    "allow+deny": RulesSpec(allow=("probe",), deny=("probe",)),
    "arg-deny": RulesSpec(deny=("probe:target=prod*",)),
    "arg-allow-other": RulesSpec(allow=("probe:target=dev*",)),
}


def expected(level: str, risk: str, rules: str, target: str) -> Decision:
    spec = RULES[rules]
    denied = "probe" in spec.deny or (rules == "arg-deny" and target.startswith("prod"))
    if denied:
        return Decision.DENY
    if level == "suggest":
        return Decision.PROPOSE
    if "probe" in spec.ask:
        return Decision.ASK
    if "probe" in spec.allow or (rules == "arg-allow-other" and target.startswith("dev")):
        return Decision.ALLOW
    return Decision.ALLOW if risk in RUNS_ALONE[level] else Decision.ASK


@pytest.mark.parametrize("target", ["prod-db", "dev-db"])
@pytest.mark.parametrize("rules", list(RULES))
@pytest.mark.parametrize("risk", RISKS)
@pytest.mark.parametrize("level", LEVELS)
def test_decision_table(level: str, risk: str, rules: str, target: str) -> None:
    policy = Policy(level, RULES[rules])
    assert policy.decide("probe", risk, {"target": target}) is expected(level, risk, rules, target)


class Probe(Tool):
    name = "probe"
    description = "Counts its executions."
    parameters = {"type": "object", "properties": {"target": {"type": "string"}}}  # noqa: RUF012

    def __init__(self, risk: str) -> None:
        self.risk = risk
        self.executed = 0

    def run(self, arguments: dict[str, Any]) -> str:
        self.executed += 1
        return "probed"


@pytest.mark.parametrize("rules", ["none", "deny", "ask", "allow"])
@pytest.mark.parametrize("risk", RISKS)
@pytest.mark.parametrize("level", LEVELS)
def test_a_call_the_spec_does_not_allow_never_executes(
    tmp_path: Path, level: str, risk: str, rules: str
) -> None:
    rule_yaml = {
        "none": "",
        "deny": "rules: {deny: [probe]}\n",
        "ask": "rules: {ask: [probe]}\n",
        "allow": "rules: {allow: [probe]}\n",
    }[rules]
    spec = load_spec(
        write_spec(
            tmp_path,
            f"version: 1\nname: table\nmodel: openai/x\ngoal: go\nautonomy: {level}\nunattended: deny\n"
            "tools:\n  list_dir: {paths: [.]}\n" + rule_yaml.replace("probe", "list_dir"),
        )
    )
    probe = Probe(risk)
    agent = compile_agent(spec)
    agent = type(agent)(
        **{**agent.__dict__, "tools": ToolRegistry([probe]), "policy": Policy(level, RULES[rules])}
    )
    model = ScriptedModel([call("probe", {"target": "x"}), text("done")])
    finished = asyncio.run(Run(agent, model).execute())
    should_run = expected(level, risk, rules, "x") is Decision.ALLOW
    assert probe.executed == (1 if should_run else 0)
    if level == "suggest" and rules != "deny":
        assert finished.stop_reason is StopReason.PROPOSED
    else:
        assert finished.stop_reason is StopReason.COMPLETED


# ---------------------------------------------------------------------------------------------
# pause and resume across processes


def writer_spec(folder: Path, api_base: str, unattended: str = "queue") -> Path:
    (folder / "out").mkdir(exist_ok=True)
    return write_spec(
        folder,
        f"""
        version: 1
        name: writer
        model: {{id: openai/fake, api_base: "{api_base}", api_key_env: FAKE_API_KEY}}
        goal: Write the report.
        tools:
          write_file: {{paths: [out]}}
        autonomy: approve-writes
        unattended: {unattended}
        """,
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "AGENTRUN_HOME": str(tmp_path / "home"), "FAKE_API_KEY": "sk-fake-000000"}


def test_pause_approve_in_another_process_and_resume(tmp_path: Path, env: dict[str, str]) -> None:
    script = [
        call("write_file", {"path": "out/report.md", "content": "all good"}, content="Saving it."),
        text("Saved."),
    ]
    with FakeOpenAIServer(script) as server:
        spec = writer_spec(tmp_path, server.api_base)
        paused = cli(["run", str(spec)], env)
        assert paused.returncode == 5, paused.stderr
        assert not (tmp_path / "out" / "report.md").exists()
        store = RunStore(tmp_path / "home" / "runs.db")
        [row] = store.runs()
        assert (row.status, row.stop_reason) == ("waiting_approval", "waiting_approval")
        listed = cli(["approvals"], env)
        assert (
            row.id in listed.stdout and "write_file" in listed.stdout and "medium" in listed.stdout
        )
        # Resuming before anyone decided keeps waiting, and says so.
        early = cli(["resume", row.id], env)
        assert early.returncode == 5 and "still waits for approval" in early.stderr
        approved = cli(["approve", row.id], env)
        assert approved.returncode == 0, approved.stderr
        resumed = cli(["resume", row.id], env)
        assert resumed.returncode == 0, resumed.stderr
        assert resumed.stdout.strip() == "Saved."
    assert (tmp_path / "out" / "report.md").read_text() == "all good"
    row = store.run(row.id)
    assert row is not None and row.stop_reason == "completed"
    assert len(server.requests) == 2  # the paused step was not asked again
    [approval] = store.approvals(row.id, status=None)
    assert approval["status"] == "approved" and approval["decided_by"] == "cli"
    [tool] = store.tool_calls(row.id)
    assert tool["status"] == "ok"


def test_deny_sends_the_reason_to_the_model(tmp_path: Path, env: dict[str, str]) -> None:
    script = [
        call("write_file", {"path": "out/x.md", "content": "x"}),
        text("Understood, not writing."),
    ]
    with FakeOpenAIServer(script) as server:
        spec = writer_spec(tmp_path, server.api_base)
        assert cli(["run", str(spec)], env).returncode == 5
        run_id = RunStore(tmp_path / "home" / "runs.db").runs()[0].id
        denied = cli(["deny", run_id, "--reason", "reports go to the wiki"], env)
        assert denied.returncode == 0, denied.stderr
        resumed = cli(["resume", run_id], env)
        assert resumed.returncode == 0, resumed.stderr
    tool_message = server.requests[1]["messages"][-1]
    assert tool_message["role"] == "tool"
    assert (
        tool_message["content"]
        == "error: a person denied this call of write_file: reports go to the wiki"
    )
    assert not (tmp_path / "out" / "x.md").exists()


def test_approval_for_other_arguments_is_refused(tmp_path: Path, env: dict[str, str]) -> None:
    script = [call("write_file", {"path": "out/a.md", "content": "harmless"}), text("ok")]
    with FakeOpenAIServer(script) as server:
        spec = writer_spec(tmp_path, server.api_base)
        assert cli(["run", str(spec)], env).returncode == 5
        store = RunStore(tmp_path / "home" / "runs.db")
        run_id = store.runs()[0].id
        assert cli(["approve", run_id], env).returncode == 0
        # Someone changes the pending call's arguments in the store after the approval.
        row = store.db.execute(
            "SELECT seq, message_json FROM messages WHERE run_id = ? AND message_json LIKE '%tool_calls%'",
            (run_id,),
        ).fetchone()
        message = json.loads(row["message_json"])
        message["tool_calls"][0]["function"]["arguments"] = json.dumps(
            {"path": "out/a.md", "content": "rm -rf"}
        )
        store.db.execute(
            "UPDATE messages SET message_json = ? WHERE run_id = ? AND seq = ?",
            (json.dumps(message), run_id, row["seq"]),
        )
        resumed = cli(["resume", run_id], env)
        assert resumed.returncode == 0, resumed.stderr
    assert not (tmp_path / "out" / "a.md").exists()
    assert (
        "approval was given for different arguments"
        in server.requests[1]["messages"][-1]["content"]
    )


def test_unattended_fail_and_deny(tmp_path: Path, env: dict[str, str]) -> None:
    with FakeOpenAIServer(
        [call("write_file", {"path": "out/a.md", "content": "x"}), text("never")]
    ) as server:
        failed = cli(["run", str(writer_spec(tmp_path, server.api_base, "fail"))], env)
    assert failed.returncode == 4
    assert "needs an approval and nobody is attached" in failed.stderr
    with FakeOpenAIServer(
        [call("write_file", {"path": "out/a.md", "content": "x"}), text("fine")]
    ) as server:
        denied = cli(["run", str(writer_spec(tmp_path, server.api_base, "deny"))], env)
    assert denied.returncode == 0
    assert "nobody is attached to approve it" in server.requests[1]["messages"][-1]["content"]
    assert not (tmp_path / "out" / "a.md").exists()


# ---------------------------------------------------------------------------------------------
# the terminal prompt, through a real pseudo-terminal


class Terminal:
    """A child process on a pseudo-terminal, read until a pattern shows up."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "runner", *args],
            cwd=ROOT,
            env=env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
        )
        os.close(slave)
        self.seen = ""

    def expect(self, pattern: str, limit_s: float = 60.0) -> None:
        while pattern not in self.seen:
            ready, _, _ = select.select([self.master], [], [], limit_s)
            assert ready, f"{pattern!r} never appeared; saw:\n{self.seen}"
            try:
                chunk = os.read(self.master, 4096).decode(errors="replace")
            except OSError:
                chunk = ""
            assert chunk, f"the process ended before {pattern!r}; saw:\n{self.seen}"
            self.seen += chunk

    def send(self, line: str) -> None:
        os.write(self.master, (line + "\n").encode())

    def finish(self) -> int:
        code = self.process.wait(timeout=120)
        try:
            while True:
                ready, _, _ = select.select([self.master], [], [], 0.5)
                if not ready:
                    break
                chunk = os.read(self.master, 4096).decode(errors="replace")
                if not chunk:
                    break
                self.seen += chunk
        except OSError:
            pass
        os.close(self.master)
        return code


def two_writes() -> list[Any]:
    return [
        call("write_file", {"path": "out/one.md", "content": "1"}, content="First file."),
        call("write_file", {"path": "out/two.md", "content": "2"}, content="Second file."),
        text("Both written."),
    ]


def test_terminal_approve_once_then_deny_with_reason(tmp_path: Path, env: dict[str, str]) -> None:
    with FakeOpenAIServer(two_writes()) as server:
        terminal = Terminal(["run", str(writer_spec(tmp_path, server.api_base, "fail"))], env)
        terminal.expect("approval needed: write_file (risk medium)")
        terminal.expect("the model says: First file.")
        terminal.expect("[y] approve once")
        terminal.send("y")
        terminal.expect(
            "approval needed: write_file (risk medium)",
        )
        terminal.expect("out/two.md")
        terminal.expect("so far: 2 steps, 1 tool calls")
        terminal.send("n")
        terminal.expect("reason")
        terminal.send("two is enough")
        assert terminal.finish() == 0, terminal.seen
    assert (tmp_path / "out" / "one.md").read_text() == "1"
    assert not (tmp_path / "out" / "two.md").exists()
    assert (
        server.requests[2]["messages"][-1]["content"]
        == "error: a person denied this call of write_file: two is enough"
    )
    decided = RunStore(tmp_path / "home" / "runs.db").approvals(status=None)
    assert [a["status"] for a in decided] == ["approved", "denied"]


def test_terminal_approve_for_the_rest_of_the_run(tmp_path: Path, env: dict[str, str]) -> None:
    with FakeOpenAIServer(two_writes()) as server:
        terminal = Terminal(["run", str(writer_spec(tmp_path, server.api_base, "fail"))], env)
        terminal.expect("[a] approve this tool for the run")
        terminal.send("a")
        assert terminal.finish() == 0, terminal.seen
    assert terminal.seen.count("approval needed") == 1
    assert (tmp_path / "out" / "one.md").read_text() == "1"
    assert (tmp_path / "out" / "two.md").read_text() == "2"
    assert len(server.requests) == 3


# ---------------------------------------------------------------------------------------------
# a call its tool would refuse is never put to a person


class Recording:
    """An approver that approves everything and remembers what it was asked."""

    name = "recording"

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def request(self, request: Any) -> Any:
        from runner.policy import Approval

        self.asked.append(request.arguments.get("path", ""))
        return Approval(True, "fine")

    async def answer(self, question: Any) -> str:
        return ""


def test_a_call_its_tool_would_refuse_is_not_put_to_a_person(tmp_path: Path) -> None:
    """write_file outside its paths asks nobody: approved, it would still be refused."""
    (tmp_path / "out").mkdir()
    spec = load_spec(
        write_spec(
            tmp_path,
            """
            version: 1
            name: writer
            model: openai/scripted
            goal: Write a note.
            autonomy: approve-writes
            tools:
              write_file: {paths: [out]}
            """,
        )
    )
    model = ScriptedModel(
        [
            call("write_file", {"path": "../elsewhere.md", "content": "x"}),
            call("write_file", {"path": "out/note.md", "content": "x"}),
            text("done"),
        ]
    )
    approver = Recording()
    store = RunStore(tmp_path / "runs.db")
    run = Run(compile_agent(spec), model, [store.record], approver=approver)
    finished = asyncio.run(run.execute())
    assert finished.stop_reason is StopReason.COMPLETED
    assert approver.asked == ["out/note.md"]  # only the call that could run
    outside, inside = store.tool_calls(finished.run_id)
    assert (outside["decision"], outside["status"]) == ("ask", "refused")
    assert (
        outside["result"] == "error: path '../elsewhere.md' contains '..'; name paths inside 'out'"
    )
    assert (inside["decision"], inside["status"]) == ("ask", "ok")
    assert not (tmp_path.parent / "elsewhere.md").exists()
    assert finished.tool_calls == 1  # the refused call was not charged to the budget
