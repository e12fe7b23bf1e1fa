"""A run's oversight records: checks, guards, questions, escalations and budget grants.

Split from :mod:`runner.store.recording` along a concept: the records of a run's oversight
(did its work pass its ``checks``, what did its ``guards`` say, what did it ask a person,
was it escalated, what more budget did a person grant), as opposed to what the loop did.
The class is a part of :class:`runner.store.recording.SQLRunStore`, which holds the
connection (SQLite or PostgreSQL). Every change a person makes here is an entry of the run
event log in the same transaction, so a daemon following the log
(:mod:`runner.daemon.continuation`) sees it.
"""

from __future__ import annotations

import json
from typing import Any, cast

from ..events import CheckRan, GuardDecided, QuestionAnswered, QuestionAsked
from . import event_log
from .database import Database, joined_transaction
from .rows import CheckRunRow, EscalationRow, GrantRow, GuardDecisionRow, QuestionRow
from .schedule import now_iso


class OversightRecords:
    """Checks, guard decisions, questions, escalations and grants, on the store's connection."""

    db: Database

    # -- written by the loop, through record() ----------------------------------------------

    def _oversight(self, event: CheckRan | GuardDecided | QuestionAsked | QuestionAnswered) -> None:
        """Write one of the loop's oversight events (the store's ``record`` hands them here)."""
        match event:
            case CheckRan():
                self._check_ran(event)
            case GuardDecided():
                self._guard_decided(event)
            case QuestionAsked():
                self._question_asked(event)
            case QuestionAnswered():
                self._question_answered(event)

    def _check_ran(self, event: CheckRan) -> None:
        self.db.execute(
            """INSERT INTO check_runs (run_id, step, attempt, check_index, kind, name, passed,
               output, duration_s, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                event.run_id,
                event.step,
                event.attempt,
                event.index,
                event.kind,
                event.name,
                int(event.passed),
                event.output,
                event.duration_s,
                now_iso(),
            ),
        )

    def _guard_decided(self, event: GuardDecided) -> None:
        self.db.execute(
            """INSERT INTO guard_decisions (run_id, call_id, tool, guard, decision, reason,
               failed, duration_s, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                event.run_id,
                event.call_id,
                event.tool,
                event.guard,
                event.decision,
                event.reason,
                int(event.failed),
                event.duration_s,
                now_iso(),
            ),
        )

    def _question_asked(self, event: QuestionAsked) -> None:
        # Asked again on a resume (the same call): the first question stands.
        self.db.execute(
            """INSERT INTO questions (run_id, call_id, question, context, choices_json,
               status, created_at, expires_at) VALUES (?, ?, ?, ?, ?, 'waiting', ?, ?)
               ON CONFLICT DO NOTHING""",
            (
                event.run_id,
                event.call_id,
                event.question,
                event.context,
                json.dumps(event.choices),
                now_iso(),
                event.expires_at,
            ),
        )

    def _question_answered(self, event: QuestionAnswered) -> None:
        self._answer(event.run_id, event.call_id, event.answer, event.by, record_unasked=True)

    # -- checks and guards ------------------------------------------------------------------

    def check_runs(self, run_id: str) -> list[CheckRunRow]:
        """The checks run for ``run_id``, in order."""
        rows = self.db.execute("SELECT * FROM check_runs WHERE run_id = ? ORDER BY id", (run_id,))
        return [cast(CheckRunRow, {**dict(r), "passed": bool(r["passed"])}) for r in rows]

    def guard_decisions(self, run_id: str) -> list[GuardDecisionRow]:
        """The guards' answers for ``run_id``'s tool calls, in order."""
        rows = self.db.execute(
            "SELECT * FROM guard_decisions WHERE run_id = ? ORDER BY id", (run_id,)
        )
        return [cast(GuardDecisionRow, {**dict(r), "failed": bool(r["failed"])}) for r in rows]

    # -- questions --------------------------------------------------------------------------

    def questions(
        self, run_id: str | None = None, status: str | None = "waiting"
    ) -> list[QuestionRow]:
        """Questions to people, oldest first, optionally of one run and/or one status."""
        rows = of_run_and_status(
            self.db, "questions", run_id, status, "created_at, run_id, call_id"
        )
        return [_question_row(r) for r in rows]

    def question(self, run_id: str, call_id: str) -> QuestionRow | None:
        """One question, or None."""
        row = self.db.execute(
            "SELECT * FROM questions WHERE run_id = ? AND call_id = ?", (run_id, call_id)
        ).fetchone()
        return None if row is None else _question_row(row)

    def answer_question(self, run_id: str, call_id: str, answer: str, by: str = "cli") -> bool:
        """Answer a waiting question; False when it is not waiting (answered, timed out, none).

        The answer is a ``question_answered`` entry of the run event log, in the same
        transaction.
        """
        return self._answer(run_id, call_id, answer, by, record_unasked=False)

    def _answer(
        self, run_id: str, call_id: str, answer: str, by: str, record_unasked: bool
    ) -> bool:
        now = now_iso()
        with joined_transaction(self.db):
            cursor = self.db.execute(
                """UPDATE questions SET status = 'answered', answer = ?, answered_by = ?,
                   answered_at = ? WHERE run_id = ? AND call_id = ? AND status = 'waiting'""",
                (answer, by, now, run_id, call_id),
            )
            done = cursor.rowcount == 1
            if not done and record_unasked:
                self.db.execute(
                    """INSERT INTO questions (run_id, call_id, question, status, answer,
                       answered_by, created_at, answered_at)
                       VALUES (?, ?, '', 'answered', ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
                    (run_id, call_id, answer, by, now, now),
                )
                done = True
            if done:
                data = {"call_id": call_id, "by": by}
                event_log.append(self.db, run_id, "question_answered", data, now)
        return done

    def expire_questions(self, now: str | None = None) -> list[QuestionRow]:
        """Mark waiting questions past their ``expires_at`` as ``timed_out``; those rows.

        Each is a ``question_timed_out`` entry of the run event log. In a transaction already
        open (a decision link's use: :meth:`use_decision_link`) it joins it.
        """
        moment = now or now_iso()
        with joined_transaction(self.db):
            rows = self.db.execute(
                """UPDATE questions SET status = 'timed_out', answered_at = ?
                   WHERE status = 'waiting' AND expires_at IS NOT NULL AND expires_at <= ?
                   RETURNING *""",
                (moment, moment),
            ).fetchall()
            for row in rows:
                data = {"call_id": row["call_id"]}
                event_log.append(self.db, row["run_id"], "question_timed_out", data, moment)
        return [_question_row(r) for r in rows]

    def _time_out_questions(self, run_id: str) -> None:
        """Mark ``run_id``'s waiting questions ``timed_out`` (its run ended ``answer_timeout``).

        In the caller's transaction, with no log entry: the run's ``run_finished`` says it,
        and nobody may answer a question of a run that cannot continue.
        """
        self.db.execute(
            """UPDATE questions SET status = 'timed_out', answered_at = ?
               WHERE run_id = ? AND status = 'waiting'""",
            (now_iso(), run_id),
        )

    # -- escalations and grants -------------------------------------------------------------

    def _open_escalation(self, run_id: str, stop_reason: str, message: str) -> None:
        """Record run ``run_id`` as escalated by ``stop_reason`` (in the caller's transaction)."""
        self.db.execute(
            """INSERT INTO escalations (run_id, stop_reason, message, status, created_at)
               VALUES (?, ?, ?, 'open', ?)""",
            (run_id, stop_reason, message, now_iso()),
        )

    def escalations(
        self, run_id: str | None = None, status: str | None = "open"
    ) -> list[EscalationRow]:
        """Escalations, oldest first, optionally of one run and/or one status."""
        rows = of_run_and_status(self.db, "escalations", run_id, status, "id")
        return [cast(EscalationRow, dict(r)) for r in rows]

    def decide_escalation(
        self,
        run_id: str,
        status: str,
        by: str,
        reason: str = "",
        grants: dict[str, float] | None = None,
    ) -> bool:
        """Close (``closed``) or continue (``continued``) run ``run_id``'s open escalation.

        ``grants`` (budget name → amount added) are recorded with the decision, in one
        transaction, with an ``escalation_decided`` entry of the run event log. Closing also
        gives the run back the stop reason that escalated it (status ``finished``: no longer
        resumable) and drops its sealed messages. False when the run has no open escalation
        (someone decided first).
        """
        now = now_iso()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            cursor = self.db.execute(
                """UPDATE escalations SET status = ?, decided_by = ?, decision_reason = ?,
                   decided_at = ? WHERE run_id = ? AND status = 'open'""",
                (status, by, reason, now, run_id),
            )
            done = cursor.rowcount > 0
            if done and status == "closed":
                # Closed: the run ends with the reason that escalated it, for good.
                self.db.execute(
                    """UPDATE runs SET status = 'finished', stop_reason = escalated_from
                       WHERE id = ? AND stop_reason = 'escalated' AND escalated_from IS NOT NULL""",
                    (run_id,),
                )
                self.db.execute("DELETE FROM sealed_messages WHERE run_id = ?", (run_id,))
            if done:
                for budget, amount in (grants or {}).items():
                    self.db.execute(
                        """INSERT INTO budget_grants (run_id, budget, amount, granted_by, reason,
                           created_at) VALUES (?, ?, ?, ?, ?, ?)""",
                        (run_id, budget, amount, by, reason, now),
                    )
                data = {"status": status, "by": by, "reason": reason, "grants": grants or {}}
                event_log.append(self.db, run_id, "escalation_decided", data, now)
        except BaseException:
            self.db.rollback()
            raise
        self.db.commit()
        return done

    def grants(self, run_id: str) -> list[GrantRow]:
        """The budget grants of ``run_id``, oldest first."""
        rows = self.db.execute(
            "SELECT * FROM budget_grants WHERE run_id = ? ORDER BY id", (run_id,)
        )
        return [cast(GrantRow, dict(r)) for r in rows]


def _question_row(row: Any) -> QuestionRow:
    data = dict(row)
    data["choices"] = json.loads(data.pop("choices_json") or "[]")
    return cast(QuestionRow, data)


def of_run_and_status(
    db: Database, table: str, run_id: str | None, status: str | None, order: str
) -> list[Any]:
    """Rows of ``table`` of one run and/or one status when given, in ``order``.

    ``table`` (``approvals``, ``questions``, ``escalations``) and ``order`` are literals of
    the store's code, never input.
    """
    query = f"SELECT * FROM {table} WHERE 1 = 1"
    params: list[Any] = []
    if run_id is not None:
        query += " AND run_id = ?"
        params.append(run_id)
    if status is not None:
        query += " AND status = ?"
        params.append(status)
    return db.execute(f"{query} ORDER BY {order}", params).fetchall()
