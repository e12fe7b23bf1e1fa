"""The command line's small frictions of a first session (issue 18), each pinned by a test.

Runs and approvals are written straight into the test's own store as the loop would record
them, so every test reads what the CLI prints for a known record.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from runner.compiler import coerce_inputs
from runner.errors import UsageError
from runner.events import (
    ApprovalDecided,
    ApprovalRequested,
    ModelCalled,
    RunFinished,
    RunStarted,
    StopReason,
    ToolCalled,
    ToolCallStatus,
    ToolStarted,
)
from runner.spec import load_spec
from runner.store import RunStore, new_run_id
from tests.conftest import ROOT
from tests.helpers import invoke, write_spec

#: A call id as the local model makes them: 29 characters, one more than `approvals` showed.
LONG_CALL_ID = "call_local_0123456789abcdef01"


def started(store: RunStore, trigger: str = "cli", agent: str = "writer") -> str:
    run_id = new_run_id()
    store.record(
        RunStarted(run_id, agent, "openai/fake", "agent.yaml", "0" * 64, {}, "Write it.", trigger)
    )
    return run_id


def finished(store: RunStore, run_id: str, reason: StopReason, steps: int, calls: int) -> None:
    store.record(RunFinished(run_id, reason, "done", steps, calls, 10, 5, None, 0.1))


def asked(store: RunStore, run_id: str, call_id: str) -> None:
    arguments = '{"path": "out/report.md", "content": "x"}'
    store.record(ToolStarted(run_id, 1, call_id, "write_file", arguments, "ask", "medium"))
    store.record(
        ApprovalRequested(run_id, call_id, "write_file", arguments, "f" * 64, "medium", "asks")
    )


def test_approvals_shows_whole_call_ids_that_approve_accepts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert len(LONG_CALL_ID) == 29
    store = RunStore.default()
    run_id = started(store)
    asked(store, run_id, LONG_CALL_ID)
    finished(store, run_id, StopReason.WAITING_APPROVAL, 1, 0)
    code, out, _ = invoke(["approvals"], capsys)
    assert code == 0
    [line] = [line for line in out.splitlines() if line.startswith(run_id)]
    shown = line.split()[1]
    assert shown == LONG_CALL_ID
    code, out, err = invoke(["approve", run_id, shown], capsys)
    assert code == 0, err


def test_runs_status_refuses_an_unknown_status_listing_the_valid_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = invoke(["runs", "--status", "bogus"], capsys)
    assert code == 2
    assert "no runs recorded" not in out + err
    assert "'bogus' is not one of" in err
    for valid in ("running", "completed", "waiting_approval", "max_steps"):
        assert repr(valid) in err


def test_runs_status_accepts_a_stop_reason(capsys: pytest.CaptureFixture[str]) -> None:
    store = RunStore.default()
    done, stopped = started(store), started(store)
    finished(store, done, StopReason.COMPLETED, 1, 0)
    finished(store, stopped, StopReason.MAX_STEPS, 3, 3)
    code, out, _ = invoke(["runs", "--status", "max_steps"], capsys)
    assert code == 0
    assert stopped in out and done not in out


def test_runs_lists_the_trigger_of_each_run(capsys: pytest.CaptureFixture[str]) -> None:
    store = RunStore.default()
    by_cron = started(store, trigger="cron")
    by_hand = started(store, trigger="cli")
    code, out, _ = invoke(["runs"], capsys)
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split()[:4] == ["RUN", "AGENT", "TRIGGER", "STATUS"]
    triggers = {row.split()[0]: row.split()[2] for row in rows}
    assert triggers == {by_cron: "cron", by_hand: "cli"}


def test_runs_show_says_who_decided_each_approval(capsys: pytest.CaptureFixture[str]) -> None:
    store = RunStore.default()
    run_id = started(store)
    store.record(ModelCalled(run_id, 1, "openai/fake", 10, 5, None, 0.1, "Writing both."))
    asked(store, run_id, "call_1")
    store.decide(run_id, "call_1", False, "not this file", by="cli")
    store.record(
        ToolCalled(
            run_id, 1, "call_1", "write_file", "{}", "ask", ToolCallStatus.REFUSED, "denied", 0.0
        )
    )
    asked(store, run_id, "call_2")
    store.record(ApprovalDecided(run_id, "call_2", True, "approved at the terminal", "terminal"))
    store.record(
        ToolCalled(run_id, 1, "call_2", "write_file", "{}", "ask", ToolCallStatus.OK, "wrote", 0.0)
    )
    finished(store, run_id, StopReason.COMPLETED, 1, 1)
    code, out, err = invoke(["runs", "show", run_id], capsys)
    assert code == 0, err
    assert "denied by cli" in out and "not this file" in out
    assert "approved by terminal" in out


@pytest.mark.parametrize(
    ("steps", "calls", "expected"),
    [(1, 1, "1 step · 1 tool call ·"), (2, 0, "2 steps · 0 tool calls ·")],
)
def test_runs_show_counts_are_singular_for_one(
    steps: int, calls: int, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = RunStore.default()
    run_id = started(store)
    finished(store, run_id, StopReason.COMPLETED, steps, calls)
    code, out, _ = invoke(["runs", "show", run_id], capsys)
    assert code == 0
    assert expected in out


def test_tools_says_one_tool_in_the_singular(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "data").mkdir()
    spec = write_spec(
        tmp_path,
        """
        version: 1
        name: reader
        model: local/smollm2
        goal: Read.
        tools:
          read_file: {paths: [data]}
        """,
    )
    code, out, _ = invoke(["tools", str(spec)], capsys)
    assert code == 0
    assert "1 tool offered to the model" in out


def test_every_missing_input_is_named_at_once(tmp_path: Path) -> None:
    spec = load_spec(
        write_spec(
            tmp_path,
            """
            version: 1
            name: notes
            model: local/smollm2
            inputs:
              since: {type: string}
              version: {type: string}
              audience: {type: string, default: users}
            goal: Notes since {{ since }} for {{ version }} ({{ audience }}).
            """,
        )
    )
    with pytest.raises(UsageError) as raised:
        coerce_inputs(spec, {})
    assert str(raised.value) == (
        "agent 'notes' needs inputs 'since', 'version': "
        "pass --input since=VALUE --input version=VALUE"
    )
    with pytest.raises(UsageError, match=r"needs input 'version': pass --input version=VALUE$"):
        coerce_inputs(spec, {"since": "v1"})


def test_the_quickstart_and_the_starter_spec_agree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every ``agentrun run my-agent.yaml --input ...`` of the quickstart fits ``init``'s spec."""
    text = (ROOT / "docs" / "quickstart.md").read_text(encoding="utf-8")
    starter = tmp_path / "my-agent.yaml"
    code, _, err = invoke(["init", "my-agent", "--output", str(starter)], capsys)
    assert code == 0, err
    spec = load_spec(starter)
    runs = re.findall(r"agentrun run my-agent\.yaml((?: --input \S+)*)", text)
    assert runs, "the quickstart no longer runs my-agent.yaml"
    for flags in runs:
        given = dict(pair.split("=", 1) for pair in re.findall(r"--input (\S+)", flags))
        coerce_inputs(spec, given)  # an unknown input raises UsageError
    [named] = re.findall(r"has one input, `(\w+)`", text)
    assert list(spec.inputs) == [named]
    [goal] = re.findall(r"```yaml\ngoal: \|\n  (.*)\n```", text)
    assert spec.goal.strip() == goal
