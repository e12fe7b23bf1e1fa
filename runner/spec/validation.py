"""Step 2 of loading: the document against the JSON Schema, every error located and in plain words.

JSON Schema errors are mapped back to the YAML file's own line and column (see
:mod:`runner.spec.yamlpos`) and rewritten in the manner of GitHub's gh-aw: unknown keys with
"did you mean", enums with their valid values, bounds with the value seen, and ``oneOf``
noise as one sentence. The schema itself is :mod:`runner.spec.schema`.
"""

from __future__ import annotations

import difflib
import functools
import re
from typing import TYPE_CHECKING, Any

from ..errors import Diagnostic
from .schema import resolve, schema

if TYPE_CHECKING:
    from .yamlpos import Located
    from .yamlpos import Path as NodePath

# Plain descriptions of the schema's patterns, so an error says what form was expected.
_SLUG = "^[a-z0-9][a-z0-9-]{0,62}$"
_DURATION = "^[0-9]+(\\.[0-9]+)?(ms|s|m|h)$"
_ENV_NAME = "^[A-Za-z_][A-Za-z0-9_]*$"
_PATTERN_FORMS = {
    _SLUG: "a lowercase slug: letters, digits and '-', at most 63 characters",
    _DURATION: "a duration such as '500ms', '90s', '15m' or '2h'",
    _ENV_NAME: "a name made of letters, digits and '_', not starting with a digit",
    "^https?://": "an http:// or https:// URL",
    "^/": "a URL path starting with '/'",
    "^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$": (
        "'module:function', for example 'mypkg.tools:word_count'"
    ),
    "^[A-Za-z0-9_.*?-]+(:[A-Za-z_][A-Za-z0-9_]*=.*)?$": (
        "'TOOL' or 'TOOL:ARG=GLOB', for example 'shell:argv=git status*'"
    ),
    "^[a-z0-9][a-z0-9_-]{0,30}$": (
        "a lowercase name: letters, digits, '_' and '-', at most 31 characters"
    ),
    "^[A-Za-z_][A-Za-z0-9_]{0,63}$": (
        "a name made of letters, digits and '_', not starting with a digit, at most 64 characters"
    ),
}

# Words people write for duration units, mapped to the spec's unit.
_UNIT_WORDS = {
    "ms": "ms",
    "msec": "ms",
    "millisecond": "ms",
    "milliseconds": "ms",
    "s": "s",
    "sec": "s",
    "secs": "s",
    "second": "s",
    "seconds": "s",
    "m": "m",
    "min": "m",
    "mins": "m",
    "minute": "m",
    "minutes": "m",
    "h": "h",
    "hr": "h",
    "hrs": "h",
    "hour": "h",
    "hours": "h",
}


@functools.cache
def validator() -> Any:
    """The compiled draft 2020-12 validator of the spec schema (cached; imports jsonschema)."""
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


