"""Step 4 of loading: semantic checks of a built spec, what JSON Schema cannot say.

Each check returns located :class:`~runner.errors.Diagnostic` objects:

- templates parse, use only declared inputs, include no other templates, and every input
  is used (unused: a warning, and only when every template parsed); they read no ``__``
  attribute and make no literal range, repetition or nested loop over the limits
  :func:`runner.spec.templates.render_template` enforces
  (:func:`runner.spec.templates.sandbox_problems`);
- inputs: names the template language does not reserve, defaults have the declared type,
  enums have values, ``required`` agrees with ``default``;
- triggers: exactly one kind each, cron expressions valid (the bad field is pointed at) and
  able to fire, IANA time zones valid, cron-only keys only on cron triggers, glob patterns
  sane, debounce within the maximum wait; webhook and queue triggers:
  :mod:`runner.spec.checks_triggers`;
- rules name tools the spec declares, and arguments those tools have;
- budgets can be enforced: a ``max_cost_usd`` needs a known price for the model
  (:mod:`runner.spec.prices`);
- the model and its fallbacks name a provider litellm knows (any prefix is accepted with an
  ``api_base``: an OpenAI-compatible endpoint) or an embedded local model that exists, and
  the local model is given no setting it would ignore (``api_key_env``, ``api_base``);
- MCP servers only see environment variables from the spec's ``env`` allowlist;
- success ``checks``: :mod:`runner.spec.checks_success`;
- sandboxes (network allowlist entries, blank paths): :mod:`runner.spec.checks_sandbox`.

:func:`key_variable_warnings` is apart: it reads the environment, so it runs only when asked
(``agentrun validate`` asks; a spec's validity never depends on the shell it is read in).
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Mapping
from typing import Any

from ..errors import Diagnostic
from ..triggers.globs import bracket_end
from . import checks_sandbox
from .builtin_tools import BY_KEY as BUILTIN_BY_KEY
from .checks_escalation import escalation_checks
from .checks_guards import guard_checks
from .checks_notify import notify_checks
from .checks_success import schema_problem, success_check_problems
from .checks_triggers import trigger_payload_checks
from .prices import (
    KEY_VARIABLES,
    LOCAL_MODELS,
    LOCAL_PREFIX,
    price_for,
    price_table,
    provider_of,
    providers,
)
from .types import TRIGGER_KINDS, AgentSpec, InputSpec
from .vocabulary import TriggerKind
from .yamlpos import Located, Pos

_CRON_FIELDS = (
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12 or JAN-DEC"),
    ("day-of-week", "0-7 or SUN-SAT (0 and 7 are Sunday)"),
)
_CRON_EXAMPLE = "for example '0 6 * * 1-5' (06:00 on weekdays)"

_TYPE_WORDS = {
    "string": "a string",
    "path": "a string (a path)",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
}

_TEMPLATE_HINT = "see https://jinja.palletsprojects.com/templates/"


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

        from .templates import sandbox_problems, template_environment

        env = template_environment()
        used: set[str] = set()
        suggested: set[str] = set()  # inputs named in a "did you mean": not also "unused"
        all_parsed = True
        for key in ("instructions", "goal"):
            text = getattr(self.spec, key)
            if not text:
                continue
            try:
                ast = env.parse(text)
                referenced = any(True for _ in meta.find_referenced_templates(ast))
                names = meta.find_undeclared_variables(ast) - set(env.globals)
                problems = sandbox_problems(ast)
            except RecursionError:
                all_parsed = False
                self.error(
                    self.located.value_pos((key,)),
                    f"template {key!r} nests too deeply to be read",
                    "split the expression into simpler parts",
                )
                continue
            except TemplateSyntaxError as error:
                all_parsed = False
                message = " ".join(str(error.message or "syntax error").split()).rstrip(".")
                if message[1:2].islower():
                    message = message[0].lower() + message[1:]
                self.error(
                    self._template_pos(key, text, error.lineno or 1),
                    f"template error in {key!r}: {message}",
                    _TEMPLATE_HINT,
                )
                continue
            if referenced:
                self.error(
                    self._find_in_template((key,), r"\b(include|extends|import|from)\b"),
                    f"template {key!r} loads another template; spec templates must be "
                    "self-contained",
                    "write the text out here",
                )
            for problem in problems:
                self.error(
                    self._template_word_pos(
                        key, text, problem.lineno, problem.word, problem.occurrence
                    ),
                    f"template {key!r} {problem.message}",
                    problem.hint,
                )
            used |= names
            for name in sorted(names - set(self.spec.inputs)):
                declared = ", ".join(sorted(self.spec.inputs)) or "none"
                close = difflib.get_close_matches(name, list(self.spec.inputs), n=1)
                suggested.update(close)
                hint = (
                    f"did you mean {close[0]!r}?"
                    if close
                    else f"declare it under 'inputs' (declared: {declared})"
                )
                self.error(
                    self._find_in_template((key,), rf"(?<![\w.]){re.escape(name)}\b"),
                    f"template {key!r} uses {name!r}, which is not a declared input",
                    hint,
                )
        if not all_parsed:  # what an unparsable template uses is unknown: no unused warnings
            return
        for name in self.spec.inputs:
            if name not in used and name not in suggested:
                self.warning(
                    self.located.key_pos(("inputs", name)),
                    f"input {name!r} is declared but no template uses it",
                    "use it in 'goal' or 'instructions', or remove it",
                )

    def _value_lines(self, path: tuple[str, ...]) -> tuple[int, int]:
        """The first and last source line (1-based) of a scalar value."""
        start = self.located.value_pos(path)
        end = self.located.ends.get(path, start)
        last = end.line - 1 if end.column == 1 and end.line > start.line else end.line
        return start.line, min(max(last, start.line), len(self.located.lines))

    def _template_pos(self, key: str, text: str, lineno: int) -> Pos:
        """Where line ``lineno`` of the template in ``key`` is in the file."""
        path = (key,)
        start = self.located.value_pos(path)
        if path in self.located.aliased:
            return start
        style = self.located.styles.get(path, "")
        template_lines = text.split("\n")
        index = min(max(lineno, 1), len(template_lines)) - 1
        first, last = self._value_lines(path)
        lines = self.located.lines
        if style == "|":  # literal block: one template line per source line, from the next
            line = min(first + 1 + index, last)
            source = lines[line - 1] if 0 < line <= len(lines) else ""
            return Pos(line, len(source) - len(source.lstrip()) + 1)
        if index == 0 and style != ">":
            return start
        # Folded or flow scalars join lines: look for the line's text in the source.
        wanted = template_lines[index].strip()
        for probe in (wanted[:20], wanted.split(" ")[0] if wanted else ""):
            if not probe:
                continue
            for number in range(first + (1 if style == ">" else 0), last + 1):
                column = lines[number - 1].find(probe)
                if column >= 0 and (number != start.line or column >= start.column - 1):
                    return Pos(number, column + 1)
        return start

    def _template_word_pos(
        self, key: str, text: str, lineno: int, word: str, occurrence: int
    ) -> Pos:
        """Where match ``occurrence`` of ``word`` (a regex) is on line ``lineno`` of a template.

        Falls back to the start of that line when the word cannot be found there (a folded
        scalar that spreads the line over several).
        """
        line_start = self._template_pos(key, text, lineno)
        lines = self.located.lines
        if (key,) in self.located.aliased or not 0 < line_start.line <= len(lines):
            return line_start
        source = lines[line_start.line - 1]
        found = list(re.finditer(word, source[line_start.column - 1 :]))
        if not found:
            return line_start
        match = found[min(occurrence, len(found) - 1)]
        return Pos(line_start.line, line_start.column + match.start())

    def _find_in_template(self, path: tuple[str, ...], word: str) -> Pos:
        """Where ``word`` (a regex) first occurs inside ``{{ }}`` or ``{% %}`` in a value."""
        start = self.located.value_pos(path)
        if path in self.located.aliased:
            return start
        first, last = self._value_lines(path)
        token = re.compile(rf"\{{\{{|\{{%|\}}\}}|%\}}|{word}")
        inside = False
        fallback: Pos | None = None
        for number in range(first, last + 1):
            line = self.located.lines[number - 1]
            begin = start.column - 1 if number == start.line else 0
            for match in token.finditer(line, begin):
                text = match.group(0)
                if text in ("{{", "{%"):
                    inside = True
                elif text in ("}}", "%}"):
                    inside = False
                elif inside:
                    return Pos(number, match.start() + 1)
                elif fallback is None:
                    fallback = Pos(number, match.start() + 1)
        return fallback or start

    # -- inputs --------------------------------------------------------------------------

    def inputs(self) -> None:
        from .templates import reserved_name_problem

        raw_inputs: dict[str, Any] = self.located.value.get("inputs") or {}
        for name, spec in self.spec.inputs.items():
            path = ("inputs", name)
            reserved = reserved_name_problem(name)
            if reserved:
                self.error(
                    self.located.key_pos(path),
                    f"input name {name!r} is reserved: {reserved}",
                    f"rename it, for example to {(name.strip('_') or 'value') + '_input'!r}",
                )
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
                    self.error(
                        self.located.value_pos((*path, "default")),
                        problem,
                        _default_hint(spec),
                    )
                if raw_inputs.get(name, {}).get("required") is True:
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
            kinds = [str(k) for k in TRIGGER_KINDS if k in raw]  # the words as written
            if len(kinds) != 1:
                where = (
                    self.located.key_pos((*path, kinds[1]))
                    if kinds
                    else self.located.value_pos(path)
                )
                self.error(
                    where,
                    f"trigger {trigger.index + 1} "
                    + (f"sets {' and '.join(map(repr, kinds))}" if kinds else "has no kind"),
                    "each trigger needs exactly one of "
                    + ", ".join(repr(str(k)) for k in TRIGGER_KINDS),
                )
                continue
            for key in ("timezone", "catchup", "catchup_max"):
                if key in raw and trigger.kind != TriggerKind.CRON:
                    self.error(
                        self.located.key_pos((*path, key)),
                        f"{key!r} only applies to cron triggers, and this is a "
                        f"{trigger.kind} trigger",
                        f"remove {key!r}",
                    )
            if trigger.kind == TriggerKind.CRON:
                self._cron(trigger.cron or "", trigger.timezone, path, raw)
            if trigger.watch is not None:
                self._watch(trigger.watch, path, raw)
            if trigger.kind == TriggerKind.MANUAL and trigger.manual is False:
                self.warning(
                    self.located.value_pos((*path, "manual")),
                    "'manual: false' has no effect",
                    "remove the trigger",
                )

    def _watch(self, watch: Any, path: tuple[Any, ...], raw: dict[str, Any]) -> None:
        for key in ("patterns", "ignore"):
            for index, pattern in enumerate(getattr(watch, key)):
                problem = glob_problem(pattern)
                if problem:
                    self.error(self.located.value_pos((*path, "watch", key, index)), problem)
        if watch.debounce > watch.max_wait:
            given = raw.get("watch", {})
            key = "debounce" if "debounce" in given or "max_wait" not in given else "max_wait"
            self.error(
                self.located.value_pos((*path, "watch", key)),
                f"debounce ({watch.debounce:g}s) is longer than max_wait ({watch.max_wait:g}s)",
                "make max_wait at least the debounce",
            )

    def _cron(
        self, expression: str, timezone: str, path: tuple[Any, ...], raw: dict[str, Any]
    ) -> None:
        from ..triggers.cron import cron_problem, may_never_fire

        cron_path = (*path, "cron")
        problem = cron_problem(expression)
        if problem:
            field_error = self._cron_field(expression, cron_path)
            if field_error:
                self.error(*field_error)
            else:
                self.error(self.located.value_pos(cron_path), problem)
        zone_problem = _timezone_problem(timezone) if "timezone" in raw else None
        if zone_problem:
            self.error(self.located.value_pos((*path, "timezone")), *zone_problem)
        if (
            not problem
            and not zone_problem
            and may_never_fire(expression)
            and not _cron_fires(expression, timezone)
        ):
            self.error(
                self.located.value_pos(cron_path),
                f"cron expression {expression!r} never fires: no date matches it",
                "check that the day-of-month exists in the month",
            )

    def _cron_field(self, expression: str, path: tuple[Any, ...]) -> tuple[Pos, str, str] | None:
        """The first field of a five-field expression that is invalid on its own, located."""
        from croniter import croniter

        fields = list(re.finditer(r"\S+", expression))
        if len(fields) != 5 or expression.strip().startswith("@"):
            return None
        for index, match in enumerate(fields):
            probe = ["*"] * 5
            probe[index] = match.group(0)
            try:
                valid = bool(croniter.is_valid(" ".join(probe)))
            except Exception:  # croniter's own errors on odd input
                valid = False
            if valid:
                continue
            name, allowed = _CRON_FIELDS[index]
            return (
                self._inside_scalar(path, expression, match.start()),
                f"cron expression {expression!r}: the {name} field {match.group(0)!r} is not "
                f"valid ({name} is {allowed})",
                _CRON_EXAMPLE,
            )
        return None

    def _inside_scalar(self, path: tuple[Any, ...], text: str, offset: int) -> Pos:
        """The position of ``text[offset]`` when ``text`` is written out on one source line."""
        start = self.located.value_pos(path)
        if path in self.located.aliased or not 0 < start.line <= len(self.located.lines):
            return start
        style = self.located.styles.get(path, "")
        if style not in ("", "'", '"'):
            return start
        begin = start.column - 1 + (1 if style else 0)
        if self.located.lines[start.line - 1][begin : begin + len(text)] != text:
            return start
        return Pos(start.line, begin + offset + 1)

    # -- rules ---------------------------------------------------------------------------

    def rules(self) -> None:
        tools = self.spec.tools
        names = tools.builtin_names() + sorted(tools.functions)
        names += [f"{server}.*" for server in tools.mcp]
        for kind in ("allow", "ask", "deny"):
            for index, pattern in enumerate(getattr(self.spec.rules, kind)):
                self._rule(pattern, ("rules", kind, index), names)

    def _rule(self, pattern: str, path: tuple[Any, ...], names: list[str]) -> None:
        tool, _, argument = pattern.partition(":")
        arg_name, _, glob = argument.partition("=")
        pos = self.located.value_pos(path)
        matched = [n for n in names if _tool_matches(tool, n)]
        if not matched:
            close = difflib.get_close_matches(tool, names, n=1)
            hint = (
                f"did you mean {close[0]!r}?"
                if close
                else f"declared tools: {', '.join(names) or 'none'}"
            )
            self.error(
                pos, f"rule {pattern!r} names tool {tool!r}, which the spec does not declare", hint
            )
            return
        server, _, mcp_tool = tool.partition(".")
        if mcp_tool and server in self.spec.tools.mcp and not _has_glob(mcp_tool):
            allowed = self.spec.tools.mcp[server].allow
            if not any(fnmatch.fnmatchcase(mcp_tool, a) for a in allowed):
                self.error(
                    pos,
                    f"rule {pattern!r} names a tool that MCP server {server!r} does not "
                    "offer to the model",
                    f"its 'allow' list: {', '.join(allowed) or 'empty'}",
                )
                return
        if arg_name:
            # A rule on an argument a built-in tool does not have would never match.
            known = {a for n in matched if n in BUILTIN_BY_KEY for a in BUILTIN_BY_KEY[n].arguments}
            builtin_only = all(n in BUILTIN_BY_KEY for n in matched)
            if builtin_only and arg_name not in known:
                close = difflib.get_close_matches(arg_name, sorted(known), n=1)
                hint = f"did you mean {close[0]!r}?" if close else ""
                self.error(
                    pos,
                    f"rule {pattern!r}: tool {tool!r} has no argument {arg_name!r} "
                    f"(its arguments: {', '.join(sorted(known))})",
                    hint,
                )
                return
            problem = _bracket_problem(glob)
            if problem:
                self.error(pos, f"rule {pattern!r}: the pattern {glob!r} {problem}")

    # -- budgets, model, environment ------------------------------------------------------

    def model(self) -> None:
        """The model and its fallbacks name something that exists, with settings it uses."""
        model = self.spec.model
        self._model_id(model.id, _model_id_path(self.located), primary=True)
        for index, fallback in enumerate(model.fallbacks):
            self._model_id(fallback, ("model", "fallbacks", index), primary=False)
        if model.id.startswith(LOCAL_PREFIX):
            for key in ("api_key_env", "api_base"):
                if getattr(model, key) is not None:
                    self.error(
                        self.located.key_pos(("model", key)),
                        f"{key!r} does not apply to the embedded model {model.id!r}, "
                        "which runs on this machine and needs no key or endpoint",
                        f"remove {key!r}",
                    )

    def _model_id(self, model_id: str, path: tuple[Any, ...], primary: bool) -> None:
        pos = self.located.value_pos(path)
        if model_id.startswith(LOCAL_PREFIX):
            name = model_id[len(LOCAL_PREFIX) :]
            if name not in LOCAL_MODELS:
                available = ", ".join(LOCAL_PREFIX + m for m in LOCAL_MODELS)
                close = difflib.get_close_matches(name, LOCAL_MODELS, n=1)
                self.error(
                    pos,
                    f"unknown local model {model_id!r} (available: {available})",
                    f"did you mean {LOCAL_PREFIX + close[0]!r}?"
                    if close
                    else "see docs/local-model.md",
                )
            return
        primary_provider = self.spec.model.id.split("/", 1)[0]
        # An api_base serves the primary and the fallbacks at its provider: an
        # OpenAI-compatible endpoint, whatever the prefix says.
        if self.spec.model.api_base and (primary or model_id.split("/", 1)[0] == primary_provider):
            return
        if "/" not in model_id:
            if price_table() and provider_of(model_id) is None:
                self.error(
                    pos,
                    f"model {model_id!r} names no provider, and litellm knows no model of "
                    "that name",
                    "write it as provider/model, for example 'openai/gpt-4o-mini'",
                )
            return
        provider = model_id.split("/", 1)[0]
        if provider not in providers():
            close = difflib.get_close_matches(provider, sorted(providers()), n=1)
            self.error(
                pos,
                f"unknown model provider {provider!r} in {model_id!r}",
                f"did you mean {close[0]!r}?"
                if close
                else "use a litellm provider (https://docs.litellm.ai/docs/providers), "
                "or set model.api_base for an OpenAI-compatible server",
            )

    def budgets(self) -> None:
        budgets = self.spec.budgets
        if budgets.max_cost_usd is not None:
            self._cost_cap_priced()
        loop = self.spec.loop_detection
        given = self.located.value.get("loop_detection") or {}
        if loop.warn_after >= loop.stop_after and given:
            key = "warn_after" if "warn_after" in given else "stop_after"
            self.error(
                self.located.key_pos(("loop_detection", key)),
                f"warn_after ({loop.warn_after}) must be less than stop_after ({loop.stop_after})",
            )
        if (
            budgets.max_tool_calls is not None
            and budgets.max_tool_calls > 0
            and not (
                self.spec.tools.builtin_names() or self.spec.tools.mcp or self.spec.tools.functions
            )
        ):
            self.warning(
                self.located.key_pos(("budgets", "max_tool_calls")),
                "max_tool_calls is set but the spec declares no tools",
            )

    def _cost_cap_priced(self) -> None:
        """A cost cap needs a price for the model and for every fallback."""
        if self.spec.model.pricing is None and price_for(self.spec.model.id) is None:
            self.error(
                self.located.value_pos(("budgets", "max_cost_usd")),
                f"max_cost_usd is set, but the price of model {self.spec.model.id!r} "
                "is unknown, so the cap could not be enforced",
                "add model.pricing (USD per million input and output tokens)",
            )
        for index, fallback in enumerate(self.spec.model.fallbacks):
            if price_for(fallback) is None:
                self.error(
                    self.located.value_pos(("model", "fallbacks", index)),
                    f"max_cost_usd is set, but the price of fallback model {fallback!r} "
                    "is unknown, so the cap could not be enforced when it answers",
                    "use a fallback litellm has a price for, or remove max_cost_usd",
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
                self._schema_error(error)

    def _schema_error(self, error: Any) -> None:
        path = ("output", "schema", *error.path)
        message, hint = schema_problem(error)
        self.error(
            self.located.value_pos(path),
            f"output.schema is not a valid JSON Schema: {message}",
            hint,
        )


def _has_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def _tool_matches(pattern: str, name: str) -> bool:
    if name.endswith(".*"):  # an MCP server: `server.*` covers `server.anything`
        server = name[:-2]
        return pattern.split(".", 1)[0] == server or fnmatch.fnmatchcase(server, pattern)
    return fnmatch.fnmatchcase(name, pattern)


def _timezone_problem(name: str) -> tuple[str, str] | None:
    from ..triggers import timezone_problem

    try:
        return timezone_problem(name)
    except (OSError, ValueError):  # a name the zone database cannot even look up
        return f"unknown time zone {name!r}", "use an IANA name like 'Europe/Berlin'"


def _cron_fires(expression: str, timezone: str) -> bool:
    from datetime import UTC, datetime

    from ..triggers import CronSchedule

    try:
        CronSchedule(expression, timezone or "UTC").next_after(datetime.now(UTC))
    except Exception:  # croniter's CroniterBadDateError, or our "never fires"
        return False
    return True


def _bracket_problem(pattern: str) -> str:
    """Why the ``[...]`` sets of an ``fnmatch`` pattern are broken, or ``""``."""
    index = 0
    while index < len(pattern):
        if pattern[index] == "[":
            close = bracket_end(pattern, index)
            if close < 0:
                return "has a '[' that is never closed with ']'"
            index = close
        index += 1
    return ""


def glob_problem(pattern: str) -> str:
    """Why a file glob pattern is unusable, or ``""`` when it is fine."""
    problem = _bracket_problem(pattern)
    if problem:
        return f"glob pattern {pattern!r} {problem}"
    if pattern.startswith("/") or ".." in pattern.split("/"):
        return f"glob pattern {pattern!r} must be relative and must not contain '..'"
    return ""


def _same(a: Any, b: Any) -> bool:
    return bool(a == b) and type(a) is type(b)


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
        "enum": lambda v: any(_same(v, x) for x in spec.values),
    }
    if checks[spec.type](value):
        return ""
    shown = _shown(value)
    if spec.type == "enum":
        values = ", ".join(_literal(v) for v in spec.values) or "none"
        return (
            f"the default of input {spec.name!r} must be one of its values ({values}), got {shown}"
        )
    return f"the default of input {spec.name!r} must be {_TYPE_WORDS[spec.type]}, got {shown}"


def _default_hint(spec: InputSpec) -> str:
    value = spec.default
    if isinstance(value, str):
        if spec.type in ("integer", "number"):
            try:
                float(value)
            except ValueError:
                return ""
            return "remove the quotes"
        if spec.type == "boolean" and value in ("true", "false"):
            return "remove the quotes"
        if spec.type == "enum":
            close = difflib.get_close_matches(value, [str(v) for v in spec.values], n=1)
            return f"did you mean {close[0]!r}?" if close else ""
    if spec.type in ("string", "path") and not isinstance(value, dict | list):
        return f"quote it: '{_literal(value)}'"
    return ""


def _literal(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    kind = {bool: "boolean", int: "integer", float: "number", str: "string"}.get(
        type(value), type(value).__name__
    )
    return f"{kind} {_literal(value)}"


def semantic_checks(spec: AgentSpec, located: Located, file: str) -> list[Diagnostic]:
    """Every semantic problem of a schema-valid spec, located; warnings included."""
    checker = _Checker(spec, located, file)
    checker.inputs()
    checker.templates()
    checker.triggers()
    checker.rules()
    checker.budgets()
    checker.model()
    checker.environment()
    return (
        checker.out
        + escalation_checks(spec, located, file)
        + success_check_problems(spec, located, file)
        + guard_checks(spec, located, file)
        + notify_checks(spec, located, file)
        + trigger_payload_checks(spec, located, file)
        + checks_sandbox.sandbox_problems(spec, located, file)
    )


def _model_id_path(located: Located) -> tuple[Any, ...]:
    """Where the model id is written: ``model`` itself, or ``model.id`` in the mapping form."""
    return ("model", "id") if isinstance(located.value.get("model"), dict) else ("model",)


def key_variable_warnings(
    spec: AgentSpec, located: Located, file: str, environ: Mapping[str, str]
) -> list[Diagnostic]:
    """Warnings for the key variables the spec's models will read and ``environ`` lacks.

    ``model.api_key_env`` when set (else the primary's provider variable, such as
    ``OPENAI_API_KEY``, from :data:`runner.spec.prices.KEY_VARIABLES`), and the provider
    variable of each fallback at another provider. Warnings, not errors: the variable may
    be set where the agent runs (the daemon's environment) and not where it is validated.
    The local model and a model with an ``api_base`` (a server that may need no key) are
    not warned about unless ``api_key_env`` names a variable.
    """
    checker = _Checker(spec, located, file)
    model = spec.model
    hint = "export it where the agent runs (the shell, or the daemon's environment)"
    if model.id.startswith(LOCAL_PREFIX):
        return []
    if model.api_key_env:
        if not environ.get(model.api_key_env):
            checker.warning(
                located.value_pos(("model", "api_key_env")),
                f"environment variable {model.api_key_env!r} (model.api_key_env) is not set; "
                f"model {model.id!r} cannot be called without it",
                hint,
            )
    elif not model.api_base:
        _provider_key_warning(checker, model.id, _model_id_path(located), environ, hint)
    primary_provider = model.id.split("/", 1)[0]
    for index, fallback in enumerate(model.fallbacks):
        if fallback.split("/", 1)[0] != primary_provider:
            path = ("model", "fallbacks", index)
            _provider_key_warning(checker, fallback, path, environ, hint)
    return checker.out


def _provider_key_warning(
    checker: _Checker,
    model_id: str,
    path: tuple[Any, ...],
    environ: Mapping[str, str],
    hint: str,
) -> None:
    if model_id.startswith(LOCAL_PREFIX):
        return
    variables = KEY_VARIABLES.get(provider_of(model_id) or "", ())
    if variables and not any(environ.get(name) for name in variables):
        checker.warning(
            checker.located.value_pos(path),
            f"model {model_id!r} reads its key from {' or '.join(variables)}, which is not set",
            hint + ", or name another variable in model.api_key_env",
        )
