"""Semantic checks of the spec's success ``checks``: the author's mistakes, located.

Called from :func:`runner.spec.checks.semantic_checks`. Each check must:

- set exactly one of ``command``, ``file``, ``answer_matches`` and ``answer_schema``;
  ``matches`` only goes with ``file`` and ``timeout`` only with ``command``;
- for ``command``: be allowed by the spec's ``tools.shell``, parsed and matched exactly as
  a call of the shell tool would be (:mod:`runner.spec.command_lines`); a spec without the
  shell tool cannot run check commands, and a check command outside the allowed patterns
  is an error (a check must not be a way around the allowlist);
- for ``file``: name a path inside ``workdir`` (relative, no ``..``); symlinks are
  resolved when the check runs, which refuses one that points out;
- have a valid Python regular expression in ``matches`` / ``answer_matches`` and a valid
  JSON Schema (draft 2020-12) in ``answer_schema``.

A ``max_check_retries`` with no checks is a warning: it has nothing to count.
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import PurePosixPath
from typing import Any

from ..errors import Diagnostic, SetupError, ToolError
from .command_lines import allowed_commands, parse_pattern
from .types import AgentSpec, CheckSpec
from .yamlpos import Located

#: The keys of which a check sets exactly one.
CHECK_KINDS = ("command", "file", "answer_matches", "answer_schema")
#: JSON Schema's type names, for "did you mean".
_JSON_TYPES = ["array", "boolean", "integer", "null", "number", "object", "string"]


def schema_problem(error: Any) -> tuple[str, str]:
    """A ``jsonschema`` ``SchemaError`` in plain words: ``(message, hint)``."""
    if error.path and error.path[-1] == "type" and isinstance(error.instance, str):
        message = f"{error.instance!r} is not a JSON Schema type ({', '.join(_JSON_TYPES)})"
        close = difflib.get_close_matches(error.instance, _JSON_TYPES, n=1)
        return message, f"did you mean {close[0]!r}?" if close else ""
    message = " ".join(str(error.message).split())
    if len(message) > 160:
        message = message[:157] + "..."
    return message, ""


def success_check_problems(spec: AgentSpec, located: Located, file: str) -> list[Diagnostic]:
    """Every problem of the spec's ``checks`` and ``max_check_retries``, located."""
    out: list[Diagnostic] = []
    raw_checks = located.value.get("checks") or []
    for check in spec.checks:
        raw = raw_checks[check.index] if check.index < len(raw_checks) else {}
        out.extend(_check_problems(spec, check, raw, located, file))
    if not spec.checks and "max_check_retries" in located.value:
        out.append(
            located.diagnostic(
                file,
                located.key_pos(("max_check_retries",)),
                "max_check_retries has no effect: the spec has no checks",
                "add 'checks:' (docs/concepts/checks.md) or remove max_check_retries",
                "warning",
            )
        )
    return out


def _check_problems(
    spec: AgentSpec, check: CheckSpec, raw: dict[str, Any], located: Located, file: str
) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    here = ("checks", check.index)
    shown = f"check {check.index + 1}"

    def error(path: tuple[Any, ...], message: str, hint: str = "", key: bool = False) -> None:
        pos = located.key_pos(here + path) if key else located.value_pos(here + path)
        out.append(located.diagnostic(file, pos, message, hint))

    kinds = [key for key in raw if key in CHECK_KINDS]  # in the order written
    needs = "each check needs exactly one of " + ", ".join(map(repr, CHECK_KINDS))
    if not kinds:
        error((), f"{shown} has no kind; {needs}", "for example '- command: python -m pytest -q'")
        return out
    if len(kinds) > 1:
        error((kinds[1],), f"{shown} sets {' and '.join(map(repr, kinds))}; {needs}", key=True)
        return out
    kind = kinds[0]
    a_kind = f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} check"
    if "matches" in raw and kind != "file":
        error(
            ("matches",),
            f"'matches' only applies to file checks, and {shown} is {a_kind}",
            "to test the final answer use 'answer_matches'",
            key=True,
        )
    if "timeout" in raw and kind != "command":
        error(
            ("timeout",),
            f"'timeout' only applies to command checks, and {shown} is {a_kind}; remove 'timeout'",
            key=True,
        )
    for key in ("matches", "answer_matches"):
        pattern = raw.get(key)
        if isinstance(pattern, str):
            try:
                re.compile(pattern)
            except re.error as problem:
                error(
                    (key,),
                    f"{shown}: {key} {pattern!r} is not a valid regular expression: "
                    f"{problem.msg} at character {problem.pos}",
                    "Python 're' syntax; in YAML, single quotes keep backslashes as written",
                )
    if check.answer_schema is not None:
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        try:
            Draft202012Validator.check_schema(check.answer_schema)
        except SchemaError as problem:
            message, hint = schema_problem(problem)
            error(
                ("answer_schema", *problem.path),
                f"{shown}: answer_schema is not a valid JSON Schema: {message}",
                hint,
            )
    if check.file is not None:
        path = PurePosixPath(check.file)
        if path.is_absolute() or ".." in path.parts:
            error(
                ("file",),
                f"{shown}: file {check.file!r} is outside the agent's workdir",
                "name a path relative to workdir, without '..'",
            )
    if check.command is not None:
        out.extend(_command_problems(spec, check, shown, located, file))
    return out


def _command_problems(
    spec: AgentSpec, check: CheckSpec, shown: str, located: Located, file: str
) -> list[Diagnostic]:
    pos = located.value_pos(("checks", check.index, "command"))
    shell = spec.tools.shell
    if shell is None:
        return [
            located.diagnostic(
                file,
                pos,
                f"{shown} runs a command, but the spec has no shell tool: check commands "
                "run under its allowed commands",
                "declare tools.shell with a commands pattern that allows it, for example "
                f"tools: {{shell: {{commands: [{json.dumps(check.command)}]}}}}",
            )
        ]
    try:
        patterns = [parse_pattern(pattern) for pattern in shell.commands]
    except SetupError:
        return []  # the pattern's own problem is reported where the pattern is
    try:
        allowed_commands(check.command or "", patterns, shell.commands, bool(shell.interpreter))
    except ToolError as problem:
        return [
            located.diagnostic(
                file,
                pos,
                f"{shown}: {problem}",
                "a check command must be allowed by tools.shell.commands, like a shell "
                "call; add a pattern that allows it, or change the command",
            )
        ]
    return []
