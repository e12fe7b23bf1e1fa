"""The command line: runs over real HTTP to the fake server, exit codes, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runner.testing import FakeOpenAIServer, call, text
from tests.conftest import ROOT
from tests.helpers import invoke, write_spec


def fake_spec(folder: Path, api_base: str, extra: str = "") -> Path:
    (folder / "data").mkdir(exist_ok=True)
    (folder / "data" / "a.txt").write_text("alpha\n")
    return write_spec(
        folder,
        f"""
        version: 1
        name: fake-agent
        model:
          id: openai/fake
          api_base: {api_base}
          api_key_env: FAKE_API_KEY
        inputs:
          file: {{type: path, default: data/a.txt}}
        goal: Read {{{{ file }}}}.
        tools:
          read_file: {{paths: [data]}}
        """
        + extra,
    )


@pytest.fixture(autouse=True)
def fake_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_API_KEY", "sk-test-not-a-real-key")


def test_run_completes_over_http_and_is_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeOpenAIServer(
        [call("read_file", {"path": "data/a.txt"}), text("It says alpha.")]
    ) as server:
        spec = fake_spec(tmp_path, server.api_base)
        code, out, err = invoke(["run", str(spec)], capsys)
    assert code == 0, err
    assert out.strip() == "It says alpha."
    assert "step 1: model → read_file" in err and "← ok: alpha" in err
    assert "[completed]" in err
    # The tool result went back to the model over HTTP.
    assert server.requests[1]["messages"][-1] == {
        "role": "tool",
        "tool_call_id": server.requests[1]["messages"][-2]["tool_calls"][0]["id"],
        "content": "alpha\n",
    }
    assert [t["function"]["name"] for t in server.requests[0]["tools"]] == ["read_file"]
    code, out, _ = invoke(["runs"], capsys)
    assert code == 0 and "fake-agent" in out and "completed" in out
    run_id = out.splitlines()[1].split()[0]
    code, out, _ = invoke(["runs", "show", run_id[:10]], capsys)
    assert code == 0
    assert "read_file" in out and "alpha" in out and "stop reason: completed" in out


def test_run_json_prints_one_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with FakeOpenAIServer([text("plain answer")]) as server:
        code, out, err = invoke(
            ["run", str(fake_spec(tmp_path, server.api_base)), "--json"], capsys
        )
    assert code == 0, err
    result = json.loads(out)
    assert result["stop_reason"] == "completed" and result["final"] == "plain answer"
    assert result["input_tokens"] == 10 and result["output_tokens"] == 5


def test_max_steps_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with FakeOpenAIServer([call("read_file", {"path": "data/a.txt"})], repeat_last=True) as server:
        spec = fake_spec(tmp_path, server.api_base, "budgets: {max_steps: 2}\n")
        code, _, err = invoke(["run", str(spec)], capsys)
    assert code == 3
    assert len(server.requests) == 2
    assert "[max_steps]" in err


def test_input_flag_reaches_the_goal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with FakeOpenAIServer([text("ok")]) as server:
        spec = fake_spec(tmp_path, server.api_base)
        code, _, _ = invoke(["run", str(spec), "--input", "file=data/b.txt", "-q"], capsys)
    assert code == 0
    assert server.requests[0]["messages"][-1]["content"] == "Read data/b.txt."


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "nowhere.yaml"], "nowhere.yaml: spec file not found"),
        (
            ["run", "SPEC", "--input", "nope=1"],
            "unknown input 'nope' for agent 'fake-agent'; known inputs: file",
        ),
        (["run", "SPEC", "--input", "novalue"], "--input 'novalue' is not of the form key=value"),
        (["runs", "show", "01NOSUCHRUN"], "no run with id '01NOSUCHRUN'"),
        (["run"], "Missing argument 'SPEC'"),
        (["frobnicate"], "No such command 'frobnicate'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    spec = fake_spec(tmp_path, "http://127.0.0.1:9/v1")
    argv = [str(spec) if a == "SPEC" else a for a in argv]
    code, out, err = invoke(argv, capsys)
    assert code == 2
    assert message in err
    assert "Traceback" not in err + out


def test_spec_that_is_not_yaml_exits_2_with_location(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nname: [unclosed\n")
    code, _, err = invoke(["run", str(bad)], capsys)
    assert code == 2
    assert err.startswith(f"{bad}:")
    assert "invalid YAML" in err and "Traceback" not in err


def test_local_model_without_the_extra_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec

    def without_llama(name: str, *args: object) -> object:
        return None if name == "cyllama" else real_find_spec(name)

    monkeypatch.setattr("runner.models.local.importlib.util.find_spec", without_llama)
    spec = write_spec(
        tmp_path,
        """
        version: 1
        name: offline
        model: local/smollm2
        goal: hi
        """,
    )
    code, _, err = invoke(["run", str(spec)], capsys)
    assert code == 1
    assert "needs the local extra: pip install 'agentrun[local]'" in err
    assert "Traceback" not in err
    code, out, _ = invoke(["runs"], capsys)
    assert "offline" in out and "error" in out  # the failed run is recorded


def test_wrong_api_key_variable_is_recorded_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FAKE_API_KEY")
    spec = fake_spec(tmp_path, "http://127.0.0.1:9/v1")
    code, _, err = invoke(["run", str(spec)], capsys)
    assert code == 1
    assert "environment variable 'FAKE_API_KEY' (model.api_key_env) is not set" in err


def test_python_dash_m_runner_works() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "runner", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0
    assert "validate" in result.stdout and "run" in result.stdout


def test_schema_command_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = invoke(["schema"], capsys)
    assert code == 0
    assert json.loads(out)["$id"] == "https://agentrun.dev/schemas/agent.schema.json"


def test_init_writes_a_spec_that_validates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "my-agent.yaml"
    code, _, _ = invoke(["init", "my-agent", "-o", str(target)], capsys)
    assert code == 0
    assert target.read_text().startswith("# yaml-language-server: $schema=file://")
    code, out, err = invoke(["validate", str(target)], capsys)
    assert code == 0, err
    assert "ok (my-agent)" in out
    code, _, err = invoke(["init", "my-agent", "-o", str(target)], capsys)
    assert code == 2 and "exists; pass --force" in err


def test_explain_shows_tools_and_decisions(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = invoke(["explain", str(ROOT / "agents" / "hello.yaml")], capsys)
    assert code == 0
    assert "model: local/smollm2" in out
    assert "read_file" in out and "risk low" in out and "runs" in out
    assert "max_steps 4" in out
