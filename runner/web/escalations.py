"""Escalated runs in the API and the console: list them, continue with more budget, close.

``GET /api/v1/escalations``, ``POST /api/v1/runs/{run}/continue`` (``{"add": {"max_steps":
5}, "reason": "..."}``) and ``POST /api/v1/runs/{run}/close``; on a run's console page, what
escalated it, a form per limit that has a ceiling, and a close button (``POST
/runs/{run}/continue`` and ``/runs/{run}/close``, CSRF-protected like every form). All go
through :func:`runner.decisions.continue_escalated` and
:func:`~runner.decisions.close_escalated`, as ``agentrun resume --add`` and ``agentrun runs
close`` do. Status codes: 404 no such run, 409 not escalated or decided already (or its spec
file changed: the ceilings of the version that ran are no longer known), 422 a bad limit name
or amount (or a budget stop continued without raising its limit), 403 a grant the spec's
``budgets.ceilings`` does not allow. A daemon serving the app continues its own run at once.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ..decisions import (
    DecisionRefused,
    EscalationDecided,
    Refusal,
    close_escalated,
    continue_escalated,
    run_spec,
)
from ..escalation import GRANTABLE, effective_limits
from ..store import RunRow, RunStore
from .api import NOT_FOUND, ErrorOut, OnDecision, State, _run, principal
from .auth import Principal
from .forms import read_form

router = APIRouter(prefix="/api/v1")
pages_router = APIRouter(include_in_schema=False)

#: The HTTP status of each refusal.
REFUSAL_STATUS = {
    Refusal.NO_RUN: 404,
    Refusal.NOT_ESCALATED: 409,
    Refusal.DECIDED: 409,
    Refusal.SPEC_CHANGED: 409,
    Refusal.GRANT_INVALID: 422,
    Refusal.GRANT_REFUSED: 403,
}
ESCALATION_ERRORS: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    403: {
        "model": ErrorOut,
        "description": "A grant past budgets.ceilings (or of a limit without a ceiling), or a "
        "cookie-authenticated request without CSRF token.",
    },
    409: {
        "model": ErrorOut,
        "description": "The run is not escalated, was decided already, or its spec changed.",
    },
    422: {"model": ErrorOut, "description": "A bad limit name or amount."},
}


class EscalationOut(BaseModel):
    """An escalated run, and what became of it."""

    run_id: str
    agent: str
    stop_reason: str = Field(description="The stop reason in escalate_on that escalated it.")
    message: str = Field(description="Its context: usage against the limits, last calls.")
    status: str = Field(description="open, continued or closed.")
    escalated_at: str = Field(description="UTC, ISO 8601.")
    decided_by: str | None
    decision_reason: str | None
    decided_at: str | None


class EscalationList(BaseModel):
    """Escalations, oldest first."""

    escalations: list[EscalationOut]


class ContinueIn(BaseModel):
    """More budget for an escalated run, and why."""

    add: dict[str, float | str] = Field(
        default_factory=dict,
        description="Limit name → amount added: max_steps, max_tool_calls, max_tokens "
        "(whole numbers), max_cost_usd (USD), max_duration (seconds or a duration such as "
        "15m), max_check_retries. Within the spec's budgets.ceilings.",
        examples=[{"max_steps": 5}],
    )
    reason: str = Field(default="", description="Why, in words (recorded).")


class CloseIn(BaseModel):
    """Why an escalated run is closed."""

    reason: str = Field(default="", description="Why, in words (recorded).")


class EscalationDecisionOut(BaseModel):
    """What was decided about an escalated run."""

    run_id: str
    status: str = Field(description="continued or closed.")
    stop_reason: str = Field(description="The stop reason that escalated it.")
    grants: dict[str, float] = Field(description="Limit name → amount added.")
    limits: dict[str, float] = Field(description="Limit name → the run's limit now.")
    by: str = Field(description="Who decided, as recorded: `api:<label>@<address>`.")
    resume: str = Field(
        description="What continues a continued run: the daemon, by itself, for a run it "
        "started, else the command `agentrun resume RUN`."
    )


def _escalations(store: RunStore, run_id: str | None, status: str | None) -> list[dict[str, Any]]:
    answers = []
    agents: dict[str, str] = {}
    for row in store.escalations(run_id, status=status):
        if row["run_id"] not in agents:
            run = store.run(row["run_id"])
            agents[row["run_id"]] = run.agent if run is not None else ""
        answers.append(
            {
                "run_id": row["run_id"],
                "agent": agents[row["run_id"]],
                "stop_reason": row["stop_reason"],
                "message": row["message"],
                "status": row["status"],
                "escalated_at": row["created_at"],
                "decided_by": row["decided_by"],
                "decision_reason": row["decision_reason"],
                "decided_at": row["decided_at"],
            }
        )
    return answers


@router.get(
    "/escalations",
    response_model=EscalationList,
    responses=NOT_FOUND,
    summary="Escalated runs",
)
def list_escalations(
    state: State,
    run_id: Annotated[str | None, Query(description="Only this run's (id or prefix).")] = None,
    status: Annotated[
        str | None, Query(description="open (the default), continued, closed or all.")
    ] = "open",
) -> dict[str, Any]:
    """Escalated runs waiting for a person, across runs, oldest first (`agentrun escalations`)."""
    if status not in ("open", "continued", "closed", "all", None):
        raise HTTPException(400, f"status {status!r} is not one of: open, continued, closed, all")
    full_id = _run(state, run_id).id if run_id else None
    wanted = None if status == "all" else status
    return {"escalations": state.read(lambda store: _escalations(store, full_id, wanted))}


def _answer(
    decided: EscalationDecided, status: str, who: Principal, on_decision: OnDecision
) -> dict[str, Any]:
    if on_decision is not None:
        on_decision(decided.run.id)  # a daemon serving the app continues its run at once
    daemon = on_decision is not None and decided.run.trigger != "cli"
    return {
        "run_id": decided.run.id,
        "status": status,
        "stop_reason": decided.escalation["stop_reason"],
        "grants": decided.grants,
        "limits": decided.limits,
        "by": who.by,
        "resume": (
            ""
            if status == "closed"
            else "the daemon continues the run"
            if daemon
            else f"agentrun resume {decided.run.id}"
        ),
    }


@router.post(
    "/runs/{run_id}/continue",
    response_model=EscalationDecisionOut,
    responses=ESCALATION_ERRORS,
    summary="Continue an escalated run",
)
def continue_run(
    state: State,
    who: Annotated[Principal, Depends(principal)],
    run_id: str,
    body: ContinueIn,
    on_decision: OnDecision,
) -> dict[str, Any]:
    """Continue an escalated run with more budget (`agentrun resume RUN --add NAME=VALUE`).

    The grants are checked against the ceilings of the spec the run ran (its file, unchanged
    since: a changed spec is refused with 409; `agentrun resume --force` continues with a new
    version).
    """
    try:
        decided = state.read(
            lambda store: continue_escalated(store, None, run_id, body.add, body.reason, who.by)
        )
    except DecisionRefused as refused:
        raise HTTPException(REFUSAL_STATUS[refused.refusal], str(refused)) from None
    return _answer(decided, "continued", who, on_decision)


@router.post(
    "/runs/{run_id}/close",
    response_model=EscalationDecisionOut,
    responses=ESCALATION_ERRORS,
    summary="Close an escalated run",
)
def close_run(
    state: State,
    who: Annotated[Principal, Depends(principal)],
    run_id: str,
    body: CloseIn,
) -> dict[str, Any]:
    """Close an escalated run: it ends with the reason that escalated it (`agentrun runs close`)."""
    try:
        decided = state.read(lambda store: close_escalated(store, run_id, body.reason, who.by))
    except DecisionRefused as refused:
        raise HTTPException(REFUSAL_STATUS[refused.refusal], str(refused)) from None
    return _answer(decided, "closed", who, None)


# ---------------------------------------------------------------------------------------------
# the run page's part


def escalation_view(store: RunStore, row: RunRow) -> dict[str, Any] | None:
    """What a run's page shows about its escalation; None for a run never escalated.

    ``escalation`` is the newest escalation row; ``limits`` one entry per grantable limit
    with a ceiling (``name``, ``limit`` now, ``ceiling``, ``room``: the most still grantable);
    ``spec_problem`` why no grant can be offered (its spec file is gone or changed).
    """
    found = store.escalations(row.id, status=None)
    if not found:
        return None
    view: dict[str, Any] = {"escalation": found[-1], "limits": [], "spec_problem": ""}
    if found[-1]["status"] != "open":
        return view
    try:
        spec = run_spec(row)
    except DecisionRefused as refused:
        view["spec_problem"] = str(refused)
        return view
    limits = effective_limits(spec, store.grants(row.id))
    for name in GRANTABLE:
        ceiling = getattr(spec.budgets.ceilings, name)
        current = limits[name]
        if ceiling is None or current is None:
            continue
        room = max(0.0, float(ceiling) - current)
        view["limits"].append(
            {"name": name, "limit": current, "ceiling": float(ceiling), "room": room}
        )
    return view


#: What the run page says after a decision, by the ``escalation`` outcome the redirect carries.
OUTCOMES = {
    "continued": "Continued with the budget granted. A daemon continues its own runs by "
    "itself; otherwise: agentrun resume {run}",
    "closed": "Closed: the run keeps the stop reason that escalated it.",
    Refusal.DECIDED.value: "Refused: the escalation was decided already.",
    Refusal.NOT_ESCALATED.value: "Refused: the run is not escalated.",
    Refusal.NO_RUN.value: "Refused: there is no run {run}.",
    Refusal.SPEC_CHANGED.value: "Refused: the run's spec file is gone or changed since it "
    "started; continue it with: agentrun resume {run} --force --add NAME=VALUE",
    Refusal.GRANT_INVALID.value: "Refused: give a positive amount (whole steps, tool calls, "
    "tokens or retries; USD such as 0.5; a duration such as 15m) for the limit that stopped "
    "the run.",
    Refusal.GRANT_REFUSED.value: "Refused: a grant over the ceiling is refused; see the most "
    "that can still be granted.",
}


def outcome_message(outcome: str, run_id: str) -> tuple[str, bool]:
    """The page's message for ``outcome`` and whether it is a refusal."""
    if outcome not in OUTCOMES:
        return "", False
    return OUTCOMES[outcome].format(run=run_id), outcome not in ("continued", "closed")


