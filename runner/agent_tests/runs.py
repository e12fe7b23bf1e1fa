"""One agent test run: a copied workdir, a scripted model, the real loop, then the expectations.

The model is scripted from the test's replies, or replayed from its cassette
(:class:`runner.models.cassette.ReplayModel`): a request that differs from the recording, or a
run that uses fewer of its calls, is a failure of its own, before the expectations. A
``model: live`` test runs the spec's own model, only when asked (``agentrun test --live``).

Each run gets a temporary copy of its workdir (so agents that write leave the checkout
alone) and a temporary ``AGENTRUN_HOME`` with its own run store; approvals follow the
spec's ``unattended`` unless the test's ``approve``/``deny`` globs say otherwise. Every
expectation that fails becomes a :class:`Failure` with the expected and actual values,
which :mod:`runner.agent_tests.report` shows as a diff.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import AgentrunError
from ..events import RunFinished, ToolCalled
from ..policy import Approval, ApprovalRequest, UnattendedApprover
from .load import AgentTest

if TYPE_CHECKING:
    from ..models.cassette import ReplayModel

#: Folders not copied into a run's workdir: caches and virtual environments.
SKIPPED_FOLDERS = (
    ".venv",
    "venv",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    ".import_linter_cache",
    ".benchmarks",
    "site",
)
#: Folders hard-linked instead of copied: large, and only read by agents.
LINKED_FOLDERS = (".git", ".ci-node", "node_modules")
#: Longest a setup command may take, in seconds.
SETUP_TIMEOUT_S = 60.0
#: Longest one run may take, in seconds, whatever its spec's budgets say.
RUN_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Failure:
    """One expectation that did not hold: what was expected, and what happened."""

    what: str
    expected: Any
    actual: Any


@dataclass
class TestResult:
    """How one test (one repetition) went.

    Attributes:
        outcome: ``passed``, ``failed``, ``skipped`` (what it ``requires`` is missing) or
            ``error`` (the run could not be set up: a bad input, a setup command failed).
        failures: the expectations that did not hold (for ``failed``).
        message: the reason of a skip or an error.
        duration_s: wall time of the test, setup included, in seconds.
    """

    test: AgentTest
    outcome: str
    failures: list[Failure] = field(default_factory=list)
    message: str = ""
    duration_s: float = 0.0


class TestApprover:
    """The test's ``approve``/``deny`` globs; any other "ask" goes to the spec's ``unattended``."""

    name = "test"

    def __init__(self, approve: tuple[str, ...], deny: tuple[str, ...], unattended: str) -> None:
        self.approve = approve
        self.deny = deny
        self.fallback = UnattendedApprover(unattended)

    async def request(self, request: ApprovalRequest) -> Approval:
        """Approve or deny by the globs, else as ``unattended`` would."""
        if any(fnmatch.fnmatchcase(request.tool, glob) for glob in self.deny):
            return Approval(False, "denied by the test")
        if any(fnmatch.fnmatchcase(request.tool, glob) for glob in self.approve):
            return Approval(True, "approved by the test")
        return await self.fallback.request(request)

    async def answer(self, question: Any) -> str:
        """As ``unattended`` would."""
        return await self.fallback.answer(question)


@contextlib.contextmanager
def _environment(changes: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _link(source: str, target: str) -> object:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
    return target


def copy_workdir(source: Path, target: Path) -> Path:
    """``source`` copied to ``target``: caches left out, :data:`LINKED_FOLDERS` hard-linked.

    Raises:
        AgentrunError: ``source`` is not a folder.
    """
    if not source.is_dir():
        raise AgentrunError(f"the workdir {source} is not a folder")

    def ignore(folder: str, names: list[str]) -> list[str]:
        return [n for n in names if n in SKIPPED_FOLDERS or n in LINKED_FOLDERS]

    shutil.copytree(source, target, symlinks=True, ignore=ignore)
    for folder, names, files in os.walk(source):
        here = Path(folder)
        for name in [*names, *files]:
            if name not in LINKED_FOLDERS:
                continue
            found = here / name
            destination = target / found.relative_to(source)
            if not destination.parent.is_dir() or destination.exists():
                continue
            if found.is_dir() and not found.is_symlink():
                shutil.copytree(found, destination, symlinks=True, copy_function=_link)
            else:
                shutil.copy2(found, destination, follow_symlinks=False)
        names[:] = [n for n in names if n not in SKIPPED_FOLDERS and n not in LINKED_FOLDERS]
    return target


def _setup(command: str, workdir: Path, env: dict[str, str]) -> str:
    """Run one setup command; its problem in words, or ``""`` when it succeeded."""
    try:
        done = subprocess.run(
            shlex.split(command),
            cwd=workdir,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=SETUP_TIMEOUT_S,
            check=False,
        )
    except (OSError, ValueError, subprocess.TimeoutExpired) as error:
        return f"setup command {command!r} failed: {error}"
    if done.returncode != 0:
        output = (done.stderr or done.stdout).strip()[-500:]
        return f"setup command {command!r} exited {done.returncode}: {output}"
    return ""


def _missing(test: AgentTest, spec_workdir: Path) -> str:
    for command in test.requires_commands:
        if shutil.which(command) is None:
            return f"needs the command {command!r}"
    for name in test.requires_files:
        if not (spec_workdir / name).exists():
            return f"needs {name} (in {spec_workdir})"
    return ""


def run_test(test: AgentTest, live: bool = False) -> TestResult:
    """Run ``test`` once: load and compile its spec, play its script, check what it expects.

    A ``model: live`` test runs the spec's own model when ``live`` is True (``agentrun test
    --live``) and is ``skipped`` otherwise: a real model costs money or minutes, and its
    answers vary (``--repeat`` gives its pass rate).

    Never raises for a bad spec, input or setup: that is an ``error`` result with the reason.
    """
    started = time.monotonic()
    if test.live and not live:
        return TestResult(test, "skipped", message="a live-model test: run with --live")
    try:
        result = _run(test)
    except AgentrunError as error:
        result = TestResult(test, "error", message=str(error))
    except TimeoutError:
        result = TestResult(test, "error", message=f"the run took longer than {RUN_TIMEOUT_S} s")
    except OSError as error:  # copying the workdir (shutil.Error is one)
        result = TestResult(test, "error", message=f"cannot prepare the run: {error}")
    result.duration_s = time.monotonic() - started
    return result


def _run(test: AgentTest) -> TestResult:
    from ..compiler import compile_agent
    from ..loop import run_agent
    from ..models import Model, price_for
    from ..models.cassette import ReplayModel
    from ..redact import Redactor, secret_variables
    from ..spec import load_spec, replace
    from ..store import SQLiteRunStore
    from ..testing import Scripted, ScriptedModel

    spec = load_spec(test.spec_path)
    missing = _missing(test, spec.workdir)
    if missing:
        return TestResult(test, "skipped", message=missing)
    with tempfile.TemporaryDirectory(prefix="agentrun-test-") as scratch:
        root = Path(scratch)
        workdir = copy_workdir(test.workdir or spec.workdir, root / "workdir")
        env = {**test.env, "AGENTRUN_HOME": str(root / "home")}
        for command in test.setup:
            problem = _setup(command, workdir, env)
            if problem:
                return TestResult(test, "error", message=problem)
        with _environment(env):
            agent = compile_agent(replace(spec, workdir=workdir), test.inputs)
            script = [
                Scripted(
                    content=reply.content,
                    tool_calls=tuple(
                        (name, args if isinstance(args, str) else json.dumps(args))
                        for name, args in reply.tool_calls
                    ),
                )
                for reply in test.replies
            ]
            model: Model | None = ScriptedModel(
                script, name=spec.model.id, pricing=price_for(spec.model.id)
            )
            if test.live:
                model = None  # the spec's own: run_agent makes it, as agentrun run does
            elif test.cassette is not None:
                model = ReplayModel(
                    test.cassette,
                    redact=Redactor(secret_variables(spec)).value,
                    workdir=workdir,
                )
            events: list[Any] = []
            approver = (
                TestApprover(test.approve, test.deny, spec.unattended)
                if test.approve or test.deny
                else None
            )
            (root / "home").mkdir(mode=0o700)
            store = SQLiteRunStore(root / "home" / "runs.db")
            try:
                finished = asyncio.run(
                    asyncio.wait_for(
                        run_agent(
                            agent, model, store=store, sinks=[events.append], approver=approver
                        ),
                        RUN_TIMEOUT_S,
                    )
                )
            finally:
                with contextlib.suppress(Exception):
                    store.close()
        failures = check_expectations(test.expect, finished, events, workdir)
    if isinstance(model, ReplayModel):
        failures[:0] = _replay_failures(model)
    return TestResult(test, "failed" if failures else "passed", failures)


def _replay_failures(model: ReplayModel) -> list[Failure]:
    """A divergence from the cassette, or recorded calls the run never asked for."""
    if model.divergence is not None:
        return [Failure("model requests follow the cassette", "no divergence", model.divergence)]
    if model.remaining:
        recorded = model.calls + model.remaining
        return [Failure(f"model calls (the cassette {model.path} holds)", recorded, model.calls)]
    return []


def _arguments(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _call_record(event: ToolCalled) -> dict[str, Any]:
    return {
        "name": event.tool,
        "arguments": _arguments(event.arguments),
        "decision": event.decision,
        "status": str(event.status),
    }


def _value_matches(expected: Any, actual: Any) -> bool:
    if isinstance(expected, str):
        shown = actual if isinstance(actual, str) else json.dumps(actual)
        return fnmatch.fnmatchcase(shown, expected)
    if isinstance(expected, dict) and isinstance(actual, dict):
        return all(k in actual and _value_matches(v, actual[k]) for k, v in expected.items())
    return bool(expected == actual)


def _call_matches(expected: dict[str, Any], actual: dict[str, Any]) -> bool:
    if not fnmatch.fnmatchcase(actual["name"], expected["name"]):
        return False
    arguments = expected.get("arguments")
    if arguments is not None and not _value_matches(arguments, actual["arguments"]):
        return False
    return all(actual[k] == expected[k] for k in ("decision", "status") if k in expected)


def _in_order(expected: list[dict[str, Any]], actual: list[dict[str, Any]]) -> bool:
    position = 0
    for wanted in expected:
        while position < len(actual) and not _call_matches(wanted, actual[position]):
            position += 1
        if position == len(actual):
            return False
        position += 1
    return True


def _shown_calls(calls: list[dict[str, Any]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{k: call[k] for k in keys if k in call} for call in calls]


def check_expectations(
    expect: dict[str, Any], finished: RunFinished, events: list[Any], workdir: Path
) -> list[Failure]:
    """Every expectation of ``expect`` that the run did not meet, in the order written.

    Args:
        expect: a test's ``expect`` mapping (the schema's ``expect``).
        finished: the run's last event.
        events: every event of the run, in order.
        workdir: the run's (copied) workdir, for ``files``.
    """
    calls = [_call_record(e) for e in events if isinstance(e, ToolCalled)]
    failures: list[Failure] = []
    for key, wanted in expect.items():
        if key == "stop_reason" and str(finished.stop_reason) != wanted:
            actual = str(finished.stop_reason)
            if finished.message:
                actual += f" ({finished.message})"
            failures.append(Failure("stop reason", wanted, actual))
        elif key == "tool_calls" and not _in_order(wanted, calls):
            keys = (
                "name",
                "arguments",
                *(k for k in ("decision", "status") if any(k in w for w in wanted)),
            )
            failures.append(
                Failure("tool calls (in this order)", wanted, _shown_calls(calls, keys))
            )
        elif key == "no_tool_calls":
            made = [
                c["name"] for c in calls if any(fnmatch.fnmatchcase(c["name"], g) for g in wanted)
            ]
            if made:
                failures.append(Failure(f"no calls to {', '.join(wanted)}", [], made))
        elif key == "decisions":
            failures.extend(_decisions(wanted, calls))
        elif key == "answer":
            failures.extend(_answer(wanted, finished))
        elif key == "files":
            failures.extend(_files(wanted, workdir))
        elif key in ("max_steps", "max_tool_calls", "max_cost_usd"):
            actual_value = {
                "max_steps": finished.steps,
                "max_tool_calls": finished.tool_calls,
                "max_cost_usd": finished.cost_usd,
            }[key]
            if actual_value is None or actual_value > wanted:
                noun = key.removeprefix("max_").replace("_", " ")
                failures.append(Failure(f"{noun} at most {wanted}", f"<= {wanted}", actual_value))
    return failures


def _decisions(wanted: dict[str, str], calls: list[dict[str, Any]]) -> list[Failure]:
    failures = []
    for glob, decision in wanted.items():
        matching = [c for c in calls if fnmatch.fnmatchcase(c["name"], glob)]
        actual = [c["decision"] for c in matching]
        if not matching or any(d != decision for d in actual):
            failures.append(
                Failure(f"decision of every {glob} call", [decision] * max(len(actual), 1), actual)
            )
    return failures


def _answer(wanted: dict[str, Any], finished: RunFinished) -> list[Failure]:
    final = finished.final
    failures = []
    if "matches" in wanted and (final is None or not re.search(wanted["matches"], final)):
        failures.append(Failure(f"answer matches /{wanted['matches']}/", wanted["matches"], final))
    if "contains" in wanted and (final is None or wanted["contains"] not in final):
        failures.append(Failure("answer contains", wanted["contains"], final))
    if "schema" in wanted:
        failures.extend(_answer_schema(wanted["schema"], finished))
    return failures


def _answer_schema(schema: dict[str, Any], finished: RunFinished) -> list[Failure]:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    value = finished.result
    if value is None and finished.final is not None:
        try:
            value = json.loads(finished.final)
        except ValueError:
            return [Failure("answer is JSON", "a JSON value", finished.final)]
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        return [Failure("answer schema is a valid JSON Schema", "a valid schema", error.message)]
    errors = [e.message for e in Draft202012Validator(schema).iter_errors(value)]
    return [Failure("answer fits the schema", "no schema errors", errors)] if errors else []


def _files(wanted: dict[str, dict[str, Any]], workdir: Path) -> list[Failure]:
    failures = []
    for name, checks in wanted.items():
        path = workdir / name
        exists = path.is_file()
        if "exists" in checks and exists != checks["exists"]:
            failures.append(Failure(f"{name} exists", checks["exists"], exists))
            continue
        if "contains" not in checks and "matches" not in checks:
            continue
        if not exists:
            failures.append(Failure(f"{name} written", "a file", "no such file"))
            continue
        content = path.read_text(encoding="utf-8", errors="replace")
        if "contains" in checks and checks["contains"] not in content:
            failures.append(Failure(f"{name} contains", checks["contains"], content))
        if "matches" in checks and not re.search(checks["matches"], content):
            failures.append(
                Failure(f"{name} matches /{checks['matches']}/", checks["matches"], content)
            )
    return failures
