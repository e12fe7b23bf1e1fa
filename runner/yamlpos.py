"""YAML with positions: parse a spec file into plain values plus the line and column of every node.

PyYAML's ``safe_load`` forgets where values came from and silently keeps the last of two
duplicate keys. Here the document is *composed* (PyYAML's node graph, which carries marks)
and turned into plain Python values by our own walk, which:

- records, for every JSON-pointer-like path (a tuple of keys and indexes), where the value
  starts and, for mapping entries, where its key starts (1-based line and column);
- refuses duplicate keys, non-string keys and merge keys (``<<``), each at its location;
- caps the number of nodes produced, so alias bombs ("billion laughs") are refused quickly.

Only ``yaml.SafeLoader`` is used: no Python object tags can be constructed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import Diagnostic

#: Most nodes one spec may expand to (after aliases). Real specs have a few hundred.
MAX_NODES = 20_000

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Pos:
    """A 1-based line and column in the source file."""

    line: int
    column: int


@dataclass
class Located:
    """A parsed document: its plain value and where each part of it came from.

    Attributes:
        value: the document as dicts, lists, str, int, float, bool and None.
        values: path → position of the value's first character.
        keys: path → position of the mapping key that introduced the value.
        styles: path → the scalar style (``"|"``, ``">"``, ``"'"``, ``'"'`` or ``""``).
        lines: the file's lines, for caret displays.
    """

    value: Any
    values: dict[Path, Pos] = field(default_factory=dict)
    keys: dict[Path, Pos] = field(default_factory=dict)
    styles: dict[Path, str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    def key_pos(self, path: Path) -> Pos:
        """Where the key of ``path`` is, falling back to its value, then to its parents."""
        while path:
            if path in self.keys:
                return self.keys[path]
            if path in self.values:
                return self.values[path]
            path = path[:-1]
        return self.values.get((), Pos(1, 1))

    def value_pos(self, path: Path) -> Pos:
        """Where the value at ``path`` starts, falling back to its nearest known parent."""
        while path:
            if path in self.values:
                return self.values[path]
            path = path[:-1]
        return self.values.get((), Pos(1, 1))

    def diagnostic(
        self, file: str, pos: Pos, message: str, hint: str = "", severity: str = "error"
    ) -> Diagnostic:
        """A :class:`Diagnostic` at ``pos`` with the source line filled in."""
        source = self.lines[pos.line - 1] if 0 < pos.line <= len(self.lines) else ""
        return Diagnostic(file, pos.line, pos.column, message, hint, severity, source)


class _TooLarge(Exception):
    pass


class _Walker:
    def __init__(self, loader: yaml.SafeLoader, located: Located, file: str) -> None:
        self.loader = loader
        self.located = located
        self.file = file
        self.count = 0
        self.errors: list[Diagnostic] = []

    def pos(self, mark: yaml.Mark) -> Pos:
        return Pos(mark.line + 1, mark.column + 1)

    def walk(self, node: yaml.Node, path: Path) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _TooLarge
        self.located.values.setdefault(path, self.pos(node.start_mark))
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.walk(child, (*path, i)) for i, child in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        self.located.styles.setdefault(path, node.style or "")
        try:
            value = self.loader.construct_object(node, deep=True)
        except (ValueError, OverflowError) as error:  # e.g. an impossible date: 2024-02-30
            self.errors.append(
                self.located.diagnostic(
                    self.file,
                    self.pos(node.start_mark),
                    f"value {node.value!r} cannot be read: {error}",
                    "quote it to make it a string",
                )
            )
            return str(node.value)
        if isinstance(value, float) and value != value:  # NaN: not JSON, never a useful value
            return str(node.value)
        return value

    def mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_seen: dict[str, Pos] = {}
        for key_node, value_node in node.value:
            key_pos = self.pos(key_node.start_mark)
            if key_node.tag == "tag:yaml.org,2002:merge":
                self.errors.append(
                    self.located.diagnostic(
                        self.file,
                        key_pos,
                        "merge keys ('<<') are not allowed in a spec",
                        "write the keys out in full, so every key is checked where it stands",
                    )
                )
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.errors.append(
                    self.located.diagnostic(
                        self.file, key_pos, "a key must be a plain string, not a list or mapping"
                    )
                )
                continue
            key = self.loader.construct_object(key_node)
            if not isinstance(key, str):
                self.errors.append(
                    self.located.diagnostic(
                        self.file,
                        key_pos,
                        f"key {key_node.value!r} is read as {type(key).__name__} {key!r}, "
                        "not a string",
                        f"quote it: '{key_node.value}'",
                    )
                )
                continue
            if key in first_seen:
                seen = first_seen[key]
                self.errors.append(
                    self.located.diagnostic(
                        self.file,
                        key_pos,
                        f"duplicate key {key!r}",
                        f"it is already set at line {seen.line}; keep one",
                    )
                )
                continue
            first_seen[key] = key_pos
            child = (*path, key)
            self.located.keys[child] = key_pos
            result[key] = self.walk(value_node, child)
        return result


def _yaml_error(file: str, lines: list[str], error: yaml.MarkedYAMLError) -> Diagnostic:
    mark = error.problem_mark or error.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
    problem = error.problem or "invalid YAML"
    hint = ""
    source = lines[line - 1] if 0 < line <= len(lines) else ""
    if "\\t" in problem or "\t" in problem or (source and "\t" in source[: max(column, 1)]):
        problem = "a tab character where YAML allows only spaces"
        hint = "indent with spaces; YAML forbids tabs for indentation"
        tab = source.find("\t")
        if tab >= 0:
            column = tab + 1
    elif error.context:
        problem = f"{problem} ({error.context})"
    if "could not find expected ':'" in problem:
        hint = "a key needs ':' after it; a value that contains ': ' must be quoted"
    elif "mapping values are not allowed here" in problem:
        hint = "quote a value that contains ': ', or fix the indentation"
    elif "found undefined tag handle" in problem or "could not determine a constructor" in problem:
        hint = "custom YAML tags are not allowed in a spec"
    message = f"invalid YAML: {problem}"
    return Diagnostic(file, line, column, message, hint, "error", source)


def parse(text: str, file: str) -> tuple[Located | None, list[Diagnostic]]:
    """Parse ``text`` (the contents of ``file``) into a :class:`Located` document.

    Returns:
        ``(located, errors)``: ``located`` is None when the text is not a single YAML
        document; ``errors`` holds every located problem found while walking it (duplicate
        keys, non-string keys, merge keys), in file order. Never raises for bad input.
    """
    lines = text.splitlines()
    located = Located(value=None, lines=lines)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as error:
        return None, [_yaml_error(file, lines, error)]
    except yaml.YAMLError as error:  # unmarked errors (e.g. reader errors)
        return None, [Diagnostic(file, 1, 1, f"invalid YAML: {error}")]
    finally:
        loader.dispose()
    if node is None:
        return None, [Diagnostic(file, 1, 1, "the spec is empty", "see `agentrun init NAME`")]
    walker = _Walker(loader, located, file)
    try:
        located.value = walker.walk(node, ())
    except _TooLarge:
        return None, [
            located.diagnostic(
                file,
                Pos(node.start_mark.line + 1, node.start_mark.column + 1),
                f"the spec expands to more than {MAX_NODES} values (aliases repeated too often)",
                "write the spec out without nested aliases",
            )
        ]
    except yaml.MarkedYAMLError as error:  # a scalar that cannot be constructed
        return None, [_yaml_error(file, lines, error)]
    return located, sorted(walker.errors, key=lambda d: (d.line, d.column))
