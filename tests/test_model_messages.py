"""What the loop sends back to a provider: the conversation's messages, as the API expects."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from runner.compiler import compile_agent
from runner.loop import run_agent
from runner.models.base import ModelReply, ToolCallRequest
from runner.spec import load_spec
from runner.testing import FakeOpenAIServer, call, text
from tests.helpers import write_spec

# Every model behaviour test runs on both paths to an OpenAI-compatible endpoint.
pytestmark = pytest.mark.usefixtures("model_path")


def test_a_reply_with_tool_calls_and_no_text_has_null_content() -> None:
    request = ToolCallRequest(id="c1", name="read_file", arguments='{"path": "a"}')
    for content in (None, ""):
        message = ModelReply(content=content, tool_calls=[request]).as_message()
        assert message["content"] is None and message["tool_calls"][0]["id"] == "c1"
    assert ModelReply(content="Reading.", tool_calls=[request]).as_message()["content"] == (
        "Reading."
    )
    assert ModelReply(content=None).as_message() == {"role": "assistant", "content": ""}


def test_the_next_request_carries_null_content_over_http(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through litellm and real HTTP: the tool-call message goes back without an empty text
    (litellm drops a null ``content``; before, ``""`` went on every later call)."""
    monkeypatch.setenv("FAKE_API_KEY", "sk-fake-000000")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("alpha\n")
    with FakeOpenAIServer([call("read_file", {"path": "data/a.txt"}), text("alpha")]) as server:
        spec = load_spec(
            write_spec(
                tmp_path,
                f"""
                version: 1
                name: reader
                model: {{id: openai/fake, api_base: {server.api_base}, api_key_env: FAKE_API_KEY}}
                goal: Read data/a.txt.
                tools:
                  read_file: {{paths: [data]}}
                """,
            )
        )
        finished = asyncio.run(run_agent(compile_agent(spec)))
    assert finished.stop_reason == "completed"
    [assistant] = [m for m in server.requests[1]["messages"] if m["role"] == "assistant"]
    assert assistant.get("content") is None
    assert assistant["tool_calls"][0]["function"]["name"] == "read_file"
