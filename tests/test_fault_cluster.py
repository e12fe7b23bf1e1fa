"""The fault test of issue 22: random ``kill -9`` of daemons and workers under a stream of
fires, over two daemons and three ``agentrun worker`` processes sharing one PostgreSQL run
store and one Redis (the Celery broker and the queue trigger's stream).

While the chaos runs, a sender fires the manual agent (an idempotency key per fire, over the
control socket), the webhook agent (a delivery id per fire, over HTTP) and the queue agent
(an entry per fire, XADD), each to a daemon chosen at random (a send that gets no answer
is sent again, with the same key or delivery id, to a live daemon, as a client would); the
cron agent fires every minute. Every ~1 s one live process is killed (SIGKILL of its
process group) and started again at once (a daemon with a fresh home: see
tests/fault_support.py). A daemon is killed only while both daemons serve and no takeover
is under way (otherwise a worker is), so each takeover time measures the lease with a
standby up, not a cluster with no daemon at all.

Then the chaos stops, every process is brought back, and once every fire has settled the
test asserts:

- every fire recorded once: each manual key, delivery id and queue entry sent has exactly
  one fire row; cron slots are unique and none in the covered window is missing or missed;
- every run ends with one stop reason (none left running or interrupted);
- no completed tool call executed twice. The in-flight rule (runner/resume.py, the executor
  section of docs/concepts/triggers.md): a call whose result was recorded is never run
  again; a call whose process died before its result was recorded runs again on resume if
  its tool is low risk (``mark`` is; a low-risk call has no journal row until its result,
  whose ``created_at`` is when the attempt that recorded it began). So for each call the
  store records completed: exactly one side-effect line at or after its ``created_at`` (the
  recorded attempt), any earlier lines each from a worker this test killed (attempts cut
  off before their result was recorded), no two lines from one process. A call not
  completed has only lines of killed workers; every line belongs to a recorded call;
- each takeover ended (a deadline, not a timing assertion); the takeover times (leader
  killed -> another holder's live lease in the store, the lease row's term raised) are
  printed with p50/p99 against the lease TTL.

The counts are printed (``pytest -s``) and written as JSON to $AGENTRUN_FAULT_REPORT when
set. The seed is printed first: AGENTRUN_FAULT_SEED=<seed> makes the same random choices
again (which process each kill takes, which daemon each fire goes to, the kind of each fire;
not the timing, which the machine decides). AGENTRUN_FAULT_KILLS sets the number of kills
(default 100). About two minutes on 2 cores; most of it the 100 kills at ~1 s apart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import statistics
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from runner.daemon.control import control_request
from runner.daemon.leadership import takeover_bound_s
from runner.store.location import open_store
from runner.triggers.queue import fire_key
from tests.conftest import ROOT
from tests.fault_support import (
    WEBHOOK_SECRET,
    Daemon,
    Worker,
    in_flight_violations,
    side_effects,
    write_agents,
)
from tests.test_daemon import free_port

#: The daemons' lease TTL, in seconds.
LEASE_TTL_S = 2.0
#: Kills by default (AGENTRUN_FAULT_KILLS overrides).
KILLS = int(os.environ.get("AGENTRUN_FAULT_KILLS", "100"))
#: Mean seconds between two kills, and between two fires sent.
KILL_EVERY_S = 1.0
FIRE_EVERY_S = 0.6
#: Guards that end a stuck test (not timing assertions), in seconds.
READY_S = 60.0
SETTLE_S = 180.0
TAKEOVER_DEADLINE_S = 60.0
STREAM = "faults"


def sign(body: bytes) -> str:
    digest = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def post_webhook(port: int, delivery: str) -> int:
    """POST one signed delivery to the webhook agent; the HTTP status (0: no answer)."""
    body = json.dumps({"delivery": delivery}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/hooks/webhook-agent",
        data=body,
        headers={
            "Content-Type": "application/json",
            "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": sign(body),
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


class Cluster:
    """Two daemons and three workers; the chaos and the sender run against it."""

    def __init__(self, root: Path, env: dict[str, str], store_url: str) -> None:
        self.root, self.store_url = root, store_url
        self.agents = root / "agents"
        write_agents(self.agents)
        self.lock = threading.Lock()
        self.daemons: list[Daemon] = []
        self.workers: list[Worker] = []
        try:
            for i in range(2):
                port = free_port()
                self.daemons.append(
                    Daemon(f"daemon-{i}", root, env, self.agents, port, LEASE_TTL_S)
                )
            for i in range(3):
                self.workers.append(Worker(f"worker-{i}", root, env))
        except BaseException:
            self.stop()
            raise
        self.killed_groups: set[int] = set()
        self.kills: Counter[str] = Counter()
        self.takeovers: list[float] = []
        self.pending_takeover: tuple[float, int] | None = None  # (killed at, term then)

    @property
    def members(self) -> list[Daemon | Worker]:
        return [*self.daemons, *self.workers]

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_S
        while not all(m.ready() for m in self.members):
            for member in self.members:
                if not member.alive():
                    member.start()
            assert time.monotonic() < deadline, "the cluster to be up: " + " | ".join(
                f"{m.slot}: {m.output()[-2000:]}" for m in self.members if not m.ready()
            )
            time.sleep(0.1)

    def live_daemons(self) -> list[Daemon]:
        with self.lock:
            return [d for d in self.daemons if d.ready()]

    def lease(self, db: psycopg.Connection[Any]) -> tuple[str, int, float] | None:
        """The daemon lease's holder, term and seconds left (database clock), or None."""
        row = db.execute(
            "SELECT holder, term, expires - EXTRACT(EPOCH FROM clock_timestamp())::float8 "
            "FROM leases WHERE name = 'daemon'"
        ).fetchone()
        return None if row is None else (str(row[0]), int(row[1]), float(row[2]))

    def kill_one(self, draw: random.Random, db: psycopg.Connection[Any]) -> None:
        """SIGKILL one ready member chosen at random and start it again."""
        while True:
            candidates = [m for m in self.members if m.ready()]
            if self.pending_takeover is not None or not all(d.ready() for d in self.daemons):
                candidates = [m for m in candidates if m.kind == "worker"]
            if candidates:
                break
            self.restart_dead()
            time.sleep(0.1)
        target = draw.choice(candidates)
        kind = target.kind
        if isinstance(target, Daemon):
            lease = self.lease(db)
            leads = lease is not None and lease[0] == target.holder and lease[2] > 0
            kind = "daemon-leader" if leads else "daemon-standby"
        with self.lock:
            group = target.kill9()
            if kind == "daemon-leader":
                assert lease is not None
                self.pending_takeover = (time.monotonic(), lease[1])
            self.killed_groups.add(group)
            self.kills[kind] += 1
            target.start()

    def restart_dead(self) -> None:
        with self.lock:
            for member in self.members:
                if not member.alive():
                    member.start()

    def watch_takeover(self, db: psycopg.Connection[Any]) -> None:
        """Record a takeover's time once another holder's lease is live (term raised)."""
        if self.pending_takeover is None:
            return
        killed_at, term = self.pending_takeover
        lease = self.lease(db)
        if lease is not None and lease[1] > term and lease[2] > 0:
            self.takeovers.append(time.monotonic() - killed_at)
            self.pending_takeover = None
        else:
            assert time.monotonic() - killed_at < TAKEOVER_DEADLINE_S, (
                f"no daemon took the lease over within {TAKEOVER_DEADLINE_S} s: {lease}"
            )

    def stop(self) -> None:
        for member in self.members:
            member.stop()


