"""Cron triggers: the daylight-saving rule, checked against cronsim (Debian cron) as an oracle.

The rule (runner/triggers/): a cron expression names wall times; a wall time that occurs
twice fires once, at its first occurrence; a wall time skipped by a gap fires once, at the
first instant after the gap; every instant fires at most once. It holds for every
expression, hourly-style ones included.

cronsim follows Debian cron, which agrees for "fixed-time" expressions (minute and hour
fields not starting with '*'). For expressions whose minute or hour starts with '*', Debian
schedules by real instants instead, and so differs from the rule issue 6 mandates in exactly
two ways, which the oracle test checks one by one:

- "second pass": in a repeated span, cronsim fires the matching wall times again
  (fold=1, e.g. `0 * * * *` at 02:00+01:00 in Berlin on 2024-10-27); we do not;
- "gap end": a matching wall time inside a gap does not fire in cronsim; we fire it at the
  first instant after the gap (e.g. `0 * * * *` in Australia/Lord_Howe, where 02:00-02:30
  is skipped in October: we fire 02:30+11:00, cronsim fires nothing until 03:00+11:00).

So the oracle test makes two comparisons per transition and expression: our fire instants
equal the mandated rule applied to the wall times cronsim matches (cronsim without a time
zone is a pure cron-field matcher), and our fire instants equal cronsim's own, up to the
two documented kinds of difference, and for fixed-time expressions with no difference at
all.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.triggers import ALIASES, CronSchedule, cron_problem, timezone_problem
from tests.conftest import ROOT

# At least 30 IANA zones that change their UTC offset between 2020 and 2035: the six,
# zones whose changes happen at midnight (Havana, Cairo, Beirut, Asuncion, Tehran, Amman,
# Damascus, Azores, Nuuk), at odd offsets (St Johns -3:30, Adelaide +9:30, Chatham +12:45,
# Lord Howe's 30-minute shift), with a 2-hour shift (Troll), negative DST (Dublin,
# Casablanca), Ramadan changes (Casablanca, Gaza), and zones that stopped DST in the period
# (Mexico City, Fiji, Apia, Amman, Damascus, Tehran).
ZONES = (
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Africa/Casablanca",
    "Pacific/Apia",
    "Europe/London",
    "Europe/Dublin",
    "Europe/Lisbon",
    "Europe/Helsinki",
    "Europe/Chisinau",
    "Atlantic/Azores",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "America/Anchorage",
    "America/Halifax",
    "America/St_Johns",
    "America/Havana",
    "America/Asuncion",
    "America/Mexico_City",
    "America/Nuuk",
    "America/Miquelon",
    "Pacific/Easter",
    "Africa/Cairo",
    "Asia/Beirut",
    "Asia/Jerusalem",
    "Asia/Gaza",
    "Asia/Tehran",
    "Asia/Amman",
    "Asia/Damascus",
    "Australia/Sydney",
    "Australia/Adelaide",
    "Pacific/Auckland",
    "Pacific/Chatham",
    "Pacific/Norfolk",
    "Pacific/Fiji",
    "Antarctica/Troll",
)

FIXED_TIME = ("30 2 * * *", "0 0 * * *", "30 1 * * 0", "45 23 * * *", "30 0 * * *")
WILDCARD = ("0 * * * *", "*/15 * * * *")

START, END = datetime(2020, 1, 1, tzinfo=UTC), datetime(2036, 1, 1, tzinfo=UTC)
Changes = tuple[tuple[datetime, timedelta, timedelta], ...]
"""(instant, UTC offset before, UTC offset after) of each offset change of a zone."""


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def local(moment: datetime, zone: str) -> str:
    return moment.astimezone(ZoneInfo(zone)).isoformat()


# -- an independent model of the rule ----------------------------------------------------------


@cache
def transitions(zone: str, start: datetime = START, end: datetime = END) -> Changes:
    """(instant, offset before, offset after) of every offset change, found by scanning."""
    tz = ZoneInfo(zone)
    found: list[tuple[datetime, timedelta, timedelta]] = []
    step = timedelta(hours=6)
    moment, offset = start, start.astimezone(tz).utcoffset() or timedelta(0)
    while moment < end:
        later = moment + step
        later_offset = later.astimezone(tz).utcoffset() or timedelta(0)
        if later_offset != offset:
            low, high = moment, later  # bisect to the second
            while high - low > timedelta(seconds=1):
                mid = low + (high - low) / 2
                if mid.astimezone(tz).utcoffset() == offset:
                    low = mid
                else:
                    high = mid
            found.append((high.replace(microsecond=0), offset, later_offset))
        moment, offset = later, later_offset
    return tuple(found)


def naive_wall_times(expression: str, first: datetime, last: datetime) -> list[datetime]:
    """Wall times in [first, last] matching the expression: cronsim with no zone."""
    walls: list[datetime] = []
    for wall in CronSim(expression, first - timedelta(seconds=1)):
        if wall > last:
            return walls
        walls.append(wall)
    return walls


def mandated(wall: datetime, zone: str, changes: Changes) -> datetime:
    """The instant the rule gives a wall time: its earliest occurrence, else its gap's end."""
    tz = ZoneInfo(zone)
    occurrences = [
        candidate.astimezone(UTC)
        for candidate in (wall.replace(tzinfo=tz, fold=0), wall.replace(tzinfo=tz, fold=1))
        if candidate.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall
    ]
    if occurrences:
        return min(occurrences)
    for instant, before, after in changes:
        gap_start = instant.replace(tzinfo=None) + before
        gap_end = instant.replace(tzinfo=None) + after
        if gap_start <= wall < gap_end:
            return instant.astimezone(UTC)
    raise AssertionError(f"{wall} does not exist in {zone} but lies in no known gap")


