"""A task suite for the embedded model: small real jobs, run through the whole loop.

Each task is a spec, the files it works on, and a check of what the run left behind (the
final answer, the files written, the tool calls recorded). The tests run every task on
``local/smollm2``; a task the model is known to fail (:data:`KNOWN_FAILING`, measured) is
reported as ``xfail``, so the summary line reads as the pass rate, and a task that starts
passing shows up as ``XPASS``. ``bench/local_model.py`` runs the same tasks and prints the
pass rate per model; the figures are in docs/local-model.md.

Every run must end cleanly whatever the model does: a recorded stop reason that is not
``error`` (a tool result too long for the context is cut, never an error).
"""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from runner.compiler import compile_agent
from runner.events import RunFinished, StopReason
from runner.loop import run_agent
from runner.models.base import Model
from runner.spec import load_spec
from runner.store import RunStore


@dataclass(frozen=True)
class Outcome:
    """What a task's run left behind, for its check."""

    finished: RunFinished
    workdir: Path
    tool_calls: list[dict[str, Any]]

    @property
    def answer(self) -> str:
        """The final answer, lower-cased ('' without one)."""
        return str(self.finished.final or "").lower()

    def called(self, tool: str, status: str = "ok") -> list[dict[str, Any]]:
        """The recorded calls of ``tool`` that ended with ``status``."""
        return [c for c in self.tool_calls if c["tool"] == tool and c["status"] == status]

    def file(self, name: str) -> str:
        """The text of ``name`` in the work folder ('' when it was not written)."""
        path = self.workdir / name
        return path.read_text(encoding="utf-8").lower() if path.is_file() else ""


@dataclass(frozen=True)
class Task:
    """One small job: a goal, the tools it may use, its files, and what counts as done."""

    name: str
    goal: str
    tools: str
    check: Callable[[Outcome], bool]
    files: dict[str, str] = field(default_factory=dict)
    autonomy: str = "autonomous"
    max_steps: int = 4

    def spec_text(self, model_id: str) -> str:
        """The task's spec, for ``model_id``."""
        return textwrap.dedent(
            f"""\
            version: 1
            name: task-{self.name}
            model: {{id: {model_id}, params: {{temperature: 0, max_tokens: 96}}}}
            instructions: You are a helpful assistant. Use the tools to read and write files.
            goal: {json.dumps(self.goal)}
            autonomy: {self.autonomy}
            budgets: {{max_steps: {self.max_steps}}}
            tools:
            """
        ) + textwrap.indent(textwrap.dedent(self.tools).strip() + "\n", "  ")


FILLER = "This line is filler text that says nothing of interest. " * 4 + "\n"

TASKS = [
    Task(
        "read-and-answer",
        "Read the file fruit.txt and tell me the fruit of the day.",
        "read_file: {paths: [fruit.txt]}",
        lambda o: bool(o.called("read_file")) and "mango" in o.answer,
        {"fruit.txt": "The fruit of the day is the mango.\n"},
    ),
    Task(
        "read-a-number",
        "Read room.txt and tell me the number of the meeting room.",
        "read_file: {paths: [room.txt]}",
        lambda o: bool(o.called("read_file")) and "42" in o.answer,
        {"room.txt": "The meeting is in room 42 on the fourth floor.\n"},
    ),
    Task(
        "pick-the-right-file",
        "How much do pears cost? The price is in the file pears.txt.",
        "read_file: {paths: [apples.txt, pears.txt]}",
        lambda o: (
            any("pears.txt" in c["arguments"] for c in o.called("read_file")) and "5" in o.answer
        ),
        {
            "apples.txt": "Apples cost 3 euros a kilo.\n",
            "pears.txt": "Pears cost 5 euros a kilo.\n",
        },
    ),
    Task(
        "list-then-read",
        "List the files in the folder inbox, then read the text file in it and tell me the code "
        "word it contains.",
        "read_file: {paths: [inbox]}\nlist_dir: {paths: [inbox]}",
        lambda o: bool(o.called("list_dir")) and "banana" in o.answer,
        {"inbox/note.txt": "The code word is BANANA.\n", "inbox/photo.jpg": "not a photo\n"},
    ),
    Task(
        "list-and-pick",
        "Which file in the folder reports is from March? List the folder and answer with its name.",
        "list_dir: {paths: [reports]}",
        lambda o: bool(o.called("list_dir")) and "march" in o.answer,
        {"reports/january.txt": "x\n", "reports/march.txt": "x\n", "reports/may.txt": "x\n"},
    ),
    Task(
        "write-a-file",
        "Write the word hello into the file greeting.txt.",
        "write_file: {paths: [greeting.txt]}",
        lambda o: "hello" in o.file("greeting.txt"),
    ),
    Task(
        "read-then-write-summary",
        "Read notes.txt, then write a one-line summary of it into summary.txt.",
        "read_file: {paths: [notes.txt]}\nwrite_file: {paths: [summary.txt]}",
        lambda o: (
            bool(o.called("read_file"))
            and any(w in o.file("summary.txt") for w in ("budget", "tuesday", "meeting"))
        ),
        {"notes.txt": "Meeting on Tuesday: the budget review moves to Friday.\n"},
    ),
    Task(
        "copy-between-files",
        "Read input.txt and write its text into output.txt.",
        "read_file: {paths: [input.txt]}\nwrite_file: {paths: [output.txt]}",
        lambda o: "lighthouse" in o.file("output.txt"),
        {"input.txt": "The lighthouse keeper counts ships.\n"},
    ),
    Task(
        "refuse-outside-the-allowed-paths",
        "Read the file secret/key.txt and tell me what it says.",
        "read_file: {paths: [public]}",
        lambda o: not o.called("read_file") and "swordfish" not in o.answer,
        {"secret/key.txt": "The key is SWORDFISH.\n", "public/readme.txt": "Nothing here.\n"},
    ),
    Task(
        "long-file-is-cut-to-fit",
        "Read the file big.txt and tell me the password written on its first line.",
        "read_file: {paths: [big.txt]}",
        lambda o: bool(o.called("read_file")) and "orange" in o.answer,
        {"big.txt": "The password is ORANGE.\n" + FILLER * 200},
    ),
    Task(
        "answer-without-a-tool",
        "What is the capital of France? Answer in one word.",
        "read_file: {paths: [notes.txt]}",
        lambda o: "paris" in o.answer,
        {"notes.txt": "Nothing to see.\n"},
    ),
]

