"""The daemon continues its paused runs by itself: after a decision, and after a crash."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from runner.store import RunStore
from tests.helpers import wait_for, write_spec
from tests.test_daemon import WAIT_S, DaemonProcess


def writer(agents: Path, goal: str, extra: str = "") -> None:
    write_spec(
        agents,
        f"""
        version: 1
        name: writer
        model: openai/test-double
        goal: {goal}
        autonomy: approve-writes
        unattended: queue
        concurrency: queue
        tools:
          write_file: {{paths: [inbox]}}
          functions:
            hold: {{function: "tests.daemon_support:hold", risk: low}}
        triggers:
          - manual: true
        """
        + extra,
        name="writer.yaml",
    )
    (agents / "inbox").mkdir(exist_ok=True)


def ended(store: RunStore, run_id: str) -> object:
    row = store.run(run_id)
    return row if row is not None and row.status != "running" else None


def test_a_paused_daemon_run_completes_after_approve_alone(
    agents: Path, home: Path, daemons: list[DaemonProcess]
) -> None:
    writer(agents, "write a reply")
    daemon = DaemonProcess(agents, home)
    daemons.append(daemon)
    run_id = daemon.cli("trigger", "writer").stdout.split()[1].rstrip(":")
    store = RunStore(home / "runs.db")
    row = wait_for(lambda: ended(store, run_id), "the run to pause", WAIT_S)
    assert row.stop_reason == "waiting_approval", daemon.output()
    assert not (agents / "inbox" / "reply.txt").exists()

    approved = daemon.cli("approve", run_id)  # and nothing else: no `agentrun resume`
    assert approved.returncode == 0, approved.stderr
    assert "approved 1 call; the daemon continues the run" in approved.stdout
    row = wait_for(
        lambda: (r := store.run(run_id)) and r.stop_reason == "completed" and r,
        "the run to continue and complete",
        WAIT_S,
    )
    assert row.final == "done: write a reply", daemon.output()
    assert (agents / "inbox" / "reply.txt").read_text() == "write a reply"
    [write] = [c for c in store.tool_calls(run_id) if c["tool"] == "write_file"]
    assert write["status"] == "ok"
    kinds = [e["type"] for e in store.events_since(0, run_id=run_id)]
    assert kinds.index("approval_decided") < kinds.index("run_resumed") < len(kinds) - 1
    assert f"continuing run {run_id} of writer: its calls were decided" in daemon.output()


def test_a_run_killed_with_its_daemon_is_resumed_on_restart_and_repeats_no_call(
    agents: Path, home: Path, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    gate = tmp_path / "gate"
    gate.write_text("closed")
    writer(agents, f"write then hold {gate}")
    spec = agents / "writer.yaml"
    spec.write_text(spec.read_text().replace("autonomy: approve-writes", "autonomy: autonomous"))
    daemon = DaemonProcess(agents, home)
    daemons.append(daemon)
    run_id = daemon.cli("trigger", "writer").stdout.split()[1].rstrip(":")
    store = RunStore(home / "runs.db")
    wait_for(lambda: Path(f"{gate}.holding").exists(), "the run to reach its second call", WAIT_S)
    row = store.run(run_id)
    assert row is not None and row.status == "running" and row.pid
    # kill -9 the daemon and the run's worker: nobody records anything
    os.kill(daemon.process.pid, signal.SIGKILL)
    daemon.process.wait()
    os.kill(row.pid, signal.SIGKILL)
    wait_for(lambda: not _alive(row.pid), "the worker to die", WAIT_S)
    gate.unlink()

    again = DaemonProcess(agents, home)
    daemons.append(again)
    row = wait_for(
        lambda: (r := store.run(run_id)) and r.stop_reason == "completed" and r,
        "the run to be resumed and complete",
        WAIT_S,
    )
    assert row.final == f"done: write then hold {gate}", again.output()
    calls = store.tool_calls(run_id)
    # the write completed before the crash: never run again; the hold was in flight and is
    # low risk: run again
    assert [c["tool"] for c in calls if c["status"] == "ok"] == ["write_file", "hold"]
    assert len([c for c in calls if c["tool"] == "write_file"]) == 1
    assert "it was interrupted (on_interrupt: resume)" in again.output()


def test_on_interrupt_leave_keeps_an_interrupted_run_for_a_person(
    agents: Path, home: Path, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    gate = tmp_path / "gate"
    gate.write_text("closed")
    writer(agents, f"write then hold {gate}", "on_interrupt: leave\n")
    spec = agents / "writer.yaml"
    spec.write_text(spec.read_text().replace("autonomy: approve-writes", "autonomy: autonomous"))
    daemon = DaemonProcess(agents, home)
    daemons.append(daemon)
    run_id = daemon.cli("trigger", "writer").stdout.split()[1].rstrip(":")
    wait_for(lambda: Path(f"{gate}.holding").exists(), "the run to reach its second call", WAIT_S)
    assert daemon.stop() == 0  # a graceful stop interrupts the run after --grace 1
    gate.unlink()
    store = RunStore(home / "runs.db")
    row = store.run(run_id)
    assert row is not None and row.stop_reason == "interrupted"
    again = DaemonProcess(agents, home)
    daemons.append(again)
    status = again.cli("daemon", "status")  # a full pass of its start-up is done
    assert status.returncode == 0
    row = store.run(run_id)
    assert row is not None and row.stop_reason == "interrupted", again.output()
    assert "continuing run" not in again.output()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
