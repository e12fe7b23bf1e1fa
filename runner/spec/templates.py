"""Spec templates: Jinja2 in a sandbox with limits, and what ``validate`` can prove statically.

``instructions`` and ``goal`` are Jinja2 templates, written by the spec's author and rendered
once per run with the run's inputs, which may come from anywhere (a webhook body, a file
path). Rendering is bounded like a tool call, so no template and no input can exhaust the
process's memory or hold the run up:

- Jinja2's :class:`~jinja2.sandbox.SandboxedEnvironment` with ``StrictUndefined``: no
  ``_``-prefixed or internal attribute, no undefined variable; ``lipsum()`` is removed (it
  loops in Python without a hook, and no prompt needs lorem ipsum);
- :data:`MAX_OUTPUT_BYTES`: the UTF-8 text a template produces, counted wherever it goes
  (the output, a ``{% set %}`` block, a macro's result, each time it is produced); the
  output is streamed with :meth:`jinja2.Template.generate` and stops at the limit;
- :data:`MAX_VALUE_SIZE`: every value an operator, filter or method call makes (characters
  of a string, items of a list or mapping). The operations that can make far more than they
  are given are checked *before* they run: ``*`` (repetition), ``**``, the widths in ``%``
  and ``format`` specs, the ``center``, ``indent``, ``batch``, ``slice``, ``replace``,
  ``join`` and ``wordwrap`` filters and the ``center``/``ljust``/``rjust``/``zfill``/
  ``expandtabs``/``replace``/``join``/``translate`` string methods; everything else right
  after, and a list grown in place (``append``, ``extend``) after each call;
- :data:`MAX_LOOP_ITERATIONS` loop iterations in all, and :data:`MAX_RANGE` items from one
  ``range()`` call;
- :data:`MAX_RENDER_SECONDS` of wall time, checked at every loop iteration, piece of text,
  operator, filter and call.

The hooks are Jinja2's own (``intercepted_binops`` and ``call_binop``, ``call``, the filter
table, the ``range`` global); loops and output are counted by wrapping every ``{% for %}``
iterable and every printed piece in a counting filter, in the parsed template, before it
is compiled. A template over a limit raises :class:`~runner.errors.UsageError` naming the
limit and the value.

:func:`sandbox_problems` finds, in the parsed template, what is sure to break those rules
whatever the inputs: attributes starting with ``__`` (``''.__class__``,
``x['__globals__']``, ``x|attr('__class__')``, ``'{0.__class__}'.format(x)``), ``range()``
of a literal over :data:`MAX_RANGE`, nested loops over literal ranges that together run more
than :data:`MAX_LOOP_ITERATIONS` times, and literal repetitions, powers and widths over the
limits. What depends on inputs is only known when the template renders.

:data:`RESERVED_NAMES` are names an input cannot take: the template language would shadow
them or be shadowed by them.
"""

from __future__ import annotations

import re
import string
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:
    from jinja2 import nodes
    from jinja2.runtime import Context
    from jinja2.sandbox import SandboxedEnvironment

#: Largest text a template may produce, in bytes of UTF-8 (2 MiB): about half a million
#: tokens, more than most models accept, with room for a whole webhook body (1 MiB by
#: default).
MAX_OUTPUT_BYTES = 2_097_152

#: Largest value a template may make: characters of a string, items of a list or mapping.
MAX_VALUE_SIZE = MAX_OUTPUT_BYTES

#: Loop iterations a template may run in all (every ``{% for %}``, nested ones multiplied).
MAX_LOOP_ITERATIONS = 1_000_000

#: Items one ``range()`` call may make (the figure Jinja2's sandbox itself uses).
MAX_RANGE = 100_000

#: Longest a template may take to render, in seconds of wall time (normal ones take
#: milliseconds).
MAX_RENDER_SECONDS = 5.0

