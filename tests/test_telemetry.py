"""OpenTelemetry: a run's spans and metrics reach a real OTLP/HTTP receiver (issue 24).

The receiver (:mod:`tests.otlp_receiver`) decodes the collector protocol with the
``opentelemetry-proto`` package, as an OpenTelemetry Collector does; nothing here reads the
SDK's own objects.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner import telemetry
from runner.compiler import compile_agent
from runner.errors import StopReason
from runner.loop import run_agent
from runner.policy import Approval, ApprovalRequest
from runner.spec import TelemetrySpec, load_spec
from runner.store import RunStore
from runner.testing import ScriptedModel, call, text
from tests.helpers import write_spec
from tests.otlp_receiver import OtlpReceiver
from tests.test_mcp import http_server as toy_http_server


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    from runner.telemetry import otel

    served = OtlpReceiver()
    yield served
    otel.shutdown()  # while the receiver still answers
    served.close()


@pytest.fixture(autouse=True)
def _no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


class Approves:
    """A person who approves every call, recorded as ``test``."""

    name = "test"

    async def request(self, request: ApprovalRequest) -> Approval:
        return Approval(True, "looks fine")

    async def answer(self, question: Any) -> str:
        return "yes"


def spec_with(tmp_path: Path, telemetry_yaml: str, extra: str = "") -> Any:
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "notes.txt").write_text("three open bugs\n")
    (tmp_path / "out").mkdir(exist_ok=True)
    body = textwrap.dedent(
        """
        version: 1
        name: triage
        model: openai/gpt-4o-mini
        goal: Read the notes and write a report.
        autonomy: approve-writes
        tools:
          read_file: {paths: [data]}
          write_file: {paths: [out]}
        """
    )
    return load_spec(write_spec(tmp_path, body + textwrap.dedent(telemetry_yaml + extra)))


def tool_run_script() -> list[Any]:
    return [
        call("read_file", {"path": "data/notes.txt"}),
        call(
            "write_file",
            {"path": "out/report.md", "content": "3 bugs"},
            content="Writing it for dana@example.com.",  # shown to the approver, not exported
        ),
        text("Report written."),
    ]


def execute(spec: Any, script: list[Any], tmp_path: Path, **kwargs: Any) -> Any:
    store = RunStore(tmp_path / "runs.db")
    model = ScriptedModel(script, name="gpt-4o-mini")
    return asyncio.run(
        run_agent(compile_agent(spec, {}), model=model, store=store, approver=Approves(), **kwargs)
    )


def test_a_run_with_tools_and_an_approval_exports_its_spans_by_the_conventions(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    spec = spec_with(
        tmp_path, f"telemetry: {{endpoint: {receiver.url}, service_name: triage-bot}}\n"
    )
    finished = execute(spec, tool_run_script(), tmp_path)
    assert finished.stop_reason == StopReason.COMPLETED

    [root] = receiver.named("invoke_agent")
    chats = receiver.named("chat ")
    tools = receiver.named("execute_tool")
    assert root.name == "invoke_agent triage" and root.kind == "internal"
    assert root.parent_span_id == ""  # a trace of its own
    assert root.resource["service.name"] == "triage-bot"
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert root.attributes["gen_ai.agent.name"] == "triage"
    assert root.attributes["gen_ai.request.model"] == "openai/gpt-4o-mini"
    assert root.attributes["gen_ai.provider.name"] == "openai"
    assert root.attributes["agentrun.run.id"] == finished.run_id
    assert root.attributes["agentrun.stop_reason"] == "completed"
    assert root.attributes["gen_ai.usage.input_tokens"] == 30  # 3 calls of 10 in, 5 out
    assert root.attributes["gen_ai.usage.output_tokens"] == 15
    assert root.status == "unset"

    assert [s.name for s in chats] == ["chat gpt-4o-mini"] * 3
    assert [s.name for s in tools] == ["execute_tool read_file", "execute_tool write_file"]
    for span in [*chats, *tools]:
        assert (span.trace_id, span.parent_span_id) == (root.trace_id, root.span_id)
        assert root.start_ns <= span.start_ns <= span.end_ns <= root.end_ns
    for chat in chats:
        assert chat.kind == "client"
        assert chat.attributes["gen_ai.operation.name"] == "chat"
        assert chat.attributes["gen_ai.usage.input_tokens"] == 10
        assert chat.attributes["gen_ai.usage.output_tokens"] == 5
        assert chat.attributes["gen_ai.response.model"] == "gpt-4o-mini"
    assert [c.attributes["agentrun.step"] for c in chats] == [1, 2, 3]

    read, write = tools
    assert read.attributes["gen_ai.tool.name"] == "read_file"
    assert read.attributes["gen_ai.operation.name"] == "execute_tool"
    assert read.attributes["agentrun.decision"] == "allow"
    assert read.attributes["agentrun.tool.status"] == "ok"
    assert read.events == []  # low risk: no approval asked
    assert write.attributes["agentrun.decision"] == "ask"
    assert [name for name, _ in write.events] == [
        "agentrun.approval.requested",
        "agentrun.approval.decided",
    ]
    assert write.events[0][1] == {"agentrun.risk": "medium"}  # not the model's words
    assert write.events[1][1] == {"agentrun.approved": True, "agentrun.decided_by": "test"}
    # The call ids are the model's, as recorded in the store.
    store = RunStore(tmp_path / "runs.db")
    recorded = [row["call_id"] for row in store.tool_calls(finished.run_id)]
    assert [s.attributes["gen_ai.tool.call.id"] for s in tools] == recorded
    # Nothing of the conversation is exported: not the tool result, the arguments, or the
    # words the model wrote beside a call (the approver sees them).
    exported = json.dumps(
        [(s.attributes, s.events, s.status_message, s.resource) for s in receiver.spans]
    )
    for words in ("three open bugs", "3 bugs", "report.md", "dana@example.com"):
        assert words not in exported


def test_the_run_s_metrics_are_exported_with_its_spans(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    spec = spec_with(tmp_path, f"telemetry: {{endpoint: {receiver.url}}}\n")
    execute(spec, tool_run_script(), tmp_path)
    metrics = receiver.metrics
    usage = metrics["gen_ai.client.token.usage"]
    by_type = {p["attributes"]["gen_ai.token.type"]: p for p in usage}
    assert (by_type["input"]["value"], by_type["input"]["count"]) == (30, 3)
    assert (by_type["output"]["value"], by_type["output"]["count"]) == (15, 3)
    assert usage[0]["unit"] == "{token}"
    assert metrics["gen_ai.client.operation.duration"][0]["count"] == 3
    [runs] = metrics["agentrun.runs"]
    assert runs["value"] == 1
    assert runs["attributes"] == {
        "gen_ai.agent.name": "triage",
        "agentrun.stop_reason": "completed",
    }
    [duration] = metrics["agentrun.run.duration"]
    assert duration["unit"] == "s" and duration["count"] == 1
    tokens = {
        p["attributes"]["gen_ai.token.type"]: p["value"] for p in metrics["agentrun.run.tokens"]
    }
    assert tokens == {"input": 30, "output": 15}
    assert receiver.spans[0].resource["service.name"] == "agentrun"


def test_a_budget_stop_is_an_event_of_the_run_s_span(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    spec = spec_with(
        tmp_path, f"telemetry: {{endpoint: {receiver.url}}}\n", "budgets: {max_steps: 1}\n"
    )
    finished = execute(spec, tool_run_script(), tmp_path)
    assert finished.stop_reason == StopReason.MAX_STEPS
    [root] = receiver.named("invoke_agent")
    [(name, attributes)] = root.events
    assert name == "agentrun.budget.exhausted"
    assert attributes["agentrun.budget.limit"] == "max_steps"
    assert "max_steps" in attributes["agentrun.message"]
    assert root.attributes["agentrun.stop_reason"] == "max_steps"


def test_an_error_stop_marks_the_run_s_span_as_an_error(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    spec = spec_with(tmp_path, f"telemetry: {{endpoint: {receiver.url}}}\n")
    finished = execute(spec, [call("read_file", {"path": "data/notes.txt"})], tmp_path)
    assert finished.stop_reason == StopReason.MODEL_ERROR  # the script ran out
    [root] = receiver.named("invoke_agent")
    assert root.status == "error" and root.status_message == finished.message
    assert root.attributes["error.type"] == "model_error"


def test_a_failed_tool_call_is_an_error_span_that_does_not_quote_its_arguments(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    spec = spec_with(tmp_path, f"telemetry: {{endpoint: {receiver.url}}}\n")
    script = [call("read_file", {"path": "/etc/customer-42"}), text("Could not read it.")]
    execute(spec, script, tmp_path)
    [span] = receiver.named("execute_tool")
    assert span.status == "error"
    assert span.attributes["error.type"] == span.status_message
    assert span.status_message in ("error", "refused")
    assert "customer-42" not in json.dumps([span.attributes, span.events, span.status_message])


def test_a_paused_run_leaves_its_waiting_call_s_span_unfinished(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    spec = spec_with(tmp_path, f"telemetry: {{endpoint: {receiver.url}}}\n", "unattended: queue\n")
    store = RunStore(tmp_path / "runs.db")
    model = ScriptedModel(tool_run_script(), name="gpt-4o-mini")
    finished = asyncio.run(run_agent(compile_agent(spec, {}), model=model, store=store))
    assert finished.stop_reason == StopReason.WAITING_APPROVAL
    read, write = receiver.named("execute_tool")
    assert read.attributes["agentrun.tool.status"] == "ok"
    assert write.attributes["agentrun.tool.status"] == "unfinished"
    assert write.attributes["agentrun.stop_reason"] == "waiting_approval"
    assert [name for name, _ in write.events] == ["agentrun.approval.requested"]


def test_a_given_traceparent_makes_the_run_a_child_of_the_sender_s_span(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    spec = spec_with(tmp_path, f"telemetry: {{endpoint: {receiver.url}}}\n")
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    execute(spec, [text("done")], tmp_path, traceparent=parent)
    [root] = receiver.named("invoke_agent")
    assert (root.trace_id, root.parent_span_id) == (
        "0af7651916cd43dd8448eb211c80319c",
        "b7ad6b7169203331",
    )


def test_the_standard_variables_turn_telemetry_on(
    tmp_path: Path, receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-the-environment")
    spec = spec_with(tmp_path, "")
    execute(spec, [text("done")], tmp_path)
    [root] = receiver.named("invoke_agent")
    assert root.resource["service.name"] == "from-the-environment"


def test_telemetry_false_wins_over_the_variables(
    tmp_path: Path, receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    execute(spec_with(tmp_path, "telemetry: false\n"), [text("done")], tmp_path)
    assert receiver.requests == []


def test_otel_sdk_disabled_wins_over_the_spec(
    tmp_path: Path, receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    spec = spec_with(tmp_path, f"telemetry: {{endpoint: {receiver.url}}}\n")
    execute(spec, [text("done")], tmp_path)
    assert receiver.requests == []


@pytest.mark.parametrize(
    ("variables", "paths"),
    [
        ({"OTEL_METRICS_EXPORTER": "none"}, ["/v1/traces"]),
        ({"OTEL_TRACES_EXPORTER": "none"}, ["/v1/metrics"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}, []),
    ],
)
def test_one_signal_can_be_kept_home(
    tmp_path: Path,
    receiver: OtlpReceiver,
    monkeypatch: pytest.MonkeyPatch,
    variables: dict[str, str],
    paths: list[str],
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    execute(
        spec_with(tmp_path, f"telemetry: {{endpoint: {receiver.url}}}\n"), [text("ok")], tmp_path
    )
    assert sorted({path for path, _ in receiver.requests}) == paths


def test_a_traces_endpoint_alone_sends_no_metrics_anywhere(
    tmp_path: Path, receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{receiver.url}/v1/traces")
    execute(spec_with(tmp_path, ""), [text("ok")], tmp_path)
    from runner.telemetry import otel

    assert {path for path, _ in receiver.requests} == {"/v1/traces"}
    assert [(p.traces, p.metrics) for p in otel._providers.values()] == [(True, False)]


@pytest.mark.parametrize(
    ("endpoint", "environ", "expected"),
    [
        (None, {}, (True, True)),  # telemetry: true, the SDK's default endpoint
        ("http://c:4318", {}, (True, True)),
        (None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, (True, True)),
        (None, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c/v1/traces"}, (True, False)),
        (None, {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://c/v1/metrics"}, (False, True)),
        ("http://c:4318", {"OTEL_METRICS_EXPORTER": "none"}, (True, False)),
    ],
)
def test_which_signals_are_exported(
    endpoint: str | None, environ: dict[str, str], expected: tuple[bool, bool]
) -> None:
    from runner.telemetry.otel import exported_signals

    assert exported_signals(endpoint, environ) == expected


def test_an_export_gives_up_after_its_own_timeout_unless_a_variable_sets_one() -> None:
    from runner.telemetry.otel import EXPORT_TIMEOUT_S, export_timeout

    assert export_timeout("TRACES", {}) == EXPORT_TIMEOUT_S < 10  # the SDK's default is 10 s
    assert export_timeout("TRACES", {"OTEL_EXPORTER_OTLP_TIMEOUT": "20"}) is None
    assert export_timeout("METRICS", {"OTEL_EXPORTER_OTLP_METRICS_TIMEOUT": "20"}) is None


def test_a_collector_that_is_down_does_not_fail_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.receivers import down_port

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")  # seconds: the exporter's own
    spec = spec_with(tmp_path, f"telemetry: {{endpoint: 'http://127.0.0.1:{down_port()}'}}\n")
    finished = execute(spec, tool_run_script(), tmp_path)
    assert finished.stop_reason == StopReason.COMPLETED
    from runner.telemetry import otel

    otel.shutdown()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", True),
        ("00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-00", True),  # normalised
        ("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", False),  # unknown version
        ("00-00000000000000000000000000000000-b7ad6b7169203331-01", False),  # all-zero trace
        ("00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", False),  # all-zero span
        ("00-0af7651916cd43dd8448eb211c80319-b7ad6b7169203331-01", False),  # short
        ("", False),
        (None, False),
    ],
)
def test_traceparent_headers_are_checked(header: str | None, expected: bool) -> None:
    parsed = telemetry.parse_traceparent(header)
    assert (parsed is not None) is expected
    if parsed is not None:
        assert parsed == parsed.lower() and header is not None and parsed == header.lower()


@pytest.mark.parametrize(
    ("enabled", "environ", "expected"),
    [
        (None, {}, False),
        (None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, True),
        (None, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, True),
        (None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_SDK_DISABLED": "true"}, False),
        (None, {"OTEL_EXPORTER_OTLP_ENDPOINT": " "}, False),
        (False, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        (True, {}, True),
        (True, {"OTEL_SDK_DISABLED": "TRUE"}, False),
    ],
)
def test_when_telemetry_is_on(
    enabled: bool | None, environ: dict[str, str], expected: bool
) -> None:
    assert telemetry.wanted(TelemetrySpec(enabled=enabled), environ) is expected


def test_the_spec_s_telemetry_forms(tmp_path: Path) -> None:
    assert spec_with(tmp_path, "").telemetry == TelemetrySpec()
    assert spec_with(tmp_path, "telemetry: true\n").telemetry == TelemetrySpec(enabled=True)
    assert spec_with(
        tmp_path, "telemetry: {enabled: false, endpoint: 'http://c:4318'}\n"
    ).telemetry == TelemetrySpec(enabled=False, endpoint="http://c:4318")


def test_a_bad_telemetry_key_is_a_spec_error_at_its_line(tmp_path: Path) -> None:
    from runner.errors import SpecError

    with pytest.raises(SpecError) as raised:
        spec_with(tmp_path, "telemetry: {endpoint: 'collector:4318'}\n")
    assert "telemetry" in str(raised.value) and "endpoint" in str(raised.value)


def test_without_the_extra_an_explicit_telemetry_is_a_setup_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "runner.telemetry.otel", None)  # as if not installed
    finished = execute(spec_with(tmp_path, "telemetry: true\n"), [text("done")], tmp_path)
    assert finished.stop_reason == StopReason.ERROR
    assert "agentrun[otel]" in finished.message


def test_without_the_extra_the_variables_only_warn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "runner.telemetry.otel", None)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    finished = execute(spec_with(tmp_path, ""), [text("done")], tmp_path)
    assert finished.stop_reason == StopReason.COMPLETED
    notices = RunStore(tmp_path / "runs.db").notices(finished.run_id)
    assert any("agentrun[otel]" in n["message"] for n in notices), notices


def test_with_telemetry_off_no_opentelemetry_package_is_imported(tmp_path: Path) -> None:
    """A run whose telemetry is off imports no OpenTelemetry module (a fresh interpreter)."""
    spec = spec_with(tmp_path, "")
    script = textwrap.dedent(
        f"""
        import asyncio, os, sys
        for name in [n for n in os.environ if n.startswith("OTEL_")]:
            del os.environ[name]
        from runner.compiler import compile_agent
        from runner.loop import run_agent
        from runner.spec import load_spec
        from runner.testing import ScriptedModel, call, text
        spec = load_spec({str(spec.path)!r})
        model = ScriptedModel([call("read_file", {{"path": "data/notes.txt"}}), text("ok")])
        finished = asyncio.run(run_agent(compile_agent(spec, {{}}), model=model))
        assert finished.stop_reason == "completed", finished
        print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


