"""Notifications reach real receivers, never slow or fail a run, are sent once, hold no secret."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.compiler import compile_agent
from runner.errors import StopReason
from runner.events import ApprovalRequested
from runner.loop import run_agent
from runner.notify.channels import Channel, ChannelError, daemon_channels, parse_events
from runner.notify.delivery import ATTEMPTS, Sender
from runner.notify.follower import APPROVAL_GRACE_S, FAILED_STOPS, NotifyFollower, run_event
from runner.notify.inprocess import RunNotifier
from runner.spec import load_spec
from runner.store import RunStore
from runner.testing import FakeOpenAIServer, ScriptedModel, call, text
from tests.helpers import run_cli as cli
from tests.helpers import wait_for, write_spec
from tests.receivers import HangingReceiver, HttpReceiver, SmtpReceiver, down_port
from tests.test_daemon import WAIT_S

SECRET = "hunter2-very-secret-value"


@pytest.fixture
def http() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    receiver = SmtpReceiver()
    yield receiver
    receiver.close()


def writer_spec(folder: Path, api_base: str, notify: str) -> Path:
    (folder / "out").mkdir(exist_ok=True)
    return write_spec(
        folder,
        textwrap.dedent(f"""
        version: 1
        name: writer
        model: {{id: openai/fake, api_base: "{api_base}", api_key_env: FAKE_API_KEY}}
        goal: Write the report.
        tools:
          write_file: {{paths: [out]}}
        autonomy: approve-writes
        unattended: queue
        env: [FAKE_API_KEY, HOOK_SECRET]
        notify:
        """).lstrip()
        + notify,
    )


def stored_bytes(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in home.iterdir() if p.name.startswith("runs.db"))


def test_a_paused_run_reaches_email_a_json_webhook_and_a_slack_shaped_hook(
    tmp_path: Path, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    home = tmp_path / "home"
    env = {
        **os.environ,
        "AGENTRUN_HOME": str(home),
        "FAKE_API_KEY": "sk-fake-000000",
        "HOOK_SECRET": SECRET,
    }
    notify = (
        f"  - url: json://agentrun:${{HOOK_SECRET}}@127.0.0.1:{http.port}/hook\n"
        "    events: [approval_waiting, run_completed]\n"
        f"  - url: mailto://127.0.0.1:{smtp.port}?from=agentrun@example.com&to=ops@example.com\n"
        "    events: [approval_waiting]\n"
        # Mattermost's incoming webhooks take Slack's payload ({"text": ...}); Apprise's
        # slack:// always posts to hooks.slack.com, so this is the Slack-shaped request.
        f"  - url: mmost://127.0.0.1:{http.port}/${{HOOK_SECRET}}\n"
        "    events: [approval_waiting, run_failed]\n"
    )
    arguments = {"path": "out/report.md", "content": "quarterly numbers"}
    with FakeOpenAIServer([call("write_file", arguments), text("written")]) as server:
        spec = writer_spec(tmp_path, server.api_base, notify)
        paused = cli(["run", str(spec), "--unattended"], env)
    assert paused.returncode == 5, paused.stderr  # the run's own exit code, notified or not
    store = RunStore(home / "runs.db")
    [run] = store.runs()
    assert run.stop_reason == "waiting_approval"

    [hook] = http.json_bodies("/hook")
    assert run.id in hook["message"] and "writer" in hook["title"]
    assert "write_file" in hook["message"] and "out/report.md" in hook["message"]
    assert "Risk: medium" in hook["message"]
    assert f"agentrun approve {run.id}" in hook["message"]  # no console: no link
    [request] = [r for r in http.requests if r["path"] == "/hook"]
    user_and_secret = base64.b64encode(f"agentrun:{SECRET}".encode()).decode()
    assert request["headers"]["Authorization"] == f"Basic {user_and_secret}"  # substituted

    [slack] = [json.loads(r["body"]) for r in http.requests if "/hooks/" in r["path"]]
    [slack_request] = [r for r in http.requests if "/hooks/" in r["path"]]
    assert slack_request["path"] == f"/hooks/{SECRET}"
    assert "write_file" in slack["text"] and run.id in slack["text"]

    [mail] = smtp.messages
    assert mail["Subject"] == "[agentrun] writer: approval waiting for write_file"
    assert mail["To"] == "ops@example.com"
    body = smtp.body()
    assert run.id in body and "out/report.md" in body and "quarterly numbers" in body

    rows = store.notifications(run.id)
    assert sorted(r["status"] for r in rows) == ["sent", "sent", "sent"]
    assert all(r["event"] == "approval_waiting" and r["attempts"] == 1 for r in rows)
    assert all(SECRET not in r["channel"] for r in rows)
    assert any("****" in r["channel"] for r in rows)
    logged = [e for e in store.events_since(0, run_id=run.id) if e["type"] == "notification"]
    assert [e["status"] for e in logged] == ["sent", "sent", "sent"]
    store.close()
    assert SECRET.encode() not in stored_bytes(home)
    assert SECRET not in paused.stdout + paused.stderr


def _run(tmp_path: Path, home: Path, model: Any, extra: str = "") -> Any:
    spec = load_spec(
        write_spec(
            tmp_path,
            "version: 1\nname: quick\nmodel: openai/scripted\ngoal: go\n"
            "tools:\n  list_dir: {paths: [.]}\n" + extra,
            name="quick.yaml",
        )
    )
    store = RunStore(home / "runs.db")
    finished = asyncio.run(run_agent(compile_agent(spec), model=model, store=store))
    return spec, store, finished


def follower_for(
    store: RunStore, sender: Sender, channels: list[Channel], run_id: str | None = None
) -> NotifyFollower:
    return NotifyFollower(store, sender, lambda agent: channels, lambda: None, run_id=run_id)


def ended_deliveries(store: RunStore, run_id: str, count: int) -> list[Any] | None:
    """The run's notifications once ``count`` of them exist and none is pending any more."""
    rows = store.notifications(run_id)
    done = len(rows) == count and all(r["status"] != "pending" for r in rows)
    return list(rows) if done else None


