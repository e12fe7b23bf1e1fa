"""Queue triggers in real daemon processes, on a real Redis (issue 22).

A message added to the stream becomes a run with the mapped inputs; a daemon killed with
SIGKILL while it consumes a burst leaves entries read and not acknowledged (some already
recorded), and the restarted daemon makes each message exactly one fire.
"""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import redis

from runner.triggers.queue import fire_key
from tests.conftest import ROOT
from tests.test_daemon import WAIT_S, DaemonProcess
from tests.test_queue_trigger import STREAM, body, pending, wait_for

GROUP = "agentrun.triage"


def write_queue_spec(agents: Path, concurrency: str) -> Path:
    path = agents / "triage.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            version: 1
            name: triage
            model: openai/test-double
            inputs:
              title: {{type: string}}
              priority: {{type: integer, default: 1}}
            goal: "triage {{{{ title }}}} at {{{{ priority }}}}"
            concurrency: {concurrency}
            env: [QUEUE_REDIS_URL]
            triggers:
              - queue:
                  stream: {STREAM}
                  url: "${{QUEUE_REDIS_URL}}"
                  field: body
                  inputs: {{title: ticket.title, priority: ticket.priority}}
            """
        )
    )
    return path


def rows(home: Path, query: str) -> list[dict[str, object]]:
    if not (home / "runs.db").exists():
        return []
    with sqlite3.connect(f"file:{home / 'runs.db'}?mode=ro", uri=True) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute(query)]


def fires(home: Path) -> list[dict[str, object]]:
    return rows(home, "SELECT * FROM fires ORDER BY id")


def with_password(url: str) -> str:
    """``url`` with a password Redis ignores (none is set), to see it is never shown."""
    return url.replace("redis://", "redis://:hunter2-secret@", 1)


def test_a_message_becomes_a_run_with_its_inputs(
    agents: Path,
    home: Path,
    daemons: list[DaemonProcess],
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_queue_spec(agents, "allow")
    monkeypatch.setenv("QUEUE_REDIS_URL", with_password(redis_url))
    daemon = DaemonProcess(agents, home)
    daemons.append(daemon)
    client = redis.Redis.from_url(redis_url)
    wait_for(lambda: client.exists(STREAM), "the group", WAIT_S)
    message_id = client.xadd(STREAM, body("printer on fire", 3)).decode()
    runs = wait_for(lambda: rows(home, "SELECT * FROM runs WHERE status = 'finished'"), "the run")
    assert (runs[0]["trigger"], runs[0]["stop_reason"]) == ("queue", "completed")
    [row] = fires(home)
    assert row["idempotency_key"] == fire_key(STREAM, message_id)
    assert json.loads(str(row["inputs_json"])) == {"title": "printer on fire", "priority": 3}
    shown = daemon.cli("runs", "show", str(row["run_id"]))
    assert "triage printer on fire at 3" in shown.stdout, shown.stdout + shown.stderr
    wait_for(lambda: pending(client, GROUP) == 0, "the XACK", WAIT_S)
    status = daemon.cli("daemon", "status")
    assert f"queue stream '{STREAM}' group '{GROUP}'" in status.stdout, status.stdout
    assert "consuming, 1 acknowledged" in status.stdout
    assert "hunter2-secret" not in status.stdout + daemon.output()
    assert "redis://:***@" in status.stdout
    assert daemon.stop() == 0


def test_a_daemon_killed_while_consuming_leaves_each_message_one_fire(
    agents: Path,
    home: Path,
    daemons: list[DaemonProcess],
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_queue_spec(agents, "forbid")
    monkeypatch.setenv("QUEUE_REDIS_URL", redis_url)
    client = redis.Redis.from_url(redis_url)
    total, rounds, draw = 300, 4, random.Random(22)
    ids: list[str] = []
    recorded_not_acked = read_not_recorded = 0
    for round_ in range(rounds):
        daemon = DaemonProcess(agents, home)
        daemons.append(daemon)
        wait_for(lambda: client.exists(STREAM), "the group", WAIT_S)
        if round_ == 0:
            pipe = client.pipeline()
            for number in range(total):
                pipe.xadd(STREAM, body(f"ticket {number}"))
            ids = [raw.decode() for raw in pipe.execute()]
        before = len(fires(home))
        # SIGKILL once a few more fires are recorded: mid-burst, between any two steps.
        target = before + draw.randint(1, 40)
        wait_for(lambda target=target: len(fires(home)) >= target, "fires", WAIT_S)
        if round_ == 0:
            # The first kill falls between a fire's row and its XACK: Redis holds the XACK
            # (CLIENT PAUSE WRITE), so the daemon dies with the entry recorded and pending.
            wait_for(lambda: recorded_and_held(client, home), "an XACK held", WAIT_S)
        daemon.process.kill()
        daemon.process.wait()
        client.client_unpause()
        keys = {str(row["idempotency_key"]) for row in fires(home)}
        for entry in client.xpending_range(STREAM, GROUP, "-", "+", 1000):
            key = fire_key(STREAM, entry["message_id"].decode())
            if key in keys:
                recorded_not_acked += 1
            else:
                read_not_recorded += 1
        if round_ == 0:
            assert recorded_not_acked == 1, "the held XACK's entry is recorded and pending"
    daemon = DaemonProcess(agents, home)
    daemons.append(daemon)
    wait_for(lambda: len(fires(home)) >= total and pending(client, GROUP) == 0, "every fire")
    keys = [str(row["idempotency_key"]) for row in fires(home)]
    assert sorted(keys) == sorted(fire_key(STREAM, message_id) for message_id in ids)
    assert len(keys) == len(set(keys)) == total  # each message once, none lost
    assert daemon.stop() == 0
    print(
        f"{rounds} kills: {recorded_not_acked} entries recorded and not acknowledged, "
        f"{read_not_recorded} read and not recorded, at the kills"
    )


def recorded_and_held(client: redis.Redis, home: Path) -> bool:
    """Pause Redis's writes briefly; True once an entry pending is recorded (its XACK held)."""
    client.client_pause(2000, all=False)  # WRITE: reads go on, XACK waits
    time.sleep(0.3)
    keys = {str(row["idempotency_key"]) for row in fires(home)}
    held = any(
        fire_key(STREAM, entry["message_id"].decode()) in keys
        for entry in client.xpending_range(STREAM, GROUP, "-", "+", 1000)
    )
    if not held:  # paused between two batches: let it read one more, and try again
        client.client_unpause()
    return held


