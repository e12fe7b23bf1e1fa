"""The typed spec: frozen classes that mirror ``schemas/agent.schema.json``.

The leaf of the spec package: it imports nothing of agentrun but the frozen-record base
(:mod:`runner.spec.specclass`), so every layer above (the loader, the compiler, tools,
models, policy, budgets) can name these types without importing the loading pipeline.

Each class names the schema object it mirrors in ``SCHEMA_POINTER``; ``DERIVED`` fields are
computed by the loader and ``KEYED_BY`` is the mapping key an object sits under. A test
(``tests/test_schema_agreement.py``) checks that the fields and the schema's properties agree.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

from .specclass import SpecClass, field

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