def test_a_receiver_that_is_down_or_hangs_changes_nothing_of_the_run_and_is_recorded(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    hanging = HangingReceiver()
    try:
        spec = load_spec(
            write_spec(
                tmp_path,
                "version: 1\nname: quick\nmodel: openai/scripted\ngoal: go\n"
                "tools:\n  list_dir: {paths: [.]}\nnotify:\n"
                f"  - url: json://127.0.0.1:{down_port()}/down\n    events: [run_completed]\n"
                f"  - url: json://127.0.0.1:{hanging.port}/hangs\n    events: [run_completed]\n",
                name="quick.yaml",
            )
        )
        store = RunStore(home / "runs.db")
        # agentrun run's own notifier, as its sink: the same code the command runs.
        notifier = RunNotifier(spec, home, environ={}, timeout_s=0.5)
        model = ScriptedModel([call("list_dir", {"path": "."}), text("done")])
        finished = asyncio.run(
            run_agent(compile_agent(spec), model=model, store=store, sinks=[notifier.sink])
        )
        assert finished.stop_reason is StopReason.COMPLETED
        rows = wait_for(
            lambda: ended_deliveries(store, finished.run_id, 2), "both deliveries to end", WAIT_S
        )
        notifier.finish()
        assert [(r["status"], r["attempts"]) for r in rows] == [("failed", ATTEMPTS)] * 2
        assert all(r["error"] for r in rows)
        log = store.events_since(0, run_id=finished.run_id)
        ended = next(e["id"] for e in log if e["type"] == "run_finished")
        failures = [e for e in log if e["type"] == "notification"]
        # The run's end was recorded before any delivery was final: it never waited for one.
        assert len(failures) == 2 and all(e["id"] > ended for e in failures)
        assert store.run(finished.run_id).stop_reason == "completed"
    finally:
        hanging.close()


def test_two_followers_of_one_event_send_it_once(tmp_path: Path, http: HttpReceiver) -> None:
    home = tmp_path / "home"
    channel = Channel(f"json://127.0.0.1:{http.port}/once", ("run_failed",))
    _, store, finished = _run(
        tmp_path,
        home,
        ScriptedModel([call("list_dir", {"path": "."})], repeat_last=True),
        "budgets: {max_steps: 2}\n",
    )
    assert finished.stop_reason is StopReason.MAX_STEPS
    senders = [Sender(home / "runs.db") for _ in range(2)]
    stores = [RunStore(home / "runs.db") for _ in range(2)]
    followers = [
        follower_for(s, sender, [channel]) for s, sender in zip(stores, senders, strict=True)
    ]
    for follower in followers:  # a daemon and a terminal (or a restarted daemon) both look
        follower.follow()
    for sender in senders:
        assert sender.wait(WAIT_S)
    [row] = store.notifications(finished.run_id)
    assert (row["event"], row["status"]) == ("run_failed", "sent")
    [body] = http.json_bodies("/once")
    assert "failed: max_steps" in body["message"]
    for sender in senders:
        sender.close()


def test_an_unset_secret_is_a_recorded_failure_naming_the_variable(
    tmp_path: Path, http: HttpReceiver
) -> None:
    home = tmp_path / "home"
    channel = Channel(f"json://u:${{NOT_SET_ANYWHERE}}@127.0.0.1:{http.port}/x", ("run_completed",))
    _, store, finished = _run(tmp_path, home, ScriptedModel([text("done")]))
    sender = Sender(home / "runs.db", environ={})
    follower_for(store, sender, [channel]).follow()
    assert sender.wait(WAIT_S)
    [row] = store.notifications(finished.run_id)
    assert row["status"] == "failed" and "NOT_SET_ANYWHERE" in (row["error"] or "")
    assert http.requests == []
    sender.close()


def test_events_are_opt_in_per_channel(tmp_path: Path, http: HttpReceiver) -> None:
    home = tmp_path / "home"
    channels = [
        Channel(f"json://127.0.0.1:{http.port}/failed-only", ("run_failed",)),
        Channel(f"json://127.0.0.1:{http.port}/completed", ("run_completed",)),
    ]
    _, store, _ = _run(tmp_path, home, ScriptedModel([text("done")]))
    sender = Sender(home / "runs.db")
    follower_for(store, sender, channels).follow()
    assert sender.wait(WAIT_S)
    assert [r["path"] for r in http.requests] == ["/completed"]
    assert "completed" in http.json_bodies("/completed")[0]["title"]
    sender.close()


def test_which_stop_reasons_are_failures() -> None:
    assert run_event("completed") == "run_completed"
    assert run_event("escalated") == "run_escalated"
    for reason in ("max_steps", "checks_failed", "error", "model_error", "denied"):
        assert run_event(reason) == "run_failed"
    for reason in ("cancelled", "interrupted", "waiting_approval", "waiting_input"):
        assert run_event(reason) is None
    assert StopReason.CANCELLED not in FAILED_STOPS


def test_channel_settings_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_events("run_failed, approval_waiting") == ("run_failed", "approval_waiting")
    with pytest.raises(ChannelError, match="'run_exploded'"):
        parse_events("run_failed,run_exploded")
    with pytest.raises(ChannelError, match="did you mean 'slack'"):
        daemon_channels(["slakc://abc/def/ghi"], "run_failed")
    with pytest.raises(ChannelError, match="'DAEMON_HOOK'"):
        daemon_channels(["json://u:${DAEMON_HOOK}@127.0.0.1/x"], "run_failed")
    monkeypatch.setenv("DAEMON_HOOK", "x")
    [channel] = daemon_channels(["json://u:${DAEMON_HOOK}@127.0.0.1/x"], "run_failed")
    assert channel.origin == "daemon"


def test_a_spec_channel_secret_must_be_in_env_and_its_scheme_known(tmp_path: Path) -> None:
    from runner.errors import SpecError

    body = (
        "version: 1\nname: n\nmodel: openai/x\ngoal: g\n"
        "notify:\n  - url: json://u:${{HOOK}}@example.com/x\n    events: [run_failed]\n"
        "  - url: {second}\n    events: [run_completed]\n"
    )
    path = write_spec(tmp_path, body.format(second="slakc://a/b/c"))
    with pytest.raises(SpecError) as raised:
        load_spec(path)
    message = " ".join(f"{d.message} {d.hint}" for d in raised.value.diagnostics)
    assert "${HOOK}" in message and "'env' allowlist" in message
    assert "'slakc' is not a notification service Apprise knows" in message
    assert "did you mean 'slack'" in message
    fixed = body.format(second="ntfy://example.com/topic") + "env: [HOOK]\n"
    assert load_spec(write_spec(tmp_path, fixed)).notify[1].url == "ntfy://example.com/topic"


def test_the_cli_run_lists_notifications_in_runs_show(tmp_path: Path, http: HttpReceiver) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "AGENTRUN_HOME": str(home), "FAKE_API_KEY": "sk-fake-000000"}
    notify = f"  - url: json://127.0.0.1:{http.port}/done\n    events: [run_completed]\n"
    with FakeOpenAIServer([text("all done")]) as server:
        spec = writer_spec(tmp_path, server.api_base, notify)
        done = cli(["run", str(spec)], {**env, "HOOK_SECRET": "unused"})
    assert done.returncode == 0, done.stderr
    wait_for(lambda: http.requests, "the webhook")
    run_id = RunStore(home / "runs.db").runs()[0].id
    shown = cli(["runs", "show", run_id], env)
    assert shown.returncode == 0, shown.stderr
    assert "notifications:" in shown.stdout
    assert "run_completed" in shown.stdout and "sent" in shown.stdout


