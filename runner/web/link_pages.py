"""The pages of signed decision links: ``GET /d/{token}`` confirms, ``POST /d/{token}`` decides.

A link from a notification (:mod:`runner.web.links`) is its own credential: these two
routes are served without the console's login (the app names :data:`LINK_PREFIX` public),
and nothing else is. A GET never decides: it shows the call (tool, arguments, risk, why it
asks) or the question, and a form that POSTs back to the same URL; the token in the URL is
the form's CSRF proof (an attacker who has it has the link), and a POST whose ``Origin``
header names another site is refused besides. The POST decides through
:func:`runner.decisions.decide` (or :func:`runner.decisions.answer`) with
``by="link:<nonce prefix>"``, in the transaction that marks the link used.

Every refused use is recorded in ``decision_link_refusals`` and answered with a page that
says why: a bad signature (403), an expired link (410), a link used already (409), a call
since asked again with other arguments (409), a call or question decided another way (409).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from ..decisions import DecisionRefused, decide
from ..store import RunStore
from .links import LINK_PREFIX, DecisionLinks, LinkClaims, LinkInvalid
from .pages import templates
from .state import WebState

router = APIRouter(include_in_schema=False)

#: Status code and words of each refusal.
REFUSALS: dict[str, tuple[int, str]] = {
    "bad_signature": (403, "This link is not valid: it was altered or not made here."),
    "unknown_link": (403, "This link is not on record here."),
    "expired": (410, "This link has expired. Decide in the console instead."),
    "used": (409, "This link was used already: each link works once."),
    "other_arguments": (
        409,
        "The call was asked again with other arguments since this link was sent; "
        "this link does not apply to them.",
    ),
    "decided": (409, "This was decided another way already."),
    "no_call": (404, "The run has no such call or question."),
    "cross_origin": (403, "The form was sent from another site."),
    "bad_form": (422, "The form is incomplete."),
}
#: The most characters of a call's arguments the page shows.
MAX_ARGUMENTS_CHARS = 4000


class _Refused(Exception):
    def __init__(self, reason: str, claims: LinkClaims | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.claims = claims


def _links(request: Request) -> DecisionLinks:
    links: DecisionLinks = request.app.state.links
    return links


def _check(store: RunStore, links: DecisionLinks, token: str) -> tuple[LinkClaims, Any]:
    """The claims of a usable link and what it decides (an approval or a question row).

    Raises:
        _Refused: why the link cannot be used.
    """
    try:
        claims = links.verify(token)
    except LinkInvalid as invalid:
        raise _Refused(invalid.reason, invalid.claims) from None
    row = store.decision_link(claims.nonce)
    if row is None or (row["run_id"], row["call_id"]) != (claims.run_id, claims.call_id):
        raise _Refused("unknown_link", claims)
    if row["used_at"] is not None:
        raise _Refused("used", claims)
    expires = datetime.fromisoformat(row["expires_at"].replace("Z", "+00:00"))
    if links.clock() >= expires.astimezone(UTC):
        raise _Refused("expired", claims)
    if claims.action == "answer":
        question = store.question(claims.run_id, claims.call_id)
        if question is None:
            raise _Refused("no_call", claims)
        if question["status"] != "waiting":
            raise _Refused("decided", claims)
        return claims, question
    approval = store.latest_approval(claims.run_id, claims.call_id)
    if approval is None:
        raise _Refused("no_call", claims)
    if approval["status"] != "pending":
        raise _Refused("decided", claims)
    if approval["arguments_sha256"] != claims.arguments_sha256:
        raise _Refused("other_arguments", claims)
    return claims, approval


def _refuse(request: Request, state: WebState, refused: _Refused) -> Response:
    claims = refused.claims
    remote = request.client.host if request.client else None
    state.read(
        lambda store: store.refuse_decision_link(
            claims.nonce if claims else None,
            claims.run_id if claims else None,
            refused.reason,
            remote,
        )
    )
    status, words = REFUSALS[refused.reason]
    return templates.TemplateResponse(
        request,
        "link.html",
        {"refused": refused.reason, "words": words, "claims": claims},
        status_code=status,
    )


@router.get(LINK_PREFIX + "{token}")
async def confirm(request: Request, token: str) -> Response:
    """The confirmation page of a link: what it decides, and a button. Decides nothing."""
    state: WebState = request.app.state.web
    links = _links(request)
    try:
        claims, row = await run_in_threadpool(state.read, lambda s: _check(s, links, token))
    except _Refused as refused:
        return await run_in_threadpool(_refuse, request, state, refused)
    arguments = str(row.get("arguments", ""))
    if len(arguments) > MAX_ARGUMENTS_CHARS:
        arguments = arguments[: MAX_ARGUMENTS_CHARS - 1] + "…"
    return templates.TemplateResponse(
        request,
        "link.html",
        {"claims": claims, "row": row, "arguments": arguments, "refused": None},
    )


@router.post(LINK_PREFIX + "{token}")
async def use(request: Request, token: str) -> Response:
    """Use a link once: approve, deny or answer, as the token says; a page says what happened.

    A daemon serving the app is told at once (``on_decision``), as after the API's decisions.
    """
    state: WebState = request.app.state.web
    links = _links(request)
    origin = request.headers.get("origin")
    if origin and origin != "null" and not _same_origin(origin, request):
        return await run_in_threadpool(_refuse, request, state, _Refused("cross_origin"))
    form = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    reason = (form.get("reason") or [""])[0].strip()
    text = (form.get("answer") or [""])[0].strip()

    def use_once(store: RunStore) -> tuple[LinkClaims, str]:
        claims, _ = _check(store, links, token)
        by = f"link:{claims.nonce[:8]}"
        if claims.action == "answer" and not text:
            raise _Refused("bad_form", claims)

        def make() -> tuple[LinkClaims, str]:
            # Inside the transaction that marks the link used: the call may have been asked
            # again with other arguments since the check above.
            if claims.action != "answer":
                approval = store.latest_approval(claims.run_id, claims.call_id)
                if approval is not None and approval["arguments_sha256"] != claims.arguments_sha256:
                    raise _Refused("other_arguments", claims)
            if claims.action == "answer":
                from ..decisions import answer

                answer(store, claims.run_id, claims.call_id, text, by)
                return claims, "answered"
            approved = claims.action == "approve"
            why = reason or ("approved" if approved else "denied") + " with a decision link"
            decide(store, claims.run_id, claims.call_id, approved, why, by)
            return claims, "approved" if approved else "denied"

        try:
            done = store.use_decision_link(claims.nonce, by, make)
        except DecisionRefused as refused:
            # An answer that is not one of the choices keeps the link for a second try.
            not_decided = refused.refusal.value == "not_a_choice"
            raise _Refused("bad_form" if not_decided else "decided", claims) from None
        if done is None:
            raise _Refused("used", claims)
        return done

    try:
        claims, outcome = await run_in_threadpool(state.read, use_once)
    except _Refused as refused:
        return await run_in_threadpool(_refuse, request, state, refused)
    on_decision = request.app.state.on_decision
    if on_decision is not None:
        on_decision(claims.run_id)
    return templates.TemplateResponse(
        request, "link.html", {"claims": claims, "outcome": outcome, "refused": None}
    )


def _same_origin(origin: str, request: Request) -> bool:
    """Whether an ``Origin`` header names the server the request came to."""
    parts = urlsplit(origin)
    host = request.headers.get("host", "")
    return parts.netloc == host and parts.scheme in ("http", "https")