def test_validate_locates_a_bad_queue_trigger(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        textwrap.dedent(
            """\
            version: 1
            name: bad
            model: openai/test-double
            inputs:
              title: {type: string}
            goal: "{{ title }}"
            triggers:
              - queue:
                  stream: tickets
                  url: "http://${REDIS_PASSWORD}@host"
                  inputs: {titel: ticket.title}
                  claim_after: soon
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "runner", "validate", str(spec)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "bad.yaml:12:20: 'triggers[0].queue.claim_after' must be a duration" in done.stderr
    spec.write_text(spec.read_text().replace("soon", "5s"))
    done = subprocess.run(
        [sys.executable, "-m", "runner", "validate", str(spec)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2, done.stdout
    errors = done.stderr
    assert "bad.yaml:10:12: the queue URL uses ${REDIS_PASSWORD}, which is not in" in errors
    assert (
        "bad.yaml:10:12: the queue URL 'http://${REDIS_PASSWORD}@host' is not a Redis URL" in errors
    )
    assert (
        "bad.yaml:11:16: queue maps payload to 'titel', which is not a declared input; did you mean 'title'?"
        in errors
    )
    assert (
        "bad.yaml:8:5: input 'title' is required, and the queue trigger does not map it" in errors
    )
    assert "Traceback" not in errors
