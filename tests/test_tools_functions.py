"""Python function tools: import, schema from signature and docstring, calls and errors."""

from __future__ import annotations

import asyncio
import itertools
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from runner.errors import SetupError, ToolArgumentError, ToolError
from runner.tools import ToolRegistry
from runner.tools.functions import FunctionTool, parse_docstring, type_schema

MODULE_SOURCE = '''
from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal, Optional


def word_count(text: str, min_length: int = 1, *, unique: bool = False) -> dict[str, int]:
    """Count the words in a text.

    Words are separated by whitespace; this paragraph is not part of the summary.

    Args:
        text: The text to count
            words in.
        min_length (int): Shortest word counted, in characters.
        unique: Count each distinct word once.

    Returns:
        The count, as {"words": N}.
    """
    words = [w for w in text.split() if len(w) >= min_length]
    return {"words": len(set(words)) if unique else len(words)}


def kinds(
    a: float,
    b: list[str],
    c: dict[str, int],
    d: Optional[int] = None,
    e: Literal["x", "y"] = "x",
    f: list[int] | None = None,
    g: tuple[int, str] = (1, "a"),
    h: Annotated[str, "an annotated note"] = "",
    i=3,
    j: Any = None,
    k: set[str] = frozenset(),
    /,
) -> str:
    return repr((a, b, c, d, e, f, g, h, i, j, k))


def with_varargs(first: int, *rest: int, **options: str) -> int:
    return first + sum(rest)


def as_int(n: int) -> str:
    return type(n).__name__


async def shout(text: str) -> str:
    """Upper-case a text, asynchronously."""
    await asyncio.sleep(0)
    return text.upper()


def boom(x: int) -> int:
    """Always fails."""
    raise ValueError(f"bad x: {x}")


def leave() -> None:
    raise SystemExit(2)


def listing() -> list[dict[str, int]]:
    return [{"a": 1}, {"b": 2}]


def nothing() -> None:
    return None


def undocumented(x):
    return x


def bad_type(x: object) -> None:
    pass


def bad_keys(x: dict[int, str]) -> None:
    pass


NOT_CALLABLE = 42


class Greeter:
    """Greets people."""

    def __init__(self, name: str, loud: bool = False) -> None:
        self.text = f"hello {name}" + ("!" if loud else "")

    def __str__(self) -> str:
        return self.text


class Adder:
    def __call__(self, a: int, b: int = 1) -> int:
        """Add two numbers."""
        return a + b


add = Adder()
'''