#: Input names refused at load time, with the reason shown to the author. Names starting
#: with ``_`` are refused too (:func:`reserved_name_problem`).
RESERVED_NAMES: dict[str, str] = {
    **dict.fromkeys(
        ("true", "false", "none", "True", "False", "None"),
        "it is a constant in templates, so the input could never be read",
    ),
    **dict.fromkeys(
        ("and", "or", "not", "in", "is"),
        "it is an operator in templates, so the input could never be read",
    ),
    **dict.fromkeys(
        ("self", "loop", "caller", "varargs", "kwargs", "super"),
        "Jinja2 gives it its own meaning inside templates",
    ),
    **dict.fromkeys(
        ("range", "dict", "namespace", "cycler", "joiner", "lipsum"),
        "it is a function templates can call, and the input would hide it",
    ),
}

# Filters the templates' loops and printed pieces are wrapped in (see _instrument).
_LOOP_FILTER = "_agentrun_loop"
_EMIT_FILTER = "_agentrun_emit"
_VALUE_FILTER = "_agentrun_value"

# A printf-style conversion: its width and precision (digits, or '*' taken from the args).
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[a-zA-Z%]")


def reserved_name_problem(name: str) -> str:
    """Why ``name`` cannot name an input, or ``""`` when it can."""
    if name.startswith("_"):
        return "names starting with '_' are reserved"
    return RESERVED_NAMES.get(name, "")


def is_unsafe_attribute(name: str) -> bool:
    """Whether reading ``name`` is an attempt on Python's internals, whatever it is read from.

    Names starting with ``__`` (``__class__``, ``__globals__``) are. Other ``_`` names are
    refused when rendering only if they are real Python attributes: on an input's mapping,
    ``payload._links`` reads the key ``_links``, which JSON APIs use.
    """
    return name.startswith("__")


