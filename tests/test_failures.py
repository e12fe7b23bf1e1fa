"""Failures sorted, over real HTTP: litellm talks to the fake OpenAI-compatible server.

Each case ends with the right stop reason and nothing over its budget.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

import runner.models
from runner.compiler import compile_agent
from runner.events import StopReason
from runner.loop import run_agent
from runner.models import LiteLLMModel, Usage
from runner.spec import load_spec, replace
from runner.store import RunStore
from runner.testing import FakeOpenAIServer, Scripted, call, calls, http_error, slow, text
from runner.tools import Tool, ToolRegistry
from tests.helpers import write_spec

# Every model behaviour test runs on both paths to an OpenAI-compatible endpoint.
pytestmark = pytest.mark.usefixtures("model_path")


async def complete_once(model: Any, messages: list[dict[str, Any]], tools: list[Any]) -> Any:
    """One call, then the model's connections closed in the loop that opened them."""
    try:
        return await model.complete(messages, tools)
    finally:
        await model.aclose()


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner.models.litellm_adapter, "RETRY_INITIAL_S", 0.01)
    monkeypatch.setattr(runner.models.litellm_adapter, "RETRY_MAX_S", 0.05)
    monkeypatch.setenv("FAKE_API_KEY", "sk-test-key-for-the-fake-server-0123456789")


def spec_for(folder: Path, api_base: str, extra: str = "", model_extra: str = "") -> Any:
    (folder / "data").mkdir(exist_ok=True)
    (folder / "data" / "a.txt").write_text("alpha\n")
    return load_spec(
        write_spec(
            folder,
            textwrap.dedent(
                f"""
            version: 1
            name: failing
            model:
              id: openai/fake
              api_base: {api_base}
              api_key_env: FAKE_API_KEY
              params: {{max_tokens: 50}}
              {model_extra}
            goal: Read data/a.txt.
            tools:
              read_file: {{paths: [data]}}
              list_dir: {{paths: [data]}}
            """
            )
            + extra,
        )
    )


def execute(spec: Any, store: RunStore, tools: list[Tool] | None = None) -> Any:
    agent = compile_agent(spec)
    if tools is not None:
        agent = type(agent)(**{**agent.__dict__, "tools": ToolRegistry([*agent.tools, *tools])})
    return asyncio.run(run_agent(agent, store=store))


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "runs.db")


def tool_results(request: dict[str, Any]) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "tool"]


def test_model_that_never_stops_ends_at_max_steps(tmp_path: Path, store: RunStore) -> None:
    script = [call("list_dir", {"path": "data"}), call("read_file", {"path": "data/a.txt"})]
    with FakeOpenAIServer(script * 10) as server:
        finished = execute(spec_for(tmp_path, server.api_base, "budgets: {max_steps: 5}\n"), store)
    assert finished.stop_reason is StopReason.MAX_STEPS
    assert len(server.requests) == 5
    assert len(store.model_calls(finished.run_id)) == 5


def test_model_repeating_a_call_is_warned_then_stopped(tmp_path: Path, store: RunStore) -> None:
    with FakeOpenAIServer([call("list_dir", {"path": "data"})], repeat_last=True) as server:
        spec = spec_for(
            tmp_path, server.api_base, "loop_detection: {warn_after: 2, stop_after: 4}\n"
        )
        finished = execute(spec, store)
    assert finished.stop_reason is StopReason.LOOP_DETECTED
    assert "repeated the same tool calls 4 times" in finished.message
    # Calls 1-3 ran (the 2nd and 3rd carry the warning); the 4th was never executed.
    results = [t["result"] for t in store.tool_calls(finished.run_id)]
    assert len(results) == 3
    assert "[agentrun: this call repeats" not in results[0]
    assert "this call repeats 2 times in a row" in results[1]
    assert "this call repeats 3 times in a row" in results[2]


def test_a_b_a_b_cycle_is_detected(tmp_path: Path, store: RunStore) -> None:
    script = [call("list_dir", {"path": "data"}), call("read_file", {"path": "data/a.txt"})] * 10
    with FakeOpenAIServer(script) as server:
        finished = execute(spec_for(tmp_path, server.api_base), store)
    assert finished.stop_reason is StopReason.LOOP_DETECTED
    assert len(store.tool_calls(finished.run_id)) == 9  # A B A B A B A B A: the 10th stops