_counter = itertools.count()


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A freshly written module with the functions above; its (unique) name."""
    name = f"agentrun_fn_{next(_counter)}_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(MODULE_SOURCE))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def tool(module: str, function: str, risk: str | None = None) -> FunctionTool:
    return FunctionTool(function, f"{module}:{function}", risk)


# -- schema ----------------------------------------------------------------------------------


def test_schema_and_description_from_signature_and_docstring(module: str) -> None:
    t = tool(module, "word_count")
    assert t.name == "word_count"
    assert t.source == "function"
    assert t.description == "Count the words in a text."
    assert t.parameters == {
        "type": "object",
        "properties": {
            "text": {"type": "string", "description": "The text to count words in."},
            "min_length": {
                "type": "integer",
                "description": "Shortest word counted, in characters.",
                "default": 1,
            },
            "unique": {
                "type": "boolean",
                "description": "Count each distinct word once.",
                "default": False,
            },
        },
        "required": ["text"],
        "additionalProperties": False,
    }
    Draft202012Validator.check_schema(t.parameters)


def test_schema_of_every_supported_annotation(module: str) -> None:
    properties = tool(module, "kinds").parameters["properties"]
    assert properties["a"] == {"type": "number"}
    assert properties["b"] == {"type": "array", "items": {"type": "string"}}
    assert properties["c"] == {"type": "object", "additionalProperties": {"type": "integer"}}
    assert properties["d"] == {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None}
    assert properties["e"] == {"enum": ["x", "y"], "type": "string", "default": "x"}
    assert properties["f"] == {
        "anyOf": [{"type": "array", "items": {"type": "integer"}}, {"type": "null"}],
        "default": None,
    }
    assert properties["g"] == {
        "type": "array",
        "prefixItems": [{"type": "integer"}, {"type": "string"}],
        "minItems": 2,
        "maxItems": 2,
        "items": False,
        "default": [1, "a"],
    }
    assert properties["h"] == {"type": "string", "description": "an annotated note", "default": ""}
    assert properties["i"] == {"default": 3}
    assert properties["j"] == {"default": None}
    assert properties["k"] == {
        "type": "array",
        "uniqueItems": True,
        "items": {"type": "string"},
        "default": [],
    }
    Draft202012Validator.check_schema(tool(module, "kinds").parameters)


def test_varargs_are_not_offered(module: str) -> None:
    t = tool(module, "with_varargs")
    assert list(t.parameters["properties"]) == ["first"]
    assert t.run({"first": 2}) == "2"


def test_a_function_without_docstring_gets_a_plain_description(module: str) -> None:
    t = tool(module, "undocumented")
    assert t.description == f"Call the Python function {module}:undocumented."
    assert t.parameters["properties"] == {"x": {}}
    assert t.parameters["required"] == ["x"]


def test_arguments_are_validated_by_the_registry(module: str) -> None:
    t = tool(module, "kinds")
    registry = ToolRegistry([t])
    good = '{"a": 1.5, "b": ["x"], "c": {"n": 1}, "e": "y", "g": [2, "b"]}'
    assert registry.parse_arguments(t, good)["e"] == "y"
    for bad in (
        '{"a": 1.5, "b": ["x"], "c": {}, "e": "z"}',
        '{"a": "no", "b": [], "c": {}}',
        '{"a": 1, "b": [1], "c": {}}',
        '{"b": [], "c": {}}',
        '{"a": 1, "b": [], "c": {}, "g": [1, "a", 3]}',
        '{"a": 1, "b": [], "c": {}, "extra": 1}',
    ):
        with pytest.raises(ToolArgumentError):
            registry.parse_arguments(t, bad)


@pytest.mark.parametrize(
    ("doc", "summary", "arguments"),
    [
        ("One line.", "One line.", {}),
        (
            "First line\ncontinues.\n\nSecond paragraph.\n\nArgs:\n    a: Alpha.\n"
            "    b (list[int]): Beta\n        continued.\n\nReturns:\n    c: not an argument.",
            "First line continues.",
            {"a": "Alpha.", "b": "Beta continued."},
        ),
        (
            "Summary.\nArguments:\n  *args: Extra.\n  **kw: Options.",
            "Summary.",
            {"args": "Extra.", "kw": "Options."},
        ),
        ("", "", {}),
    ],
)
def test_docstring_parsing(doc: str, summary: str, arguments: dict[str, str]) -> None:
    assert parse_docstring(doc) == (summary, arguments)


def test_type_schema_refuses_unknown_types() -> None:
    with pytest.raises(SetupError, match="parameter 'p'"):
        type_schema(object, "p")
    assert type_schema(bool) == {"type": "boolean"}  # not integer, though bool is an int
    assert type_schema(tuple[int, ...]) == {"type": "array", "items": {"type": "integer"}}


def test_classes_and_callable_objects(module: str) -> None:
    greeter = tool(module, "Greeter")
    assert greeter.parameters["properties"] == {
        "name": {"type": "string"},
        "loud": {"type": "boolean", "default": False},
    }
    assert greeter.run({"name": "Ada", "loud": True}) == "hello Ada!"
    adder = tool(module, "add")
    assert adder.parameters["properties"]["a"] == {"type": "integer"}
    assert adder.run({"a": 2}) == "3"


# -- calls -----------------------------------------------------------------------------------


def test_calls_return_text_and_json(module: str) -> None:
    t = tool(module, "word_count")
    assert t.run({"text": "a bb a ccc"}) == '{"words": 4}'
    assert t.run({"text": "a bb a ccc", "min_length": 2, "unique": True}) == '{"words": 2}'
    assert tool(module, "listing").run({}) == '[{"a": 1}, {"b": 2}]'
    assert tool(module, "nothing").run({}) == "None"


def test_positional_only_parameters_and_coercion(module: str) -> None:
    result = tool(module, "kinds").run({"a": 1, "b": ["x"], "c": {}, "g": [5, "z"], "k": ["q"]})
    assert result == "(1, ['x'], {}, None, 'x', None, (5, 'z'), '', 3, None, {'q'})"
    assert tool(module, "as_int").run({"n": 3.0}) == "int"


def test_exceptions_become_tool_errors(module: str) -> None:
    with pytest.raises(ToolError, match="boom raised ValueError: bad x: 7"):
        tool(module, "boom").run({"x": 7})
    with pytest.raises(ToolError, match="leave raised SystemExit: 2"):
        tool(module, "leave").run({})
    with pytest.raises(ToolError, match="needs the argument 'x'"):
        tool(module, "boom").run({})
    with pytest.raises(ToolError, match="no argument 'y'"):
        tool(module, "boom").run({"x": 1, "y": 2})


def test_async_functions_are_awaited(module: str) -> None:
    t = tool(module, "shout")
    assert t.is_async
    assert t.description == "Upper-case a text, asynchronously."
    assert asyncio.run(t.call({"text": "hi"})) == "HI"
    assert t.run({"text": "sync"}) == "SYNC"


def test_sync_functions_through_the_async_call(module: str) -> None:
    t = tool(module, "word_count")

    async def main() -> str:
        return await t.call({"text": "one two"})

    assert asyncio.run(main()) == '{"words": 2}'
    with pytest.raises(ToolError, match="bad x"):
        asyncio.run(tool(module, "boom").call({"x": 1}))


def test_risk_defaults_to_high_and_can_be_set(module: str) -> None:
    assert tool(module, "word_count").risk == "high"
    assert tool(module, "word_count", risk="low").risk == "low"


# -- setup errors ----------------------------------------------------------------------------


def test_setup_errors(module: str, tmp_path: Path) -> None:
    (tmp_path / f"{module}_broken.py").write_text("raise RuntimeError('broken on import')\n")
    (tmp_path / f"{module}_dep.py").write_text("import agentrun_no_such_dependency\n")
    cases: list[tuple[str, str]] = [
        ("agentrun_no_such_module:f", "no module named 'agentrun_no_such_module'"),
        (f"{module}_broken:f", "RuntimeError: broken on import"),
        (f"{module}_dep:f", "importing .* failed: No module named 'agentrun_no_such_dependency'"),
        (f"{module}:missing", "has no attribute 'missing'"),
        (f"{module}:NOT_CALLABLE", "is a int, not a function"),
        (f"{module}:bad_type", "parameter 'x' has type"),
        (f"{module}:bad_keys", "mapping keys must be str"),
        ("no_colon", "give it as 'module:function'"),
    ]
    for target, message in cases:
        with pytest.raises(SetupError, match=message):
            FunctionTool("t", target)
    for name in (f"{module}_broken", f"{module}_dep"):
        sys.modules.pop(name, None)


def test_setup_error_names_the_target(module: str) -> None:
    with pytest.raises(SetupError) as caught:
        FunctionTool("t", f"{module}:missing")
    assert f"{module}:missing" in str(caught.value)
