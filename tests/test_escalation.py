"""Escalation (``escalate_on``) and continuing with more budget (``budgets.ceilings``)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

from runner.decisions import (
    DecisionRefused,
    Refusal,
    close_escalated,
    continue_escalated,
)
from runner.errors import StopReason, UsageError
from runner.escalation import (
    GrantRefused,
    check_grants,
    effective_spec,
    parse_grants,
)
from runner.events import RunFinished, RunStarted
from runner.spec import check_spec, load_spec
from runner.store import RunStore
from runner.testing import FakeOpenAIServer, call, text
from tests.helpers import invoke, write_spec
from tests.helpers import run_cli as cli


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("AGENTRUN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FAKE_API_KEY", "sk-fake-000000")
    return {**os.environ}


def store_of(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "home" / "runs.db")


def reader_spec(folder: Path, api_base: str, extra: str) -> Path:
    (folder / "data").mkdir(exist_ok=True)
    (folder / "data" / "a.txt").write_text("alpha")
    body = textwrap.dedent(
        f"""
        version: 1
        name: reader
        model: {{id: openai/fake, api_base: "{api_base}", api_key_env: FAKE_API_KEY}}
        goal: Read the data folder.
        tools:
          read_file: {{paths: [data]}}
          list_dir: {{paths: [data]}}
        """
    )
    return write_spec(folder, body + textwrap.dedent(extra))


MAX_STEPS = """
budgets:
  max_steps: 2
  ceilings: {max_steps: 6}
