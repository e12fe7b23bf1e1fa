"""The JSON Schema and the typed spec classes describe the same language.

- every spec class in ``runner.spec.types`` with a ``SCHEMA_POINTER`` has exactly the fields the
  schema object at that pointer has as ``properties`` (less the class's ``DERIVED`` fields
  and its ``KEYED_BY`` name), and a field typed with another such class points at the
  schema object that class names;
- each default is written once, in the schema: every field whose schema property declares a
  ``default`` is given ``SCHEMA_DEFAULT`` in ``runner/spec/types.py`` and holds that default,
  every other class default stands for "left out" (None, empty), and the builder gives a
  spec that leaves a key out the schema's default;
- the schema is a valid draft 2020-12 schema with an ``$id``, closes every object that has
  ``properties`` with ``additionalProperties: false``, describes every property and gives
  examples for every leaf property, and its defaults are valid values.
"""

from __future__ import annotations

import ast
import inspect
import pickle
import textwrap
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

import runner.spec.types as spec_module
from runner.spec import check_spec
from runner.spec.schema import SCHEMA_ID, schema
from runner.spec.specclass import SpecClass, spec_fields
from runner.spec.types import schema_default

SCHEMA = schema()


def resolve_pointer(pointer: str) -> Any:
    assert pointer == "#" or pointer.startswith("#/"), pointer
    node: Any = SCHEMA
    for part in pointer[2:].split("/") if pointer != "#" else []:
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"{pointer}: no {part!r}"
        node = node[part]
    return node


def deref(node: Any) -> Any:
    """Follow ``$ref`` (local pointers only) until a schema without one."""
    for _ in range(10):
        if not (isinstance(node, dict) and "$ref" in node):
            return node
        node = resolve_pointer(node["$ref"])
    raise AssertionError("a $ref cycle")


SPEC_CLASSES = sorted(
    (
        cls
        for _, cls in inspect.getmembers(spec_module, inspect.isclass)
        if issubclass(cls, SpecClass)
        and cls.__module__ == spec_module.__name__
        and "SCHEMA_POINTER" in vars(cls)
    ),
    key=lambda cls: cls.__name__,
)


def mirrored_fields(cls: type[SpecClass]) -> set[str]:
    skipped = set(getattr(cls, "DERIVED", ())) | {getattr(cls, "KEYED_BY", None)}
    return set(spec_fields(cls)) - skipped


def test_the_spec_classes_are_found() -> None:
    names = {cls.__name__ for cls in SPEC_CLASSES}
    assert {"AgentSpec", "ModelSpec", "InputSpec", "TriggerSpec", "McpServerSpec"} <= names
    assert len(SPEC_CLASSES) >= 15


@pytest.mark.parametrize("cls", SPEC_CLASSES, ids=lambda cls: cls.__name__)
def test_spec_class_fields_equal_schema_properties(cls: type[SpecClass]) -> None:
    target = deref(resolve_pointer(cls.SCHEMA_POINTER))  # type: ignore[attr-defined]
    assert isinstance(target, dict)
    properties = set(target.get("properties", {}))
    fields = mirrored_fields(cls)
    assert fields - properties == set(), f"{cls.__name__} fields the schema lacks"
    assert properties - fields == set(), f"schema properties {cls.__name__} lacks"
    for name in set(getattr(cls, "DERIVED", ())) | {getattr(cls, "KEYED_BY", None)} - {None}:
        assert name in spec_fields(cls), f"{cls.__name__}.{name}"


def _spec_classes_in(hint: Any) -> Iterator[tuple[str, type]]:
    """``(how, cls)`` for each spec class in a type hint: ``direct``, ``items`` or ``values``."""
    origin = typing.get_origin(hint)
    arguments = typing.get_args(hint)
    if isinstance(hint, type) and "SCHEMA_POINTER" in vars(hint):
        yield "direct", hint
    elif origin is tuple and arguments:
        for how, cls in _spec_classes_in(arguments[0]):
            yield ("items" if how == "direct" else how), cls
    elif origin is dict and len(arguments) == 2:
        for how, cls in _spec_classes_in(arguments[1]):
            yield ("values" if how == "direct" else how), cls
    else:
        for argument in arguments:  # X | None
            yield from _spec_classes_in(argument)


@pytest.mark.parametrize("cls", SPEC_CLASSES, ids=lambda cls: cls.__name__)
def test_nested_spec_classes_point_at_their_schema_objects(cls: type[SpecClass]) -> None:
    hints = typing.get_type_hints(cls, vars(spec_module))
    properties = deref(resolve_pointer(cls.SCHEMA_POINTER)).get("properties", {})  # type: ignore[attr-defined]
    for name in mirrored_fields(cls):
        for how, inner in _spec_classes_in(hints[name]):
            node = deref(properties[name])
            expected = deref(resolve_pointer(inner.SCHEMA_POINTER))  # type: ignore[attr-defined]
            if "anyOf" in node:  # a word or an object (sandbox): the object's branch
                node = next((deref(b) for b in node["anyOf"] if deref(b) is expected), node)
            if how == "items":
                node = deref(node["items"])
            elif how == "values":
                node = deref(node["additionalProperties"])
            expected = deref(resolve_pointer(inner.SCHEMA_POINTER))  # type: ignore[attr-defined]
            assert node is expected, f"{cls.__name__}.{name} → {inner.__name__}"