class Sender:
    """Fires manual, webhook and queue agents until told to stop; remembers what it sent."""

    def __init__(self, cluster: Cluster, redis_url: str, draw: random.Random) -> None:
        self.cluster, self.draw = cluster, draw
        self.client = redis.Redis.from_url(redis_url)
        self.keys: list[str] = []
        self.deliveries: list[str] = []
        self.entries: list[str] = []
        self.retries = 0
        self.stopping = threading.Event()
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        try:
            n = 0
            while not self.stopping.is_set():
                n += 1
                kind = self.draw.choice(["manual", "webhook", "queue"])
                if kind == "queue":
                    entry = self.client.xadd(STREAM, {"n": str(n)})
                    self.entries.append(entry.decode())
                else:
                    self.send(kind, f"{kind}-{n}")
                time.sleep(self.draw.uniform(0.5, 1.5) * FIRE_EVERY_S)
        except BaseException as error:  # shown by the test
            self.failure = error

    def send(self, kind: str, key: str) -> None:
        """Send until a daemon answers that the fire is recorded (same key each time)."""
        deadline = time.monotonic() + READY_S
        while time.monotonic() < deadline:
            live = self.cluster.live_daemons()
            if live:
                daemon = self.draw.choice(live)
                if kind == "manual":
                    try:
                        request = {"op": "trigger", "agent": "manual-agent", "key": key}
                        answer = control_request(daemon.home, {**request, "inputs": {}})
                        if answer.get("run_id"):
                            self.keys.append(key)
                            return
                    except Exception:  # killed mid-request, or not serving yet
                        pass
                else:
                    code = post_webhook(daemon.port, key)
                    if code in (202, 409):  # recorded (by this daemon, or before)
                        self.deliveries.append(key)
                        return
            self.retries += 1
            time.sleep(0.2)
        raise AssertionError(f"no daemon recorded {kind} fire {key} within {READY_S} s")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))]