def expected_by_rule(
    expression: str, zone: str, start: datetime, end: datetime, changes: Changes
) -> list[datetime]:
    tz = ZoneInfo(zone)
    pad = timedelta(hours=1) + max((abs(a - b) for _, b, a in changes), default=timedelta(0))
    walls = naive_wall_times(
        expression,
        start.astimezone(tz).replace(tzinfo=None) - pad,
        end.astimezone(tz).replace(tzinfo=None) + pad,
    )
    instants = {mandated(wall, zone, changes) for wall in walls}
    return sorted(t for t in instants if start < t <= end)


def cronsim_fires(expression: str, zone: str, start: datetime, end: datetime) -> list[datetime]:
    fires: list[datetime] = []
    for moment in CronSim(expression, start.astimezone(ZoneInfo(zone))):
        instant = moment.astimezone(UTC)
        if instant > end:
            return fires
        if instant > start:
            fires.append(instant)
    return fires


def is_second_pass(instant: datetime, zone: str) -> bool:
    """The wall time at ``instant`` was already lived once, earlier."""
    tz = ZoneInfo(zone)
    wall = instant.astimezone(tz).replace(tzinfo=None)
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC) < instant


def is_gap_end_for(instant: datetime, expression: str, changes: Changes) -> bool:
    """``instant`` ends a gap in which some wall time matches ``expression``."""
    for change, before, after in changes:
        if change == instant and after > before:
            gap_start = change.replace(tzinfo=None) + before
            gap_end = change.replace(tzinfo=None) + after
            return any(w < gap_end for w in naive_wall_times(expression, gap_start, gap_end))
    return False


# -- the oracle test ---------------------------------------------------------------------------


