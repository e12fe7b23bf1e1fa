"""File-watch triggers: raw change events in, one fire per burst of changes out.

- :class:`EventKind` (the spec's ``watch.events``, named after watchdog's event types),
  :class:`Change` (one path's side of an event) and :class:`WatchEvent` (a raw event,
  independent of watchdog); :func:`from_watchdog` maps a watchdog ``FileSystemEvent``.
- :class:`WatchFilter` -- which paths count: the spec's ``patterns`` and ``ignore`` globs
  (``*``, ``?``, ``[...]`` as in :mod:`fnmatch`, plus ``**`` segments) and
  :data:`BUILTIN_IGNORES`, the temp, swap and lock files of common editors (vim's write
  probe ``4913`` from its ``bufwrite.c``, emacs, kate, GLib, JetBrains, LibreOffice and
  Office) and version-control internals.
- :class:`Debouncer` with :class:`Burst` and :class:`PathHistory` -- one fire per burst
  (the spec's ``debounce`` and ``max_wait``), firing each path's net change, so an
  editor's atomic save or a short-lived temp file is seen for what it did, not for its raw
  events.
- :func:`fingerprint` / :data:`Fingerprint` and :class:`SelfWriteFilter` -- changes the
  agent's own runs made never trigger it.

Times are seconds on a clock the caller passes in (the daemon uses ``time.monotonic()``);
the only I/O here is :func:`fingerprint`, which stats a file. Importing this module does
not import watchdog: :func:`from_watchdog` imports it when called.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .globs import bracket_end


class EventKind(StrEnum):
    """A kind of file change, as the spec's ``watch.events`` names it (watchdog's event types)."""

    CREATED = "created"
    """A file appeared (watchdog ``FileCreatedEvent``)."""
    MODIFIED = "modified"
    """A file's content or metadata changed (watchdog ``FileModifiedEvent``)."""
    DELETED = "deleted"
    """A file disappeared (watchdog ``FileDeletedEvent``)."""
    MOVED = "moved"
    """A file was renamed; the event has a source and a destination (``FileMovedEvent``)."""


class Change(StrEnum):
    """What one raw event did at one path: a move is split into its two sides."""

    CREATED = "created"
    """A file appeared at the path."""
    MODIFIED = "modified"
    """The file at the path changed in place."""
    DELETED = "deleted"
    """The file at the path was removed."""
    MOVED_FROM = "moved_from"
    """The file at the path was renamed away (the source side of a move)."""
    MOVED_TO = "moved_to"
    """A file was renamed onto the path (the destination side of a move), possibly
    replacing one that was there: an editor's atomic save, a finished download."""


@dataclass(frozen=True)
class WatchEvent:
    """One raw change, independent of watchdog.

    Attributes:
        kind: what happened.
        path: the file's path as the observer reported it (the source, for a move).
        dest: a move's destination; None for other kinds.
        is_directory: the event is about a directory, not a file.
    """

    kind: EventKind
    path: str
    dest: str | None = None
    is_directory: bool = False

    def changes(self) -> list[tuple[str, Change]]:
        """The event as per-path changes; a move is two: ``MOVED_FROM`` and ``MOVED_TO``.

        Other kinds map to the :class:`Change` of the same name.
        """
        if self.kind is EventKind.MOVED:
            sides = [(self.path, Change.MOVED_FROM)]
            if self.dest:
                sides.append((self.dest, Change.MOVED_TO))
            return sides
        return [(self.path, Change(self.kind.value))]


def from_watchdog(event: Any) -> WatchEvent | None:
    """Map a watchdog ``FileSystemEvent`` to a :class:`WatchEvent`, or None to drop it.

    ``created``, ``modified``, ``deleted`` and ``moved`` (with its ``dest_path``) map to the
    :class:`EventKind` of the same name, for files and directories alike (``is_directory``
    tells). ``opened``, ``closed`` and ``closed_no_write`` (watchdog 5+ on inotify) carry no
    change a ``modified`` event has not already reported, and are dropped. Byte paths (a
    watch scheduled with a bytes path) are decoded with :func:`os.fsdecode`.
    """
    from watchdog import events

    kinds = {
        events.EVENT_TYPE_CREATED: EventKind.CREATED,
        events.EVENT_TYPE_MODIFIED: EventKind.MODIFIED,
        events.EVENT_TYPE_DELETED: EventKind.DELETED,
        events.EVENT_TYPE_MOVED: EventKind.MOVED,
    }
    kind = kinds.get(event.event_type)
    if kind is None:
        return None
    dest = getattr(event, "dest_path", "") if kind is EventKind.MOVED else ""
    return WatchEvent(
        kind=kind,
        path=os.fsdecode(event.src_path),
        dest=os.fsdecode(dest) if dest else None,
        is_directory=bool(event.is_directory),
    )


