"""Frozen value classes for the typed spec, declared like dataclasses and free to define.

Every spec class (:mod:`runner.spec`) is a subclass of :class:`SpecClass`: annotated fields,
defaults as class attributes, :func:`field` for a ``default_factory``. Type checkers treat a
subclass as a frozen dataclass (PEP 681 ``dataclass_transform``), so a wrong keyword, a
missing field or an assignment to a field is a type error.

Why not ``@dataclass(frozen=True)``: CPython 3.11 compiles six methods with ``exec`` for each
dataclass, about 0.75 ms a class on the reference machine, so the spec's seventeen classes
cost ``agentrun validate`` about 15 ms of its cold start (issue 3 measures it in
``bench/startup.py``). Here the methods are written once, on the base class, and a subclass
costs only the reading of its annotations. Behaviour matches the frozen dataclasses it
replaces: keyword or positional construction in field order, defaults and default factories,
``==`` between instances of the same class with equal fields, ``hash`` of the fields (so an
instance holding a dict is unhashable, as a dataclass's is), a ``repr`` naming every field,
and :class:`FrozenSpecError` on any assignment or deletion.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar, dataclass_transform

T = TypeVar("T")
S = TypeVar("S", bound="SpecClass")


class FrozenSpecError(AttributeError):
    """Raised on assigning to or deleting a field of a spec object (as ``FrozenInstanceError``)."""


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


def field(*, default_factory: Callable[[], T]) -> T:
    """A field whose default is made fresh for each instance by ``default_factory()``."""
    return _Factory(default_factory)  # type: ignore[return-value]  # as dataclasses.field does


_MISSING = object()


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
class SpecClass:
    """Base of the spec classes: a frozen record with value semantics (see the module doc)."""

    __slots__ = ()
    #: The field names, in declaration order (base class fields first).
    _FIELDS: ClassVar[tuple[str, ...]] = ()
    #: Default per field name: a value, or a ``_Factory``; fields without one are required.
    _DEFAULTS: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names = list(cls._FIELDS)
        defaults = dict(cls._DEFAULTS)
        for name, annotation in vars(cls).get("__annotations__", {}).items():
            if str(annotation).startswith(("ClassVar", "typing.ClassVar")):
                continue
            if name not in names:
                names.append(name)
            value = vars(cls).get(name, _MISSING)
            if isinstance(value, _Factory):
                delattr(cls, name)  # no shared mutable default left on the class
            if value is not _MISSING:
                defaults[name] = value
        cls._FIELDS = tuple(names)
        cls._DEFAULTS = defaults

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        names = self._FIELDS
        if len(args) > len(names):
            raise TypeError(
                f"{type(self).__name__}() takes {len(names)} positional arguments "
                f"but {len(args)} were given"
            )
        values = dict(zip(names, args, strict=False))
        for name, value in kwargs.items():
            if name not in names:
                raise TypeError(
                    f"{type(self).__name__}() got an unexpected keyword argument {name!r}"
                )
            if name in values:
                raise TypeError(
                    f"{type(self).__name__}() got multiple values for argument {name!r}"
                )
            values[name] = value
        put = object.__setattr__
        for name in names:
            if name in values:
                put(self, name, values[name])
                continue
            default = self._DEFAULTS.get(name, _MISSING)
            if default is _MISSING:
                raise TypeError(f"{type(self).__name__}() missing required argument {name!r}")
            put(self, name, default.make() if isinstance(default, _Factory) else default)

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._FIELDS)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, SpecClass)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._FIELDS)
        return f"{type(self).__qualname__}({shown})"

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenSpecError(f"cannot assign to field {name!r} of a frozen {type(self).__name__}")

    def __delattr__(self, name: str) -> None:
        raise FrozenSpecError(f"cannot delete field {name!r} of a frozen {type(self).__name__}")


def spec_fields(cls: type[SpecClass] | SpecClass) -> tuple[str, ...]:
    """The field names of a spec class or object, in declaration order."""
    return cls._FIELDS


def replace(obj: S, **changes: Any) -> S:
    """A copy of ``obj`` with some fields changed (``dataclasses.replace``'s contract).

    Raises:
        TypeError: when ``changes`` names something that is not a field.
    """
    return type(obj)(**{name: getattr(obj, name) for name in obj._FIELDS} | changes)