# ---------------------------------------------------------------------------------------------
# each default written once: the schema's


def schema_defaults(cls: type[SpecClass]) -> dict[str, Any]:
    """Field name → the schema's default (as the class holds it), for each property with one."""
    properties = deref(resolve_pointer(cls.SCHEMA_POINTER)).get("properties", {})  # type: ignore[attr-defined]
    return {
        name: schema_default(cls.SCHEMA_POINTER, name)  # type: ignore[attr-defined]
        for name, node in properties.items()
        if "default" in node
    }


def _fields_given_schema_default(cls: type[SpecClass]) -> set[str]:
    """The fields the class body in runner/spec/types.py assigns ``SCHEMA_DEFAULT``."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0]
    assert isinstance(body, ast.ClassDef)
    return {
        statement.target.id
        for statement in body.body
        if isinstance(statement, ast.AnnAssign)
        and isinstance(statement.target, ast.Name)
        and isinstance(statement.value, ast.Name)
        and statement.value.id == "SCHEMA_DEFAULT"
    }


def test_schema_defaults_are_found() -> None:
    found = {f"{cls.__name__}.{name}" for cls in SPEC_CLASSES for name in schema_defaults(cls)}
    assert {"AgentSpec.autonomy", "BudgetsSpec.tool_timeout", "WatchSpec.patterns"} <= found
    assert len(found) == 36


@pytest.mark.parametrize("cls", SPEC_CLASSES, ids=lambda cls: cls.__name__)
def test_every_schema_default_is_written_once_and_held_by_the_class(cls: type[SpecClass]) -> None:
    defaults = schema_defaults(cls)
    assert _fields_given_schema_default(cls) == set(defaults), "SCHEMA_DEFAULT, not a literal"
    for name, value in defaults.items():
        held = cls._DEFAULTS[name]
        assert held == value and type(held) is type(value), f"{cls.__name__}.{name}"
        assert getattr(cls, name) == value


#: Class defaults with a meaning the schema cannot declare: ``required`` follows ``default``.
DERIVED_DEFAULTS = {("InputSpec", "required")}


@pytest.mark.parametrize("cls", SPEC_CLASSES, ids=lambda cls: cls.__name__)
def test_every_other_class_default_means_left_out(cls: type[SpecClass]) -> None:
    required = [name for name in spec_fields(cls) if name not in cls._DEFAULTS]
    made = cls(**dict.fromkeys(required, None))  # every default, as an instance holds it
    skipped = set(schema_defaults(cls)) | {
        name for c, name in DERIVED_DEFAULTS if c == cls.__name__
    }
    for name in set(spec_fields(cls)) - set(required) - skipped:
        value = getattr(made, name)
        empty = value is None or value in ("", (), {}) or isinstance(value, SpecClass)
        assert empty, f"{cls.__name__}.{name} = {value!r}: declare the default in the schema"


def _spec_objects(value: Any) -> Iterator[SpecClass]:
    if isinstance(value, SpecClass):
        yield value
        for name in spec_fields(value):
            yield from _spec_objects(getattr(value, name))
    elif isinstance(value, tuple | list):
        for item in value:
            yield from _spec_objects(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _spec_objects(item)


LEAVES_EVERY_DEFAULT_OUT = """\
version: 1
name: defaults
model: openai/gpt-4o-mini
goal: Check the defaults.
tools:
  http_request: {hosts: [example.com]}
  mcp:
    time: {command: mcp-server-time, allow: ["*"]}
budgets: {}
loop_detection: {}
output: {}
checks:
  - file: report.md
guards:
  - {tools: [http_request], prompt: Deny anything.}
triggers:
  - cron: "0 6 * * *"
  - watch: {paths: [inbox]}
  - webhook: {secret_env: HOOK_SECRET}
  - queue: {stream: tickets}