BUILTIN_IGNORES: tuple[str, ...] = (
    # vim: swap files (.name.swp, then .swo, .swn, ... and .swx while probing), backups
    "*.swp",
    "*.swo",
    "*.swn",
    "*.swx",
    "*~",
    # emacs: lock files and auto-save files (backups end in ~, above)
    ".#*",
    "#*#",
    # kate, gedit/GLib safe writes, JetBrains safe writes
    ".*.kate-swp",
    ".goutputstream-*",
    "*___jb_tmp___",
    "*___jb_old___",
    # LibreOffice and Microsoft Office lock files
    ".~lock.*#",
    "~$*",
    # temporary files and unfinished downloads
    "*.tmp",
    "*.temp",
    "*.part",
    "*.crdownload",
    # operating-system metadata and version-control internals
    ".DS_Store",
    "Thumbs.db",
    ".git",
    ".hg",
    ".svn",
)
"""Editor temp, backup and swap files and other noise that never triggers a run.

vim also creates and deletes a file named ``4913`` (or ``5036``, ``5159``, ... if that
exists) to test whether it may write in a folder: such names are ignored too (see
:func:`_vim_probe`). Each pattern is matched against every path segment, so ``.git`` ignores
everything under ``.git/``. Temp files with unpredictable names (rsync's ``.name.XXXXXX``,
``sed -i``'s ``sedXXXXXX``) are handled by :class:`Debouncer` instead: a file created and
removed within one burst is not a change.
"""


def _vim_probe(name: str) -> bool:
    """Whether ``name`` is vim's write test file: 4913, or 4913 + 123k if taken (bufwrite.c)."""
    return name.isascii() and name.isdigit() and int(name) >= 4913 and (int(name) - 4913) % 123 == 0


def _segment_regex(segment: str) -> str:
    """Regex for one glob segment: ``*`` and ``?`` stay inside the segment, ``[...]`` sets."""
    out: list[str] = []
    index = 0
    while index < len(segment):
        char = segment[index]
        if char == "*":
            while index + 1 < len(segment) and segment[index + 1] == "*":
                index += 1
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            close = bracket_end(segment, index)
            if close < 0:
                out.append(re.escape(char))
            else:
                body = segment[index + 1 : close].replace("\\", "\\\\")
                if body.startswith("!"):
                    # a negated set never matches the separator: it stays inside the segment
                    body = "^/" + body[1:]
                elif body.startswith("^"):
                    body = "\\" + body  # fnmatch: a leading ^ is a member, not a negation
                out.append("[" + body + "]")
                index = close
        else:
            out.append(re.escape(char))
        index += 1
    return "".join(out)


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A compiled matcher for one watch glob (see :class:`WatchFilter` for the rules)."""
    pattern = pattern.strip("/")
    if "/" not in pattern:
        return re.compile(_segment_regex(pattern))
    parts: list[str] = []
    segments = pattern.split("/")
    for number, segment in enumerate(segments):
        last = number == len(segments) - 1
        if segment == "**":
            # zero or more whole segments (and, at the end, anything below)
            parts.append(".*" if last else "(?:[^/]+/)*")
        else:
            parts.append(_segment_regex(segment) + ("" if last else "/"))
    return re.compile("".join(parts))


ALL_EVENTS: frozenset[EventKind] = frozenset(EventKind)
DEFAULT_EVENTS: frozenset[EventKind] = frozenset(
    (EventKind.CREATED, EventKind.MODIFIED, EventKind.MOVED)
)
"""The spec's default ``watch.events``."""