escalate_on: [max_steps]
"""

TWO_READS = [
    call("list_dir", {"path": "data"}, content="Looking."),
    call("read_file", {"path": "data/a.txt"}),
]


def test_max_steps_escalates_then_a_grant_continues_where_it_stopped(
    tmp_path: Path, env: dict[str, str]
) -> None:
    with FakeOpenAIServer([*TWO_READS, text("It says alpha.")]) as server:
        spec = reader_spec(tmp_path, server.api_base, MAX_STEPS)
        stopped = cli(["run", str(spec)], env)
        assert stopped.returncode == 5, stopped.stderr
        store = store_of(tmp_path)
        [row] = store.runs()
        assert (row.status, row.stop_reason, row.escalated_from) == (
            "escalated",
            "escalated",
            "max_steps",
        )
        [escalation] = store.escalations(row.id)
        assert escalation["status"] == "open" and escalation["stop_reason"] == "max_steps"
        # The context a person needs: usage against the limit, the last call, what to do.
        assert "2 of 2 steps" in row.message
        assert 'read_file {"path": "data/a.txt"}' in row.message
        assert f"agentrun resume {row.id} --add max_steps=4" in row.message
        assert f"agentrun runs close {row.id}" in row.message
        listed = cli(["escalations"], env)
        assert row.id in listed.stdout and "max_steps" in listed.stdout
        # Without a grant it would stop again at once: refused.
        plain = cli(["resume", row.id], env)
        assert plain.returncode == 2 and "--add max_steps=N" in plain.stderr
        over = cli(["resume", row.id, "--add", "max_steps=5"], env)
        assert over.returncode == 2
        assert "a grant over the ceiling is refused" in over.stderr
        assert "budgets.ceilings.max_steps = 6" in over.stderr
        assert "the most that can still be granted is 4" in over.stderr
        assert store.grants(row.id) == [] and store.escalations(row.id)[0]["status"] == "open"
        assert len(server.requests) == 2
        resumed = cli(["resume", row.id, "--add", "max_steps=3", "--reason", "nearly there"], env)
        assert resumed.returncode == 0, resumed.stderr
        assert resumed.stdout.strip() == "It says alpha."
    row = store.run(row.id)
    assert row is not None and row.stop_reason == "completed" and row.steps == 3
    [grant] = store.grants(row.id)
    assert (grant["budget"], grant["amount"], grant["granted_by"], grant["reason"]) == (
        "max_steps",
        3,
        "cli",
        "nearly there",
    )
    assert store.escalations(row.id, status=None)[0]["status"] == "continued"
    shown = cli(["runs", "show", row.id], env).stdout
    assert "escalations:\n  max_steps at " in shown and ": continued by cli at " in shown
    assert "  granted max_steps +3 by cli at " in shown and shown.count("nearly there") == 2
    # The conversation went on exactly where it stopped: the earlier messages intact, the
    # last call's result (and the budget note that followed it) added once, and no
    # completed call ran again.
    before, after = server.requests[1]["messages"], server.requests[2]["messages"]
    assert after[: len(before)] == before
    added = after[len(before) :]
    assert [m["role"] for m in added] == ["assistant", "tool", "user"]
    assert added[1]["content"] == "alpha" and added[2]["content"].startswith("Budget note")
    calls = store.tool_calls(row.id)
    assert [c["tool"] for c in calls] == ["list_dir", "read_file"]
    assert all(c["status"] == "ok" for c in calls)


def run_quietly(spec: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code, _out, err = invoke(["run", str(spec), "--quiet"], capsys)
    return code, err


def test_refused_grants_record_nothing(
    tmp_path: Path, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    extra = """
    budgets:
      max_steps: 2
      max_tokens: 100000
      ceilings: {max_steps: 4}
    escalate_on: [max_steps]
    """
    with FakeOpenAIServer(TWO_READS) as server:
        code, _err = run_quietly(reader_spec(tmp_path, server.api_base, extra), capsys)
    assert code == 5
    store = store_of(tmp_path)
    run_id = store.runs()[0].id

    def refused(grants: dict[str, Any]) -> DecisionRefused:
        with pytest.raises(DecisionRefused) as caught:
            continue_escalated(store, None, run_id, grants, "", "cli")
        return caught.value

    no_ceiling = refused({"max_steps": 1, "max_tokens": 1000})
    assert no_ceiling.refusal is Refusal.GRANT_REFUSED
    assert "budgets.ceilings sets no ceiling for it" in str(no_ceiling)
    unset = refused({"max_steps": 1, "max_cost_usd": 0.5})
    assert unset.refusal is Refusal.GRANT_REFUSED and "the spec sets no max_cost_usd" in str(unset)
    assert refused({"max_stepz": 1}).refusal is Refusal.GRANT_INVALID
    assert refused({"max_steps": "two"}).refusal is Refusal.GRANT_INVALID
    assert refused({"max_steps": 1.5}).refusal is Refusal.GRANT_INVALID
    assert refused({"max_steps": -1}).refusal is Refusal.GRANT_INVALID
    assert refused({"max_tokens": 10}).refusal is Refusal.GRANT_INVALID  # not the one needed
    assert store.grants(run_id) == []
    assert store.escalations(run_id)[0]["status"] == "open"
    # Grants add up across continues: 2 + 2 reaches the ceiling, one more passes it.
    decided = continue_escalated(store, None, run_id, {"max_steps": 2}, "", "cli")
    assert decided.limits == {"max_steps": 4.0}
    spec = load_spec(store.run(run_id).spec_path)  # type: ignore[union-attr]
    with pytest.raises(GrantRefused, match="the most that can still be granted is 0"):
        check_grants(spec, store.grants(run_id), {"max_steps": 1})
    assert effective_spec(spec, store.grants(run_id)).budgets.max_steps == 4
    # Continued once: a second decision is refused, whoever makes it.
    again = refused({"max_steps": 1})
    assert again.refusal is Refusal.DECIDED and "continued by cli" in str(again)


def test_close_gives_the_run_its_stop_reason_back_for_good(
    tmp_path: Path, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeOpenAIServer(TWO_READS) as server:
        code, _err = run_quietly(reader_spec(tmp_path, server.api_base, MAX_STEPS), capsys)
    assert code == 5
    store = store_of(tmp_path)
    run_id = store.runs()[0].id
    code, out, _err = invoke(["runs", "close", run_id, "--reason", "not worth it"], capsys)
    assert code == 0 and "its stop reason is max_steps" in out
    row = store.run(run_id)
    assert row is not None
    assert (row.status, row.stop_reason, row.resumable) == ("finished", "max_steps", False)
    [closed] = store.escalations(run_id, status=None)
    assert (closed["status"], closed["decided_by"], closed["decision_reason"]) == (
        "closed",
        "cli",
        "not worth it",
    )
    assert store.escalations() == []
    code, _out, err = invoke(["resume", run_id, "--add", "max_steps=1"], capsys)
    assert code == 2 and "can no longer be resumed" not in err  # the store's own refusal
    with pytest.raises(DecisionRefused) as caught:
        continue_escalated(store, None, run_id, {"max_steps": 1}, "", "api")
    assert caught.value.refusal is Refusal.DECIDED and "closed by cli" in str(caught.value)
    with pytest.raises(DecisionRefused) as twice:
        close_escalated(store, run_id, "", "api")
    assert twice.value.refusal is Refusal.DECIDED
    entries = store.events_since(0, types=("escalation_decided",))
    assert [(e["status"], e["by"], e["reason"]) for e in entries] == [
        ("closed", "cli", "not worth it")
    ]


def test_a_reason_not_in_escalate_on_ends_the_run_as_before(
    tmp_path: Path, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    extra = """
    budgets: {max_steps: 2, ceilings: {max_steps: 6}}
    escalate_on: [loop_detected]
    """
    with FakeOpenAIServer(TWO_READS) as server:
        code, _err = run_quietly(reader_spec(tmp_path, server.api_base, extra), capsys)
    assert code == 3
    store = store_of(tmp_path)
    [row] = store.runs()
    assert (row.stop_reason, row.escalated_from, row.resumable) == ("max_steps", None, False)
    assert store.escalations(status=None) == []
    with pytest.raises(DecisionRefused) as caught:
        continue_escalated(store, None, row.id, {"max_steps": 1}, "", "cli")
    assert caught.value.refusal is Refusal.NOT_ESCALATED


def test_continuing_a_loop_detected_escalation_resets_the_loop_detector(
    tmp_path: Path, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    extra = """
    loop_detection: {warn_after: 2, stop_after: 3}
    escalate_on: [loop_detected]
    """
    same = call("list_dir", {"path": "data"})
    with FakeOpenAIServer([same, same, same, same, text("Nothing changes.")]) as server:
        spec = reader_spec(tmp_path, server.api_base, extra)
        code, _err = run_quietly(spec, capsys)
        assert code == 5
        store = store_of(tmp_path)
        [row] = store.runs()
        assert (row.stop_reason, row.escalated_from) == ("escalated", "loop_detected")
        assert f"continue with: agentrun resume {row.id}" in row.message
        # A plain resume continues it (no budget was exhausted); the repeats a person has
        # seen no longer count, so one more repeat does not stop it again.
        code, out, err = invoke(["resume", row.id, "--quiet"], capsys)
        assert code == 0, err
        assert out.strip() == "Nothing changes."
    row = store.run(row.id)
    assert row is not None and row.stop_reason == "completed"
    assert [e["status"] for e in store.escalations(row.id, status=None)] == ["continued"]
    assert len(store.tool_calls(row.id)) == 4


def test_checks_failed_continues_only_with_more_check_retries(
    tmp_path: Path, env: dict[str, str]
) -> None:
    extra = """
    max_check_retries: 1
    budgets: {ceilings: {max_check_retries: 3}}
    escalate_on: [checks_failed]
    """
    spec_path = reader_spec(tmp_path, "http://127.0.0.1:9/v1", extra)
    spec = load_spec(spec_path)
    store = RunStore(tmp_path / "home" / "runs.db")
    run_id = "01JCHECKSFAILED0000000000A"
    store.record(
        RunStarted(run_id, "reader", "openai/fake", str(spec.path), spec.source_sha256, {}, "go")
    )
    store.record(
        RunFinished(
            run_id,
            StopReason.ESCALATED,
            None,
            1,
            0,
            0,
            0,
            None,
            0.1,
            escalated_from=StopReason.CHECKS_FAILED,
        )
    )
    with pytest.raises(DecisionRefused) as caught:
        continue_escalated(store, None, run_id, {}, "", "cli")
    assert caught.value.refusal is Refusal.GRANT_INVALID
    assert "--add max_check_retries=N" in str(caught.value)
    with pytest.raises(DecisionRefused, match="the most that can still be granted is 2"):
        continue_escalated(store, None, run_id, {"max_check_retries": 3}, "", "cli")
    continue_escalated(store, None, run_id, {"max_check_retries": 2}, "", "cli")
    assert effective_spec(spec, store.grants(run_id)).max_check_retries == 3


def test_grant_flags_are_parsed_strictly() -> None:
    assert parse_grants(["max_steps=10", "max_cost_usd=0.5", "max_duration=15m"]) == {
        "max_steps": 10.0,
        "max_cost_usd": 0.5,
        "max_duration": 900.0,
    }
    assert parse_grants(["max_steps=2", "max_steps=3"]) == {"max_steps": 5.0}
    for bad, why in [
        ("max_steps", "expected NAME=VALUE"),
        ("steps=3", "the limits that can be raised are max_steps"),
        ("max_steps=ten", "expected a whole number"),
        ("max_duration=soon", "expected a duration"),
        ("max_cost_usd=-1", "a grant adds a positive amount"),
        ("max_cost_usd=nan", "a grant adds a positive amount"),
    ]:
        with pytest.raises(UsageError, match=why):
            parse_grants([bad])


def test_resume_add_on_a_run_that_is_not_escalated_is_refused(
    tmp_path: Path, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    extra = "autonomy: approve-all\nunattended: queue\n"
    with FakeOpenAIServer(TWO_READS) as server:
        code, _err = run_quietly(reader_spec(tmp_path, server.api_base, extra), capsys)
    assert code == 5
    run_id = store_of(tmp_path).runs()[0].id
    assert invoke(["approve", run_id], capsys)[0] == 0
    code, _out, err = invoke(["resume", run_id, "--add", "max_steps=1"], capsys)
    assert code == 2 and "--add is a grant to an escalated run" in err
    assert store_of(tmp_path).run(run_id).stop_reason == "waiting_approval"  # type: ignore[union-attr]


def test_spec_checks_of_escalate_on_and_ceilings(tmp_path: Path) -> None:
    path = write_spec(
        tmp_path,
        """
        version: 1
        name: checked
        model: openai/gpt-4o-mini
        goal: go
        budgets:
          max_steps: 10
          max_tool_calls: 5
          ceilings: {max_steps: 5, max_tokens: 1000}
        escalate_on: [max_tool_calls, max_cost_usd, loop_detected]
        """,
    )
    spec, diagnostics = check_spec(path)
    assert spec is None  # the ceiling below its limit is an error
    found = {(d.severity, d.line, d.message.split(":")[0]) for d in diagnostics}
    assert found == {
        (
            "error",
            8,
            "budgets.ceilings.max_steps (5) is below the limit it caps (budgets.max_steps = 10)",
        ),
        ("warning", 8, "budgets.ceilings.max_tokens is 1000 but budgets.max_tokens is not set"),
        (
            "warning",
            9,
            "escalate_on lists 'max_tool_calls' but budgets.ceilings sets no max_tool_calls",
        ),
        ("warning", 9, "escalate_on lists 'max_cost_usd' but budgets.max_cost_usd is not set"),
        ("warning", 7, "max_tool_calls is set but the spec declares no tools"),
    }


def test_a_checks_failed_escalation_continues_with_one_more_retry(
    tmp_path: Path, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    extra = """
    checks:
      - answer_matches: '^OK'
    max_check_retries: 0
    budgets: {ceilings: {max_check_retries: 2}}
    escalate_on: [checks_failed]
    """
    with FakeOpenAIServer([text("Not sure."), text("OK: read it.")]) as server:
        code, _err = run_quietly(reader_spec(tmp_path, server.api_base, extra), capsys)
        assert code == 5
        store = store_of(tmp_path)
        [row] = store.runs()
        assert (row.stop_reason, row.escalated_from) == ("escalated", "checks_failed")
        assert f"agentrun resume {row.id} --add max_check_retries=2" in row.message
        code, out, err = invoke(["resume", row.id, "--add", "max_check_retries=1", "-q"], capsys)
        assert code == 0, err
        assert out.strip() == "OK: read it."
    # The model was told what failed, in the conversation it continued.
    told = server.requests[1]["messages"][-1]
    assert told["role"] == "user" and "Not sure." not in told["content"]
    assert "answer_matches" in told["content"] or "^OK" in told["content"]
    assert store.run(row.id).stop_reason == "completed"  # type: ignore[union-attr]


def test_a_decision_that_loses_the_race_is_refused_never_reported_as_made(
    tmp_path: Path,
    env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with FakeOpenAIServer(TWO_READS) as server:
        code, _err = run_quietly(reader_spec(tmp_path, server.api_base, MAX_STEPS), capsys)
    assert code == 5
    store = store_of(tmp_path)
    run_id = store.runs()[0].id
    real = store.decide_escalation

    def alice_first(*args: Any, **kwargs: Any) -> bool:
        # Between the check and the write, another person closes it.
        real(run_id, "closed", "alice", "mine")
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "decide_escalation", alice_first)
    with pytest.raises(DecisionRefused) as lost:
        close_escalated(store, run_id, "", "api")
    assert lost.value.refusal is Refusal.DECIDED and "closed by alice first" in str(lost.value)
    [record] = store.escalations(run_id, status=None)
    assert (record["status"], record["decided_by"]) == ("closed", "alice")
