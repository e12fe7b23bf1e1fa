"""Spec loading: YAML with positions → JSON Schema → typed :class:`AgentSpec` → semantic checks.

Every problem is a :class:`~runner.errors.Diagnostic` at the file's own line and column,
and all of them are reported at once, in file order. Entry points:

- :func:`load_spec` returns an :class:`AgentSpec` or raises :class:`~runner.errors.SpecError`;
- :func:`check_spec` returns the spec (or None) and every diagnostic, warnings included.

The typed classes mirror ``schemas/agent.schema.json``; each names the schema object it
mirrors in ``SCHEMA_POINTER`` and a test checks that their fields and the schema's
properties agree.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, ClassVar

from .errors import Diagnostic, SpecError
from .specclass import SpecClass, field

#: Largest spec file read, in bytes. Real specs are a few KiB.
MAX_SPEC_BYTES = 1_000_000

AUTONOMY_LEVELS = ("suggest", "approve-all", "approve-writes", "approve-risky", "autonomous")
RISKS = ("low", "medium", "high")
BUILTIN_TOOLS = ("read_file", "list_dir", "write_file", "edit_file", "shell", "http_request")
TRIGGER_KINDS = ("cron", "watch", "manual", "webhook")

_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: str | float | int) -> float:
    """Seconds in a duration: a number of seconds, or ``"500ms"``, ``"90s"``, ``"15m"``, ``"2h"``.

    Raises:
        ValueError: for any other form (the schema refuses those before this is called).
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"not a duration: {value!r}")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


class Pricing(SpecClass):
    """Model price in USD per million tokens."""

    SCHEMA_POINTER: ClassVar[str] = "#/properties/model/properties/pricing"
    input_per_mtok: float
    output_per_mtok: float


class ModelSpec(SpecClass):
    """The model: a litellm id, call parameters, fallbacks, endpoint, key variable, timeout (s)."""

    SCHEMA_POINTER: ClassVar[str] = "#/properties/model"
    id: str
    params: dict[str, Any] = field(default_factory=dict)
    fallbacks: tuple[str, ...] = ()
    api_base: str | None = None
    api_key_env: str | None = None
    timeout: float | None = None
    pricing: Pricing | None = None


class InputSpec(SpecClass):
    """One typed input parameter; ``name`` is its key in ``inputs``."""

    SCHEMA_POINTER: ClassVar[str] = "#/$defs/input"
    KEYED_BY: ClassVar[str] = "name"
    name: str
    type: str
    description: str = ""
    default: Any = None
    required: bool = True
    values: tuple[Any, ...] = ()

    @property
    def has_default(self) -> bool:
        """Whether the spec gives a default (``default: null`` counts as none)."""
        return self.default is not None


class FileToolSpec(SpecClass):
    """A file tool (``read_file``, ``list_dir``, ``write_file``, ``edit_file``) and its roots."""

    SCHEMA_POINTER: ClassVar[str] = "#/$defs/file_tool"
    paths: tuple[str, ...]
    risk: str | None = None


class ShellToolSpec(SpecClass):
    """The shell tool: allowed command patterns, optional interpreter, confined cwd."""

    SCHEMA_POINTER: ClassVar[str] = "#/$defs/tools/properties/shell"
    commands: tuple[str, ...]
    interpreter: str | None = None
    cwd: str | None = None
    risk: str | None = None


class HttpToolSpec(SpecClass):
    """The HTTP tool: host allowlist, methods, response size cap (bytes), headers from env."""

    SCHEMA_POINTER: ClassVar[str] = "#/$defs/tools/properties/http_request"
    hosts: tuple[str, ...]
    methods: tuple[str, ...] = ("GET",)
    max_bytes: int = 1_048_576
    headers_env: dict[str, str] = field(default_factory=dict)
    private_addresses: bool = False
    risk: str | None = None


class McpServerSpec(SpecClass):
    """One MCP server (stdio ``command`` or streamable HTTP ``url``); ``name`` is its key."""

    SCHEMA_POINTER: ClassVar[str] = "#/$defs/mcp_server"
    KEYED_BY: ClassVar[str] = "name"
    name: str
    allow: tuple[str, ...]
    command: str | None = None
    args: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    cwd: str | None = None
    url: str | None = None
    headers_env: dict[str, str] = field(default_factory=dict)
    trusted: bool = False
    startup_timeout: float = 30.0
    risk: str | None = None