def test_approval_waiting_is_sent_for_a_call_that_waits_and_never_for_one_decided_at_once(
    tmp_path: Path, http: HttpReceiver
) -> None:
    home = tmp_path / "home"
    (tmp_path / "out").mkdir()
    channel = Channel(f"json://127.0.0.1:{http.port}/asks", ("approval_waiting",))
    spec = load_spec(
        write_spec(
            tmp_path,
            "version: 1\nname: asker\nmodel: openai/scripted\ngoal: write\n"
            "autonomy: approve-writes\nunattended: deny\n"
            "tools:\n  write_file: {paths: [out]}\n",
            name="asker.yaml",
        )
    )
    store = RunStore(home / "runs.db")
    model = ScriptedModel([call("write_file", {"path": "out/a", "content": "x"}), text("ok")])
    denied = asyncio.run(run_agent(compile_agent(spec), model=model, store=store))
    now = [0.0]
    sender = Sender(home / "runs.db")
    follower = NotifyFollower(
        store, sender, lambda agent: [channel], lambda: None, monotonic=lambda: now[0]
    )
    follower.follow()
    now[0] += 60
    follower.follow()
    assert sender.wait(WAIT_S)
    assert store.notifications(denied.run_id) == []  # `unattended: deny` decided at once

    # A call still pending while its run goes on (a person at the terminal): after a second.
    arguments = json.dumps({"path": "out/b", "content": "y"})
    store.record(
        ApprovalRequested(
            denied.run_id, "late-1", "write_file", arguments, "f" * 64, "medium", "asks"
        )
    )
    follower.follow()
    assert sender.wait(WAIT_S)
    assert store.notifications(denied.run_id) == []  # not yet: it may be answered at once
    now[0] += APPROVAL_GRACE_S
    follower.follow()
    assert sender.wait(WAIT_S)
    [row] = store.notifications(denied.run_id)
    assert (row["event"], row["status"]) == ("approval_waiting", "sent")
    [body] = http.json_bodies("/asks")
    assert "out/b" in body["message"]
    sender.close()


