"""Triggers: the pure, clock-injected rules the scheduler daemon is built on.

Nothing in this module reads the clock, sleeps, starts a thread or watches a folder: every
function that depends on time takes the current time as an argument, so the daemon and the
tests decide what "now" is (the one I/O is :func:`fingerprint`, which stats a file). The
daemon process itself (its loop, store rows, workers) lives elsewhere and calls these
functions. In the style of APScheduler v4, a trigger is just
"what is the next fire time after this one" (:meth:`CronSchedule.next_after`), and every
policy is an enum whose members say where their meaning comes from.

Sections:

- **Cron** -- :class:`CronSchedule` (croniter behind our own small interface) and the
  daylight-saving rule below; :func:`cron_problem` and :func:`timezone_problem` for the spec
  checks.
- **Catch-up and run identity** -- :class:`Catchup`, :func:`missed_slots`,
  :func:`slot_run_id`.
- **Concurrency** -- :class:`Concurrency`, :class:`FireDecision`, :func:`on_fire`,
  :func:`start_queued`.
- **File watch** -- :class:`EventKind`, :class:`Change`, :class:`WatchEvent`,
  :func:`from_watchdog`, :class:`WatchFilter`, :class:`Debouncer`, :class:`SelfWriteFilter`.
- **Webhooks** -- :func:`verify_signature`, :class:`ReplayGuard`,
  :func:`inputs_from_payload`.

Importing this module imports neither croniter nor watchdog; they are imported inside the
functions that need them.

Daylight saving (the rule issue 6 mandates, applied to every cron expression):

1. Cron fields describe wall-clock times in the trigger's IANA zone. A wall time that exists
   once fires at that instant.
2. A wall time that occurs twice (clocks set back in autumn) fires once, at its first
   occurrence. This holds for *every* expression, hourly-style ones included: in
   Europe/Berlin on 2024-10-27 the hour 02:00-02:59 is lived twice; ``30 2 * * *`` fires at
   02:30+02:00 only, ``0 * * * *`` fires at 02:00+02:00 and then at 03:00+01:00 (two real
   hours apart), and ``*/15 * * * *`` fires 02:00, 02:15, 02:30, 02:45 in the first pass and
   nothing in the second pass.
3. A wall time skipped (clocks set forward in spring) fires once, at the first instant after
   the gap, i.e. the transition instant (03:00+02:00 in Europe/Berlin on 2024-03-31; in
   Pacific/Apia the whole of 2011-12-30 was skipped, so its slots fire at
   2011-12-31T00:00+14:00).
4. Every instant fires at most once: all the wall times that resolve to the same instant
   (every skipped time of a gap, and the wall time that ends the gap) fire once together.
   ``*/15 * * * *`` across the Berlin spring gap fires 01:45+01:00, then once at
   03:00+02:00, then 03:15+02:00.

How this differs from Debian cron (and the ``cronsim`` package that follows it, our
test-only oracle): Debian applies rules 2 and 3 only to "fixed-time" expressions, whose
minute and hour fields both start with something other than ``*``. Expressions whose minute
or hour field starts with ``*`` (``0 * * * *``, ``*/15 * * * *``) it schedules by real
instants: they fire again in the second pass of a repeated hour, and a matching wall time
inside a gap does not fire at all. We do not make that distinction, because issue 6 defines
the rule for every expression: a cron line names wall times, and each wall time fires once.
Users who want a fixed real interval across DST changes should use ``timezone: UTC``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import posixpath
import re
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

# ---------------------------------------------------------------------------------------------
# cron

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_SKIPPED_WALL_TIMES = 100_000
"""Most wall times one search may pass over that resolve to or before the start instant.

