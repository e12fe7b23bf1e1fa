"""The console's pages: runs, a run's timeline, approvals, agents, daemon (server-rendered).

Jinja2 templates (``templates/``, autoescaped) over the same store reads as the JSON API.
Every page reads without JavaScript, and its forms post normally (POST, then a redirect to
a GET: the PRG pattern). With JavaScript, htmx and its SSE extension (vendored, pinned, in
``static/vendor/``; see ``static/README.md``) keep a page live: the page listens to the
API's event stream and, on an event that changes what it shows, fetches its live part again
from a ``/parts/...`` route and swaps it in. No inline script, so the app's
``Content-Security-Policy`` (``default-src 'self'``) stays as strict as it is.

A decision from the Approvals page goes through :func:`runner.decisions.decide`, as the
API's and the CLI's do, recorded as made by ``console:<label>@<address>``.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from ..decisions import DecisionRefused, Refusal, decide
from ..errors import SpecError
from ..store import RunRow, RunStore
from .api import (
    RUN_STATUSES,
    OnDecision,
    State,
    _approvals,
    _run,
    decode_cursor,
    page_of_runs,
    principal,
)
from .auth import CSRF_COOKIE, CSRF_FIELD, Principal
from .escalations import escalation_view, outcome_message
from .forms import read_form
from .operations import DaemonOperations, Refused
from .questions import ANSWER_OUTCOMES, waiting_cards
from .state import WebState

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
#: The static files served, by name (nothing else under ``static/`` is reachable).
STATIC = {
    "console.css": "text/css",
    "htmx-2.0.11.min.js": "text/javascript",
    "htmx-ext-sse-2.2.4.min.js": "text/javascript",
}
#: Seconds a "Run now" waits for its run to begin before showing the runs list instead.
START_WAIT_S = 5.0
#: Runs one page of the list shows.
RUNS_PER_PAGE = 50
#: Event log entries a run's timeline shows at most (the JSONL export has them all).
MAX_TIMELINE = 5000
#: Characters of a tool result shown before it is cut (the export has it whole).
MAX_RESULT_CHARS = 4000
#: The event types after which a live page fetches its part again.
RUN_LIST_EVENTS = ("run_started", "run_resumed", "run_finished", "approval_requested")
TIMELINE_EVENTS = (
    "run_started",
    "run_resumed",
    "model_call",
    "tool_started",
    "approval_requested",
    "approval_decided",
    "question_asked",
    "question_answered",
    "question_timed_out",
    "guard_decided",
    "tool_call",
    "check_run",
    "notice",
    "connection",
    "limit_hit",
    "escalation_decided",
    "notification",
    "run_finished",
)
QUEUE_EVENTS = (
    "approval_requested",
    "approval_decided",
    "question_asked",
    "question_answered",
    "question_timed_out",
    "run_resumed",
    "run_finished",
)

router = APIRouter(include_in_schema=False)


def _page(request: Request, name: str, **context: Any) -> Response:
    context.setdefault("csrf", request.cookies.get(CSRF_COOKIE, ""))
    context.setdefault("csrf_field", CSRF_FIELD)
    return templates.TemplateResponse(request, name, context)


def _trigger(events: tuple[str, ...]) -> str:
    """An ``hx-trigger`` value: any of the SSE ``events``.

    The live parts also carry ``hx-sync="this:queue last"``: one fetch at a time, and the
    events that arrive meanwhile make one more fetch after it, so the last event is always
    shown (a throttle would drop it) and a burst of events costs two fetches, not one each.
    """
    return ", ".join(f"sse:{event}" for event in events)


templates.env.globals["trigger"] = _trigger
templates.env.globals["RUN_LIST_EVENTS"] = RUN_LIST_EVENTS
templates.env.globals["TIMELINE_EVENTS"] = TIMELINE_EVENTS
templates.env.globals["QUEUE_EVENTS"] = QUEUE_EVENTS


@router.get("/static/{name}")
def static(name: str) -> Response:
    """One of the console's static files (:data:`STATIC`)."""
    if name not in STATIC:
        raise HTTPException(404, f"no static file {name!r}")
    return FileResponse(HERE / "static" / _static_path(name), media_type=STATIC[name])