def test_malformed_tool_json_is_sent_back_and_corrected(tmp_path: Path, store: RunStore) -> None:
    script = [
        call("read_file", '{"path": data/a.txt}'),
        call("read_file", {"path": "data/a.txt"}),
        text("alpha"),
    ]
    with FakeOpenAIServer(script) as server:
        finished = execute(spec_for(tmp_path, server.api_base), store)
    assert finished.stop_reason is StopReason.COMPLETED
    assert "not valid JSON" in tool_results(server.requests[1])[0]
    assert tool_results(server.requests[2])[1] == "alpha\n"


def test_429_then_200_is_retried(tmp_path: Path, store: RunStore) -> None:
    with FakeOpenAIServer([http_error(429), text("done")]) as server:
        finished = execute(spec_for(tmp_path, server.api_base), store)
    assert finished.stop_reason is StopReason.COMPLETED
    assert len(server.requests) == 2
    [model_call] = store.model_calls(finished.run_id)
    assert model_call["model"] == "openai/fake"


def test_500_forever_falls_back_to_the_next_model(tmp_path: Path, store: RunStore) -> None:
    with FakeOpenAIServer(
        [],
        models={
            "fake": ([http_error(500)], True),
            "fake-backup": ([text("from the backup")], False),
        },
    ) as server:
        spec = spec_for(tmp_path, server.api_base, "")
        text_spec = spec.path.read_text().replace(
            "params:", "fallbacks: [openai/fake-backup]\n  params:"
        )
        spec = load_spec(write_spec(tmp_path, text_spec))
        finished = execute(spec, store)
    assert finished.stop_reason is StopReason.COMPLETED
    assert finished.final == "from the backup"
    asked = [r["model"] for r in server.requests]
    assert asked == ["fake", "fake", "fake", "fake-backup"]  # three attempts, then the fallback
    [model_call] = store.model_calls(finished.run_id)
    assert model_call["model"] == "openai/fake-backup"
    assert "openai/fake: InternalServerError" in model_call["error"]


def test_500_forever_without_fallback_is_a_model_error(tmp_path: Path, store: RunStore) -> None:
    with FakeOpenAIServer([http_error(500)], repeat_last=True) as server:
        finished = execute(spec_for(tmp_path, server.api_base), store)
    assert finished.stop_reason is StopReason.MODEL_ERROR
    assert len(server.requests) == 3
    row = store.run(finished.run_id)
    assert (
        row is not None
        and row.stop_reason == "model_error"
        and "InternalServerError" in (row.message or "")
    )


def test_hanging_model_times_out(tmp_path: Path, store: RunStore) -> None:
    with FakeOpenAIServer([slow(text("too late"), 2.0)], repeat_last=True) as server:
        spec = spec_for(tmp_path, server.api_base)
        spec = load_spec(
            write_spec(
                tmp_path, spec.path.read_text().replace("params:", "timeout: 300ms\n  params:")
            )
        )
        finished = execute(spec, store)
    assert finished.stop_reason is StopReason.MODEL_ERROR
    assert "Timeout" in finished.message
    assert finished.steps == 0


class HangingTool(Tool):
    name = "hang"
    risk = "low"
    description = "Never returns."
    parameters = {"type": "object", "properties": {}}  # noqa: RUF012

    def __init__(self) -> None:
        self.release = threading.Event()

    def run(self, arguments: dict[str, Any]) -> str:
        self.release.wait(30)
        return "released"


def test_hanging_tool_is_stopped_at_its_timeout(tmp_path: Path, store: RunStore) -> None:
    hang = HangingTool()
    with FakeOpenAIServer([call("hang", {}), text("gave up on it")]) as server:
        spec = spec_for(tmp_path, server.api_base, "budgets: {tool_timeout: 200ms}\n")
        finished = execute(spec, store, tools=[hang])
    hang.release.set()
    assert finished.stop_reason is StopReason.COMPLETED
    [result] = tool_results(server.requests[1])
    assert result == "error: hang did not finish within 0.2 s and was stopped"
    [tool] = store.tool_calls(finished.run_id)
    assert (tool["status"], tool["error"]) == ("error", "timeout")


def test_five_megabyte_output_is_cut_and_says_so(tmp_path: Path, store: RunStore) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "big.txt").write_text("x" * 5_000_000)
    with FakeOpenAIServer([call("read_file", {"path": "data/big.txt"}), text("big")]) as server:
        spec = spec_for(tmp_path, server.api_base, "budgets: {max_tool_output: 4096}\n")
        finished = execute(spec, store)
    assert finished.stop_reason is StopReason.COMPLETED
    [result] = tool_results(server.requests[1])
    assert len(result.encode()) <= 4096
    assert "\n[file is 5000000 bytes; showing its first " in result
    [tool] = store.tool_calls(finished.run_id)
    assert len(tool["result"].encode()) <= 4096