mcp_http_server = pytest.fixture(toy_http_server.__wrapped__, name="mcp_http_server")


def test_mcp_http_requests_carry_the_tool_call_s_traceparent(
    tmp_path: Path, receiver: OtlpReceiver, mcp_http_server: str
) -> None:
    """The toy server's ``header`` tool answers with the ``traceparent`` its request carried."""
    body = f"""
    version: 1
    name: mcp-traced
    model: openai/scripted
    goal: Ask the server.
    autonomy: autonomous
    telemetry: {{endpoint: {receiver.url}}}
    tools:
      mcp:
        web: {{url: "{mcp_http_server}", allow: [header]}}
    """
    spec = load_spec(write_spec(tmp_path, body))
    script = [call("web__header", {"name": "traceparent"}), text("done")]
    finished = execute(spec, script, tmp_path)
    assert finished.stop_reason == StopReason.COMPLETED
    [root] = receiver.named("invoke_agent")
    [span] = receiver.named("execute_tool")
    [row] = RunStore(tmp_path / "runs.db").tool_calls(finished.run_id)
    version, trace_id, span_id, flags = row["result"].split("-")
    assert (version, trace_id, span_id) == ("00", span.trace_id, span.span_id)
    assert int(flags, 16) & 1  # sampled
    assert span.trace_id == root.trace_id and span.parent_span_id == root.span_id


