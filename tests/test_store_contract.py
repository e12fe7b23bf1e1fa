"""The store's once-only operations, on both backends and between connections: what several
processes (daemons, workers, the console, the CLI) may race for is done exactly once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from runner.errors import StoreError
from runner.events import QuestionAsked, RunFinished, RunStarted, StopReason
from runner.store import FireRow, ResumeClaimed, RunStore
from runner.store.location import StoreLocation, open_store

SLOT = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


def race(location: StoreLocation, attempt: Callable[[RunStore], Any], n: int = 4) -> list[Any]:
    """``attempt`` run at once by ``n`` threads, each with a store (a connection) of its own."""
    stores = [open_store(location) for _ in range(n)]
    start = threading.Barrier(n)
    results: list[Any] = [None] * n

    def one(index: int) -> None:
        start.wait()
        try:
            results[index] = attempt(stores[index])
        except Exception as error:  # what each contender got is the result
            results[index] = error

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()
    return results


def test_a_slot_fired_by_racing_daemons_is_recorded_once(
    store_location: StoreLocation, store: RunStore
) -> None:
    results = race(
        store_location,
        lambda s: s.record_fire(FireRow("a", "cron", 0, f"R{id(s)}", "started", slot=SLOT)),
    )
    assert sorted(results) == [False, False, False, True]
    [fire] = store.unstarted_fires()
    assert fire.slot == SLOT


def test_a_run_is_claimed_for_resume_by_one_connection(
    store_location: StoreLocation, store: RunStore
) -> None:
    store.record(RunStarted("R1", "a", "m", "p", "sha", {}, "goal"))
    store.record(RunFinished("R1", StopReason.INTERRUPTED, None, 1, 0, 0, 0, None, 0.1))
    results = race(store_location, lambda s: s.claim_for_resume("R1"))
    assert results.count(None) == 1
    assert all(isinstance(r, ResumeClaimed) for r in results if r is not None)
    row = store.run("R1")
    assert row is not None and row.status == "running"


def test_a_notification_is_claimed_once_and_its_end_logged(
    store_location: StoreLocation, store: RunStore
) -> None:
    store.record(RunStarted("R1", "a", "m", "p", "sha", {}, "goal"))
    results = race(
        store_location, lambda s: s.claim_notification("R1", "run_failed", "R1:fail", "json://x")
    )
    [claimed] = [r for r in results if r is not None]
    assert isinstance(claimed, int) and results.count(None) == 3
    seen = store.last_event_id()
    store.notification_attempted(claimed, "sent", 1, None)
    [row] = store.notifications("R1")
    assert (row["id"], row["status"], row["attempts"]) == (claimed, "sent", 1)
    [logged] = store.events_since(seen)
    assert (logged["type"], logged["status"], logged["channel"]) == (
        "notification",
        "sent",
        "json://x",
    )


def test_a_decision_link_is_used_once_and_a_failed_decision_keeps_it_unused(
    store_location: StoreLocation, store: RunStore
) -> None:
    store.record(RunStarted("R1", "a", "m", "p", "sha", {}, "goal"))
    store.add_decision_link("n1", "R1", "c1", "approve", "sha", "2999-01-01T00:00:00.000+00:00")

    def failing() -> tuple[int, str]:
        raise StoreError("the decision failed")

    with pytest.raises(StoreError, match="the decision failed"):
        store.use_decision_link("n1", "cli", failing)
    link = store.decision_link("n1")
    assert link is not None and link["used_at"] is None  # rolled back with the decision
    results = race(store_location, lambda s: s.use_decision_link("n1", "cli", lambda: (1, "ok")))
    assert sorted(map(str, results)) == ["(1, 'ok')", "None", "None", "None"]
    link = store.decision_link("n1")
    assert link is not None and link["outcome"] == "ok" and link["used_at"] is not None


def test_a_question_is_answered_once_then_cannot_time_out(
    store_location: StoreLocation, store: RunStore
) -> None:
    store.record(RunStarted("R1", "a", "m", "p", "sha", {}, "goal"))
    past = "2000-01-01T00:00:00.000+00:00"
    store.record(QuestionAsked("R1", "c1", "Go?", "", ["yes", "no"], past))
    store.record(QuestionAsked("R1", "c2", "And?", "", [], past))
    results = race(store_location, lambda s: s.answer_question("R1", "c1", "yes", by=f"p{id(s)}"))
    assert sorted(results) == [False, False, False, True]
    [expired] = store.expire_questions()
    assert expired["call_id"] == "c2" and expired["status"] == "timed_out"
    assert [q["status"] for q in store.questions("R1", status=None)] == ["answered", "timed_out"]
    log = [e["type"] for e in store.events_since(0, run_id="R1")]
    assert log.count("question_answered") == 1 and log.count("question_timed_out") == 1


def test_an_escalation_is_decided_once_with_its_grants(
    store_location: StoreLocation, store: RunStore
) -> None:
    store.record(RunStarted("R1", "a", "m", "p", "sha", {}, "goal"))
    store.record(
        RunFinished(
            "R1",
            StopReason.ESCALATED,
            None,
            5,
            0,
            0,
            0,
            None,
            0.1,
            escalated_from=StopReason.MAX_STEPS,
        )
    )
    results = race(
        store_location,
        lambda s: s.decide_escalation("R1", "continued", "ops", "go on", {"max_steps": 5.0}),
    )
    assert sorted(results) == [False, False, False, True]
    [grant] = store.grants("R1")
    assert (grant["budget"], grant["amount"], grant["granted_by"]) == ("max_steps", 5.0, "ops")
    [escalation] = store.escalations("R1", status=None)
    assert escalation["status"] == "continued"