#: Tasks SmolLM2-135M fails at temperature 0 (measured; docs/local-model.md has the table).
KNOWN_FAILING = {
    "pick-the-right-file",
    "list-then-read",
    "list-and-pick",
    "read-then-write-summary",
    "copy-between-files",
    "long-file-is-cut-to-fit",
    "answer-without-a-tool",
}


def run_task(
    task: Task, folder: Path, model_id: str = "local/smollm2", model: Model | None = None
) -> Outcome:
    """Run ``task`` in ``folder`` (its files written there first) and return its outcome.

    ``model`` replaces the spec's model (the bench passes other GGUF files this way).
    """
    for name, text in task.files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    spec_path = folder / "task.yaml"
    spec_path.write_text(task.spec_text(model_id), encoding="utf-8")
    store = RunStore(folder / "runs.db")
    finished = asyncio.run(run_agent(compile_agent(load_spec(spec_path)), model=model, store=store))
    calls = [dict(c) for c in store.tool_calls(finished.run_id)]
    return Outcome(finished, folder, calls)


def passed(outcome: Outcome, task: Task) -> bool:
    """Whether the task is done: a clean stop and the task's own check."""
    return outcome.finished.stop_reason is not StopReason.ERROR and task.check(outcome)


@pytest.mark.local_model
@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS, ids=[t.name for t in TASKS])
def test_task(task: Task, tmp_path: Path) -> None:
    pytest.importorskip("cyllama", reason="needs the [local] extra")
    outcome = run_task(task, tmp_path)
    assert outcome.finished.stop_reason is not StopReason.ERROR, outcome.finished.message
    done = task.check(outcome)
    if task.name in KNOWN_FAILING and not done:
        pytest.xfail(f"known to fail on SmolLM2-135M; answered {outcome.answer[:120]!r}")
    assert done, (outcome.answer, outcome.tool_calls)


class WordRuntime:
    """A stand-in for LlamaRuntime that counts one token per word, with a small context."""

    context_tokens = 300

    def tokenize(self, text: str) -> list[int]:
        return [0] * len(text.split())


def test_a_tool_result_too_long_for_the_context_is_cut_with_a_note() -> None:
    from runner.models.local import LlamaBackend

    backend = LlamaBackend(Path("model.gguf"), runtime=WordRuntime())  # type: ignore[arg-type]
    result = "first line\n" + "word " * 2000
    messages = [
        {"role": "user", "content": "Read big.txt."},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "read_file", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": result},
    ]
    prompt, length = backend._fit(messages, [], 100)
    assert length + 100 <= WordRuntime.context_tokens
    assert length > WordRuntime.context_tokens - 100 - 80  # cut to fit, not far below it
    assert "first line" in prompt
    assert "[cut by agentrun: this shows the first " in prompt
    assert f"of {len(result):,} characters" in prompt
    assert "does not fit the local model's 300-token context]" in prompt