Passed-over wall times come from the second pass of a repeated span or from a skipped day
(at most 1,440 per day of shift for an every-minute expression); this bound only stops an
endless loop on a schedule that never fires.
"""


def cron_problem(expression: str) -> str:
    """Why ``expression`` is not a usable cron expression, or ``""`` when it is.

    Accepted: five fields (minute hour day-of-month month day-of-week) or an alias
    (``@hourly``, ``@daily``, ``@weekly``, ``@monthly``, ``@yearly``, ``@annually``,
    ``@midnight``).
    """
    text = ALIASES.get(expression.strip(), expression.strip())
    if text.startswith("@"):
        return f"unknown cron alias {expression!r}; use one of {', '.join(sorted(ALIASES))}"
    fields = text.split()
    if len(fields) != 5:
        return (
            f"cron expression {expression!r} has {len(fields)} fields; expected 5 "
            "(minute hour day-of-month month day-of-week), for example '0 6 * * 1-5'"
        )
    from croniter import croniter

    if not croniter.is_valid(text):
        return f"cron expression {expression!r} is not valid; for example '0 6 * * 1-5'"
    return ""


def timezone_problem(name: str) -> tuple[str, str] | None:
    """``(message, hint)`` when ``name`` is not an IANA time zone, else None."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        import difflib

        close = difflib.get_close_matches(name, sorted(available_timezones()), n=1)
        hint = f"did you mean {close[0]!r}?" if close else "use an IANA name like 'Europe/Berlin'"
        return f"unknown time zone {name!r}", hint
    return None


def _aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime (with a time zone), got {moment!r}")


class CronSchedule:
    """Fire instants of a cron expression in an IANA time zone, under the module's DST rule.

    ``CronSchedule("30 2 * * *", "Europe/Berlin")``. Every method takes and returns aware
    datetimes; results are in UTC. Instants are exact to the second (cron slots fall on whole
    minutes of wall time; a gap's end is a whole second).

    Raises:
        ValueError: the expression is not five fields or an alias (the message is
            :func:`cron_problem`'s), or the zone is not an IANA name.
    """

    def __init__(self, expression: str, timezone: str = "UTC") -> None:
        problem = cron_problem(expression)
        if problem:
            raise ValueError(problem)
        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone {timezone!r}") from error
        self.expression = ALIASES.get(expression.strip(), expression.strip())
        self.timezone = timezone
        self.zone = zone

    def __repr__(self) -> str:
        return f"CronSchedule({self.expression!r}, {self.timezone!r})"

    # -- public ------------------------------------------------------------------------------

    def next_after(self, moment: datetime) -> datetime:
        """The first fire instant strictly after ``moment`` (aware), in UTC.

        Raises:
            ValueError: ``moment`` is naive, or the expression never fires (``0 0 30 2 *``).
        """
        _aware(moment, "moment")
        for instant in self._forward(moment):
            return instant
        raise self._never()  # pragma: no cover - _forward raises before running dry

    def slots_between(self, start: datetime, end: datetime) -> list[datetime]:
        """Every fire instant in ``(start, end]``, oldest first, each once, in UTC.

        The cost is one croniter step per matching wall time in the range: bound the range
        (or use :meth:`recent_slots`) when ``end - start`` may be long.
        """
        _aware(start, "start")
        _aware(end, "end")
        slots: list[datetime] = []
        if end <= start:
            return slots
        for instant in self._forward(start):
            if instant > end:
                break
            slots.append(instant)
        return slots

    def recent_slots(
        self, end: datetime, limit: int, after: datetime | None = None
    ) -> list[datetime]:
        """Up to ``limit`` of the most recent fire instants in ``(after, end]``, oldest first.

        Walks backwards from ``end``, so it costs ``limit`` steps however long ago ``after``
        is (a week of downtime of an every-minute schedule costs no more than an hour's).
        ``after=None`` means no lower bound.
        """
        _aware(end, "end")
        if after is not None:
            _aware(after, "after")
        if limit < 1:
            return []
        local = end.astimezone(self.zone)
        # In the second pass of a repeated span, later wall times (up to the end of the span)
        # resolve to their first pass, which is before `end`: start the walk after them.
        extra = local.replace(fold=0).utcoffset() - local.utcoffset()  # type: ignore[operator]
        upper = local.replace(tzinfo=None, microsecond=0) + max(extra, timedelta(0))
        found: list[datetime] = []
        skipped = 0
        for wall in self._walls(upper + timedelta(seconds=1), reverse=True):
            instant = _resolve(wall, self.zone)
            if instant > end:
                skipped += 1
                if skipped > _MAX_SKIPPED_WALL_TIMES:  # pragma: no cover - defensive
                    raise self._never()
                continue
            if after is not None and instant <= after:
                break
            if not found or instant != found[-1]:
                found.append(instant)
                if len(found) == limit:
                    break
        found.reverse()
        return found

    # -- internals ---------------------------------------------------------------------------

    def _forward(self, moment: datetime) -> Iterator[datetime]:
        """Distinct fire instants strictly after ``moment``, ascending.

        Wall time ``w`` resolves to ``r(w)`` (:func:`_resolve`), and ``r`` never decreases as
        ``w`` grows. Any wall time at or before ``moment``'s own wall time resolves at or
        before ``moment``, so starting croniter at that wall time misses nothing.
        """
        start_wall = moment.astimezone(self.zone).replace(tzinfo=None)
        previous: datetime | None = None
        skipped = 0
        for wall in self._walls(start_wall):
            instant = _resolve(wall, self.zone)
            if instant <= moment or instant == previous:
                skipped += 1
                if skipped > _MAX_SKIPPED_WALL_TIMES:  # pragma: no cover - defensive
                    raise self._never()
                continue
            skipped = 0
            previous = instant
            yield instant

    def _walls(self, start: datetime, *, reverse: bool = False) -> Iterator[datetime]:
        """Matching naive wall times strictly after (or before) the naive ``start``.

        croniter iterates a UTC clock here, which has no daylight saving, so it only does
        calendar arithmetic; mapping wall times to instants is ours (:func:`_resolve`).
        """
        from croniter import CroniterBadDateError, croniter

        iterator: Any = croniter(self.expression, start.replace(tzinfo=UTC))
        step = iterator.get_prev if reverse else iterator.get_next
        while True:
            try:
                wall: datetime = step(datetime)
            except CroniterBadDateError as error:
                raise self._never() from error
            yield wall.replace(tzinfo=None)

    def _never(self) -> ValueError:
        return ValueError(f"cron expression {self.expression!r} never fires")


