"""Success checks (the spec's ``checks:``): each kind, retries with feedback, the stop
``checks_failed`` (exit code 7), the record in the store, and a resume that keeps count."""

from __future__ import annotations

import asyncio
import json
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

from runner.compiler import compile_agent
from runner.events import CheckRan, Event, StopReason
from runner.loop import run_agent
from runner.resume import restore_state
from runner.spec import AgentSpec, check_spec, load_spec
from runner.store import RunStore
from runner.success_checks import SuccessChecks
from runner.testing import FakeOpenAIServer, ScriptedModel, call, text
from tests.helpers import invoke, write_spec

#: A check script: passes when result.txt holds 42, else says what it found.
CHECK_SCRIPT = """\
import pathlib, sys
found = pathlib.Path("result.txt").read_text().strip() if pathlib.Path("result.txt").exists() else None
if found != "42":
    print(f"FAIL: expected 42 in result.txt, found {found!r}")
    sys.exit(1)
print("PASS: result.txt holds 42")
"""


def spec_text(checks: str, extra: str = "", model: str = "openai/scripted") -> str:
    return (
        textwrap.dedent(
            f"""
        version: 1
        name: checker
        model: {model}
        goal: Put the answer in result.txt.
        tools:
          write_file: {{paths: [result.txt]}}
          shell:
            commands:
              - python check.py
              - python hang.py
        autonomy: autonomous
        """
        )
        + textwrap.dedent(checks)
        + textwrap.dedent(extra)
    )


def make(folder: Path, checks: str, extra: str = "") -> AgentSpec:
    (folder / "check.py").write_text(CHECK_SCRIPT)
    return load_spec(write_spec(folder, spec_text(checks, extra)))


def execute(spec: AgentSpec, model: ScriptedModel, store: RunStore, **options: Any) -> Any:
    events: list[Event] = []
    finished = asyncio.run(
        asyncio.wait_for(
            run_agent(compile_agent(spec), model, store=store, sinks=[events.append], **options),
            60,
        )
    )
    return finished, [e for e in events if isinstance(e, CheckRan)]


COMMAND_CHECK = """
checks:
  - name: result is 42
    command: python check.py
"""


def test_a_failed_command_check_goes_back_to_the_model_which_fixes_its_work(
    tmp_path: Path,
    store: RunStore,
) -> None:
    spec = make(tmp_path, COMMAND_CHECK)
    model = ScriptedModel(
        [
            call("write_file", {"path": "result.txt", "content": "41"}),
            text("Done: 41."),
            call("write_file", {"path": "result.txt", "content": "42"}),
            text("Fixed: 42."),
        ]
    )
    finished, ran = execute(spec, model, store)
    assert finished.stop_reason is StopReason.COMPLETED, finished.message
    assert finished.final == "Fixed: 42."
    # The model was told which check failed, with the command's output, before its third call.
    told = model.requests[2][0][-1]
    assert told["role"] == "user"
    assert "result is 42" in told["content"]
    assert "FAIL: expected 42 in result.txt, found '41'" in told["content"]
    assert "exit code 1" in told["content"]
    assert [(e.attempt, e.passed) for e in ran] == [(1, False), (2, True)]
    assert "PASS" in ran[1].output
    rows = store.check_runs(finished.run_id)
    assert [(r["attempt"], r["kind"], r["name"], r["passed"]) for r in rows] == [
        (1, "command", "result is 42", False),
        (2, "command", "result is 42", True),
    ]
    assert rows[0]["step"] == 2 and rows[1]["step"] == 4
    assert all(r["duration_s"] >= 0 for r in rows)


