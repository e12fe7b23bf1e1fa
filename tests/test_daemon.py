"""The daemon as a real process: triggers fire real runs in worker processes."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from runner.store import RunStore
from runner.triggers import CronSchedule, slot_run_id
from tests.conftest import ROOT
from tests.helpers import wait_for, write_spec

WAIT_S = 120.0  # a guard that ends a stuck test, not a timing assertion


class DaemonProcess:
    def __init__(self, folder: Path, home: Path, *extra: str) -> None:
        self.home = home
        env = {
            **os.environ,
            "AGENTRUN_HOME": str(home),
            "AGENTRUN_MODEL_FACTORY": "tests.daemon_support:model",
            "PYTHONPATH": str(ROOT),
            "WEBHOOK_SECRET": "It's a Secret to Everybody",
        }
        self.env = env
        self.log = (home.parent / f"daemon-{time.monotonic_ns()}.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "runner", "daemon", str(folder), "--grace", "1", *extra],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for(
            lambda: (home / "daemon.sock").exists() or self.process.poll() is not None, "socket"
        )
        assert self.process.poll() is None, self.output()

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "runner", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=WAIT_S)
        self.log.close()
        return code


def echo_spec(agents: Path, name: str = "echo", extra: str = "") -> Path:
    return write_spec(
        agents,
        textwrap.dedent(
            f"""
        version: 1
        name: {name}
        model: openai/test-double
        inputs:
          who: {{type: string, default: world}}
        goal: "hello {{{{ who }}}}"
        concurrency: allow
        triggers:
          - manual: true
        """
        )
        + extra,
        name=f"{name}.yaml",
    )


def test_manual_trigger_status_idempotency_and_stop(
    agents: Path, home: Path, daemons: list[DaemonProcess]
) -> None:
    echo_spec(agents)
    daemon = DaemonProcess(agents, home)
    daemons.append(daemon)
    done = daemon.cli("trigger", "echo", "--input", "who=Ada", "--wait")
    assert done.returncode == 0, done.stderr + daemon.output()
    assert "done: hello Ada" in done.stdout
    first = daemon.cli("trigger", "echo", "--key", "same-key")
    again = daemon.cli("trigger", "echo", "--key", "same-key")
    run_id = first.stdout.split()[1].rstrip(":")
    assert run_id in again.stdout and "already started by this key" in again.stdout
    status = daemon.cli("daemon", "status")
    assert status.returncode == 0 and "echo" in status.stdout and "manual" in status.stdout
    probe = json.loads(daemon.cli("daemon", "status", "--json").stdout)
    assert probe["litellm_imported"] is False  # runs happened, in worker processes
    assert (home / "daemon.sock").stat().st_mode & 0o777 == 0o600
    second = subprocess.run(
        [sys.executable, "-m", "runner", "daemon", str(agents)],
        cwd=ROOT,
        env=daemon.env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert second.returncode == 1 and "another agentrun daemon" in second.stderr
    unknown = daemon.cli("trigger", "nobody")
    assert unknown.returncode == 2 and "no agent named 'nobody'" in unknown.stderr
    bad_input = daemon.cli("trigger", "echo", "--input", "nope=1")
    assert bad_input.returncode == 2 and "unknown input 'nope'" in bad_input.stderr
    assert daemon.cli("daemon", "stop").returncode == 0
    assert daemon.process.wait(timeout=WAIT_S) == 0
    store = RunStore(home / "runs.db")
    runs = store.runs()
    assert len(runs) == 2  # --wait run + the keyed run (once)
    assert {r.trigger for r in runs} == {"manual"}
    assert not (home / "daemon.sock").exists()
    gone = subprocess.run(
        [sys.executable, "-m", "runner", "daemon", "status"],
        cwd=ROOT,
        env=daemon.env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert gone.returncode == 1 and "no daemon is running" in gone.stderr


def seed_cursor(home: Path, agent: str, key: str, cursor: datetime) -> None:
    store = RunStore(home / "runs.db")
    store.db.execute(
        "INSERT INTO cron_cursors (agent, trigger_key, cursor) VALUES (?, ?, ?)",
        (agent, key, cursor.isoformat(timespec="milliseconds")),
    )
    store.close()


def test_cron_catch_up_latest_after_downtime(
    agents: Path, home: Path, daemons: list[DaemonProcess]
) -> None:
    echo_spec(agents, "ticker", "  - cron: '* * * * *'\n")
    down_since = datetime.now(UTC) - timedelta(minutes=5, seconds=30)
    seed_cursor(home, "ticker", "1:* * * * *:UTC", down_since)
    daemon = DaemonProcess(agents, home)
    daemons.append(daemon)
    store = RunStore(home / "runs.db")
    wait_for(
        lambda: any(r.stop_reason == "completed" for r in store.runs()),
        "the catch-up run",
    )
    daemon.stop()
    fires = store.db.execute(
        "SELECT slot, outcome, run_id, reason FROM fires ORDER BY slot"
    ).fetchall()
    started = [f for f in fires if f["outcome"] == "started"]
    missed = [f for f in fires if f["outcome"] == "missed"]
    slots = CronSchedule("* * * * *").slots_between(down_since, datetime.now(UTC))
    assert len(started) >= 1 and len(missed) >= 4
    # latest: the most recent missed slot ran, under its derived id.
    catch_up = started[0]
    slot = datetime.fromisoformat(catch_up["slot"])
    assert catch_up["run_id"] == slot_run_id("ticker", 1, slot)
    assert all(datetime.fromisoformat(m["slot"]) < slot for m in missed)
    assert "was not running" in missed[0]["reason"]
    assert {datetime.fromisoformat(f["slot"]) for f in fires} <= set(slots)
    row = store.run(catch_up["run_id"])
    assert row is not None and row.trigger == "cron"


def test_kill_9_of_the_daemon_loses_and_doubles_no_slot(
    agents: Path, home: Path, daemons: list[DaemonProcess]
) -> None:
    rng = random.Random(7)
    echo_spec(agents, "ticker", "  - cron: '* * * * *'\n    catchup: all\n    catchup_max: 100\n")
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=40)
    seed_cursor(home, "ticker", "1:* * * * *:UTC", start)
    for _ in range(30):
        daemon = DaemonProcess(agents, home, "--workers", "2")
        time.sleep(rng.uniform(0.0, 1.0))  # where the kill lands, not an assertion
        daemon.process.kill()
        daemon.process.wait()
        daemon.log.close()
    daemon = DaemonProcess(agents, home, "--workers", "2")
    daemons.append(daemon)
    store = RunStore(home / "runs.db")
    schedule = CronSchedule("* * * * *")

    def all_done() -> bool:
        now = datetime.now(UTC)
        expected = {
            slot_run_id("ticker", 1, s)
            for s in schedule.slots_between(start, now - timedelta(seconds=2))
        }
        done = {
            r[0] for r in store.db.execute("SELECT id FROM runs WHERE stop_reason = 'completed'")
        }
        return expected <= done

    wait_for(all_done, "every slot to have run", limit_s=240)
    daemon.stop()
    end = datetime.now(UTC)
    slots = schedule.slots_between(start, end)
    ids = [slot_run_id("ticker", 1, s) for s in slots]
    runs = {
        r[0]: r[1]
        for r in store.db.execute("SELECT id, stop_reason FROM runs WHERE trigger = 'cron'")
    }
    fires = store.db.execute(
        "SELECT slot, run_id, outcome FROM fires WHERE trigger = 'cron'"
    ).fetchall()
    # No duplicates: one fires row per slot (a unique index), one run per slot id.
    assert len({f["slot"] for f in fires}) == len(fires)
    assert set(runs) <= set(ids)
    # Nothing lost: every slot up to the last daemon's stop has a completed run.
    for run_id in ids[:-1]:
        assert runs.get(run_id) == "completed", run_id


def test_invalid_edit_keeps_the_last_good_version(
    agents: Path, home: Path, daemons: list[DaemonProcess]
) -> None:
    path = echo_spec(agents)
    daemon = DaemonProcess(agents, home)
    daemons.append(daemon)
    path.write_text(path.read_text().replace("name: echo", "name: echo\ninstuctions: oops"))
    status = wait_for(
        lambda: (s := daemon.cli("daemon", "status")).stderr and s, "the spec error to show"
    )
    assert "echo.yaml:3:1: unknown key 'instuctions'" in status.stderr
    assert "keeping the last good version" in status.stderr
    done = daemon.cli("trigger", "echo", "--wait")
    assert done.returncode == 0 and "done: hello world" in done.stdout
    daemon.stop()
    log = sqlite3.connect(home / "runs.db").execute("SELECT message FROM notices").fetchall()
    assert any("instuctions" in row[0] for row in log)


def test_sigterm_lets_runs_finish_then_interrupts_them(
    agents: Path, home: Path, daemons: list[DaemonProcess]
) -> None:
    write_spec(
        agents,
        """
        version: 1
        name: sleeper
        model: openai/test-double
        goal: sleep a while
        tools:
          functions:
            nap: {function: "tests.daemon_support:nap", risk: low}
        triggers:
          - manual: true
        """,
        name="sleeper.yaml",
    )
    daemon = DaemonProcess(agents, home)
    daemons.append(daemon)
    run_id = daemon.cli("trigger", "sleeper").stdout.split()[1].rstrip(":")
    store = RunStore(home / "runs.db")
    # A low-risk call has no journal row: its model call, committed before it runs, shows it.
    wait_for(lambda: store.model_calls(run_id), "the tool call to start")
    assert daemon.stop() == 0
    row = store.run(run_id)
    assert row is not None and (row.status, row.stop_reason) == ("interrupted", "interrupted")
    assert "resume" in (row.message or "")


SAVES = ["in-place", "rename", "vim"]


def save(path: Path, content: str, style: str) -> None:
    if style == "in-place":
        path.write_text(content)
    elif style == "rename":
        temp = path.with_name(f".{path.name}.tmp123")
        temp.write_text(content)
        os.replace(temp, path)
    else:  # vim: swap file, backup by rename, write new, remove backup and swap
        swap = path.with_name(f".{path.name}.swp")
        swap.write_text("swap")
        backup = path.with_name(path.name + "~")
        if path.exists():
            os.replace(path, backup)
        probe = path.with_name("4913")
        probe.write_text("")
        probe.unlink()
        path.write_text(content)
        if backup.exists():
            backup.unlink()
        swap.unlink()


def test_a_file_saved_three_ways_makes_three_runs_and_own_writes_none(
    agents: Path, home: Path, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_spec(
        agents,
        f"""
        version: 1
        name: watcher
        model: openai/test-double
        workdir: {tmp_path}
        inputs:
          changed_paths: {{type: array, default: []}}
        goal: "changed {{{{ changed_paths }}}}"
        triggers:
          - watch: {{paths: [inbox], patterns: ["*.md"], debounce: 300ms, max_wait: 5s}}
        concurrency: queue
        """,
        name="watcher.yaml",
    )
    write_spec(
        agents,
        f"""
        version: 1
        name: writer
        model: openai/test-double
        workdir: {tmp_path}
        goal: write into the inbox
        tools:
          write_file: {{paths: [inbox]}}
        autonomy: autonomous
        triggers:
          - manual: true
          - watch: {{paths: [inbox], patterns: ["*.txt"], debounce: 300ms}}
        """,
        name="writer.yaml",
    )
    daemon = DaemonProcess(agents, home)
    daemons.append(daemon)
    store = RunStore(home / "runs.db")

    def runs_of(agent: str) -> list[Any]:
        return store.runs(limit=100, agent=agent)

    for count, style in enumerate(SAVES, start=1):
        save(inbox / "note.md", f"version {count}", style)
        wait_for(
            lambda c=count: (
                len([r for r in runs_of("watcher") if r.stop_reason == "completed"]) >= c
            ),
            f"run {count}",
        )
        time.sleep(1.0)  # room for a wrong extra run to show up
    watcher_runs = runs_of("watcher")
    assert len(watcher_runs) == 3, [r.goal for r in watcher_runs]
    assert all("note.md" in r.goal for r in watcher_runs)
    # The writer's own write into its watched folder does not trigger it again.
    done = daemon.cli("trigger", "writer", "--wait")
    assert done.returncode == 0, done.stderr
    assert (inbox / "reply.txt").exists()
    time.sleep(1.5)  # a self-triggered run would have started by now
    assert len(runs_of("writer")) == 1
    daemon.stop()


def sign(body: bytes) -> str:
    digest = hmac.new(b"It's a Secret to Everybody", body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def post(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=body, headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_webhook_verified_deduplicated_and_mapped(
    agents: Path, home: Path, daemons: list[DaemonProcess]
) -> None:
    write_spec(
        agents,
        """
        version: 1
        name: labeller
        model: openai/test-double
        inputs:
          title: {type: string}
        goal: "label {{ title }}"
        triggers:
          - webhook: {secret_env: WEBHOOK_SECRET, inputs: {title: issue.title}, max_body: 2000}
        """,
        name="labeller.yaml",
    )
    port = free_port()
    daemon = DaemonProcess(agents, home, "--webhook-port", str(port))
    daemons.append(daemon)
    body = json.dumps({"issue": {"title": "Crash on start"}}).encode()
    headers = {"Content-Type": "application/json", "X-GitHub-Delivery": "d-1"}

    def first_delivery() -> tuple[int, dict[str, Any]] | None:
        try:
            return post(
                port, "/hooks/labeller", body, {**headers, "X-Hub-Signature-256": sign(body)}
            )
        except urllib.error.URLError:
            return None  # the listener is not up yet

    status, _ = wait_for(first_delivery, "the webhook listener")
    assert status == 202
    replay = post(port, "/hooks/labeller", body, {**headers, "X-Hub-Signature-256": sign(body)})
    assert replay[0] == 409
    forged = post(
        port,
        "/hooks/labeller",
        body,
        {**headers, "X-GitHub-Delivery": "d-2", "X-Hub-Signature-256": "sha256=" + "0" * 64},
    )
    assert forged[0] == 401
    big = json.dumps({"issue": {"title": "x" * 5000}}).encode()
    assert (
        post(
            port,
            "/hooks/labeller",
            big,
            {**headers, "X-GitHub-Delivery": "d-3", "X-Hub-Signature-256": sign(big)},
        )[0]
        == 413
    )
    unmapped = json.dumps({"issue": {}}).encode()
    missing = post(
        port,
        "/hooks/labeller",
        unmapped,
        {**headers, "X-GitHub-Delivery": "d-4", "X-Hub-Signature-256": sign(unmapped)},
    )
    assert missing[0] == 400
    assert post(port, "/hooks/nobody", body, headers)[0] == 404
    store = RunStore(home / "runs.db")
    row = wait_for(
        lambda: [r for r in store.runs() if r.stop_reason == "completed"], "the webhook run"
    )[0]
    assert row.goal == "label Crash on start" and row.trigger == "webhook"
    daemon.stop()
    assert len(store.runs()) == 1
