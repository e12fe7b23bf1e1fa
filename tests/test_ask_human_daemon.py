"""The daemon and ask_human: a run pauses on its question, a person answers from another
process (the CLI, the API), and the daemon continues the run by itself; nothing is lost
when the daemon is killed while the question waits; an unanswered question times out.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx

from runner.store import RunStore
from tests.helpers import wait_for, write_spec
from tests.test_daemon import WAIT_S, DaemonProcess, free_port


def asker(agents: Path, goal: str = "ask: main|stable", extra: str = "") -> None:
    write_spec(
        agents,
        f"""
        version: 1
        name: asker
        model: openai/test-double
        goal: "{goal}"
        unattended: queue
        tools:
          ask_human: {{{extra}}}
        triggers:
          - manual: true
        """,
        name="asker.yaml",
    )


def waiting(store: RunStore, run_id: str) -> object:
    row = store.run(run_id)
    return row if row is not None and row.stop_reason == "waiting_input" else None


def finished(store: RunStore, run_id: str, stop_reason: str = "completed") -> object:
    row = store.run(run_id)
    return row if row is not None and row.stop_reason == stop_reason else None


def log_types(store: RunStore, run_id: str) -> list[str]:
    return [e["type"] for e in store.events_since(0, run_id=run_id, limit=1000)]


def test_answered_from_another_process_the_daemon_continues_by_itself(
    agents: Path, home: Path, daemons: list[DaemonProcess]
) -> None:
    asker(agents)
    daemon = DaemonProcess(agents, home)
    daemons.append(daemon)
    run_id = daemon.cli("trigger", "asker").stdout.split()[1].rstrip(":")
    store = RunStore(home / "runs.db")
    wait_for(lambda: waiting(store, run_id), "the run to pause on its question", WAIT_S)
    listed = daemon.cli("questions")
    assert run_id in listed.stdout and "Which one?" in listed.stdout, listed.stderr

    refused = daemon.cli("answer", run_id, "develop")
    assert refused.returncode == 2 and "is not one of the choices" in refused.stderr
    answered = daemon.cli("answer", run_id, "stable")  # and nothing else: no agentrun resume
    assert answered.returncode == 0, answered.stderr
    assert "the daemon continues the run" in answered.stdout
    row = wait_for(lambda: finished(store, run_id), "the run to complete", WAIT_S)
    assert row.final == "the person said: stable", daemon.output()  # type: ignore[attr-defined]
    [question] = store.questions(run_id, status=None)
    assert (question["answer"], question["answered_by"]) == ("stable", "cli")
    kinds = log_types(store, run_id)
    assert kinds.count("question_asked") == 1 and kinds.count("question_answered") == 1
    assert kinds.index("question_answered") < kinds.index("run_resumed")
    assert f"continuing run {run_id} of asker: its question was answered" in daemon.output()


def test_answered_through_the_api_the_daemon_wakes_and_continues(
    agents: Path, home: Path, daemons: list[DaemonProcess]
) -> None:
    asker(agents, goal="ask for a version")
    port = free_port()
    daemon = DaemonProcess(agents, home, "--http", f"127.0.0.1:{port}")
    daemons.append(daemon)
    base = wait_for(
        lambda: (home / "daemon.url").exists() and (home / "daemon.url").read_text().strip(),
        "the daemon's URL file",
    )
    token = (home / "console.token").read_text().strip()
    run_id = daemon.cli("trigger", "asker").stdout.split()[1].rstrip(":")
    store = RunStore(home / "runs.db")
    wait_for(lambda: waiting(store, run_id), "the run to pause on its question", WAIT_S)
    with httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as client:
        [shown] = client.get("/api/v1/questions").json()["questions"]
        assert shown["run_id"] == run_id and shown["choices"] == []
        path = f"/api/v1/runs/{run_id}/questions/{shown['call_id']}/answer"
        done = client.post(path, json={"answer": "v3.0.0"})
        assert done.status_code == 200, done.text
        assert done.json()["resume"] == "the daemon continues the run"
    row = wait_for(lambda: finished(store, run_id), "the run to complete", WAIT_S)
    assert row.final == "the person said: v3.0.0", daemon.output()  # type: ignore[attr-defined]


def test_kill_9_while_the_question_waits_loses_nothing(
    agents: Path, home: Path, daemons: list[DaemonProcess]
) -> None:
    asker(agents)
    daemon = DaemonProcess(agents, home)
    daemons.append(daemon)
    run_id = daemon.cli("trigger", "asker").stdout.split()[1].rstrip(":")
    store = RunStore(home / "runs.db")
    row = wait_for(lambda: waiting(store, run_id), "the run to pause on its question", WAIT_S)
    os.kill(daemon.process.pid, signal.SIGKILL)
    daemon.process.wait()
    worker = row.pid  # type: ignore[attr-defined]
    if worker and _alive(worker):
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: not _alive(worker), "the worker to die", WAIT_S)

    answered = daemon.cli("answer", run_id, "main")  # no daemon runs now
    assert answered.returncode == 0, answered.stderr
    assert f"agentrun resume {run_id}" in answered.stdout

    again = DaemonProcess(agents, home)
    daemons.append(again)
    row = wait_for(lambda: finished(store, run_id), "the run to complete after restart", WAIT_S)
    assert row.final == "the person said: main", again.output()  # type: ignore[attr-defined]
    assert len(store.questions(run_id, status=None)) == 1
    kinds = log_types(store, run_id)
    assert kinds.count("question_asked") == 1 and kinds.count("question_answered") == 1
    assert kinds.count("run_finished") == 2  # paused once, completed once
    assert [c["tool"] for c in store.tool_calls(run_id)] == ["ask_human"]
    assert len(store.model_calls(run_id)) == 2  # the question was not asked of the model again


def test_an_unanswered_question_times_out_in_the_daemon(
    agents: Path, home: Path, daemons: list[DaemonProcess]
) -> None:
    asker(agents, extra="answer_timeout: 1s")
    daemon = DaemonProcess(agents, home)
    daemons.append(daemon)
    run_id = daemon.cli("trigger", "asker").stdout.split()[1].rstrip(":")
    store = RunStore(home / "runs.db")
    row = wait_for(
        lambda: finished(store, run_id, "answer_timeout"), "the question to time out", WAIT_S
    )
    assert "answer_timeout" in row.message, daemon.output()  # type: ignore[attr-defined]
    [question] = store.questions(run_id, status=None)
    assert question["status"] == "timed_out"
    kinds = log_types(store, run_id)
    assert kinds.count("question_timed_out") == 1 and kinds[-1] == "run_finished"
    late = daemon.cli("answer", run_id, "main")
    assert late.returncode == 2 and "no question waiting" in late.stderr


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
