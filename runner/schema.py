"""The spec's JSON Schema: where it ships, and its errors rewritten as located, plain sentences.

The schema (``schemas/agent.schema.json``, draft 2020-12) is the single definition of the
spec language. It is shipped inside the wheel as ``runner/schemas/agent.schema.json`` and
read from the source tree in a checkout. JSON Schema errors are mapped back to the YAML
file's own line and column (see :mod:`runner.yamlpos`) and rewritten in the manner of
GitHub's gh-aw: unknown keys with "did you mean", enums with their valid values, bounds
with the value seen, and ``oneOf`` noise as one sentence.
"""

from __future__ import annotations

import difflib
import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import Diagnostic
from .yamlpos import Located
from .yamlpos import Path as NodePath

SCHEMA_ID = "https://agentrun.dev/schemas/agent.schema.json"

# Plain descriptions of the schema's patterns, so an error says what form was expected.
_PATTERN_FORMS = {
    "^[a-z0-9][a-z0-9-]{0,62}$": "a lowercase slug: letters, digits and '-', at most 63 characters",
    "^[0-9]+(\\.[0-9]+)?(ms|s|m|h)$": "a duration such as '500ms', '90s', '15m' or '2h'",
    "^[A-Za-z_][A-Za-z0-9_]*$": "a name made of letters, digits and '_', not starting with a digit",
    "^https?://": "an http:// or https:// URL",
    "^/": "a URL path starting with '/'",
    "^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$": "'module:function', for example 'mypkg.tools:word_count'",
    "^[A-Za-z0-9_.*?-]+(:[A-Za-z_][A-Za-z0-9_]*=.*)?$": "'TOOL' or 'TOOL:ARG=GLOB', for example 'shell:argv=git status*'",
}


def schema_path() -> Path:
    """Path of the schema file: inside the installed package, else in the source tree.

    Raises:
        FileNotFoundError: when neither exists (a broken installation).
    """
    shipped = resources.files("runner").joinpath("schemas/agent.schema.json")
    if shipped.is_file():
        return Path(str(shipped))
    source = Path(__file__).resolve().parent.parent / "schemas" / "agent.schema.json"
    if source.is_file():
        return source
    raise FileNotFoundError("agent.schema.json is missing from this installation of agentrun")


@functools.cache
def schema() -> dict[str, Any]:
    """The parsed spec schema (cached)."""
    loaded: dict[str, Any] = json.loads(schema_path().read_text(encoding="utf-8"))
    return loaded


@functools.cache
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema())


def _describe_path(path: NodePath) -> str:
    if not path:
        return "the spec"
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return f"'{text}'"


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def _shown(value: Any) -> str:
    if isinstance(value, dict | list):
        return _type_name(value)
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{_type_name(value)} {text}"


