"""The OpenTelemetry side of :mod:`runner.telemetry`: spans and metrics from a run's events.

Imported only when a run has telemetry on (it imports the OpenTelemetry SDK and its OTLP/HTTP
exporters, the ``[otel]`` extra). A :class:`RunTracer` receives the run's redacted events
as a sink and turns them into spans after the GenAI semantic conventions:

- ``invoke_agent {agent}`` (kind INTERNAL) starts with the run's execution and ends with
  its :class:`~runner.events.RunFinished`; a budget stop is its event
  ``agentrun.budget.exhausted``, an ``error`` or ``model_error`` stop sets its status to
  ERROR.
- ``chat {model}`` (kind CLIENT) per :class:`~runner.events.ModelCalled`, dated from the
  call's measured duration (it ends when the event arrives).
- ``execute_tool {tool}`` (kind INTERNAL) per tool call, from the first event naming the
  call (a guard's decision, an approval request, the start) to its
  :class:`~runner.events.ToolCalled`; approvals, guards and sandbox connections are its
  events. While it is open, the run's :class:`~runner.telemetry.TraceState` points at it.

Metrics (OTel instruments, exported with the spans at the run's end):
``gen_ai.client.token.usage`` (histogram, ``{token}``, by ``gen_ai.token.type``) and
``gen_ai.client.operation.duration`` (histogram, s) per model call, as the conventions name
them; ``agentrun.run.duration`` (histogram, s), ``agentrun.run.cost`` (counter, USD, runs
whose cost is known), ``agentrun.run.tokens`` (counter, ``{token}``) and ``agentrun.runs``
(counter, ``{run}``) per run, by agent and stop reason.

Providers are made once per process for each (endpoint, service name) and kept: a daemon's
worker runs many runs. Each run's end flushes them, so a CLI run's spans are sent before it
exits, and nothing waits at exit. An export gives up after :data:`EXPORT_TIMEOUT_S`, its
retries included (or the ``OTEL_EXPORTER_OTLP_TIMEOUT`` variables' time): a collector that
is down delays a run's end by at most that, once for the spans and once for the metrics.
The failure is logged (the SDK's logger) and never fails the run.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ..errors import StopReason
from ..events import (
    ApprovalDecided,
    ApprovalRequested,
    ConnectionDecided,
    Event,
    GuardDecided,
    LimitHit,
    ModelCalled,
    QuestionAsked,
    RunFinished,
    RunNotice,
    ToolCalled,
    ToolStarted,
)
from ..spec import TelemetrySpec
from . import TraceState

log = logging.getLogger(__name__)

#: Longest a run's end waits for its spans and metrics to be exported (milliseconds).
FLUSH_TIMEOUT_MS = 5000
#: How long one export may take, its retries included (seconds), unless the standard
#: ``OTEL_EXPORTER_OTLP_TIMEOUT`` variables say otherwise (the SDK's default is 10 s).
EXPORT_TIMEOUT_S = 3.0
#: Metrics are also exported this often (milliseconds) while a process runs many runs.
METRICS_INTERVAL_MS = 60_000
#: The stop reasons that are budget stops: an ``agentrun.budget.exhausted`` event.
BUDGET_STOPS = frozenset(
    {
        StopReason.MAX_STEPS,
        StopReason.MAX_TOOL_CALLS,
        StopReason.MAX_TOKENS,
        StopReason.MAX_COST_USD,
        StopReason.MAX_DURATION,
    }
)
#: The stop reasons that are failures of the run itself: the run's span has status ERROR.
ERROR_STOPS = frozenset({StopReason.ERROR, StopReason.MODEL_ERROR})
INSTRUMENTATION = "agentrun"

_providers: dict[tuple[Any, ...], Providers] = {}


@functools.cache
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("agentrun")
    except PackageNotFoundError:
        return "0"


class Providers:
    """A tracer and a meter provider exporting over OTLP/HTTP, and the run instruments."""

    def __init__(self, endpoint: str | None, service_name: str | None) -> None:
        attributes: dict[str, str] = {SERVICE_VERSION: _version()}
        if service_name:
            attributes[SERVICE_NAME] = service_name
        # Resource.create merges OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME; an explicit
        # service name wins. Without either, the SDK says "unknown_service": say agentrun.
        resource = Resource.create(attributes)
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: "agentrun"}))
        base = endpoint.rstrip("/") if endpoint else None
        self.traces, self.metrics = exported_signals(endpoint, os.environ)
        # Every run's end flushes both (below): nothing is left to send at exit, and a
        # shutdown at exit would only send the cumulative metrics again (or wait out the
        # exporter's retries when the collector is gone).
        self.tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        readers = []
        # Without an endpoint the exporters read the OTEL_EXPORTER_OTLP_* variables (and
        # headers, timeout, compression) themselves, as every OpenTelemetry SDK does.
        if self.traces:
            span_exporter = OTLPSpanExporter(
                endpoint=f"{base}/v1/traces" if base else None,
                timeout=export_timeout("TRACES", os.environ),
            )
            self.tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
        if self.metrics:
            metric_exporter = OTLPMetricExporter(
                endpoint=f"{base}/v1/metrics" if base else None,
                timeout=export_timeout("METRICS", os.environ),
            )
            readers.append(
                PeriodicExportingMetricReader(
                    metric_exporter, export_interval_millis=METRICS_INTERVAL_MS
                )
            )
        self.meter_provider = MeterProvider(
            resource=resource, metric_readers=readers, shutdown_on_exit=False
        )
        self.tracer = self.tracer_provider.get_tracer(INSTRUMENTATION, _version())
        meter = self.meter_provider.get_meter(INSTRUMENTATION, _version())
        self.token_usage = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", description="Tokens per model call."
        )
        self.operation_duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s", description="Model call duration."
        )
        self.run_duration = meter.create_histogram(
            "agentrun.run.duration", unit="s", description="Duration of a run's execution."
        )
        self.run_cost = meter.create_counter(
            "agentrun.run.cost", unit="USD", description="Cost of runs whose cost is known."
        )
        self.run_tokens = meter.create_counter(
            "agentrun.run.tokens", unit="{token}", description="Tokens of runs."
        )
        self.runs = meter.create_counter("agentrun.runs", unit="{run}", description="Runs ended.")

    def flush(self) -> None:
        """Export what is buffered; each export gives up after its timeout.

        :data:`EXPORT_TIMEOUT_S` (or the ``OTEL_EXPORTER_OTLP_*TIMEOUT`` variables) bounds
        each export, retries included; :data:`FLUSH_TIMEOUT_MS` bounds the wait for each
        provider's queue.
        """
        self.tracer_provider.force_flush(FLUSH_TIMEOUT_MS)
        self.meter_provider.force_flush(FLUSH_TIMEOUT_MS)


def exported_signals(endpoint: str | None, environ: Mapping[str, str]) -> tuple[bool, bool]:
    """Whether traces and metrics are exported: ``(traces, metrics)``.

    ``OTEL_TRACES_EXPORTER=none`` or ``OTEL_METRICS_EXPORTER=none`` turns one off, as the
    SDK's environment specification says. A signal whose own endpoint variable is set while
    the other's is not, with no common endpoint (the spec's or
    ``OTEL_EXPORTER_OTLP_ENDPOINT``), is the only one sent: setting only
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` does not send metrics to the default
    ``localhost:4318``.
    """

    def given(name: str) -> bool:
        return bool(environ.get(name, "").strip())

    common = bool(endpoint) or given("OTEL_EXPORTER_OTLP_ENDPOINT")
    traces_only = given("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    metrics_only = given("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
    traces = common or traces_only or not metrics_only
    metrics = common or metrics_only or not traces_only

    def refused(signal: str) -> bool:
        return environ.get(f"OTEL_{signal}_EXPORTER", "").strip().lower() == "none"

    return traces and not refused("TRACES"), metrics and not refused("METRICS")


def export_timeout(signal: str, environ: Mapping[str, str]) -> float | None:
    """An export's timeout in seconds: :data:`EXPORT_TIMEOUT_S` unless a variable sets one.

    None when ``OTEL_EXPORTER_OTLP_TIMEOUT`` or ``OTEL_EXPORTER_OTLP_{signal}_TIMEOUT`` is
    set (the exporter reads it). The SDK's own default is 10 s, retries included: a run's
    end would wait that long for a collector that is down.
    """
    names = ("OTEL_EXPORTER_OTLP_TIMEOUT", f"OTEL_EXPORTER_OTLP_{signal}_TIMEOUT")
    if any(environ.get(name, "").strip() for name in names):
        return None
    return EXPORT_TIMEOUT_S


def providers(spec: TelemetrySpec) -> Providers:
    """This process's providers for ``spec``'s settings and the ``OTEL_*`` variables (made once).

    Keyed by the spec's endpoint and service name and by every ``OTEL_*`` variable, so a
    process whose environment changes (a test) gets providers that follow it.
    """
    settings = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("OTEL_")))
    key = (spec.endpoint, spec.service_name, settings)
    made = _providers.get(key)
    if made is None:
        made = _providers[key] = Providers(spec.endpoint, spec.service_name)
    return made


def shutdown() -> None:
    """Shut down and forget this process's providers (each exports what it holds first).

    For a process that is done with telemetry, or changes where it goes (the tests).
    """
    while _providers:
        _, made = _providers.popitem()
        made.tracer_provider.shutdown()
        made.meter_provider.shutdown(FLUSH_TIMEOUT_MS)


def provider_name(model: str) -> str | None:
    """``gen_ai.provider.name`` of a litellm model id: its ``provider/`` prefix, if any."""
    prefix, slash, _ = model.partition("/")
    if not slash:
        return None
    return "agentrun.local" if prefix == "local" else prefix


def traceparent_of(span: Span) -> str:
    """The W3C ``traceparent`` header value naming ``span``."""
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


class RunTracer:
    """One run execution's spans and metrics, fed its events (see the module docstring).

    Args:
        spec: the agent's ``telemetry``.
        run: ``run_id``, ``agent``, ``model``, ``trigger``, ``resumed`` (bool).
        parent: a valid W3C ``traceparent`` the run continues, or None.

    Attributes:
        state: the run's :class:`~runner.telemetry.TraceState`, pointing at the run's span
            and, while a tool call is open, at its span.
    """

    def __init__(
        self, spec: TelemetrySpec, run: Mapping[str, Any], parent: str | None = None
    ) -> None:
        self.providers = providers(spec)
        self.agent = str(run["agent"])
        self.model = str(run["model"])
        self.provider = provider_name(self.model)
        context = (
            TraceContextTextMapPropagator().extract({"traceparent": parent}) if parent else None
        )
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": self.agent,
            "gen_ai.agent.id": self.agent,
            "gen_ai.conversation.id": str(run["run_id"]),
            "gen_ai.request.model": self.model,
            "agentrun.run.id": str(run["run_id"]),
            "agentrun.trigger": str(run.get("trigger", "")),
            "agentrun.resumed": bool(run.get("resumed", False)),
        }
        if self.provider:
            attributes["gen_ai.provider.name"] = self.provider
        self.span = self.providers.tracer.start_span(
            f"invoke_agent {self.agent}",
            context=context,
            kind=SpanKind.INTERNAL,
            attributes=attributes,
        )
        self.run_context = trace.set_span_in_context(self.span)
        self.state = TraceState(traceparent_of(self.span))
        self.tools: dict[str, Span] = {}
        self.ended = False

    def sink(self, event: Event) -> None:
        """Receive one (redacted) event of the run. Never raises: telemetry never fails a run."""
        try:
            self._event(event)
        except Exception:
            log.warning("telemetry: could not record %s", type(event).__name__, exc_info=True)

    def _event(self, event: Event) -> None:
        if isinstance(event, ModelCalled):
            self._chat(event)
        elif isinstance(event, ToolStarted):
            self._tool_span(event.call_id, event.tool).set_attribute(
                "agentrun.decision", event.decision
            )
        elif isinstance(event, ApprovalRequested):
            # Not its reason: that is the model's own text beside the call.
            self._tool_span(event.call_id, event.tool).add_event(
                "agentrun.approval.requested", {"agentrun.risk": str(event.risk)}
            )
        elif isinstance(event, ApprovalDecided):
            self._tool_span(event.call_id, "").add_event(
                "agentrun.approval.decided",
                {"agentrun.approved": event.approved, "agentrun.decided_by": event.by},
            )
        elif isinstance(event, GuardDecided):
            self._tool_span(event.call_id, event.tool).add_event(
                "agentrun.guard",
                {"agentrun.guard": event.guard, "agentrun.decision": event.decision},
            )
        elif isinstance(event, QuestionAsked):
            self._tool_span(event.call_id, "ask_human").add_event("agentrun.question.asked")
        elif isinstance(event, ConnectionDecided | LimitHit):
            self._sandbox_event(event)
        elif isinstance(event, ToolCalled):
            self._tool_end(event)
        elif isinstance(event, RunNotice):
            self.span.add_event("agentrun.notice", {"agentrun.level": event.level})
        elif isinstance(event, RunFinished):
            self._finish(event)

    def _chat(self, event: ModelCalled) -> None:
        end = time.time_ns()
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": self.model,
            "gen_ai.response.model": event.model,
            "gen_ai.usage.input_tokens": event.input_tokens,
            "gen_ai.usage.output_tokens": event.output_tokens,
            "agentrun.step": event.step,
            "agentrun.tool_calls_asked": len(event.tool_calls),
        }
        if self.provider:
            attributes["gen_ai.provider.name"] = self.provider
        if event.cost_usd is not None:
            attributes["agentrun.cost_usd"] = event.cost_usd
        span = self.providers.tracer.start_span(
            f"chat {event.model}",
            context=self.run_context,
            kind=SpanKind.CLIENT,
            attributes=attributes,
            start_time=end - int(event.duration_s * 1e9),
        )
        if event.error:  # models that failed before this one answered (fallbacks)
            span.add_event("agentrun.fallback", {"agentrun.failed": event.error})
        span.end(end_time=end)
        metric: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": self.model,
            "gen_ai.response.model": event.model,
        }
        if self.provider:
            metric["gen_ai.provider.name"] = self.provider
        usage = self.providers.token_usage
        usage.record(event.input_tokens, {**metric, "gen_ai.token.type": "input"})
        usage.record(event.output_tokens, {**metric, "gen_ai.token.type": "output"})
        self.providers.operation_duration.record(event.duration_s, metric)

    def _tool_span(self, call_id: str, tool: str, started_s_ago: float = 0.0) -> Span:
        """The open span of tool call ``call_id``, started now (or ``started_s_ago``) if new."""
        span = self.tools.get(call_id)
        if span is None:
            start = time.time_ns() - int(started_s_ago * 1e9)
            span = self.providers.tracer.start_span(
                f"execute_tool {tool}",
                context=self.run_context,
                kind=SpanKind.INTERNAL,
                attributes={
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": tool,
                    "gen_ai.tool.call.id": call_id,
                    "gen_ai.tool.type": "function",
                },
                start_time=start,
            )
            self.tools[call_id] = span
            self.state.traceparent = traceparent_of(span)
        return span

    def _sandbox_event(self, event: ConnectionDecided | LimitHit) -> None:
        span = self.tools.get(event.call_id or "", self.span)
        if isinstance(event, ConnectionDecided):
            span.add_event(
                "agentrun.connection",
                {
                    "server.address": event.host,
                    "server.port": event.port,
                    "agentrun.allowed": event.allowed,
                    "agentrun.source": event.source,
                },
            )
        else:
            span.add_event(
                "agentrun.limit_hit",
                {"agentrun.limit": event.limit, "agentrun.source": event.source},
            )

    def _tool_end(self, event: ToolCalled) -> None:
        span = self._tool_span(event.call_id, event.tool, started_s_ago=event.duration_s)
        del self.tools[event.call_id]
        span.set_attributes(
            {
                "agentrun.decision": event.decision,
                "agentrun.tool.status": str(event.status),
                "agentrun.risk": str(event.risk),
                "agentrun.step": event.step,
            }
        )
        if event.status != "ok":
            # The status word only: the error's text can quote the call's arguments.
            span.set_attribute("error.type", str(event.status))
            span.set_status(Status(StatusCode.ERROR, str(event.status)))
        span.end()
        self.state.traceparent = traceparent_of(self.span)

    def _finish(self, event: RunFinished) -> None:
        if self.ended:
            return
        self.ended = True
        stop = StopReason(event.stop_reason)
        for call_id in list(self.tools):  # calls the run ended in (paused, cancelled)
            left = self.tools.pop(call_id)
            left.set_attributes(
                {"agentrun.tool.status": "unfinished", "agentrun.stop_reason": str(stop)}
            )
            left.end()
        span = self.span
        span.set_attributes(
            {
                "agentrun.stop_reason": str(stop),
                "agentrun.steps": event.steps,
                "agentrun.tool_calls": event.tool_calls,
                "gen_ai.usage.input_tokens": event.input_tokens,
                "gen_ai.usage.output_tokens": event.output_tokens,
            }
        )
        if event.cost_usd is not None:
            span.set_attribute("agentrun.cost_usd", event.cost_usd)
        if event.escalated_from is not None:
            span.set_attribute("agentrun.escalated_from", str(event.escalated_from))
        budget_stop = event.escalated_from if event.escalated_from is not None else stop
        if budget_stop in BUDGET_STOPS:
            span.add_event(
                "agentrun.budget.exhausted",
                {"agentrun.budget.limit": str(budget_stop), "agentrun.message": event.message},
            )
        if stop in ERROR_STOPS:
            span.set_attribute("error.type", str(stop))
            span.set_status(Status(StatusCode.ERROR, event.message))
        span.end()
        self.state.traceparent = None
        labels = {"gen_ai.agent.name": self.agent, "agentrun.stop_reason": str(stop)}
        self.providers.run_duration.record(event.duration_s, labels)
        self.providers.runs.add(1, labels)
        tokens = self.providers.run_tokens
        tokens.add(event.input_tokens, {**labels, "gen_ai.token.type": "input"})
        tokens.add(event.output_tokens, {**labels, "gen_ai.token.type": "output"})
        if event.cost_usd is not None:
            self.providers.run_cost.add(event.cost_usd, labels)
        self.providers.flush()