def test_an_escalated_run_is_notified_with_what_escalated_it(
    tmp_path: Path, http: HttpReceiver
) -> None:
    home = tmp_path / "home"
    channel = Channel(f"json://127.0.0.1:{http.port}/escalated", ("run_escalated", "run_failed"))
    _, store, finished = _run(
        tmp_path,
        home,
        ScriptedModel([call("list_dir", {"path": "."})], repeat_last=True),
        "budgets: {max_steps: 2}\nescalate_on: [max_steps]\n",
    )
    assert finished.stop_reason is StopReason.ESCALATED
    sender = Sender(home / "runs.db")
    follower_for(store, sender, [channel]).follow()
    assert sender.wait(WAIT_S)
    [body] = http.json_bodies("/escalated")
    assert body["title"] == "[agentrun] quick: run escalated (max_steps)"
    assert f"agentrun resume {finished.run_id} --add max_steps=N" in body["message"]
    [row] = store.notifications(finished.run_id)
    assert (row["event"], row["status"]) == ("run_escalated", "sent")  # not also run_failed
    sender.close()


def _paused_daemon_run(store: RunStore, run_id: str, stop: StopReason) -> None:
    """Record a manual run of agent ``quick`` that stopped with ``stop``, as a worker would."""
    from runner.events import QuestionAsked, RunFinished, RunStarted
    from runner.spec import Risk

    store.record(
        RunStarted(run_id, "quick", "openai/scripted", "quick.yaml", "0", {}, "go", "manual")
    )
    if stop is StopReason.WAITING_APPROVAL:
        store.record(
            ApprovalRequested(run_id, "c1", "write_file", "{}", "d1", Risk.MEDIUM, "to write")
        )
    if stop is StopReason.WAITING_INPUT:
        store.record(QuestionAsked(run_id, "q1", "Which one?"))
    store.record(RunFinished(run_id, stop, None, 1, 0, 0, 0, None, 0.1))