"""


def test_the_builder_gives_a_key_left_out_the_schemas_default(tmp_path: Path) -> None:
    path = tmp_path / "defaults.yaml"
    path.write_text(LEAVES_EVERY_DEFAULT_OUT, encoding="utf-8")
    spec, diagnostics = check_spec(path)
    assert spec is not None, [d.headline() for d in diagnostics]
    seen = set()
    for obj in _spec_objects(spec):
        for name, value in schema_defaults(type(obj)).items():
            held = getattr(obj, name)
            assert held == value and type(held) is type(value), f"{type(obj).__name__}.{name}"
        seen.add(type(obj))
    with_defaults = {cls for cls in SPEC_CLASSES if schema_defaults(cls)}
    assert with_defaults - seen == set(), "objects the spec above does not build"


# ---------------------------------------------------------------------------------------------
# the schema's own quality


def test_schema_is_valid_draft_2020_12_with_an_id() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA["$id"] == SCHEMA_ID


_SUBSCHEMA_MAPS = ("properties", "$defs", "patternProperties")
_SUBSCHEMA_LISTS = ("oneOf", "anyOf", "allOf", "prefixItems")
_SUBSCHEMA_ONE = ("items", "additionalProperties", "propertyNames", "not", "if", "then", "else")


def subschemas(node: Any, where: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema object inside the spec schema (not inside examples, defaults or enums)."""
    if not isinstance(node, dict):
        return
    yield where, node
    for keyword in _SUBSCHEMA_MAPS:
        for key, child in node.get(keyword, {}).items():
            yield from subschemas(child, f"{where}/{keyword}/{key}")
    for keyword in _SUBSCHEMA_LISTS:
        for index, child in enumerate(node.get(keyword, [])):
            yield from subschemas(child, f"{where}/{keyword}/{index}")
    for keyword in _SUBSCHEMA_ONE:
        yield from subschemas(node.get(keyword), f"{where}/{keyword}")


def properties_of_schema() -> Iterator[tuple[str, dict[str, Any]]]:
    for where, node in subschemas(SCHEMA):
        for name, child in node.get("properties", {}).items():
            yield f"{where}/properties/{name}", child


def test_subschema_walk_sees_the_whole_schema() -> None:
    places = {where for where, _ in subschemas(SCHEMA)}
    assert "#/$defs/trigger/properties/watch/properties/events/items" in places
    assert "#/$defs/tools/properties/functions/additionalProperties" in places
    assert len(list(properties_of_schema())) >= 90


def test_every_object_with_properties_is_closed() -> None:
    open_objects = [
        where
        for where, node in subschemas(SCHEMA)
        if "properties" in node and node.get("additionalProperties") is not False
    ]
    assert open_objects == []


def test_every_property_has_a_description() -> None:
    missing = [
        where
        for where, node in properties_of_schema()
        if not node.get("description") and not deref(node).get("description")
    ]
    assert missing == []


def test_every_leaf_property_has_examples() -> None:
    missing = []
    for where, node in properties_of_schema():
        target = deref(node)
        if "properties" in target:
            continue  # an object: its own properties carry the examples
        if not (node.get("examples") or target.get("examples")):
            missing.append(where)
    assert missing == []


def test_schema_examples_are_valid_for_their_property() -> None:
    """An example that the property's own schema refuses would teach the wrong thing."""
    problems = []
    for where, node in properties_of_schema():
        subschema = {**node, "$defs": SCHEMA["$defs"]}
        validator = Draft202012Validator(subschema)
        for example in node.get("examples", []):
            errors = [e.message for e in validator.iter_errors(example)]
            if errors:
                problems.append(f"{where}: {example!r}: {errors[0]}")
    assert problems == []


def test_schema_defaults_are_valid_for_their_property() -> None:
    problems = []
    for where, node in properties_of_schema():
        if "default" not in node:
            continue
        validator = Draft202012Validator({**node, "$defs": SCHEMA["$defs"]})
        errors = [e.message for e in validator.iter_errors(node["default"])]
        if errors:
            problems.append(f"{where}: {node['default']!r}: {errors[0]}")
    assert problems == []


# ---------------------------------------------------------------------------------------------
# the spec classes behave as the frozen dataclasses they replaced


def test_spec_objects_are_frozen_values() -> None:
    from runner.spec import ModelSpec, Pricing
    from runner.spec.specclass import FrozenSpecError, replace

    price = Pricing(input_per_mtok=1.0, output_per_mtok=2.0)
    assert price == Pricing(1.0, 2.0)
    assert price != Pricing(1.0, 3.0)
    assert hash(price) == hash(Pricing(1.0, 2.0))
    assert repr(price) == "Pricing(input_per_mtok=1.0, output_per_mtok=2.0)"
    with pytest.raises(FrozenSpecError, match="input_per_mtok"):
        price.input_per_mtok = 5.0  # type: ignore[misc]
    with pytest.raises(FrozenSpecError):
        del price.output_per_mtok  # type: ignore[misc]
    changed = replace(price, output_per_mtok=4.0)
    assert (changed.input_per_mtok, changed.output_per_mtok, price.output_per_mtok) == (1, 4, 2)
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        replace(price, bogus=1)
    with pytest.raises(TypeError, match="missing required argument 'output_per_mtok'"):
        Pricing(input_per_mtok=1.0)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="multiple values"):
        Pricing(1.0, input_per_mtok=2.0)  # type: ignore[misc]
    with pytest.raises(TypeError, match="positional"):
        Pricing(1.0, 2.0, 3.0)  # type: ignore[call-arg]

    first, second = ModelSpec(id="a"), ModelSpec(id="a")
    assert first.params == {} and first.params is not second.params  # a fresh default each
    assert "params" not in vars(ModelSpec)  # no shared mutable default left on the class
    with pytest.raises(TypeError, match="unhashable"):
        hash(first)  # holds a dict, as a frozen dataclass would
    assert first == second and first != "a"
    assert pickle.loads(pickle.dumps(first)) == first
