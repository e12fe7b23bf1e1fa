"""The spec: one YAML file → a validated, typed :class:`AgentSpec`, errors at file:line:column.

Loading is a pipeline (:mod:`runner.spec.load`), one module per step::

    bytes ─▶ yamlpos ─▶ validation ─▶ build ─▶ checks ─▶ AgentSpec
             YAML with   the JSON       typed     semantic checks:
             positions   Schema, in     classes   templates, cron, rules,
                         plain words              prices, environment

- :mod:`~runner.spec.types`: the spec's frozen classes (the leaf everything else names),
  on :mod:`~runner.spec.specclass`'s frozen-record base, with the words of its vocabulary
  (autonomy level, risk, trigger kind) as enums in :mod:`~runner.spec.vocabulary`;
- :mod:`~runner.spec.schema`: the JSON Schema document, the one definition of the language;
- :mod:`~runner.spec.yamlpos`, :mod:`~runner.spec.validation`, :mod:`~runner.spec.build`,
  :mod:`~runner.spec.checks`: the steps;
- :mod:`~runner.spec.templates`: the Jinja2 sandbox, whose limits the checks prove
  statically and the compiler enforces when it renders;
- :mod:`~runner.spec.prices`: model prices read without litellm, for the cost-cap check
  and the model adapter.

Importing this package imports the types and the entry points only: each step (and YAML,
jsonschema, Jinja2) is imported when the first spec is loaded.
"""

from __future__ import annotations

from .builtin_tools import BUILTIN_TOOLS
from .load import check_spec, check_specs, load_spec
from .specclass import replace
from .types import (
    AUTONOMY_LEVELS,
    RISKS,
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
    SandboxLimitsSpec,
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
from .vocabulary import AutonomyLevel, Risk, TriggerKind

__all__ = [
    "AUTONOMY_LEVELS",
    "BUILTIN_TOOLS",
    "RISKS",
    "TRIGGER_KINDS",
    "AgentSpec",
    "AutonomyLevel",
    "BudgetsSpec",
    "FileToolSpec",
    "FunctionToolSpec",
    "HttpToolSpec",
    "InputSpec",
    "LoopDetectionSpec",
    "McpServerSpec",
    "ModelSpec",
    "OutputSpec",
    "Pricing",
    "Risk",
    "RulesSpec",
    "SandboxLimitsSpec",
    "SandboxSpec",
    "ShellToolSpec",
    "TelemetrySpec",
    "ToolsSpec",
    "TriggerKind",
    "TriggerSpec",
    "WatchSpec",
    "WebhookSpec",
    "check_spec",
    "check_specs",
    "load_spec",
    "parse_byte_size",
    "parse_duration",
    "replace",
]