class WatchFilter:
    """Which files of a watched folder count, as the spec's ``watch`` block says.

    Globs match the path relative to the watched root, with ``/`` separators:

    - a pattern without ``/`` (``*.md``) matches the file name at any depth;
    - a pattern with ``/`` (``notes/*.md``, ``docs/**/*.md``) matches the whole relative
      path; ``*`` and ``?`` never cross ``/``, and a ``**`` segment matches zero or more
      folders (``**/x`` anywhere, ``a/**`` everything under ``a``);
    - ``[abc]`` and ``[!abc]`` are character sets, as in :mod:`fnmatch`.

    A path is ignored when it or any folder above it matches an ``ignore`` pattern or a
    :data:`BUILTIN_IGNORES` pattern (so ``build`` or ``build/**`` ignore everything in
    ``build/``). Directory events never count: the file events inside report the change.

    The filter works per raw event, on paths only. ``events`` (the kinds that count) is
    applied per burst, to each path's net change, by the :class:`Debouncer` that
    :meth:`debouncer` makes: a single save is many raw events of several kinds.
    """

    def __init__(
        self,
        patterns: Sequence[str] = ("*",),
        ignore: Sequence[str] = (),
        events: Iterable[EventKind | str] = DEFAULT_EVENTS,
        *,
        builtin_ignores: bool = True,
    ) -> None:
        self.patterns = tuple(patterns)
        self.ignore = tuple(ignore) + (BUILTIN_IGNORES if builtin_ignores else ())
        self.events = frozenset(EventKind(kind) for kind in events)
        self._builtin = builtin_ignores
        self._include = [_glob_regex(p) for p in self.patterns]
        self._exclude = [_glob_regex(p) for p in self.ignore]

    def ignored(self, relative: str) -> bool:
        """Whether ``relative`` (or a folder above it) matches an ignore pattern."""
        segments = [s for s in relative.split("/") if s not in ("", ".")]
        if self._builtin and segments and _vim_probe(segments[-1]):
            return True
        for end in range(len(segments), 0, -1):
            prefix = "/".join(segments[:end])
            name = segments[end - 1]
            for pattern, regex in zip(self.ignore, self._exclude, strict=True):
                target = prefix if "/" in pattern.strip("/") else name
                if regex.fullmatch(target):
                    return True
        return False

    def matches(self, relative: str) -> bool:
        """Whether a file at ``relative`` (to the watched root) counts: included, not ignored."""
        path = "/".join(s for s in relative.split("/") if s not in ("", "."))
        if not path or path == ".." or path.startswith("../"):
            return False
        name = path.rsplit("/", 1)[-1]
        included = any(
            regex.fullmatch(path if "/" in pattern.strip("/") else name)
            for pattern, regex in zip(self.patterns, self._include, strict=True)
        )
        return included and not self.ignored(path)

    def accept(self, event: WatchEvent, root: str) -> list[tuple[str, Change]]:
        """The changes of ``event`` at paths that count, relative to ``root``.

        Feed each to :meth:`Debouncer.add`. Paths outside ``root`` never count. With several
        watched roots, prefix the paths with their root so equal relative paths stay apart.
        """
        if event.is_directory:
            return []
        counted: list[tuple[str, Change]] = []
        for path, change in event.changes():
            relative = _relative(path, root)
            if relative is not None and self.matches(relative):
                counted.append((relative, change))
        return counted

    def debouncer(self, debounce_s: float, max_wait_s: float) -> Debouncer:
        """A :class:`Debouncer` that fires for this filter's ``events``."""
        return Debouncer(debounce_s, max_wait_s, events=self.events)


def _relative(path: str, root: str) -> str | None:
    """``path`` relative to ``root`` with ``/`` separators, or None when it is outside."""
    relative = os.path.relpath(os.path.normpath(path), os.path.normpath(root))
    relative = relative.replace(os.sep, "/")
    if relative == ".." or relative.startswith("../") or posixpath.isabs(relative):
        return None
    return relative


_APPEARS = (Change.CREATED, Change.MOVED_TO)
_VANISHES = (Change.DELETED, Change.MOVED_FROM)