def test_checks_that_never_pass_stop_after_exactly_max_check_retries(
    tmp_path: Path, store: RunStore
) -> None:
    spec = make(tmp_path, COMMAND_CHECK, "max_check_retries: 3\n")
    model = ScriptedModel([text("Done.")], repeat_last=True)
    finished, ran = execute(spec, model, store)
    assert finished.stop_reason is StopReason.CHECKS_FAILED
    assert "after 3 retries" in finished.message and "): result is 42" in finished.message
    assert len(model.requests) == 4  # the first answer and three retries
    assert [e.attempt for e in ran] == [1, 2, 3, 4] and not any(e.passed for e in ran)
    assert len(store.check_runs(finished.run_id)) == 4
    # The last failure is in the conversation too, for a person who continues the run.
    last = store.messages(finished.run_id)[-1]
    assert last["role"] == "user" and "attempt 4" in last["content"]
    assert "FAIL: expected 42" in last["content"]


def test_no_retry_at_all_with_max_check_retries_zero(tmp_path: Path, store: RunStore) -> None:
    spec = make(tmp_path, COMMAND_CHECK, "max_check_retries: 0\n")
    model = ScriptedModel([text("Done.")], repeat_last=True)
    finished, ran = execute(spec, model, store)
    assert finished.stop_reason is StopReason.CHECKS_FAILED
    assert len(model.requests) == 1 and len(ran) == 1


def test_the_cli_exits_7_when_the_checks_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTRUN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FAKE_API_KEY", "sk-test-not-a-real-key")
    (tmp_path / "check.py").write_text(CHECK_SCRIPT)
    with FakeOpenAIServer([text("All done.")], repeat_last=True) as server:
        model = f'{{id: openai/fake, api_base: "{server.api_base}", api_key_env: FAKE_API_KEY}}'
        path = write_spec(tmp_path, spec_text(COMMAND_CHECK, "max_check_retries: 2\n", model))
        code, _, err = invoke(["run", str(path)], capsys)
    assert code == 7, err
    assert "[checks_failed]" in err
    assert len(server.requests) == 3  # exactly max_check_retries retries
    # The model was told of the failure over HTTP.
    assert "FAIL: expected 42" in server.requests[1]["messages"][-1]["content"]
    store = RunStore(tmp_path / "home" / "runs.db")
    [row] = store.runs()
    assert row.stop_reason == "checks_failed"
    assert [r["attempt"] for r in store.check_runs(row.id)] == [1, 2, 3]
    code, out, _ = invoke(["runs", "show", row.id], capsys)
    assert code == 0
    assert "checks:" in out and "result is 42" in out and "failed" in out
    assert "FAIL: expected 42" in out


def test_a_resumed_run_keeps_its_count_of_failed_checks(tmp_path: Path, store: RunStore) -> None:
    spec = make(
        tmp_path,
        COMMAND_CHECK,
        "max_check_retries: 2\nunattended: queue\nrules: {ask: [write_file]}\n",
    )
    first = ScriptedModel(
        [text("Done."), call("write_file", {"path": "result.txt", "content": "40"})]
    )
    paused, ran = execute(spec, first, store)
    assert paused.stop_reason is StopReason.WAITING_APPROVAL, paused.message
    assert [e.attempt for e in ran] == [1]
    assert restore_state(store, paused.run_id).failed_check_attempts == 1
    assert store.decide(paused.run_id, None, True) == 1
    later = ScriptedModel([text("Done again.")], repeat_last=True)
    finished, ran = execute(
        spec, later, store, run_id=paused.run_id, resume=restore_state(store, paused.run_id)
    )
    assert finished.stop_reason is StopReason.CHECKS_FAILED
    # Two retries in all: one before the pause, one after; not two fresh ones.
    assert len(later.requests) == 2
    assert [e.attempt for e in ran] == [2, 3]
    assert [r["attempt"] for r in store.check_runs(paused.run_id)] == [1, 2, 3]
    assert later.requests[0][0][-1]["content"] == "created result.txt (2 bytes)"
    assert "found '40'" in later.requests[1][0][-1]["content"]


