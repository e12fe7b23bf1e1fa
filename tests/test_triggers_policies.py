"""Catch-up, run identity and concurrency: unit tests, and the daemon's planner on a fake clock.

The simulation drives the daemon's real :class:`runner.daemon.planner.Planner` over a real
SQLite run store, with the fake clock and a fake executor as the only stand-ins: it moves
the clock to each due slot or run end, tells the planner which runs ended and asks it for
the due slots; the planner applies the real catch-up and concurrency rules, records every
fire and cursor in the store, and asks the fake executor to dispatch or cancel runs
(cancelled runs exit a little later; a replacing run waits for them). Hypothesis draws the
schedules, policies, run durations, how long a cancelled run takes to exit, and crashes
(kill -9 before or after a cursor is persisted, with or without the workers, then random
downtime), after which a new planner takes over from the store. Every slot must end up as
exactly one row (started, queued, skipped or missed), no run may be dispatched twice, and
no policy may be violated (never two runs of a forbid, queue or replace agent at once).
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import product
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.daemon import planner as planner_module
from runner.daemon.planner import Planner
from runner.daemon.state import Fire
from runner.events import RunStarted, StopReason
from runner.spec import check_spec
from runner.store import FireRow, SQLiteRunStore
from runner.triggers import (
    Catchup,
    Concurrency,
    CronSchedule,
    FireDecision,
    missed_slots,
    on_fire,
    slot_run_id,
    start_queued,
)
from runner.triggers.concurrency import FirePlan, plan_fire, plan_recovery

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# -- run identity ------------------------------------------------------------------------------


def decode_ulid_time(run_id: str) -> int:
    value = 0
    for char in run_id:
        value = value * 32 + CROCKFORD.index(char)
    return value >> 80


def test_slot_run_id_is_deterministic_and_ulid_shaped() -> None:
    slot = utc(2024, 10, 27, 0, 30)
    run_id = slot_run_id("digest", 0, slot)
    assert re.fullmatch(r"[0-7][0-9A-HJKMNP-TV-Z]{25}", run_id)
    assert run_id == slot_run_id("digest", 0, slot)
    # the same instant written in another zone is the same slot
    berlin = slot.astimezone(CronSchedule("0 0 * * *", "Europe/Berlin").zone)
    assert slot_run_id("digest", 0, berlin) == run_id
    assert decode_ulid_time(run_id) == int(slot.timestamp() * 1000)
    others = {
        slot_run_id("digest", 1, slot),
        slot_run_id("digest2", 0, slot),
        slot_run_id("digest", 0, slot + timedelta(minutes=1)),
        slot_run_id("digest", 0, slot + timedelta(microseconds=1)),
    }
    assert run_id not in others and len(others) == 4
    # ids sort by slot, like every run id
    assert slot_run_id("z", 9, slot) < slot_run_id("a", 0, slot + timedelta(seconds=1))
    with pytest.raises(ValueError, match="aware"):
        slot_run_id("digest", 0, datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="ULID time range"):
        slot_run_id("digest", 0, utc(1969, 12, 31))


@given(
    agent=st.text(min_size=1, max_size=20),
    index=st.integers(0, 50),
    millis=st.integers(0, 2**44),
)
def test_slot_run_id_time_part_is_the_slot(agent: str, index: int, millis: int) -> None:
    slot = datetime.fromtimestamp(0, UTC) + timedelta(milliseconds=millis)
    run_id = slot_run_id(agent, index, slot)
    assert len(run_id) == 26 and set(run_id) <= set(CROCKFORD)
    assert decode_ulid_time(run_id) == millis
    assert slot_run_id(agent, index, slot) == run_id


# -- catch-up ----------------------------------------------------------------------------------

HOURLY = CronSchedule("0 * * * *", "Europe/Berlin")


def test_catchup_policies_after_downtime() -> None:
    last, now = utc(2024, 5, 1, 6, 0), utc(2024, 5, 1, 11, 30)  # 07:00 .. 11:00 UTC missed
    assert missed_slots(HOURLY, last, now, Catchup.NONE, 10) == []
    assert missed_slots(HOURLY, last, now, Catchup.LATEST, 10) == [utc(2024, 5, 1, 11)]
    assert missed_slots(HOURLY, last, now, "all", 10) == [utc(2024, 5, 1, h) for h in range(7, 12)]
    assert missed_slots(HOURLY, last, now, "all", 2) == [utc(2024, 5, 1, 10), utc(2024, 5, 1, 11)]
    # a slot less than the grace old is on time: every policy runs it
    on_time = utc(2024, 5, 1, 11, 0, 20)
    for policy in Catchup:
        assert missed_slots(HOURLY, last, on_time, policy, 1) == [utc(2024, 5, 1, 11)]
    assert missed_slots(HOURLY, last, on_time, "none", 1, grace=timedelta(seconds=10)) == []
    # nothing new, no history, and bad arguments
    assert missed_slots(HOURLY, now, now, "all", 5) == []
    assert missed_slots(HOURLY, now, last, "all", 5) == []
    assert missed_slots(HOURLY, None, now, "all", 5) == []
    with pytest.raises(ValueError, match="some"):
        missed_slots(HOURLY, last, now, "some", 5)
    with pytest.raises(ValueError, match="max_count"):
        missed_slots(HOURLY, last, now, "all", 0)
    with pytest.raises(ValueError, match="aware"):
        missed_slots(HOURLY, datetime(2024, 5, 1), now, "all", 5)


def test_catchup_is_cheap_after_a_long_downtime() -> None:
    every_minute = CronSchedule("* * * * *", "Europe/Berlin")
    last, now = utc(2023, 1, 1), utc(2024, 11, 1, 12, 0, 30)  # about 960,000 missed slots
    assert missed_slots(every_minute, last, now, "latest", 10) == [utc(2024, 11, 1, 12)]
    assert len(missed_slots(every_minute, last, now, "all", 24)) == 24


SCHEDULES = [
    ("*/15 * * * *", "UTC"),
    ("0 * * * *", "Europe/Berlin"),
    ("30 2 * * *", "Europe/Berlin"),
    ("*/20 * * * *", "Australia/Lord_Howe"),
    ("0 */3 * * *", "America/New_York"),
    ("30 1 * * 0", "America/Santiago"),
]
# days with a daylight-saving change in one of the zones above
AROUND = [utc(2024, 3, 30), utc(2024, 10, 26), utc(2024, 4, 6), utc(2024, 10, 5), utc(2024, 9, 7)]


@settings(max_examples=150, deadline=None)
@given(
    which=st.sampled_from(SCHEDULES),
    day=st.sampled_from(AROUND),
    start_minutes=st.integers(0, 3 * 24 * 60),
    down_minutes=st.integers(0, 3 * 24 * 60),
    seconds=st.integers(0, 119),
    policy=st.sampled_from(list(Catchup)),
    max_count=st.integers(1, 12),
    grace_s=st.integers(1, 300),
)
def test_missed_slots_match_a_brute_force_model(
    which: tuple[str, str],
    day: datetime,
    start_minutes: int,
    down_minutes: int,
    seconds: int,
    policy: Catchup,
    max_count: int,
    grace_s: int,
) -> None:
    schedule = CronSchedule(*which)
    last = day + timedelta(minutes=start_minutes)
    now = last + timedelta(minutes=down_minutes, seconds=seconds)
    grace = timedelta(seconds=grace_s)
    every = schedule.slots_between(last, now)  # the brute force: walk forward over all
    result = missed_slots(schedule, last, now, policy, max_count, grace=grace)
    if policy is Catchup.NONE:
        assert result == [slot for slot in every if now - slot < grace]
    elif policy is Catchup.LATEST:
        assert result == every[-1:]
    else:
        assert result == every[-max_count:]


# -- concurrency -------------------------------------------------------------------------------

EXPECTED_DECISIONS = {
    # (policy, active > 0, queued > 0) -> decision
    ("allow", False, False): "start",
    ("allow", True, False): "start",
    ("allow", True, True): "start",
    ("allow", False, True): "start",
    ("forbid", False, False): "start",
    ("forbid", True, False): "skip",
    ("forbid", True, True): "skip",
    ("forbid", False, True): "start",
    ("queue", False, False): "start",
    ("queue", True, False): "queue",
    ("queue", True, True): "skip",
    ("queue", False, True): "skip",
    ("replace", False, False): "start",
    ("replace", True, False): "replace",
    ("replace", True, True): "replace",
    # a newer fire drops the one that waits (the newest wins), even with nothing active
    ("replace", False, True): "replace",
}


@pytest.mark.parametrize(
    ("policy", "active", "queued"), list(product(list(Concurrency), (0, 1, 3), (0, 1)))
)
def test_on_fire_table(policy: Concurrency, active: int, queued: int) -> None:
    decision = on_fire(policy, active, queued)
    assert isinstance(decision, FireDecision)
    assert decision == EXPECTED_DECISIONS[(policy.value, active > 0, queued > 0)]
    assert on_fire(policy.value, active, queued) is decision


@pytest.mark.parametrize(
    ("policy", "active", "queued"), list(product(list(Concurrency), (0, 1, 3), (0, 1)))
)
def test_plan_fire_names_what_a_replace_cancels_and_drops(
    policy: Concurrency, active: int, queued: int
) -> None:
    running = {f"r{i}" for i in range(active)}
    waiting = [f"q{i}" for i in range(queued)]
    plan = plan_fire(policy, running, waiting)
    assert plan.decision is on_fire(policy, active, queued)
    if plan.decision is FireDecision.REPLACE:
        # every active run is cancelled and every waiting fire dropped: the new one is alone
        assert set(plan.cancel) == running and plan.drop == tuple(waiting)
    else:
        assert plan.cancel == () and plan.drop == ()


@settings(max_examples=300, deadline=None)
@given(
    policy=st.sampled_from(list(Concurrency)),
    times=st.lists(st.integers(0, 10_000), unique=True, max_size=12),
    data=st.data(),
)
def test_plan_recovery_follows_the_policy(
    policy: Concurrency, times: list[int], data: st.DataObject
) -> None:
    ids = [f"{t:05d}" for t in times]  # run ids sort by the time they stand for
    running = data.draw(st.lists(st.sampled_from(ids), unique=True)) if ids else []
    active = set(running)
    recovered = [i for i in ids if i not in active]
    plan = plan_recovery(policy, active, recovered)
    buckets = [plan.start, plan.queue, plan.skip, plan.drop]
    # every recovered fire has exactly one fate, in run id order; only active runs are cancelled
    assert sorted(x for bucket in buckets for x in bucket) == sorted(recovered)
    assert all(list(bucket) == sorted(bucket) for bucket in buckets)
    assert set(plan.cancel) <= active
    if policy is Concurrency.ALLOW:
        assert plan.start == tuple(sorted(recovered)) and not plan.cancel
    elif policy is Concurrency.FORBID:
        assert plan.start == (tuple(sorted(recovered)[:1]) if not active else ())
        assert not plan.queue and not plan.drop and not plan.cancel
    elif policy is Concurrency.QUEUE:
        assert len(plan.start) <= (0 if active else 1) and len(plan.queue) <= 1
        assert [*plan.start, *plan.queue] == sorted(recovered)[: len(plan.start) + len(plan.queue)]
        assert not plan.drop and not plan.cancel
    else:
        newest = max(ids, default=None)
        survivors = [*plan.start, *plan.queue]
        assert survivors == ([newest] if newest in recovered else [])
        # the newest waits while anything older runs, and every older run is cancelled
        assert plan.start == () or not active
        assert set(plan.cancel) == active - {newest} and not plan.skip
    # never more starting than the policy allows beside what runs
    if policy is not Concurrency.ALLOW:
        assert len(active - set(plan.cancel)) + len(plan.start) <= max(len(active), 1)


def test_plan_recovery_rejects_a_run_both_active_and_recovered() -> None:
    with pytest.raises(ValueError, match="both active and recovered"):
        plan_recovery("allow", {"a"}, ["a", "b"])
    assert plan_recovery("replace", set(), []) == plan_recovery("allow", set(), [])


def test_on_fire_rejects_nonsense_and_start_queued() -> None:
    with pytest.raises(ValueError, match="sometimes"):
        on_fire("sometimes", 0, 0)
    with pytest.raises(ValueError, match="negative"):
        on_fire("allow", -1, 0)
    assert start_queued(0, 1) and not start_queued(1, 1) and not start_queued(0, 0)
    assert [m.value for m in Concurrency] == ["allow", "forbid", "queue", "replace"]
    assert [m.value for m in Catchup] == ["none", "latest", "all"]


# -- the simulated daemon ----------------------------------------------------------------------


class Violation(AssertionError):
    pass


class Crash(Exception):
    """kill -9 of the daemon, at the moment a cron cursor is about to be persisted."""


class CrashingStore(SQLiteRunStore):
    """The real SQLite store; it can die before a cursor is written, and counts refusals."""

    crash_on_cursor = False
    refused = 0

    def set_cron_cursor(self, agent: str, trigger_key: str, cursor: datetime) -> None:
        if self.crash_on_cursor:
            self.crash_on_cursor = False
            raise Crash
        super().set_cron_cursor(agent, trigger_key, cursor)

    def record_fire(self, fire: FireRow) -> bool:
        recorded = super().record_fire(fire)
        self.refused += not recorded
        return recorded


@dataclass
class Workers:
    """The planner's effects, carried out on a fake clock: each run holds a fake worker."""

    store: SQLiteRunStore
    durations: list[timedelta]
    cancel_exit: timedelta
    policies: dict[str, Concurrency]
    now: datetime = field(default=utc(2000, 1, 1))
    running: dict[str, tuple[str, datetime]] = field(default_factory=dict)  # id -> agent, end
    adopted: set[str] = field(default_factory=set)  # outlived a daemon: not signalled
    dispatched: set[str] = field(default_factory=set)

    def dispatch(self, fire: Fire) -> None:
        if fire.run_id in self.dispatched:
            raise Violation(f"run {fire.run_id} of {fire.agent} dispatched twice")
        self.dispatched.add(fire.run_id)
        duration = self.durations.pop(0)
        self.durations.append(duration)
        self.running[fire.run_id] = (fire.agent, self.now + duration)
        self.store.record(
            RunStarted(fire.run_id, fire.agent, "openai/test-double", "", "", {}, "hello")
        )
        policy = self.policies[fire.agent]
        together = [r for r, (name, _) in self.running.items() if name == fire.agent]
        if policy is not Concurrency.ALLOW and len(together) > 1:
            raise Violation(f"{policy}: {len(together)} runs of {fire.agent} at once")

    def cancel(self, run_id: str, reason: str) -> bool:
        if run_id not in self.running or run_id in self.adopted:
            return False  # as the daemon: an adopted worker is left to end by itself
        agent, end = self.running[run_id]
        self.running[run_id] = (agent, min(end, self.now + self.cancel_exit))
        self.store.set_fire_outcome(run_id, "cancelled", reason)
        return False  # SIGTERM: it stays active until its worker exits

    def ended(self, now: datetime) -> list[tuple[str, str]]:
        done = sorted((r, a) for r, (a, end) in self.running.items() if end <= now)
        for run_id, _ in done:
            del self.running[run_id]
            self.adopted.discard(run_id)
            self.store.end_run_left_running(run_id, "finished", StopReason.COMPLETED, "done")
        return done

    def next_end(self) -> datetime | None:
        return min((end for _, end in self.running.values()), default=None)


