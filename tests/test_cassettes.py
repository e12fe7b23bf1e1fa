"""Record and replay of model traffic (issue 24, part 3): cassettes.

A run recorded with :class:`RecordingModel` (scripted, over real HTTP through litellm to the
fake provider, and the embedded SmolLM2 model) replays with :class:`ReplayModel` to the same
tool calls and answer, with no network; secrets never reach the file; an edited cassette
fails naming the request and the first difference; a bad file is one clear error; `agentrun
runs replay` rebuilds a cassette from the run store that replays.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.compiler import compile_agent
from runner.errors import StopReason
from runner.loop import run_agent
from runner.models import ModelReply
from runner.models.cassette import RecordingModel, ReplayModel, first_difference
from runner.models.cassette_file import (
    WORKDIR_MARK,
    CassetteDiverged,
    CassetteInvalid,
    load_cassette,
)
from runner.redact import Redactor, secret_variables
from runner.spec import AgentSpec, load_spec
from runner.store import RunStore, SQLiteRunStore
from runner.testing import (
    FakeOpenAIServer,
    Scripted,
    ScriptedModel,
    call,
    http_error,
    text,
)
from tests.helpers import ROOT, invoke, run_cli, write_spec

SECRET = "hunter2-very-secret-token"

SPEC = """
version: 1
name: reader
model: {model}
instructions: You read files and say what they hold.
goal: Read data/a.txt and data/b.txt, then say what they hold.
tools:
  read_file: {{paths: [data]}}
  list_dir: {{paths: [data]}}
"""

SCRIPT = [
    call("list_dir", {"path": "data"}),
    call("read_file", {"path": "data/a.txt"}),
    call("read_file", {"path": "data/b.txt"}),
    text("a.txt holds alpha, b.txt holds beta."),
]


def reader_spec(folder: Path, model: str = "openai/scripted", extra: str = "") -> AgentSpec:
    if not (folder / "data").is_dir():  # a replay finds the files as the test left them
        (folder / "data").mkdir()
        (folder / "data" / "a.txt").write_text("alpha\n")
        (folder / "data" / "b.txt").write_text("beta\n")
    return load_spec(write_spec(folder, SPEC.format(model=model) + extra))


def run(spec: AgentSpec, model: Any, store: RunStore, **options: Any) -> Any:
    return asyncio.run(run_agent(compile_agent(spec), model, store=store, **options))


def tool_calls(store: RunStore, run_id: str) -> list[tuple[str, Any, str, str]]:
    """What a run's tool calls were: tool, arguments, status and result, in order."""
    return [
        (row["tool"], json.loads(row["arguments"]), row["status"], row["result"])
        for row in store.tool_calls(run_id)
    ]


def redactor(spec: AgentSpec) -> Any:
    return Redactor(secret_variables(spec)).value


def record_scripted(tmp_path: Path, script: list[Scripted] | None = None) -> tuple[Any, Path]:
    """A scripted run of the reader spec, recorded; the finished event and the cassette."""
    spec = reader_spec(tmp_path)
    cassette = tmp_path / "reader.cassette.yaml"
    model = RecordingModel(ScriptedModel(list(script or SCRIPT)), cassette, agent=spec.name)
    finished = run(spec, model, SQLiteRunStore(tmp_path / "recorded.db"))
    return finished, cassette


def replay(tmp_path: Path, cassette: Path) -> tuple[Any, ReplayModel, RunStore]:
    spec = reader_spec(tmp_path)
    model = ReplayModel(cassette, workdir=spec.workdir)
    store = SQLiteRunStore(tmp_path / "replayed.db")
    return run(spec, model, store), model, store


def edit(cassette: Path, change: Any) -> None:
    """Load the cassette's YAML, let ``change`` edit it, write it back."""
    data = yaml.safe_load(cassette.read_text(encoding="utf-8"))
    change(data)
    cassette.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


# -- record, then replay -------------------------------------------------------------------


