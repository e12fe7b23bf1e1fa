"""The JSON API, ``/api/v1``: runs, their events (JSON, JSONL, live SSE) and approvals.

Every answer has a pydantic model, so the OpenAPI document (``/api/v1/openapi.json``,
rendered in ``docs/reference/api.md``) says its exact shape. Errors are
``{"error": "<message>"}`` with the status code that fits (400 a bad parameter, 401 no
credential, 403 a missing CSRF token, 404 no such run or call, 409 already decided, 422 a
body that does not match). The same operations as the CLI, through the same calls:
``agentrun runs`` filters, ``runs show`` resolves id prefixes, ``approve`` / ``deny`` go
through :func:`runner.decisions.decide`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.responses import Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, Field

from ..decisions import DecisionRefused, Refusal, decide, find_run
from ..errors import StopReason
from ..store import ApprovalRow, RunRow, RunStore
from .auth import Principal
from .feed import EventFeed
from .state import WebState

#: Every run status ``?status=`` accepts: a stop reason, or ``running`` (as ``agentrun runs``).
RUN_STATUSES = ("running", *(str(reason) for reason in StopReason))
#: The most runs one page may hold.
MAX_PAGE = 500

router = APIRouter(prefix="/api/v1")


# ---------------------------------------------------------------------------------------------
# what the API answers


class ErrorOut(BaseModel):
    """Every error's body."""

    error: str = Field(description="What went wrong, and what to do instead.")


class RunSummary(BaseModel):
    """One run as the list shows it."""

    id: str = Field(description="The run's id (a ULID: sorts by start time).")
    agent: str
    status: str = Field(description="`running`, or how it ended (its stop reason).")
    stop_reason: StopReason | None = Field(description="Why it ended; null while it runs.")
    model: str
    trigger: str = Field(description="What started it: cli, cron, watch, manual, webhook.")
    steps: int
    tool_calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None = Field(description="USD; null when the model's price is unknown.")
    duration_s: float | None = Field(description="Seconds of run time; null while it runs.")
    started_at: str = Field(description="UTC, ISO 8601.")
    ended_at: str | None = Field(description="UTC, ISO 8601; null while it runs.")


class CheckRunOut(BaseModel):
    """One success check run after a final answer."""

    attempt: int = Field(description="Which final answer it checked, from 1.")
    step: int = Field(description="The step (model call) that gave that answer.")
    index: int = Field(description="The check's place in the spec's `checks`, from 0.")
    kind: str = Field(description="command, file, answer_matches or answer_schema.")
    name: str = Field(description="The check's name, or what it checks.")
    passed: bool
    output: str = Field(description="What the model was told (a command's output), cut.")
    duration_s: float = Field(description="Seconds.")
    created_at: str = Field(description="UTC, ISO 8601.")


class RunDetail(RunSummary):
    """One run with its goal, inputs, answer and message."""

    goal: str
    inputs: dict[str, Any]
    final: str | None = Field(description="The final answer, when it completed.")
    result: Any = Field(description="The structured result (`output.schema`), or null.")
    message: str | None = Field(description="Why it stopped, in words, when not completed.")
    traceback: str | None = Field(description="An internal error's traceback, or null.")
    spec_path: str
    resumable: bool = Field(description="Whether `agentrun resume` may continue it.")
    checks: list[CheckRunOut] = Field(
        default_factory=list,
        description="Its success checks run so far (`checks:` in the spec), in order.",
    )


class RunPage(BaseModel):
    """One page of runs, newest first."""

    runs: list[RunSummary]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )


