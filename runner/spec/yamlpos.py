"""YAML with positions: parse a spec file into plain values plus the line and column of every node.

PyYAML's ``safe_load`` forgets where values came from and silently keeps the last of two
duplicate keys. Here the document is *composed* (PyYAML's node graph, which carries marks)
and turned into plain Python values by our own walk, which:

- records, for every JSON-pointer-like path (a tuple of keys and indexes), where the value
  starts and, for mapping entries, where its key starts (1-based line and column);
- refuses duplicate keys, non-string keys and merge keys (``<<``), each at its location;
- caps the number of nodes produced, so alias bombs ("billion laughs") are refused quickly,
  and the nesting depth, so deeply nested or self-referencing documents are refused too;
- reads YAML 1.1's implicit dates (``2024-01-01``) as the text they are written as, because
  a spec holds JSON values only, and refuses other tags (``!include``, ``!!binary``,
  ``!!set``) and NUL characters;
- says what a YAML syntax error means in plain words, at the place to fix;
- locates everything an alias (``*name``) brings in at the alias, where it is used.

A top level that is not a mapping is refused here too. Only ``yaml.SafeLoader`` is used: no
Python object tags can be constructed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..errors import Diagnostic

#: Most nodes one spec may expand to (after aliases). Real specs have a few hundred.
MAX_NODES = 20_000

#: Deepest nesting of mappings and lists. Real specs nest about 6 levels.
MAX_DEPTH = 64

Path = tuple[str | int, ...]

_CORE = "tag:yaml.org,2002:"
_MERGE_TAG = _CORE + "merge"
#: Tags read as their text: YAML 1.1's dates, and `=` and `<<` where they are values.
_TEXT_TAGS = frozenset(_CORE + name for name in ("timestamp", "value", "merge"))
#: Tags whose values are plain JSON-like values (the implicit ones, or written out).
_PLAIN_TAGS = _TEXT_TAGS | {_CORE + name for name in ("str", "int", "float", "bool", "null")}
_PLAIN_TAGS |= {_CORE + "map", _CORE + "seq"}


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_CORE) :] if tag.startswith(_CORE) else tag


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
        ends: path → position just after a scalar value's last character.
        texts: path → the source text of a plain scalar that YAML reads as something other
            than a string (``yes``, ``1:30``, ``null``), for "quote it" hints.
        aliased: paths whose value an alias (``*name``) brought in; their positions are
            the alias's.
        lines: the file's lines, for caret displays.
    """

    value: Any
    values: dict[Path, Pos] = field(default_factory=dict)
    keys: dict[Path, Pos] = field(default_factory=dict)
    styles: dict[Path, str] = field(default_factory=dict)
    ends: dict[Path, Pos] = field(default_factory=dict)
    texts: dict[Path, str] = field(default_factory=dict)
    aliased: set[Path] = field(default_factory=set)
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


def _pos(mark: yaml.Mark) -> Pos:
    return Pos(mark.line + 1, mark.column + 1)


class _Refused(Exception):
    """A document the loader will not expand: too deep, too large, or self-referencing."""

    def __init__(self, pos: Pos, message: str, hint: str) -> None:
        super().__init__(message)
        self.pos = pos
        self.message = message
        self.hint = hint


class _AliasNode:
    """Where an alias (``*name``) stands, and the anchored node it repeats."""

    def __init__(self, target: yaml.Node, mark: yaml.Mark) -> None:
        self.target = target
        self.start_mark = mark
        self.tag = target.tag


