"""Cron schedules, catch-up after downtime, and the run id of a scheduled slot.

- :class:`CronSchedule` -- the fire instants of a five-field cron expression (or an alias in
  :data:`ALIASES`) in an IANA time zone, under the daylight-saving rule below. In the style
  of APScheduler v4, a trigger is just "what is the next fire time after this one"
  (:meth:`CronSchedule.next_after`). croniter only does the calendar arithmetic, on a UTC
  clock with no daylight saving; mapping wall times to instants is ours (``_resolve`` and
  ``_transition``, the DST helpers).
- :func:`cron_problem` and :func:`timezone_problem` -- the spec checks' messages.
- :class:`Catchup`, :data:`DEFAULT_GRACE` and :func:`missed_slots` -- which slots missed
  during downtime run when the daemon is back (APScheduler's coalescing and
  ``misfire_grace_time``, Kubernetes CronJob's missed schedules and
  ``startingDeadlineSeconds``).
- :func:`slot_run_id` -- the deterministic, ULID-shaped run id of one slot, so a restarted
  daemon cannot run a slot twice.

Every function takes the current time as an argument; nothing here reads the clock.
Importing this module does not import croniter: it is imported inside the functions that
need it.

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

import functools
import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

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


@functools.lru_cache(maxsize=1024)
def cron_problem(expression: str) -> str:
    """Why ``expression`` is not a usable cron expression, or ``""`` when it is.

    Cached: the spec check and :class:`CronSchedule` both ask, and croniter's parse is the
    dearest part of checking a spec.

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
    if plainly_valid(fields):
        return ""  # croniter accepts these for certain: spare validate its import
    from croniter import croniter

    if not croniter.is_valid(text):
        return f"cron expression {expression!r} is not valid; for example '0 6 * * 1-5'"
    return ""


def may_never_fire(expression: str) -> bool:
    """Whether a valid expression could match no date at all (so a search must tell).

    Only one with a restricted day-of-month can (``0 0 30 2 *``; croniter finds no date for
    ``0 0 30 2 0`` either, although Vixie cron would fire on February's Sundays). With an
    unrestricted day-of-month every month has matching days, so the spec check skips
    croniter's search for those, most specs' expressions.
    """
    fields = ALIASES.get(expression.strip(), expression.strip()).split()
    return len(fields) != 5 or fields[2] != "*"


#: ``(lowest, highest)`` of each field: minute, hour, day of month, month, day of week.
_PLAIN_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
_NUMBER = re.compile(r"[0-9]{1,2}")


def plainly_valid(fields: list[str]) -> bool:
    """Whether five cron fields are all in the plain numeric grammar, within their bounds.

    The grammar: comma-separated items, each ``*``, ``*/STEP``, ``N``, ``N-M`` or ``N-M/STEP``
    with ``N <= M`` inside the field's bounds and ``1 <= STEP <=`` the field's highest value.
    Every such expression is valid for croniter (a property test checks it), so it needs no
    croniter to be accepted; anything else (names, ``L``, ``W``, ``#``, ``?``, day-of-week
    7, wider steps) is left to croniter, which has the final word.
    """
    if len(fields) != 5:
        return False
    for text, (low, high) in zip(fields, _PLAIN_BOUNDS, strict=True):
        for item in text.split(","):
            base, slash, step = item.partition("/")
            if slash and not (_NUMBER.fullmatch(step) and 1 <= int(step) <= high):
                return False
            if base == "*":
                continue
            start, dash, end = base.partition("-")
            if not (_NUMBER.fullmatch(start) and low <= int(start) <= high):
                return False
            if dash:
                if not (_NUMBER.fullmatch(end) and int(start) <= int(end) <= high):
                    return False
            elif slash:
                return False  # "5/15": left to croniter
    return True


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
