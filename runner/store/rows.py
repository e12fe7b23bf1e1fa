"""What the run store gives back: one frozen dataclass per kind of row.

The fields are the columns of the tables :mod:`runner.store.migrations` creates (see
``docs/run-store.md``); timestamps are UTC, as ISO-8601 text where a row mirrors a table
column by column (:class:`RunRow`) and as aware :class:`~datetime.datetime` in the rows
added for the daemon. The rows of a run's calls, approvals and notices are typed
dictionaries (:class:`ToolCallRow` and the others): they were plain dictionaries before the
interface was drawn, and callers and tests index them by column name.

Columns that hold a word of the field's vocabulary come back as its enum (a
:class:`~enum.StrEnum`, equal to the word as stored): a run's :class:`StopReason`, a tool
call's :class:`ToolCallStatus` and :class:`~runner.spec.Risk`, a fire's
:class:`FireOutcome`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, TypedDict

from ..events import StopReason, ToolCallStatus
from ..spec import Risk, TriggerKind

#: Stop reasons after which ``agentrun resume`` may continue a run.
RESUMABLE_STOPS = frozenset(
    {
        StopReason.WAITING_APPROVAL,
        StopReason.WAITING_INPUT,
        StopReason.ESCALATED,
        StopReason.INTERRUPTED,
        StopReason.CANCELLED,
    }
)


class FireOutcome(StrEnum):
    """What became of one trigger fire of the daemon (``fires.outcome``, ``docs/run-store.md``).

    A fire's row is written with the outcome known when it fires, and changed as its run
    is started, queued or cancelled.
    """

    STARTED = "started"
    """Its run was handed to a worker."""
    QUEUED = "queued"
    """Its run waits for the agent's active run (concurrency ``queue``)."""
    SKIPPED = "skipped"
    """Not run: a run of the agent was active or waiting (concurrency ``forbid`` or ``queue``)."""
    MISSED = "missed"
    """A cron slot that passed while the daemon was down, and catch-up did not run."""
    CANCELLED = "cancelled"
    """Its run was cancelled before or while it ran (a replacing run, a stop)."""
    FAILED = "failed"
    """Its run could not be started (no worker took it, or it died before recording)."""
    DUPLICATE = "duplicate"
    """Never recorded: its slot or idempotency key was recorded before (what ``fire`` and
    the control API answer; the first fire's row is the one kept)."""


@dataclass(frozen=True)
class RunRow:
    """One run as stored (see ``runs`` in :mod:`runner.store.migrations`)."""

    id: str
    agent: str
    status: str
    stop_reason: StopReason | None
    model: str
    trigger: str
    goal: str
    final: str | None
    message: str | None
    steps: int
    tool_calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    duration_s: float | None
    started_at: str
    ended_at: str | None
    traceback: str | None
    inputs_json: str
    result_json: str | None
    spec_path: str
    spec_sha256: str
    pid: int | None
    hostname: str | None = None
    escalated_from: str | None = None
    """For an ``escalated`` run: the stop reason in ``escalate_on`` that escalated it."""

    @property
    def resumable(self) -> bool:
        """Whether ``agentrun resume`` may continue this run."""
        return self.status != "running" and (self.stop_reason or self.status) in RESUMABLE_STOPS


@dataclass(frozen=True)
class FireRow:
    """One trigger fire of the daemon, whatever became of it (a row of ``fires``).

    Attributes:
        agent: the agent's name.
        trigger: the trigger's kind (``cron``, ``watch``, ``manual``, ``webhook``).
        trigger_index: the trigger's position in the spec's ``triggers`` list.
        run_id: the run the fire starts (or would have started).
        outcome: what became of it, a :class:`FireOutcome` value.
        reason: why, in words (empty when nothing needs saying).
        slot: the cron slot it fills, or None for other triggers; a slot is recorded once.
        idempotency_key: a manual trigger's key or a webhook's delivery id; recorded once
            per agent.
        inputs: the run's inputs.
        created_at: when the fire was recorded.
    """

    agent: str
    trigger: TriggerKind
    trigger_index: int
    run_id: str
    outcome: FireOutcome
    reason: str = ""
    slot: datetime | None = None
    idempotency_key: str | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None


@dataclass(frozen=True)
class ToolCallTiming:
    """When one tool call of an agent's run ran, and on what (for the daemon's file watching).

    Attributes:
        run_id: the run that made the call.
        tool: the tool's name.
        arguments: the call's arguments as recorded (JSON text, redacted).
        started_at: when the call started (its row's ``created_at``).
        duration_s: how long it ran, in seconds (0 while it runs).
    """

    run_id: str
    tool: str
    arguments: str
    started_at: datetime
    duration_s: float