def test_at_least_30_zones_with_transitions_in_2020_2035() -> None:
    with_changes = [zone for zone in ZONES if transitions(zone)]
    assert len(with_changes) >= 30, sorted(set(ZONES) - set(with_changes))
    assert len(set(ZONES)) == len(ZONES)
    # the scan finds what the tz database says: Berlin changes twice a year, Lord Howe by 30 min
    # (only past changes are pinned, so a future tz database update cannot break this)
    berlin = transitions("Europe/Berlin")
    assert [t for t, _, _ in berlin if t.year < 2026][-4:] == [
        utc(2024, 3, 31, 1),
        utc(2024, 10, 27, 1),
        utc(2025, 3, 30, 1),
        utc(2025, 10, 26, 1),
    ]
    assert all(any(t.year < 2026 for t, _, _ in transitions(zone)) for zone in ZONES)
    assert {abs(a - b) for _, b, a in transitions("Australia/Lord_Howe")} == {timedelta(minutes=30)}


def test_every_transition_2020_2035_against_cronsim() -> None:
    differences: dict[str, list[str]] = {"second pass": [], "gap end": []}
    compared = 0
    for zone in ZONES:
        changes = transitions(zone)
        for change, _, _ in changes:
            for expression in FIXED_TIME + WILDCARD:
                width = timedelta(hours=6 if expression in WILDCARD else 26)
                start, end = change - width, change + width
                ours = CronSchedule(expression, zone).slots_between(start, end)
                where = f"{expression!r} in {zone} around {local(change, zone)}"
                assert ours == sorted(set(ours)), f"{where}: an instant fired twice"

                # 1. the mandated rule, applied to cronsim's wall-time matches
                assert ours == expected_by_rule(expression, zone, start, end, changes), where

                # 2. cronsim itself (Debian's rule)
                theirs = cronsim_fires(expression, zone, start, end)
                only_theirs = sorted(set(theirs) - set(ours))
                only_ours = sorted(set(ours) - set(theirs))
                if expression in FIXED_TIME:
                    assert theirs == ours, f"{where}: {only_theirs=} {only_ours=}"
                for instant in only_theirs:
                    assert is_second_pass(instant, zone), f"{where}: cronsim also fires {instant}"
                    differences["second pass"].append(f"{where}: {local(instant, zone)}")
                for instant in only_ours:
                    assert is_gap_end_for(instant, expression, changes), f"{where}: {instant}"
                    differences["gap end"].append(f"{where}: {local(instant, zone)}")
                compared += 1
    assert compared > 30 * 20 * 7
    # Both documented differences really occur (the comparison above is not vacuous) ...
    assert any(
        line
        == "'0 * * * *' in Europe/Berlin around 2024-10-27T02:00:00+01:00: 2024-10-27T02:00:00+01:00"
        for line in differences["second pass"]
    ), differences["second pass"][:5]
    assert any(
        "'0 * * * *' in Australia/Lord_Howe" in line and line.endswith("2024-10-06T02:30:00+11:00")
        for line in differences["gap end"]
    ), differences["gap end"][:5]
    # ... and only for the expressions Debian schedules by real instants
    assert all(
        line.startswith(tuple(map(repr, WILDCARD))) for v in differences.values() for line in v
    )


# -- targeted cases ----------------------------------------------------------------------------


def fires(expression: str, zone: str, start: datetime, end: datetime) -> list[str]:
    return [local(t, zone) for t in CronSchedule(expression, zone).slots_between(start, end)]


def test_berlin_autumn_fixed_time_fires_once_at_first_occurrence() -> None:
    # croniter itself fires this twice (02:30+02:00 and 02:30+01:00)
    assert fires("30 2 * * *", "Europe/Berlin", utc(2024, 10, 26), utc(2024, 10, 28)) == [
        "2024-10-26T02:30:00+02:00",
        "2024-10-27T02:30:00+02:00",
    ]


def test_berlin_autumn_repeated_hour_fires_once_for_hourly_expressions() -> None:
    assert fires("0 * * * *", "Europe/Berlin", utc(2024, 10, 26, 22), utc(2024, 10, 27, 3)) == [
        "2024-10-27T01:00:00+02:00",
        "2024-10-27T02:00:00+02:00",
        "2024-10-27T03:00:00+01:00",
        "2024-10-27T04:00:00+01:00",
    ]
    quarter = fires("*/15 * * * *", "Europe/Berlin", utc(2024, 10, 27, 0), utc(2024, 10, 27, 2))
    assert quarter == [
        "2024-10-27T02:15:00+02:00",
        "2024-10-27T02:30:00+02:00",
        "2024-10-27T02:45:00+02:00",
        "2024-10-27T03:00:00+01:00",
    ]