def _literal(value: Any) -> str:
    """``value`` as YAML writes it: ``true``, ``null``, ``3``, ``'text'``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return text


def _shown(value: Any) -> str:
    if isinstance(value, dict | list):
        return _type_name(value)
    if value is None:
        return "null"
    return f"{_type_name(value)} {_literal(value)}"


def _hint_for(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return ""


def _first_clause(text: str) -> str:
    """The first clause of a description, lower-cased, for "add it: ..." hints."""
    cut = len(text)
    for mark in (". ", ": ", "; ", " ("):
        found = text.find(mark)
        if found > 0:
            cut = min(cut, found)
    clause = text[:cut].rstrip(".")
    return clause[:1].lower() + clause[1:]


def located_errors(error: Any) -> list[Any]:
    """The errors to report for one schema error: a ``oneOf``/``anyOf`` one flattened.

    Args:
        error: one ``jsonschema.ValidationError``, as ``iter_errors`` yields it.

    Returns:
        A list of one ``ValidationError``: for a ``oneOf``/``anyOf`` error, the branch
        error that reached deepest into the value (the branch the value was meant to be),
        if it went deeper than ``error`` itself; otherwise ``error``. Raises nothing.
    """
    if error.validator in ("oneOf", "anyOf") and error.context:
        # Pick the branch with the deepest errors (the one the value was meant to be).
        best = max(error.context, key=lambda e: (len(e.absolute_path), -len(e.schema_path)))
        if len(best.absolute_path) > len(error.absolute_path):
            return [best]
    return [error]


def diagnose(located: Located, file: str) -> list[Diagnostic]:
    """Validate ``located.value`` against the schema; every error located and in plain words.

    A value of the wrong type gets that one error (not also the checks that type would have
    had to pass); every unknown and every missing key gets its own. ``oneOf`` alternatives
    become one sentence.

    Returns:
        The diagnostics in file order, at most one per value, key or missing key.
    """
    errors = [e for raw in validator().iter_errors(located.value) for e in located_errors(raw)]
    wrong_type = {
        tuple(e.absolute_path)
        for e in errors
        if e.validator == "type" and "propertyNames" not in e.schema_path
    }
    out: dict[tuple[int, int, NodePath], Diagnostic] = {}
    for error in errors:
        if error.validator != "type" and tuple(error.absolute_path) in wrong_type:
            continue
        for subject, diagnostic in rewrite(located, file, error):
            out.setdefault((diagnostic.line, diagnostic.column, subject), diagnostic)
    return sorted(out.values(), key=lambda d: (d.line, d.column))


def rewrite(located: Located, file: str, error: Any) -> list[tuple[NodePath, Diagnostic]]:
    """One schema error in plain words, at the YAML's own line and column (gh-aw's manner).

    Args:
        located: the parsed document with the positions of its keys and values.
        file: the file name the diagnostics show.
        error: one ``jsonschema.ValidationError`` (best passed through
            :func:`located_errors` first).

    Returns:
        ``(path, diagnostic)`` pairs, ``path`` the tuple of keys and list indexes of the
        value, key or missing key a diagnostic is about: one pair per unknown or missing
        key, one for any other error. Raises nothing: a bad document is what it reports.
    """
    path: NodePath = tuple(error.absolute_path)
    if "propertyNames" in error.schema_path:
        return [_property_name_error(located, file, path, error)]
    schema_here: dict[str, Any] = error.schema if isinstance(error.schema, dict) else {}
    value = error.instance
    keyword = error.validator
    if keyword == "additionalProperties" and isinstance(value, dict):
        return _unknown_keys(located, file, path, schema_here, value)
    if keyword == "required" and isinstance(value, dict):
        return _missing_keys(located, file, path, schema_here, value)
    if keyword in ("oneOf", "anyOf"):
        return [(path, _one_of_error(located, file, path, schema_here, value))]
    return [(path, _value_error(located, file, path, error))]


def _unknown_keys(
    located: Located, file: str, path: NodePath, schema_here: dict[str, Any], value: dict[str, Any]
) -> list[tuple[NodePath, Diagnostic]]:
    allowed = sorted(schema_here.get("properties", {}))
    out = []
    for key in (k for k in value if k not in allowed):
        hint = _hint_for(key, allowed)
        if not hint:
            hint = "valid keys: " + ", ".join(allowed) if allowed else "no keys are allowed here"
        message = f"unknown key {key!r} in {_describe_path(path)}"
        subject = (*path, key)
        out.append((subject, located.diagnostic(file, located.key_pos(subject), message, hint)))
    return out


def _missing_keys(
    located: Located, file: str, path: NodePath, schema_here: dict[str, Any], value: dict[str, Any]
) -> list[tuple[NodePath, Diagnostic]]:
    properties: dict[str, Any] = schema_here.get("properties", {})
    unknown = [k for k in value if k not in properties]
    out = []
    for name in schema_here.get("required", []):
        if name in value:
            continue
        if difflib.get_close_matches(name, unknown, n=1, cutoff=0.6):
            continue  # a misspelling of it is reported as an unknown key, with "did you mean"
        described = resolve(properties.get(name, {}))
        description = described.get("description", "") if isinstance(described, dict) else ""
        clause = _first_clause(description) if description else ""
        hint = f"add it: {clause}" if clause and len(clause) <= 80 else ""
        message = f"missing required key {name!r} in {_describe_path(path)}"
        out.append(((*path, name), located.diagnostic(file, located.key_pos(path), message, hint)))
    return out


def _value_error(located: Located, file: str, path: NodePath, error: Any) -> Diagnostic:
    where = _describe_path(path)
    value = error.instance
    keyword = error.validator
    pos = located.value_pos(path)
    text = located.texts.get(path)  # how an unquoted non-string value was written
    if keyword == "type":
        expected = error.validator_value
        kinds = [expected] if isinstance(expected, str) else list(expected)
        words = " or ".join(_TYPE_WORDS.get(k, k) for k in kinds)
        return located.diagnostic(
            file,
            pos,
            f"{where} must be {words}, got {_shown(value)}",
            _type_hint(kinds, value, text, path),
        )
    if keyword == "enum":
        choices = [_literal(c) if not isinstance(c, str) else c for c in error.validator_value]
        hint = _hint_for(str(value), choices) if isinstance(value, str) else ""
        if not hint and text is not None and text in choices:
            hint = f"quote it: '{text}'"
        return located.diagnostic(
            file, pos, f"{where} must be one of {', '.join(choices)}; got {_shown(value)}", hint
        )
    if keyword == "const":
        expected = error.validator_value
        hint = "remove the quotes" if isinstance(value, str) and value == str(expected) else ""
        return located.diagnostic(
            file, pos, f"{where} must be {_literal(expected)}, got {_shown(value)}", hint
        )
    bounds = {
        "minimum": "at least",
        "maximum": "at most",
        "exclusiveMinimum": "more than",
        "exclusiveMaximum": "less than",
    }
    if keyword in bounds:
        return located.diagnostic(
            file, pos, f"{where} must be {bounds[keyword]} {error.validator_value}, got {value!r}"
        )
    if keyword == "pattern":
        pattern = str(error.validator_value)
        form = _PATTERN_FORMS.get(pattern, f"text matching {pattern}")
        return located.diagnostic(
            file, pos, f"{where} must be {form}; got {value!r}", _pattern_hint(pattern, value)
        )
    if keyword in ("minLength", "minItems", "minProperties"):
        return located.diagnostic(file, pos, f"{where} must not be empty")
    if keyword == "uniqueItems" and isinstance(value, list):
        for index, item in enumerate(value):
            if item in value[:index]:
                return located.diagnostic(
                    file,
                    located.value_pos((*path, index)),
                    f"{where} lists {_literal(item)} twice",
                    "remove one of them",
                )
    return located.diagnostic(file, pos, f"{where}: {error.message}")


def _type_hint(kinds: list[str], value: Any, text: str | None, path: NodePath) -> str:
    if value is None and text is None:  # `key:` or `-` with nothing after it
        empty = "key" if path and isinstance(path[-1], str) else "item"
        return f"give it a value, or remove the {empty}"
    if isinstance(value, str):
        if {"integer", "number"} & set(kinds) and _is_number(value):
            return "remove the quotes"
        if "boolean" in kinds and value in ("true", "false"):
            return "remove the quotes"
        if "array" in kinds and value:
            return f"write a list: [{value}]"
        return ""
    if "string" in kinds and text is not None:
        return f"quote it: '{text}'"
    if "array" in kinds and not isinstance(value, dict | list) and text is not None:
        return f"write a list: [{text}]"
    return ""


def _is_number(text: str) -> bool:
    try:
        float(text.strip())
    except ValueError:
        return False
    return True


def _pattern_hint(pattern: str, value: Any) -> str:
    if not isinstance(value, str):
        return ""
    if pattern == _SLUG:
        slug = re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-")[:63].rstrip("-")
        return f"for example {slug!r}" if slug else ""
    if pattern == _DURATION:
        match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]+)\s*", value)
        unit = _UNIT_WORDS.get(match.group(2).lower()) if match else None
        if match and unit:
            return f"did you mean '{match.group(1)}{unit}'?"
        return ""
    if pattern == _ENV_NAME:
        bare = value.strip().lstrip("$").strip("{}")
        if bare != value and re.fullmatch(_ENV_NAME, bare):
            return f"write the variable's name only: '{bare}'"
    return ""


def _property_name_error(
    located: Located, file: str, path: NodePath, error: Any
) -> tuple[NodePath, Diagnostic]:
    # jsonschema reports a propertyNames error at the parent, with the bad name as instance.
    name = error.instance
    form = _PATTERN_FORMS.get(str(error.validator_value), "a valid name")
    subject = (*path, name)
    return subject, located.diagnostic(
        file,
        located.key_pos(subject),
        f"name {name!r} in {_describe_path(path)} is not allowed: it must be {form}",
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
    forms = []
    for branch in (resolve(b) for b in branches if isinstance(b, dict)):
        words = [w for w in branch.get("enum", ()) if isinstance(w, str)]
        if words:
            forms.append(", ".join(repr(w) for w in words))
        elif branch.get("type") == "object" and branch.get("properties"):
            forms.append(f"an object with {', '.join(sorted(branch['properties']))}")
    return located.diagnostic(
        file,
        located.value_pos(path),
        f"{_describe_path(path)} does not have any allowed form",
        f"write {' or '.join(forms)}" if forms else "",
    )