class ApprovalOut(BaseModel):
    """A tool call that asks (or asked) a person, with what they need to decide."""

    run_id: str
    agent: str
    call_id: str = Field(description="The call's id, as `agentrun approve RUN CALL` takes it.")
    tool: str
    arguments: Any = Field(description="The exact arguments (JSON), secrets redacted.")
    risk: str = Field(description="low, medium or high.")
    reason: str = Field(description="Why the policy asks.")
    model_says: str | None = Field(
        description="What the model wrote with the call (its stated reason), if anything."
    )
    note: str = Field(description="A warning (an interrupted call may have partly happened).")
    status: str = Field(description="pending, approved or denied.")
    requested_at: str = Field(description="UTC, ISO 8601.")
    decided_by: str | None
    decision_reason: str | None
    decided_at: str | None


class ApprovalList(BaseModel):
    """Approvals, oldest request first."""

    approvals: list[ApprovalOut]


class DecisionIn(BaseModel):
    """A person's decision."""

    approved: bool = Field(description="Approve (true) or deny (false).")
    reason: str = Field(default="", description="Why; a denial's reason is sent to the model.")


class DecisionOut(BaseModel):
    """What was decided."""

    run_id: str
    approved: bool
    calls: list[str] = Field(description="The ids of the calls decided.")
    by: str = Field(description="Who decided, as recorded: `api:<label>@<address>`.")
    resume: str = Field(
        description="What continues the run: the daemon, by itself, for a run it started "
        "(once none of its calls waits), else the command `agentrun resume RUN`."
    )


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "No valid token or session cookie."},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    404: {"model": ErrorOut, "description": "No such run (or an ambiguous id prefix)."},
}


# ---------------------------------------------------------------------------------------------
# dependencies


def web_state(request: Request) -> WebState:
    """The app's shared state."""
    state: WebState = request.app.state.web
    return state


def principal(request: Request) -> Principal:
    """Who sent the request (the app's middleware authenticated it already)."""
    who: Principal = request.state.principal
    return who


def event_feed(request: Request) -> EventFeed:
    """The app's event feed."""
    feed: EventFeed = request.app.state.feed
    return feed


State = Annotated[WebState, Depends(web_state)]


def _run(state: WebState, run_id: str) -> RunRow:
    try:
        return state.read(lambda store: find_run(store, run_id))
    except DecisionRefused as refused:
        raise HTTPException(404, str(refused)) from None


def _summary(row: RunRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "agent": row.agent,
        "status": row.stop_reason or row.status,
        "stop_reason": row.stop_reason,
        "model": row.model,
        "trigger": row.trigger,
        "steps": row.steps,
        "tool_calls": row.tool_calls,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "cost_usd": row.cost_usd,
        "duration_s": row.duration_s,
        "started_at": row.started_at,
        "ended_at": row.ended_at,
    }


# ---------------------------------------------------------------------------------------------
# runs


