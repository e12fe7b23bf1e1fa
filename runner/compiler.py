"""Compile a spec and its inputs into a :class:`CompiledAgent`: no I/O, no model calls.

- inputs are checked and coerced to their declared types (``--input k=v`` gives strings);
- ``instructions`` and ``goal`` are rendered once, in Jinja2's sandboxed environment with
  ``StrictUndefined`` (an undefined variable is an error, never an empty string);
- the tools the spec declares are built, with the spec's ``risk`` overrides applied;
- the policy is bound from the autonomy level and the rules.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .errors import UsageError
from .policy import Policy
from .spec import AgentSpec, InputSpec
from .tools import Tool, ToolRegistry

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def parse_input_flags(flags: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``["k=v", ...]`` → ``{"k": "v"}``.

    Raises:
        UsageError: a flag without ``=`` or with an empty key, or a key given twice.
    """
    result: dict[str, str] = {}
    for flag in flags:
        key, sep, value = flag.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--input {flag!r} is not of the form key=value")
        if key in result:
            raise UsageError(f"--input {key!r} is given twice")
        result[key] = value
    return result


def _coerce(spec: InputSpec, value: Any) -> Any:
    kind = spec.type
    if not isinstance(value, str):
        return value
    try:
        if kind == "integer":
            return int(value)
        if kind == "number":
            return float(value)
        if kind == "boolean":
            if value.lower() in _TRUE:
                return True
            if value.lower() in _FALSE:
                return False
            raise ValueError(value)
        if kind in ("array", "object"):
            parsed = json.loads(value)
            if not isinstance(parsed, list if kind == "array" else dict):
                raise ValueError(value)
            return parsed
        if kind == "enum":
            for allowed in spec.values:
                if str(allowed) == value:
                    return allowed
            raise UsageError(
                f"input {spec.name!r} must be one of {', '.join(map(str, spec.values))}; "
                f"got {value!r}"
            )
    except (ValueError, json.JSONDecodeError):
        expected = {
            "array": "a JSON list",
            "object": "a JSON object",
            "boolean": "true or false",
            "integer": "an integer",
        }.get(kind, f"a {kind}")
        raise UsageError(f"input {spec.name!r} must be {expected}; got {value!r}") from None
    return value


def coerce_inputs(spec: AgentSpec, given: dict[str, Any]) -> dict[str, Any]:
    """The run's inputs: given values coerced to their types, defaults filled in.

    Raises:
        UsageError: an unknown input (with the known ones listed), a value of the wrong
            type, or a required input not given.
    """
    values: dict[str, Any] = {}
    for name, value in given.items():
        if name not in spec.inputs:
            known = ", ".join(sorted(spec.inputs)) or "none"
            raise UsageError(
                f"unknown input {name!r} for agent {spec.name!r}; known inputs: {known}"
            )
        values[name] = _coerce(spec.inputs[name], value)
    for name, input_spec in spec.inputs.items():
        if name in values:
            continue
        if input_spec.has_default:
            values[name] = input_spec.default
        elif input_spec.required:
            raise UsageError(f"agent {spec.name!r} needs input {name!r}: pass --input {name}=VALUE")
        else:
            values[name] = None
    return values


def render(template: str, inputs: dict[str, Any]) -> str:
    """Render a spec template once (sandboxed, ``StrictUndefined``).

    Raises:
        UsageError: when rendering fails (for example an attribute missing from an input).
    """
    from jinja2 import StrictUndefined, TemplateError
    from jinja2.sandbox import SandboxedEnvironment

    environment = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    try:
        return environment.from_string(template).render(**inputs)
    except TemplateError as error:
        raise UsageError(f"cannot render the template: {error}") from None


def build_tools(spec: AgentSpec) -> ToolRegistry:
    """The tools ``spec`` declares, and nothing else, with its risk overrides applied.

    MCP servers are not started here (no I/O): their tools join when a run starts (see
    :func:`runner.loop.run_agent`).

    Raises:
        SetupError: a tool that cannot be built (a bad shell pattern, a function that does
            not import).
    """
    from .tools.builtin import EditFile, ListDir, PathJail, ReadFile, WriteFile

    declared = spec.tools
    budgets = spec.budgets
    tools: list[Tool] = []
    file_tools = (
        ("read_file", ReadFile),
        ("list_dir", ListDir),
        ("write_file", WriteFile),
        ("edit_file", EditFile),
    )
    for name, cls in file_tools:
        options = getattr(declared, name)
        if options is not None:
            tool: Tool = cls(PathJail(spec.workdir, options.paths))
            tool.risk = options.risk or tool.risk
            tools.append(tool)
    if declared.shell is not None:
        from .tools.shell import ShellTool

        shell = ShellTool(
            declared.shell, spec.workdir, spec.env, budgets.tool_timeout, budgets.max_tool_output
        )
        shell.risk = declared.shell.risk or shell.risk
        tools.append(shell)
    if declared.http_request is not None:
        from .tools.http import HttpTool

        tools.append(HttpTool(declared.http_request, budgets.tool_timeout))
    if declared.functions:
        from .tools.functions import FunctionTool

        for name, function in declared.functions.items():
            tools.append(FunctionTool(name, function.function, function.risk))
    return ToolRegistry(tools)


@dataclass(frozen=True)
class CompiledAgent:
    """Everything a run needs, bound and rendered."""

    spec: AgentSpec
    inputs: dict[str, Any]
    instructions: str
    goal: str
    tools: ToolRegistry
    policy: Policy


def compile_agent(spec: AgentSpec, given_inputs: dict[str, Any] | None = None) -> CompiledAgent:
    """Compile ``spec`` with ``given_inputs`` (strings from the CLI, or typed values).

    Raises:
        UsageError: bad inputs or a template that fails to render.
        SetupError: a declared tool that cannot be provided.
    """
    inputs = coerce_inputs(spec, given_inputs or {})
    return CompiledAgent(
        spec=spec,
        inputs=inputs,
        instructions=render(spec.instructions, inputs) if spec.instructions else "",
        goal=render(spec.goal, inputs),
        tools=build_tools(spec),
        policy=Policy(spec.autonomy, spec.rules),
    )
