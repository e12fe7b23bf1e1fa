"""OpenTelemetry traces and metrics of runs, after the GenAI semantic conventions.

When a run has telemetry on, :mod:`runner.telemetry.otel` turns its recorded events into
spans and metrics and exports them over OTLP/HTTP (protobuf)::

    invoke_agent {agent}            one per run (per execution: a resumed run has another)
    ├── chat {model}                one per model call: gen_ai.usage.input_tokens/output_tokens
    ├── execute_tool {tool}         one per tool call: gen_ai.tool.name, gen_ai.tool.call.id;
    │     events: agentrun.approval.requested / .decided, agentrun.guard, agentrun.connection
    └── ...
    events on invoke_agent: agentrun.budget.exhausted (a budget stop), agentrun.notice

The span names, kinds and ``gen_ai.*`` attributes follow the OpenTelemetry semantic
conventions for generative AI (``gen_ai.operation.name`` ``invoke_agent``, ``chat``,
``execute_tool``); what they do not name is under ``agentrun.*``. No message text, tool
argument or tool result is exported: names, counts, durations, decisions and outcomes only
(the events are redacted before the tracer sees them anyway).

When it is on (:func:`wanted`): the spec's ``telemetry`` says so (``true`` or an object),
or it leaves ``telemetry`` out and one of the standard variables
``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` is set. ``telemetry: false`` turns it off, and
``OTEL_SDK_DISABLED=true`` turns it off whatever the specs say. ``OTEL_TRACES_EXPORTER=none``
or ``OTEL_METRICS_EXPORTER=none`` keeps one signal home; a signal-specific endpoint alone
sends only that signal (:func:`runner.telemetry.otel.exported_signals`). Off, this module
is all that is imported: the OpenTelemetry packages are not, and a run pays nothing.

Trace context (W3C ``traceparent``, Trace Context level 1): a run started with one (a
webhook delivery carrying the header) is a child of the sender's span, and the run's
current span (the tool call in flight, else the run's) is sent as ``traceparent`` in the
requests to MCP servers over HTTP (:class:`TraceState`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import SetupError

if TYPE_CHECKING:
    from ..events import Event
    from ..spec import TelemetrySpec

#: The standard variables that turn telemetry on when the spec leaves ``telemetry`` out.
ENDPOINT_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
)
#: ``version-traceid-parentid-flags``, version ``00`` (W3C Trace Context level 1, §3.2).
_TRACEPARENT = re.compile(r"(00)-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
#: What the ``[otel]`` extra installs; named in the error when it is missing.
EXTRA_HINT = "pip install 'agentrun[otel]'"


def parse_traceparent(value: str | None) -> str | None:
    """A valid W3C ``traceparent`` header value, normalised (lower case), or None.

    Invalid values (another version, a wrong length, the all-zero trace or span id that
    the specification forbids) give None: the run then starts a trace of its own, as a
    receiver must when the header cannot be parsed (W3C Trace Context, §3.2.2).
    """
    if not value:
        return None
    match = _TRACEPARENT.fullmatch(value.strip().lower())
    if match is None or set(match[2]) == {"0"} or set(match[3]) == {"0"}:
        return None
    return match[0]


def wanted(spec: TelemetrySpec, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether runs of an agent with this ``telemetry`` export (see the module docstring)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False  # the operator's switch, over any spec (as for every OpenTelemetry SDK)
    if spec.enabled is not None:
        return spec.enabled
    return any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


class TraceState:
    """The W3C ``traceparent`` of a run's current span, for outgoing requests.

    One per run, shared by reference: an MCP HTTP client opened during the run reads it at
    each request (its own tasks do not see the run's context variables change), while the
    run's tracer moves it to each tool call's span and back.

    Attributes:
        traceparent: the header value, or None before the run's span exists.
    """

    def __init__(self, traceparent: str | None = None) -> None:
        self.traceparent = traceparent

    def headers(self) -> dict[str, str]:
        """``{"traceparent": ...}``, or ``{}`` while there is none."""
        return {"traceparent": self.traceparent} if self.traceparent else {}


_CURRENT: ContextVar[TraceState | None] = ContextVar("agentrun_trace", default=None)


def current() -> TraceState | None:
    """The running run's :class:`TraceState`, or None when its telemetry is off."""
    return _CURRENT.get()


def enter(state: TraceState) -> Token[TraceState | None]:
    """Make ``state`` current in this context (a run's task); undo with :func:`leave`."""
    return _CURRENT.set(state)


def leave(token: Token[TraceState | None]) -> None:
    """Undo :func:`enter`."""
    _CURRENT.reset(token)


class RunTelemetry(Protocol):
    """What a run holds of its telemetry: an event sink and its :class:`TraceState`."""

    state: TraceState

    def sink(self, event: Event) -> None:
        """Receive one redacted event of the run; never raises."""


def start(
    spec: TelemetrySpec,
    run: Mapping[str, Any],
    parent: str | None = None,
    environ: Mapping[str, str] = os.environ,
) -> tuple[RunTelemetry | None, str]:
    """The telemetry of one run execution, and a warning to record ('' when none).

    Args:
        spec: the agent's ``telemetry``.
        run: ``run_id``, ``agent``, ``model``, ``trigger`` and ``resumed`` of the run, for
            the ``invoke_agent`` span (which starts now).
        parent: a W3C ``traceparent`` the run continues (checked with
            :func:`parse_traceparent`), or None for a trace of its own.
        environ: the environment (the exporter reads the standard variables from
            ``os.environ`` itself).

    Returns:
        ``(None, "")`` when telemetry is off for this spec; ``(None, warning)`` when the
        environment asked for it but the ``[otel]`` extra is not installed.

    Raises:
        SetupError: the spec asks for telemetry and the ``[otel]`` extra is not installed.
    """
    if not wanted(spec, environ):
        return None, ""
    try:
        from .otel import RunTracer
    except ImportError as error:
        message = f"telemetry needs the OpenTelemetry packages ({error.name}): {EXTRA_HINT}"
        if spec.enabled:
            raise SetupError(message) from None
        return None, message + "; this run exports nothing"
    return RunTracer(spec, run, parse_traceparent(parent)), ""