def cron_spec(
    folder: Path,
    name: str,
    cron: str,
    zone: str,
    catchup: Catchup,
    most: int,
    concurrency: Concurrency,
) -> tuple[Any, Path, bytes]:
    path = folder / f"{name}.yaml"
    path.write_text(
        f"version: 1\nname: {name}\nmodel: openai/test-double\ngoal: hello\n"
        f"concurrency: {concurrency}\ntriggers:\n  - cron: '{cron}'\n    timezone: {zone}\n"
        f"    catchup: {catchup}\n    catchup_max: {most}\n"
    )
    spec, diagnostics = check_spec(path, path.read_bytes())
    assert spec is not None, [d.headline() for d in diagnostics]
    return spec, path, path.read_bytes()


def check_waiting(planner: Planner) -> None:
    for agent in planner.agents.values():
        allowed = 1 if agent.spec.concurrency in ("queue", "replace") else 0
        if len(agent.queued) > allowed:
            raise Violation(f"{agent.spec.concurrency}: {len(agent.queued)} runs waiting")


def start_daemon(store: SQLiteRunStore, workers: Workers, specs: list[Any]) -> Planner:
    """A (re)started daemon: adopt the running workers, recover, install every spec."""
    planner = Planner(store, lambda: workers.now, workers.dispatch, workers.cancel)
    workers.adopted = set(workers.running)
    planner.take_over({run_id: agent for run_id, (agent, _) in workers.running.items()})
    for spec, path, source in specs:
        planner.install(spec, path, 0.0, source)
    check_waiting(planner)
    return planner


