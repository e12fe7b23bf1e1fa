"""The daemon's routes of the API: agents, starting and cancelling runs, the daemon's status.

They call the :class:`~runner.web.operations.DaemonOperations` the daemon passed to
:func:`runner.web.app.create_app` (``app.state.daemon``). Served over the run store alone
(``agentrun console`` with no daemon) they answer 404 with a JSON error saying so; they are
always declared, so the OpenAPI document is the same whoever serves it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from .api import NOT_FOUND, ErrorOut, RunDetail, State, _run, principal, run_detail
from .auth import Principal
from .operations import DaemonOperations, Refused

#: The longest ``wait`` of a start, in seconds.
MAX_WAIT_S = 600.0
#: How often a start with ``wait`` looks whether its run ended, in seconds.
WAIT_POLL_S = 0.1

router = APIRouter(prefix="/api/v1")

NO_DAEMON = (
    "no daemon is running for this AGENTRUN_HOME (agentrun console serves the run store "
    "alone): start one with 'agentrun daemon DIR --http 127.0.0.1:8790' for agents, starting "
    "and cancelling runs"
)


class TriggerOut(BaseModel):
    """One trigger of an agent."""

    kind: str = Field(description="cron, watch, manual or webhook.")
    cron: str | None = Field(default=None, description="The cron expression (cron).")
    timezone: str | None = Field(default=None, description="Its timezone (cron).")
    next: str | None = Field(default=None, description="Next fire, UTC ISO 8601 (cron).")
    paths: list[str] | None = Field(default=None, description="Watched paths (watch).")
    path: str | None = Field(default=None, description="URL path (webhook).")


class InputOut(BaseModel):
    """One declared input of an agent."""

    name: str
    type: str = Field(description="string, integer, number, boolean, enum, list or object.")
    required: bool
    default: Any = None
    values: list[Any] | None = Field(default=None, description="An enum's values.")
    description: str | None = None


class AgentOut(BaseModel):
    """One spec file of the daemon's folders: its agent, or why it does not load."""

    name: str | None = Field(description="The agent's name; null for a file that never loaded.")
    path: str = Field(description="The spec file.")
    valid: bool = Field(description="Whether the file on disk loads (see `errors`).")
    errors: list[str] = Field(
        description="Located errors of the file (`path:line:col: ...`), as `agentrun "
        "validate` gives them; a loaded agent with errors runs its last good version."
    )
    loaded: bool = Field(description="Whether the daemon schedules the agent.")
    inputs: list[InputOut]
    triggers: list[TriggerOut]
    running: list[str] = Field(description="Its active runs' ids.")
    queued: list[str] = Field(description="Runs waiting for its active run to end.")
    last: str | None = Field(
        description="How its last run ended and which: `completed (01J...)`; null before one."
    )
    runs_today: int = Field(description="Runs started since 00:00 UTC.")
    spend_today_usd: float = Field(description="USD spent by those runs (known prices only).")


class AgentList(BaseModel):
    """Every spec of the daemon, by file name."""

    agents: list[AgentOut]


class StartIn(BaseModel):
    """A run to start."""

    inputs: dict[str, Any] = Field(
        default_factory=dict,
        description="Input values by name, typed as the spec declares them (a string is "
        "parsed as `agentrun trigger --input` parses it).",
    )
    idempotency_key: str | None = Field(
        default=None,
        max_length=200,
        description="As `agentrun trigger --key`: a key seen before answers the run it "
        "started (`duplicate`: true) and starts nothing.",
    )
    wait: float = Field(
        default=0,
        ge=0,
        le=MAX_WAIT_S,
        description="Seconds to wait for the run to end; its result is in the answer if it "
        "does (200), else 202.",
    )


class StartOut(BaseModel):
    """A started (or already started) run."""

    run_id: str
    outcome: str = Field(
        description="The fire's outcome: started, queued, skipped, replaced, or how a fire "
        "that never ran ended (failed, cancelled)."
    )
    duplicate: bool = Field(description="The key was seen before: this is its run.")
    done: bool = Field(description="The run ended (or will never run) within `wait`.")
    run: RunDetail | None = Field(
        description="The run as recorded, once it began (its stop reason, final answer, "
        "structured `result` and totals once it ended)."
    )
    reason: str | None = Field(default=None, description="Why a fire never ran.")


class CancelOut(BaseModel):
    """A cancel request carried out."""

    run_id: str
    state: str = Field(
        description="`cancelling` (SIGTERM sent; the run ends `cancelled`) or `withdrawn` "
        "(it waited for a worker and never starts)."
    )


