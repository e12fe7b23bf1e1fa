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
        └── ModelError                the provider failed after retries

The first families are the author's or the machine's mistakes: they are raised before a
run starts. ``ToolError`` is a signal the loop handles: the model caused it and may
correct itself. ``RunStop`` ends a run gracefully with a recorded stop reason; anything
else raised inside a run is an internal error, recorded with its traceback (stop reason
``error``). The three-family split follows pydantic-ai's exceptions module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
    """Ends a run gracefully with ``stop_reason`` (a :class:`runner.events.StopReason` value)."""

    stop_reason = "error"


class BudgetExhausted(RunStop):
    """A budget limit would be crossed by the next call.

    Attributes:
        limit: the budget's name, which is also the stop reason (``max_steps``, ...).
        observed: the value reached (or that the call would reach).
        cap: the configured limit.
    """

    def __init__(self, limit: str, observed: float, cap: float) -> None:
        self.limit = limit
        self.observed = observed
        self.cap = cap
        self.stop_reason = limit
        super().__init__(
            f"budget {limit} exhausted: the next call would reach {observed:g}, "
            f"over the limit of {cap:g}"
        )


class ModelError(RunStop):
    """The model provider failed (after retries and fallbacks); stop reason ``model_error``."""

    stop_reason = "model_error"
