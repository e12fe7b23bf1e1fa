"""Triggers: when the daemon starts a run.

For now this module holds the cron pieces the spec checks and ``agentrun explain`` need:
validating an expression and a time zone, and computing next fire times. croniter sits
behind :class:`CronSchedule` (imported only when a schedule is built).

Daylight saving: a wall time that occurs twice (autumn) fires once, at its first
occurrence; a wall time skipped (spring) fires once, at the first instant after the gap.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
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


def cron_problem(expression: str) -> str:
    """Why ``expression`` is not a usable cron expression, or ``""`` when it is.

    Accepted: five fields (minute hour day-of-month month day-of-week) or an alias
    (``@hourly``, ``@daily``, ``@weekly``, ``@monthly``, ``@yearly``).
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


class CronSchedule:
    """Fire times of a cron expression in an IANA time zone.

    ``next_after(t)`` returns the first fire instant strictly after ``t`` (aware, UTC).
    """

    def __init__(self, expression: str, timezone: str = "UTC") -> None:
        self.expression = ALIASES.get(expression.strip(), expression.strip())
        self.zone = ZoneInfo(timezone)

    def next_after(self, moment: datetime) -> datetime:
        """The first fire instant after ``moment`` (an aware datetime), in UTC."""
        from croniter import croniter

        local = moment.astimezone(self.zone)
        # croniter iterates wall times; step in naive wall time and map each back ourselves,
        # so the DST rule is ours and not croniter's.
        naive = local.replace(tzinfo=None)
        iterator: Any = croniter(self.expression, naive)
        for _ in range(10_000):
            wall: datetime = iterator.get_next(datetime)
            instant = _resolve_wall_time(wall, self.zone)
            if instant is None:
                continue
            if instant > moment:
                return instant.astimezone(UTC)
        raise ValueError(f"cron expression {self.expression!r} never fires")


def _resolve_wall_time(wall: datetime, zone: ZoneInfo) -> datetime | None:
    """The instant a naive wall time names in ``zone``, under agentrun's DST rule.

    A repeated wall time resolves to its first occurrence (fold=0). A skipped wall time
    resolves to the first instant after the gap.
    """
    first = wall.replace(tzinfo=zone, fold=0)
    # A wall time inside a gap does not survive a round trip through UTC.
    back = first.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
    if back != wall:
        # fold=0 reads the wall time with the offset before the change, fold=1 with the one
        # after; the transition instant lies between the two readings.
        a = first.astimezone(UTC)
        b = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
        return _transition(min(a, b), max(a, b), zone)
    return first


def _transition(low: datetime, high: datetime, zone: ZoneInfo) -> datetime:
    """The instant in ``(low, high]`` where ``zone``'s UTC offset changes (to the second)."""
    offset_low = low.astimezone(zone).utcoffset()
    while high - low > timedelta(seconds=1):
        mid = low + (high - low) / 2
        if mid.astimezone(zone).utcoffset() == offset_low:
            low = mid
        else:
            high = mid
    return high.replace(microsecond=0)