def test_a_check_command_that_hangs_times_out_and_fails(tmp_path: Path, store: RunStore) -> None:
    (tmp_path / "hang.py").write_text(
        "import time\nprint('waiting', flush=True)\ntime.sleep(600)\n"
    )
    spec = make(tmp_path, "checks:\n  - {command: python hang.py, timeout: 1s}\n")
    finished, ran = execute(spec, ScriptedModel([text("Done.")], repeat_last=True), store)
    assert finished.stop_reason is StopReason.CHECKS_FAILED
    assert not any(e.passed for e in ran)
    assert "timed out after 1 s" in ran[0].output and "waiting" in ran[0].output


def test_a_check_command_sees_only_the_allowlisted_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHECK_SECRET", "s3cr3t-value")
    monkeypatch.setenv("CHECK_VISIBLE", "shown")
    (tmp_path / "env.py").write_text(
        "import os\nprint(sorted(k for k in os.environ if k.startswith('CHECK_')))\n"
    )
    spec = load_spec(
        write_spec(
            tmp_path,
            """
            version: 1
            name: envcheck
            model: openai/scripted
            goal: Nothing.
            env: [CHECK_VISIBLE]
            tools:
              shell: {commands: [python env.py]}
            checks:
              - command: python env.py
            """,
        )
    )
    result = asyncio.run(SuccessChecks(spec, "r", lambda e: None).run_check(spec.checks[0], ""))
    assert result.passed and "['CHECK_VISIBLE']" in result.output


# ---------------------------------------------------------------------------------------------
# each kind, passing and failing


def judge_one(tmp_path: Path, check: str, answer: str) -> tuple[bool, str]:
    spec = load_spec(
        write_spec(
            tmp_path,
            f"""
            version: 1
            name: kinds
            model: openai/scripted
            goal: Nothing.
            checks:
              - {check}
            """,
        )
    )
    result = asyncio.run(SuccessChecks(spec, "r", lambda e: None).run_check(spec.checks[0], answer))
    return result.passed, result.output


@pytest.mark.parametrize(
    ("check", "answer", "passed", "said"),
    [
        ("{file: report.md}", "", True, "exists"),
        ("{file: missing.md}", "", False, "does not exist"),
        ("{file: folder}", "", False, "is not a file"),
        ("{file: report.md, matches: '^## Tests$'}", "", True, "matches"),
        ("{file: report.md, matches: 'HEALTHY'}", "", False, "has no match for 'HEALTHY'"),
        ("{file: escape.md}", "", False, "outside the allowed paths"),
        ("{answer_matches: '^(OK|FIXED):'}", "FIXED: the test passes", True, "matches"),
        ("{answer_matches: '^(OK|FIXED):'}", "I could not fix it", False, "no match"),
        (
            "{answer_schema: {type: object, required: [fixed]}}",
            '```json\n{"fixed": true}\n```',
            True,
            "satisfies",
        ),
        (
            "{answer_schema: {type: object, required: [fixed]}}",
            '{"done": 1}',
            False,
            "'fixed' is a required property",
        ),
        ("{answer_schema: {type: object}}", "not json at all", False, "the answer is not JSON"),
    ],
)
def test_each_kind_of_check(
    tmp_path: Path, check: str, answer: str, passed: bool, said: str
) -> None:
    (tmp_path / "report.md").write_text("# Report\n\n## Tests\nNEEDS ATTENTION\n")
    (tmp_path / "folder").mkdir()
    outside = tmp_path.parent / f"{tmp_path.name}-outside.md"
    outside.write_text("secret\n")
    os.symlink(outside, tmp_path / "escape.md")
    assert judge_one(tmp_path, check, answer)[0] is passed
    assert said in judge_one(tmp_path, check, answer)[1]