def _resolve(wall: datetime, zone: ZoneInfo) -> datetime:
    """The instant (UTC) a naive wall time names in ``zone``, under the module's DST rule.

    A repeated wall time resolves to its first occurrence (``fold=0``, PEP 495). A skipped
    wall time resolves to the first instant after the gap, the transition itself.
    """
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # A wall time inside a gap does not survive the round trip. fold=0 reads it with the
    # offset before the change, fold=1 with the one after; the transition lies between.
    other = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return _transition(min(first, other), max(first, other), zone)


def _transition(low: datetime, high: datetime, zone: ZoneInfo) -> datetime:
    """The first whole second in ``(low, high]`` where ``zone``'s offset is not the one at ``low``.

    A bisection over whole seconds; tz database transitions fall on whole seconds.
    """
    lo = (low - _EPOCH) // timedelta(seconds=1)
    hi = -((_EPOCH - high) // timedelta(seconds=1))  # ceiling

    def offset(second: int) -> timedelta | None:
        return (_EPOCH + timedelta(seconds=second)).astimezone(zone).utcoffset()

    before = offset(lo)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if offset(mid) == before:
            lo = mid
        else:
            hi = mid
    return _EPOCH + timedelta(seconds=hi)


# ---------------------------------------------------------------------------------------------
# catch-up and run identity


class Catchup(StrEnum):
    """Which cron slots missed during downtime run when the daemon is back (spec ``catchup``).

    Named after APScheduler's coalescing (v4 ``CoalescePolicy``) and Kubernetes CronJob's
    missed-schedule handling; the default in a spec is ``latest``.
    """

    NONE = "none"
    """Run no missed slot; only a slot still on time (within the grace) fires."""
    LATEST = "latest"
    """One run, for the most recent slot; it stands for all the missed ones (coalescing)."""
    ALL = "all"
    """One run per missed slot, the most recent ``catchup_max`` of them, oldest first."""


DEFAULT_GRACE = timedelta(seconds=60)
"""How late a slot may be handled and still count as on time rather than missed.

APScheduler calls this ``misfire_grace_time``, Kubernetes ``startingDeadlineSeconds``. It
only matters for ``catchup: none``: an on-time slot always fires.
"""


def missed_slots(
    schedule: CronSchedule,
    last_fired: datetime | None,
    now: datetime,
    policy: Catchup | str,
    max_count: int,
    *,
    grace: timedelta = DEFAULT_GRACE,
) -> list[datetime]:
    """The slots in ``(last_fired, now]`` to run now, oldest first, as the policy says.

    The daemon calls this whenever it wakes (at a slot, or after a restart or a suspend)
    and then moves its persisted watermark ``last_fired`` to ``now``. Slots of the interval
    that are not returned were missed: the daemon records them as such.

    Args:
        schedule: the trigger's schedule.
        last_fired: the watermark: every slot at or before it has been handled (fired,
            skipped or recorded as missed). ``None`` (a trigger never seen before) has missed
            nothing: the result is empty, and the daemon should persist ``now`` as the
            trigger's first watermark.
        now: the current instant (aware).
        policy: ``none``: only slots less than ``grace`` old (normally the one slot the
            daemon woke up for); ``latest``: the most recent slot, however old; ``all``: the
            ``max_count`` most recent slots.
        max_count: the spec's ``catchup_max`` (at least 1); used by ``all``.
        grace: how late a slot may be and still be on time (see :data:`DEFAULT_GRACE`).

    Raises:
        ValueError: naive datetimes, an unknown policy, or ``max_count < 1``.
    """
    _aware(now, "now")
    policy = Catchup(policy)
    if max_count < 1:
        raise ValueError(f"max_count must be at least 1, got {max_count}")
    if last_fired is None:
        return []
    _aware(last_fired, "last_fired")
    if now <= last_fired:
        return []
    if policy is Catchup.NONE:
        return schedule.slots_between(max(last_fired, now - grace), now)
    limit = 1 if policy is Catchup.LATEST else max_count
    return schedule.recent_slots(now, limit, after=last_fired)


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def slot_run_id(agent: str, trigger_index: int, instant: datetime) -> str:
    """The run id of a scheduled slot: the same (agent, trigger, instant) always gives the same.

    A ULID-shaped string (26 Crockford base-32 characters, like :func:`runner.store.new_run_id`):
    the 48-bit time part is the slot instant in milliseconds since the epoch, so ids sort by
    slot; the 80-bit "random" part is the first 80 bits of SHA-256 over agent, trigger index
    and instant, so a restarted daemon that reconsiders a slot gets the id the store already
    holds and cannot run the slot twice.

    Raises:
        ValueError: ``instant`` is naive or before 1970.
    """
    _aware(instant, "instant")
    utc = instant.astimezone(UTC)
    millis = (utc - _EPOCH) // timedelta(milliseconds=1)
    if not 0 <= millis < 1 << 48:
        raise ValueError(f"slot instant {instant!r} is outside the ULID time range")
    key = f"agentrun-slot\0{agent}\0{trigger_index}\0{utc.isoformat(timespec='microseconds')}"
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    random_part = int.from_bytes(digest[:10], "big")
    value = (millis << 80) | random_part
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


# ---------------------------------------------------------------------------------------------
# concurrency


class Concurrency(StrEnum):
    """What happens when a trigger fires while a run of the same agent is active.

    Follows Kubernetes CronJob ``concurrencyPolicy`` (``Allow``, ``Forbid``, ``Replace``),
    plus ``queue``. The spec's default is ``forbid``.
    """

    ALLOW = "allow"
    """Start another run beside the active ones (Kubernetes ``Allow``)."""
    FORBID = "forbid"
    """Skip the new fire while a run is active (Kubernetes ``Forbid``)."""
    QUEUE = "queue"
    """Let the new fire wait until the active run ends; at most one waits, later fires
    while one is waiting are skipped (the waiting run stands for them)."""
    REPLACE = "replace"
    """Cancel the active run (SIGTERM, then SIGKILL after a grace) and start the new one
    once it has exited (Kubernetes ``Replace``)."""


class FireDecision(StrEnum):
    """What the daemon does with one fire (:func:`on_fire`); each is recorded with a reason."""

    START = "start"
    """Start a run now."""
    SKIP = "skip"
    """Start nothing; record the fire as skipped."""
    QUEUE = "queue"
    """Keep the fire as the one waiting run; start it when :func:`start_queued` says so."""
    REPLACE = "replace"
    """Cancel the active runs, then start this one when they have exited."""


def _counts(active_runs: int, queued: int) -> None:
    if active_runs < 0 or queued < 0:
        raise ValueError(f"run counts cannot be negative (active {active_runs}, queued {queued})")


def on_fire(policy: Concurrency | str, active_runs: int, queued: int) -> FireDecision:
    """What to do with a fire, given the agent's ``active_runs`` and ``queued`` (0 or 1) runs.

    - ``allow``: start, always.
    - ``forbid``: start when nothing is active, else skip.
    - ``queue``: start when nothing is active and nothing waits; queue when runs are active
      and nothing waits; skip when a run already waits (1).
    - ``replace``: start when nothing is active, else replace.

    (1) With ``queue``, a waiting run is started before any newer fire: if one waits while
    nothing is active (the moment between a run ending and :func:`start_queued`), the new
    fire is skipped.

    Raises:
        ValueError: an unknown policy or negative counts.
    """
    policy = Concurrency(policy)
    _counts(active_runs, queued)
    if policy is Concurrency.ALLOW:
        return FireDecision.START
    if policy is Concurrency.FORBID:
        return FireDecision.SKIP if active_runs else FireDecision.START
    if policy is Concurrency.REPLACE:
        return FireDecision.REPLACE if active_runs else FireDecision.START
    if queued:
        return FireDecision.SKIP
    return FireDecision.QUEUE if active_runs else FireDecision.START


def start_queued(active_runs: int, queued: int) -> bool:
    """Whether the daemon should start its waiting run now (after a run ended or was cancelled).

    True when a run waits (a ``queue`` fire, or a ``replace`` fire whose predecessor is being
    cancelled) and nothing is active any more.
    """
    _counts(active_runs, queued)
    return queued > 0 and active_runs == 0


# ---------------------------------------------------------------------------------------------
# file watch


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
            close = index + 1
            if close < len(segment) and segment[close] == "!":
                close += 1
            if close < len(segment) and segment[close] == "]":
                close += 1
            close = segment.find("]", close)
            if close < 0:
                out.append(re.escape(char))
            else:
                body = segment[index + 1 : close]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
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


# ---------------------------------------------------------------------------------------------
# webhooks


def verify_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is GitHub's ``X-Hub-Signature-256`` for ``body`` under ``secret``.

    The header is ``sha256=`` and the hex HMAC-SHA256 of the raw request body (before any
    JSON parsing or re-encoding), keyed with the webhook secret. GitHub sends lowercase hex;
    uppercase is accepted too. The comparison is constant-time (:func:`hmac.compare_digest`).
    A missing or malformed header, or an empty secret, is never valid.
    """
    if not header or not secret:
        return False
    scheme, _, given = header.strip().partition("=")
    if scheme != "sha256" or not given.isascii():
        return False
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), given.lower().encode())


class ReplayGuard:
    """Rejects a webhook delivery id (GitHub's ``X-GitHub-Delivery``) seen before.

    Memory is bounded: the newest ``capacity`` ids are remembered, older ones forgotten
    first. The daemon persists them: it passes the stored ids (oldest first) as ``seen``
    and an ``on_new`` callback that stores each newly accepted id; if ``on_new`` raises,
    the id is not accepted. Call :meth:`accept` only after :func:`verify_signature`
    succeeded, or forged requests could use up delivery ids. Thread-safe.
    """

    def __init__(
        self,
        capacity: int = 10_000,
        seen: Iterable[str] = (),
        on_new: Callable[[str], None] | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._on_new = on_new
        self._lock = threading.Lock()
        self._ids: OrderedDict[str, None] = OrderedDict()
        for delivery_id in seen:
            self._remember(delivery_id)

    def accept(self, delivery_id: str | None) -> bool:
        """True (and remembered) for a new id; False for a replay or a missing id."""
        if not delivery_id:
            return False
        with self._lock:
            if delivery_id in self._ids:
                return False
            if self._on_new is not None:
                self._on_new(delivery_id)
            self._remember(delivery_id)
            return True

    def _remember(self, delivery_id: str) -> None:
        self._ids[delivery_id] = None
        self._ids.move_to_end(delivery_id)
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)

    def __contains__(self, delivery_id: object) -> bool:
        return delivery_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)


class PayloadPathError(ValueError):
    """A webhook input's path does not exist in the payload; the message says where it stops."""


def inputs_from_payload(mapping: Mapping[str, str], payload: Any) -> dict[str, Any]:
    """The run's inputs taken from a webhook payload, as the spec's ``webhook.inputs`` maps them.

    ``mapping`` is input name -> dotted path into the parsed JSON body: ``issue.title``
    walks objects by key, ``issue.labels.0.name`` indexes lists from 0. Values are returned
    as they are in the payload (strings, numbers, objects, ...); input types are checked
    where every run's inputs are.

    Raises:
        PayloadPathError: a path is empty or malformed, a key is missing, an index is out of
            range or not a number, or the path goes through a scalar. The message names the
            input, the path and the part that failed.
    """
    inputs: dict[str, Any] = {}
    for name, path in mapping.items():
        parts = path.split(".")
        if not path or any(part == "" for part in parts):
            raise PayloadPathError(f"webhook input {name!r}: {path!r} is not a dotted path")
        value = payload
        for depth, part in enumerate(parts):
            where = ".".join(parts[:depth]) or "the payload"
            if isinstance(value, Mapping):
                if part not in value:
                    raise PayloadPathError(
                        f"webhook input {name!r}: payload has no {path!r}: {where} has no "
                        f"key {part!r}" + _keys_hint(part, value)
                    )
                value = value[part]
            elif isinstance(value, list):
                if not (part.isascii() and part.isdigit()):
                    raise PayloadPathError(
                        f"webhook input {name!r}: {where} is a list; {part!r} must be an "
                        "index like 0"
                    )
                if int(part) >= len(value):
                    raise PayloadPathError(
                        f"webhook input {name!r}: payload has no {path!r}: {where} has "
                        f"{len(value)} item(s), so there is no index {part}"
                    )
                value = value[int(part)]
            else:
                raise PayloadPathError(
                    f"webhook input {name!r}: payload has no {path!r}: {where} is "
                    f"{type(value).__name__} {value!r}, not an object or a list"
                )
        inputs[name] = value
    return inputs


def _keys_hint(part: str, value: Mapping[Any, Any]) -> str:
    import difflib

    keys = sorted(str(key) for key in value)
    close = difflib.get_close_matches(part, keys, n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    if keys:
        shown = ", ".join(keys[:10]) + (", ..." if len(keys) > 10 else "")
        return f" (it has: {shown})"
    return " (it is empty)"