def test_max_tool_calls_is_never_exceeded(tmp_path: Path, store: RunStore) -> None:
    three = calls(
        ("list_dir", {"path": "data"}),
        ("read_file", {"path": "data/a.txt"}),
        ("list_dir", {"path": "data/"}),
    )
    with FakeOpenAIServer([three, three, text("never")]) as server:
        finished = execute(
            spec_for(tmp_path, server.api_base, "budgets: {max_tool_calls: 4}\n"), store
        )
    assert finished.stop_reason is StopReason.MAX_TOOL_CALLS
    executed = [t for t in store.tool_calls(finished.run_id) if t["status"] == "ok"]
    assert len(executed) == 4


def test_cost_cap_is_checked_before_the_call(tmp_path: Path, store: RunStore) -> None:
    pricing = "pricing: {input_per_mtok: 1000, output_per_mtok: 1000}"
    # Usage as a provider reports it for prompts this size: the estimate before each later
    # call starts from the reported count (see test_the_estimate_starts_from_reported_usage).
    script = [
        reported(call("list_dir", {"path": "data"}), Usage(150, 10)),
        reported(call("read_file", {"path": "data/a.txt"}), Usage(190, 10)),
    ]
    with FakeOpenAIServer(script * 5) as server:
        spec = spec_for(tmp_path, server.api_base, "budgets: {max_cost_usd: 0.5}\n", pricing)
        finished = execute(spec, store)
    assert finished.stop_reason is StopReason.MAX_COST_USD
    spent = store.db.execute(
        "SELECT sum(cost_usd) FROM model_calls WHERE run_id = ?", (finished.run_id,)
    ).fetchone()[0]
    assert spent is not None
    assert spent <= 0.5
    assert finished.cost_usd == pytest.approx(spent)
    assert len(server.requests) >= 1


def reported(item: Scripted, usage: Usage) -> Scripted:
    """``item`` with the usage the fake server reports for it."""
    return dataclasses.replace(item, usage=usage)


