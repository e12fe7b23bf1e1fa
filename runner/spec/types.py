"""The typed spec: frozen classes that mirror ``schemas/agent.schema.json``.

The leaf of the spec package: it imports nothing of agentrun but the frozen-record base
(:mod:`runner.spec.specclass`), the schema document (:mod:`runner.spec.schema`, plain
JSON), the catalogue of built-in tools (:mod:`runner.spec.builtin_tools`, plain data) and
the spec's vocabulary (:mod:`runner.spec.vocabulary`: autonomy level, risk, trigger kind),
so every layer above (the loader, the compiler, tools, models, policy, budgets) can name
these types without importing the loading pipeline.

Each class names the schema object it mirrors in ``SCHEMA_POINTER``; ``DERIVED`` fields are
computed by the loader and ``KEYED_BY`` is the mapping key an object sits under. A test
(``tests/test_schema_agreement.py``) checks that the fields and the schema's properties agree.

Defaults are written once, in the schema: a field whose default is :data:`SCHEMA_DEFAULT`
takes its schema property's ``default`` when the class is made (a duration in seconds, a
list as a tuple, a word of the vocabulary as its enum member), and the builder
(:mod:`runner.spec.build`) passes only the keys a spec sets. The other defaults here
(``None``, ``""``, empty) stand for a key left out, which the schema gives no value.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from .builtin_tools import BUILTIN_TOOLS
from .schema import property_schema
from .specclass import SpecClass, field
from .vocabulary import AutonomyLevel, Risk, TriggerKind

AUTONOMY_LEVELS: tuple[AutonomyLevel, ...] = tuple(AutonomyLevel)
RISKS: tuple[Risk, ...] = tuple(Risk)
TRIGGER_KINDS: tuple[TriggerKind, ...] = tuple(TriggerKind)

#: The vocabulary's enums by their values: a schema ``enum`` with these values is one of them.
_VOCABULARY: dict[frozenset[str], type[StrEnum]] = {
    frozenset(enum): enum for enum in (AutonomyLevel, Risk, TriggerKind)
}

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


_BYTE_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?) ?(B|KB|KiB|MB|MiB|GB|GiB|TB|TiB)$")
_UNIT_BYTES = {
    "B": 1,
    "KB": 10**3,
    "KiB": 2**10,
    "MB": 10**6,
    "MiB": 2**20,
    "GB": 10**9,
    "GiB": 2**30,
    "TB": 10**12,
    "TiB": 2**40,
}


def parse_byte_size(value: str | int) -> int:
    """Bytes in a size: a number of bytes, or ``"512MiB"``, ``"2GiB"``, ``"100MB"``, ``"64KiB"``.

    Units as IEC 80000-13 names them: ``KiB`` is 1,024 bytes, ``KB`` 1,000.

    Raises:
        ValueError: for any other form (the schema refuses those before this is called).
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _BYTE_SIZE.match(str(value))
    if not match:
        raise ValueError(f"not a size in bytes: {value!r}")
    return int(float(match.group(1)) * _UNIT_BYTES[match.group(2)])


class _SchemaDefault:
    __slots__ = ()

    def __repr__(self) -> str:
        return "SCHEMA_DEFAULT"


#: The default of a field whose schema property declares one: the class reads it from the
#: schema when it is made (typed ``Any`` so that it stands in for a value of any type).
SCHEMA_DEFAULT: Any = _SchemaDefault()


def schema_default(pointer: str, name: str) -> Any:
    """The ``default`` of property ``name`` of the schema object at ``pointer``, as a value.

    A duration becomes seconds (:func:`parse_duration`), a list a tuple and a word of the
    spec's vocabulary its enum member (:class:`~runner.spec.vocabulary.Risk`, ...), as the
    spec classes hold them.

    Raises:
        KeyError: when the property declares no default.
    """
    node = property_schema(pointer, name)
    if "default" not in node:
        raise KeyError(f"{pointer}/properties/{name} declares no default in the schema")
    value = node["default"]
    if node.get("$ref") == "#/$defs/duration":
        return parse_duration(value)
    if node.get("$ref") == "#/$defs/byte_size":
        return parse_byte_size(value)
    vocabulary = _VOCABULARY.get(frozenset(node.get("enum", ())))
    if vocabulary is not None:
        return vocabulary(value)
    return tuple(value) if isinstance(value, list) else value


class SpecType(SpecClass):
    """Base of the spec's classes: a frozen record mirroring one schema object.

    ``SCHEMA_POINTER`` names the object; each field given :data:`SCHEMA_DEFAULT` takes the
    default its property there declares.
    """

    __slots__ = ()
    SCHEMA_POINTER: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in [n for n, value in cls._DEFAULTS.items() if value is SCHEMA_DEFAULT]:
            cls._DEFAULTS[name] = schema_default(cls.SCHEMA_POINTER, name)
            setattr(cls, name, cls._DEFAULTS[name])


