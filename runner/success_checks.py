"""Success checks: after the final answer, did the run do its job (the spec's ``checks:``)?

Once the model gives a final answer (and it satisfies ``output.schema``, when the spec has
one), every check in ``checks`` runs, in order, all of them: a failure does not stop the
others, so the model hears everything there is to fix at once. Four kinds:

- ``command``: a command line, split and matched against ``tools.shell.commands`` exactly
  like a call of the ``shell`` tool and run through the same code
  (:meth:`runner.tools.shell.ShellTool.execute`): no shell unless ``interpreter`` is set,
  the tool's confined working folder, only ``PATH`` and the spec's ``env`` allowlist, stdin
  empty, its own process group killed at the check's ``timeout`` (seconds; shortened to the
  run's remaining ``max_duration``). Exit code 0 passes; a timeout fails.
- ``file``: a path relative to ``workdir``, confined like the file tools
  (:class:`runner.tools.builtin.PathJail`: no ``..``, no absolute path elsewhere, no
  symlink out); it must exist, and with ``matches`` its text must contain a match of that
  Python regular expression (``re.search``).
- ``answer_matches``: ``re.search`` of the expression in the final answer.
- ``answer_schema``: the answer parsed as JSON (bare or in a ```json fence) satisfies the
  JSON Schema (draft 2020-12, :func:`runner.final_answer.check_answer`).

Every check run is a :class:`~runner.events.CheckRan` event (recorded in ``check_runs``).
A failed attempt becomes a user message naming the failed checks with their output; the
model then works on (the budgets still apply) and answers again. After
``max_check_retries`` retries the next failure stops the run with
:class:`~runner.errors.ChecksFailed` (stop reason ``checks_failed``, exit code 7); the
message of that last failure is in the conversation too, so a person who continues the run
(escalation) gives the model the failure to fix. The count of failed attempts comes from
the store on a resume (:attr:`runner.resume.RunState.failed_check_attempts`): a paused or
continued run gets no fresh retries. The retry-with-feedback shape is the one
``output.schema`` uses (:mod:`runner.final_answer`).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import ChecksFailed, SetupError, ToolError
from .events import CheckRan, Event
from .final_answer import check_answer
from .spec import AgentSpec
from .spec.types import CheckSpec

#: Most problems of one ``answer_schema`` check the model is told.
MAX_SCHEMA_PROBLEMS = 5


@dataclass
class CheckResult:
    """One check's verdict: ``output`` is what the model is told; ``duration_s`` seconds."""

    check: CheckSpec
    passed: bool
    output: str
    duration_s: float


@dataclass
class ChecksVerdict:
    """A failed attempt: the message for the model, and the stop when no retry is left."""

    message: dict[str, Any]
    failed: list[CheckResult]
    stop: ChecksFailed | None