def test_a_webhook_s_traceparent_is_the_parent_of_the_run_it_starts(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    """A real daemon, its worker process, a signed delivery carrying ``traceparent``."""
    import httpx

    from tests.helpers import wait_for
    from tests.test_daemon import DaemonProcess, free_port, sign

    agents, home = tmp_path / "agents", tmp_path / "home"
    agents.mkdir()
    home.mkdir()
    write_spec(
        agents,
        f"""
        version: 1
        name: labeller
        model: openai/test-double
        inputs:
          title: {{type: string}}
        goal: "label {{{{ title }}}}"
        telemetry: {{endpoint: {receiver.url}}}
        triggers:
          - webhook: {{secret_env: WEBHOOK_SECRET, inputs: {{title: issue.title}}}}
          - manual: true
        """,
        name="labeller.yaml",
    )
    port = free_port()
    daemon = DaemonProcess(agents, home, "--http", f"127.0.0.1:{port}")
    sender = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    try:
        wait_for(lambda: (home / "daemon.url").exists(), "the daemon's URL file")
        body = json.dumps({"issue": {"title": "Crash"}}).encode()
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Delivery": "traced-1",
            "X-Hub-Signature-256": sign(body),
            "traceparent": sender,
        }
        answer = httpx.post(
            f"http://127.0.0.1:{port}/hooks/labeller", content=body, headers=headers, timeout=60
        )
        assert answer.status_code == 202, answer.text
        run_id = answer.json()["run_id"]
        [root] = wait_for(lambda: receiver.named("invoke_agent"), "the run's span")
        # The API's start takes the header too.
        token = (home / "console.token").read_text().strip()
        caller = "00-5bf92f3577b34da6a3ce929d0e0e4737-10f067aa0ba902b8-01"
        started = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/agents/labeller/runs",
            json={"inputs": {"title": "From the API"}},
            headers={"Authorization": f"Bearer {token}", "traceparent": caller},
            timeout=60,
        )
        assert started.status_code in (200, 202), started.text
        api_run = started.json()["run_id"]
        spans = wait_for(lambda: len(receiver.named("invoke_agent")) == 2, "the API run's span")
        assert spans
        [api_root] = [
            s for s in receiver.named("invoke_agent") if s.attributes["agentrun.run.id"] == api_run
        ]
    finally:
        daemon.stop()
        daemon.log.close()
    assert (api_root.trace_id, api_root.parent_span_id) == (
        "5bf92f3577b34da6a3ce929d0e0e4737",
        "10f067aa0ba902b8",
    )
    assert api_root.attributes["agentrun.trigger"] == "manual"
    assert root.attributes["agentrun.run.id"] == run_id
    assert root.attributes["agentrun.trigger"] == "webhook"
    assert (root.trace_id, root.parent_span_id) == (
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00f067aa0ba902b7",
    )
    [chat] = [c for c in receiver.named("chat ") if c.trace_id == root.trace_id]
    assert chat.parent_span_id == root.span_id


