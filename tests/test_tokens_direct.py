"""Budget estimates on the direct path count tokens without litellm (issue 19).

A run whose model is reached directly (``openai/*``, ``local/*``) never imports litellm, and
its prompt estimate (:meth:`LiteLLMModel.count_prompt_tokens`, before every call of a run
with ``max_tokens`` or ``max_cost_usd``) comes from tiktoken
(:class:`runner.models.tokens.TiktokenCounter`). Its counts are litellm's, exactly, so a
budget holds the same on both paths; its encoding is read from the copy litellm ships, never
downloaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runner.models import LiteLLMModel, Usage, import_litellm
from runner.models.litellm_adapter import (
    provider_host,
    provider_key_variables,
    token_counter_for,
)
from runner.models.tokens import (
    LONG_TEXT_CHARS,
    TiktokenCounter,
    message_tokens,
    text_tokens,
    tiktoken_counter,
)
from runner.spec import ModelSpec
from runner.testing import FakeOpenAIServer, call, text
from tests.helpers import write_spec

#: Model ids on the direct path, as a spec names them; the adapter counts for their litellm
#: names (``local/smollm2`` is served as ``openai/smollm2``).
MODELS = ["openai/gpt-4o-mini", "local/smollm2"]

PROSE = "The budget refuses a call whose prompt would cross its cap. " * 40
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read a UTF-8 text file under the allowed paths.",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string", "description": "relative path"}},
                "required": ["path"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "write_file",
            "description": "Écrire un fichier — 書き込み.",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "text": {"type": "string"}},
            },
        },
    },
]
MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "You are a careful agent. Use the tools."},
    {"role": "user", "content": "Read data/a.txt and summarise it."},
    {"role": "user", "name": "alice", "content": "Also: <|endoftext|> is just text here."},
    {
        "role": "assistant",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "read_file", "arguments": '{"path": "data/a.txt"}'},
            },
            {
                "id": "call_2",
                "type": "function",
                "function": {"name": "write_file", "arguments": json.dumps({"text": PROSE})},
            },
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "alpha\nbeta\n"},
    {"role": "tool", "tool_call_id": "call_2", "content": ""},
    {"role": "assistant", "content": "Größenänderung déjà vu, смета, ἀρχή, 你好世界 🎉🎉"},
    {"role": "user", "content": [{"type": "text", "text": "a list of parts"}, "and a string"]},
    {"role": "tool", "tool_call_id": "c3", "content": PROSE * 5},  # 12 KB: chunked
    {"role": "tool", "tool_call_id": "c4", "content": "x" * (LONG_TEXT_CHARS - 1)},
    {"role": "tool", "tool_call_id": "c5", "content": "日本語のテキスト。" * 4000},  # long
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "c6",
                "type": "function",
                "function": {"name": "write_file", "arguments": json.dumps({"t": PROSE * 20})},
            }
        ],
    },
]


def _litellm_name(model_id: str) -> str:
    return LiteLLMModel(ModelSpec(id=model_id))._litellm_name(model_id)


@pytest.mark.parametrize("model_id", MODELS)
def test_the_tiktoken_counter_counts_what_litellm_counts(model_id: str) -> None:
    """Message by message, the whole conversation, the tools, texts short and long."""
    litellm = import_litellm()
    model = _litellm_name(model_id)
    counter = TiktokenCounter()
    for message in MESSAGES:
        expected = int(litellm.token_counter(model=model, messages=[message]))
        assert counter.token_counter(model=model, messages=[message]) == expected, message
        # And as the adapter counts a message (long texts estimated from samples).
        assert message_tokens(counter, model, message) == message_tokens(litellm, model, message)
    whole = int(litellm.token_counter(model=model, messages=MESSAGES))
    assert counter.token_counter(model=model, messages=MESSAGES) == whole
    tools = json.dumps(TOOLS)
    assert counter.token_counter(model=model, text=tools) == litellm.token_counter(
        model=model, text=tools
    )
    for sample in [PROSE * 30, "a" * 5000, "🎉" * 3000, base_text(100_000)]:
        assert counter.text(sample) == litellm.token_counter(model=model, text=sample)
        assert text_tokens(counter, model, sample) == text_tokens(litellm, model, sample)


def base_text(size: int) -> str:
    """Mixed prose, JSON and CJK, ``size`` characters: tokens split at chunk edges."""
    mixed = PROSE + json.dumps({"rows": list(range(50))}) + "漢字かな交じり文。"
    return (mixed * (size // len(mixed) + 1))[:size]


@pytest.mark.parametrize("model_id", MODELS)
def test_count_prompt_tokens_is_the_same_on_both_counters(
    model_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The adapter's estimate with tiktoken (litellm not imported) equals litellm's."""
    import_litellm()
    by_litellm = LiteLLMModel(ModelSpec(id=model_id))
    by_litellm._routes[model_id] = (_litellm_name(model_id), None, None)  # no local server
    expected = by_litellm.count_prompt_tokens(MESSAGES, TOOLS)
    litellm = sys.modules["litellm"]
    monkeypatch.delitem(sys.modules, "litellm")  # as in a run that never imported it
    direct = LiteLLMModel(ModelSpec(id=model_id))
    direct._routes[model_id] = (_litellm_name(model_id), None, None)
    assert isinstance(token_counter_for(_litellm_name(model_id)), TiktokenCounter)
    assert direct.count_prompt_tokens(MESSAGES, TOOLS) == expected
    monkeypatch.setitem(sys.modules, "litellm", litellm)
    assert token_counter_for(_litellm_name(model_id)) is litellm