class SuccessChecks:
    """Runs a spec's ``checks`` after each final answer and keeps count of failed attempts.

    Args:
        spec: the agent's spec (``checks``, ``tools.shell``, ``workdir``, ``env``,
            ``budgets.max_tool_output``).
        run_id: the run the :class:`~runner.events.CheckRan` events belong to.
        emit: receives every event.
        failed_attempts: attempts that failed before (a resumed run's, from the store).
        remaining_time: seconds left in the run (None: no ``max_duration``); a command's
            timeout is cut to it.
    """

    def __init__(
        self,
        spec: AgentSpec,
        run_id: str,
        emit: Callable[[Event], None],
        failed_attempts: int = 0,
        remaining_time: Callable[[], float | None] = lambda: None,
    ) -> None:
        self.spec = spec
        self.run_id = run_id
        self.emit = emit
        self.failed_attempts = failed_attempts
        self.remaining_time = remaining_time

    async def judge(self, answer: str, step: int, max_retries: int) -> ChecksVerdict | None:
        """Run every check on ``answer``; None when all pass (or the spec has none).

        Args:
            answer: the final answer's text.
            step: the step (model call) that gave it, recorded with each check run.
            max_retries: the spec's ``max_check_retries`` as it stands now (a person's
                grant may have raised it).

        Returns:
            None when every check passed, else the verdict: the user message telling the
            model what failed, and :attr:`ChecksVerdict.stop` set when ``max_retries``
            retries were used already (the caller records the message, then raises it).

        Raises:
            SetupError: a ``command`` check in a spec without the ``shell`` tool (the spec
                checks refuse such a spec; a spec built in code may still have it).
        """
        if not self.spec.checks:
            return None
        attempt = self.failed_attempts + 1
        results = []
        for check in self.spec.checks:
            result = await self.run_check(check, answer)
            results.append(result)
            self.emit(
                CheckRan(
                    run_id=self.run_id,
                    step=step,
                    attempt=attempt,
                    index=check.index,
                    kind=check.kind,
                    name=check.label,
                    passed=result.passed,
                    output=result.output,
                    duration_s=result.duration_s,
                )
            )
        failed = [r for r in results if not r.passed]
        if not failed:
            return None
        retries_used = self.failed_attempts
        self.failed_attempts += 1
        stop = None
        if retries_used >= max_retries:
            names = "; ".join(r.check.label for r in failed)
            stop = ChecksFailed(
                f"the work failed its checks after {retries_used} "
                f"{'retry' if retries_used == 1 else 'retries'} (max_check_retries "
                f"{max_retries}): {names}"
            )
        return ChecksVerdict(failure_message(failed, attempt, len(results)), failed, stop)

    async def run_check(self, check: CheckSpec, answer: str) -> CheckResult:
        """Run one check on ``answer`` (see the module docstring for each kind).

        The output is cut to ``budgets.max_tool_output`` bytes (a command's by the shell
        tool itself, which keeps its beginning and its end).
        """
        started = time.monotonic()
        if check.command is not None:
            passed, output = await self._command(check, check.command)
        elif check.file is not None:
            passed, output = self._file(check.file, check.matches)
        elif check.answer_matches is not None:
            passed, output = _answer_matches(answer, check.answer_matches)
        elif check.answer_schema is not None:
            passed, output = _answer_schema(answer, check.answer_schema)
        else:
            raise SetupError(f"check {check.index + 1} sets no command, file or answer test")
        output = cut(output, self.spec.budgets.max_tool_output)
        return CheckResult(check, passed, output, time.monotonic() - started)

    async def _command(self, check: CheckSpec, line: str) -> tuple[bool, str]:
        from .tools.shell import ShellTool

        shell = self.spec.tools.shell
        if shell is None:
            raise SetupError(
                f"check {check.label!r} runs a command, but the spec has no tools.shell to "
                "take its allowed commands from"
            )
        timeout = check.timeout
        remaining = self.remaining_time()
        if remaining is not None:
            timeout = min(timeout, max(remaining, 0.001))
        tool = ShellTool(
            shell, self.spec.workdir, self.spec.env, timeout, self.spec.budgets.max_tool_output
        )
        try:
            result = await asyncio.to_thread(tool.execute, line, "check")
        except ToolError as error:
            return False, f"error: {error}"
        return result.exit_code == 0, result.text

    def _file(self, path: str, pattern: str | None) -> tuple[bool, str]:
        from .tools.builtin import PathJail

        try:
            real = PathJail(self.spec.workdir, (".",)).resolve(path)
        except ToolError as error:
            return False, f"error: {error}"
        if not real.is_file():
            what = "is not a file" if real.exists() else "does not exist"
            return False, f"file {path!r} {what}"
        if pattern is None:
            return True, f"file {path!r} exists"
        try:
            text = real.read_text(encoding="utf-8", errors="replace")
        except OSError as error:
            return False, f"file {path!r} cannot be read: {error.strerror or error}"
        if re.search(pattern, text, re.MULTILINE):
            return True, f"file {path!r} matches {pattern!r}"
        return False, f"file {path!r} ({len(text)} characters) has no match for {pattern!r}"


def cut(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` UTF-8 bytes (``budgets.max_tool_output``), a note if cut."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    note = f"\n[check output cut: {len(data)} bytes, showing the first part]"
    room = max(limit - len(note.encode("utf-8")), 0)
    return data[:room].decode("utf-8", errors="ignore") + note


def _answer_matches(answer: str, pattern: str) -> tuple[bool, str]:
    if re.search(pattern, answer, re.MULTILINE):
        return True, f"the answer matches {pattern!r}"
    return False, f"the answer has no match for the regular expression {pattern!r}"


def _answer_schema(answer: str, schema: dict[str, Any]) -> tuple[bool, str]:
    _, problems = check_answer(answer, schema)
    if not problems:
        return True, "the answer satisfies the JSON Schema"
    shown = "; ".join(problems[:MAX_SCHEMA_PROBLEMS])
    more = len(problems) - MAX_SCHEMA_PROBLEMS
    return False, (
        "the answer does not satisfy the JSON Schema: "
        + shown
        + (f" (and {more} more)" if more > 0 else "")
    )


def failure_message(failed: list[CheckResult], attempt: int, total: int) -> dict[str, Any]:
    """The user message that tells the model which checks failed, with their output."""
    parts = [
        f"Your work did not pass its checks ({len(failed)} of {total} failed, attempt {attempt}):"
    ]
    for result in failed:
        parts.append(f"\n## Check failed: {result.check.label}\n{result.output}")
    parts.append("\nFix what the checks found (use your tools), then give your final answer again.")
    return {"role": "user", "content": "\n".join(parts)}