@dataclass
class PathHistory:
    """What a burst did to one path: its first and last change, and whether a move touched it."""

    first: Change
    last: Change
    moved: bool = False

    def net(self) -> frozenset[EventKind]:
        """The path's net change over the burst, as the kinds the spec's ``events`` name.

        - existed before and after (modified, or deleted and re-created): ``modified``;
        - appeared: ``created`` (and also ``modified`` when a file was renamed onto the path,
          since it may have replaced one: an editor's atomic save);
        - disappeared: ``deleted``;
        - appeared and disappeared again (a temp file): nothing at all;
        - plus ``moved`` when a move touched the path, unless it is nothing at all.
        """
        before = self.first not in _APPEARS
        after = self.last not in _VANISHES
        if not before and not after:
            return frozenset()
        if before and after:
            kinds = {EventKind.MODIFIED}
        elif after:
            kinds = {EventKind.CREATED}
            if self.first is Change.MOVED_TO:
                kinds.add(EventKind.MODIFIED)
        else:
            kinds = {EventKind.DELETED}
        if self.moved:
            kinds.add(EventKind.MOVED)
        return frozenset(kinds)


@dataclass
class Burst:
    """One burst of changes (see :class:`Debouncer`); times on the debouncer's clock."""

    first_at: float
    last_at: float
    history: dict[str, PathHistory] = field(default_factory=dict)

    def deadline(self, debounce_s: float, max_wait_s: float) -> float:
        """When this burst fires: after ``debounce_s`` of quiet, by ``first + max_wait_s``."""
        return min(self.last_at + debounce_s, self.first_at + max_wait_s)

    def paths(self, events: frozenset[EventKind] = ALL_EVENTS) -> list[str]:
        """The paths whose net change is one of ``events``, sorted."""
        return sorted(path for path, seen in self.history.items() if seen.net() & events)


class Debouncer:
    """Turns a stream of file changes into one fire per burst, on an injected clock.

    A burst starts with a change while none is pending. It is due at its deadline:
    ``debounce_s`` seconds after its latest change, and never later than ``max_wait_s``
    after its first (the spec's ``debounce`` and ``max_wait``). Times are seconds on any
    monotonic clock (the daemon passes ``time.monotonic()``, tests pass fake values).

    Usage: :meth:`add` every change :meth:`WatchFilter.accept` returns; sleep until
    :meth:`next_deadline`; then call :meth:`due` until it returns None. A change that
    arrives at or after the pending burst's deadline starts a new burst even when
    :meth:`due` was not called in time, so bursts are decided by event times alone, not by
    how promptly the caller polls.

    What fires is each path's net change over the burst (:meth:`PathHistory.net`) that is
    one of ``events`` (default: all kinds). A file created and removed within the burst (a
    temp file of an atomic save, whatever its name) is no change; a burst in which no path
    has a counting change fires nothing (:meth:`due` never returns an empty list).

    Raises:
        ValueError: negative times, or ``debounce_s > max_wait_s``.
    """

    def __init__(
        self,
        debounce_s: float,
        max_wait_s: float,
        *,
        events: Iterable[EventKind | str] = ALL_EVENTS,
    ) -> None:
        if debounce_s < 0 or max_wait_s < 0:
            raise ValueError("debounce and max_wait cannot be negative")
        if debounce_s > max_wait_s:
            raise ValueError(
                f"debounce ({debounce_s:g}s) is longer than max_wait ({max_wait_s:g}s)"
            )
        self.debounce_s = debounce_s
        self.max_wait_s = max_wait_s
        self.events = frozenset(EventKind(kind) for kind in events)
        self._ready: deque[Burst] = deque()
        self._current: Burst | None = None
        self.last_burst: Burst | None = None
        """The burst the latest :meth:`due` returned, with each path's history."""

    def add(self, path: str, event_kind: Change | EventKind | str, now: float) -> None:
        """Record a change of ``path`` at ``now``; never fires by itself.

        ``event_kind`` is a :class:`Change`; an :class:`EventKind` (or its name) is taken as
        the change of the same name, and ``moved`` as ``moved_to`` (the path now holds the
        moved file).
        """
        change = Change.MOVED_TO if event_kind == EventKind.MOVED else Change(event_kind)
        current = self._current
        if current is not None:
            now = max(now, current.last_at)  # a monotonic clock never goes back; be safe
            if now >= current.deadline(self.debounce_s, self.max_wait_s):
                self._ready.append(current)
                current = None
        if current is None:
            current = self._current = Burst(first_at=now, last_at=now)
        current.last_at = now
        seen = current.history.get(path)
        if seen is None:
            seen = current.history[path] = PathHistory(first=change, last=change)
        seen.last = change
        seen.moved = seen.moved or change in (Change.MOVED_FROM, Change.MOVED_TO)

    def due(self, now: float) -> list[str] | None:
        """The changed paths of a finished burst (each burst once, sorted), else None."""
        while True:
            if self._ready:
                burst = self._ready.popleft()
            elif self._current is not None and now >= self._current.deadline(
                self.debounce_s, self.max_wait_s
            ):
                burst, self._current = self._current, None
            else:
                return None
            paths = burst.paths(self.events)
            if paths:
                self.last_burst = burst
                return paths

    def next_deadline(self) -> float | None:
        """When the next burst is due (possibly in the past), or None when nothing is pending."""
        if self._ready:
            return self._ready[0].deadline(self.debounce_s, self.max_wait_s)
        if self._current is not None:
            return self._current.deadline(self.debounce_s, self.max_wait_s)
        return None

    @property
    def pending(self) -> bool:
        """Whether any burst has not been returned by :meth:`due` (or dropped) yet."""
        return bool(self._ready) or self._current is not None


