"""Step 3 of loading: a schema-valid document → the typed :class:`AgentSpec`.

No checks beyond the schema's happen here (those are :mod:`runner.spec.checks`): the
document has passed :mod:`runner.spec.validation`, so every key has the expected type.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from .types import (
    TRIGGER_KINDS,
    AgentSpec,
    BudgetsSpec,
    FileToolSpec,
    FunctionToolSpec,
    HttpToolSpec,
    InputSpec,
    LoopDetectionSpec,
    McpServerSpec,
    ModelSpec,
    OutputSpec,
    Pricing,
    RulesSpec,
    ShellToolSpec,
    ToolsSpec,
    TriggerSpec,
    WatchSpec,
    WebhookSpec,
    parse_duration,
)


def _tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value) if value else ()


def _duration(value: Any, default: float | None) -> float | None:
    return default if value is None else parse_duration(value)


def _file_tool(data: dict[str, Any] | None) -> FileToolSpec | None:
    if data is None:
        return None
    return FileToolSpec(paths=_tuple(data["paths"]), risk=data.get("risk"))


def _model(data: str | dict[str, Any]) -> ModelSpec:
    if isinstance(data, str):
        return ModelSpec(id=data)
    pricing = data.get("pricing")
    return ModelSpec(
        id=data["id"],
        params=dict(data.get("params") or {}),
        fallbacks=_tuple(data.get("fallbacks")),
        api_base=data.get("api_base"),
        api_key_env=data.get("api_key_env"),
        timeout=_duration(data.get("timeout"), None),
        pricing=Pricing(**pricing) if pricing else None,
    )


def _input(name: str, data: dict[str, Any]) -> InputSpec:
    default = data.get("default")
    return InputSpec(
        name=name,
        type=data["type"],
        description=data.get("description", ""),
        default=default,
        required=bool(data.get("required", default is None)),
        values=_tuple(data.get("values")),
    )


def _tools(data: dict[str, Any]) -> ToolsSpec:
    shell = data.get("shell")
    http = data.get("http_request")
    return ToolsSpec(
        read_file=_file_tool(data.get("read_file")),
        list_dir=_file_tool(data.get("list_dir")),
        write_file=_file_tool(data.get("write_file")),
        edit_file=_file_tool(data.get("edit_file")),
        shell=None
        if shell is None
        else ShellToolSpec(
            commands=_tuple(shell["commands"]),
            interpreter=shell.get("interpreter"),
            cwd=shell.get("cwd"),
            risk=shell.get("risk"),
        ),
        http_request=None
        if http is None
        else HttpToolSpec(
            hosts=_tuple(http["hosts"]),
            methods=_tuple(http.get("methods")) or ("GET",),
            max_bytes=http.get("max_bytes", 1_048_576),
            headers_env=dict(http.get("headers_env") or {}),
            private_addresses=bool(http.get("private_addresses", False)),
            risk=http.get("risk"),
        ),
        mcp={
            name: McpServerSpec(
                name=name,
                allow=_tuple(server["allow"]),
                command=server.get("command"),
                args=_tuple(server.get("args")),
                env=_tuple(server.get("env")),
                cwd=server.get("cwd"),
                url=server.get("url"),
                headers_env=dict(server.get("headers_env") or {}),
                trusted=bool(server.get("trusted", False)),
                startup_timeout=_duration(server.get("startup_timeout"), 30.0) or 30.0,
                risk=server.get("risk"),
            )
            for name, server in (data.get("mcp") or {}).items()
        },
        functions={
            name: FunctionToolSpec(name=name, function=fn["function"], risk=fn.get("risk"))
            for name, fn in (data.get("functions") or {}).items()
        },
    )


def _trigger(index: int, data: dict[str, Any]) -> TriggerSpec:
    kinds = [k for k in TRIGGER_KINDS if k in data]
    watch = data.get("watch")
    webhook = data.get("webhook")
    return TriggerSpec(
        kind=kinds[0] if kinds else "",
        index=index,
        cron=data.get("cron"),
        timezone=data.get("timezone", "UTC"),
        catchup=data.get("catchup", "latest"),
        catchup_max=data.get("catchup_max", 10),
        watch=None
        if watch is None
        else WatchSpec(
            paths=_tuple(watch["paths"]),
            patterns=_tuple(watch.get("patterns")) or ("*",),
            ignore=_tuple(watch.get("ignore")),
            events=_tuple(watch.get("events")) or ("created", "modified", "moved"),
            debounce=_duration(watch.get("debounce"), 2.0) or 2.0,
            max_wait=_duration(watch.get("max_wait"), 30.0) or 30.0,
            poll=bool(watch.get("poll", False)),
        ),
        manual=data.get("manual"),
        webhook=None
        if webhook is None
        else WebhookSpec(
            secret_env=webhook["secret_env"],
            path=webhook.get("path"),
            inputs=dict(webhook.get("inputs") or {}),
            max_body=webhook.get("max_body", 1_048_576),
        ),
    )


def build_spec(data: dict[str, Any], path: Path, source: bytes) -> AgentSpec:
    """Turn a schema-valid document into an :class:`AgentSpec` (no checks beyond the schema)."""
    budgets = data.get("budgets") or {}
    loop = data.get("loop_detection") or {}
    output = data.get("output") or {}
    rules = data.get("rules") or {}
    workdir = (path.parent / data.get("workdir", ".")).resolve()
    return AgentSpec(
        version=data["version"],
        name=data["name"],
        description=data.get("description", ""),
        model=_model(data["model"]),
        inputs={k: _input(k, v) for k, v in (data.get("inputs") or {}).items()},
        instructions=data.get("instructions", ""),
        goal=data["goal"],
        tools=_tools(data.get("tools") or {}),
        rules=RulesSpec(
            allow=_tuple(rules.get("allow")),
            ask=_tuple(rules.get("ask")),
            deny=_tuple(rules.get("deny")),
        ),
        autonomy=data.get("autonomy", "approve-writes"),
        unattended=data.get("unattended", "fail"),
        budgets=BudgetsSpec(
            max_steps=budgets.get("max_steps", 20),
            max_tool_calls=budgets.get("max_tool_calls"),
            max_tokens=budgets.get("max_tokens"),
            max_cost_usd=budgets.get("max_cost_usd"),
            max_duration=_duration(budgets.get("max_duration"), None),
            tool_timeout=_duration(budgets.get("tool_timeout"), 60.0) or 60.0,
            max_tool_output=budgets.get("max_tool_output", 65_536),
        ),
        loop_detection=LoopDetectionSpec(
            warn_after=loop.get("warn_after", 3), stop_after=loop.get("stop_after", 5)
        ),
        output=OutputSpec(schema=output.get("schema"), max_retries=output.get("max_retries", 2)),
        triggers=tuple(_trigger(i, t) for i, t in enumerate(data.get("triggers") or [])),
        concurrency=data.get("concurrency", "forbid"),
        workdir=workdir,
        env=_tuple(data.get("env")),
        path=path,
        source_sha256=hashlib.sha256(source).hexdigest(),
    )