def test_explain_says_whether_telemetry_is_on_and_where_it_goes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.helpers import invoke

    off = spec_with(tmp_path, "")
    code, out, _ = invoke(["explain", str(off.path)], capsys)
    assert code == 0 and "telemetry: off (no OTEL_EXPORTER_OTLP_* set)" in out
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    code, out, _ = invoke(["explain", str(off.path)], capsys)
    assert "telemetry: on, OTLP/HTTP to OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318" in out
    explicit = spec_with(
        tmp_path, "telemetry: {endpoint: 'http://tempo:4318', service_name: nightly}\n"
    )
    code, out, _ = invoke(["explain", str(explicit.path)], capsys)
    assert "telemetry: on, OTLP/HTTP to http://tempo:4318 as service nightly" in out
    refused = spec_with(tmp_path, "telemetry: false\n")
    code, out, _ = invoke(["explain", str(refused.path)], capsys)
    assert "telemetry: off (telemetry: false)" in out


def test_agentrun_run_continues_the_trace_in_traceparent(
    tmp_path: Path,
    receiver: OtlpReceiver,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``agentrun run`` over real HTTP (the fake provider, through litellm), a CI job's span."""
    from runner.testing import FakeOpenAIServer
    from tests.helpers import invoke
    from tests.test_cli import fake_spec

    monkeypatch.setenv("FAKE_API_KEY", "sk-test-not-a-real-key")
    monkeypatch.setenv("AGENTRUN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TRACEPARENT", "00-11111111111111111111111111111111-2222222222222222-01")
    with FakeOpenAIServer([call("read_file", {"path": "data/a.txt"}), text("alpha")]) as server:
        spec = fake_spec(tmp_path, server.api_base, f"telemetry: {{endpoint: {receiver.url}}}\n")
        code, _, err = invoke(["run", str(spec), "--json"], capsys)
    assert code == 0, err
    [root] = receiver.named("invoke_agent")
    assert (root.trace_id, root.parent_span_id) == ("1" * 32, "2" * 16)
    assert len(receiver.named("chat ")) == 2 and len(receiver.named("execute_tool")) == 1
