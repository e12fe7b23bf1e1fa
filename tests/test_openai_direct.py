"""The direct path to OpenAI-compatible endpoints (issue 19, item 1): no litellm unless asked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.testing import FakeOpenAIServer, call, text
from tests.helpers import write_spec

PROBE = """
import sys
import runner.cli
try:
    runner.cli.main(["run", sys.argv[1]])
except SystemExit as done:
    print("exit", done.code)
print("litellm imported:", "litellm" in sys.modules)
"""


@pytest.mark.parametrize("via", ["direct", "litellm"])
def test_a_run_on_an_openai_model_imports_litellm_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, via: str
) -> None:
    """The direct path (issue 19, item 1): an openai/* run never imports litellm."""
    monkeypatch.setenv("FAKE_API_KEY", "sk-fake-000000")
    if via == "litellm":
        monkeypatch.setenv("AGENTRUN_OPENAI_PATH", "litellm")
    else:
        monkeypatch.delenv("AGENTRUN_OPENAI_PATH", raising=False)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("alpha\n")
    with FakeOpenAIServer([call("read_file", {"path": "data/a.txt"}), text("alpha")]) as server:
        spec = write_spec(
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
        done = subprocess.run(
            [sys.executable, "-c", PROBE, str(spec)],
            capture_output=True,
            text=True,
            env=dict(os.environ),
            check=False,
        )
    assert "exit 0" in done.stdout, done.stderr
    assert f"litellm imported: {via == 'litellm'}" in done.stdout
    assert len(server.requests) == 2


def test_every_direct_client_shares_one_ssl_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading the CA bundle took 78-87 ms per client; a daemon worker makes one per run."""
    import asyncio

    import httpx

    from runner.models import openai_direct

    made: list[object] = []
    real = httpx.create_ssl_context

    def counting(*args: object, **kwargs: object) -> object:
        made.append(real())
        return made[-1]

    monkeypatch.setattr(httpx, "create_ssl_context", counting)
    monkeypatch.setattr(openai_direct, "_ssl_context", None)

    async def one_run() -> None:
        clients = openai_direct.DirectClients()
        clients.client("https://a.example/v1", "k", None)
        clients.client("https://b.example/v1", "k", 5.0)
        await clients.aclose()

    asyncio.run(one_run())
    asyncio.run(one_run())  # a second run, in a new event loop, as a worker's next job
    assert len(made) == 1
