"""Warm means warm: a daemon worker pays its model path's first-call imports while idle.

A ``litellm`` worker warms both paths (the openai SDK's and litellm's); a ``direct`` worker
warms the SDK's only and never imports litellm, not even on its run's first call.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PROBE = textwrap.dedent(
    """
    import asyncio, gc, json, os, sys
    from runner.daemon import worker
    from runner.models import LiteLLMModel
    from runner.spec.types import ModelSpec
    from runner.testing import FakeOpenAIServer, call

    path = sys.argv[1]
    runner = asyncio.Runner()
    worker._warm(runner, path)
    before = set(sys.modules)
    frozen = gc.get_freeze_count()
    os.environ["FAKE_API_KEY"] = "sk-fake-000000"
    tools = [{"type": "function", "function": {"name": "read_file", "description": "",
              "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}]
    with FakeOpenAIServer([call("read_file", {"path": "a"})] * 2) as server:
        spec = ModelSpec(id="openai/fake", api_base=server.api_base, api_key_env="FAKE_API_KEY")
        model = LiteLLMModel(spec)
        reply = runner.run(model.complete([{"role": "user", "content": "x"}], tools))
        if path == "litellm":
            os.environ["AGENTRUN_OPENAI_PATH"] = "litellm"  # the path of every other provider
            runner.run(model.complete([{"role": "user", "content": "x"}], tools))
        runner.run(model.aclose())
    print(json.dumps({
        "new": sorted(set(sys.modules) - before),
        "tool": reply.tool_calls[0].name,
        "litellm": "litellm" in sys.modules,
        "frozen": frozen,
    }))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("path", ["direct", "litellm"])
def test_a_warm_worker_imports_nothing_more_on_its_first_call_with_tools(
    tmp_path: Path, path: str
) -> None:
    env = {"AGENTRUN_HOME": str(tmp_path / "home"), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, path],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["tool"] == "read_file"
    heavy = [
        m for m in probe["new"] if m.split(".")[0] in ("litellm", "openai", "httpx", "aiohttp")
    ]
    assert heavy == []  # before warming the model path: about 700 modules, 1.1 s
    assert probe["litellm"] is (path == "litellm")  # a direct worker never imports it
    assert probe["frozen"] > 0  # what the warm-up imported is out of the collector's reach
