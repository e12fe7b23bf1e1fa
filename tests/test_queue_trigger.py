"""Queue triggers (issue 22): a Redis stream read in a consumer group, each entry one fire.

The consumers run against a real Redis (the ``redis_url`` fixture, or a redis-server this
test starts), with the real planner and run store; the daemon tests run real daemon
processes (tests/test_queue_daemon.py).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import subprocess
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from runner.daemon.planner import Planner
from runner.daemon.queueing import QueueConsumers
from runner.daemon.state import Fire
from runner.spec import check_spec
from runner.store import SQLiteRunStore
from runner.store.rows import FireOutcome
from runner.triggers.queue import QueueUrlError, fire_key, payload_of, queue_url
from runner.triggers.webhook import PayloadError
from tests.test_daemon import WAIT_S, free_port

STREAM = "tickets"


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def queue_spec(
    folder: Path, url: str, concurrency: str = "allow", extra: str = "", name: str = "triage"
) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            version: 1
            name: {name}
            model: openai/test-double
            inputs:
              title: {{type: string}}
              priority: {{type: integer, default: 1}}
            goal: "triage {{{{ title }}}} at {{{{ priority }}}}"
            concurrency: {concurrency}
            triggers:
              - queue:
                  stream: {STREAM}
                  url: {url}
                  field: body
                  inputs: {{title: ticket.title, priority: ticket.priority}}
            """
        )
        + extra
    )
    return path


def body(title: Any, priority: Any = 2) -> dict[str, str]:
    return {"body": json.dumps({"ticket": {"title": title, "priority": priority}})}


