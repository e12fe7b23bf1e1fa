"""The loop with the scripted model: tool results fed back, failures sorted, one stop reason."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from runner.compiler import compile_agent
from runner.errors import UsageError
from runner.events import (
    Event,
    MessageAdded,
    ModelCalled,
    RunFinished,
    RunStarted,
    StopReason,
    ToolCalled,
    ToolStarted,
)
from runner.loop import Run, run_agent
from runner.store import RunStore
from runner.testing import ScriptedModel, call, calls, text
from runner.tool_calls import truncate
from tests.helpers import make_spec


def run(
    folder: Path, script: list[Any], extra: str = "", **kwargs: Any
) -> tuple[RunFinished, ScriptedModel, list[Event]]:
    spec = make_spec(folder, extra)
    model = ScriptedModel(script, **kwargs)
    events: list[Event] = []
    finished = asyncio.run(Run(compile_agent(spec), model, [events.append]).execute())
    return finished, model, events


def tool_results(model: ScriptedModel, request: int) -> list[str]:
    messages = model.requests[request][0]
    return [m["content"] for m in messages if m["role"] == "tool"]


def test_tool_result_is_fed_back_and_run_completes(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("the answer is 42\n")
    finished, model, events = run(
        tmp_path, [call("read_file", {"path": "data/notes.txt"}), text("It says 42.")]
    )
    assert finished.stop_reason is StopReason.COMPLETED
    assert finished.final == "It says 42."
    assert tool_results(model, 1) == ["the answer is 42\n"]
    main = (RunStarted, ModelCalled, ToolStarted, ToolCalled, RunFinished)
    assert [type(e) for e in events if isinstance(e, main)] == [
        RunStarted,
        ModelCalled,
        ToolStarted,
        ToolCalled,
        ModelCalled,
        RunFinished,
    ]
    added = [e.message for e in events if isinstance(e, MessageAdded)]
    assert [m["role"] for m in added] == ["user", "assistant", "tool", "assistant"]
    assert finished.steps == 2 and finished.tool_calls == 1
    assert finished.input_tokens == 20 and finished.output_tokens == 10


def test_only_declared_tools_are_offered(tmp_path: Path) -> None:
    _, model, _ = run(tmp_path, [text("done")])
    offered = [tool["function"]["name"] for tool in model.requests[0][1]]
    assert offered == ["read_file", "list_dir"]


def test_tool_error_goes_back_to_the_model(tmp_path: Path) -> None:
    finished, model, events = run(
        tmp_path, [call("read_file", {"path": "data/missing.txt"}), text("It is missing.")]
    )
    assert finished.stop_reason is StopReason.COMPLETED
    [result] = tool_results(model, 1)
    assert result.startswith("error:") and "does not exist" in result
    [tool_event] = [e for e in events if isinstance(e, ToolCalled)]
    assert tool_event.status == "error"


def test_unknown_tool_is_refused_and_recorded(tmp_path: Path) -> None:
    finished, model, events = run(tmp_path, [call("delete_everything", {}), text("ok")])
    assert finished.stop_reason is StopReason.COMPLETED
    [result] = tool_results(model, 1)
    assert "no tool named 'delete_everything'" in result
    assert "read_file, list_dir" in result
    [tool_event] = [e for e in events if isinstance(e, ToolCalled)]
    assert (tool_event.status, tool_event.decision) == ("refused", "deny")


def test_max_steps_stops_a_model_that_never_stops(tmp_path: Path) -> None:
    finished, model, _ = run(
        tmp_path,
        [call("list_dir", {"path": "data"})],
        extra="budgets:\n  max_steps: 3\n",
        repeat_last=True,
    )
    assert finished.stop_reason is StopReason.MAX_STEPS
    assert len(model.requests) == 3
    assert finished.steps == 3
    assert "max_steps" in finished.message


@pytest.mark.parametrize(
    "path",
    [
        "../secret.txt",
        "data/../../secret.txt",
        "/etc/passwd",
        "data/link/secret.txt",
        "data/file-link",
    ],
)
def test_path_escapes_are_refused(tmp_path: Path, path: str) -> None:
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("TOP SECRET")
    (work / "secret.txt").write_text("TOP SECRET")
    os.symlink(tmp_path / "outside", work / "data" / "link")
    os.symlink(tmp_path / "outside" / "secret.txt", work / "data" / "file-link")
    finished, model, events = run(work, [call("read_file", {"path": path}), text("no")])
    [result] = tool_results(model, 1)
    assert "TOP SECRET" not in result
    assert result.startswith("error:")
    assert "outside the allowed paths" in result or "contains '..'" in result
    assert finished.stop_reason is StopReason.COMPLETED
    [tool_event] = [e for e in events if isinstance(e, ToolCalled)]
    assert tool_event.status == "error"


def test_symlink_inside_the_root_is_allowed(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "real.txt").write_text("inside")
    os.symlink(tmp_path / "data" / "real.txt", tmp_path / "data" / "alias.txt")
    _, model, _ = run(tmp_path, [call("read_file", {"path": "data/alias.txt"}), text("ok")])
    assert tool_results(model, 1) == ["inside"]


def test_malformed_tool_json_goes_back_for_correction(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("A")
    finished, model, _ = run(
        tmp_path,
        [
            call("read_file", '{"path": "data/a.txt"'),
            call("read_file", {"path": "data/a.txt"}),
            text("A"),
        ],
    )
    assert finished.stop_reason is StopReason.COMPLETED
    assert "not valid JSON" in tool_results(model, 1)[0]
    assert tool_results(model, 2)[1] == "A"


def test_arguments_violating_the_schema_are_refused(tmp_path: Path) -> None:
    _, model, events = run(tmp_path, [call("read_file", {"file": "x"}), text("ok")])
    [result] = tool_results(model, 1)
    assert "invalid arguments for read_file" in result and "'path' is a required property" in result
    assert [e.status for e in events if isinstance(e, ToolCalled)] == ["refused"]


def test_several_tool_calls_in_one_reply_each_get_a_result(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("A")
    _, model, _ = run(
        tmp_path,
        [calls(("read_file", {"path": "data/a.txt"}), ("list_dir", {"path": "data"})), text("ok")],
    )
    assert tool_results(model, 1) == ["A", "a.txt (1 bytes)"]
    tool_ids = [m["tool_call_id"] for m in model.requests[1][0] if m["role"] == "tool"]
    call_ids = [
        c["id"]
        for c in next(m for m in model.requests[1][0] if m["role"] == "assistant")["tool_calls"]
    ]
    assert tool_ids == call_ids


class ExplodingModel(ScriptedModel):
    async def complete(self, messages: Any, tools: Any, tool_choice: Any = None) -> Any:
        raise RuntimeError("boom in our own code")


def test_internal_error_ends_the_run_with_a_recorded_traceback(
    tmp_path: Path, store: RunStore
) -> None:
    spec = make_spec(tmp_path)
    finished = asyncio.run(run_agent(compile_agent(spec), ExplodingModel([]), store=store))
    assert finished.stop_reason is StopReason.ERROR
    assert "RuntimeError: boom in our own code" in finished.message
    row = store.run(finished.run_id)
    assert row is not None and row.stop_reason == "error"
    assert row.traceback is not None and "boom in our own code" in row.traceback


def test_exactly_one_stop_reason_is_recorded(tmp_path: Path, store: RunStore) -> None:
    spec = make_spec(tmp_path, "budgets:\n  max_steps: 2\n")
    model = ScriptedModel([call("list_dir", {"path": "data"})], repeat_last=True)
    finished = asyncio.run(run_agent(compile_agent(spec), model, store=store))
    rows = store.db.execute("SELECT stop_reason, status FROM runs").fetchall()
    assert [tuple(r) for r in rows] == [("max_steps", "finished")]
    assert len(store.model_calls(finished.run_id)) == 2
    assert [t["tool"] for t in store.tool_calls(finished.run_id)] == ["list_dir", "list_dir"]


def test_everything_is_recorded_in_the_store(tmp_path: Path, store: RunStore) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "n.txt").write_text("hello")
    spec = make_spec(tmp_path)
    model = ScriptedModel([call("read_file", {"path": "data/n.txt"}), text("It says hello.")])
    finished = asyncio.run(run_agent(compile_agent(spec), model, store=store))
    row = store.run(finished.run_id)
    assert row is not None
    assert (row.agent, row.stop_reason, row.final) == ("tester", "completed", "It says hello.")
    assert (row.steps, row.tool_calls, row.input_tokens, row.output_tokens) == (2, 1, 20, 10)
    [first, second] = store.model_calls(finished.run_id)
    assert json.loads(first["tool_calls_json"])[0]["name"] == "read_file"
    assert second["content"] == "It says hello."
    [tool] = store.tool_calls(finished.run_id)
    assert (tool["tool"], tool["status"], tool["result"], tool["risk"]) == (
        "read_file",
        "ok",
        "hello",
        "low",
    )
    assert json.loads(tool["arguments"]) == {"path": "data/n.txt"}


def test_risk_override_makes_a_call_ask(tmp_path: Path) -> None:
    from runner.spec import load_spec
    from tests.helpers import write_spec

    (tmp_path / "data").mkdir()
    spec = load_spec(
        write_spec(
            tmp_path,
            """
            version: 1
            name: tester
            model: openai/scripted
            goal: list
            tools:
              list_dir: {paths: [data], risk: high}
            unattended: fail
            """,
        )
    )
    model = ScriptedModel([call("list_dir", {"path": "data"}), text("never")])
    finished = asyncio.run(Run(compile_agent(spec), model).execute())
    assert finished.stop_reason is StopReason.APPROVAL_REQUIRED
    assert len(model.requests) == 1

    spec_deny = load_spec(write_spec(tmp_path, spec.path.read_text().replace("fail", "deny")))
    model = ScriptedModel([call("list_dir", {"path": "data"}), text("fine")])
    finished = asyncio.run(Run(compile_agent(spec_deny), model).execute())
    assert finished.stop_reason is StopReason.COMPLETED
    assert "nobody is attached" in tool_results(model, 1)[0]


def test_rules_deny_a_call_by_argument(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "private.txt").write_text("PRIVATE")
    finished, model, _ = run(
        tmp_path,
        [call("read_file", {"path": "data/private.txt"}), text("ok")],
        extra="rules:\n  deny: ['read_file:path=*private*']\n",
    )
    [result] = tool_results(model, 1)
    assert "PRIVATE" not in result and "denies" in result
    assert finished.stop_reason is StopReason.COMPLETED


def test_suggest_records_proposals_and_executes_nothing(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("A")
    finished, model, events = run(
        tmp_path, [call("read_file", {"path": "data/a.txt"})], extra="autonomy: suggest\n"
    )
    assert finished.stop_reason is StopReason.PROPOSED
    assert finished.final is not None and "read_file" in finished.final
    assert len(model.requests) == 1
    assert [e.status for e in events if isinstance(e, ToolCalled)] == ["proposed"]


def test_truncate_says_it_cut() -> None:
    cut = truncate("x" * 10_000, 1000)
    assert len(cut.encode()) <= 1000
    assert "output truncated: 10000 bytes" in cut
    assert truncate("short", 1000) == "short"


def test_inputs_are_typed_and_rendered(tmp_path: Path) -> None:
    from runner.spec import load_spec
    from tests.helpers import write_spec

    spec = load_spec(
        write_spec(
            tmp_path,
            """
            version: 1
            name: typed
            model: openai/scripted
            inputs:
              count: {type: integer, default: 3}
              loud: {type: boolean, default: false}
              tone: {type: enum, values: [dry, warm], default: dry}
            goal: "{{ count * 2 }} {{ loud }} {{ tone }}"
            """,
        )
    )
    agent = compile_agent(spec, {"count": "21", "loud": "yes"})
    assert agent.goal == "42 True dry"
    with pytest.raises(UsageError, match="unknown input 'cuont'.*known inputs: count, loud, tone"):
        compile_agent(spec, {"cuont": "1"})
    with pytest.raises(UsageError, match="input 'count' must be an integer; got 'many'"):
        compile_agent(spec, {"count": "many"})
    with pytest.raises(UsageError, match="must be one of dry, warm"):
        compile_agent(spec, {"tone": "cold"})


@pytest.mark.parametrize("risk", ["low", "medium"])
def test_only_calls_that_may_change_something_are_journaled_before_they_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, risk: str
) -> None:
    """Before any tool runs, the step so far is committed. A medium-risk call also has its
    journal row (status ``running``); a low-risk one, which a resume repeats without asking,
    is written once, when it ends, dated when it started."""
    monkeypatch.setenv("STORE_PROBE_DB", str(tmp_path / "runs.db"))
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent))
    probe = f'  functions:\n    probe: {{function: "tests.store_probe:probe", risk: {risk}}}\n'
    spec = make_spec(tmp_path, probe + "autonomy: autonomous\n")
    store = RunStore(tmp_path / "runs.db")  # the probe reads this SQLite file
    model = ScriptedModel([call("probe", {"note": "n"}), text("done")])
    finished = asyncio.run(run_agent(compile_agent(spec), model, store=store))
    assert finished.stop_reason is StopReason.COMPLETED
    [row] = store.tool_calls(finished.run_id)
    assert (row["tool"], row["status"], row["risk"]) == ("probe", "ok", risk)
    seen = json.loads(row["result"])["seen"]
    assert seen["model_calls"] == 1  # committed before the tool ran
    assert seen["tool_calls"] == ([] if risk == "low" else [["probe", "running"]])
    assert row["created_at"] <= seen["started"]  # the row is dated when the call started


def test_a_low_risk_call_cut_short_leaves_nothing_pending_in_the_store(
    tmp_path: Path, store: RunStore
) -> None:
    """A run interrupted during a low-risk call never records its result: the call has no
    row (a resume runs it again), and the store forgets it when the run ends."""
    store.record(RunStarted("r1", "a", "m", "p", "sha", {}, "goal", "manual"))
    store.record(ToolStarted("r1", 1, "c1", "list_dir", "{}", "allow", "low"))
    store.record(
        RunFinished("r1", StopReason.INTERRUPTED, None, 1, 1, 0, 0, None, 0.1, "interrupted")
    )
    assert store.tool_calls("r1") == []
    assert store._unjournaled == {}
    row = store.run("r1")
    assert row is not None and row.status == "interrupted"