def encode_cursor(run_id: str, seen: int) -> str:
    """The opaque cursor after run ``run_id``, the ``seen``-th run of the listing."""
    raw = json.dumps([run_id, seen]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, int]:
    """The run id and count that :func:`encode_cursor` put in ``cursor``.

    Raises:
        HTTPException: 400 when ``cursor`` is not one this API gave.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        run_id, seen = json.loads(raw)
        if isinstance(run_id, str) and isinstance(seen, int) and seen >= 0:
            return run_id, seen
    except (binascii.Error, ValueError, TypeError):
        pass
    raise HTTPException(400, f"cursor {cursor!r} is not one this API gave; start without it")


def since_instant(value: str | None) -> str | None:
    """``since``: a date/time (UTC unless it says) or a duration back from now (90m, 2h, 7d).

    The same forms as ``agentrun runs --since`` (:func:`runner.store.since_instant`); the
    instant as UTC ISO 8601 (ms).

    Raises:
        HTTPException: 400 for anything else.
    """
    if value is None:
        return None
    from ..store import since_instant as instant

    try:
        return instant(value)
    except ValueError as error:
        raise HTTPException(400, f"since {error}") from None


def page_of_runs(
    store: RunStore,
    limit: int,
    agent: str | None,
    status: str | None,
    since: str | None,
    cursor: tuple[str, int] | None,
) -> tuple[list[RunRow], str | None]:
    """One page of runs, newest first, after ``cursor``; and the next page's cursor.

    Runs are ordered by id (ULIDs sort by start time), so the page after a cursor is the
    runs whose id is below the cursor's (keyset paging, ``RunStore.runs(before_id=...)``):
    new runs recorded meanwhile never shift a page, and a page deep in a long listing costs
    a read of its own rows only.
    """
    after, seen = cursor if cursor else (None, 0)
    rows = store.runs(limit=limit + 1, agent=agent, status=status, since=since, before_id=after)
    page = rows[:limit]
    more = len(rows) > limit
    return page, encode_cursor(page[-1].id, seen + len(page)) if more and page else None


@router.get("/runs", response_model=RunPage, responses=ERRORS, summary="List runs")
def list_runs(
    state: State,
    agent: Annotated[str | None, Query(description="Only runs of this agent.")] = None,
    status: Annotated[
        str | None,
        Query(description="Only runs with this stop reason, or `running`."),
    ] = None,
    since: Annotated[
        str | None,
        Query(description="Only runs since a UTC date/time or a duration ago (2h, 7d)."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Runs per page.")] = 50,
    cursor: Annotated[
        str | None, Query(description="The `next_cursor` of the previous page.")
    ] = None,
) -> dict[str, Any]:
    """Recorded runs, newest first, filtered as `agentrun runs` filters them."""
    if status is not None and status not in RUN_STATUSES:
        raise HTTPException(400, f"status {status!r} is not one of: {', '.join(RUN_STATUSES)}")
    instant = since_instant(since)
    position = decode_cursor(cursor) if cursor else None
    state.sweep()
    rows, next_cursor = state.read(
        lambda store: page_of_runs(store, limit, agent, status, instant, position)
    )
    return {"runs": [_summary(row) for row in rows], "next_cursor": next_cursor}


@router.get("/runs/{run_id}", response_model=RunDetail, responses=NOT_FOUND, summary="One run")
def get_run(state: State, run_id: str) -> dict[str, Any]:
    """One run, by its id or a unique prefix of it."""
    state.sweep()
    row = _run(state, run_id)
    checks = state.read(lambda store: store.check_runs(row.id))
    return {
        **run_detail(row),
        "checks": [{**check, "index": check["check_index"]} for check in checks],
    }


def run_detail(row: RunRow) -> dict[str, Any]:
    """A :class:`RunDetail` of ``row``."""
    return {
        **_summary(row),
        "goal": row.goal,
        "inputs": json.loads(row.inputs_json),
        "final": row.final,
        "result": json.loads(row.result_json) if row.result_json else None,
        "message": row.message,
        "traceback": row.traceback,
        "spec_path": row.spec_path,
        "resumable": row.resumable,
    }


@router.get(
    "/runs/{run_id}/events",
    response_model=list[dict[str, Any]],
    responses=NOT_FOUND,
    summary="A run's events",
)
def run_events(state: State, run_id: str) -> list[dict[str, Any]]:
    """The run's events in order, as the JSONL export has them (`docs/run-store.md`)."""
    row = _run(state, run_id)
    return state.read(lambda store: store.export(row.id))


@router.get(
    "/runs/{run_id}/export",
    response_class=Response,
    responses={
        **NOT_FOUND,
        200: {
            "content": {"application/x-ndjson": {}},
            "description": "One event a line, then the run's hash chain (log_entry, log_head).",
        },
    },
    summary="A run as JSONL",
)
def run_export(state: State, run_id: str) -> Response:
    """The run as `agentrun runs export` prints it: one JSON event a line, then its hash chain.

    The `log_entry` lines and the `log_head` line, so `agentrun runs verify --file` checks
    a download on another machine.
    """
    row = _run(state, run_id)
    records = state.read(lambda store: store.export_with_chain(row.id))
    body = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    return Response(
        body,
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{row.id}.jsonl"'},
    )