def test_all_checks_run_and_every_failure_is_told_at_once(tmp_path: Path, store: RunStore) -> None:
    spec = make(
        tmp_path,
        """
        checks:
          - {name: result is 42, command: python check.py}
          - {file: result.txt, matches: '^42$'}
          - {answer_matches: 'FIXED'}
        max_check_retries: 0
        """,
    )
    model = ScriptedModel([text("Done.")])
    finished, ran = execute(spec, model, store)
    assert finished.stop_reason is StopReason.CHECKS_FAILED
    assert [(e.index, e.kind, e.passed) for e in ran] == [
        (0, "command", False),
        (1, "file", False),
        (2, "answer_matches", False),
    ]
    assert finished.message.endswith(
        "(max_check_retries 0): result is 42; file result.txt matches '^42$'; "
        "answer matches 'FIXED'"
    )


def test_checks_run_after_output_schema_is_satisfied(tmp_path: Path, store: RunStore) -> None:
    spec = make(
        tmp_path,
        "checks:\n  - {answer_matches: 'true'}\n",
        "output:\n  schema: {type: object, required: [fixed]}\n",
    )
    model = ScriptedModel([text("not json"), text('{"fixed": true}')])
    finished, ran = execute(spec, model, store)
    assert finished.stop_reason is StopReason.COMPLETED, finished.message
    assert [e.attempt for e in ran] == [1]  # the answer that broke the schema was not checked
    assert finished.result == {"fixed": True}


# ---------------------------------------------------------------------------------------------
# the author's mistakes


def test_a_check_command_outside_the_allowed_patterns_is_a_spec_error(tmp_path: Path) -> None:
    path = write_spec(tmp_path, spec_text("checks:\n  - command: python -c 'print(1)'\n"))
    spec, diagnostics = check_spec(path)
    assert spec is None
    [problem] = diagnostics
    line = path.read_text().splitlines().index("  - command: python -c 'print(1)'") + 1
    assert (problem.line, problem.column) == (line, 14)
    assert problem.message.startswith("check 1: command \"python -c 'print(1)'\" is not allowed")
    assert "python check.py" in problem.message


def test_a_spec_without_checks_has_no_check_runs(tmp_path: Path, store: RunStore) -> None:
    spec = load_spec(write_spec(tmp_path, spec_text("")))
    finished, ran = execute(spec, ScriptedModel([text("Done.")]), store)
    assert finished.stop_reason is StopReason.COMPLETED and ran == []
    assert store.check_runs(finished.run_id) == []


# ---------------------------------------------------------------------------------------------
# what people see: explain, the API