def test_a_starting_daemon_notifies_runs_that_began_waiting_while_none_ran(
    tmp_path: Path, http: HttpReceiver
) -> None:
    from runner.daemon.notifying import DaemonNotifications, NotifySettings
    from runner.store import new_run_id

    home = tmp_path / "home"
    store = RunStore(home / "runs.db")
    events = ("approval_waiting", "question_waiting", "run_completed")
    channel = Channel(f"json://127.0.0.1:{http.port}/start", events, "daemon")
    # While no daemon ran: one run paused on an approval, one on a question answered since,
    # and one completed (its end was the last daemon's to notify, or a terminal's).
    waiting, answered, completed = new_run_id(), new_run_id(), new_run_id()
    _paused_daemon_run(store, waiting, StopReason.WAITING_APPROVAL)
    _paused_daemon_run(store, answered, StopReason.WAITING_INPUT)
    store.answer_question(answered, "q1", "this one")
    _paused_daemon_run(store, completed, StopReason.COMPLETED)
    notifications = DaemonNotifications(
        store, home, lambda: {}, lambda: None, NotifySettings(channels=(channel,))
    )
    try:
        notifications.take_over(store.last_event_id())
        notifications.follow()
        sent = wait_for(lambda: http.json_bodies("/start") or None, "the notification", WAIT_S)
        notifications.follow()  # a second look sends nothing more
    finally:
        notifications.close()
    assert len(sent) == 1 and waiting in json.dumps(sent[0])
    assert [r["event"] for r in store.notifications()] == ["approval_waiting"]


def test_a_send_still_hanging_when_the_sender_closes_does_not_hold_the_process_open(
    tmp_path: Path,
) -> None:
    import threading

    from runner.notify.messages import Message
    from runner.store import new_run_id

    home = tmp_path / "home"
    store = RunStore(home / "runs.db")
    run_id = new_run_id()
    _paused_daemon_run(store, run_id, StopReason.COMPLETED)
    hanging = HangingReceiver()
    sender = Sender(home / "runs.db", environ={}, timeout_s=30.0, attempts=1)
    try:
        channel = Channel(f"json://127.0.0.1:{hanging.port}/hangs", ("run_completed",))
        sender.submit(run_id, "run_completed", "k", channel, Message("t", "b"))
        wait_for(lambda: hanging.held or None, "the send to connect", WAIT_S)
        sender.close(wait_s=0)
        sending = [t for t in threading.enumerate() if t.name.startswith("agentrun-notify")]
        # The send still hangs; the interpreter joins only non-daemon threads at exit, so
        # `agentrun run` ends without waiting for it (the delivery stays pending).
        assert sending and not [t for t in sending if not t.daemon]
        assert [r["status"] for r in store.notifications(run_id)] == ["pending"]
    finally:
        hanging.close()  # the send fails at once, with no attempt left: its thread ends
    wait_for(lambda: not any(t.is_alive() for t in sending) or None, "the send to end", WAIT_S)
    assert [r["status"] for r in store.notifications(run_id)] == ["failed"]