def test_after_a_reported_call_only_new_messages_are_tokenized(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The provider's reported usage anchors the estimate on the tiktoken counter too."""
    monkeypatch.delitem(sys.modules, "litellm", raising=False)
    seen: list[Any] = []
    real = TiktokenCounter.token_counter

    def spying(self: TiktokenCounter, **kwargs: Any) -> int:
        seen.append(kwargs.get("messages") or kwargs.get("text"))
        return real(self, **kwargs)

    monkeypatch.setattr(TiktokenCounter, "token_counter", spying)
    model = LiteLLMModel(ModelSpec(id="openai/gpt-4o-mini"))
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Read data/a.txt."}]
    model.count_prompt_tokens(messages, TOOLS)
    assert seen == [messages, json.dumps(TOOLS)]
    # As complete() records a reply whose usage the provider reported: 700 in, 30 out.
    model._anchor = (len(messages), messages[-1], Usage(700, 30).total)
    messages.append({"role": "assistant", "content": "ok"})
    result = {"role": "tool", "tool_call_id": "c1", "content": "alpha"}
    messages.append(result)
    seen.clear()
    after = model.count_prompt_tokens(messages, TOOLS)
    tokenized = list(seen)
    overhead = tiktoken_counter().token_counter(messages=[{"role": "assistant", "content": ""}])
    assert after == 730 + overhead + tiktoken_counter().token_counter(messages=[result])
    assert tokenized == [[{"role": "assistant", "content": ""}], [result]]


def test_the_host_and_key_of_an_openai_model_are_named_without_litellm(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(sys.modules, "litellm", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_BASE", raising=False)
    assert provider_host("openai/gpt-4o-mini", None) == "api.openai.com"
    monkeypatch.setenv("OPENAI_BASE_URL", "http://10.1.2.3:8000/v1")
    assert provider_host("openai/gpt-4o-mini", None) == "10.1.2.3:8000"
    assert provider_host("openai/x", "http://10.0.0.5:8080/v1") == "10.0.0.5:8080"
    assert provider_key_variables("openai/gpt-4o-mini") == ["OPENAI_API_KEY"]
    assert "litellm" not in sys.modules


#: Refuses every connection but loopback's, then runs what follows in the same process.
NO_NETWORK = """
import socket, sys
connect = socket.socket.connect
def loopback_only(self, address):
    if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1", "localhost"):
        raise OSError("network refused by the test: " + repr(address))
    return connect(self, address)
socket.socket.connect = loopback_only
"""

RUN = (
    NO_NETWORK
    + """
import runner.cli
try:
    runner.cli.main(["run", sys.argv[1]])
except SystemExit as done:
    print("exit", done.code)
print("litellm imported:", "litellm" in sys.modules)
print("tiktoken imported:", "tiktoken" in sys.modules)
"""
)


def test_a_direct_run_with_a_cost_budget_never_imports_litellm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``openai/gpt-4o-mini`` at OPENAI_BASE_URL, with max_cost_usd and max_tokens: the
    estimate before each call is tiktoken's, and litellm is never imported."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake-000000")
    monkeypatch.delenv("AGENTRUN_OPENAI_PATH", raising=False)
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    monkeypatch.setenv("DATA_GYM_CACHE_DIR", str(tmp_path / "empty-cache"))  # no other copy
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("alpha\n")
    with FakeOpenAIServer([call("read_file", {"path": "data/a.txt"}), text("alpha")]) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.api_base)
        spec = write_spec(
            tmp_path,
            """
            version: 1
            name: budgeted
            model: openai/gpt-4o-mini
            goal: Read data/a.txt.
            tools:
              read_file: {paths: [data]}
            budgets: {max_cost_usd: 1, max_tokens: 100000}
            """,
        )
        done = subprocess.run(
            [sys.executable, "-c", RUN, str(spec)],
            capture_output=True,
            text=True,
            env=dict(os.environ),
            check=False,
        )
    assert "exit 0" in done.stdout, done.stdout + done.stderr
    assert "litellm imported: False" in done.stdout, done.stdout
    assert "tiktoken imported: True" in done.stdout  # the budget's estimate did count
    assert len(server.requests) == 2
    assert not (tmp_path / "empty-cache").exists()


LOAD = (
    NO_NETWORK
    + """
import os
from runner.models.tokens import bundled_encodings, tiktoken_counter
print("count:", tiktoken_counter().token_counter(text="hello world"))
print("bundled:", bundled_encodings())
print("variable left:", "TIKTOKEN_CACHE_DIR" in os.environ)
print("litellm imported:", "litellm" in sys.modules)
"""
)


def test_the_encoding_loads_from_litellms_copy_without_the_network(tmp_path: Path) -> None:
    """No TIKTOKEN_CACHE_DIR, an empty tiktoken cache, no network: cl100k_base loads from
    the folder litellm ships, and the variable is not left set for the run's tools."""
    env = {k: v for k, v in os.environ.items() if k != "TIKTOKEN_CACHE_DIR"}
    env["DATA_GYM_CACHE_DIR"] = str(tmp_path / "empty-cache")
    done = subprocess.run(
        [sys.executable, "-c", LOAD], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "count: 2" in done.stdout
    assert "litellm_core_utils/tokenizers" in done.stdout
    assert "variable left: False" in done.stdout
    assert "litellm imported: False" in done.stdout
    assert not (tmp_path / "empty-cache").exists()