def test_the_estimate_starts_from_reported_usage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a call, the prompt is what the provider reported for that call plus its reply,
    and only the messages added since are tokenized; before any call, or when the provider
    reported no usage, every message (and the tools) is."""
    with FakeOpenAIServer(
        [
            reported(call("list_dir", {"path": "data"}), Usage(700, 30)),
            reported(call("read_file", {"path": "data/a.txt"}), Usage(0, 0)),
        ]
    ) as server:
        spec = spec_for(tmp_path, server.api_base)
        model = LiteLLMModel(spec.model)
        tools = compile_agent(spec).tools.openai_schemas()
        messages: list[dict[str, Any]] = [{"role": "user", "content": "Read data/a.txt."}]
        tokenized: list[Any] = []
        litellm = runner.models.import_litellm()
        token_counter = litellm.token_counter

        def counting(**kwargs: Any) -> int:
            tokenized.append(kwargs.get("messages") or kwargs.get("text"))
            return int(token_counter(**kwargs))

        monkeypatch.setattr(litellm, "token_counter", counting)
        before = model.count_prompt_tokens(messages, tools)
        assert tokenized == [messages, json.dumps(tools)]  # everything, the tools once
        reply = asyncio.run(complete_once(model, messages, tools))
        messages.append(reply.as_message())
        result = {"role": "tool", "tool_call_id": reply.tool_calls[0].id, "content": "a.txt"}
        messages.append(result)
        tokenized.clear()
        after = model.count_prompt_tokens(messages, tools)
        overhead = int(
            token_counter(model="openai/fake", messages=[{"role": "assistant", "content": ""}])
        )
        added = int(token_counter(model="openai/fake", messages=[result]))
        assert after == 700 + 30 + overhead + added
        # Only the new message, and once per run what a message costs around its content:
        # neither the earlier messages nor the reply were tokenized.
        assert tokenized == [[{"role": "assistant", "content": ""}], [result]]
        assert before < 700  # the reported figure, not the local one, is what counts

        # A provider that reports no usage: the next estimate counts everything locally.
        reply = asyncio.run(complete_once(model, messages, tools))
        messages.append(reply.as_message())
        messages.append({"role": "tool", "tool_call_id": reply.tool_calls[0].id, "content": "a"})
        tokenized.clear()
        local = model.count_prompt_tokens(messages, tools)
        assert [messages[1]] in tokenized  # the first reply, now tokenized after all
        assert local < after  # the fake server's 700 tokens were not this prompt's real size


def test_secrets_are_redacted_in_the_store(
    tmp_path: Path, store: RunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "env.txt").write_text(
        "token=ghp_abcdefghijklmnopqrstuvwxyz0123456789 key=supersecretvalue42\n"
    )
    monkeypatch.setenv("MY_SECRET", "supersecretvalue42")
    with FakeOpenAIServer(
        [call("read_file", {"path": "data/env.txt"}), text("the key is supersecretvalue42")]
    ) as server:
        finished = execute(spec_for(tmp_path, server.api_base, "env: [MY_SECRET]\n"), store)
    assert finished.final == "the key is [REDACTED]"
    exported = json.dumps(store.export(finished.run_id))
    assert "supersecretvalue42" not in exported
    assert "ghp_abcdefghijklmnopqrstuvwxyz0123456789" not in exported
    assert "sk-test-key-for-the-fake-server" not in exported
    assert exported.count("[REDACTED]") >= 3
    # The model itself saw the real file (redaction is for the record only).
    assert "supersecretvalue42" in tool_results(server.requests[1])[0]


def test_structured_output_retries_then_validates(tmp_path: Path, store: RunStore) -> None:
    schema = (
        "output:\n  schema: {type: object, required: [ok], properties: {ok: {type: boolean}}}\n"
    )
    with FakeOpenAIServer(
        [text("sure!"), text('```json\n{"ok": "yes"}\n```'), text('{"ok": true}')]
    ) as server:
        finished = execute(spec_for(tmp_path, server.api_base, schema), store)
    assert finished.stop_reason is StopReason.COMPLETED
    assert finished.result == {"ok": True}
    assert "not JSON" in server.requests[1]["messages"][-1]["content"]
    assert "'yes' is not of type 'boolean'" in server.requests[2]["messages"][-1]["content"]
    row = store.run(finished.run_id)
    assert row is not None and json.loads(row.result_json or "null") == {"ok": True}


def test_structured_output_gives_up_after_its_retries(tmp_path: Path, store: RunStore) -> None:
    schema = "output:\n  schema: {type: array}\n  max_retries: 1\n"
    with FakeOpenAIServer([text("no"), text("still no")]) as server:
        finished = execute(spec_for(tmp_path, server.api_base, schema), store)
    assert finished.stop_reason is StopReason.OUTPUT_INVALID
    assert len(server.requests) == 2


@pytest.mark.parametrize("on_thread", [True, False])
def test_a_missing_key_is_a_setup_error_whether_prepared_on_a_thread_or_not(
    tmp_path: Path, store: RunStore, monkeypatch: pytest.MonkeyPatch, on_thread: bool
) -> None:
    """``prepare`` runs on a thread while it may be slow (litellm not imported yet, a local
    model to start) and directly once it is quick; either way its errors end the run."""
    runner.models.import_litellm()
    monkeypatch.delenv("FAKE_API_KEY")
    monkeypatch.setattr(
        runner.models.LiteLLMModel, "prepare_is_quick", property(lambda self: not on_thread)
    )
    threads: list[str] = []
    real = runner.models.LiteLLMModel.prepare

    def prepare(self: Any) -> None:
        threads.append(threading.current_thread().name)
        real(self)

    monkeypatch.setattr(runner.models.LiteLLMModel, "prepare", prepare)
    finished = execute(spec_for(tmp_path, "http://127.0.0.1:9/v1"), store)
    assert finished.stop_reason is StopReason.ERROR
    assert "'FAKE_API_KEY' (model.api_key_env) is not set" in finished.message
    assert (threads[0] != "MainThread") is on_thread


def test_prepare_is_quick_once_litellm_is_imported_and_for_remote_models_only(
    tmp_path: Path,
) -> None:
    runner.models.import_litellm()
    remote = spec_for(tmp_path, "http://127.0.0.1:9/v1")
    assert runner.models.LiteLLMModel(remote.model).prepare_is_quick
    local = replace(remote.model, id="local/smollm2")
    assert not runner.models.LiteLLMModel(local).prepare_is_quick
