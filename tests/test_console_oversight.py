"""The console's run timeline shows what oversight recorded: guards, escalations, notifications."""

from __future__ import annotations

from pathlib import Path

from runner.events import GuardDecided, RunFinished, RunStarted, StopReason
from runner.store import RunStore, new_run_id
from tests.test_web_api import start_console


def test_the_run_page_shows_guard_answers_escalation_decisions_and_notifications(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    store = RunStore(home / "runs.db")
    run_id = new_run_id()
    store.record(RunStarted(run_id, "fixer", "openai/x", "fixer.yaml", "0", {}, "go", "manual"))
    store.record(
        GuardDecided(run_id, "c1", "shell", "no force push", "deny", "force push to main", 0.01)
    )
    store.record(GuardDecided(run_id, "c2", "shell", "guard 2", "ask", "exit status 3", 0.02, True))
    store.record(
        RunFinished(
            run_id,
            StopReason.ESCALATED,
            None,
            3,
            2,
            0,
            0,
            None,
            1.0,
            escalated_from=StopReason.MAX_STEPS,
        )
    )
    store.decide_escalation(run_id, "continued", "cli", "one more try", {"max_steps": 5.0})
    sent = store.claim_notification(run_id, "run_escalated", "k1", "json://127.0.0.1/hook")
    failed = store.claim_notification(run_id, "run_escalated", "k1", "ntfy://ntfy.sh/****")
    assert sent is not None and failed is not None
    store.notification_attempted(sent, "sent", 1, None)
    store.notification_attempted(failed, "failed", 3, "connection refused")
    store.close()
    console = start_console(home)
    try:
        with console.client() as client:
            page = client.get(f"/runs/{run_id}")
    finally:
        console.stop()
    assert page.status_code == 200, page.text
    text = page.text
    assert "<b>Guard no force push</b> on <code>shell</code>" in text
    assert "deny: “force push to main”" in text
    assert "(the guard failed: counted as ask)" in text
    assert "<b>Escalation continued</b> by <code>cli</code>, granted max_steps +5.0" in text
    assert "<b>Notification sent</b>: run_escalated to <code>json://127.0.0.1/hook</code>" in text
    assert "<b>Notification failed</b>: run_escalated to <code>ntfy://ntfy.sh/****</code>" in text
    assert "3 attempts" in text and "connection refused" in text
    # A live page fetches its timeline again when any of them is recorded.
    live = text.split('hx-trigger="', 1)[1].split('"', 1)[0]
    assert all(kind in live for kind in ("guard_decided", "escalation_decided", "notification"))
