"""Catch-up, run identity and concurrency: unit tests and a simulated scheduler on a fake clock.

The simulation uses only the pure functions of runner/triggers/, the ones the daemon calls:
it wakes at each slot (or run end), asks `missed_slots`, derives each slot's run id with
`slot_run_id`, asks `plan_fire` (cancelled runs exit a little later; a replacing run waits
for them, as in runner/scheduler.py), starts waiting runs when `start_queued` says so,
recovers the waiting fires after a crash with `plan_recovery`, and persists a watermark.
Hypothesis draws the schedules, policies, run durations, how long a cancelled run takes to
exit, and crashes (kill -9 before or after the watermark is persisted, then random
downtime). Every slot must end up as exactly one row (started, queued, skipped or missed):
zero duplicate (agent, slot) pairs, zero lost slots, and no policy violated (never two runs
of a forbid, queue or replace agent at once).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import product

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


@dataclass
class Agent:
    name: str
    schedule: CronSchedule
    catchup: Catchup
    max_count: int
    concurrency: Concurrency
    watermark: datetime  # persisted
    next_slot: datetime = field(init=False)
    active: list[tuple[str, datetime]] = field(default_factory=list)  # (run id, ends at)
    queued: list[str] = field(default_factory=list)  # persisted with the row

    def __post_init__(self) -> None:
        self.next_slot = self.schedule.next_after(self.watermark)


class Violation(AssertionError):
    pass


@dataclass
class Daemon:
    agents: list[Agent]
    grace: timedelta
    rows: dict[str, tuple[str, datetime, str]] = field(default_factory=dict)  # the store
    per_pair: dict[tuple[str, datetime], int] = field(default_factory=dict)
    dedupe_hits: int = 0
    durations: list[timedelta] = field(default_factory=list)
    cancel_exit: timedelta = timedelta(0)  # how long a cancelled run takes to exit

    def record(self, agent: Agent, slot: datetime, what: str) -> bool:
        run_id = slot_run_id(agent.name, 0, slot)
        if run_id in self.rows:  # the store's unique key: an already-handled slot
            self.dedupe_hits += 1
            return False
        self.rows[run_id] = (agent.name, slot, what)
        pair = (agent.name, slot)
        self.per_pair[pair] = self.per_pair.get(pair, 0) + 1
        return True

    def check(self, agent: Agent) -> None:
        if agent.concurrency is not Concurrency.ALLOW and len(agent.active) > 1:
            raise Violation(f"{agent.concurrency}: {len(agent.active)} runs active")
        waiting_allowed = agent.concurrency in (Concurrency.QUEUE, Concurrency.REPLACE)
        if len(agent.queued) > (1 if waiting_allowed else 0):
            raise Violation(f"{agent.concurrency}: {len(agent.queued)} runs waiting")

    def start(self, agent: Agent, run_id: str, now: datetime) -> None:
        duration = self.durations.pop(0) if self.durations else timedelta(minutes=5)
        self.durations.append(duration)
        agent.active.append((run_id, now + duration))

    def wake(self, agent: Agent, now: datetime) -> None:
        """Handle the slots due at ``now``: fire, skip, queue or record as missed."""
        to_run = missed_slots(
            agent.schedule, agent.watermark, now, agent.catchup, agent.max_count, grace=self.grace
        )
        every = agent.schedule.slots_between(agent.watermark, now)
        if not set(to_run) <= set(every) or to_run != sorted(set(to_run)):
            raise Violation(f"catch-up returned slots outside ({agent.watermark}, {now}]")
        late = [slot for slot in to_run if now - slot >= self.grace]
        limit = {"none": 0, "latest": 1, "all": agent.max_count}[agent.catchup.value]
        if len(late) > limit:
            raise Violation(f"catchup {agent.catchup}: {len(late)} late slots run")
        for slot in every:
            if slot not in to_run:
                self.record(agent, slot, "missed")
                continue
            run_id = slot_run_id(agent.name, 0, slot)
            if run_id in self.rows:
                self.dedupe_hits += 1
                continue
            plan = plan_fire(agent.concurrency, [rid for rid, _ in agent.active], agent.queued)
            self.record(agent, slot, plan.decision.value)
            if plan.decision is FireDecision.START:
                self.start(agent, run_id, now)
            elif plan.decision is FireDecision.QUEUE:
                agent.queued.append(run_id)
            elif plan.decision is FireDecision.REPLACE:
                # SIGTERM: the cancelled runs exit a little later; the new fire waits for them
                exit_at = now + self.cancel_exit
                agent.active = [
                    (rid, min(end, exit_at)) if rid in plan.cancel else (rid, end)
                    for rid, end in agent.active
                ]
                agent.queued = [q for q in agent.queued if q not in plan.drop] + [run_id]
                self.finish_runs(agent, now)
            self.check(agent)

    def finish_runs(self, agent: Agent, now: datetime) -> None:
        agent.active = [(rid, end) for rid, end in agent.active if end > now]
        while start_queued(len(agent.active), len(agent.queued)):
            self.start(agent, agent.queued.pop(0), now)
        self.check(agent)

    def recover(self, agent: Agent, now: datetime) -> None:
        """After a restart: the recorded waiting fires, under the agent's policy."""
        plan = plan_recovery(agent.concurrency, [rid for rid, _ in agent.active], agent.queued)
        agent.queued = list(plan.queue)
        for run_id in plan.start:
            self.start(agent, run_id, now)
        self.check(agent)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    data=st.data(),
    specs=st.lists(
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
    grace_s=st.integers(1, 120),
    cancel_exit_s=st.integers(0, 90),
)
def test_simulated_daemon_never_duplicates_or_loses_a_slot(
    data: st.DataObject,
    specs: list[tuple[tuple[str, str], Catchup, int, Concurrency]],
    day: datetime,
    durations: list[int],
    grace_s: int,
    cancel_exit_s: int,
) -> None:
    start = day + timedelta(hours=12)
    end = start + timedelta(hours=36)
    agents = [
        Agent(f"agent{i}", CronSchedule(*which), catchup, max_count, concurrency, start)
        for i, (which, catchup, max_count, concurrency) in enumerate(specs)
    ]
    daemon = Daemon(agents, timedelta(seconds=grace_s))
    daemon.durations = [timedelta(minutes=m) for m in durations]
    daemon.cancel_exit = timedelta(seconds=cancel_exit_s)
    now = start
    crashes = 0
    while True:
        # the next thing to happen: a slot or a run ending
        candidates = [a.next_slot for a in agents]
        candidates += [ends for a in agents for _, ends in a.active]
        now = min(candidates)
        if now > end:
            break
        for agent in agents:
            daemon.finish_runs(agent, now)
        for agent in agents:
            if agent.next_slot > now:
                continue
            daemon.wake(agent, now)
            fate = data.draw(st.sampled_from(["ok"] * 12 + ["crash before", "crash after"]))
            if fate != "crash before":
                agent.watermark = now  # persisted after the rows
            if fate != "ok":
                crashes += 1
                down = timedelta(minutes=data.draw(st.integers(0, 26 * 60)))
                now += down
                for each in agents:  # kill -9: runs are interrupted, queued rows survive
                    each.active.clear()
                    each.next_slot = each.schedule.next_after(each.watermark)
                # the daemon comes back at `now`: recover the waiting fires, then catch up
                for each in agents:
                    daemon.recover(each, now)
                    daemon.wake(each, now)
                    each.watermark = now
                    each.next_slot = each.schedule.next_after(now)
                    daemon.finish_runs(each, now)
                break
            agent.next_slot = agent.schedule.next_after(now)

    # zero duplicate (agent, slot) pairs ...
    duplicates = {pair: n for pair, n in daemon.per_pair.items() if n > 1}
    assert not duplicates
    # ... and zero lost slots: every slot up to the last wake is one row
    for agent in agents:
        expected = agent.schedule.slots_between(start, agent.watermark)
        got = sorted(slot for name, slot, _ in daemon.rows.values() if name == agent.name)
        assert got == expected
    # a slot is only handled twice after a crash that came before its watermark was persisted
    if crashes == 0:
        assert daemon.dedupe_hits == 0


