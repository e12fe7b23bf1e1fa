"""Budgets are never crossed, whatever the model does (property-tested with the scripted model)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner import redact
from runner.budgets import Budget
from runner.compiler import compile_agent
from runner.errors import BudgetExhausted
from runner.events import BUDGET_STOPS, StopReason
from runner.loop import Run
from runner.models import Usage
from runner.redact import Redactor
from runner.spec import BudgetsSpec, Pricing, load_spec
from runner.testing import Scripted, ScriptedModel
from runner.tool_calls import repeats
from tests.helpers import write_spec

PRICE = Pricing(input_per_mtok=2000.0, output_per_mtok=8000.0)

turn = st.builds(
    lambda n_calls, tokens_in, tokens_out, final: Scripted(
        content="done" if final else None,
        tool_calls=() if final else tuple(("list_dir", '{"path": "data"}') for _ in range(n_calls)),
        usage=Usage(tokens_in, tokens_out),
    ),
    st.integers(1, 4),
    st.integers(1, 200),
    st.integers(1, 100),
    st.booleans(),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    script=st.lists(turn, min_size=1, max_size=25),
    max_steps=st.integers(1, 12),
    max_tool_calls=st.integers(0, 15),
    max_cost=st.floats(0.5, 6.0),
)
def test_no_run_crosses_its_budgets(
    tmp_path: Path, script: list[Scripted], max_steps: int, max_tool_calls: int, max_cost: float
) -> None:
    extra = (
        f"budgets: {{max_steps: {max_steps}, max_tool_calls: {max_tool_calls}, "
        f"max_cost_usd: {max_cost}}}\nloop_detection: {{warn_after: 50, stop_after: 60}}\n"
        "model: {id: openai/x, pricing: {input_per_mtok: 2000, output_per_mtok: 8000}}\n"
    )
    (tmp_path / "data").mkdir(exist_ok=True)
    agent = compile_agent(load_spec(write_spec(tmp_path, make_spec_text(extra))))
    # The scripted model never answers with more output than its declared maximum, and its
    # token estimate is an upper bound of the scripted prompt usage, as for real providers.
    model = ScriptedModel([*script, Scripted(content="end")], pricing=PRICE, max_output_tokens=100)
    model.count_prompt_tokens = lambda messages, tools: 200  # type: ignore[method-assign]
    run = Run(agent, model)
    finished = asyncio.run(run.execute())
    usage = run.budget.usage
    assert usage.steps <= max_steps
    assert usage.tool_calls <= max_tool_calls
    assert usage.cost_usd <= max_cost + 1e-12
    assert finished.stop_reason in BUDGET_STOPS | {StopReason.COMPLETED}


def make_spec_text(extra: str) -> str:
    return "version: 1\nname: prop\ngoal: go\ntools:\n  list_dir: {paths: [data]}\n" + extra


def test_budget_refuses_before_crossing() -> None:
    budget = Budget(BudgetsSpec(max_steps=2, max_tokens=100, max_cost_usd=1.0))
    budget.check_before_model_call(60, 0.5)
    budget.charge_model_call(30, 20, 0.4)
    with pytest.raises(BudgetExhausted) as stop:
        budget.check_before_model_call(60, 0.5)
    assert stop.value.limit == "max_tokens"
    assert (stop.value.observed, stop.value.cap) == (110, 100)


def test_warning_at_eighty_percent_is_said_once() -> None:
    budget = Budget(BudgetsSpec(max_steps=5))
    for _ in range(3):
        budget.charge_model_call(1, 1, 0.0)
    assert budget.warnings() == []
    budget.charge_model_call(1, 1, 0.0)
    assert budget.warnings() == ["1 model calls left of 5 (max_steps)"]
    assert budget.warnings() == []


def test_max_duration_uses_the_clock() -> None:
    now = [0.0]
    budget = Budget(BudgetsSpec(max_duration=10.0), clock=lambda: now[0])
    budget.check_before_tool_call()
    now[0] = 10.5
    with pytest.raises(BudgetExhausted, match="budget max_duration exhausted"):
        budget.check_before_tool_call()


def test_repeats_counts_runs_and_cycles() -> None:
    assert repeats([]) == 0
    assert repeats(["a"]) == 1
    assert repeats(["b", "a", "a", "a"]) == 3
    assert repeats(["a", "b", "a", "b"]) == 2
    assert repeats(["a", "b", "a", "b", "a"]) == 2
    assert repeats(["c", "a", "b", "a", "b", "a", "b"]) == 3
    assert repeats(["a", "b", "c", "a"]) == 1


def test_redactor_masks_values_and_key_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTRUN_TEST_SECRET", "hunter2-but-longer")
    redactor = Redactor(["AGENTRUN_TEST_SECRET", "UNSET_VARIABLE"])
    text = (
        "pw hunter2-but-longer; openai sk-proj-abcdefghijklmnop1234; aws AKIAABCDEFGHIJKLMNOP; "
        "Authorization: Bearer abcdefghijklmnopqrstuvwxyz; slack xoxb-1234567890-abc"
    )
    cleaned = redactor.text(text)
    for secret in (
        "hunter2-but-longer",
        "sk-proj-abcdef",
        "AKIAABCDEFGHIJKLMNOP",
        "abcdefghijklmnopqrstuvwxyz",
        "xoxb-",
    ):
        assert secret not in cleaned
    assert cleaned.count("[REDACTED]") == 5
    assert redactor.text("nothing secret here") == "nothing secret here"


class CountingPattern:
    """Stands in for a Redactor's compiled pattern and counts the searches."""

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.pattern = pattern
        self.searched: list[str] = []

    def search(self, text: str) -> re.Match[str] | None:
        self.searched.append(text)
        return self.pattern.search(text)

    def sub(self, replacement: str, text: str) -> str:
        return self.pattern.sub(replacement, text)