def test_berlin_spring_gap_fires_once_at_the_gap_end() -> None:
    assert fires("30 2 * * *", "Europe/Berlin", utc(2024, 3, 30), utc(2024, 4, 1)) == [
        "2024-03-30T02:30:00+01:00",
        "2024-03-31T03:00:00+02:00",
    ]
    # the skipped 02:00, 02:15, 02:30, 02:45 and the real 03:00 are one instant: one fire
    assert fires(
        "*/15 * * * *", "Europe/Berlin", utc(2024, 3, 31, 0, 30), utc(2024, 3, 31, 1, 30)
    ) == [
        "2024-03-31T01:45:00+01:00",
        "2024-03-31T03:00:00+02:00",
        "2024-03-31T03:15:00+02:00",
        "2024-03-31T03:30:00+02:00",
    ]


def test_new_york_and_lord_howe() -> None:
    assert fires("30 2 * * *", "America/New_York", utc(2024, 3, 9), utc(2024, 3, 11)) == [
        "2024-03-09T02:30:00-05:00",
        "2024-03-10T03:00:00-04:00",
    ]
    assert fires("30 1 * * *", "America/New_York", utc(2024, 11, 2), utc(2024, 11, 4)) == [
        "2024-11-02T01:30:00-04:00",
        "2024-11-03T01:30:00-04:00",
    ]
    # Lord Howe: +10:30 -> +11:00 at 02:00, so 02:00-02:29 is skipped and 02:30 exists
    assert fires("15 2 * * *", "Australia/Lord_Howe", utc(2024, 10, 5), utc(2024, 10, 6, 12)) == [
        "2024-10-06T02:30:00+11:00"
    ]
    assert fires("45 2 * * *", "Australia/Lord_Howe", utc(2024, 10, 5), utc(2024, 10, 6, 12)) == [
        "2024-10-06T02:45:00+11:00"
    ]
    # and back at 02:00 +11:00 -> 01:30 +10:30: 01:30-01:59 is lived twice
    assert fires("45 1 * * *", "Australia/Lord_Howe", utc(2024, 4, 6), utc(2024, 4, 7, 12)) == [
        "2024-04-07T01:45:00+11:00"
    ]


def test_apia_skipped_day_2011_12_30() -> None:
    # Samoa moved across the date line: 2011-12-29 23:59:59-10:00 was followed by
    # 2011-12-31 00:00:00+14:00. Every slot of the 30th fires once, at that instant.
    zone = "Pacific/Apia"
    assert fires("30 2 * * *", zone, utc(2011, 12, 28), utc(2011, 12, 31)) == [
        "2011-12-28T02:30:00-10:00",
        "2011-12-29T02:30:00-10:00",
        "2011-12-31T00:00:00+14:00",
        "2011-12-31T02:30:00+14:00",
    ]
    assert fires("0 12 30 12 *", zone, utc(2011, 12, 1), utc(2013, 1, 1)) == [
        "2011-12-31T00:00:00+14:00",
        "2012-12-30T12:00:00+14:00",
    ]
    quarter = fires("*/15 * * * *", zone, utc(2011, 12, 30, 9, 30), utc(2011, 12, 30, 10, 30))
    assert quarter == [
        "2011-12-29T23:45:00-10:00",
        "2011-12-31T00:00:00+14:00",
        "2011-12-31T00:15:00+14:00",
        "2011-12-31T00:30:00+14:00",
    ]
    # and the oracle agrees for every expression, over that change too
    changes = transitions(zone, utc(2011, 1, 1), utc(2013, 1, 1))
    assert any(abs(a - b) == timedelta(hours=24) for _, b, a in changes)
    skip = next(t for t, b, a in changes if a - b == timedelta(hours=24))
    for expression in FIXED_TIME + WILDCARD:
        start, end = skip - timedelta(hours=30), skip + timedelta(hours=30)
        ours = CronSchedule(expression, zone).slots_between(start, end)
        assert ours == expected_by_rule(expression, zone, start, end, changes), expression
        if expression in FIXED_TIME:
            assert ours == cronsim_fires(expression, zone, start, end), expression