Fingerprint = tuple[int, int, int]
"""A file's identity and state: ``(st_ino, st_size, st_mtime_ns)``."""


def fingerprint(path: str) -> Fingerprint | None:
    """The :data:`Fingerprint` of ``path`` now (following symlinks), or None when it is gone."""
    try:
        stat = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


class SelfWriteFilter:
    """Paths written by the agent's own runs, so their change events never trigger it.

    Keyed by path *and* the file's fingerprint (inode, size, mtime in ns) after the run's
    write, not by a time window: the events of the run's own write are suppressed however
    late they arrive, and a later edit by someone else (another size, mtime or inode: an
    atomic save makes a new inode) is not. A deletion by the run is recorded with the
    fingerprint None ("gone").

    Check at fire time, not at event time: call :meth:`drop_own` on the paths of a burst
    :meth:`Debouncer.due` returns. By then the debounce has passed, so the worker's report
    of its write has arrived even when the watch event came first, and the fingerprint
    compared is the file's final state. A mark is forgotten when the file no longer matches
    it (someone changed it since), after ``ttl_s`` seconds, or when more than ``capacity``
    marks are held (oldest first).

    Paths are compared after :func:`os.path.normpath`; use absolute paths. The run's worker
    should mark every file it writes (the file tools know them; for shell commands the
    worker can compare fingerprints of the watched trees before and after the command).
    Limit: a foreign write that keeps the inode, size and mtime (to the nanosecond) of the
    run's write is indistinguishable from it.
    """

    def __init__(self, ttl_s: float = 600.0, capacity: int = 100_000) -> None:
        self.ttl_s = ttl_s
        self.capacity = capacity
        self._marks: OrderedDict[str, tuple[Fingerprint | None, float]] = OrderedDict()

    def mark(self, path: str, fingerprint: Fingerprint | None, now: float) -> None:
        """Record that a run left ``path`` with ``fingerprint`` at ``now`` (None: deleted it)."""
        key = os.path.normpath(path)
        self._marks.pop(key, None)
        self._marks[key] = (fingerprint, now)
        while len(self._marks) > self.capacity:
            self._marks.popitem(last=False)

    def is_own(self, path: str, current: Fingerprint | None, now: float) -> bool:
        """Whether ``path``, whose fingerprint is ``current`` now, is as a run left it."""
        key = os.path.normpath(path)
        self.expire(now)
        entry = self._marks.get(key)
        if entry is None:
            return False
        if entry[0] != current:
            del self._marks[key]  # changed since the run wrote it: the mark is obsolete
            return False
        return True

    def drop_own(
        self,
        paths: Iterable[str],
        now: float,
        stat: Callable[[str], Fingerprint | None] = fingerprint,
    ) -> list[str]:
        """``paths`` without those a run left as they are; ``stat`` reads a fingerprint."""
        return [path for path in paths if not self.is_own(path, stat(path), now)]

    def expire(self, now: float) -> None:
        """Forget marks older than ``ttl_s``."""
        while self._marks:
            key, (_, marked_at) = next(iter(self._marks.items()))
            if now - marked_at <= self.ttl_s:
                break
            del self._marks[key]

    def __len__(self) -> int:
        return len(self._marks)