class DaemonOut(BaseModel):
    """The daemon's status, as `agentrun daemon status --json` shows it, and its notices."""

    pid: int
    started: str = Field(description="UTC, ISO 8601.")
    url: str | None = Field(description="Where this server listens.")
    agents: list[dict[str, Any]] = Field(
        description="Each agent: name, path, triggers, running, queued, last."
    )
    errors: list[str] = Field(description="Located spec errors.")
    workers_idle: int
    workers_idle_by_path: dict[str, int] = Field(description="Warm workers by model path.")
    notices: list[dict[str, Any]] = Field(
        description="The latest notices (refused webhooks, spec errors, runs not continued)."
    )
    litellm_imported: bool


def daemon_operations(request: Request) -> DaemonOperations:
    """The daemon's operations; 404 when the app serves the run store alone."""
    operations: DaemonOperations | None = request.app.state.daemon
    if operations is None:
        raise HTTPException(404, NO_DAEMON)
    return operations


Operations = Annotated[DaemonOperations, Depends(daemon_operations)]
NO_DAEMON_ERROR: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "No valid token or session cookie."},
    404: {"model": ErrorOut, "description": "No daemon serves this app."},
}


def _refused(refused: Refused) -> HTTPException:
    return HTTPException(refused.status, refused.message)


@router.get("/agents", response_model=AgentList, responses=NO_DAEMON_ERROR, summary="List agents")
async def list_agents(operations: Operations) -> dict[str, Any]:
    """Every spec of the daemon's folders.

    Validity (located errors), inputs, triggers, next fires, last outcome, runs and spend
    today.
    """
    return {"agents": operations.agent_list()}


@router.post(
    "/agents/{name}/runs",
    response_model=StartOut,
    status_code=202,
    responses={
        **NO_DAEMON_ERROR,
        200: {"model": StartOut, "description": "The run ended within `wait`, or a duplicate."},
        403: {"model": ErrorOut, "description": "A cookie request without its CSRF token."},
        404: {"model": ErrorOut, "description": "No such agent (or no daemon)."},
        409: {"model": ErrorOut, "description": "The agent has no manual trigger."},
        422: {"model": ErrorOut, "description": "Bad inputs (the CLI's located message)."},
        503: {"model": ErrorOut, "description": "The daemon is stopping."},
    },
    summary="Start a run",
)
async def start_run(
    operations: Operations,
    state: State,
    name: str,
    body: StartIn,
    traceparent: Annotated[str | None, Header()] = None,
) -> JSONResponse | dict[str, Any]:
    """Fire the agent's manual trigger (`agentrun trigger NAME --input ... --key ...`).

    Under its concurrency policy; with `wait`, the answer holds the run's result if it ends
    in time (200), else it is 202 with the run's id. A W3C `traceparent` header makes the
    run's trace (when its telemetry is on) a child of the caller's span.
    """
    try:
        fired = operations.fire_manual(name, body.inputs, body.idempotency_key, traceparent)
    except Refused as refused:
        raise _refused(refused) from None
    run_id = str(fired["run_id"])
    answer: dict[str, Any] = {
        "run_id": run_id,
        "outcome": str(fired["outcome"]),
        "duplicate": bool(fired.get("duplicate")),
        "done": False,
        "run": None,
    }
    deadline = time.monotonic() + body.wait
    ended = operations.ended(run_id)
    while ended is None and time.monotonic() < deadline:
        await asyncio.sleep(WAIT_POLL_S)
        ended = operations.ended(run_id)
    if ended is not None:
        answer["done"] = True
        if ended:
            answer["outcome"], answer["reason"] = ended["outcome"], ended.get("reason")
    row = await run_in_threadpool(state.read, lambda store: store.run(run_id))
    if row is not None:
        answer["run"] = run_detail(row)
    status = 200 if answer["done"] or answer["duplicate"] else 202
    return JSONResponse(StartOut(**answer).model_dump(mode="json"), status_code=status)


@router.post(
    "/runs/{run_id}/cancel",
    response_model=CancelOut,
    status_code=202,
    responses={
        **NOT_FOUND,
        403: {"model": ErrorOut, "description": "A cookie request without its CSRF token."},
        409: {"model": ErrorOut, "description": "The run is not active in the daemon."},
    },
    summary="Cancel a run",
)
async def cancel_run(
    operations: Operations,
    state: State,
    who: Annotated[Principal, Depends(principal)],
    run_id: str,
) -> dict[str, Any]:
    """Cancel an active run of the daemon.

    SIGTERM to its worker (it ends `cancelled`), or withdrawn when it still waits for one.
    """
    row = await run_in_threadpool(_run, state, run_id)
    try:
        return {"run_id": row.id, "state": operations.cancel_run(row.id, who.by)}
    except Refused as refused:
        raise _refused(refused) from None


@router.get("/daemon", response_model=DaemonOut, responses=NO_DAEMON_ERROR, summary="Daemon status")
async def daemon_status(operations: Operations) -> dict[str, Any]:
    """The daemon's status (`agentrun daemon status`).

    Agents, triggers, running runs, warm workers, spec errors and notices.
    """
    return operations.daemon_status()