def simulate(
    folder: Path,
    draw: Any,
    agents: list[tuple[tuple[str, str], Catchup, int, Concurrency]],
    start: datetime,
    hours: int,
    durations: list[timedelta],
    cancel_exit: timedelta,
) -> tuple[CrashingStore, Workers, list[Any], int]:
    """Run the real planner over ``hours`` of fake time; crashes and downtimes by ``draw``."""
    store = CrashingStore(folder / "runs.db")
    specs = [
        cron_spec(folder, f"agent{i}", cron, zone, catchup, most, concurrency)
        for i, ((cron, zone), catchup, most, concurrency) in enumerate(agents)
    ]
    workers = Workers(
        store,
        list(durations),
        cancel_exit,
        {s.name: Concurrency(s.concurrency) for s, _, _ in specs},
    )
    workers.now = start
    planner = start_daemon(store, workers, specs)
    end, crashes = start + timedelta(hours=hours), 0
    while True:
        due, ends = planner.next_due(), workers.next_end()
        workers.now = min(t for t in (due, ends) if t is not None)
        if workers.now > end:
            return store, workers, specs, crashes
        for run_id, agent in workers.ended(workers.now):
            planner.run_ended(agent, run_id, "completed")
        fate = draw(["ok"] * 12 + ["crash before", "crash after"])
        store.crash_on_cursor = fate == "crash before"
        with contextlib.suppress(Crash):
            planner.due(workers.now)
        store.crash_on_cursor = False
        check_waiting(planner)
        if fate == "ok":
            continue
        crashes += 1
        if draw(["workers die too", "workers live on"]) == "workers die too":
            for run_id in list(workers.running):
                del workers.running[run_id]
                store.end_run_left_running(run_id, "interrupted", StopReason.INTERRUPTED, "kill -9")
        workers.now += timedelta(minutes=draw(list(range(0, 26 * 60, 7))))
        for _ in workers.ended(workers.now):
            pass  # ended while no daemon watched: the next one does not adopt them
        planner = start_daemon(store, workers, specs)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    data=st.data(),
    agents=st.lists(
        st.tuples(
            st.sampled_from(SCHEDULES[:5]),
            st.sampled_from(list(Catchup)),
            st.integers(1, 5),
            st.sampled_from(list(Concurrency)),
        ),
        min_size=1,
        max_size=3,
    ),
    day=st.sampled_from(AROUND),
    durations=st.lists(st.integers(0, 240), min_size=1, max_size=8),
    cancel_exit_s=st.integers(0, 90),
)
def test_the_planner_never_runs_a_slot_twice_or_loses_one(
    data: st.DataObject,
    agents: list[tuple[tuple[str, str], Catchup, int, Concurrency]],
    day: datetime,
    durations: list[int],
    cancel_exit_s: int,
) -> None:
    """The daemon's real planner and SQLite store, on a fake clock, through kill -9s.

    Every slot from the start to the last persisted cursor is exactly one row of the fires
    table, no run is dispatched twice (checked at each dispatch), and no forbid, queue or
    replace agent ever has two runs holding workers at once or more than one waiting.
    """
    start = day + timedelta(hours=12)
    with tempfile.TemporaryDirectory() as folder:
        store, _, specs, crashes = simulate(
            Path(folder),
            lambda choices: data.draw(st.sampled_from(choices)),
            agents,
            start,
            36,
            [timedelta(minutes=m) for m in durations],
            timedelta(seconds=cancel_exit_s),
        )
        for spec, _, _ in specs:
            trigger = spec.triggers[0]
            cursor = store.cron_cursor(spec.name, Planner.cursor_key(trigger))
            assert cursor is not None
            schedule = CronSchedule(trigger.cron, trigger.timezone)
            for slot in schedule.slots_between(start, cursor):
                row = store.fire_of_run(slot_run_id(spec.name, 0, slot))
                assert row is not None and row.slot == slot, f"slot {slot} of {spec.name} lost"
        # a slot is only reconsidered after a crash that came before its cursor was persisted
        if crashes == 0:
            assert store.refused == 0
        store.close()