def text_bytes(text: str) -> int:
    """Length of ``text`` in UTF-8 bytes."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


# ---------------------------------------------------------------------------------------------
# sizes: what an operation would make, judged before it runs where it can be


def _size(value: Any) -> int:
    """A value's size as the limits count it: characters, items, or bytes of an integer."""
    if isinstance(value, str | list | tuple | dict | set | frozenset):
        return len(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value.bit_length() // 8
    return 0


def _too_big(size: int, what: str, unit: str = "characters") -> UsageError:
    return UsageError(
        f"{what} would make {size} {unit}, over the limit of {MAX_VALUE_SIZE} for a value in "
        "a template; give large data to the agent as a file to read instead"
    )


def _preview(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def check_value(value: Any, what: str) -> None:
    """Refuse a value larger than :data:`MAX_VALUE_SIZE`.

    Raises:
        UsageError: naming ``what`` made it, its size and the limit.
    """
    size = _size(value)
    if size > MAX_VALUE_SIZE:
        unit = {str: "characters", int: "bytes"}.get(type(value), "items")
        raise _too_big(size, what, unit)


def _check_width(width: Any, what: str) -> None:
    if isinstance(width, int) and width > MAX_VALUE_SIZE:
        raise UsageError(
            f"{what} with a width of {width} would make at least that many characters, "
            f"over the limit of {MAX_VALUE_SIZE}"
        )


def _check_repeat(left: Any, right: Any) -> None:
    """``left * right``: a sequence repeated, or integers whose product is huge."""
    for sequence, times in ((left, right), (right, left)):
        if isinstance(sequence, str | list | tuple) and isinstance(times, int):
            size = len(sequence) * times
            if size > MAX_VALUE_SIZE:
                unit = "characters" if isinstance(sequence, str) else "items"
                raise _too_big(size, f"repeating {_preview(sequence)} {times} times", unit)
            return
    if isinstance(left, int) and isinstance(right, int):
        bits = left.bit_length() + right.bit_length()
        if bits // 8 > MAX_VALUE_SIZE:
            raise _too_big(bits // 8, "multiplying two huge integers", "bytes")


def _check_power(base: Any, exponent: Any) -> None:
    """``base ** exponent`` on integers: refuse a result of more than the limit in bytes."""
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        size = exponent * base.bit_length() // 8
        if size > MAX_VALUE_SIZE:
            raise _too_big(size, f"{base!r} ** {exponent!r}", "bytes")


def _check_percent(text: str, arguments: Any) -> None:
    """``text % arguments``: the widths and precisions its conversions ask for."""
    stars = arguments if isinstance(arguments, tuple) else (arguments,)
    for match in _PERCENT_SPEC.finditer(text):
        for part in match.groups():
            if part and part.isdigit():
                _check_width(int(part), f"the format {match.group(0)!r}")
            elif part == "*":
                for value in stars:
                    _check_width(value, f"the format {match.group(0)!r}")


def _check_format(text: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """``text.format(...)``: widths in its specs, and widths taken from arguments."""
    try:
        fields = list(string.Formatter().parse(text))
    except ValueError:
        return  # a malformed format string: str.format says so itself
    for _, _, spec, _ in fields:
        if not spec:
            continue
        if "{" in spec:  # a nested field: the width is an argument
            for value in (*args, *kwargs.values()):
                _check_width(value, f"the format spec {spec!r}")
        for number in re.findall(r"\d+", spec):
            _check_width(int(number), f"the format spec {spec!r}")


def _check_replace(text: Any, old: Any, new: Any, count: Any = -1) -> None:
    if not (isinstance(text, str) and isinstance(old, str) and isinstance(new, str)):
        return
    if len(new) <= len(old):
        return
    found = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    size = len(text) + found * (len(new) - len(old))
    if size > MAX_VALUE_SIZE:
        raise _too_big(size, f"replacing {old!r} with a text of {len(new)} characters")


def _check_join(separator: Any, items: Any) -> None:
    if not (isinstance(separator, str) and isinstance(items, Sized)):
        return
    count = len(items)
    size = len(separator) * max(count - 1, 0)
    if isinstance(items, list | tuple):
        size += sum(len(item) for item in items if isinstance(item, str))
    if size > MAX_VALUE_SIZE:
        raise _too_big(size, f"joining {count} items with {_preview(separator)}")


def _argument(args: tuple[Any, ...], kwargs: Mapping[str, Any], index: int, name: str) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name)


def _check_filter(name: str, value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Refuse, before it runs, a filter call that would make a value over the limit."""
    if name == "center":
        _check_width(_argument(args, kwargs, 0, "width"), "the center filter")
    elif name == "indent" and isinstance(value, str):
        width = _argument(args, kwargs, 0, "width")
        step = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        size = len(value) + (value.count("\n") + 1) * step
        if size > MAX_VALUE_SIZE:
            raise _too_big(size, f"indenting by {step}")
    elif name == "batch" and _argument(args, kwargs, 1, "fill_with") is not None:
        _check_width(_argument(args, kwargs, 0, "linecount"), "the batch filter")
    elif name == "slice":
        _check_width(_argument(args, kwargs, 0, "slices"), "the slice filter")
    elif name == "replace":
        _check_replace(
            value,
            _argument(args, kwargs, 0, "old"),
            _argument(args, kwargs, 1, "new"),
            _argument(args, kwargs, 2, "count"),
        )
    elif name == "join":
        separator = _argument(args, kwargs, 0, "d")
        _check_join("" if separator is None else separator, value)
    elif name == "format" and isinstance(value, str):
        _check_percent(value, tuple(args) or tuple(kwargs.values()))
    elif name == "wordwrap" and isinstance(value, str):
        width = _argument(args, kwargs, 0, "width")
        wrap = _argument(args, kwargs, 2, "wrapstring")
        if isinstance(wrap, str) and isinstance(width, int):
            size = len(value) + (len(value) // max(width, 1) + 1) * len(wrap)
            if size > MAX_VALUE_SIZE:
                raise _too_big(size, "wrapping with a long wrapstring")


def _check_method(method: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Refuse, before it runs, a string method call that would make a value over the limit."""
    wrapped = getattr(method, "__wrapped__", None)  # str.format, wrapped by the sandbox
    receiver = getattr(wrapped if wrapped is not None else method, "__self__", None)
    if not isinstance(receiver, str):
        return
    name = getattr(method, "__name__", "")
    if name in ("center", "ljust", "rjust", "zfill"):
        _check_width(_argument(args, kwargs, 0, "width"), f"str.{name}")
    elif name == "expandtabs":
        tabsize = _argument(args, kwargs, 0, "tabsize")
        if isinstance(tabsize, int):
            size = len(receiver) + receiver.count("\t") * tabsize
            if size > MAX_VALUE_SIZE:
                raise _too_big(size, f"expanding tabs to {tabsize} spaces")
    elif name == "replace":
        _check_replace(receiver, *args[:3])
    elif name == "join" and args:
        _check_join(receiver, args[0])
    elif name == "translate" and args and isinstance(args[0], Mapping):
        longest = max((len(v) for v in args[0].values() if isinstance(v, str)), default=0)
        size = len(receiver) * longest
        if size > MAX_VALUE_SIZE:
            raise _too_big(size, "translating with long replacements")
    elif name in ("format", "format_map"):
        mapping = args[0] if name == "format_map" and args else kwargs
        _check_format(receiver, args if name == "format" else (), mapping)


# ---------------------------------------------------------------------------------------------
# the environment


class _RenderBudget:
    """What one render has used: loop iterations, bytes of text, and time (seconds)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.deadline = clock() + MAX_RENDER_SECONDS
        self.iterations = 0
        self.emitted = 0

    def tick(self) -> None:
        if self.clock() > self.deadline:
            raise UsageError(
                f"rendering took longer than {MAX_RENDER_SECONDS:g} s, the time limit for a "
                "template; simplify its loops"
            )

    def iterate(self) -> None:
        self.iterations += 1
        if self.iterations > MAX_LOOP_ITERATIONS:
            raise UsageError(
                f"its loops ran more than {MAX_LOOP_ITERATIONS} iterations, the limit for a "
                "template; loop over less"
            )
        self.tick()

    def emit(self, size: int) -> None:
        self.emitted += size
        if self.emitted > MAX_OUTPUT_BYTES:
            raise output_too_big(self.emitted)
        self.tick()


def output_too_big(size: int) -> UsageError:
    """The error for a template that produced ``size`` bytes, over :data:`MAX_OUTPUT_BYTES`."""
    return UsageError(
        f"it produced {size} bytes of text or more, over the limit of {MAX_OUTPUT_BYTES} "
        "bytes for a template; give large data to the agent as a file to read"
    )


def _bounded_range(*args: int) -> range:
    """``range()`` for templates: at most :data:`MAX_RANGE` items."""
    items = range(*args)
    if len(items) > MAX_RANGE:
        shown = ", ".join(map(repr, args))
        raise UsageError(
            f"range({shown}) would make {len(items)} items, over the limit of {MAX_RANGE}"
        )
    return items


def template_environment(clock: Callable[[], float] = time.monotonic) -> SandboxedEnvironment:
    """A sandboxed Jinja2 environment with the limits of this module, for one render.

    Args:
        clock: seconds on a monotonic clock; the render's deadline is
            :data:`MAX_RENDER_SECONDS` after the environment is made.
    """
    from jinja2 import StrictUndefined, pass_context
    from jinja2.sandbox import SandboxedEnvironment

    budget = _RenderBudget(clock)

    class LimitedEnvironment(SandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**", "%", "+"})

        def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
            budget.tick()
            if operator == "*":
                _check_repeat(left, right)
            elif operator == "**":
                _check_power(left, right)
            elif operator == "%" and isinstance(left, str):
                _check_percent(left, right)
            result = self.binop_table[operator](left, right)
            check_value(result, f"the operator {operator!r}")
            return result

        def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
            budget.tick()
            _check_method(obj, args, kwargs)
            result = super().call(context, obj, *args, **kwargs)
            check_value(result, f"calling {getattr(obj, '__name__', 'a function')}")
            receiver = getattr(obj, "__self__", None)
            if isinstance(receiver, list | dict | set):  # grown in place: append, extend
                check_value(receiver, f"calling {getattr(obj, '__name__', 'a method')}")
            return result

    environment = LimitedEnvironment(undefined=StrictUndefined, autoescape=False)
    environment.globals["range"] = _bounded_range
    environment.globals.pop("lipsum", None)
    for name, function in list(environment.filters.items()):
        environment.filters[name] = _limited_filter(name, function, budget)

    @pass_context
    def loop(context: Context, iterable: Iterable[Any]) -> Iterator[Any]:
        for item in iterable:
            budget.iterate()
            yield item

    @pass_context
    def emit(context: Context, value: Any) -> str:
        text = str(value)
        budget.emit(text_bytes(text))
        return text

    @pass_context
    def value(context: Context, made: Any) -> Any:
        budget.tick()
        check_value(made, "joining text with '~'")
        return made

    environment.filters[_LOOP_FILTER] = loop
    environment.filters[_EMIT_FILTER] = emit
    environment.filters[_VALUE_FILTER] = value
    return environment


def _limited_filter(
    name: str, function: Callable[..., Any], budget: _RenderBudget
) -> Callable[..., Any]:
    """``function`` (the filter ``name``) with the limits checked before and after."""
    import functools

    # Jinja2's marker for a filter that takes the context, eval context or environment first.
    skip = 1 if hasattr(function, "jinja_pass_arg") else 0

    @functools.wraps(function)  # keeps jinja_pass_arg, so Jinja2 passes the same things
    def limited(*args: Any, **kwargs: Any) -> Any:
        budget.tick()
        if len(args) > skip:
            _check_filter(name, args[skip], args[skip + 1 :], kwargs)
        result = function(*args, **kwargs)
        check_value(result, f"the {name} filter")
        return result

    return limited


def _instrument(template: nodes.Template) -> nodes.Template:
    """Wrap every loop's iterable, printed piece and ``~`` in the counting filters."""
    from jinja2 import nodes

    def wrap(node: nodes.Node, name: str) -> nodes.Filter:
        return nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)

    for loop in list(template.find_all(nodes.For)):
        loop.iter = wrap(loop.iter, _LOOP_FILTER)
    for output in list(template.find_all(nodes.Output)):
        output.nodes = [wrap(child, _EMIT_FILTER) for child in output.nodes]
    for parent in list(template.find_all(nodes.Node)):
        for field in parent.fields:
            child = getattr(parent, field, None)
            if isinstance(child, nodes.Concat):
                setattr(parent, field, wrap(child, _VALUE_FILTER))
            elif isinstance(child, list):
                setattr(
                    parent,
                    field,
                    [wrap(c, _VALUE_FILTER) if isinstance(c, nodes.Concat) else c for c in child],
                )
    return template


def render_template(
    text: str,
    variables: Mapping[str, Any],
    *,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Render ``text`` once with ``variables``, sandboxed and within this module's limits.

    ``variables`` are passed as one mapping, never as keyword arguments, so any name (even
    ``self``) reaches the template as data.

    Args:
        text: the template source.
        variables: the names the template may use (the run's inputs).
        clock: seconds on a monotonic clock, for :data:`MAX_RENDER_SECONDS`.

    Returns:
        The rendered text, at most :data:`MAX_OUTPUT_BYTES` bytes of UTF-8.

    Raises:
        UsageError: over a limit (the message names it and the value), or any other
            failure of the template (an undefined variable, a refused attribute, a wrong
            type), or the template ran out of memory despite the limits.
    """
    from jinja2 import TemplateError

    environment = template_environment(clock)
    try:
        parsed = _instrument(environment.parse(text))
        parsed.set_environment(environment)
        template = environment.from_string(parsed)
        pieces: list[str] = []
        size = 0
        stream = template.generate(dict(variables))
        try:
            for piece in stream:
                size += text_bytes(piece)
                if size > MAX_OUTPUT_BYTES:
                    raise output_too_big(size)
                pieces.append(piece)
        finally:
            if isinstance(stream, Generator):  # stop the template where it is
                stream.close()
        return "".join(pieces)
    except UsageError:
        raise
    except TemplateError as error:
        raise UsageError(str(error.message or error).rstrip(".")) from None
    except MemoryError:
        raise UsageError("it ran out of memory; make it and its inputs smaller") from None
    except RecursionError:
        raise UsageError("it recurses too deeply (a macro calling itself?)") from None
    except (ArithmeticError, LookupError, TypeError, ValueError) as error:
        raise UsageError(f"{type(error).__name__}: {error}") from None


# ---------------------------------------------------------------------------------------------
# static checks for `validate`


@dataclass(frozen=True)
class TemplateProblem:
    """A rule a template breaks whatever its inputs, found in its parsed form.

    Attributes:
        lineno: the template's own line (1-based).
        word: a regular expression for the text to point at on that line.
        occurrence: which match of ``word`` on that line (0 for the first).
        message: what is wrong, with the value and the limit, to follow ``template 'goal' ``.
        hint: what to do instead.
    """

    lineno: int
    word: str
    occurrence: int
    message: str
    hint: str


_ESCAPE_HINT = "templates may only read the inputs' data, not Python internals"


def sandbox_problems(template: nodes.Template) -> list[TemplateProblem]:
    """Every sandbox escape and unbounded construct :func:`render_template` would refuse.

    Only what is certain from the template alone is reported: an attribute the sandbox
    always refuses, and literal sizes over the limits. Sizes that depend on inputs are
    checked when the template renders.
    """
    from jinja2 import nodes

    found: list[tuple[nodes.Node, str, str, str]] = []  # node, word, message, hint
    for node in template.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter, nodes.Call)):
        name = _attribute_read(node)
        if name is not None and is_unsafe_attribute(name):
            message = f"reads attribute {name!r}, which the sandbox refuses"
            found.append((node, re.escape(name), message, _ESCAPE_HINT))
        if isinstance(node, nodes.Call):
            found.extend(_call_problems(node))
        if isinstance(node, nodes.Filter) and node.node is not None:
            value, args = _literal(node.node), [_literal(a) for a in node.args]
            if value is not _UNKNOWN and _UNKNOWN not in args and not node.kwargs:
                try:
                    _check_filter(node.name, value, tuple(args), {})
                except UsageError as error:
                    found.append((node, rf"\b{node.name}\b", _fails(error), "make it smaller"))
    for node in template.find_all((nodes.Mul, nodes.Pow, nodes.Mod)):
        left, right = _literal(node.left), _literal(node.right)
        if left is _UNKNOWN or right is _UNKNOWN:
            continue
        try:
            if isinstance(node, nodes.Mul):
                _check_repeat(left, right)
            elif isinstance(node, nodes.Pow):
                _check_power(left, right)
            elif isinstance(left, str):
                _check_percent(left, right)
        except UsageError as error:
            found.append((node, _word(node) or "", _fails(error), "make it smaller"))
    _loop_problems(template, 1, found)
    problems = [
        TemplateProblem(node.lineno, word, _earlier_on_line(template, node, word), message, hint)
        for node, word, message, hint in found
    ]
    return sorted(problems, key=lambda p: p.lineno)


_UNKNOWN = object()


def _fails(error: UsageError) -> str:
    return f"would fail to render: {str(error).split('; ')[0]}"


def _literal(node: nodes.Node) -> Any:
    """The value of a literal (a constant, or a list or tuple of them), else ``_UNKNOWN``."""
    from jinja2 import nodes

    if isinstance(node, nodes.Const):
        return node.value
    if isinstance(node, nodes.List | nodes.Tuple):
        items = [_literal(item) for item in node.items]
        if any(item is _UNKNOWN for item in items):
            return _UNKNOWN
        return items if isinstance(node, nodes.List) else tuple(items)
    return _UNKNOWN


def _attribute_read(node: nodes.Node) -> str | None:
    """The attribute ``node`` reads by a literal name, if it reads one."""
    from jinja2 import nodes

    if isinstance(node, nodes.Getattr):
        return node.attr
    if isinstance(node, nodes.Getitem):
        value = _literal(node.arg)
        return value if isinstance(value, str) else None
    if isinstance(node, nodes.Filter) and node.name == "attr" and node.args:
        value = _literal(node.args[0])
        return value if isinstance(value, str) else None
    return None


def _word(node: nodes.Node) -> str | None:
    """A regular expression for the source text that shows ``node``, where there is one."""
    from jinja2 import nodes

    name = _attribute_read(node)
    if name is not None:
        return re.escape(name)
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name):
        return rf"\b{re.escape(node.node.name)}\b"
    if isinstance(node, nodes.Filter):
        return rf"\b{re.escape(node.name)}\b"
    if isinstance(node, nodes.Pow):
        return r"\*\*"
    if isinstance(node, nodes.Mul):
        return r"(?<!\*)\*(?!\*)"
    if isinstance(node, nodes.Mod):
        return r"(?<!\{)%(?!\})"
    return None


def _call_problems(call: nodes.Call) -> list[tuple[nodes.Node, str, str, str]]:
    """``range()`` of literals over the limit; format strings that read internals."""
    from jinja2 import nodes

    problems: list[tuple[nodes.Node, str, str, str]] = []
    callee = call.node
    if _range_length(call) is not None:
        try:
            _bounded_range(*[_literal(a) for a in call.args])
        except UsageError as error:
            problems.append((call, r"\brange\b", _fails(error), "loop over fewer items"))
    if isinstance(callee, nodes.Getattr) and callee.attr in ("format", "format_map"):
        text = _literal(callee.node)
        args = [_literal(a) for a in call.args]
        if isinstance(text, str) and callee.attr == "format" and _UNKNOWN not in args:
            try:
                _check_format(text, tuple(args), {})
            except UsageError as error:
                problems.append((callee, r"\bformat\b", _fails(error), "make it smaller"))
        for name in _format_attributes(text) if isinstance(text, str) else []:
            if is_unsafe_attribute(name):
                message = f"reads attribute {name!r} in a format string, which the sandbox refuses"
                problems.append((call, re.escape(name), message, _ESCAPE_HINT))
    return problems


def _format_attributes(text: str) -> list[str]:
    """Attribute and key names a ``str.format`` string reads (``{0.__class__}``)."""
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(text) if field]
    except ValueError:
        return []
    return [name for field in fields for name in re.findall(r"[.\[]\s*([A-Za-z_]\w*)", field)]


def _range_length(node: nodes.Node) -> int | None:
    """How many items ``node`` makes when it is ``range()`` of literals."""
    from jinja2 import nodes

    if not (isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name)):
        return None
    args = [_literal(a) for a in node.args]
    if node.node.name != "range" or node.kwargs or node.dyn_args or _UNKNOWN in args:
        return None
    try:
        return len(range(*args))
    except (TypeError, ValueError, OverflowError):
        return None  # range() itself says what is wrong when the template renders


def _loop_problems(
    node: nodes.Node, times: int, found: list[tuple[nodes.Node, str, str, str]]
) -> None:
    """Nested loops over literal ranges that run more than the limit whenever they run.

    ``times`` is how often ``node`` runs, counting only the enclosing loops over literal
    ranges (a loop over an input may run any number of times, including once).
    """
    from jinja2 import nodes

    if not isinstance(node, nodes.For):
        for child in node.iter_child_nodes():
            _loop_problems(child, times, found)
        return
    length = _range_length(node.iter)
    inner = times * (length if length is not None else 1)
    if length is not None and inner > MAX_LOOP_ITERATIONS:
        message = (
            f"runs nested loops over range() {inner} times, over the limit of "
            f"{MAX_LOOP_ITERATIONS} loop iterations for a template"
        )
        found.append((node.iter, r"\brange\b", message, "loop over fewer items"))
        return
    for part in node.body:
        _loop_problems(part, inner, found)
    for part in node.else_:
        _loop_problems(part, times, found)


def _earlier_on_line(template: nodes.Template, target: nodes.Node, word: str) -> int:
    """How many nodes before ``target`` on its line show the same ``word`` in the source."""
    from jinja2 import nodes

    count = 0
    for node in template.find_all(nodes.Node):
        if node is target:
            break
        if node.lineno == target.lineno and _word(node) == word:
            count += 1
    return count
