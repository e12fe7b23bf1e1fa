"""A real OTLP/HTTP receiver for the telemetry tests: the collector protocol, decoded.

It serves ``POST /v1/traces`` and ``POST /v1/metrics`` as an OpenTelemetry Collector's
``otlp`` receiver does over HTTP: protobuf bodies (``application/x-protobuf``, gzip or not)
decoded with the ``opentelemetry-proto`` package's ``ExportTraceServiceRequest`` and
``ExportMetricsServiceRequest``, answered with the matching protobuf responses. What came is
kept as plain dicts (:class:`ReceivedSpan`) for the assertions.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

KINDS = {
    Span.SPAN_KIND_INTERNAL: "internal",
    Span.SPAN_KIND_CLIENT: "client",
    Span.SPAN_KIND_SERVER: "server",
    Span.SPAN_KIND_PRODUCER: "producer",
    Span.SPAN_KIND_CONSUMER: "consumer",
}


def value_of(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [value_of(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes_of(value.kvlist_value.values)
    return getattr(value, kind) if kind else None


def attributes_of(pairs: Iterator[KeyValue] | Any) -> dict[str, Any]:
    return {pair.key: value_of(pair.value) for pair in pairs}


@dataclass
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: str
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    status: str
    status_message: str
    start_ns: int
    end_ns: int
    resource: dict[str, Any] = field(default_factory=dict)


class OtlpReceiver:
    """An OTLP/HTTP receiver on a free loopback port (see the module docstring)."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.metrics: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                with receiver.lock:
                    receiver.requests.append((self.path, dict(self.headers)))
                    if self.path == "/v1/traces":
                        reply = receiver.traces(body)
                    elif self.path == "/v1/metrics":
                        reply = receiver.metric_points(body)
                    else:
                        self.send_response(404)
                        self.end_headers()
                        return
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def traces(self, body: bytes) -> bytes:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)  # a body that is not the protocol fails the test here
        for resource_spans in request.resource_spans:
            resource = attributes_of(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        ReceivedSpan(
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            kind=KINDS.get(span.kind, str(span.kind)),
                            attributes=attributes_of(span.attributes),
                            events=[(e.name, attributes_of(e.attributes)) for e in span.events],
                            status={0: "unset", 1: "ok", 2: "error"}[span.status.code],
                            status_message=span.status.message,
                            start_ns=span.start_time_unix_nano,
                            end_ns=span.end_time_unix_nano,
                            resource=resource,
                        )
                    )
        return ExportTraceServiceResponse().SerializeToString()

    def metric_points(self, body: bytes) -> bytes:
        request = ExportMetricsServiceRequest()
        request.ParseFromString(body)
        for resource_metrics in request.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    kind = metric.WhichOneof("data")
                    data = getattr(metric, kind)
                    points = self.metrics.setdefault(metric.name, [])
                    for point in data.data_points:
                        value = (
                            point.sum
                            if kind == "histogram"
                            else point.as_double
                            if point.WhichOneof("value") == "as_double"
                            else point.as_int
                        )
                        points.append(
                            {
                                "kind": kind,
                                "unit": metric.unit,
                                "attributes": attributes_of(point.attributes),
                                "value": value,
                                "count": getattr(point, "count", None),
                            }
                        )
        return ExportMetricsServiceResponse().SerializeToString()

    def named(self, prefix: str) -> list[ReceivedSpan]:
        """The spans received whose name starts with ``prefix``, in start order."""
        with self.lock:
            return sorted(
                (s for s in self.spans if s.name.startswith(prefix)), key=lambda s: s.start_ns
            )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