def test_simulation_notices_a_nondeterministic_run_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """The invariant above can fail: with a fresh id per fire, a crash duplicates a slot."""
    import itertools

    counter = itertools.count()
    monkeypatch.setattr(
        f"{__name__}.slot_run_id", lambda agent, index, instant: f"{agent}-{next(counter)}"
    )
    agent = Agent("a", HOURLY, Catchup.LATEST, 1, Concurrency.FORBID, utc(2024, 5, 1, 5, 30))
    daemon = Daemon([agent], timedelta(seconds=60))
    daemon.wake(agent, utc(2024, 5, 1, 6))  # fires 06:00 ... then kill -9 before the watermark
    daemon.wake(agent, utc(2024, 5, 1, 6, 0, 30))  # restart: 06:00 is due again
    assert daemon.per_pair[("a", utc(2024, 5, 1, 6))] == 2


def test_simulation_notices_a_policy_violation(monkeypatch: pytest.MonkeyPatch) -> None:
    """The concurrency check can fail: a `plan_fire` that ignored `forbid` is caught."""
    monkeypatch.setattr(
        f"{__name__}.plan_fire", lambda policy, active, queued: FirePlan(FireDecision.START)
    )
    agent = Agent("a", HOURLY, Catchup.ALL, 5, Concurrency.FORBID, utc(2024, 5, 1, 1, 30))
    daemon = Daemon([agent], timedelta(seconds=60))
    daemon.durations = [timedelta(hours=3)]
    with pytest.raises(Violation, match="2 runs active"):
        daemon.wake(agent, utc(2024, 5, 1, 5))  # four missed slots, each a start


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