# -- the interface ------------------------------------------------------------------------------


@pytest.mark.parametrize(("alias", "expression"), sorted(ALIASES.items()))
def test_aliases(alias: str, expression: str) -> None:
    assert cron_problem(alias) == ""
    start = utc(2024, 5, 5, 10, 17)
    assert CronSchedule(alias).slots_between(start, start + timedelta(days=400)) == CronSchedule(
        expression
    ).slots_between(start, start + timedelta(days=400))


def test_next_after_is_strict_and_returns_utc() -> None:
    schedule = CronSchedule("0 6 * * 1-5", "Europe/Berlin")
    friday = datetime(2024, 5, 3, 6, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    nxt = schedule.next_after(friday)
    assert nxt.tzinfo is UTC
    assert local(nxt, "Europe/Berlin") == "2024-05-06T06:00:00+02:00"
    assert schedule.next_after(friday - timedelta(microseconds=1)) == friday
    assert schedule.slots_between(friday, friday) == []
    assert schedule.slots_between(friday - timedelta(seconds=1), friday) == [friday]


def test_next_after_chain_matches_slots_between_across_dst() -> None:
    for zone in ("Europe/Berlin", "Australia/Lord_Howe", "Pacific/Chatham"):
        schedule = CronSchedule("*/20 * * * *", zone)
        start, end = utc(2024, 3, 1), utc(2024, 11, 1)
        for change, _, _ in transitions(zone):
            if not start < change < end:
                continue
            window = (change - timedelta(hours=4), change + timedelta(hours=4))
            chain, moment = [], window[0]
            while (moment := schedule.next_after(moment)) <= window[1]:
                chain.append(moment)
            assert chain == schedule.slots_between(*window)
            # the second pass of a repeated span: next_after from inside it
            for instant in chain:
                assert schedule.next_after(instant - timedelta(seconds=1)) == instant


def test_recent_slots_walks_back_over_dst() -> None:
    schedule = CronSchedule("*/15 * * * *", "Europe/Berlin")
    for end in (utc(2024, 10, 27, 1, 20), utc(2024, 3, 31, 1, 20), utc(2024, 10, 27, 0, 59)):
        every = schedule.slots_between(end - timedelta(hours=12), end)
        for limit in (1, 3, 7, 30):
            assert schedule.recent_slots(end, limit) == every[-limit:]
        assert schedule.recent_slots(end, 100, after=every[-5]) == every[-4:]
    assert schedule.recent_slots(utc(2024, 1, 1), 0) == []
    # second pass of the repeated hour: the latest slot is the first pass's 02:45
    assert schedule.recent_slots(utc(2024, 10, 27, 1, 20), 1) == [utc(2024, 10, 27, 0, 45)]


def test_never_firing_and_bad_input() -> None:
    with pytest.raises(ValueError, match="never fires"):
        CronSchedule("0 0 30 2 *").next_after(utc(2024, 1, 1))
    with pytest.raises(ValueError, match="expected 5"):
        CronSchedule("0 0 * * * *")
    with pytest.raises(ValueError, match="unknown cron alias"):
        CronSchedule("@fortnightly")
    with pytest.raises(ValueError, match="unknown time zone"):
        CronSchedule("0 0 * * *", "Europe/Berln")
    with pytest.raises(ValueError, match="aware"):
        CronSchedule("0 0 * * *").next_after(datetime(2024, 1, 1))
    assert timezone_problem("Europe/Berln") == (
        "unknown time zone 'Europe/Berln'",
        "did you mean 'Europe/Berlin'?",
    )
    assert timezone_problem("UTC") is None


def test_importing_triggers_imports_neither_croniter_nor_watchdog() -> None:
    probe = (
        "import sys, runner.triggers\n"
        "print(sorted(m for m in ('croniter', 'watchdog', 'cronsim') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == "[]"


# -- the spec check's shortcut: only some expressions need the "never fires" search -----------

_DAY_FIELDS = st.sampled_from(["*", "1", "15", "28", "29", "30", "31", "1-5", "*/2", "L"])
_WEEKDAY_FIELDS = st.sampled_from(["*", "?", "0", "1-5", "6", "*/3"])
_MONTH_FIELDS = st.sampled_from(["*", "2", "4", "2,4", "1-3", "*/6", "11"])


@settings(max_examples=150, deadline=None)
@given(day=_DAY_FIELDS, month=_MONTH_FIELDS, weekday=_WEEKDAY_FIELDS)
def test_expressions_the_check_skips_always_fire(day: str, month: str, weekday: str) -> None:
    from runner.spec.checks import _cron_fires
    from runner.triggers.cron import may_never_fire

    expression = f"0 6 {day} {month} {weekday}"
    if cron_problem(expression):
        return  # not a valid expression: the check reports that instead
    if not may_never_fire(expression):
        assert _cron_fires(expression, "Europe/Berlin"), expression


def test_the_never_fires_search_runs_where_it_can_matter() -> None:
    from runner.spec.checks import _cron_fires
    from runner.triggers.cron import may_never_fire

    assert may_never_fire("0 0 30 2 *") and not _cron_fires("0 0 30 2 *", "UTC")
    assert may_never_fire("0 0 31 4 ?")
    assert not may_never_fire("0 6 * * 1-5")
    assert may_never_fire("0 0 30 2 1") and not _cron_fires("0 0 30 2 1", "UTC")  # croniter
    assert not may_never_fire("0 6 * 2 1")
    assert not may_never_fire("@daily") and may_never_fire("@monthly")


# -- cron_problem accepts plain expressions without croniter: they must all be valid for it -----

_ITEM = st.one_of(
    st.just("*"),
    st.integers(0, 70).map(str),
    st.tuples(st.integers(0, 70), st.integers(0, 70)).map(lambda r: f"{r[0]}-{r[1]}"),
    st.tuples(st.integers(0, 70), st.integers(0, 70), st.integers(0, 70)).map(
        lambda r: f"{r[0]}-{r[1]}/{r[2]}"
    ),
    st.integers(0, 70).map(lambda n: f"*/{n}"),
    st.integers(0, 70).map(lambda n: f"{n}/5"),
    st.sampled_from(["MON", "jan", "L", "?", "1#2", "15W", "", "-", "1-", "*/", "٣"]),
)
_FIELD = st.lists(_ITEM, min_size=1, max_size=3).map(",".join)


@settings(max_examples=400, deadline=None)
@given(fields=st.lists(_FIELD, min_size=5, max_size=5))
def test_plainly_valid_expressions_are_valid_for_croniter(fields: list[str]) -> None:
    from croniter import croniter

    from runner.triggers.cron import plainly_valid

    if plainly_valid(fields):
        assert croniter.is_valid(" ".join(fields)), fields


def test_plain_expressions_need_no_croniter() -> None:
    from runner.triggers.cron import plainly_valid

    assert plainly_valid(["0", "6", "*", "*", "1-5"]) and plainly_valid(
        ["*/15", "0-23/2", "1,15", "1-12", "0"]
    )
    assert not plainly_valid(["0", "6", "*", "*", "MON"]) and not plainly_valid(
        ["0", "6", "*", "*", "7"]
    )
    assert not plainly_valid(["60", "6", "*", "*", "*"]) and not plainly_valid(
        ["0", "6", "5-1", "*", "*"]
    )
    assert cron_problem("0 6 31 2 1-5") == ""  # plain, and valid (it never fires: another check)
    assert "not valid" in cron_problem("0 6 * * 9")