def test_explain_shows_the_checks_and_the_retries(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_spec(
        tmp_path,
        spec_text(
            """
            checks:
              - {name: result is 42, command: python check.py, timeout: 90s}
              - {file: result.txt, matches: '^42$'}
              - {answer_schema: {type: object, required: [fixed]}}
            max_check_retries: 4
            """
        ),
    )
    code, out, err = invoke(["explain", str(path)], capsys)
    assert code == 0, err
    assert (
        "checks after the final answer (max_check_retries 4, then stop reason checks_failed)" in out
    )
    assert "  1. command: python check.py (timeout 90s)  [result is 42]" in out
    assert "  2. file: result.txt matches '^42$'" in out
    assert '  3. answer_schema: {"type": "object", "required": ["fixed"]}' in out


def test_the_api_lists_a_runs_check_runs(tmp_path: Path) -> None:
    from tests.test_web_api import start_console

    home = tmp_path / "home"
    home.mkdir()
    spec = make(tmp_path, COMMAND_CHECK, "max_check_retries: 1\n")
    store = RunStore(home / "runs.db")
    try:
        finished, _ = execute(spec, ScriptedModel([text("Done.")], repeat_last=True), store)
    finally:
        store.close()
    console = start_console(home)
    try:
        with console.client() as client:
            answer = client.get(f"/api/v1/runs/{finished.run_id}")
            page = client.get(f"/runs/{finished.run_id}")
    finally:
        console.stop()
    # The console's run page shows each check run in the timeline, with its output.
    assert page.status_code == 200, page.text
    assert page.text.count("<b>Check failed</b>: result is 42") == 2
    assert "attempt 2, step 2" in page.text
    assert "FAIL: expected 42 in result.txt, found None" in page.text
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["stop_reason"] == "checks_failed"
    assert [(c["attempt"], c["index"], c["kind"], c["passed"]) for c in body["checks"]] == [
        (1, 0, "command", False),
        (2, 0, "command", False),
    ]
    assert "FAIL: expected 42" in body["checks"][0]["output"]


def test_a_grant_of_check_retries_gives_exactly_that_many_more(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTRUN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FAKE_API_KEY", "sk-test-not-a-real-key")
    (tmp_path / "check.py").write_text(CHECK_SCRIPT)
    extra = """
    max_check_retries: 1
    escalate_on: [checks_failed]
    budgets:
      ceilings: {max_check_retries: 4}
    """
    with FakeOpenAIServer([text("All done.")], repeat_last=True) as server:
        model = f'{{id: openai/fake, api_base: "{server.api_base}", api_key_env: FAKE_API_KEY}}'
        path = write_spec(tmp_path, spec_text(COMMAND_CHECK, extra, model))
        code, _, err = invoke(["run", str(path)], capsys)
        assert code == 5, err  # escalated: a person decides
        assert len(server.requests) == 2
        store = RunStore(tmp_path / "home" / "runs.db")
        [row] = store.runs()
        code, _, err = invoke(["resume", row.id, "--add", "max_check_retries=2"], capsys)
        assert code == 5, err  # failed again after the two granted retries: escalated again
        assert len(server.requests) == 4
        # The continued run began with the last failure in its conversation.
        assert "attempt 2" in server.requests[2]["messages"][-1]["content"]
    assert [r["attempt"] for r in store.check_runs(row.id)] == [1, 2, 3, 4]


def test_a_check_output_is_cut_to_max_tool_output(tmp_path: Path) -> None:
    spec = load_spec(
        write_spec(
            tmp_path,
            """
            version: 1
            name: big
            model: openai/scripted
            goal: Nothing.
            budgets: {max_tool_output: 1024}
            checks:
              - answer_schema: {type: array}
            """,
        )
    )
    answer = json.dumps({f"key{i}": "x" * 50 for i in range(200)})
    result = asyncio.run(SuccessChecks(spec, "r", lambda e: None).run_check(spec.checks[0], answer))
    assert not result.passed
    assert len(result.output.encode()) <= 1024
    assert result.output.endswith("bytes, showing the first part]")
    assert result.output.startswith("the answer does not satisfy the JSON Schema: ")


def test_a_secret_a_check_prints_is_not_recorded(
    tmp_path: Path, store: RunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHECK_TOKEN", "tok-9f8e7d6c5b4a")
    (tmp_path / "leak.py").write_text(
        "import os, sys\nprint('token is', os.environ['CHECK_TOKEN'])\nsys.exit(1)\n"
    )
    spec = load_spec(
        write_spec(
            tmp_path,
            """
            version: 1
            name: leaky
            model: openai/scripted
            goal: Nothing.
            env: [CHECK_TOKEN]
            tools:
              shell: {commands: [python leak.py]}
            checks:
              - command: python leak.py
            max_check_retries: 0
            """,
        )
    )
    finished, ran = execute(spec, ScriptedModel([text("Done.")]), store)
    assert finished.stop_reason is StopReason.CHECKS_FAILED
    assert "tok-9f8e7d6c5b4a" not in ran[0].output  # what every sink receives
    [row] = store.check_runs(finished.run_id)
    assert "token is" in row["output"] and "tok-9f8e7d6c5b4a" not in row["output"]
    assert "tok-9f8e7d6c5b4a" not in json.dumps(store.messages(finished.run_id))
    assert "tok-9f8e7d6c5b4a" not in json.dumps(store.export(finished.run_id))