class ModelCallRow(TypedDict):
    """One model call of a run (``model_calls``); ``tool_calls_json`` is the calls asked for."""

    id: int
    run_id: str
    step: int
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    duration_s: float
    content: str | None
    tool_calls_json: str
    error: str | None
    created_at: str


class ToolCallRow(TypedDict):
    """One tool call of a run (``tool_calls``): the journal entry, then its outcome."""

    id: int
    run_id: str
    step: int
    call_id: str
    tool: str
    risk: Risk | Literal[""]
    arguments: str
    decision: str
    status: ToolCallStatus
    result: str
    error: str | None
    duration_s: float
    created_at: str


class ApprovalRow(TypedDict):
    """One approval request of a run (``approvals``) and, once made, its decision."""

    id: int
    run_id: str
    call_id: str
    tool: str
    arguments: str
    arguments_sha256: str
    risk: Risk | Literal[""]  # "" on a decision recorded without a request
    reason: str
    note: str
    status: str
    decision_reason: str | None
    decided_by: str | None
    created_at: str
    decided_at: str | None


class NoticeRow(TypedDict):
    """A warning of a run or an error of the daemon (``notices``)."""

    id: int
    at: str
    level: str
    agent: str | None
    run_id: str | None
    message: str


class SandboxEventRow(TypedDict):
    """What a run's sandbox did (``sandbox_events``): a connection, or a limit hit.

    ``kind`` is ``connection`` (``allowed`` 1 or 0, ``host``, ``port``, ``address``, and
    ``detail`` the reason of a refusal) or ``limit`` (``limit_name`` the key of the spec's
    ``sandbox.limits``, ``detail`` what happened).
    """

    id: int
    run_id: str
    at: str
    source: str
    call_id: str | None
    kind: str
    allowed: int | None
    host: str | None
    port: int | None
    address: str | None
    limit_name: str | None
    detail: str


class StatsRow(TypedDict):
    """Runs of one agent on one UTC day that ended with one stop reason, and their usage.

    ``cost_usd`` sums the runs whose cost is known (``priced_runs`` of them), in USD.
    """

    agent: str
    day: str
    runs: int
    stop_reason: str
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    priced_runs: int


class CheckRunRow(TypedDict):
    """One success check run after a final answer (``check_runs``); seconds taken."""

    id: int
    run_id: str
    step: int
    attempt: int
    check_index: int
    kind: str
    name: str
    passed: bool
    output: str
    duration_s: float
    created_at: str


class GuardDecisionRow(TypedDict):
    """A guard's answer for one tool call (``guard_decisions``); ``failed``: counted as ask."""

    id: int
    run_id: str
    call_id: str
    tool: str
    guard: str
    decision: str
    reason: str
    failed: bool
    duration_s: float
    created_at: str


class QuestionRow(TypedDict):
    """A question to a person (``questions``): ``waiting``, ``answered``, ``timed_out``..."""

    run_id: str
    call_id: str
    question: str
    context: str
    choices: list[str]
    status: str
    answer: str | None
    answered_by: str | None
    created_at: str
    answered_at: str | None
    expires_at: str | None


class EscalationRow(TypedDict):
    """An escalated run (``escalations``): ``open``, then ``continued`` or ``closed``."""

    id: int
    run_id: str
    stop_reason: str
    message: str
    status: str
    decided_by: str | None
    decision_reason: str | None
    created_at: str
    decided_at: str | None


class GrantRow(TypedDict):
    """More budget a person granted a run (``budget_grants``); ``amount`` in the limit's unit."""

    id: int
    run_id: str
    budget: str
    amount: float
    granted_by: str
    reason: str
    created_at: str


class NotificationRow(TypedDict):
    """One notification to one channel (``notifications``): ``pending``, ``sent``, ``failed``.

    ``channel`` is the channel's URL with its secrets masked; ``attempts`` counts sends tried;
    ``error`` is the last failure's text (secrets masked), None once sent.
    """

    id: int
    run_id: str
    event: str
    event_key: str
    channel: str
    status: str
    attempts: int
    error: str | None
    created_at: str
    sent_at: str | None


class DecisionLinkRow(TypedDict):
    """A signed decision link sent in a notification (``decision_links``), by its nonce.

    ``action`` is ``approve``, ``deny`` or ``answer``; ``used_at`` is set once, by its one use.
    """

    nonce: str
    run_id: str
    call_id: str
    action: str
    arguments_sha256: str
    created_at: str
    expires_at: str
    used_at: str | None
    used_by: str | None
    outcome: str | None