def _static_path(name: str) -> str:
    return name if name == "console.css" else f"vendor/{name}"


# ---------------------------------------------------------------------------------------------
# runs


@dataclass(frozen=True)
class RunFilters:
    """The runs list's GET form: agent, status, and the page's cursor."""

    agent: str | None
    status: str | None
    cursor: str | None

    def query(self, cursor: str | None = None) -> str:
        """The query string of these filters (with ``cursor`` instead of theirs)."""
        values = {"agent": self.agent, "status": self.status, "cursor": cursor}
        return urlencode({key: value for key, value in values.items() if value})


def run_filters(agent: str = "", status: str = "", cursor: str = "") -> RunFilters:
    """The filters a request gives (empty fields are no filter).

    Raises:
        HTTPException: 400 for an unknown status or a cursor this console never gave.
    """
    if status and status not in RUN_STATUSES:
        raise HTTPException(400, f"status {status!r} is not one of: {', '.join(RUN_STATUSES)}")
    if cursor:
        decode_cursor(cursor)
    return RunFilters(agent.strip() or None, status or None, cursor or None)


Filters = Annotated[RunFilters, Depends(run_filters)]


def _runs_context(state: State, filters: RunFilters) -> dict[str, Any]:
    state.sweep()
    # Read first: the page's stream resumes after it, so nothing recorded while the page
    # loads is missed (a few events may be seen twice, which costs a fetch).
    last_event_id = state.read(lambda store: store.last_event_id())
    position = decode_cursor(filters.cursor) if filters.cursor else None
    rows, next_cursor = state.read(
        lambda store: page_of_runs(
            store, RUNS_PER_PAGE, filters.agent, filters.status, None, position
        )
    )
    return {
        "runs": rows,
        "filters": filters,
        "statuses": RUN_STATUSES,
        "next_query": filters.query(next_cursor) if next_cursor else None,
        "first_query": filters.query(),
        "live": filters.cursor is None,
        "last_event_id": last_event_id,
    }


@router.get("/")
@router.get("/runs")
def runs_page(request: Request, state: State, filters: Filters) -> Response:
    """The runs, newest first, filtered; the first page stays live."""
    return _page(request, "runs.html", **_runs_context(state, filters))


@router.get("/parts/runs")
def runs_part(request: Request, state: State, filters: Filters) -> Response:
    """The runs table alone, fetched again when a run starts, pauses, resumes or ends."""
    return _page(request, "_runs_table.html", **_runs_context(state, filters))


# ---------------------------------------------------------------------------------------------
# one run


@dataclass(frozen=True)
class Budget:
    """One budget's use against its cap (a bar)."""

    name: str
    used: float
    cap: float | None
    unit: str

    @property
    def share(self) -> float:
        """The used fraction of the cap (0 without a cap)."""
        return min(1.0, self.used / self.cap) if self.cap else 0.0


def _spec_caps(row: RunRow) -> tuple[dict[str, float | None] | None, str]:
    """The caps of the run's spec (None when it cannot be read) and a note about it."""
    path = Path(row.spec_path)
    try:
        stat = path.stat()
        caps, sha256 = _caps_of(str(path), stat.st_mtime_ns, stat.st_size)
    except (OSError, SpecError):
        return None, f"the spec {row.spec_path} cannot be read now: totals only"
    note = ""
    if sha256 != row.spec_sha256:
        note = "the spec changed since this run started: caps as it says now"
    return caps, note


@functools.lru_cache(maxsize=64)
def _caps_of(path: str, mtime_ns: int, size: int) -> tuple[dict[str, float | None], str]:
    """The budgets of the spec at ``path`` and its SHA-256, cached while the file is unchanged.

    A live run page asks on every event; ``mtime_ns`` and ``size`` key the cache.

    Raises:
        OSError: the file cannot be read.
        SpecError: it does not load.
    """
    from ..spec import load_spec

    source = Path(path).read_bytes()
    budgets = load_spec(path, source).budgets
    caps: dict[str, float | None] = {
        "max_steps": budgets.max_steps,
        "max_tool_calls": budgets.max_tool_calls,
        "max_tokens": budgets.max_tokens,
        "max_cost_usd": budgets.max_cost_usd,
        "max_duration": budgets.max_duration,
    }
    return caps, hashlib.sha256(source).hexdigest()


