"""What the loop emits and the run store records.

A run is a sequence of events: :class:`RunStarted`, then per step a :class:`ModelCalled`
and, per tool call, a :class:`ToolStarted` (the journal entry, before any side effect) and a
:class:`ToolCalled`; every message added to the conversation is a :class:`MessageAdded`
(the state a resumed run continues from); what a sandbox did is a :class:`ConnectionDecided`
(a connection allowed or refused) or a :class:`LimitHit`; approvals are
:class:`ApprovalRequested` and :class:`ApprovalDecided`, a guard's answer
:class:`GuardDecided`, a question to a person :class:`QuestionAsked` and
:class:`QuestionAnswered`, a success check :class:`CheckRan`; then exactly one
:class:`RunFinished` carrying the run's single :class:`StopReason` (a paused run finishes
with ``waiting_approval`` and later emits :class:`RunResumed`). Sinks (the store, the
console printer) receive each event as it happens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

# The stop reasons are defined with the exception that ends a run with one (the errors
# module sits below this one); they are named from here, with the events that carry them.
from .errors import StopReason as StopReason

if TYPE_CHECKING:
    from .spec import Risk


BUDGET_STOPS = frozenset(
    {
        StopReason.MAX_STEPS,
        StopReason.MAX_TOOL_CALLS,
        StopReason.MAX_TOKENS,
        StopReason.MAX_COST_USD,
    }
)


class ToolCallStatus(StrEnum):
    """Where one tool call stands, as the run store records it (``tool_calls.status``)."""

    RUNNING = "running"
    """Started and not finished: the journal entry written before the tool runs. Found
    after a crash, the call may have partly happened."""
    OK = "ok"
    """The tool ran and returned; the model got its output."""
    ERROR = "error"
    """The tool ran and failed (or timed out); the model was told why."""
    REFUSED = "refused"
    """Never ran: an unknown tool, bad arguments, or denied by a rule or a person."""
    PROPOSED = "proposed"
    """Never ran: autonomy ``suggest`` records calls as proposals."""


#: Statuses of calls that ran (or may have): they count against ``max_tool_calls``.
EXECUTED_STATUSES = frozenset({ToolCallStatus.OK, ToolCallStatus.ERROR, ToolCallStatus.RUNNING})


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
    (unknown tool, bad arguments, denied) or ``proposed`` (not executed in ``suggest``);
    ``risk`` is ``""`` for a call of a tool that does not exist.
    """

    run_id: str
    step: int
    call_id: str
    tool: str
    arguments: str
    decision: str
    status: ToolCallStatus
    result: str
    duration_s: float
    risk: Risk | Literal[""] = ""
    error: str | None = None


@dataclass
class MessageAdded:
    """A message appended to the conversation (``seq`` from 0): the run's resumable state."""

    run_id: str
    seq: int
    message: dict[str, Any]


@dataclass
class ToolStarted:
    """A tool call is about to execute: the journal entry written before any side effect."""

    run_id: str
    step: int
    call_id: str
    tool: str
    arguments: str
    decision: str
    risk: Risk | Literal[""] = ""


@dataclass
class ApprovalRequested:
    """A call waits for a person; ``arguments_sha256`` binds the approval to these arguments.

    ``note`` says why it asks (for example that an interrupted call may have partly happened).
    """

    run_id: str
    call_id: str
    tool: str
    arguments: str
    arguments_sha256: str
    risk: Risk
    reason: str
    note: str = ""


@dataclass
class ApprovalDecided:
    """A person (or the ``unattended`` policy) approved or denied a call."""

    run_id: str
    call_id: str
    approved: bool
    reason: str = ""
    by: str = "terminal"


@dataclass
class CheckRan:
    """One success check run after a final answer (``attempt`` from 1; seconds taken).

    ``kind`` is ``command``, ``file``, ``answer_matches`` or ``answer_schema``; ``output`` is
    what the model is told when it failed (a command's output, the mismatch), cut to size.
    """

    run_id: str
    step: int
    attempt: int
    index: int
    kind: str
    name: str
    passed: bool
    output: str
    duration_s: float


@dataclass
class GuardDecided:
    """A guard's answer for one tool call: ``allow``, ``ask`` or ``deny``, with its reason.

    ``failed`` says the guard crashed, timed out or answered garbage (which counts as ask).
    """

    run_id: str
    call_id: str
    tool: str
    guard: str
    decision: str
    reason: str
    duration_s: float
    failed: bool = False


@dataclass
class QuestionAsked:
    """The model asked a person (``ask_human``); ``choices`` empty means free text.

    ``expires_at`` is when the wait ends with ``answer_timeout`` (UTC ISO-8601) or None.
    """

    run_id: str
    call_id: str
    question: str
    context: str = ""
    choices: list[str] = field(default_factory=list)
    expires_at: str | None = None


@dataclass
class QuestionAnswered:
    """A person (or the ``unattended`` rule) answered a question; ``by`` says who."""

    run_id: str
    call_id: str
    answer: str
    by: str = "terminal"


@dataclass
class Heartbeat:
    """The run is alive; ``active_s`` is its run time so far, waits for approval excluded."""

    run_id: str
    active_s: float


@dataclass
class RunNotice:
    """Something the run's record should keep that is not a step (a skipped MCP tool)."""

    run_id: str
    agent: str
    message: str
    level: str = "warning"


@dataclass
class ConnectionDecided:
    """A network connection the sandbox's egress proxy (or ``http_request``) allowed or refused.

    ``source`` names what asked: ``shell``, ``check``, ``guard``, ``mcp:SERVER`` or
    ``http_request``; ``call_id`` the tool call it happened in, when one did. ``host`` and
    ``port`` are as asked; ``address`` the IP address resolved and connected to (None when
    refused before resolving); ``reason`` says why it was refused, or is empty.
    """

    run_id: str
    source: str
    call_id: str | None
    host: str
    port: int
    allowed: bool
    address: str | None = None
    reason: str = ""


@dataclass
class LimitHit:
    """A sandboxed process went over one of the sandbox's resource limits and was stopped.

    ``limit`` is ``cpu_time``, ``memory``, ``processes`` or ``file_size`` (the keys of the
    spec's ``sandbox.limits``); ``detail`` says what happened, in words.
    """

    run_id: str
    source: str
    call_id: str | None
    limit: str
    detail: str


@dataclass
class RunResumed:
    """A paused or interrupted run continues in this process."""

    run_id: str


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
    escalated_from: StopReason | None = None
    """For stop reason ``escalated``: the stop reason in ``escalate_on`` that escalated it."""


Event = (
    RunStarted
    | ModelCalled
    | ToolStarted
    | ToolCalled
    | MessageAdded
    | ApprovalRequested
    | ApprovalDecided
    | CheckRan
    | GuardDecided
    | QuestionAsked
    | QuestionAnswered
    | Heartbeat
    | RunResumed
    | RunNotice
    | ConnectionDecided
    | LimitHit
    | RunFinished
)
