"""The spec's JSON Schema document: where it ships, and reading it.

The schema (``schemas/agent.schema.json``, draft 2020-12) is the single definition of the
spec language: its keys, their types and their defaults. It is shipped inside the wheel as
``runner/schemas/agent.schema.json`` (``pyproject.toml``'s ``force-include``) and read from
the source tree in a checkout. Validating a document against it, with errors in plain
words, is :mod:`runner.spec.validation`.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

SCHEMA_ID = "https://agentrun.dev/schemas/agent.schema.json"


def schema_path() -> Path:
    """Path of the schema file: inside the installed package, else in the source tree.

    Raises:
        FileNotFoundError: when neither exists (a broken installation).
    """
    package = Path(__file__).resolve().parent.parent  # a plain directory: not zip-safe
    shipped = package / "schemas" / "agent.schema.json"
    if shipped.is_file():
        return shipped
    source = package.parent / "schemas" / "agent.schema.json"
    if source.is_file():
        return source
    raise FileNotFoundError("agent.schema.json is missing from this installation of agentrun")


@functools.cache
def schema() -> dict[str, Any]:
    """The parsed spec schema (cached)."""
    loaded: dict[str, Any] = json.loads(schema_path().read_text(encoding="utf-8"))
    return loaded


def resolve(node: Any) -> Any:
    """Follow a local ``$ref`` (``#/$defs/...``) in the spec schema, once or more."""
    seen = 0
    while isinstance(node, dict) and "$ref" in node and seen < 10:
        target: Any = schema()
        for part in str(node["$ref"]).lstrip("#/").split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        node, seen = target, seen + 1
    return node


def property_schema(pointer: str, name: str) -> dict[str, Any]:
    """The schema of property ``name`` of the object at JSON pointer ``pointer`` (``#/...``).

    Returned as written (its ``default`` and ``$ref`` as they are, not followed).

    Raises:
        KeyError: when the schema has no such object or property (a spec class that names
            the wrong place: the schema agreement test catches it first).
    """
    node: Any = schema()
    for part in pointer.removeprefix("#").strip("/").split("/") if pointer != "#" else []:
        node = resolve(node)[part.replace("~1", "/").replace("~0", "~")]
    found: dict[str, Any] = resolve(node)["properties"][name]
    return found
