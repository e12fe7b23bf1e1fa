r"""Canonical arguments: one spelling for each file and each URL a tool call names.

A tool call can name one file in many spellings (``./data/x``, ``data//x``, ``data/./x``, an
absolute path, a symlink's name) and one URL in many more (``HTTP://Host:80/a//b``, ``%61``).
If a rule looked at one spelling and the tool acted on another, a rule written for one would
be dodged by the next. So a tool that takes paths or URLs turns them into their canonical form
once, when its arguments are parsed (:meth:`runner.tools.Tool.canonical_arguments`, applied by
:meth:`runner.tools.ToolRegistry.parse_arguments`); the loop hands that same dictionary to the
policy and to the tool, so what is checked is what is done.

Paths (:func:`canonical_path`):

1. A path the file tools refuse on its text alone (empty, a NUL byte, a ``..`` component
   with ``/`` or ``\`` separators) has no canonical form: it is returned as written and the
   tool refuses it before touching the filesystem, whatever the policy decided.
2. Otherwise it is joined to the workdir (an absolute path stays as it is), every symlink is
   resolved and ``.``, ``..`` (from a symlink's target), repeated and trailing separators are
   removed (:func:`os.path.realpath`; a leading ``//`` is ``/``).
3. Each component that exists is spelled as the folder stores it, so on a case-insensitive
   filesystem ``DATA/Secrets/x`` becomes ``data/secrets/x`` (on a case-sensitive one those are
   different files and stay different).
4. A path inside the (resolved) workdir becomes its workdir-relative POSIX text (``.`` for the
   workdir itself), as rules in specs are written; any other path stays absolute.

URLs (:func:`runner.tools.http.canonical_url`, built on :func:`canonical_url_path` and
:func:`normalise_escapes`): scheme and host in lower case, a host's trailing dot dropped,
international names in their ASCII form, the default port (80, 443) dropped, percent-escapes
of unreserved characters decoded and the rest in upper case (RFC 3986 §6.2.2), in the path
repeated ``/`` collapsed and ``.`` and ``..`` segments removed (RFC 3986 §5.2.4), an empty
query and the fragment (never sent) dropped. Reserved characters stay escaped (``%2F`` is not
``/``: an API such as GitLab's tells them apart). A URL with user information is refused by
the tool, so it is returned as written.

Rule globs are put in the same form when a rule is matched (:func:`canonical_path_glob`,
:func:`canonical_url_glob`), so ``./data/secrets/*`` and an absolute spelling of the workdir
in a rule match what ``data/secrets/*`` matches.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from pathlib import Path, PurePath, PurePosixPath

#: Characters RFC 3986 calls unreserved: their escapes mean the character itself.
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_GLOB_CHARACTERS = frozenset("*?[")
_DEFAULT_PORTS = {"http": "80", "https": "443"}


class CanonicalPath(str):
    """A path argument in canonical form (:func:`canonical_path`).

    Plain text to the tool and to JSON; it also remembers the workdir it was resolved
    against, so the policy can put a rule's glob in the same form before matching it.
    """

    workdir: str

    def __new__(cls, text: str, workdir: str = "") -> CanonicalPath:
        """``text`` (canonical already), resolved against ``workdir``."""
        self = super().__new__(cls, text)
        self.workdir = workdir
        return self

    def __getnewargs__(self) -> tuple[str, str]:  # type: ignore[override]
        """What :mod:`copy` and :mod:`pickle` rebuild it from."""
        return (str(self), self.workdir)


class CanonicalURL(str):
    """A URL argument in canonical form; the policy matches URL globs put in the same form."""


def refused_on_text(requested: str) -> str:
    r"""Why the file tools refuse ``requested`` without looking at the filesystem, or ``""``.

    Returns:
        ``"NUL"`` (a NUL byte), ``"empty"`` (empty or blank) or ``".."`` (a ``..``
        component, separators ``/`` or ``\``); ``""`` for a path that may be resolved.
    """
    if "\x00" in requested:
        return "NUL"
    if not requested.strip():
        return "empty"
    if ".." in PurePosixPath(requested.replace("\\", "/")).parts:
        return ".."
    return ""


def canonical_path(workdir: Path | str, requested: str) -> str:
    """The canonical form of the path ``requested`` (rules in the module docstring).

    Args:
        workdir: the folder relative paths are relative to (absolute).
        requested: the path as the model wrote it.

    Returns:
        A :class:`CanonicalPath`: workdir-relative POSIX text inside the resolved workdir,
        absolute text elsewhere; or ``requested`` itself when it is refused on its text
        (:func:`refused_on_text`). Never raises for any string.
    """
    if refused_on_text(requested):
        return requested
    return _resolve(str(workdir), requested)


def _resolve(workdir: str, requested: str) -> CanonicalPath:
    """Steps 2 to 4 of the path rules, for any text without a NUL byte."""
    real = os.path.realpath(os.path.join(workdir, requested))
    base = os.path.realpath(workdir)
    if real == base:
        return CanonicalPath(".", workdir)
    if real.startswith(base.rstrip(os.sep) + os.sep):
        return CanonicalPath(_stored_spelling(base, os.path.relpath(real, base)), workdir)
    return CanonicalPath(_stored_spelling(base, real), workdir)


def _stored_spelling(base: str, path: str) -> str:
    """``path`` (relative to ``base``, or absolute) with existing components spelled as stored.

    A folder that finds the entry ``Name`` also under ``nAME`` ignores case; there the name
    is looked up in the folder's listing. Elsewhere this costs one ``lstat`` per component.
    """
    pure = PurePath(path)
    parts = list(pure.parts)
    current, first = (parts[0], 1) if pure.is_absolute() else (base, 0)
    for index in range(first, len(parts)):
        name = parts[index]
        try:
            found = os.lstat(os.path.join(current, name))
        except OSError:
            break  # this component and the ones below it do not exist (yet)
        swapped = name.swapcase()
        if swapped != name:
            try:
                ignores_case = os.path.samestat(found, os.lstat(os.path.join(current, swapped)))
            except OSError:
                ignores_case = False
            if ignores_case:
                parts[index] = _stored_name(current, name, found)
        current = os.path.join(current, parts[index])
    return PurePath(*parts).as_posix()


def _stored_name(folder: str, name: str, found: os.stat_result) -> str:
    """The name ``folder`` stores for the entry ``name`` reaches (``found``), or ``name``."""
    try:
        names = os.listdir(folder)
    except OSError:
        return name
    if name in names:
        return name
    for stored in names:
        if stored.casefold() == name.casefold():
            try:
                if os.path.samestat(found, os.lstat(os.path.join(folder, stored))):
                    return stored
            except OSError:
                continue
    return name


def canonical_path_glob(glob: str, workdir: str) -> str:
    """A rule's path glob in canonical form, resolved against ``workdir`` now.

    The leading components without glob characters (``*``, ``?``, ``[``) are resolved like a
    path argument (:func:`canonical_path`, ``..`` included: rules are the author's); the
    rest only loses ``.`` components and repeated or trailing ``/``. A glob with ``..`` after
    a glob character is returned as written.

    Examples (workdir ``/w``): ``./data/secrets/*`` and ``/w/data/secrets/*`` become
    ``data/secrets/*``; ``data/secrets/`` becomes ``data/secrets``.
    """
    if not glob or "\x00" in glob:
        return glob
    parts = [part for part in glob.split("/") if part not in ("", ".")]
    literal: list[str] = []
    for part in parts:
        if _GLOB_CHARACTERS & set(part):
            break
        literal.append(part)
    rest = parts[len(literal) :]
    if ".." in rest:
        return glob
    absolute = glob.startswith("/")
    if literal or absolute:
        prefix = str(_resolve(workdir, ("/" if absolute else "") + "/".join(literal)))
    else:
        prefix = "."
    if not rest:
        return prefix
    if prefix == ".":
        return "/".join(rest)
    return prefix.rstrip("/") + "/" + "/".join(rest)


def normalise_escapes(text: str) -> str:
    """Percent-escapes per RFC 3986 §6.2.2: unreserved characters decoded, others upper case.

    ``%7e`` becomes ``~``, ``%61`` ``a``, ``%2f`` ``%2F``; a ``%`` not followed by two hex
    digits is left alone.
    """

    def fix(match: re.Match[str]) -> str:
        character = chr(int(match.group(1), 16))
        return character if character in _UNRESERVED else "%" + match.group(1).upper()

    return _ESCAPE.sub(fix, text)


def canonical_url_path(path: str) -> str:
    """A URL's path in canonical form.

    Escapes normalised (:func:`normalise_escapes`, so ``%2E`` is a dot), repeated ``/``
    collapsed, then ``.`` and ``..`` segments removed as RFC 3986 §5.2.4 does (``..`` above
    the root stays at the root). A trailing ``/`` is kept: ``/a/`` and ``/a`` are different
    resources. Always starts with ``/``.
    """
    segments = normalise_escapes(path).split("/")
    kept: list[str] = []
    for segment in segments:
        if segment == "..":
            if kept:
                kept.pop()
        elif segment not in ("", "."):
            kept.append(segment)
    text = "/" + "/".join(kept)
    if kept and segments[-1] in ("", ".", ".."):
        text += "/"
    return text


@functools.lru_cache(maxsize=256)
def canonical_url_glob(glob: str) -> str:
    """A rule's URL glob in the canonical form of URLs, as far as a glob allows.

    ``SCHEME://HOST[:PORT]`` in lower case, without a default port or a host's trailing
    dot; escapes normalised (:func:`normalise_escapes`; no unreserved character is a glob
    character); in the path up to its first glob character, repeated ``/`` collapsed and
    ``.`` and ``..`` segments removed. A glob that does not start with ``SCHEME://`` is
    returned with its escapes normalised only.
    """
    scheme, separator, rest = glob.partition("://")
    if not separator or _GLOB_CHARACTERS & set(scheme):
        return normalise_escapes(glob)
    scheme = scheme.lower()
    cut = min((i for i, c in enumerate(rest) if c in "/?#"), default=len(rest))
    authority, tail = rest[:cut].lower(), normalise_escapes(rest[cut:])
    host, colon, port = authority.rpartition(":")
    if not (colon and port.isdigit()):
        host, port = authority, ""
    host = host.rstrip(".")
    if not host.isascii() and not _GLOB_CHARACTERS & set(host):
        with contextlib.suppress(UnicodeError):
            host = host.encode("idna").decode("ascii")
    if port and port != _DEFAULT_PORTS.get(scheme):
        host += ":" + port
    if tail.startswith("/"):
        wild = min((i for i, c in enumerate(tail) if c in "*?[#"), default=len(tail))
        if wild == len(tail):
            tail = canonical_url_path(tail)
        else:  # whole segments before the first glob character
            head, _, last = tail[:wild].rpartition("/")
            tail = canonical_url_path(head + "/") + last + tail[wild:]
    return f"{scheme}://{host}{tail}"