class Harness:
    """The daemon's planner and run store, and its queue consumers, without the daemon.

    The event loop runs on a thread of its own, as the daemon's does; runs are not executed:
    a dispatched fire stays active until :meth:`end` (so concurrency policies apply).
    """

    def __init__(self, tmp_path: Path, spec_path: Path, consumer: str = "daemon-a") -> None:
        self.db = tmp_path / f"runs-{consumer}.db"
        self.store = SQLiteRunStore(tmp_path / "runs.db")
        self.dispatched: list[Fire] = []
        self.planner = Planner(self.store, lambda: datetime.now(UTC), self.dispatch, self.cancel)
        spec, diagnostics = check_spec(spec_path, spec_path.read_bytes())
        assert spec is not None, [d.headline() for d in diagnostics]
        self.agent = self.planner.install(spec, spec_path, 0.0, spec_path.read_bytes())
        self.fire_calls = 0
        self.crash_after_record = 0
        self.consumers = QueueConsumers(
            consumer,
            agents=lambda: self.planner.agents,
            fire=self.fire,
            record_failed=lambda fire, why: self.planner.record_fire(fire, FireOutcome.FAILED, why),
            record_notice=self.store.record_notice,
            stopping=lambda: False,
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def fire(self, fire: Fire) -> FireOutcome:
        self.fire_calls += 1
        outcome = self.planner.fire(fire)
        if self.crash_after_record:  # the daemon dies after the fire's row, before XACK
            self.crash_after_record -= 1
            raise RuntimeError("the daemon died between recording the fire and XACK")
        return outcome

    def dispatch(self, fire: Fire) -> None:
        self.dispatched.append(fire)

    def cancel(self, run_id: str, reason: str) -> bool:
        return False

    def in_loop(self, call: Callable[[], Any]) -> Any:
        async def run() -> Any:
            return call()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(WAIT_S)

    def start(self) -> None:
        self.in_loop(lambda: self.consumers.consume_agent(self.agent))
        self.in_loop(lambda: self.consumers.start(self.loop))

    def end(self, run_id: str) -> None:
        self.in_loop(lambda: self.planner.run_ended(self.agent.name, run_id, "completed"))

    def close(self) -> None:
        self.consumers.stop()
        self.consumers.join()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
        self.store.close()

    def fires(self) -> list[dict[str, Any]]:
        with sqlite3.connect(self.store_path) as db:
            db.row_factory = sqlite3.Row
            rows = db.execute("SELECT * FROM fires ORDER BY id").fetchall()
        return [dict(row) for row in rows]

    @property
    def store_path(self) -> Path:
        return self.db.parent / "runs.db"

    def notices(self) -> list[str]:
        return [row["message"] for row in self.in_loop(self.store.notices)]


@pytest.fixture
def harnesses() -> Iterator[list[Harness]]:
    started: list[Harness] = []
    yield started
    for harness in started:
        harness.close()


def pending(client: redis.Redis, group: str = "agentrun.triage") -> int:
    return int(client.xpending(STREAM, group)["pending"])


# -- the pure parts ---------------------------------------------------------------------------


def test_payload_of_a_field_or_the_fields_and_the_fire_key() -> None:
    assert payload_of({b"body": b'{"a": {"b": 1}}'}, "body") == {"a": {"b": 1}}
    assert payload_of({b"title": b"printer", b"n": b"3"}, None) == {"title": "printer", "n": "3"}
    with pytest.raises(PayloadError, match="no field 'body' \\(its fields: title\\)"):
        payload_of({b"title": b"x"}, "body")
    with pytest.raises(PayloadError, match="field 'body': value is not JSON"):
        payload_of({b"body": b"{oops"}, "body")
    with pytest.raises(PayloadError, match="holds JSON list"):
        payload_of({b"body": b"[1]"}, "body")
    with pytest.raises(PayloadError, match="field 'title' is not UTF-8"):
        payload_of({b"title": b"\xff"}, None)
    assert fire_key("tickets", "1-0") == "queue:tickets:1-0"


def test_queue_url_from_the_spec_the_environment_or_neither() -> None:
    env = {"REDIS_URL": "redis://:pw@host:6379/2"}
    assert queue_url("${REDIS_URL}", env) == "redis://:pw@host:6379/2"
    assert queue_url(None, {"AGENTRUN_QUEUE_URL": "redis://q", "AGENTRUN_BROKER": "redis://b"}) == (
        "redis://q"
    )
    assert queue_url(None, {"AGENTRUN_BROKER": "redis://b"}) == "redis://b"
    with pytest.raises(QueueUrlError, match="'REDIS_URL', which is not set"):
        queue_url("${REDIS_URL}", {})
    with pytest.raises(QueueUrlError, match="neither AGENTRUN_QUEUE_URL nor AGENTRUN_BROKER"):
        queue_url(None, {})


# -- consuming ------------------------------------------------------------------------------


def test_a_message_fires_once_with_its_inputs_and_is_acked(
    tmp_path: Path, redis_url: str, harnesses: list[Harness]
) -> None:
    harness = Harness(tmp_path, queue_spec(tmp_path, redis_url))
    harnesses.append(harness)
    client = redis.Redis.from_url(redis_url)
    harness.start()
    # The group is made at the stream's end: entries added before it are not this agent's.
    wait_for(lambda: client.exists(STREAM), "the stream, made with the group")
    message_id = client.xadd(STREAM, body("printer on fire", "3")).decode()
    wait_for(lambda: harness.dispatched, "the fire")
    [fire] = harness.dispatched
    assert fire.inputs == {"title": "printer on fire", "priority": 3}
    assert fire.key == fire_key(STREAM, message_id)
    wait_for(lambda: pending(client) == 0 and len(harness.fires()) == 1, "the XACK")
    [row] = harness.fires()
    assert (row["trigger"], row["outcome"], row["run_id"]) == ("queue", "started", fire.run_id)


def test_a_message_whose_fire_was_recorded_but_not_acked_is_recorded_once(
    tmp_path: Path, redis_url: str, harnesses: list[Harness]
) -> None:
    harness = Harness(tmp_path, queue_spec(tmp_path, redis_url))
    harnesses.append(harness)
    harness.crash_after_record = 1
    client = redis.Redis.from_url(redis_url)
    harness.start()
    wait_for(lambda: client.exists(STREAM), "the group")
    client.xadd(STREAM, body("once"))
    # Read again from the consumer's pending entries: the second fire is a duplicate.
    wait_for(lambda: harness.fire_calls == 2, "the message read again")
    wait_for(lambda: pending(client) == 0, "the XACK")
    assert [row["outcome"] for row in harness.fires()] == ["started"]
    assert len(harness.dispatched) == 1
    assert any("died between recording" in n for n in harness.notices())


def test_entries_a_dead_consumer_left_pending_are_claimed_and_fired_once(
    tmp_path: Path, redis_url: str, harnesses: list[Harness]
) -> None:
    spec = (
        queue_spec(tmp_path, redis_url)
        .read_text()
        .replace("field: body", "field: body\n      claim_after: 300ms")
    )
    (tmp_path / "triage.yaml").write_text(spec)
    client = redis.Redis.from_url(redis_url)
    client.xgroup_create(STREAM, "agentrun.triage", id="$", mkstream=True)
    first = client.xadd(STREAM, body("left by a dead daemon")).decode()
    second = client.xadd(STREAM, body("also left")).decode()
    # Another daemon read both and died before it acknowledged them.
    client.xreadgroup("agentrun.triage", "dead-daemon", {STREAM: ">"}, count=2)
    assert pending(client) == 2
    harness = Harness(tmp_path, tmp_path / "triage.yaml", consumer="daemon-b")
    harnesses.append(harness)
    harness.start()
    wait_for(lambda: pending(client) == 0, "the claimed entries acknowledged")
    keys = [row["idempotency_key"] for row in harness.fires()]
    assert keys == [fire_key(STREAM, first), fire_key(STREAM, second)]
    assert [f.inputs["title"] for f in harness.dispatched] == ["left by a dead daemon", "also left"]


def test_a_body_that_cannot_become_inputs_is_a_failed_fire_and_acked(
    tmp_path: Path, redis_url: str, harnesses: list[Harness]
) -> None:
    harness = Harness(tmp_path, queue_spec(tmp_path, redis_url))
    harnesses.append(harness)
    client = redis.Redis.from_url(redis_url)
    harness.start()
    wait_for(lambda: client.exists(STREAM), "the group")
    not_json = client.xadd(STREAM, {"body": "{not json"}).decode()
    no_title = client.xadd(STREAM, {"body": json.dumps({"ticket": {"titel": "x"}})}).decode()
    bad_type = client.xadd(STREAM, body("x", "high")).decode()
    client.xadd(STREAM, body("fine"))
    wait_for(lambda: len(harness.fires()) == 4 and pending(client) == 0, "four fires, all acked")
    rows = harness.fires()
    assert [row["outcome"] for row in rows] == ["failed", "failed", "failed", "started"]
    assert "field 'body': value is not JSON" in rows[0]["reason"]
    assert (
        "queue input 'title'" in rows[1]["reason"] and "did you mean 'titel'" in rows[1]["reason"]
    )
    assert "priority" in rows[2]["reason"] and "'high'" in rows[2]["reason"]
    for row, message_id in zip(rows, (not_json, no_title, bad_type), strict=False):
        assert f"XRANGE {STREAM} {message_id} {message_id}" in row["reason"]
    # It stays in the stream, where the reason says.
    assert client.xrange(STREAM, not_json, not_json)[0][1] == {b"body": b"{not json"}
    assert sum("queue fire of triage failed" in n for n in harness.notices()) == 3
    assert [f.inputs["title"] for f in harness.dispatched] == ["fine"]


@pytest.mark.parametrize("concurrency", ["forbid", "queue"])
def test_a_burst_follows_the_concurrency_policy(
    tmp_path: Path, redis_url: str, harnesses: list[Harness], concurrency: str
) -> None:
    harness = Harness(tmp_path, queue_spec(tmp_path, redis_url, concurrency))
    harnesses.append(harness)
    client = redis.Redis.from_url(redis_url)
    harness.start()
    wait_for(lambda: client.exists(STREAM), "the group")
    pipe = client.pipeline()
    for number in range(8):
        pipe.xadd(STREAM, body(f"ticket {number}"))
    pipe.execute()
    wait_for(lambda: len(harness.fires()) == 8 and pending(client) == 0, "8 fires, all acked")
    outcomes = [row["outcome"] for row in harness.fires()]
    assert len(harness.dispatched) == 1  # the first; the others were read while it ran
    if concurrency == "forbid":
        assert outcomes == ["started"] + ["skipped"] * 7
    else:
        assert outcomes == ["started", "queued", "skipped", *["skipped"] * 5]
        harness.end(harness.dispatched[0].run_id)
        wait_for(lambda: len(harness.dispatched) == 2, "the queued fire started")
        assert harness.dispatched[1].inputs["title"] == "ticket 1"


def test_redis_down_at_start_is_a_notice_and_consuming_starts_when_it_comes_up(
    tmp_path: Path, harnesses: list[Harness]
) -> None:
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    url = f"redis://:s3cret-pw@127.0.0.1:{port}/0"
    harness = Harness(tmp_path, queue_spec(tmp_path, url))
    harnesses.append(harness)
    harness.start()
    notice = wait_for(
        lambda: [n for n in harness.notices() if "cannot reach Redis" in n], "the notice"
    )[0]
    assert f"127.0.0.1:{port}" in notice and "s3cret-pw" not in notice and "***" in notice
    assert "retrying with backoff" in notice
    argv = [server, "--port", str(port), "--save", "", "--appendonly", "no"]
    argv += ["--requirepass", "s3cret-pw", "--dir", str(tmp_path)]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port, password="s3cret-pw")
        wait_for(lambda: _up(client) and client.exists(STREAM), "the group, once Redis is up")
        client.xadd(STREAM, body("after the outage"))
        wait_for(lambda: harness.dispatched, "the fire")
        assert harness.dispatched[0].inputs["title"] == "after the outage"
        status = harness.in_loop(
            lambda: harness.consumers.status("triage", harness.agent.spec.triggers[0])
        )
        assert status["connected"] is True and "s3cret-pw" not in json.dumps(status)
        # The connection is lost: a notice, and the consumer resumes with what was added.
        process.terminate()
        process.wait(10)
        wait_for(lambda: any("stopped reading" in n for n in harness.notices()), "the loss")
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        wait_for(lambda: _up(client), "Redis up again")
        wait_for(lambda: client.exists(STREAM), "the group made again")
        client.xadd(STREAM, body("after the restart"))
        wait_for(lambda: len(harness.dispatched) == 2, "the second fire")
    finally:
        process.terminate()
        process.wait(10)
    assert all("s3cret-pw" not in n for n in harness.notices())


def _up(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def test_a_removed_agent_stops_consuming_and_a_reloaded_one_resumes_where_it_stopped(
    tmp_path: Path, redis_url: str, harnesses: list[Harness]
) -> None:
    harness = Harness(tmp_path, queue_spec(tmp_path, redis_url))
    harnesses.append(harness)
    client = redis.Redis.from_url(redis_url)
    harness.start()
    wait_for(lambda: client.exists(STREAM), "the group")
    [thread] = harness.consumers.threads["triage"]
    harness.in_loop(lambda: harness.consumers.remove_agent("triage"))
    harness.consumers.join()
    assert not thread.is_alive()
    client.xadd(STREAM, body("while nobody reads"))
    status = harness.in_loop(
        lambda: harness.consumers.status("triage", harness.agent.spec.triggers[0])
    )
    assert status["consuming"] is False and harness.dispatched == []
    harness.in_loop(lambda: harness.consumers.consume_agent(harness.agent))
    wait_for(lambda: harness.dispatched, "the entry added meanwhile, fired")
    assert harness.dispatched[0].inputs["title"] == "while nobody reads"
