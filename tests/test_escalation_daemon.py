"""The daemon continues an escalated run of its own by itself once a person grants more."""

from __future__ import annotations

from pathlib import Path

from runner.store import RunStore
from tests.helpers import wait_for, write_spec
from tests.test_daemon import WAIT_S, DaemonProcess


def test_a_continued_escalated_daemon_run_completes_by_itself(
    agents: Path, home: Path, daemons: list[DaemonProcess]
) -> None:
    write_spec(
        agents,
        """
        version: 1
        name: writer
        model: openai/test-double
        goal: write a reply
        autonomy: autonomous
        tools:
          write_file: {paths: [inbox]}
        budgets:
          max_steps: 1
          ceilings: {max_steps: 3}
        escalate_on: [max_steps]
        triggers:
          - manual: true
        """,
        name="writer.yaml",
    )
    (agents / "inbox").mkdir()
    daemon = DaemonProcess(agents, home)
    daemons.append(daemon)
    run_id = daemon.cli("trigger", "writer").stdout.split()[1].rstrip(":")
    store = RunStore(home / "runs.db")
    row = wait_for(
        lambda: (r := store.run(run_id)) and r.status != "running" and r, "the run to stop", WAIT_S
    )
    assert (row.stop_reason, row.escalated_from) == ("escalated", "max_steps"), daemon.output()
    assert (agents / "inbox" / "reply.txt").read_text() == "write a reply"

    refused = daemon.cli("resume", run_id, "--add", "max_steps=3")
    assert refused.returncode == 2 and "a grant over the ceiling is refused" in refused.stderr
    granted = daemon.cli("resume", run_id, "--add", "max_steps=1", "--reason", "finish it")
    assert granted.returncode == 0, granted.stderr
    assert "the daemon continues the run" in granted.stdout  # not run in this process
    row = wait_for(
        lambda: (r := store.run(run_id)) and r.stop_reason == "completed" and r,
        "the daemon to continue the run and complete it",
        WAIT_S,
    )
    assert row.final == "done: write a reply" and row.steps == 2, daemon.output()
    [write] = store.tool_calls(run_id)  # the write before the escalation did not run again
    assert write["status"] == "ok"
    kinds = [e["type"] for e in store.events_since(0, run_id=run_id)]
    assert kinds.index("escalation_decided") < kinds.index("run_resumed")
    assert f"continuing run {run_id} of writer: a person continued it" in daemon.output()
