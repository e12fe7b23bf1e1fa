"""The one ASGI app of the console and the API: :func:`create_app`.

``agentrun console`` serves it over the run store alone; the daemon serves the same app
(``agentrun daemon --http``) with its operations
(:class:`~runner.web.operations.DaemonOperations`: agents, starting and cancelling runs, its
status) and its webhook route passed to
:func:`create_app`, so that this package never imports the daemon.

Every request is authenticated by :class:`AuthMiddleware` (see :mod:`runner.web.auth`)
except ``/login``, the signed decision links (``/d/``: the token is the credential,
:mod:`runner.web.link_pages`) and the requests the caller names public (POSTs to the
daemon's webhook paths, which keep their HMAC): an API client with
``Authorization: Bearer TOKEN``, a browser with the session cookie (and, for a
state-changing request, the CSRF token). Errors are JSON, ``{"error": "<message>"}``,
with the status code that fits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..store.location import StoreLocation, open_store
from . import api, daemon_api, escalations, link_pages, pages, questions
from .auth import (
    CSRF_COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    SESSION_MAX_AGE_S,
    STATE_CHANGING_METHODS,
    Credential,
    Face,
    Principal,
    bearer_token,
    csrf_matches,
    load_token,
    new_csrf_token,
)
from .feed import POLL_INTERVAL_S, EventFeed
from .links import LINK_PREFIX, MAX_LINK_AGE_S, DecisionLinks
from .operations import DaemonOperations
from .state import WebState

#: Paths served without a credential (prefixes end with ``/``).
LOGIN_PATH = "/login"
#: The largest form body read to find its CSRF field, in bytes.
MAX_FORM_BYTES = 1 << 20


def create_app(
    store_path: StoreLocation,
    home: Path,
    *,
    routers: Sequence[APIRouter] = (),
    public_paths: Iterable[str] = (),
    poll_interval_s: float = POLL_INTERVAL_S,
    daemon: DaemonOperations | None = None,
    first_routes: Sequence[BaseRoute] = (),
    public_posts: Callable[[str], bool] | None = None,
    on_decision: Callable[[str], None] | None = None,
) -> FastAPI:
    """The app over the run store at ``store_path``, its token kept in ``home``.

    Args:
        store_path: the run store's location (:mod:`runner.store.location`).
        home: the agentrun home; the login token is ``home/console.token``, made ``0600``
            when missing.
        routers: more routes (the daemon's), authenticated like the API's.
        public_paths: paths (or prefixes ending in ``/``) served without a credential, for
            routes that authenticate themselves (signed webhooks).
        poll_interval_s: seconds between reads of the run event log while a stream listens.
        daemon: the daemon's operations, when a daemon serves the app; without them the
            routes of :mod:`runner.web.daemon_api` answer 404.
        first_routes: routes matched before every other (the daemon's webhooks, whose paths
            a spec chooses: a POST to one never reaches another route).
        public_posts: whether a POST to a path is served without a credential, asked at each
            request (the daemon's webhook paths change as specs reload).
        on_decision: called with a run's id after a decision on one of its calls (the
            daemon wakes up to continue the run); from a worker thread.

    Raises:
        StoreError: the store cannot be opened.
        OSError: the token file cannot be read or written.
    """
    credential = load_token(home / "console.token")
    store = open_store(store_path)
    state = WebState(store, credential)

    def read_log(after_id: int, run_id: str | None, limit: int) -> list[Any]:
        return state.read(lambda s: list(s.events_since(after_id, run_id=run_id, limit=limit)))

    def last_id() -> int:
        return state.read(lambda s: s.last_event_id())

    feed = EventFeed(read_log, last_id, interval_s=poll_interval_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        feed.start()
        try:
            yield
        finally:
            await feed.stop()
            state.read(lambda s: s.close())

    app = FastAPI(
        title="agentrun",
        summary="Runs, their events and approvals, over HTTP.",
        version="1",
        openapi_url="/api/v1/openapi.json",
        # No Swagger UI: it loads its script from a CDN, and no third-party script may run on
        # an origin whose cookies can approve tool calls. The reference is in the docs.
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.web = state
    app.state.feed = feed
    app.state.daemon = daemon
    app.state.on_decision = on_decision
    # A link's own expiry is on record (decision_links.expires_at); the signature's cap.
    app.state.links = DecisionLinks(home, MAX_LINK_AGE_S)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _as_served(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.router.routes[:0] = list(first_routes)
    app.include_router(api.router)
    app.include_router(escalations.router)
    app.include_router(escalations.pages_router)
    app.include_router(questions.router)
    app.include_router(questions.pages_router)
    app.include_router(pages.router)
    app.include_router(daemon_api.router)
    app.include_router(link_pages.router)
    for router in routers:
        app.include_router(router)
    app.add_middleware(
        AuthMiddleware,
        credential=credential,
        # A decision link is its own credential (runner.web.link_pages); nothing else is.
        public_paths=(LOGIN_PATH, LINK_PREFIX, *public_paths),
        public_posts=public_posts,
    )
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)

    @app.get(LOGIN_PATH, include_in_schema=False)
    def login(request: Request, token: str = "") -> Response:
        """Trade the token for the session and CSRF cookies, then go to ``/``."""
        if not credential.matches_token(token):
            return _error(401, "the token does not match; use the link agentrun console printed")
        response = RedirectResponse("/", status_code=303)
        secure = request.url.scheme == "https"
        response.set_cookie(
            SESSION_COOKIE,
            credential.session,
            max_age=SESSION_MAX_AGE_S,
            httponly=True,
            samesite="strict",
            secure=secure,
        )
        response.set_cookie(
            CSRF_COOKIE,
            new_csrf_token(),
            max_age=SESSION_MAX_AGE_S,
            httponly=False,
            samesite="strict",
            secure=secure,
        )
        return response

    return app


def _as_served(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` as the app really serves: its credentials, and 422 as ``{"error": ...}``.

    The credentials are checked by :class:`AuthMiddleware`, which FastAPI does not see, so
    they are declared here (a bearer token, or the session cookie). FastAPI documents its
    default validation error body; :func:`_validation_error` answers an
    :class:`~runner.web.api.ErrorOut` instead, so the document says that.
    """
    document.setdefault("components", {})["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "The token in AGENTRUN_HOME/console.token.",
        },
        "session": {
            "type": "apiKey",
            "in": "cookie",
            "name": SESSION_COOKIE,
            "description": "Set by /login?token=...; writes also need the CSRF token.",
        },
    }
    document["security"] = [{"bearer": []}, {"session": []}]
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            if "422" in operation.get("responses", {}):
                operation["responses"]["422"] = {
                    "description": "The request does not match (the message names the field).",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}
                    },
                }
    schemas = document.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    return document


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    return JSONResponse(
        {"error": str(error.detail)}, status_code=error.status_code, headers=error.headers
    )


