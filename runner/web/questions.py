"""Questions to a person (the ``ask_human`` tool) over HTTP: list them, answer one.

``GET /api/v1/questions`` lists the questions waiting for an answer (``agentrun
questions``); ``POST /api/v1/runs/{run}/questions/{call}/answer`` answers one (``agentrun
answer RUN CALL TEXT``). Both go through :mod:`runner.decisions`
(:func:`~runner.decisions.waiting_questions`, :func:`~runner.decisions.answer`), the very
operations the CLI and the console's answer form (:mod:`runner.web.pages`) call, so they
refuse alike: 404 no such run or question, 409 answered already (or timed out, or the run
is running or ended), 422 an answer that is not one of the choices. A daemon serving the
app is woken at once to continue the run, as after an approval.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ..decisions import DecisionRefused, Refusal, answer, waiting_questions
from ..store import QuestionRow, RunRow, RunStore
from .api import NOT_FOUND, ErrorOut, OnDecision, State, _run, principal
from .auth import Principal
from .forms import read_form
from .state import WebState

router = APIRouter(prefix="/api/v1")


class QuestionOut(BaseModel):
    """A question the model asked a person, with what they need to answer it."""

    run_id: str
    agent: str
    call_id: str = Field(description="The ask_human call's id (`agentrun answer RUN CALL`).")
    question: str
    context: str = Field(description="What the model says the person needs to know.")
    choices: list[str] = Field(description="The answers allowed; empty for free text.")
    status: str = Field(description="waiting, answered or timed_out.")
    asked_at: str = Field(description="UTC, ISO 8601.")
    expires_at: str | None = Field(
        description="UTC, ISO 8601: when the run stops with `answer_timeout`; null: no limit."
    )
    answer: str | None
    answered_by: str | None
    answered_at: str | None


class QuestionList(BaseModel):
    """Questions, oldest first."""

    questions: list[QuestionOut]


class AnswerIn(BaseModel):
    """A person's answer."""

    answer: str = Field(
        description="The answer, sent to the model as the tool's result; one of the "
        "question's choices when it has some."
    )


class AnswerOut(BaseModel):
    """What was recorded."""

    run_id: str
    call_id: str
    answer: str = Field(description="As recorded (a choice in its own spelling).")
    by: str = Field(description="Who answered, as recorded: `api:<label>@<address>`.")
    resume: str = Field(
        description="What continues the run: the daemon, by itself, for a run it started, "
        "else the command `agentrun resume RUN`."
    )


#: The status code of each refusal :func:`~runner.decisions.answer` can give.
REFUSAL_STATUS = {
    Refusal.NO_RUN: 404,
    Refusal.NO_QUESTION: 404,
    Refusal.ANSWERED: 409,
    Refusal.NOT_A_CHOICE: 422,
}
ANSWER_ERRORS: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    403: {"model": ErrorOut, "description": "A cookie-authenticated request without CSRF token."},
    409: {"model": ErrorOut, "description": "Answered already, timed out, or the run moved on."},
    422: {"model": ErrorOut, "description": "Not one of the question's choices (or empty)."},
}


def question_cards(store: RunStore, rows: list[QuestionRow]) -> list[dict[str, Any]]:
    """Question rows as the API and the console show them (with their run's agent)."""
    runs: dict[str, RunRow | None] = {}
    cards = []
    for row in rows:
        if row["run_id"] not in runs:
            runs[row["run_id"]] = store.run(row["run_id"])
        run = runs[row["run_id"]]
        cards.append(
            {
                "run_id": row["run_id"],
                "agent": run.agent if run else "",
                "call_id": row["call_id"],
                "question": row["question"],
                "context": row["context"] or "",
                "choices": list(row["choices"]),
                "status": row["status"],
                "asked_at": row["created_at"],
                "expires_at": row["expires_at"],
                "answer": row["answer"],
                "answered_by": row["answered_by"],
                "answered_at": row["answered_at"],
            }
        )
    return cards