@dataclass(frozen=True)
class Usage:
    """What a run has used: steps, tool calls, tokens, USD (None: unknown), seconds."""

    steps: int
    tool_calls: int
    tokens: int
    cost_usd: float | None
    seconds: float


def _live_usage(row: RunRow, entries: list[dict[str, Any]], recorded_s: float) -> Usage:
    """A running run's use so far, from its timeline (its row's totals come at its end).

    ``recorded_s`` is the run time of its earlier segments (before a pause); the current
    segment runs since its last ``run_started`` or ``run_resumed``.
    """
    calls = [e for e in entries if e["type"] == "model_call"]
    costs = [e.get("cost_usd") for e in calls]
    starts = [e["at"] for e in entries if e["type"] in ("run_started", "run_resumed")]
    since = datetime.fromisoformat(starts[-1] if starts else row.started_at)
    return Usage(
        steps=max((int(e.get("step") or 0) for e in calls), default=0),
        tool_calls=sum(1 for e in entries if e["type"] == "tool_call"),
        tokens=sum(
            int(e.get("input_tokens") or 0) + int(e.get("output_tokens") or 0) for e in calls
        ),
        cost_usd=None if None in costs else sum(float(c or 0.0) for c in costs),
        seconds=recorded_s + max(0.0, (datetime.now(UTC) - since).total_seconds()),
    )


def _budgets(row: RunRow, usage: Usage) -> tuple[list[Budget], str]:
    caps, note = _spec_caps(row)
    caps = caps or {}
    used = [
        Budget("steps", usage.steps, caps.get("max_steps"), ""),
        Budget("tool calls", usage.tool_calls, caps.get("max_tool_calls"), ""),
        Budget("tokens", usage.tokens, caps.get("max_tokens"), ""),
        Budget("cost", usage.cost_usd or 0.0, caps.get("max_cost_usd"), "USD"),
        Budget("run time", usage.seconds, caps.get("max_duration"), "s"),
    ]
    return used, note


def _pretty(text: Any) -> str:
    """JSON arguments or results, indented when they parse, else as they are."""
    if not isinstance(text, str):
        return json.dumps(text, indent=2, ensure_ascii=False)
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def _timeline(store: RunStore, run_id: str) -> tuple[list[dict[str, Any]], bool, int]:
    """The run's log entries (decisions joined onto their tool calls), cut?, last id."""
    entries: list[dict[str, Any]] = []
    last = 0
    while len(entries) < MAX_TIMELINE:
        page = store.events_since(last, run_id=run_id, limit=500)
        entries.extend(page)
        if page:
            last = int(page[-1]["id"])
        if len(page) < 500:
            break
    cut = len(entries) >= MAX_TIMELINE
    decided = {e["call_id"]: e for e in entries if e["type"] == "approval_decided"}
    for entry in entries:
        if entry["type"] in ("tool_call", "approval_requested"):
            entry["arguments_text"] = _pretty(entry.get("arguments"))
            entry["decided"] = decided.get(entry["call_id"])
        if entry["type"] == "tool_call":
            result = str(entry.get("result") or "")
            entry["result_cut"] = len(result) > MAX_RESULT_CHARS
            entry["result_text"] = _pretty(result[:MAX_RESULT_CHARS])
    return entries[:MAX_TIMELINE], cut, last


def _run_context(state: State, run_id: str) -> dict[str, Any]:
    state.sweep()
    row = _run(state, run_id)
    entries, cut, last = state.read(lambda store: _timeline(store, row.id))
    if row.duration_s is None:
        recorded = state.read(lambda store: store.active_seconds(row.id))
        usage = _live_usage(row, entries, recorded)
    else:
        tokens = row.input_tokens + row.output_tokens
        usage = Usage(row.steps, row.tool_calls, tokens, row.cost_usd, row.duration_s)
    budgets, budget_note = _budgets(row, usage)
    pending = state.read(lambda store: store.approvals(row.id))
    return {
        "run": row,
        "status": row.stop_reason or row.status,
        "entries": entries,
        "cut": cut,
        "last_event_id": last,
        "budgets": budgets,
        "budget_note": budget_note,
        "usage": usage,
        "inputs": _pretty(row.inputs_json),
        "result": _pretty(row.result_json) if row.result_json else None,
        "pending": pending,
        "escalated": state.read(lambda store: escalation_view(store, row)),
        "questions": waiting_cards(state, row.id),
        "check_outputs": state.read(
            lambda store: {(c["attempt"], c["check_index"]): c for c in store.check_runs(row.id)}
        ),
    }


