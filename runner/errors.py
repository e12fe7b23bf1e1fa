"""The exception tree of agentrun.

Library code raises; only ``runner.cli`` prints, and it maps each family to an exit code
(the table is in the README)::

    AgentrunError                     base of everything agentrun raises on purpose
    ├── UsageError                    a bad flag or ``--input`` value          exit 2
    ├── SpecError                     the spec author's mistake, located       exit 2
    ├── SetupError                    the machine lacks something (an extra,
    │                                 a key variable); says how to fix it      exit 1
    ├── StoreError                    the run store cannot be opened/migrated  exit 1
    ├── ToolError                     a tool call failed; the loop sends the
    │   │                             message back to the model as the result
    │   ├── ToolArgumentError         arguments do not match the tool's schema
    │   └── PathNotAllowed            a path outside the tool's declared roots
    └── RunStop                       signals that end a run with a stop reason
        ├── BudgetExhausted           a limit would be crossed (names it)
        ├── ModelError                the provider failed after retries
        ├── LoopDetected              the model kept repeating the same calls
        ├── OutputInvalid             the final answer failed ``output.schema``
        ├── ApprovalRequired          a call must be approved, nobody is there
        ├── WaitingApproval           a call waits for a decision: the run pauses
        ├── WaitingInput              a question waits for a person: the run pauses
        ├── AnswerTimeout             a question had no answer in time
        └── ChecksFailed              the work failed its checks after the retries

The first families are the author's or the machine's mistakes: they are raised before a
run starts. ``ToolError`` is a signal the loop handles: the model caused it and may
correct itself. ``RunStop`` ends a run gracefully with a recorded :class:`StopReason`,
given when the signal is made and read-only after; anything else raised inside a run is an
internal error, recorded with its traceback (stop reason ``error``). The three-family split
follows pydantic-ai's exceptions module.

:class:`StopReason` is defined here, with the signal that carries it, because this module
is the bottom layer; :mod:`runner.events` names it for the events and their readers.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import ClassVar


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
    WAITING_INPUT = "waiting_input"
    """Paused on a question to a person (``ask_human``); resumes once it is answered."""
    ANSWER_TIMEOUT = "answer_timeout"
    """A question to a person (``ask_human``) had no answer within its ``answer_timeout``."""
    CHECKS_FAILED = "checks_failed"
    """The final answer failed the spec's ``checks`` after ``max_check_retries`` retries."""
    ESCALATED = "escalated"
    """Stopped for a reason in ``escalate_on``: waits for a person to close or continue it."""
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


class AgentrunError(Exception):
    """Base class of every error agentrun raises on purpose."""


class UsageError(AgentrunError):
    """A bad command-line flag or ``--input`` value (exit code 2)."""


class SetupError(AgentrunError):
    """The machine lacks something a spec needs, such as the ``[local]`` extra (exit 1)."""


class StoreError(AgentrunError):
    """The run store cannot be opened, migrated or queried (exit 1)."""


