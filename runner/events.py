"""What the loop emits and the run store records.

A run is a sequence of events: :class:`RunStarted`, then per step a :class:`ModelCalled`
and zero or more :class:`ToolCalled`, then exactly one :class:`RunFinished` carrying the
run's single :class:`StopReason`. Sinks (the store, the console printer) receive each event
as it happens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class StopReason(StrEnum):
    """Why a run ended. Exactly one per run; each maps to an exit code (see the README)."""

    COMPLETED = "completed"
    """The model answered without asking for a tool (and the answer fits ``output.schema``)."""
    PROPOSED = "proposed"
    """Autonomy ``suggest``: the model's tool calls were recorded and shown, none executed."""
    MAX_STEPS = "max_steps"
    """The next model call would exceed ``budgets.max_steps``."""
    MAX_TOOL_CALLS = "max_tool_calls"
    """The next tool call would exceed ``budgets.max_tool_calls``."""
    MAX_TOKENS = "max_tokens"
    """The next model call could exceed ``budgets.max_tokens``."""
    MAX_COST_USD = "max_cost_usd"
    """The next model call could exceed ``budgets.max_cost_usd``."""
    MAX_DURATION = "max_duration"
    """The run's wall time reached ``budgets.max_duration``."""
    LOOP_DETECTED = "loop_detected"
    """The model kept repeating the same tool calls after a warning."""
    DENIED = "denied"
    """A person or the policy refused, and the run could not go on."""
    APPROVAL_REQUIRED = "approval_required"
    """A call needed an approval, nobody was attached, and ``unattended`` is ``fail``."""
    WAITING_APPROVAL = "waiting_approval"
    """Paused with a pending call (``unattended: queue``); resume after a decision."""
    OUTPUT_INVALID = "output_invalid"
    """The final answer did not satisfy ``output.schema`` after the allowed retries."""
    MODEL_ERROR = "model_error"
    """The model provider failed after retries and fallbacks."""
    ERROR = "error"
    """An internal error; the traceback is in the run store."""
    CANCELLED = "cancelled"
    """Stopped from outside (Ctrl-C, SIGTERM, a replacing run)."""
    INTERRUPTED = "interrupted"
    """The process died mid-run (found later by its stopped heartbeat)."""


BUDGET_STOPS = frozenset(
    {
        StopReason.MAX_STEPS,
        StopReason.MAX_TOOL_CALLS,
        StopReason.MAX_TOKENS,
        StopReason.MAX_COST_USD,
    }
)


@dataclass
class RunStarted:
    """A run began: its id, agent, model, inputs (redacted) and trigger."""

    run_id: str
    agent: str
    model: str
    spec_path: str
    spec_sha256: str
    inputs: dict[str, Any]
    goal: str
    trigger: str = "cli"


@dataclass
class ModelCalled:
    """One model call (one step): tokens, USD cost (None when unknown), seconds, the reply."""

    run_id: str
    step: int
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    duration_s: float
    content: str | None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


@dataclass
class ToolCalled:
    """One tool call: the decision, the arguments, the result sent back, seconds taken.

    ``status`` is ``ok``, ``error`` (the tool failed; the model saw why), ``refused``
    (unknown tool, bad arguments, denied) or ``proposed`` (not executed in ``suggest``).
    """

    run_id: str
    step: int
    call_id: str
    tool: str
    arguments: str
    decision: str
    status: str
    result: str
    duration_s: float
    risk: str = ""
    error: str | None = None


@dataclass
class RunFinished:
    """The run ended: its one stop reason, final answer, totals, and error detail if any."""

    run_id: str
    stop_reason: StopReason
    final: str | None
    steps: int
    tool_calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    duration_s: float
    message: str = ""
    traceback: str | None = None
    result: Any = None


Event = RunStarted | ModelCalled | ToolCalled | RunFinished