@router.get("/runs/{run_id}")
def run_page(request: Request, state: State, run_id: str, escalation: str = "") -> Response:
    """One run: its totals, budgets, timeline, stop reason and answer; live while it runs.

    ``escalation`` is the outcome of a continue or close form (the redirect's), shown once.
    """
    message, refused = outcome_message(escalation, run_id)
    return _page(
        request,
        "run.html",
        escalation_message=message,
        escalation_refused=refused,
        **_run_context(state, run_id),
    )


@router.get("/parts/runs/{run_id}")
def run_part(request: Request, state: State, run_id: str) -> Response:
    """The run's live part alone, fetched again on each of its events."""
    return _page(request, "_run_body.html", **_run_context(state, run_id))


# ---------------------------------------------------------------------------------------------
# approvals


def _queue_context(state: State) -> dict[str, Any]:
    def read(store: RunStore) -> list[dict[str, Any]]:
        approvals = _approvals(store, store.approvals())
        done: dict[str, list[dict[str, Any]]] = {}
        for approval in approvals:
            run_id = approval["run_id"]
            if run_id not in done:
                done[run_id] = [
                    {**call, "arguments_text": _pretty(call["arguments"])}
                    for call in store.tool_calls(run_id)
                ]
            approval["arguments_text"] = _pretty(approval["arguments"])
            approval["done"] = done[run_id]
        return approvals

    last_event_id = state.read(lambda store: store.last_event_id())  # as for the runs
    return {
        "approvals": state.read(read),
        "questions": waiting_cards(state),  # ask_human questions, answered on the same page
        "last_event_id": last_event_id,
    }


#: What the page says after a decision, by the ``outcome`` the redirect carries.
OUTCOMES = {
    "approved": "Approved {call} of run {run}. Resume the run to continue it "
    "(a daemon continues its own runs by itself): agentrun resume {run}",
    "denied": "Denied {call} of run {run}; the reason goes to the model when the run resumes: "
    "agentrun resume {run}",
    Refusal.DECIDED.value: "Refused: {call} of run {run} was already decided.",
    Refusal.NO_CALL.value: "Refused: run {run} never asked about a call {call}.",
    Refusal.NO_RUN.value: "Refused: there is no run {run}.",
    Refusal.NOTHING_PENDING.value: "Refused: run {run} has nothing pending.",
    **ANSWER_OUTCOMES,
}


@router.get("/approvals")
def approvals_page(
    request: Request, state: State, outcome: str = "", run: str = "", call: str = ""
) -> Response:
    """The approval queue across runs, with what a person needs to decide; live."""
    message = OUTCOMES[outcome].format(run=run, call=call) if outcome in OUTCOMES else ""
    refused = outcome not in ("", "approved", "denied", "answer_recorded")
    return _page(
        request, "approvals.html", message=message, refused=refused, **_queue_context(state)
    )


@router.get("/parts/approvals")
def approvals_part(request: Request, state: State) -> Response:
    """The queue alone, fetched again when an approval is asked or decided."""
    return _page(request, "_queue.html", **_queue_context(state))