class _Loader(yaml.SafeLoader):
    """A SafeLoader whose composer keeps alias positions and refuses deep or cyclic nesting."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0
        self.nodes = 0
        self.open_anchors: set[str] = set()

    def compose_node(self, parent: yaml.Node | None, index: Any) -> Any:
        parser: Any = self  # PyYAML's parser methods are untyped
        if self.check_event(yaml.AliasEvent):
            event = parser.peek_event()
            if event.anchor in self.open_anchors:
                raise _Refused(
                    _pos(event.start_mark),
                    f"alias '*{event.anchor}' is used inside the value it names, "
                    "which would make the spec infinitely deep",
                    "write the value out instead of referring to itself",
                )
            node: Any = super().compose_node(parent, index)
            return _AliasNode(node, event.start_mark)
        event = parser.peek_event()
        anchor = getattr(event, "anchor", None)
        self.depth += 1
        self.nodes += 1
        if self.nodes > MAX_NODES:  # refuse a huge file before composing all of it
            raise _Refused(
                _pos(event.start_mark),
                f"the spec holds more than {MAX_NODES} keys and values",
                "a spec needs a few hundred; keep data in files the agent reads",
            )
        if self.depth > MAX_DEPTH:
            raise _Refused(
                _pos(event.start_mark),
                f"the spec nests more than {MAX_DEPTH} levels deep",
                "a spec needs a handful of levels; flatten this value",
            )
        if anchor:
            self.open_anchors.add(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1
            if anchor:
                self.open_anchors.discard(anchor)


def _yaml_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {'true' if value else 'false'}"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value!r}"
    return f"a {type(value).__name__}"


def _is_empty(node: Any) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.value == "" and not node.style


class _Walker:
    def __init__(self, loader: _Loader, located: Located, file: str) -> None:
        self.loader = loader
        self.located = located
        self.file = file
        self.count = 0
        self.errors: list[Diagnostic] = []

    def error(self, pos: Pos, message: str, hint: str, alias: Pos | None) -> None:
        # What an alias repeats was already checked where its anchor stands.
        if alias is None:
            self.errors.append(self.located.diagnostic(self.file, pos, message, hint))

    def walk(self, node: Any, path: Path, alias: Pos | None = None) -> Any:
        self.count += 1
        if self.count > MAX_NODES:  # the composer caps what is written: aliases did this
            raise _Refused(
                alias or _pos(node.start_mark),
                f"the spec expands to more than {MAX_NODES} values (aliases repeated too often)",
                "write the spec out without nested aliases",
            )
        if len(path) > MAX_DEPTH:
            raise _Refused(
                alias or _pos(node.start_mark),
                f"the spec nests more than {MAX_DEPTH} levels deep (through aliases)",
                "a spec needs a handful of levels; flatten this value",
            )
        if isinstance(node, _AliasNode):
            alias = alias or _pos(node.start_mark)
            node = node.target
        if alias is not None:
            self.located.aliased.add(path)
        self.located.values.setdefault(path, alias or _pos(node.start_mark))
        if node.tag not in _PLAIN_TAGS:
            self.error(
                alias or _pos(node.start_mark),
                f"the YAML tag {_short_tag(node.tag)!r} is not allowed in a spec",
                "remove the tag; a spec holds plain values only",
                alias,
            )
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path, alias)
        if isinstance(node, yaml.SequenceNode):
            return [self.walk(child, (*path, i), alias) for i, child in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        self.located.styles.setdefault(path, node.style or "")
        self.located.ends.setdefault(path, alias or _pos(node.end_mark))
        value = self.scalar(node, alias)
        if not isinstance(value, str) and not node.style and node.value:
            self.located.texts.setdefault(path, node.value)
        return value

    def scalar(self, node: yaml.ScalarNode, alias: Pos | None) -> Any:
        if node.tag in _TEXT_TAGS:
            # A date (`2024-01-01`), or `=` / `<<` as a value: a spec holds JSON values, so
            # keep the text.
            return node.value
        if node.tag not in _PLAIN_TAGS:  # reported by walk()
            return node.value
        try:
            value = self.loader.construct_object(node, deep=True)
        except Exception as error:  # `!!int x`, `!!bool maybe`, `!!timestamp 2024-02-30`
            detail = f": {error}" if isinstance(error, ValueError) and str(error) else ""
            self.error(
                alias or _pos(node.start_mark),
                f"value {node.value!r} cannot be read as {_short_tag(node.tag)}{detail}",
                "quote it to make it a string",
                alias,
            )
            return str(node.value)
        if isinstance(value, float) and value != value:  # NaN: not JSON, never a useful value
            return str(node.value)
        if isinstance(value, str) and "\x00" in value:  # written as "\0": breaks paths and argv
            self.error(
                alias or _pos(node.start_mark),
                "this text contains a NUL character ('\\0'), which no spec value may hold",
                "remove the '\\0'",
                alias,
            )
            return value.replace("\x00", "")
        return value

    def mapping(self, node: yaml.MappingNode, path: Path, alias: Pos | None) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_seen: dict[str, Pos] = {}
        for key_node, value_node in node.value:
            real_key = key_node.target if isinstance(key_node, _AliasNode) else key_node
            key_pos = alias or _pos(key_node.start_mark)
            if real_key.tag == _MERGE_TAG:
                self.error(
                    key_pos,
                    "merge keys ('<<') are not allowed in a spec",
                    "write the keys out in full, so every key is checked where it stands",
                    alias,
                )
                continue
            if not isinstance(real_key, yaml.ScalarNode):
                self.error(
                    key_pos, "a key must be a plain string, not a list or mapping", "", alias
                )
                continue
            key = self.scalar(real_key, alias)
            if not isinstance(key, str):
                self.error(
                    key_pos,
                    f"key '{real_key.value}' is read as {_yaml_type(key)}, not as a string",
                    f"quote it: '{real_key.value}'",
                    alias,
                )
                continue
            if key in first_seen:
                seen = first_seen[key]
                where = f", column {seen.column}" if seen.line == key_pos.line else ""
                hint = f"it is already set at line {seen.line}{where}; keep one"
                self.error(key_pos, f"duplicate key {key!r}", hint, alias)
                continue
            first_seen[key] = key_pos
            child = (*path, key)
            self.located.keys[child] = key_pos
            if _is_empty(value_node):  # `key:` with nothing after it: point at the key
                self.located.values.setdefault(child, key_pos)
            result[key] = self.walk(value_node, child, alias)
        return result


# -------------------------------------------------------------------------------------------
# YAML syntax errors in plain words

_FOUND_WORDS = {
    "<block mapping start>": "a key",
    "<block sequence start>": "a list item",
    "-": "a list item",
    "?": "a key",
    "<scalar>": "a value",
    "<block end>": "the end of a block",
    "<stream end>": "the end of the file",
    "<document start>": "'---'",
    "<document end>": "'...'",
    "<flow mapping start>": "'{'",
    "<flow sequence start>": "'['",
}
_INDENT_HINT = "indent it like the other keys of its mapping (or the other items of its list)"


def _found(problem: str, marker: str) -> str:
    """What PyYAML found (the text after ``marker``), in words: ``']'``, "a key", ..."""
    found = problem.rpartition(marker)[2].strip() if marker in problem else problem
    bare = found[1:-1] if len(found) >= 2 and found[0] == found[-1] and found[0] in "'\"" else found
    return _FOUND_WORDS.get(bare, f"'{bare}'" if "'" not in bare else f'"{bare}"')


def _quoted(text: str) -> str:
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"'{text}'" if "'" not in text else f'"{text}"'


def _at(lines: list[str], mark: yaml.Mark | None) -> Pos:
    """The position of ``mark``, moved onto the last line when it lies past the end."""
    if mark is None:
        return Pos(1, 1)
    line, column = mark.line + 1, mark.column + 1
    if line > len(lines) and lines:
        return Pos(len(lines), len(lines[-1]) + 1)
    return Pos(max(line, 1), max(column, 1))


@dataclass(frozen=True)
class _YamlProblem:
    """One PyYAML error, as the rules below read it."""

    problem: str
    context: str
    pos: Pos  # where PyYAML found the problem
    context_pos: Pos  # where the construct it was reading began
    source: str  # the text of the line at ``pos``


#: A rewording: ``(position, message, hint)``, or None when the rule does not apply.
_Rewording = tuple[Pos, str, str] | None


def _plain(
    applies: Callable[[str, str], bool], message: str | None, hint: str, at_context: bool = False
) -> Callable[[_YamlProblem], _Rewording]:
    """A rewording in fixed words, for errors ``applies(problem, context)`` recognises.

    ``message`` None keeps PyYAML's; ``at_context`` points at where the construct began.
    """

    def reword(e: _YamlProblem) -> _Rewording:
        if not applies(e.problem, e.context):
            return None
        default = e.problem + (f" ({e.context})" if e.context else "")
        return (e.context_pos if at_context else e.pos), message or default, hint

    return reword


_no_colon = _plain(
    lambda p, c: "could not find expected ':'" in p,
    "expected 'key: value', but this line has no ':' after its key",
    "add ': ' after the key; a value that contains ': ' must be quoted",
    at_context=True,
)

_colon_here = _plain(
    lambda p, c: "mapping values are not allowed here" in p,
    "unexpected ':' here",
    "quote a value that contains ': ', or fix the indentation",
)

_dash_here = _plain(
    lambda p, c: "sequence entries are not allowed here" in p,
    "a list item ('- ') cannot start here",
    "start the list on the next line, indented, or quote the value",
)

_key_here = _plain(
    lambda p, c: "mapping keys are not allowed here" in p,
    "a '? ' key cannot start here",
    "quote the value",
)

_indentation = _plain(
    lambda p, c: p.startswith(("did not find expected key", "did not find expected '-'")),
    "this line's indentation does not fit the lines above it",
    _INDENT_HINT,
)

_directive = _plain(
    lambda p, c: "while scanning a directive" in c,
    "a line starting with '%' is read as a YAML directive",
    "quote the value, or remove the '%'",
    at_context=True,
)

_block_scalar = _plain(
    lambda p, c: "while scanning a block scalar" in c and "indicators" in p,
    "after '|' or '>' only '+', '-' or an indentation digit may follow",
    "start the text on the next line, indented",
)

_second_document = _plain(
    lambda p, c: "another document" in p,
    "a second YAML document starts here; a spec file holds one",
    "remove the '---' line and what follows, or split the file in two",
)

_custom_tag = _plain(
    lambda p, c: "found undefined tag handle" in p,
    None,
    "custom YAML tags are not allowed in a spec",
)


def _tab(e: _YamlProblem) -> _Rewording:
    if not ("\\t" in e.problem or "tab" in e.problem or "\t" in e.source[: e.pos.column]):
        return None
    pos = e.pos
    if e.source[pos.column - 1 : pos.column] != "\t" and "\t" in e.source:
        pos = Pos(pos.line, e.source.find("\t") + 1)
    leading = e.source[: pos.column - 1].strip(" \t") == ""
    hint = (
        "indent with spaces; YAML forbids tabs for indentation"
        if leading
        else "replace the tab with spaces"
    )
    return pos, "a tab character where YAML allows only spaces", hint


def _unclosed_quote(e: _YamlProblem) -> _Rewording:
    if not ("quoted scalar" in e.context and e.problem.startswith("found unexpected")):
        return None
    return e.context_pos, "this quoted string is never closed", "add the closing quote"


def _unclosed_flow(e: _YamlProblem) -> _Rewording:
    if e.context not in ("while parsing a flow sequence", "while parsing a flow mapping"):
        return None
    opener, closer, what = ("[", "]", "list") if "sequence" in e.context else ("{", "}", "mapping")
    found = _found(e.problem, "but got ")
    hint = f"close the {what} with '{closer}', or quote the value if '{opener}' is text"
    if e.pos.line > e.context_pos.line:
        message = (
            f"this '{opener}' is never closed: line {e.pos.line}, column {e.pos.column} "
            f"has {found} where ',' or '{closer}' was expected"
        )
        return e.context_pos, message, hint
    return e.pos, f"expected ',' or '{closer}' in this {what}, but found {found}", hint


def _misplaced(e: _YamlProblem) -> _Rewording:
    if not e.problem.startswith(("expected <block end>, but", "expected '<document start>', but")):
        return None
    found = _found(e.problem, "but found ")
    before = e.source[: e.pos.column - 1].rstrip()
    if found == "a value" and before[-1:] in ("'", '"'):
        return (
            e.pos,
            "unexpected text after a quoted string",
            "quote the whole value, or remove the text after the closing quote",
        )
    if found.startswith("a "):
        return e.pos, f"{found} at an indentation that does not fit here", _INDENT_HINT
    return e.pos, f"{found} was not expected here", _INDENT_HINT


def _value_expected(e: _YamlProblem) -> _Rewording:
    if not e.problem.startswith("expected the node content, but found"):
        return None
    found = _found(e.problem, "but found ")
    return e.pos, f"expected a value here, but found {found}", "quote the value if it is text"


def _bad_escape(e: _YamlProblem) -> _Rewording:
    if not e.problem.startswith("found unknown escape character"):
        return None
    character = e.problem.rpartition(" ")[2].strip(chr(39))
    return (
        Pos(e.pos.line, max(e.pos.column - 1, 1)),
        f"'\\{character}' is not an escape in a double-quoted string",
        "use single quotes for text with backslashes, or write '\\\\'",
    )


def _bad_start(e: _YamlProblem) -> _Rewording:
    if "cannot start any token" not in e.problem:
        return None
    character = e.problem.split("'")[1] if "'" in e.problem else "?"
    return e.pos, f"a plain value cannot start with {character!r}", "quote the value"


def _alias_or_anchor(e: _YamlProblem) -> _Rewording:
    if "while scanning an alias" not in e.context and "while scanning an anchor" not in e.context:
        return None
    sign, word = ("*", "an alias") if "alias" in e.context else ("&", "an anchor")
    token = _token_at(e.source, e.context_pos.column) or sign
    message = (
        f"a bare '{sign}' is read as the start of {word}"
        if token == sign
        else f"{_quoted(token)} starts with '{sign}', which YAML reads as {word}"
    )
    return e.context_pos, message, f"quote it: {_quoted(token)}"


def _undefined_alias(e: _YamlProblem) -> _Rewording:
    if not e.problem.startswith("found undefined alias"):
        return None
    name = e.problem.rpartition(" ")[2].strip("'")
    return (
        e.pos,
        f"alias '*{name}' refers to no anchor '&{name}'",
        f"quote it if '*{name}' is meant as text: '*{name}'",
    )


def _duplicate_anchor(e: _YamlProblem) -> _Rewording:
    if "found duplicate anchor" not in e.context:
        return None
    name = e.context.split("'")[1] if "'" in e.context else "?"
    message = f"anchor '&{name}' is defined twice (first at line {e.context_pos.line})"
    return e.pos, message, "rename one of them"


#: The rewordings, tried in order; the first that applies wins.
_REWORDINGS = [
    _tab,
    _unclosed_quote,
    _unclosed_flow,
    _no_colon,
    _colon_here,
    _dash_here,
    _key_here,
    _misplaced,
    _indentation,
    _value_expected,
    _bad_escape,
    _bad_start,
    _alias_or_anchor,
    _directive,
    _block_scalar,
    _undefined_alias,
    _duplicate_anchor,
    _second_document,
    _custom_tag,
]


def _yaml_error(file: str, lines: list[str], error: yaml.MarkedYAMLError) -> Diagnostic:
    """A PyYAML error in plain words, at its line and column, with a hint."""
    problem = error.problem or "invalid YAML"
    context = error.context or ""
    pos = _at(lines, error.problem_mark or error.context_mark)
    context_pos = _at(lines, error.context_mark) if error.context_mark else pos
    source = lines[pos.line - 1] if 0 < pos.line <= len(lines) else ""
    found = _YamlProblem(problem, context, pos, context_pos, source)
    message, hint = problem + (f" ({context})" if context else ""), ""
    for rewording in _REWORDINGS:
        reworded = rewording(found)
        if reworded is not None:
            pos, message, hint = reworded
            break
    source = lines[pos.line - 1] if 0 < pos.line <= len(lines) else ""
    return Diagnostic(file, pos.line, pos.column, f"invalid YAML: {message}", hint, "error", source)


def _token_at(source: str, column: int) -> str:
    """The value that starts at ``column``: to the end of the line, or of its flow item."""
    before, rest = source[: column - 1], source[column - 1 :]
    rest = rest.split(" #", 1)[0]
    if before.count("[") + before.count("{") > before.count("]") + before.count("}"):
        rest = re.split(r"[,\]}]", rest, maxsplit=1)[0]
    return rest.strip()


_YAML_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")


def _reader_error(file: str, text: str, error: yaml.reader.ReaderError) -> Diagnostic:
    # Count lines as YAML does: this text never reached YAML's own line counting.
    before = _YAML_BREAK.split(text[: max(error.position, 0)])
    line, column = len(before), len(before[-1]) + 1
    lines = _YAML_BREAK.split(text)
    source = lines[line - 1] if 0 < line <= len(lines) else ""
    source = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]", "\ufffd", source)  # shown as '�'
    character = error.character
    code = ord(character) if isinstance(character, str) else int(character)
    return Diagnostic(
        file,
        line,
        column,
        f"invalid YAML: character U+{code:04X} is not allowed in YAML text",
        "remove it; control characters must be written as escapes in double quotes",
        "error",
        source,
    )


def _describe(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the text {shown!r}"
    return _yaml_type(value)


#: libyaml's parser, when PyYAML was built with it: about five times faster than the
#: pure-Python one. It is used only for plain documents (ASCII, no tabs, no anchors or aliases) that
#: turn out clean; anything else, and every error, goes through :class:`_Loader`, which
#: keeps alias positions and words its errors.
_FAST_LOADER: Any = getattr(yaml, "CSafeLoader", None)
_QUOTED = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\n]|\'\')*\'')
_COMMENT = re.compile(r"(?:^|\s)#.*$", re.MULTILINE)
_ANCHOR_OR_ALIAS = re.compile(r"(?:^|[\s\[{,:-])[&*][^\s,\[\]{}]", re.MULTILINE)


def parse(text: str, file: str) -> tuple[Located | None, list[Diagnostic]]:
    """Parse ``text`` (the contents of ``file``) into a :class:`Located` document.

    Returns:
        ``(located, errors)``: ``located`` is None when the text is not a single YAML
        document whose top level is a mapping; ``errors`` holds every located problem
        found (duplicate keys, non-string keys, merge keys), in file order. Never raises
        for bad input.
    """
    unquoted = _COMMENT.sub("", _QUOTED.sub("", text))
    plain = text.isascii() and "\t" not in text and not _ANCHOR_OR_ALIAS.search(unquoted)
    if _FAST_LOADER is not None and plain:
        try:
            located, errors = _parse(text, file, _FAST_LOADER)
        except Exception:  # anything odd: the careful path below decides
            located, errors = None, []
        if located is not None and not errors:
            return located, errors
    return _parse(text, file, _Loader)


def _parse(text: str, file: str, loader_class: Any) -> tuple[Located | None, list[Diagnostic]]:
    lines = text.splitlines()
    located = Located(value=None, lines=lines)
    try:
        loader = loader_class(text)
    except yaml.reader.ReaderError as error:
        return None, [_reader_error(file, text, error)]
    try:
        node = loader.get_single_node()
        walker = _Walker(loader, located, file)
        if node is not None:
            located.value = walker.walk(node, ())
    except _Refused as refused:
        return None, [located.diagnostic(file, refused.pos, refused.message, refused.hint)]
    except yaml.reader.ReaderError as error:
        return None, [_reader_error(file, text, error)]
    except yaml.MarkedYAMLError as error:
        return None, [_yaml_error(file, lines, error)]
    except yaml.YAMLError as error:  # unmarked errors
        return None, [Diagnostic(file, 1, 1, f"invalid YAML: {error}")]
    except RecursionError:  # a safety net: MAX_DEPTH stops nesting long before this
        return None, [Diagnostic(file, 1, 1, "the spec nests too deeply to be read")]
    finally:
        loader.dispose()
    if node is None or (isinstance(node, yaml.ScalarNode) and node.value == "" and not node.style):
        return None, [
            located.diagnostic(file, Pos(1, 1), "the spec is empty", "see `agentrun init NAME`")
        ]
    if not isinstance(located.value, dict):
        return None, [
            located.diagnostic(
                file,
                located.value_pos(()),
                f"the spec must be a mapping of keys to values, not {_describe(located.value)}",
                "start with 'version: 1' and 'name: ...'; see `agentrun init NAME`",
            )
        ]
    return located, sorted(walker.errors, key=lambda d: (d.line, d.column))