class FunctionToolSpec(SpecClass):
    """A Python function tool ``module:function``; ``name`` is the tool's name."""

    SCHEMA_POINTER: ClassVar[str] = "#/$defs/tools/properties/functions/additionalProperties"
    KEYED_BY: ClassVar[str] = "name"
    name: str
    function: str
    risk: str | None = None


class ToolsSpec(SpecClass):
    """Every tool source the spec lists; an unlisted tool does not exist for the model."""

    SCHEMA_POINTER: ClassVar[str] = "#/$defs/tools"
    read_file: FileToolSpec | None = None
    list_dir: FileToolSpec | None = None
    write_file: FileToolSpec | None = None
    edit_file: FileToolSpec | None = None
    shell: ShellToolSpec | None = None
    http_request: HttpToolSpec | None = None
    mcp: dict[str, McpServerSpec] = field(default_factory=dict)
    functions: dict[str, FunctionToolSpec] = field(default_factory=dict)

    def builtin_names(self) -> list[str]:
        """Names of the built-in tools the spec enables, in a fixed order."""
        return [name for name in BUILTIN_TOOLS if getattr(self, name) is not None]


class RulesSpec(SpecClass):
    """``allow`` / ``ask`` / ``deny`` patterns (``TOOL`` or ``TOOL:ARG=GLOB``)."""

    SCHEMA_POINTER: ClassVar[str] = "#/properties/rules"
    allow: tuple[str, ...] = ()
    ask: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()


class BudgetsSpec(SpecClass):
    """Hard limits: counts, tokens, USD, seconds (durations) and bytes (tool output)."""

    SCHEMA_POINTER: ClassVar[str] = "#/properties/budgets"
    max_steps: int = 20
    max_tool_calls: int | None = None
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    max_duration: float | None = None
    tool_timeout: float = 60.0
    max_tool_output: int = 65_536


class LoopDetectionSpec(SpecClass):
    """Repeated-call thresholds: warn the model, then stop with ``loop_detected``."""

    SCHEMA_POINTER: ClassVar[str] = "#/properties/loop_detection"
    warn_after: int = 3
    stop_after: int = 5


class OutputSpec(SpecClass):
    """Structured output: a JSON Schema for the final answer and how often to retry."""

    SCHEMA_POINTER: ClassVar[str] = "#/properties/output"
    schema: dict[str, Any] | None = None
    max_retries: int = 2


class WatchSpec(SpecClass):
    """A file-watch trigger's settings; ``debounce`` and ``max_wait`` in seconds."""

    SCHEMA_POINTER: ClassVar[str] = "#/$defs/trigger/properties/watch"
    paths: tuple[str, ...]
    patterns: tuple[str, ...] = ("*",)
    ignore: tuple[str, ...] = ()
    events: tuple[str, ...] = ("created", "modified", "moved")
    debounce: float = 2.0
    max_wait: float = 30.0
    poll: bool = False


class WebhookSpec(SpecClass):
    """A webhook trigger: path, secret variable, payload → input mapping, body cap (bytes)."""

    SCHEMA_POINTER: ClassVar[str] = "#/$defs/trigger/properties/webhook"
    secret_env: str
    path: str | None = None
    inputs: dict[str, str] = field(default_factory=dict)
    max_body: int = 1_048_576


class TriggerSpec(SpecClass):
    """One trigger; ``kind`` says which of ``cron``/``watch``/``manual``/``webhook`` is set."""

    SCHEMA_POINTER: ClassVar[str] = "#/$defs/trigger"
    DERIVED: ClassVar[tuple[str, ...]] = ("kind", "index")
    kind: str
    index: int
    cron: str | None = None
    timezone: str = "UTC"
    catchup: str = "latest"
    catchup_max: int = 10
    watch: WatchSpec | None = None
    manual: bool | None = None
    webhook: WebhookSpec | None = None