@router.post("/approvals/{run_id}/{call_id}")
async def decide_page(
    request: Request,
    state: State,
    who: Annotated[Principal, Depends(principal)],
    on_decision: OnDecision,
    run_id: str,
    call_id: str,
) -> Response:
    """Approve or deny one call from the form, then go back to the queue (303, PRG).

    A daemon serving the page is told at once (it continues the run when nothing else of it
    waits), as the API's decisions tell it.

    The form's ``decision`` is ``approve`` or ``deny``; its ``reason`` goes to the record
    (and, for a denial, to the model).
    """
    form = await read_form(request)
    decision = form.get("decision")
    if decision not in ("approve", "deny"):
        raise HTTPException(422, f"decision {decision!r} is neither 'approve' nor 'deny'")
    approved = decision == "approve"
    reason = form.get("reason", "").strip()
    try:
        decided = await run_in_threadpool(
            state.read, lambda store: decide(store, run_id, call_id, approved, reason, who.by)
        )
        outcome = "approved" if approved else "denied"
        if on_decision is not None:
            on_decision(decided.run.id)
    except DecisionRefused as refused:
        outcome = refused.refusal.value
    query = urlencode({"outcome": outcome, "run": run_id, "call": call_id})
    return RedirectResponse(f"/approvals?{query}", status_code=303)


# ---------------------------------------------------------------------------------------------
# agents and daemon


def _daemon(request: Request) -> DaemonOperations | None:
    """The daemon's operations when a daemon serves the app; None over the store alone."""
    operations: DaemonOperations | None = request.app.state.daemon
    return operations


#: The prefix of a "Run now" form's input fields (``input.title``).
INPUT_FIELD = "input."


@router.get("/agents")
async def agents_page(request: Request) -> Response:
    """Every spec of the daemon: errors, triggers, next fires, last outcome, runs today.

    An agent with a manual trigger gets a "Run now" form with a field per declared input.
    Over the store alone, the page says that no daemon is running. ``async``: the daemon's
    operations are called on its event loop.
    """
    return _agents(request)


def _agents(request: Request, refused: str = "", agent: str = "", status: int = 200) -> Response:
    daemon = _daemon(request)
    agents = daemon.agent_list() if daemon is not None else []
    response = _page(
        request,
        "agents.html",
        daemon=daemon,
        agents=agents,
        refused=refused,
        refused_agent=agent,
        input_field=INPUT_FIELD,
        new_key=secrets.token_urlsafe(12),
    )
    response.status_code = status
    return response


@router.post("/agents/{name}/runs")
async def run_now(request: Request, name: str) -> Response:
    """Fire the agent's manual trigger from its "Run now" form, then show the run (303).

    Empty fields are left out (their defaults apply); values are coerced to the inputs'
    types as ``--input`` strings are. The form's hidden ``key`` (new on every render) is the
    idempotency key, so submitting the same form twice starts one run. A refusal (bad
    inputs, no manual trigger) shows the Agents page again with the daemon's message.
    """
    daemon = _daemon(request)
    if daemon is None:
        return _agents(request, "no daemon is running: start agentrun daemon", name, 409)
    form = await read_form(request)
    inputs = {
        field.removeprefix(INPUT_FIELD): value
        for field, value in form.items()
        if field.startswith(INPUT_FIELD) and value.strip()
    }
    try:
        fired = daemon.fire_manual(name, inputs, form.get("key") or None)
    except Refused as refused:
        return _agents(request, refused.message, name, refused.status)
    run_id = str(fired["run_id"])
    state: WebState = request.app.state.web
    deadline = time.monotonic() + START_WAIT_S
    while time.monotonic() < deadline:
        if await run_in_threadpool(state.read, lambda store: store.run(run_id)) is not None:
            return RedirectResponse(f"/runs/{run_id}", status_code=303)
        if daemon.ended(run_id) is not None:  # it will never run (skipped, failed)
            break
        await asyncio.sleep(0.1)
    # Not started yet (queued behind a run of its agent): the live list shows it when it does.
    return RedirectResponse(f"/runs?{urlencode({'agent': name})}", status_code=303)


@router.get("/daemon")
async def daemon_page(request: Request, state: State) -> Response:
    """The daemon's status, spec errors and notices; over the store alone, the notices."""
    daemon = _daemon(request)
    status = daemon.daemon_status() if daemon is not None else None
    if status is not None:
        notices = list(status.get("notices", []))
    else:
        notices = (await run_in_threadpool(state.read, _notices))[-50:]
    return _page(request, "daemon.html", daemon=daemon, status=status, notices=notices)


def _notices(store: RunStore) -> list[Any]:
    return list(store.notices())


__all__ = ["router"]