def test_simulation_notices_a_slot_fired_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above can fail: a store that does not refuse a repeated slot fires it twice."""
    monkeypatch.setattr(CrashingStore, "record_fire", lambda self, fire: True)
    fates = iter(["crash before", "workers die too", 0])

    def draw(choices: list[Any]) -> Any:
        return next(fates, "ok")

    with tempfile.TemporaryDirectory() as folder, pytest.raises(Violation, match="twice"):
        # 06:00 fires, the daemon dies before its cursor is written, and comes back at once:
        # 06:00 is due again, and nothing stops it
        simulate(
            Path(folder),
            draw,
            [(("0 * * * *", "Europe/Berlin"), Catchup.LATEST, 1, Concurrency.ALLOW)],
            utc(2024, 5, 1, 5, 30),
            2,
            [timedelta(minutes=5)],
            timedelta(0),
        )


def test_simulation_notices_a_policy_violation(monkeypatch: pytest.MonkeyPatch) -> None:
    """The concurrency check can fail: a `plan_fire` that ignored `forbid` is caught."""
    monkeypatch.setattr(
        planner_module, "plan_fire", lambda policy, active, queued: FirePlan(FireDecision.START)
    )
    fates = iter(["crash after", "workers live on", 240])

    def draw(choices: list[Any]) -> Any:
        return next(fates, "ok")

    with tempfile.TemporaryDirectory() as folder, pytest.raises(Violation, match="2 runs"):
        # the first slot's run takes three hours; four slots missed in the downtime, each a start
        simulate(
            Path(folder),
            draw,
            [(("0 * * * *", "Europe/Berlin"), Catchup.ALL, 5, Concurrency.FORBID)],
            utc(2024, 5, 1, 1, 30),
            12,
            [timedelta(hours=3)],
            timedelta(0),
        )


def test_the_package_names_resolve_lazily_to_their_submodules() -> None:
    import importlib
    import subprocess
    import sys

    import runner.triggers as package

    assert set(package.__all__) == set(package._SUBMODULE)
    for name in package.__all__:
        module = importlib.import_module(f"runner.triggers.{package._SUBMODULE[name]}")
        assert getattr(package, name) is getattr(module, name), name
    with pytest.raises(AttributeError, match="not_a_name"):
        package.not_a_name  # noqa: B018
    probe = (
        "import sys, runner.triggers as t\n"
        "t.cron_problem\n"
        "print(sorted(m for m in sys.modules if m.startswith('runner.triggers.')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['runner.triggers.cron']"