def test_a_scripted_run_replays_to_the_same_tool_calls_and_answer(tmp_path: Path) -> None:
    recorded, cassette = record_scripted(tmp_path)
    assert recorded.stop_reason is StopReason.COMPLETED
    data = yaml.safe_load(cassette.read_text(encoding="utf-8"))
    assert data["version"] == 1 and data["agent"] == "reader"
    assert len(data["interactions"]) == 4
    # Each request holds only the messages added since the previous one.
    assert [m["role"] for m in data["interactions"][1]["request"]["messages"]] == [
        "assistant",
        "tool",
    ]
    assert [t["function"]["name"] for t in data["tools"]] == ["read_file", "list_dir"]

    replayed, model, store = replay(tmp_path, cassette)

    assert replayed.stop_reason is StopReason.COMPLETED, replayed.message
    assert replayed.final == recorded.final == "a.txt holds alpha, b.txt holds beta."
    recorded_store = SQLiteRunStore(tmp_path / "recorded.db")
    assert tool_calls(store, replayed.run_id) == tool_calls(recorded_store, recorded.run_id)
    assert model.calls == 4 and model.remaining == 0 and model.divergence is None
    # The replayed calls carry the recorded usage and model id.
    [first, *_] = store.model_calls(replayed.run_id)
    assert (first["input_tokens"], first["output_tokens"], first["model"]) == (10, 5, "scripted")


def test_the_cassette_is_written_after_every_call(tmp_path: Path) -> None:
    class Crashing(ScriptedModel):
        async def complete(self, *args: Any, **kwargs: Any) -> ModelReply:
            if self.requests:
                raise RuntimeError("the process dies here")
            return await super().complete(*args, **kwargs)

    spec = reader_spec(tmp_path)
    cassette = tmp_path / "crash.yaml"
    model = RecordingModel(Crashing(list(SCRIPT)), cassette)
    finished = run(spec, model, SQLiteRunStore(tmp_path / "runs.db"))
    assert finished.stop_reason is StopReason.ERROR
    assert len(load_cassette(cassette).interactions) == 1  # the call made before the crash


def test_a_failed_model_call_is_recorded_and_replayed_as_a_model_error(tmp_path: Path) -> None:
    recorded, cassette = record_scripted(
        tmp_path, [call("list_dir", {"path": "data"}), http_error(500)]
    )
    assert recorded.stop_reason is StopReason.MODEL_ERROR
    assert load_cassette(cassette).interactions[-1].error == "scripted HTTP 500"
    replayed, _, _ = replay(tmp_path, cassette)
    assert replayed.stop_reason is StopReason.MODEL_ERROR
    assert replayed.message.startswith("scripted HTTP 500 (as recorded in the cassette")


def test_budget_estimates_are_replayed_so_a_budget_stop_replays_too(tmp_path: Path) -> None:
    # 4 characters a token: the first call's estimate fits, the second's (with the list_dir
    # result and the reply) crosses max_tokens before it is made.
    spec = reader_spec(tmp_path, extra="budgets: {max_tokens: 400}\n")
    cassette = tmp_path / "budget.yaml"
    inner = ScriptedModel(list(SCRIPT), max_output_tokens=200)
    recorded = run(spec, RecordingModel(inner, cassette), SQLiteRunStore(tmp_path / "a.db"))
    assert recorded.stop_reason is StopReason.MAX_TOKENS and recorded.steps == 1
    assert len(load_cassette(cassette).prompt_token_estimates) == 2  # the refused call's too

    replayed = run(spec, ReplayModel(cassette), SQLiteRunStore(tmp_path / "b.db"))
    assert replayed.stop_reason is StopReason.MAX_TOKENS, replayed.message
    assert replayed.steps == 1 and replayed.message == recorded.message