LastEventId = Annotated[
    int | None,
    Query(ge=0, description="Resume after this event id (what `Last-Event-ID` carries)."),
]
LastEventIdHeader = Annotated[str | None, Header(alias="Last-Event-ID")]


def resume_after(
    last_event_id: LastEventId = None, last_event_id_header: LastEventIdHeader = None
) -> int | None:
    """The id a stream resumes after: the ``Last-Event-ID`` header, else the query's.

    A dependency, so a bad value is answered 400 before the stream starts.

    Raises:
        HTTPException: 400 when the header is not an integer.
    """
    header = last_event_id_header
    if header is not None and header.strip():
        try:
            return max(0, int(header.strip()))
        except ValueError:
            raise HTTPException(400, f"Last-Event-ID {header!r} is not an event id") from None
    return last_event_id


def streamed_run(state: State, run_id: str) -> RunRow:
    """The run a stream follows (a dependency: 404 before the stream starts)."""
    return _run(state, run_id)


def _sse(entry: Mapping[str, Any]) -> ServerSentEvent:
    return ServerSentEvent(id=str(entry["id"]), event=str(entry["type"]), data=dict(entry))


@router.get(
    "/runs/{run_id}/events/stream",
    response_class=EventSourceResponse,
    responses={**NOT_FOUND, 400: {"model": ErrorOut, "description": "A bad Last-Event-ID."}},
    summary="A run's events, live",
)
async def run_event_stream(
    row: Annotated[RunRow, Depends(streamed_run)],
    feed: Annotated[EventFeed, Depends(event_feed)],
    after: Annotated[int | None, Depends(resume_after)],
) -> AsyncIterator[ServerSentEvent]:
    """The run's event log as Server-Sent Events: what was recorded, then live.

    Each event's `id` is its place in the log and its `event` its type (`run_started`,
    `model_call`, `tool_started`, `approval_requested`, `approval_decided`, `tool_call`,
    `notice`, `run_resumed`, `run_finished`); `data` is the event as JSON. From the start
    of the run unless `Last-Event-ID` (or `last_event_id`) says where to resume. The stream
    ends after the run's `run_finished`.
    """
    async for entry in feed.events(after or 0, row.id):
        yield _sse(entry)
        if entry["type"] == "run_finished":
            return


def stream_start(state: State, after: Annotated[int | None, Depends(resume_after)]) -> int:
    """Where the stream of every run starts: after ``Last-Event-ID``, else at the log's end."""
    return after if after is not None else state.read(_last_event_id)


@router.get(
    "/events/stream",
    response_class=EventSourceResponse,
    responses={**ERRORS, 400: {"model": ErrorOut, "description": "A bad Last-Event-ID."}},
    summary="Every run's events, live",
)
async def event_stream(
    feed: Annotated[EventFeed, Depends(event_feed)],
    after: Annotated[int, Depends(stream_start)],
) -> AsyncIterator[ServerSentEvent]:
    """Every run's events as Server-Sent Events, as they are recorded (never ends).

    From now on, unless `Last-Event-ID` (or `last_event_id`) says where to resume.
    """
    async for entry in feed.events(after):
        yield _sse(entry)


def _last_event_id(store: RunStore) -> int:
    return store.last_event_id()


# ---------------------------------------------------------------------------------------------
# approvals


def _approvals(store: RunStore, rows: list[ApprovalRow]) -> list[dict[str, Any]]:
    """Approval rows with their run's agent and what the model wrote with each call."""
    runs: dict[str, RunRow | None] = {}
    said: dict[str, dict[str, str | None]] = {}
    answers = []
    for row in rows:
        run_id = row["run_id"]
        if run_id not in runs:
            runs[run_id] = store.run(run_id)
            said[run_id] = {}
            for call in store.model_calls(run_id):
                for asked in json.loads(call["tool_calls_json"] or "[]"):
                    if isinstance(asked, dict) and "id" in asked:
                        said[run_id][str(asked["id"])] = call["content"]
        run = runs[run_id]
        try:
            arguments: Any = json.loads(row["arguments"])
        except ValueError:
            arguments = row["arguments"]
        answers.append(
            {
                "run_id": run_id,
                "agent": run.agent if run else "",
                "call_id": row["call_id"],
                "tool": row["tool"],
                "arguments": arguments,
                "risk": str(row["risk"]),
                "reason": row["reason"],
                "model_says": said[run_id].get(row["call_id"]) or None,
                "note": row["note"],
                "status": row["status"],
                "requested_at": row["created_at"],
                "decided_by": row["decided_by"],
                "decision_reason": row["decision_reason"],
                "decided_at": row["decided_at"],
            }
        )
    return answers