class AgentSpec(SpecClass):
    """A loaded, validated agent spec.

    Attributes:
        path: the spec file (absolute).
        workdir: the tools' working directory (absolute; default the spec's folder).
        source_sha256: hash of the file's bytes, recorded with every run.
    """

    SCHEMA_POINTER: ClassVar[str] = "#"
    DERIVED: ClassVar[tuple[str, ...]] = ("path", "source_sha256")
    version: int
    name: str
    model: ModelSpec
    goal: str
    path: Path
    workdir: Path
    source_sha256: str
    description: str = ""
    inputs: dict[str, InputSpec] = field(default_factory=dict)
    instructions: str = ""
    tools: ToolsSpec = field(default_factory=ToolsSpec)
    rules: RulesSpec = field(default_factory=RulesSpec)
    autonomy: str = "approve-writes"
    unattended: str = "fail"
    budgets: BudgetsSpec = field(default_factory=BudgetsSpec)
    loop_detection: LoopDetectionSpec = field(default_factory=LoopDetectionSpec)
    output: OutputSpec = field(default_factory=OutputSpec)
    triggers: tuple[TriggerSpec, ...] = ()
    concurrency: str = "forbid"
    env: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------
# building the typed spec from a schema-valid document


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


# ---------------------------------------------------------------------------------------------
# entry points


def _read(path: Path, shown: str, source: bytes | None = None) -> tuple[bytes, str]:
    if source is not None:
        raw = source
    elif not path.exists():
        raise SpecError.single(shown, "spec file not found", "check the path")
    elif path.is_dir():
        raise SpecError.single(shown, "is a folder, not a spec file", "name a .yaml file")
    else:
        try:
            raw = path.read_bytes()
        except OSError as error:
            raise SpecError.single(shown, f"cannot read the spec: {error.strerror}") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError.single(
            shown, f"spec is {len(raw)} bytes, more than the {MAX_SPEC_BYTES} allowed"
        )
    try:
        return raw, raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SpecError.single(
            shown, f"spec is not UTF-8 text (byte {error.start})", "save it as UTF-8"
        ) from None


def check_spec(
    path: str | Path, source: bytes | None = None
) -> tuple[AgentSpec | None, list[Diagnostic]]:
    """Load and check a spec, collecting every problem instead of stopping at the first.

    Args:
        path: the spec file; relative paths in the spec resolve against its folder.
        source: the file's bytes, when already read (the daemon runs the last good version
            of a spec, whatever the file holds now).

    Returns:
        ``(spec, diagnostics)``: ``spec`` is None when any diagnostic is an error;
        ``diagnostics`` are in file order and include warnings.

    Raises:
        SpecError: only for a file that cannot be read at all (missing, a folder, not UTF-8).
    """
    from . import schema as schema_module
    from . import yamlpos
    from .checks import semantic_checks

    shown = str(path)
    file = Path(path)
    raw, text = _read(file, shown, source)
    located, diagnostics = yamlpos.parse(text, shown)
    if located is None:
        return None, diagnostics
    if not isinstance(located.value, dict):
        found = "a list" if isinstance(located.value, list) else f"{located.value!r}"
        return None, [
            *diagnostics,
            located.diagnostic(
                shown,
                located.value_pos(()),
                f"the spec must be a mapping of keys to values, not {found}",
                "start with 'version: 1' and 'name: ...'; see `agentrun init NAME`",
            ),
        ]
    diagnostics = sorted(
        diagnostics + schema_module.diagnose(located, shown), key=lambda d: (d.line, d.column)
    )
    if any(d.severity == "error" for d in diagnostics):
        return None, diagnostics
    spec = build_spec(located.value, file.resolve(), raw)
    diagnostics = sorted(
        diagnostics + semantic_checks(spec, located, shown), key=lambda d: (d.line, d.column)
    )
    if any(d.severity == "error" for d in diagnostics):
        return None, diagnostics
    return spec, diagnostics


def load_spec(path: str | Path, source: bytes | None = None) -> AgentSpec:
    """Load a spec file (or its given ``source`` bytes) into an :class:`AgentSpec`.

    Raises:
        SpecError: with every located diagnostic, when the spec is invalid.
    """
    spec, diagnostics = check_spec(path, source)
    if spec is None:
        raise SpecError(diagnostics)
    return spec