def test_a_run_over_real_http_through_litellm_replays_without_the_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTRUN_OPENAI_PATH", "litellm")  # through litellm, not the SDK
    monkeypatch.setenv("FAKE_API_KEY", "sk-test-not-a-real-key-0000")
    cassette = tmp_path / "http.yaml"
    with FakeOpenAIServer(list(SCRIPT)) as server:
        model = f"{{id: openai/fake, api_base: '{server.api_base}', api_key_env: FAKE_API_KEY}}"
        spec_path = reader_spec(tmp_path, model=model).path
        code, out, err = invoke(["run", str(spec_path), "--record", str(cassette)], capsys)
        assert code == 0, err
        assert len(server.requests) == 4
    assert f"recorded 4 model calls to {cassette}" in err
    recorded_answer = out

    monkeypatch.delenv("FAKE_API_KEY")  # no key, no server: the model is never contacted
    code, out, err = invoke(["run", str(spec_path), "--replay", str(cassette), "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["stop_reason"] == "completed"
    assert result["final"] + "\n" == recorded_answer
    store = RunStore.default()
    [replayed, recorded] = store.runs(limit=2)
    assert replayed.id == result["run_id"]
    assert tool_calls(store, replayed.id) == tool_calls(store, recorded.id)
    assert len(tool_calls(store, replayed.id)) == 3
    # The tool call ids came from the recorded replies.
    first = load_cassette(cassette).interactions[0].reply
    assert first is not None
    [row, *_] = store.tool_calls(replayed.id)
    assert row["call_id"] == first.tool_calls[0].id


# -- secrets --------------------------------------------------------------------------------


def test_secrets_never_reach_the_file_and_the_replay_still_matches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("READER_TOKEN", SECRET)
    spec = reader_spec(tmp_path, extra="env: [READER_TOKEN]\n")
    (tmp_path / "data" / "a.txt").write_text(f"the token is {SECRET}\n")
    script = [
        call("read_file", {"path": "data/a.txt"}),
        text(f"The token is {SECRET}; also sk-proj-abcdefghijklmnopqrstuvwx."),
    ]
    cassette = tmp_path / "secret.yaml"
    model = RecordingModel(ScriptedModel(script), cassette, redact=redactor(spec))
    recorded = run(spec, model, SQLiteRunStore(tmp_path / "a.db"))
    assert recorded.stop_reason is StopReason.COMPLETED

    written = cassette.read_text(encoding="utf-8")
    assert SECRET not in written and "sk-proj-abcdefghij" not in written
    assert written.count("[REDACTED]") >= 3  # the tool result, and the reply's two

    replayed = run(
        spec, ReplayModel(cassette, redact=redactor(spec)), SQLiteRunStore(tmp_path / "b.db")
    )
    assert replayed.stop_reason is StopReason.COMPLETED, replayed.message
    assert replayed.final == "The token is [REDACTED]; also [REDACTED]."


# -- divergence -----------------------------------------------------------------------------


def test_a_changed_message_fails_naming_the_request_and_the_difference(tmp_path: Path) -> None:
    _, cassette = record_scripted(tmp_path)

    def change(data: dict[str, Any]) -> None:
        data["interactions"][2]["request"]["messages"][1]["content"] = "ALPHA\n"

    edit(cassette, change)
    finished, model, store = replay(tmp_path, cassette)

    assert finished.stop_reason is StopReason.ERROR
    expected = (
        f"request 3 diverges from the cassette {cassette} at messages[5].content: "
        "recorded 'ALPHA\\n', got 'alpha\\n'"
    )
    assert finished.message.startswith(expected), finished.message
    assert model.divergence == finished.message
    row = store.run(finished.run_id)
    assert row is not None and row.stop_reason == "error" and row.message == finished.message
    assert finished.steps == 2  # two calls answered before the third diverged


def test_a_removed_interaction_fails_clearly(tmp_path: Path) -> None:
    _, cassette = record_scripted(tmp_path)
    edit(cassette, lambda data: data["interactions"].pop())
    finished, _, _ = replay(tmp_path, cassette)
    assert finished.stop_reason is StopReason.ERROR
    assert finished.message.startswith(
        f"request 4 has no recording: the cassette {cassette} holds 3 interactions"
    )


def test_a_removed_first_interaction_diverges_at_the_first_message(tmp_path: Path) -> None:
    _, cassette = record_scripted(tmp_path)
    edit(cassette, lambda data: data["interactions"].pop(0))
    finished, _, _ = replay(tmp_path, cassette)
    assert finished.stop_reason is StopReason.ERROR
    assert "request 1 diverges from the cassette" in finished.message
    assert "at messages[0].role: recorded 'assistant', got 'system'" in finished.message


def test_an_extra_recorded_call_is_reported_by_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, cassette = record_scripted(tmp_path)

    def add(data: dict[str, Any]) -> None:
        extra = {"request": {"messages": [{"role": "user", "content": "more"}]}}
        data["interactions"].append({**extra, "reply": {"content": "more", "tool_calls": []}})

    edit(cassette, add)
    spec_path = tmp_path / "agent.yaml"
    code, _, err = invoke(["run", str(spec_path), "--replay", str(cassette)], capsys)
    assert code == 0
    assert f"warning: the run made 4 of the 5 model calls the cassette {cassette} holds" in err


def test_a_different_tool_list_and_tool_choice_diverge(tmp_path: Path) -> None:
    _, cassette = record_scripted(tmp_path)
    edit(cassette, lambda data: data["tools"].pop())
    finished, _, _ = replay(tmp_path, cassette)
    assert "request 1 diverges" in finished.message
    assert "at tools[1]: recorded nothing, got {'type': 'function'" in finished.message

    _, cassette = record_scripted(tmp_path)
    spec = reader_spec(tmp_path)
    choice = {"type": "function", "function": {"name": "list_dir"}}
    finished = run(
        spec, ReplayModel(cassette), SQLiteRunStore(tmp_path / "c.db"), first_tool_choice=choice
    )
    assert "at tool_choice: recorded None, got {'type': 'function'" in finished.message


def test_ignore_patterns_mask_what_legitimately_varies(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("alpha at 2026-01-01T00:00:00Z\n")
    (tmp_path / "data" / "b.txt").write_text("beta\n")
    _, cassette = record_scripted(tmp_path)
    (tmp_path / "data" / "a.txt").write_text("alpha at 2026-12-04T16:40:21Z\n")  # same size
    finished, _, _ = replay(tmp_path, cassette)
    assert "request 3 diverges" in finished.message
    assert "recorded 'alpha at 2026-01-01T00:00:00Z\\n', got 'alpha at 2026-12-04" in (
        finished.message
    )

    def ignore(data: dict[str, Any]) -> None:
        data["ignore"] = ["[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]+Z"]

    edit(cassette, ignore)
    finished, _, _ = replay(tmp_path, cassette)
    assert finished.stop_reason is StopReason.COMPLETED, finished.message


def test_the_workdir_is_written_as_a_mark_and_put_back(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    cassette = tmp_path / "paths.yaml"
    reply = [call("read_file", {"path": f"{first}/notes.md"})]
    recording = RecordingModel(ScriptedModel(reply), cassette, workdir=first)
    messages = [{"role": "user", "content": f"Read {first}/notes.md"}]
    asyncio.run(recording.complete(messages, []))
    written = cassette.read_text(encoding="utf-8")
    assert str(first) not in written and f"Read {WORKDIR_MARK}/notes.md" in written

    replaying = ReplayModel(cassette, workdir=second)
    got = asyncio.run(
        replaying.complete([{"role": "user", "content": f"Read {second}/notes.md"}], [])
    )
    assert json.loads(got.tool_calls[0].arguments) == {"path": f"{second}/notes.md"}
    with pytest.raises(CassetteDiverged, match=r"messages\[0\]\.content"):
        asyncio.run(
            ReplayModel(cassette, workdir=second).complete(messages, [])  # the old folder
        )


def test_first_difference_names_the_path_and_shows_excerpts() -> None:
    long_old = "x" * 200 + "old tail"
    long_new = "x" * 200 + "new tail"
    where, what = first_difference({"a": [{"b": long_old}]}, {"a": [{"b": long_new}]}, "m") or (
        "",
        "",
    )
    assert where == "m.a[0].b"
    assert what.startswith("recorded …'xxxx") and "old tail'" in what and "new tail'" in what
    assert len(what) < 200
    assert first_difference({"a": 1}, {"a": 1}, "m") is None
    assert first_difference({"a": 1}, {}, "m") == ("m.a", "recorded 1, got no 'a'")
    assert first_difference({}, {"b": None}, "m") == ("m.b", "recorded no 'b', got None")
    assert first_difference(1, 1.0, "m") == ("m", "recorded 1, got 1.0")


# -- bad cassette files ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("interactions: [", "not valid YAML at line 1"),
        ("- a list\n", "not a cassette: expected a mapping, found ['a list']"),
        ("agent: x\n", "not a cassette: it has no 'version' and 'interactions' keys"),
        ("version: 9\ninteractions: []\n", "version: cassette version 9 is not supported"),
        ("version: 1\ninteractions: []\ntape: 1\n", "tape: unknown key"),
        (
            "version: 1\ninteractions:\n  - request: {messages: []}\n    reply: {tool_calls: [{}]}\n",
            "interactions[0].reply.tool_calls[0].id: expected the call id, found None",
        ),
        (
            "version: 1\ninteractions:\n  - request: {messages: [{content: hi}]}\n    reply: {}\n",
            "interactions[0].request.messages[0].role: expected a role, found None",
        ),
        (
            "version: 1\ninteractions:\n  - request: {messages: []}\n",
            "interactions[0]: needs a 'reply' or an 'error'",
        ),
        ("version: 1\nignore: ['(']\ninteractions: []\n", "ignore[0]: invalid regular expression"),
        ("version: 1\ncompares: [tools, words]\ninteractions: []\n", "compares[1]: 'words'"),
    ],
)
def test_a_bad_cassette_is_one_clear_error_naming_the_file(
    tmp_path: Path, content: str, problem: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CassetteInvalid) as raised:
        ReplayModel(path)
    assert str(raised.value).startswith(f"cassette {path}: ")
    assert problem in str(raised.value)


def test_a_missing_or_bad_cassette_is_a_usage_error_at_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec_path = reader_spec(tmp_path).path
    code, _, err = invoke(["run", str(spec_path), "--replay", str(tmp_path / "none.yaml")], capsys)
    assert code == 2
    assert err.strip() == f"agentrun: cassette {tmp_path / 'none.yaml'}: no such file"
    (tmp_path / "bad.yaml").write_text("version: 1\n", encoding="utf-8")
    code, _, err = invoke(["run", str(spec_path), "--replay", str(tmp_path / "bad.yaml")], capsys)
    assert code == 2 and "Traceback" not in err
    code, out, _ = invoke(["runs"], capsys)
    assert out.strip() == "no runs recorded yet"  # nothing ran


def test_record_and_replay_together_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec_path = reader_spec(tmp_path).path
    code, _, err = invoke(
        ["run", str(spec_path), "--record", "a.yaml", "--replay", "b.yaml"], capsys
    )
    assert code == 2
    assert "--record and --replay cannot be used together" in err


def test_recording_a_model_that_cannot_start_is_the_same_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec

    def without_llama(name: str, *args: object) -> object:
        return None if name == "cyllama" else real_find_spec(name)

    monkeypatch.setattr("runner.models.local.importlib.util.find_spec", without_llama)
    spec_path = write_spec(tmp_path, "version: 1\nname: offline\nmodel: local/smollm2\ngoal: hi\n")
    cassette = tmp_path / "never.yaml"
    code, _, err = invoke(["run", str(spec_path), "--record", str(cassette)], capsys)
    assert code == 1  # prepare() is the inner model's: the setup error ends the run first
    assert "needs the local extra: pip install 'agentrun[local]'" in err
    assert "Traceback" not in err
    assert not cassette.exists()  # no call was made, so nothing was recorded


def test_a_divergence_at_the_cli_exits_1_with_the_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, cassette = record_scripted(tmp_path)
    edit(cassette, lambda data: data["interactions"][0]["request"]["messages"].pop(0))
    spec_path = tmp_path / "agent.yaml"
    code, _, err = invoke(["run", str(spec_path), "--replay", str(cassette)], capsys)
    assert code == 1
    assert "agentrun: request 1 diverges from the cassette" in err
    assert "at messages[0].role: recorded 'user', got 'system'" in err
    code, out, _ = invoke(["runs"], capsys)
    assert "reader" in out and "error" in out  # the run is recorded with its stop reason


# -- agentrun runs replay -------------------------------------------------------------------


def test_runs_replay_rebuilds_a_cassette_that_replays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("READER_TOKEN", SECRET)
    spec = reader_spec(tmp_path, extra="env: [READER_TOKEN]\n")
    (tmp_path / "data" / "b.txt").write_text(f"beta {SECRET}\n")
    recorded = run(spec, ScriptedModel(list(SCRIPT)), RunStore.default())
    assert recorded.stop_reason is StopReason.COMPLETED

    code, out, err = invoke(["runs", "replay", recorded.run_id], capsys)
    assert code == 0, err
    assert SECRET not in out
    data = yaml.safe_load(out)
    assert data["compares"] == ["messages"] and len(data["interactions"]) == 4

    cassette = tmp_path / "rebuilt.yaml"
    code, _, err = invoke(["runs", "replay", recorded.run_id[:12], "-o", str(cassette)], capsys)
    assert code == 0
    assert f"wrote 4 model calls of run {recorded.run_id} to {cassette}" in err
    code, out, err = invoke(["run", str(spec.path), "--replay", str(cassette), "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["final"] == recorded.final
    store = RunStore.default()
    replayed = json.loads(out)["run_id"]
    assert tool_calls(store, replayed) == tool_calls(store, recorded.run_id)

    code, _, err = invoke(["runs", "replay", "01NOSUCHRUN"], capsys)
    assert code == 2 and "no run with id '01NOSUCHRUN'" in err


def test_a_rebuilt_cassette_still_catches_a_changed_conversation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = reader_spec(tmp_path)
    recorded = run(spec, ScriptedModel(list(SCRIPT)), RunStore.default())
    cassette = tmp_path / "rebuilt.yaml"
    assert invoke(["runs", "replay", recorded.run_id, "-o", str(cassette)], capsys)[0] == 0
    (tmp_path / "data" / "b.txt").write_text("BETA\n")  # the same size: list_dir agrees
    code, _, err = invoke(["run", str(spec.path), "--replay", str(cassette)], capsys)
    assert code == 1
    assert "request 4 diverges" in err and "recorded 'beta\\n', got 'BETA\\n'" in err


# -- the embedded local model ---------------------------------------------------------------


@pytest.mark.local_model
def test_a_recorded_run_of_the_local_model_replays_identically(tmp_path: Path) -> None:
    pytest.importorskip("cyllama", reason="needs the [local] extra")
    # agents/hello.yaml as it is: the embedded SmolLM2 model reads a file with a real tool
    # call. Recorded by `agentrun run --record` in its own process (the local model's
    # server lives as long as its process), replayed here with no model at all.
    for name in ("hello.yaml", "about-agentrun.txt"):
        shutil.copy(ROOT / "agents" / name, tmp_path / name)
    spec = load_spec(tmp_path / "hello.yaml")
    cassette = tmp_path / "local.yaml"
    home = tmp_path / "home"
    env = {**os.environ, "AGENTRUN_HOME": str(home), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = run_cli(["run", str(spec.path), "--record", str(cassette), "--json"], env)
    assert done.returncode == 0, done.stderr
    recorded = json.loads(done.stdout)
    first = SQLiteRunStore(home / "runs.db")
    assert [call[0] for call in tool_calls(first, recorded["run_id"])] == ["read_file"]
    assert len(load_cassette(cassette).interactions) == recorded["steps"] == 2

    replaying = ReplayModel(cassette, redact=redactor(spec), workdir=spec.workdir)
    second = SQLiteRunStore(tmp_path / "replayed.db")
    replayed = run(spec, replaying, second)

    assert replayed.stop_reason is StopReason.COMPLETED, replayed.message
    assert replayed.final == recorded["final"] and "agentrun" in replayed.final
    assert tool_calls(second, replayed.run_id) == tool_calls(first, recorded["run_id"])
    assert replaying.remaining == 0
    assert [r["input_tokens"] for r in second.model_calls(replayed.run_id)] == [
        r["input_tokens"] for r in first.model_calls(recorded["run_id"])
    ]