def settled(db: psycopg.Connection[Any], sender: Sender) -> str | None:
    """What is still unsettled (None: every fire recorded, every run ended)."""
    keys = {
        row[0]
        for row in db.execute("SELECT idempotency_key FROM fires WHERE idempotency_key IS NOT NULL")
    }
    sent = [*sender.keys, *sender.deliveries, *(fire_key(STREAM, e) for e in sender.entries)]
    missing = [k for k in sent if k not in keys]
    if missing:
        return f"{len(missing)} fires not recorded yet, e.g. {missing[:3]}"
    queued = db.execute("SELECT count(*) FROM fires WHERE outcome = 'queued'").fetchone()
    if queued and queued[0]:
        return f"{queued[0]} fires queued"
    unstarted = db.execute(
        "SELECT count(*) FROM fires f WHERE f.outcome = 'started' "
        "AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = f.run_id)"
    ).fetchone()
    if unstarted and unstarted[0]:
        return f"{unstarted[0]} fires handed to the workers have no run yet"
    open_runs = db.execute(
        "SELECT id, status, stop_reason FROM runs "
        "WHERE status = 'running' OR stop_reason = 'interrupted'"
    ).fetchall()
    if open_runs:
        return f"{len(open_runs)} runs not ended, e.g. {open_runs[:3]}"
    return None