@dataclass(frozen=True)
class Diagnostic:
    """One located problem in a spec file.

    Attributes:
        path: the spec file as the user named it.
        line: 1-based line, or 0 when the problem concerns the whole file.
        column: 1-based column, or 0 when unknown.
        message: what is wrong, the offending value, and what was expected.
        hint: what to do about it, or ``""``.
        severity: ``"error"`` or ``"warning"``; warnings do not make a spec invalid.
        source_line: the text of ``line`` (without newline), for the caret display.
    """

    path: str
    line: int
    column: int
    message: str
    hint: str = ""
    severity: str = "error"
    source_line: str = ""

    def location(self) -> str:
        """``path:line:column`` (or just ``path`` when the line is unknown)."""
        if self.line <= 0:
            return self.path
        return f"{self.path}:{self.line}:{max(self.column, 1)}"

    def headline(self) -> str:
        """The one-line form: ``agents/x.yaml:12:5: unknown key 'x' ...; hint``."""
        prefix = "warning: " if self.severity == "warning" else ""
        text = f"{self.location()}: {prefix}{self.message}"
        if self.hint:
            text += f"; {self.hint}"
        return text

    def render(self) -> str:
        """The compiler-style form: the headline, the source line, and a caret under the column."""
        text = self.headline()
        if self.line > 0 and self.source_line:
            gutter = f"{self.line:>5} | "
            caret_pad = " " * (len(gutter) - 2) + "| " + " " * (max(self.column, 1) - 1)
            text += f"\n{gutter}{self.source_line.expandtabs(1)}\n{caret_pad}^"
        return text

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready form for ``agentrun validate --format json``."""
        return {
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "severity": self.severity,
            "message": self.message,
            "hint": self.hint,
        }


class SpecError(AgentrunError):
    """A spec that cannot be loaded: one or more located :class:`Diagnostic` errors (exit 2).

    ``str()`` is the first error's one-line form; ``diagnostics`` holds all of them, in
    file order, including warnings.
    """

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        errors = [d for d in diagnostics if d.severity == "error"]
        first = errors[0] if errors else diagnostics[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(first.headline() + more)

    @classmethod
    def single(cls, path: str | Path, message: str, hint: str = "") -> SpecError:
        """A spec error about the whole file (no line), such as a missing file."""
        return cls([Diagnostic(str(path), 0, 0, message, hint)])


class ToolError(AgentrunError):
    """A tool call failed; the message goes back to the model as the tool result."""


class ToolArgumentError(ToolError):
    """The model's arguments do not match the tool's JSON Schema, or are not JSON."""


class PathNotAllowed(ToolError):
    """A path argument resolves outside the tool's declared roots (``..``, absolute, symlink)."""


class RunStop(AgentrunError):
    """Ends a run gracefully with :attr:`stop_reason`, given when the signal is made.

    Raise a subclass that names the reason (:class:`LoopDetected`, ...), or ``RunStop(message,
    reason)`` for one without its own class. The reason cannot be changed afterwards.
    """

    def __init__(self, message: str, stop_reason: StopReason) -> None:
        super().__init__(message)
        self._stop_reason = stop_reason

    @property
    def stop_reason(self) -> StopReason:
        """Why the run ends (read-only)."""
        return self._stop_reason


class _FixedStop(RunStop):
    """A :class:`RunStop` whose subclass always ends a run with the same reason."""

    STOP_REASON: ClassVar[StopReason]

    def __init__(self, message: str) -> None:
        super().__init__(message, self.STOP_REASON)


class BudgetExhausted(RunStop):
    """A budget limit would be crossed by the next call.

    Attributes:
        limit: the budget's name, which is also the stop reason (``max_steps``, ...).
        observed: the value reached (or that the call would reach).
        cap: the configured limit.
    """

    def __init__(self, limit: StopReason, observed: float, cap: float) -> None:
        self.limit = limit
        self.observed = observed
        self.cap = cap
        super().__init__(
            f"budget {limit} exhausted: the next call would reach {observed:g}, "
            f"over the limit of {cap:g}",
            limit,
        )


class ModelError(_FixedStop):
    """The model provider failed (after retries and fallbacks); stop reason ``model_error``."""

    STOP_REASON = StopReason.MODEL_ERROR


class LoopDetected(_FixedStop):
    """The model repeated the same tool calls ``loop_detection.stop_after`` times."""

    STOP_REASON = StopReason.LOOP_DETECTED


class OutputInvalid(_FixedStop):
    """The final answer did not satisfy ``output.schema`` after the allowed retries."""

    STOP_REASON = StopReason.OUTPUT_INVALID


class ApprovalRequired(_FixedStop):
    """A call needs an approval, nobody is attached, and ``unattended`` is ``fail``."""

    STOP_REASON = StopReason.APPROVAL_REQUIRED


class WaitingApproval(_FixedStop):
    """A call waits for a decision (``unattended: queue``): the run pauses, to be resumed."""

    STOP_REASON = StopReason.WAITING_APPROVAL


class WaitingInput(_FixedStop):
    """A question to a person (``ask_human``) waits for an answer: the run pauses."""

    STOP_REASON = StopReason.WAITING_INPUT


class AnswerTimeout(_FixedStop):
    """A question to a person had no answer within the tool's ``answer_timeout``."""

    STOP_REASON = StopReason.ANSWER_TIMEOUT


class ChecksFailed(_FixedStop):
    """The final answer failed the spec's ``checks`` after ``max_check_retries`` retries."""

    STOP_REASON = StopReason.CHECKS_FAILED
