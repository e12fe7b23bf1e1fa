"""Errors that said the wrong thing (issue 18): each now says what happened and what to do.

Over real HTTP where a provider is involved: litellm talks to the fake OpenAI-compatible
server (:class:`runner.testing.FakeOpenAIServer`), or to a loopback port nothing listens on.
"""

from __future__ import annotations

import asyncio
import socket
import textwrap
from pathlib import Path
from typing import Any

import pytest

import runner.models
from runner.compiler import compile_agent
from runner.events import StopReason
from runner.loop import run_agent
from runner.spec import load_spec
from runner.store import RunStore
from runner.testing import FakeOpenAIServer, call, cut_off, text
from tests.helpers import write_spec

# Every model behaviour test runs on both paths to an OpenAI-compatible endpoint.
pytestmark = pytest.mark.usefixtures("model_path")


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner.models.litellm_adapter, "RETRY_INITIAL_S", 0.01)
    monkeypatch.setattr(runner.models.litellm_adapter, "RETRY_MAX_S", 0.05)


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "runs.db")


def spec_for(folder: Path, api_base: str, model_extra: str = "", extra: str = "") -> Any:
    (folder / "data").mkdir(exist_ok=True)
    return load_spec(
        write_spec(
            folder,
            textwrap.dedent(
                f"""
                version: 1
                name: misleading
                model:
                  id: openai/fake
                  api_base: {api_base}
                  params: {{max_tokens: 50}}
                {textwrap.indent(model_extra, "  ")}
                goal: Read data/a.txt.
                tools:
                  read_file: {{paths: [data]}}
                  write_file: {{paths: [data]}}
                """
            )
            + extra,
        )
    )


def execute(spec: Any, store: RunStore) -> Any:
    return asyncio.run(run_agent(compile_agent(spec), store=store))


def tool_results(request: dict[str, Any]) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "tool"]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_missing_api_key_names_the_variable_and_is_not_retried(
    tmp_path: Path, store: RunStore
) -> None:
    """No ``api_key_env`` and no ``OPENAI_API_KEY``: the OpenAI SDK's "Missing credentials",
    which litellm raises as an ``InternalServerError``, was retried three times."""
    with FakeOpenAIServer([text("never")]) as server:
        finished = execute(spec_for(tmp_path, server.api_base), store)
    assert finished.stop_reason is StopReason.ERROR
    assert "'OPENAI_API_KEY'" in finished.message
    assert "not retried" in finished.message
    assert "InternalServerError" not in finished.message
    assert server.requests == []  # the SDK refused before sending anything


def test_a_missing_key_is_not_retried_before_the_fallback(
    tmp_path: Path, store: RunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = runner.models.litellm_adapter._retry

    async def counting(call: Any, first_error: BaseException, kwargs: dict[str, Any]) -> Any:
        calls.append(kwargs["model"])
        return await real(call, first_error, kwargs)

    monkeypatch.setattr(runner.models.litellm_adapter, "_retry", counting)
    with FakeOpenAIServer([text("never")]) as server:
        finished = execute(spec_for(tmp_path, server.api_base), store)
    assert finished.stop_reason is StopReason.ERROR
    assert calls == []


def test_a_network_failure_names_the_host(tmp_path: Path, store: RunStore) -> None:
    port = closed_port()
    spec = spec_for(
        tmp_path, f"http://127.0.0.1:{port}/v1", model_extra="api_key_env: FAKE_API_KEY"
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FAKE_API_KEY", "sk-test-key-for-the-fake-server-0123456789")
        finished = execute(spec, store)
    assert finished.stop_reason is StopReason.MODEL_ERROR
    assert f"could not reach 127.0.0.1:{port}" in finished.message


def test_the_provider_host_is_named_without_an_api_base() -> None:
    from runner.models.litellm_adapter import provider_host

    assert provider_host("openai/gpt-4o-mini", None) == "api.openai.com"
    assert provider_host("openai/x", "http://10.0.0.5:8080/v1") == "10.0.0.5:8080"


def test_arguments_cut_off_by_max_tokens_say_so(
    tmp_path: Path, store: RunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_API_KEY", "sk-test-key-for-the-fake-server-0123456789")
    script = [
        cut_off(call("write_file", '{"path": "data/out.txt", "content": "a long ess')),
        text("gave up"),
    ]
    with FakeOpenAIServer(script) as server:
        spec = spec_for(tmp_path, server.api_base, model_extra="api_key_env: FAKE_API_KEY")
        finished = execute(spec, store)
    assert finished.stop_reason is StopReason.COMPLETED
    [result] = tool_results(server.requests[1])
    assert "not valid JSON" not in result
    assert "cut off" in result and "max_tokens (50 tokens)" in result
    [tool] = store.tool_calls(finished.run_id)
    assert "cut off" in tool["error"]


def test_bad_json_without_a_cut_off_is_still_bad_json(
    tmp_path: Path, store: RunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_API_KEY", "sk-test-key-for-the-fake-server-0123456789")
    with FakeOpenAIServer([call("read_file", '{"path": data}'), text("ok")]) as server:
        spec = spec_for(tmp_path, server.api_base, model_extra="api_key_env: FAKE_API_KEY")
        execute(spec, store)
    [result] = tool_results(server.requests[1])
    assert "not valid JSON" in result and "cut off" not in result


def test_a_34_megabyte_file_is_noted_with_its_real_size(
    tmp_path: Path, store: RunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The note said "1048632 bytes": read_file's own 1 MiB cut plus its note."""
    monkeypatch.setenv("FAKE_API_KEY", "sk-test-key-for-the-fake-server-0123456789")
    (tmp_path / "data").mkdir()
    size = 34_000_000
    with (tmp_path / "data" / "big.txt").open("w") as handle:
        handle.write("x" * size)
    with FakeOpenAIServer([call("read_file", {"path": "data/big.txt"}), text("big")]) as server:
        spec = spec_for(tmp_path, server.api_base, model_extra="api_key_env: FAKE_API_KEY")
        finished = execute(spec, store)
    assert finished.stop_reason is StopReason.COMPLETED
    [result] = tool_results(server.requests[1])
    limit = spec.budgets.max_tool_output
    assert len(result.encode()) <= limit
    shown = len(result.split("\n[file is", 1)[0])
    assert result.endswith(
        f"\n[file is {size} bytes; showing its first {shown}: "
        "raise budgets.max_tool_output to see more]"
    )
    assert "truncated" not in result


def test_a_cut_output_says_how_much_it_shows() -> None:
    from runner.tool_calls import truncate

    cut = truncate("y" * 10_000, 1000)
    shown = len(cut.split("\n[output", 1)[0])
    assert len(cut.encode()) <= 1000
    assert cut.endswith(f"[output truncated: 10000 bytes, showing the first {shown}]")
