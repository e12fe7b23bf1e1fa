"""The run event log: what happened to runs, append-only, in the order it was recorded.

A live view (the console, the API's Server-Sent Events stream) follows this log instead of
rereading every table: ``SELECT ... WHERE id > ?`` from the last id it saw, which is also
what a client that reconnects sends back (SSE's ``Last-Event-ID``). Ids only grow and are
never reused (SQLite's ``AUTOINCREMENT``, a PostgreSQL identity), and become visible in
order (see :func:`append`).

One entry per change a person watching would want to see::

    run_started  run_resumed  model_call  tool_started  approval_requested
    approval_decided  guard_decided  tool_call  check_run  question_asked
    question_answered  question_timed_out  escalation_decided  notification  notice
    connection  limit_hit  run_finished

(a conversation message and a heartbeat are not: the first repeats a model or tool call,
the second changes nothing visible). An entry keeps a few small fields; a model or tool
call's entry names its row instead of copying its content (a tool result can be a
megabyte, stored once), and :func:`read` joins it back, so an entry read is the same event
the JSONL export has (:mod:`runner.store.export`), plus the log's ``id``. A tool call's
entry reads the row as it is when read: its status and result may be newer than the entry
(the ``tool_call`` that follows says so in its turn).

Entries are written in the transaction of what they describe: the log and the tables
cannot disagree. Only :mod:`runner.store` calls this module.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, cast

from ..events import (
    ApprovalRequested,
    CheckRan,
    ConnectionDecided,
    Event,
    GuardDecided,
    LimitHit,
    ModelCalled,
    QuestionAsked,
    RunFinished,
    RunNotice,
    RunResumed,
    RunStarted,
    ToolCalled,
    ToolStarted,
)
from . import lineage
from .database import Database
from .export import model_call_event, run_finished_event, run_started_event, tool_call_event
from .rows import ModelCallRow, RunRow, ToolCallRow

#: Entries one :func:`read` returns at most, when the caller gives no limit.
DEFAULT_LIMIT = 500


def entry(event: Event, row: int | None) -> tuple[str, dict[str, Any]] | None:
    """The log entry of a recorded ``event``: its type and fields; None when not logged.

    ``row`` is the id of the ``model_calls`` or ``tool_calls`` row the event wrote (None
    for other events, and for a low-risk call's start, which writes no row).
    ``approval_decided`` is written by the store's ``decide``, which every decision goes
    through (the loop's, the CLI's, the API's); ``question_answered``,
    ``question_timed_out`` and ``escalation_decided`` likewise by the store's methods.
    """
    match event:
        case RunStarted():
            return "run_started", {"agent": event.agent, "model": event.model}
        case RunResumed():
            return "run_resumed", {}
        case ModelCalled():
            return "model_call", {"step": event.step, "row": row}
        case ToolStarted():
            return "tool_started", {
                "step": event.step,
                "call_id": event.call_id,
                "tool": event.tool,
                "risk": event.risk,
                "arguments": event.arguments,
            }
        case ToolCalled():
            return "tool_call", {"step": event.step, "call_id": event.call_id, "row": row}
        case ApprovalRequested():
            return "approval_requested", {
                "call_id": event.call_id,
                "tool": event.tool,
                "arguments": event.arguments,
                "risk": event.risk,
                "reason": event.reason,
                "note": event.note,
            }
        case RunNotice():
            return "notice", {"level": event.level, "message": event.message}
        case ConnectionDecided():
            return "connection", {
                "source": event.source,
                "call_id": event.call_id,
                "host": event.host,
                "port": event.port,
                "allowed": event.allowed,
                "address": event.address,
                "reason": event.reason,
            }
        case LimitHit():
            return "limit_hit", {
                "source": event.source,
                "call_id": event.call_id,
                "limit": event.limit,
                "detail": event.detail,
            }
        case CheckRan():
            return "check_run", {
                "step": event.step,
                "attempt": event.attempt,
                "index": event.index,
                "kind": event.kind,
                "name": event.name,
                "passed": event.passed,
            }
        case GuardDecided():
            return "guard_decided", {
                "call_id": event.call_id,
                "tool": event.tool,
                "guard": event.guard,
                "decision": event.decision,
                "reason": event.reason,
                "failed": event.failed,
            }
        case QuestionAsked():
            return "question_asked", {
                "call_id": event.call_id,
                "question": event.question,
                "context": event.context,
                "choices": event.choices,
                "expires_at": event.expires_at,
            }
        case RunFinished():
            data: dict[str, Any] = {"stop_reason": event.stop_reason}
            if event.escalated_from is not None:
                data["escalated_from"] = event.escalated_from
            return "run_finished", data
        case _:
            return None


def append(db: Database, run_id: str, kind: str, data: dict[str, Any], at: str) -> None:
    """Add one entry, in the caller's transaction (which must be open: see below).

    Ids become visible in order because every transaction that appends holds the store's
    write lock from its ``BEGIN`` to its commit (SQLite: one writer at a time; PostgreSQL:
    :mod:`runner.store.postgres`'s transaction-scoped advisory lock). Outside a transaction a
    PostgreSQL insert would take an id while a transaction that took a smaller one has not
    committed yet, and a follower reading past the larger id would skip the smaller forever.
    The same lock makes the run's hash chain a chain (:func:`runner.store.lineage.chain`:
    the entry's ``prev_hash`` and ``hash``, the run's new ``head_hash``, signed when a key
    exists and the run is not running). A model or tool call's entry also gets
    ``row_sha256``, the digest of its row as the export shows it (final by then: a tool
    call's row is updated only before its ``tool_call`` entry), so the chain covers the
    reply and the result too.
    """
    if kind in lineage.ROW_KINDS and data.get("row") is not None:
        data = {**data, "row_sha256": lineage.row_digest(db, kind, run_id, int(data["row"]))}
    data_json = json.dumps(data)
    prev, digest = lineage.chain(db, run_id, kind, data_json, at)
    db.execute(
        """INSERT INTO run_events (run_id, type, at, data_json, prev_hash, hash)
           VALUES (?, ?, ?, ?, ?, ?)""",
        (run_id, kind, at, data_json, prev, digest),
    )


def last_id(db: Database) -> int:
    """The newest entry's id; 0 when the log is empty."""
    return int(db.execute("SELECT coalesce(max(id), 0) FROM run_events").fetchone()[0])


def read(
    db: Database,
    run_row: Any,
    after_id: int = 0,
    run_id: str | None = None,
    limit: int = DEFAULT_LIMIT,
    types: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """Entries after ``after_id``, oldest first, at most ``limit``, of one run or of all.

    Each is an event as the export has it (``type``, ``run_id``, ``at`` and its fields)
    with the log's ``id`` first. ``run_row`` turns a ``runs`` row into a
    :class:`~runner.store.rows.RunRow` (the store's own converter). ``types``, when not
    empty, keeps only entries of those types.
    """
    query = "SELECT * FROM run_events WHERE id > ?"
    params: list[Any] = [after_id]
    if run_id is not None:
        query += " AND run_id = ?"
        params.append(run_id)
    kinds = tuple(types)
    if kinds:
        query += f" AND type IN ({','.join('?' * len(kinds))})"
        params.extend(kinds)
    entries = db.execute(query + " ORDER BY id LIMIT ?", (*params, limit)).fetchall()
    if not entries:
        return []
    datas = [json.loads(e["data_json"]) for e in entries]
    model_rows = _rows(db, "model_calls", _refs(entries, datas, "model_call"))
    tool_rows = _rows(db, "tool_calls", _refs(entries, datas, "tool_call"))
    run_ids = {e["run_id"] for e in entries if e["type"] in ("run_started", "run_finished")}
    runs: dict[str, RunRow] = {}
    if run_ids:
        marks = ",".join("?" * len(run_ids))
        for row in db.execute(f"SELECT * FROM runs WHERE id IN ({marks})", tuple(run_ids)):
            runs[row["id"]] = run_row(row)
    events = []
    for logged, data in zip(entries, datas, strict=True):
        kind, owner = logged["type"], logged["run_id"]
        event: dict[str, Any]
        if kind == "model_call" and data.get("row") in model_rows:
            event = model_call_event(owner, cast(ModelCallRow, model_rows[data["row"]]))
        elif kind == "tool_call" and data.get("row") in tool_rows:
            event = tool_call_event(owner, cast(ToolCallRow, tool_rows[data["row"]]))
        elif kind == "run_started" and owner in runs:
            event = run_started_event(runs[owner])
        elif kind == "run_finished" and owner in runs and runs[owner].ended_at:
            event = run_finished_event(runs[owner])
        else:
            event = {"type": kind, "run_id": owner, **data}
        event.pop("row", None)
        event["at"] = logged["at"]
        events.append({"id": logged["id"], **event})
    return events


def _refs(entries: list[Any], datas: list[dict[str, Any]], kind: str) -> set[int]:
    return {
        int(data["row"])
        for logged, data in zip(entries, datas, strict=True)
        if logged["type"] == kind and data.get("row") is not None
    }


def _rows(db: Database, table: str, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    wanted = tuple(ids)
    if not wanted:
        return {}
    marks = ",".join("?" * len(wanted))
    query = f"SELECT * FROM {table} WHERE id IN ({marks})"  # table: one of two literals
    return {row["id"]: dict(row) for row in db.execute(query, wanted)}