class Pricing(SpecType):
    """Model price in USD per million tokens."""

    SCHEMA_POINTER: ClassVar[str] = "#/properties/model/properties/pricing"
    input_per_mtok: float
    output_per_mtok: float


class ModelSpec(SpecType):
    """The model: a litellm id, call parameters, fallbacks, endpoint, key variable, timeout (s)."""

    SCHEMA_POINTER: ClassVar[str] = "#/properties/model"
    id: str
    params: dict[str, Any] = field(default_factory=dict)
    fallbacks: tuple[str, ...] = ()
    api_base: str | None = None
    api_key_env: str | None = None
    timeout: float | None = None
    pricing: Pricing | None = None


class InputSpec(SpecType):
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


class FileToolSpec(SpecType):
    """A file tool (``read_file``, ``list_dir``, ``write_file``, ``edit_file``) and its roots."""

    SCHEMA_POINTER: ClassVar[str] = "#/$defs/file_tool"
    paths: tuple[str, ...]
    risk: Risk | None = None


class SandboxLimitsSpec(SpecType):
    """Resource limits of each sandboxed process: CPU seconds, bytes, a count of processes."""

    SCHEMA_POINTER: ClassVar[str] = "#/$defs/sandbox/properties/limits"
    cpu_time: float = SCHEMA_DEFAULT
    memory: int = SCHEMA_DEFAULT
    processes: int = SCHEMA_DEFAULT
    file_size: int = SCHEMA_DEFAULT


class SandboxSpec(SpecType):
    """The sandbox of processes started on the agent's behalf (see :mod:`runner.sandbox`).

    Attributes:
        mode: ``required``, ``auto`` or ``off``.
        writable: paths the processes may write, as written (relative to ``workdir`` or
            absolute).
        readable: paths in a hidden place (the home folder) the processes may read, as
            written (relative to ``workdir``, absolute, or ``~/...``).
        network: the egress allowlist of ``network: {allow: [...]}`` (hosts, ``*.domain``,
            either with ``:PORT``); empty for ``network: none`` (the default).
        limits: resource limits of each process.
    """

    SCHEMA_POINTER: ClassVar[str] = "#/$defs/sandbox"
    mode: str = SCHEMA_DEFAULT
    writable: tuple[str, ...] = SCHEMA_DEFAULT
    readable: tuple[str, ...] = SCHEMA_DEFAULT
    network: tuple[str, ...] = ()
    limits: SandboxLimitsSpec = field(default_factory=SandboxLimitsSpec)


class TelemetrySpec(SpecType):
    """OpenTelemetry export of the agent's runs (see :mod:`runner.telemetry`).

    Attributes:
        enabled: True (``telemetry: true`` or an object), False (``telemetry: false`` or
            ``enabled: false``), or None when the spec leaves ``telemetry`` out: then the
            standard ``OTEL_EXPORTER_OTLP_*`` variables decide.
        endpoint: the OTLP/HTTP base URL, or None for the variables' (or the SDK's default,
            ``http://localhost:4318``).
        service_name: the ``service.name`` resource attribute, or None for
            ``OTEL_SERVICE_NAME`` (else ``agentrun``).
    """

    SCHEMA_POINTER: ClassVar[str] = "#/$defs/telemetry"
    enabled: bool | None = None
    endpoint: str | None = None
    service_name: str | None = None


class ShellToolSpec(SpecType):
    """The shell tool: allowed command patterns, optional interpreter, confined cwd."""

    SCHEMA_POINTER: ClassVar[str] = "#/$defs/tools/properties/shell"
    commands: tuple[str, ...]
    interpreter: str | None = None
    cwd: str | None = None
    risk: Risk | None = None
    sandbox: SandboxSpec = field(default_factory=SandboxSpec)


class HttpToolSpec(SpecType):
    """The HTTP tool: host allowlist, methods, response size cap (bytes), headers from env."""

    SCHEMA_POINTER: ClassVar[str] = "#/$defs/tools/properties/http_request"
    hosts: tuple[str, ...]
    methods: tuple[str, ...] = SCHEMA_DEFAULT
    max_bytes: int = SCHEMA_DEFAULT
    headers_env: dict[str, str] = field(default_factory=dict)
    private_addresses: bool = SCHEMA_DEFAULT
    risk: Risk | None = None


