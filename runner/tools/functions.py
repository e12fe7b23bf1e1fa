"""Python functions as tools: ``module:function``, schema from the signature and docstring.

:class:`FunctionTool` imports the function once, when the agent is compiled, and derives:

- the JSON Schema of its arguments from the signature and type hints (:func:`type_schema`
  lists the supported annotations); parameters without a default are required, defaults
  that JSON can express are shown, ``*args``/``**kwargs`` are not offered to the model;
- the tool's description from the first paragraph of the docstring, and each argument's
  description from a Google-style ``Args:`` section (or from ``Annotated[T, "text"]``).

A call passes the (schema-checked) arguments by name, positional-only parameters by
position; the result is ``str(result)``, except that strings are returned as they are and
dicts, lists and tuples as JSON. Exceptions become :class:`~runner.errors.ToolError`, so the
model hears about them. ``async def`` functions are awaited on the run's event loop; plain
functions run in a worker thread (:meth:`Tool.call`).
"""

from __future__ import annotations

import asyncio
import collections.abc
import functools
import importlib
import inspect
import json
import re
import types
import typing
from collections.abc import Callable
from typing import Any

from ..errors import SetupError, ToolError
from ..spec.vocabulary import Risk
from . import Tool

_SEQUENCES = (
    list,
    tuple,
    set,
    frozenset,
    collections.abc.Sequence,
    collections.abc.MutableSequence,
    collections.abc.Iterable,
    collections.abc.Collection,
    collections.abc.Set,
    collections.abc.MutableSet,
)
_MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)
_ARGS_SECTION = re.compile(
    r"^\s*(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments)\s*:\s*$"
)
_ANY_SECTION = re.compile(r"^\s*[A-Z][A-Za-z ]*:\s*$")
_ENTRY = re.compile(r"^\s*\**(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def load_function(target: str) -> Callable[..., Any]:
    """Import ``module:function`` (the attribute may be dotted: ``module:Class.method``).

    Args:
        target: the import path.

    Returns:
        The callable.

    Raises:
        SetupError: a malformed path, a module that is missing or fails to import, a
            missing attribute, or one that is not callable.
    """
    module_name, colon, attribute = target.partition(":")
    if not colon or not module_name or not attribute:
        raise SetupError(f"function tool {target!r}: give it as 'module:function'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = error.name or module_name
        if module_name == missing or module_name.startswith(missing + "."):
            raise SetupError(
                f"function tool {target!r}: no module named {missing!r}; install it or put "
                "its folder on the Python path"
            ) from None
        raise SetupError(
            f"function tool {target!r}: importing {module_name!r} failed: {error}"
        ) from None
    except Exception as error:
        raise SetupError(
            f"function tool {target!r}: importing {module_name!r} failed: "
            f"{type(error).__name__}: {error}"
        ) from None
    value: Any = module
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise SetupError(
                f"function tool {target!r}: {module_name!r} has no attribute {attribute!r}"
            ) from None
    if not callable(value):
        raise SetupError(
            f"function tool {target!r}: {attribute!r} is a {type(value).__name__}, not a function"
        )
    return typing.cast(Callable[..., Any], value)


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The summary and per-argument descriptions of a Google-style docstring.

    Args:
        doc: the cleaned docstring (``inspect.getdoc``).

    Returns:
        ``(summary, arguments)``: the first paragraph joined into one line, and each name
        in the ``Args:`` section mapped to its description (continuation lines joined).
    """
    lines = doc.splitlines()
    summary: list[str] = []
    for line in lines:
        if not line.strip():
            if summary:
                break
            continue
        if _ANY_SECTION.match(line):
            break
        summary.append(line.strip())
    arguments: dict[str, str] = {}
    start = next((i for i, line in enumerate(lines) if _ARGS_SECTION.match(line)), None)
    if start is not None:
        header_indent = _indent(lines[start])
        entry_indent: int | None = None
        current: str | None = None
        for line in lines[start + 1 :]:
            if not line.strip():
                continue
            indent = _indent(line)
            if indent <= header_indent:
                break
            if entry_indent is None:
                entry_indent = indent
            if indent <= entry_indent:
                match = _ENTRY.match(line)
                current = None
                if match:
                    current = match.group(1)
                    arguments[current] = match.group(2).strip()
            elif current is not None:
                arguments[current] = f"{arguments[current]} {line.strip()}".strip()
    return " ".join(summary), arguments


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _sequence_schema(
    annotation: Any, origin: Any, args: tuple[Any, ...], where: str
) -> dict[str, Any]:
    """The schema of a list, tuple, set or ``collections.abc`` sequence annotation."""
    schema: dict[str, Any] = {"type": "array"}
    if (origin or annotation) in (set, frozenset, collections.abc.Set):
        schema["uniqueItems"] = True
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if args == ((),):  # tuple[()]
            return {**schema, "maxItems": 0}
        schema["prefixItems"] = [type_schema(arg, where) for arg in args]
        schema["minItems"] = schema["maxItems"] = len(args)
        schema["items"] = False
    elif args:
        schema["items"] = type_schema(args[0], where)
    return schema


def type_schema(annotation: Any, where: str = "") -> dict[str, Any]:
    """The JSON Schema of values of a type annotation.

    Supported: ``str``, ``int``, ``float``, ``bool``, ``None``, ``Any`` (or no
    annotation), ``list``/``tuple``/``set`` and the ``collections.abc`` sequences (bare or
    parametrized; ``tuple[A, B]`` has fixed items), ``dict``/``Mapping`` (bare or with
    ``str`` keys), ``X | Y`` / ``Optional[X]`` / ``Union``, ``Literal[...]`` and
    ``Annotated[T, ...]`` (a string in the metadata becomes the description).

    Args:
        annotation: the annotation, with forward references already resolved.
        where: the parameter's name, for error messages.

    Returns:
        A JSON Schema (draft 2020-12) object.

    Raises:
        SetupError: an annotation outside the supported set.
    """
    if annotation is Any or annotation is inspect.Parameter.empty:
        return {}
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        schema = type_schema(args[0], where)
        notes = [meta for meta in args[1:] if isinstance(meta, str)]
        if notes:
            schema["description"] = " ".join(notes)
        return schema
    if annotation is None or annotation is type(None):
        return {"type": "null"}
    simple = {str: "string", bool: "boolean", int: "integer", float: "number"}
    if annotation in simple:
        return {"type": simple[annotation]}
    if origin is typing.Union or origin is types.UnionType:
        return {"anyOf": [type_schema(arg, where) for arg in args]}
    if origin is typing.Literal:
        schema = {"enum": list(args)}
        kinds = {type(arg) for arg in args}
        if len(kinds) == 1 and (kind := kinds.pop()) in simple:
            schema["type"] = simple[kind]
        return schema
    if annotation in _SEQUENCES or origin in _SEQUENCES:
        return _sequence_schema(annotation, origin, args, where)
    if annotation in _MAPPINGS or origin in _MAPPINGS:
        schema = {"type": "object"}
        if args:
            if args[0] is not str and args[0] is not Any:
                raise SetupError(f"parameter {where!r}: mapping keys must be str, not {args[0]}")
            schema["additionalProperties"] = type_schema(args[1], where)
        return schema
    raise SetupError(
        f"parameter {where!r} has type {annotation!r}, which a tool argument cannot have; "
        "use str, int, float, bool, list, dict, Literal or Optional of those"
    )


def _json_default(value: Any) -> tuple[bool, Any]:
    if isinstance(value, tuple | frozenset | set):
        value = list(value)
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False, None
    return True, value


def _coerce(value: Any, annotation: Any) -> Any:
    """Turn JSON values into what a simple annotation expects (3.0 → 3, lists → tuples)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _coerce(value, typing.get_args(annotation)[0])
    if annotation is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        for kind in (tuple, set, frozenset):
            if annotation is kind or origin is kind:
                return kind(value)
    return value


def _hint_source(function: Callable[..., Any]) -> Any:
    """What ``typing.get_type_hints`` can read the parameters' hints from."""
    if inspect.isclass(function):
        return function.__init__
    if isinstance(function, functools.partial):
        return _hint_source(function.func)
    if inspect.isroutine(function):
        return function
    return type(function).__call__


def render_result(result: Any) -> str:
    """The text sent to the model: strings as they are, containers as JSON, else ``str``."""
    if isinstance(result, str):
        return result
    if isinstance(result, dict | list | tuple):
        try:
            return json.dumps(result, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            return str(result)
    return str(result)


class FunctionTool(Tool):
    """A Python function offered to the model as a tool.

    Args:
        name: the tool's name (the spec's key under ``tools.functions``).
        function: the import path ``module:function``.
        risk: the spec's ``risk``; default high (the code is unknown).

    Raises:
        SetupError: the function cannot be imported, is not callable, or has a parameter
            whose type cannot be expressed as JSON Schema.
    """

    source = "function"

    def __init__(self, name: str, function: str, risk: Risk | None = None) -> None:
        self.name = name
        self.target = function
        self.function = load_function(function)
        self.risk = risk or Risk.HIGH
        self.is_async = inspect.iscoroutinefunction(self.function) or (
            inspect.iscoroutinefunction(getattr(self.function, "__call__", None))  # noqa: B004
        )
        try:
            self.signature = inspect.signature(self.function)
        except (TypeError, ValueError) as error:
            raise SetupError(f"function tool {function!r}: no usable signature: {error}") from None
        try:
            hints = typing.get_type_hints(_hint_source(self.function), include_extras=True)
        except Exception as error:
            raise SetupError(
                f"function tool {function!r}: its type hints cannot be resolved: "
                f"{type(error).__name__}: {error}"
            ) from None
        summary, documented = parse_docstring(inspect.getdoc(self.function) or "")
        self.description = summary or f"Call the Python function {function}."
        self.hints: dict[str, Any] = {}
        properties: dict[str, Any] = {}
        required: list[str] = []
        for parameter in self.signature.parameters.values():
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                continue
            annotation = hints.get(parameter.name, parameter.annotation)
            self.hints[parameter.name] = annotation
            schema = type_schema(annotation, parameter.name)
            if documented.get(parameter.name):
                schema["description"] = documented[parameter.name]
            if parameter.default is parameter.empty:
                required.append(parameter.name)
            else:
                ok, default = _json_default(parameter.default)
                if ok:
                    schema["default"] = default
            properties[parameter.name] = schema
        self.parameters = {
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": False,
        }

    def _bind(self, arguments: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        unknown = sorted(set(arguments) - set(self.hints))
        if unknown:
            raise ToolError(f"{self.name} has no argument {unknown[0]!r}")
        positional: list[Any] = []
        skipped: list[Any] = []  # defaults of positional-only parameters not given (yet)
        named: dict[str, Any] = {}
        for parameter in self.signature.parameters.values():
            if parameter.name not in self.hints:  # *args, **kwargs
                continue
            if parameter.name not in arguments:
                if parameter.default is parameter.empty:
                    raise ToolError(f"{self.name} needs the argument {parameter.name!r}")
                if parameter.kind is parameter.POSITIONAL_ONLY:
                    skipped.append(parameter.default)
                continue
            value = _coerce(arguments[parameter.name], self.hints[parameter.name])
            if parameter.kind is parameter.POSITIONAL_ONLY:
                positional += [*skipped, value]
                skipped = []
            else:
                named[parameter.name] = value
        return positional, named

    def _failure(self, error: BaseException) -> ToolError:
        if isinstance(error, ToolError):
            return error
        return ToolError(f"{self.name} raised {type(error).__name__}: {error}")

    def run(self, arguments: dict[str, Any]) -> str:
        """Call the function (an ``async`` one on a new event loop).

        Args:
            arguments: the schema-valid arguments, by parameter name.

        Returns:
            The result as text (see :func:`render_result`).

        Raises:
            ToolError: missing or unknown arguments, or any exception the function raised
                (its type and message).
        """
        positional, named = self._bind(arguments)
        try:
            result = self.function(*positional, **named)
            if inspect.isawaitable(result):
                result = asyncio.run(_awaited(result))
        except (Exception, SystemExit) as error:
            raise self._failure(error) from None
        return render_result(result)

    async def call(self, arguments: dict[str, Any]) -> str:
        """Await an ``async`` function on the current loop; run others in a worker thread.

        Raises:
            ToolError: as :meth:`run`.
        """
        if not self.is_async:
            return await super().call(arguments)
        positional, named = self._bind(arguments)
        try:
            result = await self.function(*positional, **named)
        except (Exception, SystemExit) as error:
            raise self._failure(error) from None
        return render_result(result)


async def _awaited(awaitable: collections.abc.Awaitable[Any]) -> Any:
    return await awaitable