def _back(run_id: str, outcome: str) -> Response:
    query = urlencode({"escalation": outcome})
    return RedirectResponse(f"/runs/{quote(run_id, safe='')}?{query}#escalation", status_code=303)


@pages_router.post("/runs/{run_id}/continue")
async def continue_page(
    request: Request,
    state: State,
    who: Annotated[Principal, Depends(principal)],
    on_decision: OnDecision,
    run_id: str,
) -> Response:
    """Continue from the run page's form (fields ``add.<limit>``, empty ones ignored)."""
    form = await read_form(request)
    grants = {
        name.removeprefix("add."): value.strip()
        for name, value in form.items()
        if name.startswith("add.") and value.strip()
    }
    reason = form.get("reason", "").strip()
    try:
        decided = await run_in_threadpool(
            state.read,
            lambda store: continue_escalated(store, None, run_id, grants, reason, who.by),
        )
    except DecisionRefused as refused:
        return _back(run_id, refused.refusal.value)
    if on_decision is not None:
        on_decision(decided.run.id)
    return _back(decided.run.id, "continued")


@pages_router.post("/runs/{run_id}/close")
async def close_page(
    request: Request,
    state: State,
    who: Annotated[Principal, Depends(principal)],
    run_id: str,
) -> Response:
    """Close from the run page's button."""
    form = await read_form(request)
    reason = form.get("reason", "").strip()
    try:
        decided = await run_in_threadpool(
            state.read, lambda store: close_escalated(store, run_id, reason, who.by)
        )
    except DecisionRefused as refused:
        return _back(run_id, refused.refusal.value)
    return _back(decided.run.id, "closed")