@pytest.mark.slow
def test_a_hundred_kills_lose_nothing_and_repeat_no_completed_call(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    seed = int(os.environ.get("AGENTRUN_FAULT_SEED", str(random.randrange(1 << 32))))
    print(f"\nfault test seed {seed} (AGENTRUN_FAULT_SEED={seed} replays its choices)")
    draw = random.Random(seed)
    marks = tmp_path / "marks.txt"
    env = {
        **os.environ,
        "AGENTRUN_STORE": postgres_url,
        "AGENTRUN_BROKER": redis_url,
        "AGENTRUN_VISIBILITY_TIMEOUT": "3",
        "AGENTRUN_MODEL_FACTORY": "tests.fault_support:model",
        "PYTHONPATH": str(ROOT),
        "KILL_TEST_FILE": str(marks),
    }
    open_store(postgres_url).close()  # migrated once before the processes race for it
    cluster = Cluster(tmp_path, env, postgres_url)
    sender = Sender(cluster, redis_url, random.Random(draw.random()))
    db = psycopg.connect(postgres_url, autocommit=True)
    try:
        cluster.wait_ready()
        started_at = datetime.now(UTC)  # cron slots after this are the covered window's
        sender.thread.start()
        chaos_began = time.monotonic()
        while sum(cluster.kills.values()) < KILLS:
            cluster.kill_one(draw, db)
            pause = time.monotonic() + draw.uniform(0.5, 1.5) * KILL_EVERY_S
            while time.monotonic() < pause:
                cluster.watch_takeover(db)
                time.sleep(0.02)
            assert sender.failure is None, sender.failure
        chaos_s = time.monotonic() - chaos_began
        sender.stopping.set()
        sender.thread.join(timeout=READY_S)
        assert sender.failure is None, sender.failure
        while cluster.pending_takeover is not None:
            cluster.restart_dead()
            cluster.watch_takeover(db)
            time.sleep(0.02)
        cluster.wait_ready()
        covered_until = datetime.now(UTC)
        settling = time.monotonic()
        deadline = settling + SETTLE_S
        while (left := settled(db, sender)) is not None:
            assert time.monotonic() < deadline, f"not settled after {SETTLE_S} s: {left}"
            cluster.restart_dead()
            time.sleep(0.5)
        report = check(db, sender, cluster, marks, started_at, covered_until)
        report.update(
            seed=seed,
            chaos_s=round(chaos_s, 1),
            settle_s=round(time.monotonic() - settling, 1),
            send_retries=sender.retries,
        )
        print(json.dumps(report, indent=2))
        if os.environ.get("AGENTRUN_FAULT_REPORT"):
            Path(os.environ["AGENTRUN_FAULT_REPORT"]).write_text(json.dumps(report, indent=2))
    finally:
        sender.stopping.set()
        cluster.stop()
        db.close()


def check(
    db: psycopg.Connection[Any],
    sender: Sender,
    cluster: Cluster,
    marks: Path,
    started_at: datetime,
    covered_until: datetime,
) -> dict[str, Any]:
    """Assert the four properties of the module docstring; the counts and figures."""
    fires = db.execute(
        "SELECT agent, trigger, slot, run_id, outcome, idempotency_key FROM fires"
    ).fetchall()
    runs = {
        row[0]: (row[1], row[2], row[3])
        for row in db.execute("SELECT id, agent, status, stop_reason FROM runs")
    }
    counts: dict[str, Any] = {
        "kills": dict(cluster.kills),
        "kills_total": sum(cluster.kills.values()),
        "fires_sent": {
            "manual": len(sender.keys),
            "webhook": len(sender.deliveries),
            "queue": len(sender.entries),
        },
        "fires_recorded": dict(Counter(str(f[1]) for f in fires)),
        "fire_outcomes": dict(Counter(str(f[4]) for f in fires)),
        "runs": len(runs),
        "stop_reasons": dict(Counter(str(r[2]) for r in runs.values())),
    }
    said = json.dumps(counts)

    # 1. Every fire recorded once.
    by_key = Counter(str(f[5]) for f in fires if f[5] is not None)
    sent = [*sender.keys, *sender.deliveries, *(fire_key(STREAM, e) for e in sender.entries)]
    wrong = {k: by_key[k] for k in sent if by_key[k] != 1}
    assert not wrong, f"fires not recorded exactly once: {wrong}; {said}"
    assert len(set(sent)) == len(sent), said
    slots = Counter((str(f[0]), str(f[1]), str(f[2])) for f in fires if f[2] is not None)
    assert all(n == 1 for n in slots.values()), f"a cron slot fired twice: {slots}; {said}"
    cron = {datetime.fromisoformat(str(f[2])): str(f[4]) for f in fires if f[0] == "cron-agent"}
    slot = started_at.replace(second=0, microsecond=0) + timedelta(minutes=1)
    expected = []
    while slot <= covered_until:
        expected.append(slot)
        slot += timedelta(minutes=1)
    missing = [s.isoformat() for s in expected if s not in cron]
    assert not missing, f"cron slots never fired: {missing}, fired {sorted(cron)}; {said}"
    missed = [s.isoformat() for s, outcome in cron.items() if outcome == "missed"]
    assert not missed, f"cron slots missed: {missed}; {said}"
    counts["cron_slots"] = len(cron)

    # 2. Every run ends with one stop reason; every fire that started a run has its row.
    for run_id, (agent, status, reason) in runs.items():
        assert status != "running" and reason not in (None, "interrupted"), (
            f"run {run_id} of {agent} did not end: {status} {reason}; {said}"
        )
    for agent, trigger, _slot, run_id, outcome, _key in fires:
        if outcome == "started":
            assert run_id in runs, f"fire of {agent} ({trigger}) has no run {run_id}; {said}"

    # 3. No completed tool call executed twice (the in-flight rule of the docstring).
    newest: dict[tuple[str, str], tuple[str, str, float]] = {}
    for run_id, call_id, arguments, status, created_at in db.execute(
        "SELECT run_id, call_id, arguments, status, created_at FROM tool_calls ORDER BY id"
    ):
        began = datetime.fromisoformat(str(created_at)).timestamp()
        newest[(str(run_id), str(call_id))] = (json.loads(arguments)["token"], str(status), began)
    calls = {token: (status, began) for token, status, began in newest.values()}
    lines = side_effects(marks)
    wrong, cut_offs = in_flight_violations(calls, lines, cluster.killed_groups)
    counts["tool_calls"] = len(calls)
    counts["tool_calls_completed"] = sum(1 for s, _ in calls.values() if s in ("ok", "error"))
    counts["side_effects"] = len(lines)
    counts["in_flight_reruns"] = cut_offs
    said = json.dumps(counts)
    assert not wrong, f"{len(wrong)} breaches of the in-flight rule: {wrong[:5]}; {said}"

    # 4. Takeovers.
    takeovers = cluster.takeovers
    counts["takeovers"] = len(takeovers)
    counts["lease_ttl_s"] = LEASE_TTL_S
    counts["takeover_bound_s"] = round(takeover_bound_s(LEASE_TTL_S), 3)  # + recovery
    if takeovers:
        counts["takeover_s"] = {
            "p50": round(statistics.median(takeovers), 3),
            "p99": round(percentile(takeovers, 0.99), 3),
            "max": round(max(takeovers), 3),
        }
    assert len(takeovers) == cluster.kills["daemon-leader"], said
    return counts


def test_the_in_flight_check_refuses_a_completed_call_run_twice() -> None:
    """The check of side effects itself, on lines made up for each case it must tell apart."""
    killed = {100}
    calls = {"done": ("ok", 50.0), "cut": ("ok", 50.0), "open": ("running", 50.0)}
    fine = [
        ("done", 201, 200, 50.2),  # recorded once, by a worker never killed
        ("cut", 101, 100, 40.0),  # cut off by the kill of worker 100, then run again
        ("cut", 202, 200, 50.1),
        ("open", 102, 100, 45.0),  # never completed: only a killed worker's line
    ]
    assert in_flight_violations(calls, fine, killed) == ([], 1)
    twice = [*fine, ("done", 203, 200, 50.5)]  # a completed call run again after its record
    assert "a completed call executed 2 times" in in_flight_violations(calls, twice, killed)[0][0]
    alive = [("cut", 204, 200, 40.0), *fine[2:]]  # an earlier attempt no kill explains
    assert "not killed" in in_flight_violations(calls, [fine[0], *alive], killed)[0][0]
    lost = [fine[1], fine[3]]  # completed, and no side effect of the recorded attempt
    assert "executed 0 times" in in_flight_violations(calls, [fine[0], *lost], killed)[0][0]
    stray = [*fine, ("nobody", 205, 200, 50.0)]
    assert "never recorded" in in_flight_violations(calls, stray, killed)[0][0]
    same = [*fine, ("open", 102, 100, 46.0)]
    assert "one process executed a call twice" in in_flight_violations(calls, same, killed)[0][0]
