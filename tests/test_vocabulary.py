"""The field's vocabulary is enums, and a stop reason is fixed when its signal is made.

STYLE.md habit 18: autonomy level, risk, trigger kind, tool-call status, fire outcome and
stop reason are string enums (each member equal to the word the spec, the store and the
JSON use), and issue 17 part 6: a :class:`~runner.errors.RunStop` gets its reason when it
is made, never by assignment afterwards.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from runner.errors import (
    ApprovalRequired,
    BudgetExhausted,
    LoopDetected,
    ModelError,
    OutputInvalid,
    RunStop,
    WaitingApproval,
)
from runner.events import StopReason
from runner.spec import AutonomyLevel, Risk, TriggerKind
from runner.spec.schema import property_schema
from tests.conftest import ROOT

SCHEMA = json.loads((ROOT / "schemas" / "agent.schema.json").read_text(encoding="utf-8"))


def test_the_spec_vocabulary_is_the_schemas() -> None:
    assert list(AutonomyLevel) == property_schema("#", "autonomy")["enum"]
    assert list(Risk) == SCHEMA["$defs"]["risk"]["enum"]
    trigger_keys = SCHEMA["$defs"]["trigger"]["properties"]
    assert [key for key in trigger_keys if key in set(TriggerKind)] == list(TriggerKind)


@pytest.mark.parametrize(
    ("stop", "reason"),
    [
        (ModelError("x"), StopReason.MODEL_ERROR),
        (LoopDetected("x"), StopReason.LOOP_DETECTED),
        (OutputInvalid("x"), StopReason.OUTPUT_INVALID),
        (ApprovalRequired("x"), StopReason.APPROVAL_REQUIRED),
        (WaitingApproval("x"), StopReason.WAITING_APPROVAL),
        (BudgetExhausted(StopReason.MAX_STEPS, 3, 2), StopReason.MAX_STEPS),
        (RunStop("x", StopReason.DENIED), StopReason.DENIED),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, RunStop) else str(value),
)
def test_a_stop_carries_the_reason_it_was_made_with(stop: RunStop, reason: StopReason) -> None:
    assert stop.stop_reason is reason
    with pytest.raises(AttributeError):
        stop.stop_reason = StopReason.COMPLETED  # type: ignore[misc]
    assert stop.stop_reason is reason


def stop_reason_assignments(source: str) -> list[int]:
    """Lines of ``source`` that assign to an attribute named ``stop_reason``."""
    targets: list[ast.expr] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign):
            targets.extend(node.targets)
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets.append(node.target)
    found = []
    for target in targets:
        for part in ast.walk(target):
            if isinstance(part, ast.Attribute) and part.attr == "stop_reason":
                found.append(part.lineno)
    return found


def test_the_check_finds_an_assignment() -> None:
    source = "stop = RunStop('x')\nstop.stop_reason = 'denied'\na.b, c.stop_reason = 1, 2\n"
    assert stop_reason_assignments(source) == [2, 3]


def test_no_code_sets_a_stop_reason_on_an_existing_signal() -> None:
    offenders = {
        str(path.relative_to(ROOT)): lines
        for path in sorted(Path(ROOT / "runner").rglob("*.py"))
        if (lines := stop_reason_assignments(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}, "give the stop reason when the RunStop is made"
