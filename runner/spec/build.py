"""Step 3 of loading: a schema-valid document → the typed :class:`AgentSpec`.

No checks beyond the schema's happen here (those are :mod:`runner.spec.checks`): the
document has passed :mod:`runner.spec.validation`, so every key has the expected type.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from pathlib import Path
from typing import Any

from .specclass import replace
from .types import (
    TRIGGER_KINDS,
    AgentSpec,
    AskHumanToolSpec,
    BudgetsSpec,
    CeilingsSpec,
    CheckSpec,
    ExecutorSpec,
    FileToolSpec,
    FunctionToolSpec,
    GuardSpec,
    HttpToolSpec,
    InputSpec,
    LoopDetectionSpec,
    McpServerSpec,
    ModelSpec,
    NotifyChannelSpec,
    OutputSpec,
    Pricing,
    QueueSpec,
    RulesSpec,
    SandboxSpec,
    ShellToolSpec,
    TelemetrySpec,
    ToolsSpec,
    TriggerSpec,
    WatchSpec,
    WebhookSpec,
    parse_byte_size,
    parse_duration,
)
from .vocabulary import AutonomyLevel, Risk


def _given_word(data: dict[str, Any], name: str, vocabulary: type[StrEnum]) -> dict[str, Any]:
    """Key ``name`` as its member of ``vocabulary`` (:class:`Risk`, ...) if ``data`` sets it.

    The schema has checked that the word is one of the enum's values.
    """
    return {name: vocabulary(data[name])} if name in data else {}


def _tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value) if value else ()


def _duration(value: Any) -> float | None:
    """Seconds in a duration the schema gives no default (absent: None; ``"0s"``: 0)."""
    return None if value is None else parse_duration(value)


def _given(data: dict[str, Any], *names: str) -> dict[str, Any]:
    """The keys among ``names`` that ``data`` sets, as they are written.

    A key the spec leaves out is not passed, so its field takes the class's default, which
    for every key with a default is the schema's (:data:`~runner.spec.types.SCHEMA_DEFAULT`):
    the builder writes no default of its own.
    """
    return {name: data[name] for name in names if name in data}


def _given_lists(data: dict[str, Any], *names: str) -> dict[str, Any]:
    """The list keys among ``names`` that ``data`` sets, as tuples; an empty list is not set.

    So ``patterns: []`` means the default patterns, as it always has.
    """
    return {name: tuple(data[name]) for name in names if data.get(name)}


def _given_durations(data: dict[str, Any], *names: str) -> dict[str, Any]:
    """The duration keys among ``names`` that ``data`` sets, in seconds; zero is not set.

    The schema lets ``"0s"`` through (its ``exclusiveMinimum`` holds for numbers only), and
    a zero timeout, debounce or wait has always meant the default.
    """
    seconds = {name: parse_duration(data[name]) for name in names if data.get(name) is not None}
    return {name: value for name, value in seconds.items() if value}


def _file_tool(data: dict[str, Any] | None) -> FileToolSpec | None:
    if data is None:
        return None
    return FileToolSpec(paths=_tuple(data["paths"]), **_given_word(data, "risk", Risk))


def _model(data: str | dict[str, Any]) -> ModelSpec:
    if isinstance(data, str):
        return ModelSpec(id=data)
    pricing = data.get("pricing")
    return ModelSpec(
        id=data["id"],
        params=dict(data.get("params") or {}),
        timeout=_duration(data.get("timeout")),
        pricing=Pricing(**pricing) if pricing else None,
        **_given(data, "api_base", "api_key_env"),
        **_given_lists(data, "fallbacks"),
    )


def _input(name: str, data: dict[str, Any]) -> InputSpec:
    default = data.get("default")
    return InputSpec(
        name=name,
        type=data["type"],
        default=default,
        required=bool(data.get("required", default is None)),
        **_given(data, "description"),
        **_given_lists(data, "values"),
    )


def _mode(word: str | bool) -> str:
    """A sandbox mode word; ``false`` is ``off`` (YAML 1.1 reads an unquoted ``off`` so)."""
    return "off" if word is False else str(word)


def _sandbox(value: Any, base: SandboxSpec) -> SandboxSpec:
    """``base`` with the keys ``value`` sets (a mode word, or a sandbox object) replaced.

    The agent's ``sandbox`` is read over the schema's defaults; a tool's over the agent's,
    so a tool that writes ``sandbox: {network: ...}`` keeps the agent's mode and paths.
    """
    if value is None:
        return base
    if isinstance(value, str | bool):
        return replace(base, mode=_mode(value))
    changes: dict[str, Any] = {"mode": _mode(value["mode"])} if "mode" in value else {}
    for key in ("writable", "readable"):  # [] is given too: nothing writable
        if key in value:
            changes[key] = tuple(value[key])
    if "network" in value:
        network = value["network"]
        changes["network"] = () if network == "none" else _tuple(network["allow"])
    if "limits" in value:
        limits = value["limits"]
        changes["limits"] = replace(
            base.limits,
            **_given(limits, "processes"),
            **_given_durations(limits, "cpu_time"),
            **{k: parse_byte_size(limits[k]) for k in ("memory", "file_size") if k in limits},
        )
    return replace(base, **changes)


def _telemetry(value: bool | dict[str, Any] | None) -> TelemetrySpec:
    """``telemetry``: left out (the environment decides), a boolean, or an object (on)."""
    if value is None:
        return TelemetrySpec()
    if isinstance(value, bool):
        return TelemetrySpec(enabled=value)
    return TelemetrySpec(
        enabled=value.get("enabled", True), **_given(value, "endpoint", "service_name")
    )


def _shell(data: dict[str, Any], sandbox: SandboxSpec) -> ShellToolSpec:
    return ShellToolSpec(
        commands=_tuple(data["commands"]),
        sandbox=_sandbox(data.get("sandbox"), sandbox),
        **_given(data, "interpreter", "cwd"),
        **_given_word(data, "risk", Risk),
    )


def _http(data: dict[str, Any]) -> HttpToolSpec:
    return HttpToolSpec(
        hosts=_tuple(data["hosts"]),
        headers_env=dict(data.get("headers_env") or {}),
        **_given(data, "max_bytes", "private_addresses"),
        **_given_word(data, "risk", Risk),
        **_given_lists(data, "methods"),
    )


def _mcp_server(name: str, data: dict[str, Any], sandbox: SandboxSpec) -> McpServerSpec:
    return McpServerSpec(
        name=name,
        sandbox=_sandbox(data.get("sandbox"), sandbox),
        allow=_tuple(data["allow"]),
        headers_env=dict(data.get("headers_env") or {}),
        **_given(data, "command", "cwd", "url", "trusted"),
        **_given_word(data, "risk", Risk),
        **_given_lists(data, "args", "env"),
        **_given_durations(data, "startup_timeout"),
    )


def _tools(data: dict[str, Any], sandbox: SandboxSpec) -> ToolsSpec:
    shell = data.get("shell")
    http = data.get("http_request")
    ask = data.get("ask_human")
    return ToolsSpec(
        read_file=_file_tool(data.get("read_file")),
        list_dir=_file_tool(data.get("list_dir")),
        write_file=_file_tool(data.get("write_file")),
        edit_file=_file_tool(data.get("edit_file")),
        shell=None if shell is None else _shell(shell, sandbox),
        http_request=None if http is None else _http(http),
        mcp={
            name: _mcp_server(name, server, sandbox)
            for name, server in (data.get("mcp") or {}).items()
        },
        functions={
            name: FunctionToolSpec(
                name=name, function=fn["function"], **_given_word(fn, "risk", Risk)
            )
            for name, fn in (data.get("functions") or {}).items()
        },
        ask_human=None
        if ask is None
        else AskHumanToolSpec(answer_timeout=_duration(ask.get("answer_timeout"))),
    )


def _check(index: int, data: dict[str, Any]) -> CheckSpec:
    return CheckSpec(
        index=index,
        **_given(data, "name", "command", "file", "matches", "answer_matches", "answer_schema"),
        **_given_durations(data, "timeout"),
    )


def _guard(index: int, data: dict[str, Any]) -> GuardSpec:
    return GuardSpec(
        index=index,
        tools=_tuple(data["tools"]),
        **_given(data, "name", "command", "prompt", "model"),
        **_given_durations(data, "timeout"),
    )


def _ceilings(data: dict[str, Any]) -> CeilingsSpec:
    return CeilingsSpec(
        max_duration=_duration(data.get("max_duration")),
        **_given(
            data, "max_steps", "max_tool_calls", "max_tokens", "max_cost_usd", "max_check_retries"
        ),
    )


def _watch(data: dict[str, Any]) -> WatchSpec:
    return WatchSpec(
        paths=_tuple(data["paths"]),
        **_given(data, "poll"),
        **_given_lists(data, "patterns", "ignore", "events"),
        **_given_durations(data, "debounce", "max_wait"),
    )


def _webhook(data: dict[str, Any]) -> WebhookSpec:
    return WebhookSpec(
        secret_env=data["secret_env"],
        inputs=dict(data.get("inputs") or {}),
        **_given(data, "path", "max_body"),
    )


def _queue(data: dict[str, Any]) -> QueueSpec:
    return QueueSpec(
        stream=data["stream"],
        inputs=dict(data.get("inputs") or {}),
        **_given(data, "group", "url", "field"),
        **_given_durations(data, "claim_after"),
    )


def _trigger(index: int, data: dict[str, Any]) -> TriggerSpec:
    kinds = [k for k in TRIGGER_KINDS if k in data]
    watch = data.get("watch")
    webhook = data.get("webhook")
    queue = data.get("queue")
    return TriggerSpec(
        kind=kinds[0] if kinds else None,  # None: no kind, which the checks report
        index=index,
        watch=None if watch is None else _watch(watch),
        webhook=None if webhook is None else _webhook(webhook),
        queue=None if queue is None else _queue(queue),
        **_given(data, "cron", "timezone", "catchup", "catchup_max", "manual"),
    )


def build_spec(data: dict[str, Any], path: Path, source: bytes) -> AgentSpec:
    """Turn a schema-valid document into an :class:`AgentSpec` (no checks beyond the schema).

    Args:
        data: the document, valid against the schema.
        path: the spec file (absolute); ``workdir`` resolves against its folder.
        source: the file's bytes, hashed into ``source_sha256``.
    """
    budgets = data.get("budgets") or {}
    sandbox = _sandbox(data.get("sandbox"), SandboxSpec())
    return AgentSpec(
        version=data["version"],
        name=data["name"],
        model=_model(data["model"]),
        inputs={k: _input(k, v) for k, v in (data.get("inputs") or {}).items()},
        goal=data["goal"],
        tools=_tools(data.get("tools") or {}, sandbox),
        sandbox=sandbox,
        telemetry=_telemetry(data.get("telemetry")),
        rules=RulesSpec(**_given_lists(data.get("rules") or {}, "allow", "ask", "deny")),
        budgets=BudgetsSpec(
            max_duration=_duration(budgets.get("max_duration")),
            **_given(
                budgets,
                "max_steps",
                "max_tool_calls",
                "max_tokens",
                "max_cost_usd",
                "max_tool_output",
            ),
            **_given_durations(budgets, "tool_timeout"),
            ceilings=_ceilings(budgets.get("ceilings") or {}),
        ),
        loop_detection=LoopDetectionSpec(
            **_given(data.get("loop_detection") or {}, "warn_after", "stop_after")
        ),
        output=OutputSpec(**_given(data.get("output") or {}, "schema", "max_retries")),
        executor=ExecutorSpec(**_given(data.get("executor") or {}, "queue")),
        checks=tuple(_check(i, c) for i, c in enumerate(data.get("checks") or [])),
        notify=tuple(
            NotifyChannelSpec(url=c["url"], events=_tuple(c["events"]))
            for c in data.get("notify") or []
        ),
        guards=tuple(_guard(i, g) for i, g in enumerate(data.get("guards") or [])),
        triggers=tuple(_trigger(i, t) for i, t in enumerate(data.get("triggers") or [])),
        workdir=(path.parent / data.get("workdir", ".")).resolve(),
        path=path,
        source_sha256=hashlib.sha256(source).hexdigest(),
        **_given(data, "description", "instructions", "unattended", "concurrency", "on_interrupt"),
        **_given_word(data, "autonomy", AutonomyLevel),
        **_given(data, "max_check_retries"),
        **_given_lists(data, "env", "escalate_on"),
    )