@router.get(
    "/approvals", response_model=ApprovalList, responses=ERRORS, summary="Pending approvals"
)
def list_approvals(
    state: State,
    run_id: Annotated[str | None, Query(description="Only this run's (id or prefix).")] = None,
) -> dict[str, Any]:
    """Tool calls waiting for a person, across runs, oldest first (`agentrun approvals`)."""
    full_id = _run(state, run_id).id if run_id else None
    return {"approvals": state.read(lambda store: _approvals(store, store.approvals(full_id)))}


_REFUSAL_STATUS = {
    Refusal.NO_RUN: 404,
    Refusal.NO_CALL: 404,
    Refusal.DECIDED: 409,
    Refusal.NOTHING_PENDING: 409,
}
DECISION_ERRORS: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    403: {"model": ErrorOut, "description": "A cookie-authenticated request without CSRF token."},
    409: {"model": ErrorOut, "description": "Already decided (or nothing pending)."},
}


def decision_callback(request: Request) -> Callable[[str], None] | None:
    """What to call with a run's id once a call of it is decided (the daemon's wake-up)."""
    callback: Callable[[str], None] | None = request.app.state.on_decision
    return callback


OnDecision = Annotated[Callable[[str], None] | None, Depends(decision_callback)]


def _decide(
    state: WebState,
    who: Principal,
    run_id: str,
    call_id: str | None,
    decision: DecisionIn,
    on_decision: Callable[[str], None] | None,
) -> dict[str, Any]:
    try:
        decided = state.read(
            lambda store: decide(
                store, run_id, call_id, decision.approved, decision.reason, by=who.by
            )
        )
    except DecisionRefused as refused:
        raise HTTPException(_REFUSAL_STATUS[refused.refusal], str(refused)) from None
    if on_decision is not None:
        on_decision(decided.run.id)  # a daemon serving the app continues the run at once
    return {
        "run_id": decided.run.id,
        "approved": decided.approved,
        "calls": list(decided.calls),
        "by": who.by,
        "resume": (
            "the daemon continues the run"
            if on_decision is not None and decided.run.trigger != "cli"
            else f"agentrun resume {decided.run.id}"
        ),
    }


@router.post(
    "/runs/{run_id}/approvals/{call_id}",
    response_model=DecisionOut,
    responses=DECISION_ERRORS,
    summary="Decide one call",
)
def decide_call(
    state: State,
    who: Annotated[Principal, Depends(principal)],
    run_id: str,
    call_id: str,
    decision: DecisionIn,
    on_decision: OnDecision,
) -> dict[str, Any]:
    """Approve or deny one pending call (`agentrun approve RUN CALL`, `deny --reason`)."""
    return _decide(state, who, run_id, call_id, decision, on_decision)


@router.post(
    "/runs/{run_id}/approvals",
    response_model=DecisionOut,
    responses=DECISION_ERRORS,
    summary="Decide all of a run's calls",
)
def decide_run(
    state: State,
    who: Annotated[Principal, Depends(principal)],
    run_id: str,
    decision: DecisionIn,
    on_decision: OnDecision,
) -> dict[str, Any]:
    """Approve or deny every pending call of the run (`agentrun approve RUN`)."""
    return _decide(state, who, run_id, None, decision, on_decision)