class McpServerSpec(SpecType):
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
    trusted: bool = SCHEMA_DEFAULT
    startup_timeout: float = SCHEMA_DEFAULT
    risk: Risk | None = None
    sandbox: SandboxSpec = field(default_factory=SandboxSpec)


class FunctionToolSpec(SpecType):
    """A Python function tool ``module:function``; ``name`` is the tool's name."""

    SCHEMA_POINTER: ClassVar[str] = "#/$defs/tools/properties/functions/additionalProperties"
    KEYED_BY: ClassVar[str] = "name"
    name: str
    function: str
    risk: Risk | None = None


class AskHumanToolSpec(SpecType):
    """The ``ask_human`` tool: the model asks a person; ``answer_timeout`` in seconds or None."""

    SCHEMA_POINTER: ClassVar[str] = "#/$defs/tools/properties/ask_human"
    answer_timeout: float | None = None


class ToolsSpec(SpecType):
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
    ask_human: AskHumanToolSpec | None = None

    def builtin_names(self) -> list[str]:
        """Names of the built-in tools the spec enables, in a fixed order."""
        return [name for name in BUILTIN_TOOLS if getattr(self, name) is not None]


class RulesSpec(SpecType):
    """``allow`` / ``ask`` / ``deny`` patterns (``TOOL`` or ``TOOL:ARG=GLOB``)."""

    SCHEMA_POINTER: ClassVar[str] = "#/properties/rules"
    allow: tuple[str, ...] = ()
    ask: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()


class CeilingsSpec(SpecType):
    """The most a person's grants may raise each limit to (counts, tokens, USD, seconds)."""

    SCHEMA_POINTER: ClassVar[str] = "#/properties/budgets/properties/ceilings"
    max_steps: int | None = None
    max_tool_calls: int | None = None
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    max_duration: float | None = None
    max_check_retries: int | None = None


class BudgetsSpec(SpecType):
    """Hard limits: counts, tokens, USD, seconds (durations) and bytes (tool output)."""

    SCHEMA_POINTER: ClassVar[str] = "#/properties/budgets"
    max_steps: int = SCHEMA_DEFAULT
    max_tool_calls: int | None = None
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    max_duration: float | None = None
    tool_timeout: float = SCHEMA_DEFAULT
    max_tool_output: int = SCHEMA_DEFAULT
    ceilings: CeilingsSpec = field(default_factory=CeilingsSpec)


class LoopDetectionSpec(SpecType):
    """Repeated-call thresholds: warn the model, then stop with ``loop_detected``."""

    SCHEMA_POINTER: ClassVar[str] = "#/properties/loop_detection"
    warn_after: int = SCHEMA_DEFAULT
    stop_after: int = SCHEMA_DEFAULT


class ExecutorSpec(SpecType):
    """Where the daemon runs the agent's runs: the Celery ``queue`` (default ``agentrun``).

    Only the Celery executor (:mod:`runner.daemon.celery_executor`) reads it; the local
    executor runs every agent on the daemon's machine.
    """

    SCHEMA_POINTER: ClassVar[str] = "#/properties/executor"
    queue: str = SCHEMA_DEFAULT


class OutputSpec(SpecType):
    """Structured output: a JSON Schema for the final answer and how often to retry."""

    SCHEMA_POINTER: ClassVar[str] = "#/properties/output"
    schema: dict[str, Any] | None = None
    max_retries: int = SCHEMA_DEFAULT


class CheckSpec(SpecType):
    """One success check: a command (``timeout`` in seconds), a file, or a test of the answer.

    Exactly one of ``command``, ``file``, ``answer_matches`` and ``answer_schema`` is set
    (the spec checks refuse anything else); ``kind`` names it.
    """

    SCHEMA_POINTER: ClassVar[str] = "#/$defs/check"
    DERIVED: ClassVar[tuple[str, ...]] = ("index",)
    index: int
    name: str = ""
    command: str | None = None
    timeout: float = SCHEMA_DEFAULT
    file: str | None = None
    matches: str | None = None
    answer_matches: str | None = None
    answer_schema: dict[str, Any] | None = None

    @property
    def kind(self) -> str:
        """``command``, ``file``, ``answer_matches`` or ``answer_schema`` (first one set)."""
        for kind in ("command", "file", "answer_matches", "answer_schema"):
            if getattr(self, kind) is not None:
                return kind
        return ""

    @property
    def label(self) -> str:
        """The check's name, or what it checks."""
        if self.name:
            return self.name
        if self.command is not None:
            return self.command
        if self.file is not None:
            return f"file {self.file}" + (f" matches {self.matches!r}" if self.matches else "")
        if self.answer_matches is not None:
            return f"answer matches {self.answer_matches!r}"
        return "answer fits the schema"


