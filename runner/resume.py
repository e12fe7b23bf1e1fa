"""Resume: where a paused, interrupted or cancelled run stopped, rebuilt from the run store.

A run that waits for approval, whose process died, or that was cancelled continues from
its record alone: the conversation (with the sealed, unredacted messages put back), the
budget usage so far, the journal of tool calls that started, and the decisions and answers
recorded while it was paused. :func:`restore_state` builds that :class:`RunState`;
:class:`runner.loop.Run` continues from it, first with :func:`pending_calls`.

Two rules make a resume safe (docs/security.md): a call that completed is never run again
(its recorded result is reused), and a medium- or high-risk call found ``running`` may have
partly happened, so a person is asked again (:data:`IN_FLIGHT_NOTE`), whatever was decided
before it started.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .budgets import Usage as BudgetUsage
from .escalation import loop_reset_at
from .events import EXECUTED_STATUSES
from .models import ToolCallRequest
from .store import ApprovalRow, QuestionRow, RunStore, ToolCallRow


@dataclass
class RunState:
    """Where a paused or interrupted run stopped, rebuilt from the run store.

    Attributes:
        messages: the conversation as the model saw it: the recorded (redacted) messages
            with the sealed, unredacted form put back where redaction changed one.
        step: the last step (model call) made.
        usage: budget usage so far.
        active_s: run time so far in seconds (waits for approval excluded).
        journal: call id → ``{"status", "result", "risk", "decision"}`` of calls that started.
        approvals: call id → the newest approval row (``status``, ``arguments_sha256``, ...).
        signatures: executed calls, for loop detection (only those after a person last
            continued the run from a ``loop_detected`` escalation).
        failed_check_attempts: final answers that failed the spec's ``checks`` so far (each
            used one of ``max_check_retries``; :mod:`runner.success_checks`).
    """

    messages: list[dict[str, Any]]
    step: int
    usage: BudgetUsage
    active_s: float
    journal: dict[str, ToolCallRow] = field(default_factory=dict)
    approvals: dict[str, ApprovalRow] = field(default_factory=dict)
    signatures: list[str] = field(default_factory=list)
    questions: dict[str, QuestionRow] = field(default_factory=dict)
    failed_check_attempts: int = 0


#: Why a call that was running when its run stopped is asked for again.
IN_FLIGHT_NOTE = "this call was running when the run was interrupted: it may have partly happened"


def restore_state(store: RunStore, run_id: str) -> RunState:
    """Rebuild where run ``run_id`` stopped from the run store (see :class:`RunState`).

    Usage is summed from the recorded model calls and executed tool calls, so a resumed
    run continues with its budgets exactly as they were. The conversation is the recorded
    one with the sealed (unredacted) messages put back: pending calls resume with exactly
    the arguments the model sent.

    Raises:
        StoreError: a sealed message cannot be opened (its key is missing or was replaced).
    """
    model_calls = store.model_calls(run_id)
    tool_rows = store.tool_calls(run_id)
    executed = [t for t in tool_rows if t["status"] in EXECUTED_STATUSES]
    usage = BudgetUsage(
        steps=len(model_calls),
        tool_calls=len(executed),
        input_tokens=sum(c["input_tokens"] for c in model_calls),
        output_tokens=sum(c["output_tokens"] for c in model_calls),
        cost_usd=sum(c["cost_usd"] or 0.0 for c in model_calls),
        cost_known=all(c["cost_usd"] is not None for c in model_calls),
    )
    journal = {row["call_id"]: row for row in tool_rows}  # the newest row of each call
    approvals = {row["call_id"]: row for row in store.approvals(run_id, status=None)}
    signatures = []
    # A person who continued a loop_detected escalation let the repeats before it go.
    reset_at = loop_reset_at(store, run_id)
    for row in executed:
        if reset_at is not None and row["created_at"] <= reset_at:
            continue
        try:
            canonical = json.dumps(json.loads(row["arguments"] or "{}"), sort_keys=True)
        except json.JSONDecodeError:
            canonical = row["arguments"]
        signatures.append(f"{row['tool']} {canonical}")
    messages = store.messages(run_id)
    for seq, message in store.sealed_messages(run_id).items():
        if seq < len(messages):
            messages[seq] = message
    return RunState(
        messages=messages,
        step=max((c["step"] for c in model_calls), default=0),
        usage=usage,
        active_s=store.active_seconds(run_id),
        journal=journal,
        approvals=approvals,
        signatures=signatures,
        questions={row["call_id"]: row for row in store.questions(run_id, status=None)},
        failed_check_attempts=len(
            {row["attempt"] for row in store.check_runs(run_id) if not row["passed"]}
        ),
    )


def pending_calls(state: RunState) -> tuple[list[ToolCallRequest], str]:
    """Tool calls of the last assistant message that have no result yet, and its text.

    A paused run stopped among one reply's tool calls: these are the ones still to decide
    (or, for a call found running, to decide again).
    """
    answered = {m.get("tool_call_id") for m in state.messages if m.get("role") == "tool"}
    for message in reversed(state.messages):
        if message.get("role") == "assistant":
            calls = [
                ToolCallRequest(
                    c["id"], c["function"]["name"], c["function"].get("arguments") or ""
                )
                for c in message.get("tool_calls") or []
            ]
            pending = [c for c in calls if c.id not in answered]
            return pending, str(message.get("content") or "")
        if message.get("role") == "user" and state.step == 0:
            break
    return [], ""