def test_redactor_searches_a_clean_string_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A tool's result travels in two events (the call, the conversation): the same object
    is searched once; a string with a secret is masked every time it comes."""
    from runner.events import MessageAdded, ToolCalled

    monkeypatch.setenv("AGENTRUN_TEST_SECRET", "hunter2-but-longer")
    redactor = Redactor(["AGENTRUN_TEST_SECRET"])
    counting = CountingPattern(redactor._pattern)
    redactor._pattern = counting  # type: ignore[assignment]
    # "sk-" is an anchor (runner.redact.ANCHORS): the text is searched, and found clean.
    result = "line of a file, an sk- prefix too short for a key\n" * 1000
    called = ToolCalled("run-1", 1, "c1", "read_file", "{}", "allow", "ok", result, 0.1, "low")
    added = MessageAdded("run-1", 3, {"role": "tool", "tool_call_id": "c1", "content": result})
    assert redactor.event(called) is called and redactor.event(added) is added
    assert [text for text in counting.searched if text is result] == [result]
    # An equal string that is another object is searched on its own.
    assert (
        redactor.text("".join(["line of a file, an sk- prefix too short for a key\n"] * 1000))
        == result
    )
    assert len([text for text in counting.searched if text == result]) == 2
    dirty = "pw hunter2-but-longer"
    assert redactor.text(dirty) == redactor.text(dirty) == "pw [REDACTED]"


def test_redactor_holds_a_bounded_number_of_clean_characters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(redact, "CLEAN_CACHE_CHARS", 100)
    redactor = Redactor()
    kept = [f"clean text number {i:03d}, " * 2 for i in range(20)]  # 50 characters each
    for text in kept:
        assert redactor.text(text) is text
        assert sum(len(held) for held in redactor._clean.values()) <= 100
    assert redactor.text("x" * 500) == "x" * 500  # too long to hold at all
    assert sum(len(held) for held in redactor._clean.values()) <= 100


def test_redactor_copies_only_what_holds_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.events import MessageAdded

    monkeypatch.setenv("AGENTRUN_TEST_SECRET", "hunter2-but-longer")
    redactor = Redactor(["AGENTRUN_TEST_SECRET"])
    clean = {"role": "tool", "content": "file.txt", "calls": [{"a": ("x", 1)}], "n": None}
    assert redactor.value(clean) is clean
    event = MessageAdded("run-1", 3, clean)
    assert redactor.event(event) is event

    dirty = {"role": "tool", "content": "ok", "calls": [{"a": ("x", "pw hunter2-but-longer")}]}
    cleaned = redactor.value(dirty)
    assert cleaned == {"role": "tool", "content": "ok", "calls": [{"a": ("x", "pw [REDACTED]")}]}
    assert dirty["calls"][0]["a"][1] == "pw hunter2-but-longer"  # the input is not modified
    assert isinstance(cleaned["calls"][0]["a"], tuple)
    masked = redactor.event(MessageAdded("run-1", 4, dirty))
    assert masked.message == cleaned and masked.seq == 4
    assert redactor.event("not an event") == "not an event"
    # A StrEnum member stays itself (not an equal plain str): events keep their types.
    from runner.events import StopReason

    assert redactor.value(StopReason.COMPLETED) is StopReason.COMPLETED
