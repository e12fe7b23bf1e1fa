"""The ask_human tool: the model asks a person, the run pauses, a person answers, it goes on.

Answers come from another process (``agentrun answer``), the terminal (a real
pseudo-terminal) or the spec's ``unattended`` rule; the model sees each answer as the tool's
result. The daemon's side is in ``tests/test_ask_human_daemon.py``.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from runner.compiler import build_tools, compile_agent
from runner.decisions import DecisionRefused, Refusal, answer, waiting_questions
from runner.events import StopReason
from runner.loop import run_agent
from runner.resume import restore_state
from runner.spec import load_spec
from runner.store import RunStore
from runner.testing import FakeOpenAIServer, ScriptedModel, call, text
from runner.tools.ask_human import AskHuman
from tests.helpers import run_cli as cli
from tests.helpers import wait_for, write_spec
from tests.test_approvals import Terminal

QUESTION = {
    "question": "Which branch should I release from?",
    "context": "main has two unreleased fixes; stable has none.",
    "choices": ["main", "stable"],
}


def asker_spec(
    folder: Path,
    model: str = "openai/scripted",
    unattended: str = "queue",
    extra: str = "",
    ask_human: str = "{}",
) -> Path:
    return write_spec(
        folder,
        f"""
        version: 1
        name: asker
        model: {model}
        goal: Release the project.
        tools:
          ask_human: {ask_human}
        autonomy: approve-writes
        unattended: {unattended}
        {extra}
        """,
    )


def fake_model(api_base: str) -> str:
    return f'{{id: openai/fake, api_base: "{api_base}", api_key_env: FAKE_API_KEY}}'


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "AGENTRUN_HOME": str(tmp_path / "home"), "FAKE_API_KEY": "sk-fake-000000"}


def run_in_process(
    spec_path: Path, script: list[Any], store: RunStore, run_id: str | None = None
) -> tuple[Any, ScriptedModel]:
    agent = compile_agent(load_spec(spec_path))
    model = ScriptedModel(script)
    resume = restore_state(store, run_id) if run_id else None
    if run_id:
        store.claim_for_resume(run_id)
    finished = asyncio.run(run_agent(agent, model, store=store, run_id=run_id, resume=resume))
    return finished, model


def tool_results(messages: list[dict[str, Any]]) -> list[str]:
    return [str(m["content"]) for m in messages if m.get("role") == "tool"]


# ---------------------------------------------------------------------------------------------
# the tool


def test_the_tool_offers_question_context_and_choices_and_is_low_risk(tmp_path: Path) -> None:
    spec = load_spec(asker_spec(tmp_path, ask_human="{answer_timeout: 4h}"))
    [tool] = list(build_tools(spec))
    assert isinstance(tool, AskHuman) and tool.name == "ask_human" and tool.risk == "low"
    assert tool.parameters["required"] == ["question"]
    assert tool.parameters["properties"]["choices"]["items"] == {"type": "string", "minLength": 1}
    assert tool.answer_timeout == 4 * 3600
    expires = tool.expires_at(datetime(2026, 1, 1, tzinfo=UTC))
    assert expires == "2026-01-01T04:00:00.000+00:00"
    assert AskHuman(None).expires_at() is None


def test_arguments_that_fail_the_schema_go_back_to_the_model(
    tmp_path: Path, store: RunStore
) -> None:
    finished, model = run_in_process(
        asker_spec(tmp_path),
        [call("ask_human", {"context": "no question"}), text("ok")],
        store,
    )
    assert finished.stop_reason == StopReason.COMPLETED
    [result] = tool_results(model.requests[1][0])
    assert "invalid arguments for ask_human" in result and "'question' is a required" in result
    assert store.questions(status=None) == []


# ---------------------------------------------------------------------------------------------
# pause, answer, resume (in this process, through the store)


def test_queue_pauses_then_the_answer_is_the_result_without_asking_again(
    tmp_path: Path, store: RunStore
) -> None:
    spec = asker_spec(tmp_path, ask_human="{answer_timeout: 1h}")
    paused, _ = run_in_process(spec, [call("ask_human", QUESTION)], store)
    assert paused.stop_reason == StopReason.WAITING_INPUT
    assert "agentrun answer" in paused.message
    row = store.run(paused.run_id)
    assert row is not None and row.status == "waiting_input" and row.resumable
    [asked] = waiting_questions(store)
    assert (asked["question"], asked["context"], asked["choices"]) == (
        QUESTION["question"],
        QUESTION["context"],
        QUESTION["choices"],
    )
    assert asked["expires_at"] is not None and asked["expires_at"] > datetime.now(UTC).isoformat()

    # Resumed before anyone answers: it pauses again, and the question is not asked twice.
    again, model = run_in_process(spec, [], store, run_id=paused.run_id)
    assert again.stop_reason == StopReason.WAITING_INPUT and model.requests == []
    assert [q["call_id"] for q in store.questions(status=None)] == [asked["call_id"]]

    done = answer(store, paused.run_id[:10], None, "Stable", by="cli")
    assert done.answer == "stable"  # the choice's own spelling
    finished, model = run_in_process(spec, [text("Released from stable.")], store, paused.run_id)
    assert finished.stop_reason == StopReason.COMPLETED
    assert tool_results(model.requests[0][0]) == ["stable"]
    [row_after] = store.questions(status=None)
    assert (row_after["status"], row_after["answer"], row_after["answered_by"]) == (
        "answered",
        "stable",
        "cli",
    )
    assert finished.tool_calls == 1  # a question counts as a tool call, once
    [tool_call] = store.tool_calls(paused.run_id)
    assert (tool_call["tool"], tool_call["status"], tool_call["result"]) == (
        "ask_human",
        "ok",
        "stable",
    )
    log = [e["type"] for e in store.events_since(0, run_id=paused.run_id, limit=500)]
    assert log.count("question_asked") == 1 and log.count("question_answered") == 1


def test_answers_are_refused_clearly(tmp_path: Path, store: RunStore) -> None:
    spec = asker_spec(tmp_path)
    paused, _ = run_in_process(spec, [call("ask_human", QUESTION)], store)
    [asked] = store.questions()

    def refusal(run_id: str, call_id: str | None, given: str) -> tuple[Refusal, str]:
        with pytest.raises(DecisionRefused) as refused:
            answer(store, run_id, call_id, given, by="cli")
        return refused.value.refusal, str(refused.value)

    assert refusal("NOSUCHRUN", None, "main")[0] is Refusal.NO_RUN
    kind, message = refusal(paused.run_id, "call_nope", "main")
    assert kind is Refusal.NO_QUESTION and "call_nope" in message
    kind, message = refusal(paused.run_id, asked["call_id"], "develop")
    assert kind is Refusal.NOT_A_CHOICE and "'develop' is not one of the choices" in message
    assert "'main', 'stable'" in message
    assert refusal(paused.run_id, None, "  ")[0] is Refusal.NOT_A_CHOICE
    answer(store, paused.run_id, asked["call_id"], "main", by="api:test@127.0.0.1")
    kind, message = refusal(paused.run_id, asked["call_id"], "stable")
    assert kind is Refusal.ANSWERED and "answered by api:test@127.0.0.1" in message
    assert refusal(paused.run_id, None, "stable")[0] is Refusal.NO_QUESTION


def test_a_question_past_its_timeout_ends_the_run_with_answer_timeout(
    tmp_path: Path, store: RunStore
) -> None:
    spec = asker_spec(tmp_path, ask_human="{answer_timeout: 1s}")
    paused, _ = run_in_process(spec, [call("ask_human", {"question": "Go?"})], store)
    [asked] = store.questions()
    expires = datetime.fromisoformat(str(asked["expires_at"]))
    wait_for(lambda: datetime.now(UTC) > expires, "the question's deadline")
    with pytest.raises(DecisionRefused) as late:
        answer(store, paused.run_id, None, "yes", by="cli")
    assert late.value.refusal is Refusal.NO_QUESTION  # it no longer waits
    assert store.question(paused.run_id, asked["call_id"])["status"] == "timed_out"  # type: ignore[index]
    finished, model = run_in_process(spec, [], store, run_id=paused.run_id)
    assert finished.stop_reason == StopReason.ANSWER_TIMEOUT and model.requests == []
    assert "answer_timeout" in finished.message


def test_resume_after_the_deadline_ends_it_even_before_anything_marked_it(
    tmp_path: Path, store: RunStore
) -> None:
    spec = asker_spec(tmp_path, ask_human="{answer_timeout: 1s}")
    paused, _ = run_in_process(spec, [call("ask_human", {"question": "Go?"})], store)
    [asked] = store.questions()
    expires = datetime.fromisoformat(str(asked["expires_at"]))
    wait_for(lambda: datetime.now(UTC) > expires, "the question's deadline")
    assert store.questions()[0]["status"] == "waiting"  # nobody looked yet
    finished, _ = run_in_process(spec, [], store, run_id=paused.run_id)
    assert finished.stop_reason == StopReason.ANSWER_TIMEOUT


# ---------------------------------------------------------------------------------------------
# unattended, rules, autonomy


def test_unattended_deny_tells_the_model_nobody_can_answer(tmp_path: Path, store: RunStore) -> None:
    finished, model = run_in_process(
        asker_spec(tmp_path, unattended="deny"),
        [call("ask_human", QUESTION), text("Released from main, nobody to ask.")],
        store,
    )
    assert finished.stop_reason == StopReason.COMPLETED
    [result] = tool_results(model.requests[1][0])
    assert "nobody is attached to answer" in result
    [row] = store.questions(status=None)
    assert (row["status"], row["answered_by"]) == ("answered", "unattended:deny")


def test_unattended_fail_ends_the_run_saying_a_question_needed_an_answer(
    tmp_path: Path, store: RunStore
) -> None:
    finished, _ = run_in_process(
        asker_spec(tmp_path, unattended="fail"), [call("ask_human", QUESTION)], store
    )
    assert finished.stop_reason == StopReason.APPROVAL_REQUIRED
    assert "asked a question that needed an answer" in finished.message
    assert waiting_questions(store) == []  # its run ended: nothing waits for an answer


def test_a_deny_rule_refuses_it_and_no_autonomy_level_makes_it_ask(
    tmp_path: Path, store: RunStore
) -> None:
    denied, model = run_in_process(
        asker_spec(tmp_path, extra="rules: {deny: [ask_human]}"),
        [call("ask_human", QUESTION), text("fine")],
        store,
    )
    assert denied.stop_reason == StopReason.COMPLETED
    assert tool_results(model.requests[1][0]) == [
        "error: the policy denies this call of ask_human; try another way"
    ]
    for level in ("suggest", "approve-all"):
        folder = tmp_path / level
        folder.mkdir()
        spec = write_spec(
            folder,
            f"""
            version: 1
            name: asker
            model: openai/scripted
            goal: Release the project.
            tools:
              ask_human: {{}}
            autonomy: {level}
            unattended: queue
            rules: {{ask: [ask_human]}}
            """,
        )
        paused, _ = run_in_process(
            spec,
            [call("ask_human", QUESTION)],
            RunStore(folder / "runs.db"),
        )
        # A question, not an approval: suggest does not turn it into a proposal.
        assert paused.stop_reason == StopReason.WAITING_INPUT, level
        assert RunStore(folder / "runs.db").approvals(status=None) == []


# ---------------------------------------------------------------------------------------------
# across processes: agentrun run, agentrun answer, agentrun resume


def test_pause_answer_from_another_process_and_resume(tmp_path: Path, env: dict[str, str]) -> None:
    script = [call("ask_human", QUESTION, content="I need a decision."), text("Released.")]
    with FakeOpenAIServer(script) as server:
        spec = asker_spec(tmp_path, model=fake_model(server.api_base))
        paused = cli(["run", str(spec)], env)
        assert paused.returncode == 5, paused.stderr
        store = RunStore(tmp_path / "home" / "runs.db")
        [row] = store.runs()
        assert (row.status, row.stop_reason) == ("waiting_input", "waiting_input")
        listed = cli(["questions"], env)
        assert row.id in listed.stdout and "Which branch" in listed.stdout
        assert "choices: main | stable" in listed.stdout
        early = cli(["resume", row.id], env)
        assert early.returncode == 5 and "still waits for an answer" in early.stderr
        wrong = cli(["answer", row.id, "develop"], env)
        assert wrong.returncode == 2 and "is not one of the choices" in wrong.stderr
        answered = cli(["answer", row.id, "stable"], env)
        assert answered.returncode == 0, answered.stderr
        assert f"continue with: agentrun resume {row.id}" in answered.stdout
        again = cli(["answer", row.id, "main"], env)
        assert again.returncode == 2 and "no question waiting" in again.stderr
        assert cli(["questions"], env).stdout.strip() == "no questions waiting"
        resumed = cli(["resume", row.id], env)
        assert resumed.returncode == 0, resumed.stderr
        assert resumed.stdout.strip() == "Released."
        shown = cli(["runs", "show", row.id], env)
        assert (
            "question call_" in shown.stdout
            and "Which branch should I release from? [answered by cli: stable]" in shown.stdout
        ), shown.stdout
    assert len(server.requests) == 2  # the question was not asked of the model again
    last = server.requests[1]["messages"][-1]
    assert (last["role"], last["content"]) == ("tool", "stable")
    row = store.run(row.id)
    assert row is not None and row.stop_reason == "completed"
    [question] = store.questions(status=None)
    assert (question["answer"], question["answered_by"]) == ("stable", "cli")


def test_answer_names_the_call_when_given(tmp_path: Path, env: dict[str, str]) -> None:
    store = RunStore(tmp_path / "home" / "runs.db")
    paused, _ = run_in_process(
        asker_spec(tmp_path), [call("ask_human", {"question": "Add?"})], store
    )
    [asked] = store.questions()
    too_many = cli(["answer", paused.run_id, asked["call_id"], "a", "b"], env)
    assert too_many.returncode == 2 and "expected RUN [CALL] TEXT" in too_many.stderr
    done = cli(["answer", paused.run_id, asked["call_id"], "add a changelog entry"], env)
    assert done.returncode == 0, done.stderr
    assert store.question(paused.run_id, asked["call_id"])["answer"] == "add a changelog entry"  # type: ignore[index]


# ---------------------------------------------------------------------------------------------
# at the terminal


def test_terminal_answer_by_number(tmp_path: Path, env: dict[str, str]) -> None:
    script = [call("ask_human", QUESTION), text("Releasing from stable.")]
    with FakeOpenAIServer(script) as server:
        spec = asker_spec(tmp_path, model=fake_model(server.api_base), unattended="fail")
        terminal = Terminal(["run", str(spec)], env)
        terminal.expect("question from the model:")
        terminal.expect("main has two unreleased fixes")
        terminal.expect("[2] stable")
        terminal.expect("your choice")
        terminal.send("7")
        terminal.expect("'7' is not one of the choices")
        terminal.send("2")
        assert terminal.finish() == 0, terminal.seen
    last = server.requests[1]["messages"][-1]
    assert (last["role"], last["content"]) == ("tool", "stable")
    [question] = RunStore(tmp_path / "home" / "runs.db").questions(status=None)
    assert (question["status"], question["answer"], question["answered_by"]) == (
        "answered",
        "stable",
        "terminal",
    )


def test_terminal_free_text_answer(tmp_path: Path, env: dict[str, str]) -> None:
    script = [call("ask_human", {"question": "What version?"}), text("Tagged.")]
    with FakeOpenAIServer(script) as server:
        spec = asker_spec(tmp_path, model=fake_model(server.api_base), unattended="fail")
        terminal = Terminal(["run", str(spec)], env)
        terminal.expect("your answer")
        terminal.send("v2.1.0")
        assert terminal.finish() == 0, terminal.seen
    assert server.requests[1]["messages"][-1]["content"] == "v2.1.0"


def test_terminal_answer_timeout_ends_the_run(tmp_path: Path, env: dict[str, str]) -> None:
    script = [call("ask_human", {"question": "What version?"}), text("never")]
    with FakeOpenAIServer(script) as server:
        spec = asker_spec(
            tmp_path,
            model=fake_model(server.api_base),
            unattended="fail",
            ask_human="{answer_timeout: 1s}",
        )
        terminal = Terminal(["run", str(spec)], env)
        terminal.expect("your answer")
        assert terminal.finish() == 6, terminal.seen
    assert "[answer_timeout]" in terminal.seen
    assert len(server.requests) == 1
    store = RunStore(tmp_path / "home" / "runs.db")
    [row] = store.runs()
    assert row.stop_reason == "answer_timeout"
    # The question is over with its run: no list offers it, nobody can answer it.
    assert [q["status"] for q in store.questions(row.id, status=None)] == ["timed_out"]
    refused = cli(["answer", row.id, "v2.1.0"], env)
    assert refused.returncode != 0 and "v2.1.0" not in refused.stdout


def test_a_question_counts_against_max_tool_calls(tmp_path: Path, store: RunStore) -> None:
    spec = asker_spec(tmp_path, extra="budgets: {max_tool_calls: 1}")
    finished, _ = run_in_process(
        spec,
        [call("ask_human", {"question": "One?"}), call("ask_human", {"question": "Two?"})],
        store,
    )
    assert finished.stop_reason == StopReason.WAITING_INPUT
    answer(store, finished.run_id, None, "yes", by="cli")
    again, model = run_in_process(
        spec, [call("ask_human", {"question": "Two?"})], store, finished.run_id
    )
    assert again.stop_reason == StopReason.MAX_TOOL_CALLS
    assert tool_results(model.requests[0][0]) == ["yes"]
    assert [q["question"] for q in store.questions(status=None)] == ["One?"]  # never asked


def test_tools_and_explain_say_it_asks_a_person_unless_denied(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.helpers import invoke

    spec = asker_spec(tmp_path).read_text()
    spec = spec.replace("autonomy: approve-writes", "autonomy: suggest")
    path = write_spec(tmp_path, spec, name="suggest.yaml")
    code, out, err = invoke(["tools", str(path)], capsys)
    assert code == 0, err
    assert "ask_human" in out and "asks a person" in out
    code, out, err = invoke(["explain", str(path)], capsys)
    assert code == 0 and "asks a person" in out, err
    denied = write_spec(tmp_path, spec + "rules: {deny: [ask_human]}\n", name="denied.yaml")
    code, out, err = invoke(["tools", str(denied)], capsys)
    assert code == 0 and "denied" in out and "asks a person" not in out, err


def test_resume_at_a_terminal_asks_the_waiting_question_there(
    tmp_path: Path, env: dict[str, str]
) -> None:
    script = [call("ask_human", QUESTION), text("Releasing from main.")]
    with FakeOpenAIServer(script) as server:
        spec = asker_spec(tmp_path, model=fake_model(server.api_base))
        paused = cli(["run", str(spec), "--unattended"], env)
        assert paused.returncode == 5, paused.stderr
        store = RunStore(tmp_path / "home" / "runs.db")
        [row] = store.runs()
        terminal = Terminal(["resume", row.id], env)
        terminal.expect("Which branch should I release from?")
        terminal.expect("your choice")
        terminal.send("main")
        assert terminal.finish() == 0, terminal.seen
    assert server.requests[1]["messages"][-1]["content"] == "main"
    [question] = store.questions(status=None)  # asked once, answered at the terminal
    assert (question["answer"], question["answered_by"]) == ("main", "terminal")


def test_the_status_line_steps_aside_while_a_question_is_asked() -> None:
    import io

    from runner.cli.progress import ERASE_LINE, Progress
    from runner.events import QuestionAnswered, QuestionAsked, RunStarted

    stream = io.StringIO()
    progress = Progress(stream, enabled=True, clock=lambda: 0.0)
    progress.event(RunStarted("R", "a", "openai/gpt-4o", "", "", {}, "goal"))
    progress.event(QuestionAsked("R", "c1", "Which one?"))
    asked = stream.getvalue()
    assert asked.endswith(ERASE_LINE)
    progress.set("waiting for openai/gpt-4o (step 2)")
    assert stream.getvalue() == asked  # nothing drawn over the prompt
    progress.event(QuestionAnswered("R", "c1", "this one"))
    assert stream.getvalue().endswith("⋯ waiting for openai/gpt-4o (step 2) · 0.0 s")
    progress.stop()


def test_the_same_question_asked_again_and_again_is_a_loop(tmp_path: Path, store: RunStore) -> None:
    same = call("ask_human", {"question": "Which release?"})
    finished, model = run_in_process(
        asker_spec(
            tmp_path, unattended="deny", extra="loop_detection: {warn_after: 2, stop_after: 3}"
        ),
        [same, same, same, text("never reached")],
        store,
    )
    assert finished.stop_reason == StopReason.LOOP_DETECTED
    # The second answer carried the loop warning, as any repeated call's result does.
    assert "repeats 2 times" in tool_results(model.requests[-1][0])[-1]