def waiting_cards(state: WebState, run_id: str | None = None) -> list[dict[str, Any]]:
    """The questions waiting for an answer (of one run, a full id, or all), as cards."""
    return state.read(lambda store: question_cards(store, waiting_questions(store, run_id)))


@router.get(
    "/questions", response_model=QuestionList, responses=NOT_FOUND, summary="Waiting questions"
)
def list_questions(
    state: State,
    run_id: Annotated[str | None, Query(description="Only this run's (id or prefix).")] = None,
) -> dict[str, Any]:
    """Questions waiting for an answer, across runs, oldest first (`agentrun questions`)."""
    full_id = _run(state, run_id).id if run_id else None
    return {"questions": waiting_cards(state, full_id)}


def record_answer(
    state: WebState,
    run_id: str,
    call_id: str,
    text: str,
    by: str,
    on_decision: Callable[[str], None] | None,
) -> tuple[str, str, str]:
    """Answer through :func:`runner.decisions.answer`; wake a daemon serving the app.

    Returns:
        ``(run id, call id, answer as recorded)``.

    Raises:
        DecisionRefused: as :func:`runner.decisions.answer` refuses.
    """
    answered = state.read(lambda store: answer(store, run_id, call_id, text, by))
    if on_decision is not None:
        on_decision(answered.run.id)  # a daemon serving the app continues the run at once
    return answered.run.id, answered.question["call_id"], answered.answer


@router.post(
    "/runs/{run_id}/questions/{call_id}/answer",
    response_model=AnswerOut,
    responses=ANSWER_ERRORS,
    summary="Answer a question",
)
def answer_question(
    state: State,
    who: Annotated[Principal, Depends(principal)],
    run_id: str,
    call_id: str,
    given: AnswerIn,
    on_decision: OnDecision,
) -> dict[str, Any]:
    """Answer a run's waiting question (`agentrun answer RUN CALL TEXT`)."""
    try:
        full_id, call, recorded = record_answer(
            state, run_id, call_id, given.answer, who.by, on_decision
        )
    except DecisionRefused as refused:
        raise HTTPException(REFUSAL_STATUS[refused.refusal], str(refused)) from None
    run = state.read(lambda store: store.run(full_id))
    daemon_run = on_decision is not None and run is not None and run.trigger != "cli"
    return {
        "run_id": full_id,
        "call_id": call,
        "answer": recorded,
        "by": who.by,
        "resume": "the daemon continues the run" if daemon_run else f"agentrun resume {full_id}",
    }


# ---------------------------------------------------------------------------------------------
# the console's answer form

pages_router = APIRouter(include_in_schema=False)

#: What the approvals page says after an answer form, by the ``outcome`` the redirect carries.
ANSWER_OUTCOMES = {
    "answer_recorded": "Answered {call} of run {run}. Resume the run to continue it "
    "(a daemon continues its own runs by itself): agentrun resume {run}",
    Refusal.NO_QUESTION.value: "Refused: run {run} asked no question {call}, or none waits.",
    Refusal.ANSWERED.value: "Refused: the question {call} of run {run} no longer waits "
    "(answered already, timed out, or the run moved on).",
    Refusal.NOT_A_CHOICE.value: "Refused: that answer to {call} of run {run} is not one of "
    "its choices (or is empty).",
}


@pages_router.post("/questions/{run_id}/{call_id}")
async def answer_page(
    request: Request,
    state: State,
    who: Annotated[Principal, Depends(principal)],
    on_decision: OnDecision,
    run_id: str,
    call_id: str,
) -> Response:
    """Answer from the form, then go back to the queue (303, PRG).

    The form's ``answer`` is a choice's button or the text box. CSRF-protected like every
    cookie-authenticated POST; a daemon serving the page is woken to continue the run.
    """
    form = await read_form(request)
    try:
        await run_in_threadpool(
            record_answer, state, run_id, call_id, form.get("answer", ""), who.by, on_decision
        )
        outcome = "answer_recorded"
    except DecisionRefused as refused:
        outcome = refused.refusal.value
    query = urlencode({"outcome": outcome, "run": run_id, "call": call_id})
    return RedirectResponse(f"/approvals?{query}#questions", status_code=303)
