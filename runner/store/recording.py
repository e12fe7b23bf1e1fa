"""Recording runs in SQL: the part of the run store both backends share.

:class:`SQLRunStore` holds every write and query of the :class:`RunStore` interface, written
once in SQL both SQLite and PostgreSQL take (``?`` placeholders, ``INSERT ... ON CONFLICT``,
``RETURNING id``), and runs it on ``self.db``, a :class:`runner.store.database.Database`:
a :class:`sqlite3.Connection` (:class:`runner.store.sqlite.SQLiteRunStore`) or the
PostgreSQL adapter (:class:`runner.store.postgres.PostgresRunStore`). A backend opens the
connection, migrates it, and says where its seal key is; everything else is here.

It records :mod:`runner.events` as they happen (:meth:`SQLRunStore.record`).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any, assert_never, cast

from ..errors import StoreError
from ..events import (
    ApprovalDecided,
    ApprovalRequested,
    CheckRan,
    ConnectionDecided,
    Event,
    GuardDecided,
    Heartbeat,
    LimitHit,
    MessageAdded,
    ModelCalled,
    QuestionAnswered,
    QuestionAsked,
    RunFinished,
    RunNotice,
    RunResumed,
    RunStarted,
    StopReason,
    ToolCalled,
    ToolCallStatus,
    ToolStarted,
)
from ..processes import process_alive
from ..spec import Risk
from . import event_log, lineage
from .database import Database, joined_transaction
from .interface import HEARTBEAT_STALE_S, ResumeClaimed, RunAlreadyRecorded, RunStore
from .leases import StoreLeases
from .notifications import NotificationRecords
from .oversight import OversightRecords, of_run_and_status
from .queries import RunQueries, tool_call_row
from .rows import (
    RESUMABLE_STOPS,
    ApprovalRow,
    NoticeRow,
    RunRow,
    SandboxEventRow,
    ToolCallRow,
)
from .schedule import ScheduleRecords, iso, now_iso
from .sealing import SealKey


class SQLRunStore(
    RunQueries, ScheduleRecords, OversightRecords, NotificationRecords, StoreLeases, RunStore
):
    """The run store's records and queries in SQL, on the connection ``self.db``.

    A backend's ``__init__`` sets :attr:`db`, :attr:`name` (where the store is, fit to
    print), :attr:`seal_key` and :attr:`integrity_errors`, and calls :meth:`_start`.
    """

    db: Database
    #: Where the store is, fit to print (a file, or a URL with its password masked).
    name: str
    seal_key: SealKey
    #: The driver's exceptions for a violated unique or foreign key.
    integrity_errors: tuple[type[Exception], ...]
    #: The names of the migrations this process applied when it opened the store.
    migrations_applied: list[str]

    def _start(self) -> None:
        """The per-process state of recording (calls under way, results just written)."""
        # Low-risk tool calls under way, which have no journal row (see _tool_started):
        # (run id, call id) -> when the call started.
        self._unjournaled: dict[tuple[str, str], str] = {}
        # The result just recorded for each tool call, until its tool message comes (in the
        # same transaction): (run id, call id) -> (tool_calls row id, result). See
        # _message_added.
        self._results: dict[tuple[str, str], tuple[int, str]] = {}

    # -- recording -------------------------------------------------------------------------

    def record(self, event: Event) -> None:
        """Write one loop event.

        Most events are committed at once. The three the loop always follows at once, with no
        wait in between, with another event (:class:`ModelCalled` and an assistant
        :class:`MessageAdded` by the next event of the step; :class:`ToolCalled` by the tool
        result's :class:`MessageAdded`) are written in the same transaction as what follows
        them. A step so costs two commits instead of five (an insert took about 33 µs of CPU
        committed on its own and about 15 µs in a shared transaction, on the reference
        machine), and everything is still committed before each wait: before the model is
        called (the last message commits), before a tool runs (what came before commits, with
        the call's ``ToolStarted`` journal entry unless the call is low-risk: a resumed run
        repeats an interrupted low-risk call without asking, so it needs none, and its row is
        written once, with its result) and before a person is asked (``ApprovalRequested``
        commits). The records of one transaction land together or not at all.
        """
        follows = _followed_at_once(event)
        if not self.db.in_transaction and (follows or event_log.entry(event, None) is not None):
            self.db.execute("BEGIN")  # a row and its log entry land together
        try:
            self._write(event)
        except BaseException:
            if self.db.in_transaction:
                self.db.rollback()  # none of the transaction's records, not some
            raise
        if not follows and self.db.in_transaction:
            self.db.commit()

    def _write(self, event: Event) -> None:
        """Write ``event``'s rows, and its entry in the run event log when it has one."""
        row: int | None = None
        match event:
            case ModelCalled():
                row = self._model_called(event)
            case ToolStarted():
                row = self._tool_started(event)
            case ToolCalled():
                row = self._tool_called(event)
            case ApprovalDecided():
                self.decide(
                    event.run_id,
                    event.call_id,
                    event.approved,
                    event.reason,
                    event.by,
                    record_unasked=True,
                )
            case RunStarted():
                self._run_started(event)
            case RunResumed():
                self._run_resumed(event)
            case MessageAdded():
                self._message_added(event)
            case ApprovalRequested():
                self._approval_requested(event)
            case CheckRan() | GuardDecided() | QuestionAsked() | QuestionAnswered():
                self._oversight(event)
            case RunNotice():
                self._run_notice(event)
            case ConnectionDecided() | LimitHit():
                self._sandbox_event(event)
            case Heartbeat():
                self._heartbeat(event)
            case RunFinished():
                self._run_finished(event)
            case _:
                assert_never(event)
        logged = event_log.entry(event, row)
        if logged is not None:
            event_log.append(self.db, event.run_id, logged[0], logged[1], now_iso())

    def _run_started(self, event: RunStarted) -> None:
        try:
            self._insert_run(event)
        except self.integrity_errors as error:
            raise RunAlreadyRecorded(
                f"run {event.run_id} is already in the run store {self.name!r}: {error}"
            ) from error

    def _insert_run(self, event: RunStarted) -> None:
        self.db.execute(
            """INSERT INTO runs (id, agent, status, model, spec_path, spec_sha256, trigger,
               inputs_json, goal, pid, hostname, started_at, heartbeat_at)
               VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                event.run_id,
                event.agent,
                event.model,
                event.spec_path,
                event.spec_sha256,
                event.trigger,
                json.dumps(event.inputs),
                event.goal,
                os.getpid(),
                socket.gethostname(),
                now_iso(),
                now_iso(),
            ),
        )

    def seal_message(self, run_id: str, seq: int, message: dict[str, Any]) -> None:
        """Keep the exact (unredacted) form of message ``seq`` of a run, encrypted.

        Only a resume reads it (:meth:`sealed_messages`); it is never exported or shown,
        and it is deleted when the run ends in a way that cannot be resumed
        (:mod:`runner.store.sealing` says why it is encrypted).
        """
        context = f"{run_id}/{seq}".encode()
        nonce, ciphertext = self.seal_key.seal(json.dumps(message).encode(), context)
        self.db.execute(
            """INSERT INTO sealed_messages (run_id, seq, nonce, ciphertext)
               VALUES (?, ?, ?, ?) ON CONFLICT (run_id, seq)
               DO UPDATE SET nonce = excluded.nonce, ciphertext = excluded.ciphertext""",
            (run_id, seq, nonce, ciphertext),
        )

    def sealed_messages(self, run_id: str) -> dict[int, dict[str, Any]]:
        """The sealed messages of a run, opened: ``{seq: message}``.

        Raises:
            StoreError: the seal key is missing or another one, or a row was changed.
        """
        rows = self.db.execute(
            "SELECT seq, nonce, ciphertext FROM sealed_messages WHERE run_id = ? ORDER BY seq",
            (run_id,),
        ).fetchall()
        return {
            row["seq"]: json.loads(
                self.seal_key.open(
                    row["nonce"], row["ciphertext"], f"{run_id}/{row['seq']}".encode()
                )
            )
            for row in rows
        }

    def claim_for_resume(self, run_id: str) -> None:
        """Mark a resumable run ``running`` by this process, in one atomic step.

        Of several processes resuming the same run at once exactly one succeeds; the others
        get :class:`ResumeClaimed`, which says who holds it.

        Raises:
            ResumeClaimed: the run is running elsewhere, or not resumable.
        """
        stops = sorted(RESUMABLE_STOPS)
        claimed = self.db.execute(
            f"""UPDATE runs SET status = 'running', pid = ?, hostname = ?, heartbeat_at = ?
               WHERE id = ? AND status != 'running'
               AND coalesce(stop_reason, status) IN ({", ".join("?" * len(stops))})""",
            (os.getpid(), socket.gethostname(), now_iso(), run_id, *stops),
        ).rowcount
        if not claimed:
            row = self.run(run_id)
            if row is None:
                raise StoreError(f"no run with id {run_id!r}")
            raise ResumeClaimed(row)

    def release_claim(self, run: RunRow) -> None:
        """Undo :meth:`claim_for_resume` (the resume failed before the run went on).

        Args:
            run: the run as it was read before the claim.
        """
        self.db.execute(
            """UPDATE runs SET status = ?, pid = ?, hostname = ?, heartbeat_at = ?
               WHERE id = ? AND status = 'running' AND pid = ?""",
            (run.status, run.pid, run.hostname, now_iso(), run.id, os.getpid()),
        )

    def _run_resumed(self, event: RunResumed) -> None:
        self.db.execute(
            """UPDATE runs SET status = 'running', stop_reason = NULL, ended_at = NULL, pid = ?,
               hostname = ?, heartbeat_at = ? WHERE id = ?""",
            (os.getpid(), socket.gethostname(), now_iso(), event.run_id),
        )

    def _message_added(self, event: MessageAdded) -> None:
        """Write a conversation message; a tool result it repeats is not written again.

        A tool message comes right after its call's :class:`ToolCalled`. When its content is
        exactly the result just written to ``tool_calls.result`` (the loop sends the model
        what it records, both redacted alike), the row holds ``"content": null`` and the
        ``tool_calls`` row's id, and :meth:`messages` puts the result back: a megabyte of
        tool output is stored once, not twice. Any other message is written whole.
        """
        message = event.message
        row: int | None = None
        if message.get("role") == "tool":
            recorded = self._results.pop((event.run_id, str(message.get("tool_call_id"))), None)
            if recorded is not None and message.get("content") == recorded[1]:
                row = recorded[0]
                message = {**message, "content": None}
        self.db.execute(
            """INSERT INTO messages (run_id, seq, message_json, tool_call_row)
               VALUES (?, ?, ?, ?) ON CONFLICT (run_id, seq) DO UPDATE
               SET message_json = excluded.message_json, tool_call_row = excluded.tool_call_row""",
            (event.run_id, event.seq, json.dumps(message), row),
        )

    def _model_called(self, event: ModelCalled) -> int:
        cursor = self.db.execute(
            """INSERT INTO model_calls (run_id, step, model, input_tokens, output_tokens,
               cost_usd, duration_s, content, tool_calls_json, error, created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id""",
            (
                event.run_id,
                event.step,
                event.model,
                event.input_tokens,
                event.output_tokens,
                event.cost_usd,
                event.duration_s,
                event.content,
                json.dumps(event.tool_calls),
                event.error,
                now_iso(),
            ),
        )
        return int(cursor.fetchall()[0][0])

    def _insert_tool_call(
        self,
        event: ToolStarted | ToolCalled,
        status: ToolCallStatus,
        result: str,
        error: str | None,
        duration_s: float,
        created_at: str | None = None,
    ) -> int:
        """Insert one tool_calls row; its id."""
        cursor = self.db.execute(
            """INSERT INTO tool_calls (run_id, step, call_id, tool, risk, arguments, decision,
               status, result, error, duration_s, created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id""",
            (
                event.run_id,
                event.step,
                event.call_id,
                event.tool,
                event.risk,
                event.arguments,
                event.decision,
                status,
                result,
                error,
                duration_s,
                created_at or now_iso(),
            ),
        )
        return int(cursor.fetchall()[0][0])

    def _tool_started(self, event: ToolStarted) -> int | None:
        if event.risk == Risk.LOW:
            # A low-risk call reads and changes nothing, so a run resumed after a crash runs
            # it again without asking (runner.loop): it needs no journal row, and its one row
            # is written with its result. What came before it is still committed now.
            self._unjournaled[event.run_id, event.call_id] = now_iso()
            return None
        # The journal entry: written before the tool runs.
        return self._insert_tool_call(event, ToolCallStatus.RUNNING, "", None, 0.0)

    def _tool_called(self, event: ToolCalled) -> int:
        started = self._unjournaled.pop((event.run_id, event.call_id), None)
        if started is not None:
            row = self._insert_tool_call(
                event, event.status, event.result, event.error, event.duration_s, started
            )
        else:
            journal = self.db.execute(
                """SELECT max(id) FROM tool_calls WHERE run_id = ? AND call_id = ?
                   AND status = 'running'""",
                (event.run_id, event.call_id),
            ).fetchone()[0]
            if journal is not None:
                row = int(journal)
                self.db.execute(
                    """UPDATE tool_calls SET status = ?, result = ?, error = ?, duration_s = ?,
                       decision = ? WHERE id = ?""",
                    (
                        event.status,
                        event.result,
                        event.error,
                        event.duration_s,
                        event.decision,
                        row,
                    ),
                )
            else:  # refused or proposed calls never started: no journal entry
                row = self._insert_tool_call(
                    event, event.status, event.result, event.error, event.duration_s
                )
        self._results[event.run_id, event.call_id] = (row, event.result)
        return row

    def _approval_requested(self, event: ApprovalRequested) -> None:
        pending = self.db.execute(
            """SELECT 1 FROM approvals WHERE run_id = ? AND call_id = ? AND status = 'pending'
               AND arguments_sha256 = ?""",
            (event.run_id, event.call_id, event.arguments_sha256),
        ).fetchone()
        if pending:
            return
        self.db.execute(
            """INSERT INTO approvals (run_id, call_id, tool, arguments, arguments_sha256, risk,
               reason, note, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)""",
            (
                event.run_id,
                event.call_id,
                event.tool,
                event.arguments,
                event.arguments_sha256,
                event.risk,
                event.reason,
                event.note,
                now_iso(),
            ),
        )

    def _run_notice(self, event: RunNotice) -> None:
        self.db.execute(
            "INSERT INTO notices (at, level, agent, run_id, message) VALUES (?, ?, ?, ?, ?)",
            (now_iso(), event.level, event.agent, event.run_id, event.message),
        )

    def _sandbox_event(self, event: ConnectionDecided | LimitHit) -> None:
        values: tuple[str, int | None, str | None, int | None, str | None]
        if isinstance(event, ConnectionDecided):
            values = ("connection", int(event.allowed), event.host, event.port, event.address)
            limit, detail = None, event.reason
        else:
            values = ("limit", None, None, None, None)
            limit, detail = event.limit, event.detail
        self.db.execute(
            """INSERT INTO sandbox_events (run_id, at, source, call_id, kind, allowed, host,
               port, address, limit_name, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (event.run_id, now_iso(), event.source, event.call_id, *values, limit, detail),
        )

    def sandbox_events(self, run_id: str) -> list[SandboxEventRow]:
        """What the run's sandbox did (connections allowed and refused, limits hit), in order."""
        rows = self.db.execute(
            "SELECT * FROM sandbox_events WHERE run_id = ? ORDER BY id", (run_id,)
        )
        return [cast(SandboxEventRow, dict(row)) for row in rows]

    def notices(self, run_id: str | None = None) -> list[NoticeRow]:
        """Notices (warnings of runs, spec errors of the daemon), oldest first."""
        if run_id is None:
            rows = self.db.execute("SELECT * FROM notices ORDER BY id")
        else:
            rows = self.db.execute("SELECT * FROM notices WHERE run_id = ? ORDER BY id", (run_id,))
        return [cast(NoticeRow, dict(row)) for row in rows]

    def _heartbeat(self, event: Heartbeat) -> None:
        self.db.execute(
            "UPDATE runs SET heartbeat_at = ?, active_s = ? WHERE id = ?",
            (now_iso(), event.active_s, event.run_id),
        )

    def _run_finished(self, event: RunFinished) -> None:
        # A call cut short (the run cancelled or interrupted mid-call) never sends its result.
        self._unjournaled = {
            key: started for key, started in self._unjournaled.items() if key[0] != event.run_id
        }
        self._results = {key: got for key, got in self._results.items() if key[0] != event.run_id}
        status = {
            StopReason.WAITING_APPROVAL: "waiting_approval",
            StopReason.WAITING_INPUT: "waiting_input",
            StopReason.ESCALATED: "escalated",
            StopReason.INTERRUPTED: "interrupted",
        }.get(event.stop_reason, "finished")
        if event.stop_reason is StopReason.ESCALATED and event.escalated_from is not None:
            self._open_escalation(event.run_id, str(event.escalated_from), event.message)
        if event.stop_reason is StopReason.ANSWER_TIMEOUT:
            self._time_out_questions(event.run_id)
        if event.stop_reason not in RESUMABLE_STOPS:
            # Nothing can resume it any more: its sealed messages have no further use.
            self.db.execute("DELETE FROM sealed_messages WHERE run_id = ?", (event.run_id,))
        self.db.execute(
            """UPDATE runs SET status = ?, stop_reason = ?, final = ?, result_json = ?,
               message = ?, traceback = ?, steps = ?, tool_calls = ?, input_tokens = ?,
               output_tokens = ?, cost_usd = ?, duration_s = ?, ended_at = ?, heartbeat_at = ?,
               escalated_from = ? WHERE id = ?""",
            (
                status,
                str(event.stop_reason),
                event.final,
                None if event.result is None else json.dumps(event.result),
                event.message,
                event.traceback,
                event.steps,
                event.tool_calls,
                event.input_tokens,
                event.output_tokens,
                event.cost_usd,
                event.duration_s,
                now_iso(),
                now_iso(),
                None if event.escalated_from is None else str(event.escalated_from),
                event.run_id,
            ),
        )

    # -- approvals and recovery -------------------------------------------------------------

    def decide(
        self,
        run_id: str,
        call_id: str | None,
        approved: bool,
        reason: str = "",
        by: str = "cli",
        record_unasked: bool = False,
    ) -> int:
        """Approve or deny pending calls of ``run_id`` (all of them when ``call_id`` is None).

        Returns the number of approvals decided. With ``record_unasked`` (the terminal
        approver answering at once, through the loop's ``ApprovalDecided``), a decision with
        no pending request is recorded as a new, decided row; otherwise it decides nothing.
        Each decision is an ``approval_decided`` entry of the run event log, in the same
        transaction.
        """
        status = "approved" if approved else "denied"
        now = now_iso()
        query = """UPDATE approvals SET status = ?, decision_reason = ?, decided_by = ?,
                   decided_at = ? WHERE run_id = ? AND status = 'pending'"""
        params: list[Any] = [status, reason, by, now, run_id]
        if call_id is not None:
            query += " AND call_id = ?"
            params.append(call_id)
        with joined_transaction(self.db, "BEGIN"):
            calls = [row[0] for row in self.db.execute(query + " RETURNING call_id", params)]
            decided = len(calls)
            if decided == 0 and call_id is not None and record_unasked:
                self.db.execute(
                    """INSERT INTO approvals (run_id, call_id, tool, arguments, arguments_sha256,
                       risk, reason, status, decision_reason, decided_by, created_at, decided_at)
                       VALUES (?, ?, '', '', '', '', '', ?, ?, ?, ?, ?)""",
                    (run_id, call_id, status, reason, by, now, now),
                )
                calls = [call_id]
            for decided_call in calls:
                data = {"call_id": decided_call, "approved": approved, "reason": reason, "by": by}
                event_log.append(self.db, run_id, "approval_decided", data, now)
        return decided

    # -- the run event log ------------------------------------------------------------------

    def events_since(
        self,
        after_id: int = 0,
        run_id: str | None = None,
        limit: int = event_log.DEFAULT_LIMIT,
        types: Collection[str] = (),
    ) -> list[dict[str, Any]]:
        """Entries of the run event log after ``after_id``, oldest first (at most ``limit``).

        See :func:`runner.store.event_log.read`: each is the export's event plus its ``id``;
        ``types``, when given, keeps only entries of those types.
        """
        return event_log.read(self.db, self._run_row, after_id, run_id, limit, types)

    def last_event_id(self) -> int:
        """The id of the newest entry of the run event log; 0 when there is none."""
        return event_log.last_id(self.db)

    def approvals(
        self, run_id: str | None = None, status: str | None = "pending"
    ) -> list[ApprovalRow]:
        """Approval requests, oldest first, optionally for one run and/or one status."""
        rows = of_run_and_status(self.db, "approvals", run_id, status, "id")
        return [_approval_row(row) for row in rows]

    def latest_approval(self, run_id: str, call_id: str) -> ApprovalRow | None:
        """The newest approval row of one call, or None."""
        row = self.db.execute(
            "SELECT * FROM approvals WHERE run_id = ? AND call_id = ? ORDER BY id DESC LIMIT 1",
            (run_id, call_id),
        ).fetchone()
        return _approval_row(row) if row else None

    def messages(self, run_id: str) -> list[dict[str, Any]]:
        """The run's conversation as recorded (redacted), in order.

        A tool message stored as a reference gets its content back from ``tool_calls``
        (see :meth:`_message_added`).
        """
        rows = self.db.execute(
            """SELECT messages.message_json, tool_calls.result FROM messages
               LEFT JOIN tool_calls ON tool_calls.id = messages.tool_call_row
               WHERE messages.run_id = ? ORDER BY messages.seq""",
            (run_id,),
        )
        messages = []
        for message_json, result in rows:
            message = json.loads(message_json)
            if result is not None:
                message["content"] = result
            messages.append(message)
        return messages

    def journal(self, run_id: str, call_id: str) -> ToolCallRow | None:
        """The newest journal row of one tool call, or None when it never started."""
        row = self.db.execute(
            "SELECT * FROM tool_calls WHERE run_id = ? AND call_id = ? ORDER BY id DESC LIMIT 1",
            (run_id, call_id),
        ).fetchone()
        return tool_call_row(row) if row else None

    def active_seconds(self, run_id: str) -> float:
        """Run time recorded so far (waits for approval excluded), in seconds."""
        row = self.db.execute("SELECT active_s FROM runs WHERE id = ?", (run_id,)).fetchone()
        return float(row[0]) if row else 0.0

    def sweep_interrupted(
        self, stale_after_s: float = HEARTBEAT_STALE_S, keep: Collection[str] = ()
    ) -> list[str]:
        """Mark runs whose process died as ``interrupted``; their ids.

        A ``running`` run is interrupted when its process is gone (same host: no such pid)
        or its heartbeat is older than ``stale_after_s`` seconds. Runs in ``keep`` (a
        daemon's own workers, which it collects itself) are left alone.
        """
        here = socket.gethostname()
        cutoff = datetime.now(UTC).timestamp() - stale_after_s
        found = []
        for row in self.db.execute(
            "SELECT id, pid, hostname, heartbeat_at FROM runs WHERE status = 'running'"
        ).fetchall():
            beat = (
                datetime.fromisoformat(row["heartbeat_at"]).timestamp()
                if row["heartbeat_at"]
                else 0
            )
            dead = row["hostname"] == here and row["pid"] and not process_alive(int(row["pid"]))
            if (dead or beat < cutoff) and row["id"] not in keep:
                found.append(row["id"])
        for run_id in found:
            self._end_left_running(
                run_id,
                "interrupted",
                StopReason.INTERRUPTED,
                "the process running it stopped (killed or lost power)",
            )
        return found

    # -- the daemon's own records ----------------------------------------------------------

    def record_notice(
        self, level: str, message: str, agent: str | None = None, at: datetime | None = None
    ) -> None:
        """Keep a notice of the daemon's (a spec error, a refused webhook delivery)."""
        self.db.execute(
            "INSERT INTO notices (at, level, agent, message) VALUES (?, ?, ?, ?)",
            (now_iso() if at is None else iso(at), level, agent, message),
        )

    def end_run_left_running(
        self, run_id: str, status: str, stop_reason: StopReason, message: str
    ) -> None:
        """End a run its worker left ``running``; nothing changes once it is not running."""
        self._end_left_running(run_id, status, stop_reason, message)

    def _end_left_running(
        self, run_id: str, status: str, stop_reason: StopReason, message: str
    ) -> None:
        """End a ``running`` run by its status alone, its head signed as its process left it.

        One transaction under the store's write lock (``BEGIN IMMEDIATE``), so no entry is
        chained between the head read and its signature.
        """
        with joined_transaction(self.db):
            ended = self.db.execute(
                """UPDATE runs SET status = ?, stop_reason = ?, message = ?
                   WHERE id = ? AND status = 'running'""",
                (status, stop_reason, message, run_id),
            ).rowcount
            if ended:
                lineage.sign_ended(self.db, run_id)


def _approval_row(row: Any) -> ApprovalRow:
    """An ``approvals`` row, its risk as a :class:`~runner.spec.Risk` ("" when unasked)."""
    approval = cast(ApprovalRow, dict(row))
    approval["risk"] = Risk(approval["risk"]) if approval["risk"] else ""
    return approval


def _followed_at_once(event: Event) -> bool:
    """Whether the loop always emits another event right after this one (see ``record``)."""
    if isinstance(event, ModelCalled | ToolCalled):
        return True
    return isinstance(event, MessageAdded) and event.message.get("role") == "assistant"