def _hint_for(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return ""


def _located_errors(error: Any) -> list[Any]:
    """Flatten ``oneOf``/``anyOf`` errors: keep the branch that came closest, if one did."""
    if error.validator in ("oneOf", "anyOf") and error.context:
        # Pick the branch with the deepest errors (the one the value was meant to be).
        best = max(error.context, key=lambda e: (len(e.absolute_path), -len(e.schema_path)))
        if len(best.absolute_path) > len(error.absolute_path):
            return [best]
    return [error]


def diagnose(located: Located, file: str) -> list[Diagnostic]:
    """Validate ``located.value`` against the schema; every error located and in plain words.

    Returns:
        The diagnostics in file order, at most one per location (the first, most specific).
    """
    out: dict[tuple[int, int, str], Diagnostic] = {}
    for raw in _validator().iter_errors(located.value):
        for error in _located_errors(raw):
            diagnostic = _rewrite(located, file, error)
            key = (diagnostic.line, diagnostic.column, diagnostic.message)
            out.setdefault(key, diagnostic)
    # One message per position: a value that is both the wrong type and the wrong form says
    # the first thing.
    by_pos: dict[tuple[int, int], Diagnostic] = {}
    for diagnostic in out.values():
        by_pos.setdefault((diagnostic.line, diagnostic.column), diagnostic)
    return sorted(by_pos.values(), key=lambda d: (d.line, d.column))


def _rewrite(located: Located, file: str, error: Any) -> Diagnostic:  # noqa: C901
    path: NodePath = tuple(error.absolute_path)
    if "propertyNames" in error.schema_path:
        return _property_name_error(located, file, path, error)
    where = _describe_path(path)
    value = error.instance
    keyword = error.validator
    schema_here: dict[str, Any] = error.schema if isinstance(error.schema, dict) else {}

    if keyword == "additionalProperties" and isinstance(value, dict):
        allowed = sorted(schema_here.get("properties", {}))
        unknown = [k for k in value if k not in allowed]
        key = unknown[0] if unknown else "?"
        hint = _hint_for(key, allowed)
        if not hint:
            hint = "valid keys: " + ", ".join(allowed) if allowed else "no keys are allowed here"
        return located.diagnostic(
            file, located.key_pos((*path, key)), f"unknown key {key!r} in {where}", hint
        )
    if keyword == "required":
        missing = error.validator_value
        names = [m for m in missing if isinstance(value, dict) and m not in value]
        name = names[0] if names else "?"
        return located.diagnostic(
            file, located.key_pos(path), f"missing required key {name!r} in {where}"
        )
    pos = located.value_pos(path)
    if keyword == "type":
        expected = error.validator_value
        kinds = [expected] if isinstance(expected, str) else list(expected)
        words = " or ".join(_TYPE_WORDS.get(k, k) for k in kinds)
        hint = ""
        if isinstance(value, str) and "integer" in kinds and value.strip().isdigit():
            hint = "remove the quotes"
        return located.diagnostic(
            file, pos, f"{where} must be {words}, got {_shown(value)}", hint
        )
    if keyword == "enum":
        choices = [str(c) for c in error.validator_value]
        hint = _hint_for(str(value), choices) if isinstance(value, str) else ""
        return located.diagnostic(
            file,
            pos,
            f"{where} must be one of {', '.join(choices)}; got {_shown(value)}",
            hint,
        )
    if keyword == "const":
        return located.diagnostic(
            file, pos, f"{where} must be {error.validator_value!r}, got {_shown(value)}"
        )
    bounds = {
        "minimum": "at least",
        "maximum": "at most",
        "exclusiveMinimum": "more than",
        "exclusiveMaximum": "less than",
    }
    if keyword in bounds:
        return located.diagnostic(
            file,
            pos,
            f"{where} must be {bounds[keyword]} {error.validator_value}, got {value!r}",
        )
    if keyword == "pattern":
        form = _PATTERN_FORMS.get(error.validator_value, f"text matching {error.validator_value}")
        return located.diagnostic(file, pos, f"{where} must be {form}; got {value!r}")
    if keyword in ("minLength", "minItems", "minProperties"):
        return located.diagnostic(file, pos, f"{where} must not be empty")
    if keyword == "uniqueItems":
        return located.diagnostic(file, pos, f"{where} lists the same item twice")
    if keyword in ("oneOf", "anyOf"):
        return _one_of_error(located, file, path, schema_here, value)
    return located.diagnostic(file, pos, f"{where}: {error.message}")


def _property_name_error(located: Located, file: str, path: NodePath, error: Any) -> Diagnostic:
    # jsonschema reports a propertyNames error at the parent, with the bad name as instance.
    name = error.instance
    parent = path
    form = _PATTERN_FORMS.get(str(error.validator_value), "a valid name")
    return located.diagnostic(
        file,
        located.key_pos((*parent, name)),
        f"name {name!r} in {_describe_path(parent)} is not allowed: it must be {form}",
    )


def _one_of_error(
    located: Located, file: str, path: NodePath, schema_here: dict[str, Any], value: Any
) -> Diagnostic:
    branches = schema_here.get("oneOf") or schema_here.get("anyOf") or []
    required_sets = [b.get("required", []) for b in branches if isinstance(b, dict)]
    if required_sets and all(len(r) == 1 for r in required_sets):
        names = [r[0] for r in required_sets]
        present = [n for n in names if isinstance(value, dict) and n in value]
        listed = " or ".join(repr(n) for n in names)
        if present:
            message = f"{_describe_path(path)} sets {' and '.join(map(repr, present))}"
            return located.diagnostic(
                file, located.key_pos((*path, present[-1])), message, f"use only one of {listed}"
            )
        return located.diagnostic(
            file, located.key_pos(path), f"{_describe_path(path)} needs one of {listed}"
        )
    return located.diagnostic(
        file, located.value_pos(path), f"{_describe_path(path)} does not have any allowed form"
    )
