"""The real embedded model (SmolLM2-135M on llama.cpp) through litellm and the whole loop."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("cyllama", reason="needs the [local] extra")

from runner.compiler import compile_agent
from runner.events import StopReason
from runner.loop import run_agent
from runner.models import LiteLLMModel
from runner.spec import ModelSpec, load_spec
from runner.store import RunStore
from tests.helpers import write_spec

pytestmark = pytest.mark.local_model

READ_FILE = {"type": "function", "function": {"name": "read_file"}}


async def complete_once(
    model: Any, messages: list[dict[str, Any]], tools: list[Any], tool_choice: Any = None
) -> Any:
    """One call, then the model's connections closed in the loop that opened them."""
    try:
        return await model.complete(messages, tools, tool_choice)
    finally:
        await model.aclose()


def test_real_model_calls_a_tool_sees_its_result_and_answers(tmp_path: Path) -> None:
    (tmp_path / "fruit.txt").write_text("The fruit of the day is the mango.\n")
    spec = load_spec(
        write_spec(
            tmp_path,
            """
            version: 1
            name: local-e2e
            model: {id: local/smollm2, params: {temperature: 0, max_tokens: 64}}
            instructions: You are a helpful assistant. Use tools to read files.
            goal: Read the file fruit.txt and tell me the fruit of the day.
            tools:
              read_file: {paths: [fruit.txt]}
            budgets: {max_steps: 3}
            """,
        )
    )
    store = RunStore(tmp_path / "runs.db")
    finished = asyncio.run(run_agent(compile_agent(spec), store=store, first_tool_choice=READ_FILE))
    assert finished.stop_reason is StopReason.COMPLETED, finished.message
    [tool] = store.tool_calls(finished.run_id)
    assert tool["tool"] == "read_file" and tool["status"] == "ok"
    assert "mango" in tool["result"]
    assert json.loads(tool["arguments"])["path"].endswith("fruit.txt")
    calls = store.model_calls(finished.run_id)
    assert len(calls) == 2
    assert all(c["input_tokens"] > 0 and c["output_tokens"] > 0 for c in calls)
    # The second call's prompt carried the tool result: more input than the answer alone.
    assert finished.final
    row = store.run(finished.run_id)
    assert row is not None and row.input_tokens == sum(c["input_tokens"] for c in calls)
    assert row.cost_usd == 0.0


def test_required_tool_choice_always_calls_a_declared_tool() -> None:
    model = LiteLLMModel(ModelSpec(id="local/smollm2", params={"temperature": 0, "max_tokens": 48}))
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city.",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        },
        {
            "type": "function",
            "function": {
                "name": "get_time",
                "description": "Current time.",
                "parameters": {"type": "object", "properties": {}},
            },
        },
    ]
    reply = asyncio.run(
        complete_once(
            model, [{"role": "user", "content": "What is the weather in Paris?"}], tools, "required"
        )
    )
    assert len(reply.tool_calls) == 1
    call = reply.tool_calls[0]
    assert call.name in {"get_weather", "get_time"}
    arguments = json.loads(call.arguments)
    if call.name == "get_weather":
        assert isinstance(arguments["city"], str)


def test_tool_result_is_seen_and_max_tokens_bounds_the_answer() -> None:
    model = LiteLLMModel(ModelSpec(id="local/smollm2", params={"temperature": 0, "max_tokens": 8}))
    messages = [
        {"role": "user", "content": "What is the secret word? Use the tool."},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "secret", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "The secret word is PINEAPPLE."},
    ]
    tools = [{"type": "function", "function": {"name": "secret", "parameters": {"type": "object"}}}]
    reply = asyncio.run(complete_once(model, messages, tools))
    assert reply.tool_calls == []  # right after a tool result, the local model answers in text
    assert reply.usage.output_tokens <= 8
    assert reply.usage.input_tokens > 0
