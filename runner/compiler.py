"""Compile a spec and its inputs into a :class:`CompiledAgent`: no I/O, no model calls.

- inputs are checked and coerced to their declared types (``--input k=v`` gives strings);
- ``instructions`` and ``goal`` are rendered once, in Jinja2's sandboxed environment with
  ``StrictUndefined`` (an undefined variable is an error, never an empty string) and with
  limits on output bytes, value sizes, loop iterations and seconds (:mod:`.templates`);
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
    """``value`` as input ``spec``'s declared type.

    A string (an ``--input`` value, or a JSON string in a webhook payload) is parsed:
    ``integer`` and ``number`` as Python's :class:`int` and :class:`float` parse them,
    ``boolean`` from true/yes/on/1 or false/no/off/0 (any case), ``array`` and ``object``
    as JSON text, ``enum`` by the text of each allowed value; ``string`` and ``path`` keep
    it as it is. Any other value must already have the declared type (see
    :func:`_coerce_typed`).

    Raises:
        UsageError: the value does not have, or cannot be parsed as, the declared type; the
            message names the input, the value and the expected form.
    """
    kind = spec.type
    if not isinstance(value, str):
        return _coerce_typed(spec, value)
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
        raise UsageError(f"input {spec.name!r} must be {_expected(kind)}; got {value!r}") from None
    return value


def _expected(kind: str) -> str:
    """How an error message names input type ``kind``: ``"an integer"``, ``"a JSON list"``."""
    return {
        "array": "a JSON list",
        "object": "a JSON object",
        "boolean": "true or false",
        "integer": "an integer",
    }.get(kind, f"a {kind}")


#: How a value's type is named in an input error, in JSON's words (bool before int: a bool
#: is an int in Python).
_JSON_TYPES: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (type(None), "null"),
    (bool, "a boolean"),
    ((int, float), "a number"),
    (dict, "a JSON object"),
    (list, "a JSON list"),
)


def _coerce_typed(spec: InputSpec, value: Any) -> Any:
    """A value that is not a string (from a JSON payload, the run store or Python), checked.

    It must already have the declared type, by JSON's types, as the spec's own defaults are
    checked at load time: ``integer`` an :class:`int` (a JSON number with no fraction, such
    as ``7.0``, counts, as in JSON Schema, and becomes ``7``), ``number`` an int or a finite
    float, ``boolean`` a bool (``true`` is never the integer 1 here, nor 1 a boolean),
    ``array`` a list, ``object`` a dict, ``enum`` one of ``values`` with its type (``1``
    does not match ``"1"`` or ``true``). ``string`` and ``path`` take only strings: an object
    or a number is refused, not turned into text. ``None`` (JSON ``null``) means "not
    given": the default, or ``None`` for an optional input without one.

    Raises:
        UsageError: the value has another type, or is ``None`` for a required input. The
            message shows the value (shortened) and its JSON type.
    """
    import math
    import reprlib

    kind = spec.type
    if value is None and not spec.required:
        return spec.default
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "integer" and is_number and (isinstance(value, int) or value.is_integer()):
        return int(value)
    if kind == "number" and is_number and (isinstance(value, int) or math.isfinite(value)):
        return value
    if kind == "boolean" and isinstance(value, bool):
        return value
    if kind == "array" and isinstance(value, list):
        return value
    if kind == "object" and isinstance(value, dict):
        return value
    if kind == "enum":
        for allowed in spec.values:
            if type(value) is type(allowed) and value == allowed:
                return allowed
    shorten = reprlib.Repr()
    shorten.maxstring = shorten.maxother = 80
    shorten.maxlevel = 3
    shown = shorten.repr(value)
    json_type = type(value).__name__
    for python_type, name in _JSON_TYPES:
        if isinstance(value, python_type):
            json_type = name
            break
    if kind == "enum":
        allowed_values = ", ".join(map(str, spec.values))
        raise UsageError(
            f"input {spec.name!r} must be one of {allowed_values}; got {shown} ({json_type})"
        )
    raise UsageError(f"input {spec.name!r} must be {_expected(kind)}; got {shown} ({json_type})")


def coerce_inputs(spec: AgentSpec, given: dict[str, Any]) -> dict[str, Any]:
    """The run's inputs: given values coerced to their types, defaults filled in.

    ``given`` holds ``--input`` strings, or typed values (a webhook payload's JSON values, a
    recorded run's inputs); both go through the same rules and messages (:func:`_coerce`),
    so a list given for a string, an integer or an enum is refused, never passed on.

    Raises:
        UsageError: an unknown input (with the known ones listed), a value of the wrong
            type, or required inputs not given (every missing one named at once).
    """
    values: dict[str, Any] = {}
    for name, value in given.items():
        if name not in spec.inputs:
            known = ", ".join(sorted(spec.inputs)) or "none"
            raise UsageError(
                f"unknown input {name!r} for agent {spec.name!r}; known inputs: {known}"
            )
        values[name] = _coerce(spec.inputs[name], value)
    missing: list[str] = []
    for name, input_spec in spec.inputs.items():
        if name in values:
            continue
        if input_spec.has_default:
            values[name] = input_spec.default
        elif input_spec.required:
            missing.append(name)
        else:
            values[name] = None
    if missing:
        passes = " ".join(f"--input {name}=VALUE" for name in missing)
        plural = "s" if len(missing) > 1 else ""
        raise UsageError(
            f"agent {spec.name!r} needs input{plural} {', '.join(map(repr, missing))}: "
            f"pass {passes}"
        )
    return values


def render(template: str, inputs: dict[str, Any], name: str = "template") -> str:
    """Render the spec template ``name`` once, sandboxed and bounded (:mod:`runner.spec.templates`).

    The inputs reach the template as one mapping, never as keyword arguments, so no input
    name can collide with a parameter of Jinja2's own (an input named ``self`` once did).

    Returns:
        The text, at most :data:`runner.spec.templates.MAX_OUTPUT_BYTES` bytes of UTF-8.

    Raises:
        UsageError: ``cannot render 'goal': ...``: a limit crossed (output bytes, value size,
            loop iterations, ``range()`` items, render seconds: the message names the limit
            and the value), or any other failure (an attribute missing from an input).
    """
    from .spec.templates import render_template

    try:
        return render_template(template, inputs)
    except UsageError as error:
        raise UsageError(f"cannot render {name!r}: {error}") from None


def build_tools(spec: AgentSpec) -> ToolRegistry:
    """The tools ``spec`` declares, and nothing else, with its risk overrides applied.

    MCP servers are not started here (no I/O): their tools join when a run starts (see
    :func:`runner.loop.run_agent`).

    Raises:
        SetupError: a tool that cannot be built (a bad shell pattern, a function that does
            not import).
    """
    from .tools.catalogue import FACTORIES

    declared = spec.tools
    tools: list[Tool] = [
        FACTORIES[name](spec, getattr(declared, name)) for name in declared.builtin_names()
    ]
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
        instructions=render(spec.instructions, inputs, "instructions") if spec.instructions else "",
        goal=render(spec.goal, inputs, "goal"),
        tools=build_tools(spec),
        policy=Policy(spec.autonomy, spec.rules),
    )