async def _validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    problems = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem.get("loc", ()))
        problems.append(f"{where}: {problem.get('msg', 'invalid')}")
    return _error(422, "; ".join(problems) or "the request does not match the API")


#: Headers on every answer: no framing by other sites (clickjacking of approve buttons), no
#: script or style from elsewhere, no Referer (the login link holds the token), no caching
#: of run records, no content-type guessing. Values as OWASP's HTTP Headers Cheat Sheet has.
SECURITY_HEADERS = (
    (b"content-security-policy", b"default-src 'self'; frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
)


class SecurityHeadersMiddleware:
    """Add :data:`SECURITY_HEADERS` to every HTTP answer (a pure ASGI middleware).

    Args:
        app: the app whose answers it marks.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request, adding the headers to the answer's start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(name, value) for name, value in SECURITY_HEADERS if name not in names]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_marked)


class AuthMiddleware:
    """Refuse every request without a credential, and cookie writes without a CSRF token.

    A pure ASGI middleware (not a route dependency), so a route added later is protected
    unless its path is named public, and streamed answers pass through untouched. The
    request's :class:`~runner.web.auth.Principal` goes to ``scope["state"]["principal"]``
    (``request.state.principal``).

    Args:
        app: the app it guards.
        credential: the token.
        public_paths: paths, or prefixes ending in ``/``, served to anyone.
        public_posts: whether a POST to a path is served to anyone (asked at each request).
    """

    def __init__(
        self,
        app: ASGIApp,
        credential: Credential,
        public_paths: Sequence[str],
        public_posts: Callable[[str], bool] | None = None,
    ) -> None:
        self.app = app
        self.credential = credential
        self.public_paths = tuple(public_paths)
        self.public_posts = public_posts

    def _public(self, method: str, path: str) -> bool:
        if method == "POST" and self.public_posts is not None and self.public_posts(path):
            return True
        return any(
            path.startswith(public) if public.endswith("/") else path == public
            for public in self.public_paths
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request if it is authenticated, else answer 401 or 403."""
        if scope["type"] != "http" or self._public(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        client = request.client.host if request.client else "unknown"
        if self.credential.matches_token(bearer_token(request.headers.get("authorization"))):
            who = Principal(Face.API, self.credential.label, client)
        elif self.credential.matches_session(request.cookies.get(SESSION_COOKIE)):
            who = Principal(Face.CONSOLE, self.credential.label, client)
            if request.method in STATE_CHANGING_METHODS:
                submitted = request.headers.get(CSRF_HEADER)
                if submitted is None:
                    submitted, receive = await _form_field(scope, receive, CSRF_FIELD)
                if not csrf_matches(request.cookies.get(CSRF_COOKIE), submitted):
                    await _error(
                        403,
                        f"a change from the console needs the {CSRF_COOKIE!r} cookie's value "
                        f"in an {CSRF_HEADER} header or a {CSRF_FIELD!r} form field",
                    )(scope, receive, send)
                    return
        else:
            await _error(
                401,
                "authentication required: send 'Authorization: Bearer TOKEN' (the token is in "
                "AGENTRUN_HOME/console.token) or log in with the link agentrun console prints",
            )(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = who
        await self.app(scope, receive, send)


async def _form_field(scope: Scope, receive: Receive, name: str) -> tuple[str | None, Receive]:
    """The value of field ``name`` of a URL-encoded form body, and a ``receive`` replaying it.

    Bodies of other types, or over :data:`MAX_FORM_BYTES`, give None (no field).
    """
    content_type = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1")
    if not content_type.startswith("application/x-www-form-urlencoded"):
        return None, receive
    chunks: list[bytes] = []
    size = 0
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_FORM_BYTES or not message.get("more_body", False):
            break

    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    if size > MAX_FORM_BYTES:
        return None, replay
    values = parse_qs(b"".join(chunks).decode("utf-8", "replace")).get(name)
    return (values[0] if values else None), replay


__all__ = ["AuthMiddleware", "SecurityHeadersMiddleware", "create_app"]