class NotifyChannelSpec(SpecType):
    """One notification channel: an Apprise URL (``${NAME}`` from the environment), events."""

    SCHEMA_POINTER: ClassVar[str] = "#/$defs/notify_channel"
    url: str
    events: tuple[str, ...]


class GuardSpec(SpecType):
    """One guard: the tools it sees and a ``command`` or a model ``prompt``; ``timeout`` in s."""

    SCHEMA_POINTER: ClassVar[str] = "#/$defs/guard"
    DERIVED: ClassVar[tuple[str, ...]] = ("index",)
    index: int
    tools: tuple[str, ...]
    name: str = ""
    command: str | None = None
    prompt: str | None = None
    model: str | None = None
    timeout: float = SCHEMA_DEFAULT

    @property
    def label(self) -> str:
        """The guard's name, or ``guard N`` (1-based)."""
        return self.name or f"guard {self.index + 1}"


class WatchSpec(SpecType):
    """A file-watch trigger's settings; ``debounce`` and ``max_wait`` in seconds."""

    SCHEMA_POINTER: ClassVar[str] = "#/$defs/trigger/properties/watch"
    paths: tuple[str, ...]
    patterns: tuple[str, ...] = SCHEMA_DEFAULT
    ignore: tuple[str, ...] = ()
    events: tuple[str, ...] = SCHEMA_DEFAULT
    debounce: float = SCHEMA_DEFAULT
    max_wait: float = SCHEMA_DEFAULT
    poll: bool = SCHEMA_DEFAULT


class WebhookSpec(SpecType):
    """A webhook trigger: path, secret variable, payload → input mapping, body cap (bytes)."""

    SCHEMA_POINTER: ClassVar[str] = "#/$defs/trigger/properties/webhook"
    secret_env: str
    path: str | None = None
    inputs: dict[str, str] = field(default_factory=dict)
    max_body: int = SCHEMA_DEFAULT


class QueueSpec(SpecType):
    """A queue trigger: a Redis stream read in a consumer group; ``claim_after`` in seconds.

    ``group`` None means ``agentrun.<agent name>`` (:meth:`group_of`); ``url`` None means
    ``AGENTRUN_QUEUE_URL``, else ``AGENTRUN_BROKER``; ``field`` None means the entry's
    fields themselves are the payload.
    """

    SCHEMA_POINTER: ClassVar[str] = "#/$defs/trigger/properties/queue"
    stream: str
    group: str | None = None
    url: str | None = None
    inputs: dict[str, str] = field(default_factory=dict)
    claim_after: float = SCHEMA_DEFAULT
    field: str | None = None  # last: the name ``field`` is the factory above it

    def group_of(self, agent: str) -> str:
        """The consumer group's name for agent ``agent``: ``group``, or ``agentrun.<agent>``."""
        return self.group or f"agentrun.{agent}"


class TriggerSpec(SpecType):
    """One trigger; ``kind`` says which of ``cron``, ``watch``, ... ``queue`` is set.

    ``kind`` is None only in a spec the checks refuse (a trigger that sets none of them).
    """

    SCHEMA_POINTER: ClassVar[str] = "#/$defs/trigger"
    DERIVED: ClassVar[tuple[str, ...]] = ("kind", "index")
    kind: TriggerKind | None
    index: int
    cron: str | None = None
    timezone: str = SCHEMA_DEFAULT
    catchup: str = SCHEMA_DEFAULT
    catchup_max: int = SCHEMA_DEFAULT
    watch: WatchSpec | None = None
    manual: bool | None = None
    webhook: WebhookSpec | None = None
    queue: QueueSpec | None = None


class AgentSpec(SpecType):
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
    autonomy: AutonomyLevel = SCHEMA_DEFAULT
    unattended: str = SCHEMA_DEFAULT
    budgets: BudgetsSpec = field(default_factory=BudgetsSpec)
    loop_detection: LoopDetectionSpec = field(default_factory=LoopDetectionSpec)
    output: OutputSpec = field(default_factory=OutputSpec)
    checks: tuple[CheckSpec, ...] = ()
    max_check_retries: int = SCHEMA_DEFAULT
    escalate_on: tuple[str, ...] = ()
    notify: tuple[NotifyChannelSpec, ...] = ()
    guards: tuple[GuardSpec, ...] = ()
    triggers: tuple[TriggerSpec, ...] = ()
    concurrency: str = SCHEMA_DEFAULT
    on_interrupt: str = SCHEMA_DEFAULT
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)
    sandbox: SandboxSpec = field(default_factory=SandboxSpec)
    telemetry: TelemetrySpec = field(default_factory=TelemetrySpec)
    env: tuple[str, ...] = ()
