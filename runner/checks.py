"""Semantic checks of a schema-valid spec: what JSON Schema cannot say.

Each check returns located :class:`~runner.errors.Diagnostic` objects:

- templates parse, use only declared inputs, and every input is used (unused: a warning);
- inputs: defaults have the declared type, enums have values, ``required`` agrees with
  ``default``;
- triggers: exactly one kind each, cron expressions and IANA time zones valid, cron-only
  keys only on cron triggers, glob patterns sane, debounce within the maximum wait;
- rules name tools the spec declares, and arguments those tools have;
- budgets can be enforced: a ``max_cost_usd`` needs a known price for the model;
- MCP servers only see environment variables from the spec's ``env`` allowlist.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any

from .errors import Diagnostic
from .spec import AgentSpec, InputSpec
from .yamlpos import Located, Pos

# The argument names each built-in tool has, for checking ``TOOL:ARG=GLOB`` rules.
BUILTIN_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "read_file": ("path",),
    "list_dir": ("path",),
    "write_file": ("path", "content"),
    "edit_file": ("path", "old", "new"),
    "shell": ("argv", "command"),
    "http_request": ("url", "method", "host", "body"),
}


class _Checker:
    def __init__(self, spec: AgentSpec, located: Located, file: str) -> None:
        self.spec = spec
        self.located = located
        self.file = file
        self.out: list[Diagnostic] = []

    def error(self, pos: Pos, message: str, hint: str = "") -> None:
        self.out.append(self.located.diagnostic(self.file, pos, message, hint))

    def warning(self, pos: Pos, message: str, hint: str = "") -> None:
        self.out.append(self.located.diagnostic(self.file, pos, message, hint, "warning"))

    # -- templates -----------------------------------------------------------------------

    def templates(self) -> None:
        from jinja2 import TemplateSyntaxError, meta
        from jinja2.sandbox import SandboxedEnvironment

        env = SandboxedEnvironment()
        used: set[str] = set()
        for key in ("instructions", "goal"):
            text = getattr(self.spec, key)
            if not text:
                continue
            try:
                ast = env.parse(text)
            except TemplateSyntaxError as error:
                self.error(
                    self._template_line(key, error.lineno or 1),
                    f"template error in {key!r}: {error.message}",
                    "see https://jinja.palletsprojects.com/templates/",
                )
                continue
            names = meta.find_undeclared_variables(ast)
            used |= names
            for name in sorted(names - set(self.spec.inputs)):
                declared = ", ".join(sorted(self.spec.inputs)) or "none"
                self.error(
                    self._find_in_value((key,), name),
                    f"template {key!r} uses {name!r}, which is not a declared input",
                    f"declare it under 'inputs' (declared: {declared})",
                )
        for name in self.spec.inputs:
            if name not in used:
                self.warning(
                    self.located.key_pos(("inputs", name)),
                    f"input {name!r} is declared but no template uses it",
                    "use it in 'goal' or 'instructions', or remove it",
                )

    def _template_line(self, key: str, lineno: int) -> Pos:
        start = self.located.value_pos((key,))
        style = self.located.styles.get((key,), "")
        line = start.line + lineno if style in ("|", ">") else start.line + lineno - 1
        text = self.located.lines[line - 1] if 0 < line <= len(self.located.lines) else ""
        return Pos(line, len(text) - len(text.lstrip()) + 1)

    def _find_in_value(self, path: tuple[str, ...], word: str) -> Pos:
        start = self.located.value_pos(path)
        pattern = re.compile(rf"\b{re.escape(word)}\b")
        for index in range(start.line - 1, len(self.located.lines)):
            line = self.located.lines[index]
            begin = start.column - 1 if index == start.line - 1 else 0
            match = pattern.search(line, begin)
            if match:
                return Pos(index + 1, match.start() + 1)
        return start

    # -- inputs --------------------------------------------------------------------------

    def inputs(self) -> None:
        for name, spec in self.spec.inputs.items():
            path = ("inputs", name)
            if spec.type == "enum" and not spec.values:
                self.error(
                    self.located.key_pos(path),
                    f"enum input {name!r} has no 'values'",
                    "list the allowed values under 'values'",
                )
            if spec.type != "enum" and spec.values:
                self.error(
                    self.located.key_pos((*path, "values")),
                    f"'values' only applies to enum inputs, and {name!r} is {spec.type}",
                    "use 'type: enum', or remove 'values'",
                )
            if spec.has_default:
                problem = default_problem(spec)
                if problem:
                    self.error(self.located.value_pos((*path, "default")), problem)
                if self.located.value.get("inputs", {}).get(name, {}).get("required") is True:
                    self.error(
                        self.located.key_pos((*path, "required")),
                        f"input {name!r} is required but has a default",
                        "remove 'required: true' or the default",
                    )

    # -- triggers ------------------------------------------------------------------------

    def triggers(self) -> None:
        for trigger in self.spec.triggers:
            path = ("triggers", trigger.index)
            raw: dict[str, Any] = self.located.value["triggers"][trigger.index]
            kinds = [k for k in ("cron", "watch", "manual", "webhook") if k in raw]
            if len(kinds) != 1:
                where = self.located.key_pos((*path, kinds[1])) if kinds else self.located.value_pos(path)
                self.error(
                    where,
                    f"trigger {trigger.index + 1} "
                    + (f"sets {' and '.join(map(repr, kinds))}" if kinds else "has no kind"),
                    "each trigger needs exactly one of 'cron', 'watch', 'manual', 'webhook'",
                )
                continue
            for key in ("timezone", "catchup", "catchup_max"):
                if key in raw and trigger.kind != "cron":
                    self.error(
                        self.located.key_pos((*path, key)),
                        f"{key!r} only applies to cron triggers, and this is a {trigger.kind} trigger",
                    )
            if trigger.kind == "cron":
                self._cron(trigger.cron or "", trigger.timezone, path, raw)
            if trigger.watch is not None:
                watch = trigger.watch
                for key in ("patterns", "ignore"):
                    for index, pattern in enumerate(getattr(watch, key)):
                        problem = glob_problem(pattern)
                        if problem:
                            self.error(
                                self.located.value_pos((*path, "watch", key, index)), problem
                            )
                if watch.debounce > watch.max_wait:
                    self.error(
                        self.located.value_pos((*path, "watch", "debounce")),
                        f"debounce ({watch.debounce:g}s) is longer than max_wait "
                        f"({watch.max_wait:g}s)",
                        "make max_wait at least the debounce",
                    )
            if trigger.webhook is not None:
                for name in trigger.webhook.inputs:
                    if name not in self.spec.inputs:
                        self.error(
                            self.located.key_pos((*path, "webhook", "inputs", name)),
                            f"webhook maps payload to {name!r}, which is not a declared input",
                        )
            if trigger.kind == "manual" and trigger.manual is False:
                self.warning(
                    self.located.value_pos((*path, "manual")),
                    "'manual: false' has no effect",
                    "remove the trigger",
                )

    def _cron(self, expression: str, timezone: str, path: tuple[Any, ...], raw: dict[str, Any]) -> None:
        from .triggers import cron_problem, timezone_problem

        problem = cron_problem(expression)
        if problem:
            self.error(self.located.value_pos((*path, "cron")), problem)
        if "timezone" in raw:
            problem = timezone_problem(timezone)
            if problem:
                self.error(self.located.value_pos((*path, "timezone")), *problem)

    # -- rules ---------------------------------------------------------------------------

    def rules(self) -> None:
        tools = self.spec.tools
        names = tools.builtin_names() + sorted(tools.functions)
        names += [f"{server}.*" for server in tools.mcp]
        for kind in ("allow", "ask", "deny"):
            for index, pattern in enumerate(getattr(self.spec.rules, kind)):
                tool, _, argument = pattern.partition(":")
                arg_name = argument.partition("=")[0]
                pos = self.located.value_pos(("rules", kind, index))
                matched = [n for n in names if _tool_matches(tool, n)]
                if not matched:
                    self.error(
                        pos,
                        f"rule {pattern!r} names tool {tool!r}, which the spec does not declare",
                        f"declared tools: {', '.join(names) or 'none'}",
                    )
                    continue
                if arg_name:
                    known = {a for n in matched for a in BUILTIN_ARGUMENTS.get(n, ())}
                    builtin_only = all(n in BUILTIN_ARGUMENTS for n in matched)
                    if builtin_only and arg_name not in known:
                        self.error(
                            pos,
                            f"rule {pattern!r}: tool {tool!r} has no argument {arg_name!r}",
                            f"its arguments: {', '.join(sorted(known))}",
                        )

    # -- budgets, model, environment ------------------------------------------------------

    def budgets(self) -> None:
        from .models import price_for

        budgets = self.spec.budgets
        if budgets.max_cost_usd is not None and self.spec.model.pricing is None:
            if price_for(self.spec.model.id) is None:
                self.error(
                    self.located.value_pos(("budgets", "max_cost_usd")),
                    f"max_cost_usd is set, but the price of model {self.spec.model.id!r} "
                    "is unknown, so the cap could not be enforced",
                    "add model.pricing (USD per million input and output tokens)",
                )
        loop = self.spec.loop_detection
        if loop.warn_after >= loop.stop_after and "loop_detection" in self.located.value:
            self.error(
                self.located.key_pos(("loop_detection", "warn_after")),
                f"warn_after ({loop.warn_after}) must be less than stop_after ({loop.stop_after})",
            )
        if budgets.max_tool_calls is not None and budgets.max_tool_calls > 0 and not (
            self.spec.tools.builtin_names() or self.spec.tools.mcp or self.spec.tools.functions
        ):
            self.warning(
                self.located.key_pos(("budgets", "max_tool_calls")),
                "max_tool_calls is set but the spec declares no tools",
            )

    def environment(self) -> None:
        allowed = set(self.spec.env)
        for name, server in self.spec.tools.mcp.items():
            for index, variable in enumerate(server.env):
                if variable not in allowed:
                    self.error(
                        self.located.value_pos(("tools", "mcp", name, "env", index)),
                        f"MCP server {name!r} asks for environment variable {variable!r}, "
                        "which is not in the spec's 'env' allowlist",
                        f"add {variable!r} to 'env'",
                    )
        if self.spec.output.schema is not None:
            from jsonschema import Draft202012Validator
            from jsonschema.exceptions import SchemaError

            try:
                Draft202012Validator.check_schema(self.spec.output.schema)
            except SchemaError as error:
                self.error(
                    self.located.value_pos(("output", "schema", *error.path)),
                    f"output.schema is not a valid JSON Schema: {error.message}",
                )


def _tool_matches(pattern: str, name: str) -> bool:
    if name.endswith(".*"):  # an MCP server: `server.*` covers `server.anything`
        server = name[:-2]
        return pattern.split(".", 1)[0] == server or fnmatch.fnmatchcase(server, pattern)
    return fnmatch.fnmatchcase(name, pattern)


def glob_problem(pattern: str) -> str:
    """Why a file glob pattern is unusable, or ``""`` when it is fine."""
    if pattern.count("[") != pattern.count("]"):
        return f"glob pattern {pattern!r} has an unclosed '['"
    if pattern.startswith("/") or ".." in pattern.split("/"):
        return f"glob pattern {pattern!r} must be relative and must not contain '..'"
    return ""


def default_problem(spec: InputSpec) -> str:
    """Why an input's default does not have its declared type, or ``""``."""
    value = spec.default
    checks = {
        "string": lambda v: isinstance(v, str),
        "path": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
        "enum": lambda v: v in spec.values,
    }
    if checks[spec.type](value):
        return ""
    if spec.type == "enum":
        return f"default {value!r} of input {spec.name!r} is not one of its values"
    return f"default {value!r} of input {spec.name!r} is not of type {spec.type}"


def semantic_checks(spec: AgentSpec, located: Located, file: str) -> list[Diagnostic]:
    """Every semantic problem of a schema-valid spec, located; warnings included."""
    checker = _Checker(spec, located, file)
    checker.inputs()
    checker.templates()
    checker.triggers()
    checker.rules()
    checker.budgets()
    checker.environment()
    return checker.out
