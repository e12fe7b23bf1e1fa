"""The daemon's one HTTP server (``--http``): its webhooks, the JSON API and the console.

:class:`HttpServer` runs uvicorn inside the daemon's event loop (a task; uvicorn's own signal
handling off: the daemon owns SIGTERM and SIGINT) over the app of
:func:`runner.web.app.create_app`, to which the daemon passes its operations and
:class:`WebhookRoute`. Every request is authenticated by the app except a POST to a webhook
path (``/hooks/...``, or a path a spec chose), which :class:`Webhooks` verifies itself.

Each webhook POST is checked in this order, and the first failure is the answer:

- a known path (404);
- a ``Content-Length`` of at most the trigger's ``max_body`` bytes, and a body of exactly
  that length (413, or 400 when the body is cut short);
- an HMAC-SHA256 signature over the raw body matching GitHub's ``X-Hub-Signature-256``
  (constant-time compare, :func:`runner.triggers.verify_signature`) (401);
- a body that parses as strict JSON (:func:`runner.triggers.webhook.parse_payload`: UTF-8,
  no ``NaN``, at most :data:`~runner.triggers.webhook.MAX_PAYLOAD_DEPTH` levels deep), from
  which the spec's input mapping takes every input, each of its declared type under the
  rules and messages of ``--input`` (:func:`runner.compiler.coerce_inputs`) (400);
- a delivery id (``X-GitHub-Delivery``, or ``X-Delivery-Id``) not seen before (in memory,
  and in the store's ``fires`` table across restarts) (409);
- a body not received before within :data:`~runner.triggers.webhook.REPLAY_WINDOW_S`,
  whatever its delivery id, since the signature does not cover that header
  (:class:`~runner.triggers.webhook.BodyReplayWindow`, in memory) (409).

Only then does it fire. A valid W3C ``traceparent`` header (Trace Context) makes the run's
trace a child of the sender's span when the run's telemetry is on (:mod:`runner.telemetry`);
an invalid one is ignored, as the specification asks. A request refused before its
signature is verified is only logged (anyone can send those, and they must not fill the
store); a signed delivery refused (400, 409) is logged and kept in the store's
``notices`` (level ``warning``, with the agent), as the daemon keeps its spec errors.
Neither delivery ids nor bodies are remembered for a delivery that is refused, so a sender
can fix a payload and send it again. Loopback by default.

This module imports uvicorn and Starlette: the daemon imports it only when it serves HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import uvicorn
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from ..errors import SetupError, UsageError
from ..spec import TriggerKind
from ..store.rows import FireOutcome
from .state import AgentState, Fire

log = logging.getLogger("agentrun.daemon")

#: Longest refusal message kept in a notice, a log line and an answer, in characters (a
#: message can quote a value from the payload).
MAX_MESSAGE_CHARS = 1000
#: The prefix of default webhook paths (``/hooks/<agent>``): a POST under it is a webhook's.
HOOKS_PREFIX = "/hooks/"
#: Seconds requests still running (event streams) get to end when the daemon stops.
SHUTDOWN_GRACE_S = 2.0


def webhook_routes(agents: Mapping[str, AgentState]) -> dict[str, AgentState]:
    """URL path -> agent, for every webhook trigger (default path ``/hooks/<agent>``)."""
    routes = {}
    for agent in agents.values():
        for trigger in agent.spec.triggers:
            if trigger.kind == TriggerKind.WEBHOOK and trigger.webhook:
                routes[trigger.webhook.path or f"{HOOKS_PREFIX}{agent.name}"] = agent
    return routes


def url_path(home: Path) -> Path:
    """The file in ``home`` holding the URL of the daemon's server while it listens."""
    return home / "daemon.url"


class Webhooks:
    """Verifies, maps, type-checks and de-duplicates webhook deliveries, then fires.

    Args:
        agents: the daemon's installed agents (read at each request).
        fire: applies the agent's concurrency policy to a fire; returns its outcome
            (:meth:`runner.daemon.planner.Planner.fire`).
        record_notice: keeps a refusal in the store
            (:meth:`runner.store.RunStore.record_notice`).
        stopping: whether the daemon is stopping (then every path is 404).
    """

    def __init__(
        self,
        agents: Callable[[], Mapping[str, AgentState]],
        fire: Callable[[Fire], FireOutcome],
        record_notice: Callable[..., Any],
        stopping: Callable[[], bool],
    ) -> None:
        from ..triggers import ReplayGuard
        from ..triggers.webhook import BodyReplayWindow

        self.agents = agents
        self.fire = fire
        self.record_notice = record_notice
        self.stopping = stopping
        self._replay = ReplayGuard()
        self._bodies = BodyReplayWindow()

    def serves(self, path: str) -> bool:
        """Whether a POST to ``path`` is a webhook's (served without a token)."""
        return path.startswith(HOOKS_PREFIX) or path in webhook_routes(self.agents())

    async def handle(self, request: Request) -> Response:
        """Answer one delivery (see the module docstring for the order and the statuses).

        Never raises for anything in the request: every refusal is an answer with a JSON
        ``{"error": ...}``.
        """
        from ..compiler import coerce_inputs
        from ..store import new_run_id
        from ..telemetry import parse_traceparent
        from ..triggers import inputs_from_payload, verify_signature
        from ..triggers.webhook import PayloadError, body_digest, parse_payload

        agent = webhook_routes(self.agents()).get(request.url.path)
        if agent is None or self.stopping():
            return JSONResponse({"error": "no agent at this path"}, status_code=404)
        [trigger] = [t for t in agent.spec.triggers if t.kind == TriggerKind.WEBHOOK][:1]
        hook = trigger.webhook
        assert hook is not None
        header = request.headers.get("content-length", "")
        length = int(header) if header.isdigit() else None
        if length is None or length > hook.max_body:
            return JSONResponse(
                {"error": f"body missing or over {hook.max_body} bytes"}, status_code=413
            )
        body = bytearray()
        with contextlib.suppress(ClientDisconnect):
            async for chunk in request.stream():
                body += chunk
        if len(body) != length:
            return JSONResponse(
                {
                    "error": f"body ended after {len(body)} of the {length} bytes "
                    "its Content-Length announced"
                },
                status_code=400,
            )
        secret = os.environ.get(hook.secret_env, "")
        if not secret or not verify_signature(
            secret.encode(), bytes(body), request.headers.get("X-Hub-Signature-256")
        ):
            log.error("webhook for %s: bad or missing signature; ignored", agent.name)
            return JSONResponse({"error": "signature does not match"}, status_code=401)
        delivery = request.headers.get("X-GitHub-Delivery") or request.headers.get("X-Delivery-Id")
        try:
            payload = parse_payload(bytes(body))
            inputs = coerce_inputs(agent.spec, inputs_from_payload(hook.inputs, payload))
        except (PayloadError, UsageError) as error:
            return self.refuse(agent.name, delivery, 400, str(error))
        delivery_key = f"{agent.name}:{delivery}"
        if delivery and delivery_key in self._replay:
            return self.refuse(agent.name, delivery, 409, "delivery already received")
        body_key = f"{agent.name}:{body_digest(bytes(body))}"
        now = time.monotonic()
        received = self._bodies.received_at(body_key, now)
        if received is not None:
            hours = self._bodies.window_s / 3600
            return self.refuse(
                agent.name,
                delivery,
                409,
                f"body already received {now - received:.0f} s ago, under any delivery id: "
                f"the same signed body is accepted once in {hours:g} hours; to send the "
                "same event again, put something unique in the body, such as a timestamp",
            )
        if delivery:
            self._replay.accept(delivery_key)
        self._bodies.accept(body_key, now)
        fire = Fire(
            agent.name,
            TriggerKind.WEBHOOK,
            trigger.index,
            new_run_id(),
            inputs,
            key=delivery or None,
            traceparent=parse_traceparent(request.headers.get("traceparent")),
        )
        outcome = self.fire(fire)
        if outcome is FireOutcome.DUPLICATE:  # its fire was recorded before the daemon restarted
            return self.refuse(agent.name, delivery, 409, "delivery already received")
        return JSONResponse({"run_id": fire.run_id, "outcome": outcome}, status_code=202)

    def refuse(self, agent: str, delivery: str | None, status: int, message: str) -> Response:
        """Answer a signed delivery with ``status`` and ``{"error": message}``, and record it.

        The refusal is logged (level warning) and kept in the store's ``notices`` table
        (level ``warning``, the agent's name, no run), as the daemon keeps its spec errors;
        the message is cut to :data:`MAX_MESSAGE_CHARS`.
        """
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[: MAX_MESSAGE_CHARS - 1] + "…"
        which = f"delivery {delivery[:100]!r}" if delivery else "a delivery without an id"
        notice = f"webhook {which} for {agent} refused with {status}: {message}"
        log.warning("%s", notice)
        self.record_notice("warning", notice, agent=agent)
        return JSONResponse({"error": message}, status_code=status)


class WebhookRoute(BaseRoute):
    """The route of every webhook: a POST whose path :meth:`Webhooks.serves`.

    Matched before the app's other routes, so a webhook path a spec chose is never another
    route's; not in the OpenAPI document (its paths are the specs').
    """

    def __init__(self, webhooks: Webhooks) -> None:
        self.webhooks = webhooks

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """A full match for a POST to a webhook path; none for anything else."""
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and self.webhooks.serves(scope["path"])
        ):
            return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        """No named URL: webhook paths are the specs'."""
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer the delivery."""
        response = await self.webhooks.handle(Request(scope, receive))
        await response(scope, receive, send)


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: the daemon owns SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    """The daemon's uvicorn server over ``app``, on ``host:port``.

    Args:
        host: the address to listen on (loopback unless ``--allow-remote``).
        port: TCP port (0: any free port).
        home: AGENTRUN_HOME, where :func:`url_path` names the server's URL (owner-only)
            while it listens.
        app: the ASGI app (:func:`runner.web.app.create_app`).
    """

    def __init__(self, host: str, port: int, home: Path, app: Any) -> None:
        self.host, self.port = host, port
        self.home = home
        self.app = app
        self.server: _EmbeddedServer | None = None
        self.task: asyncio.Task[None] | None = None
        self.url = ""

    def bind(self) -> socket.socket:
        """A listening socket on ``host:port``.

        Raises:
            SetupError: the address cannot be bound (in use, not this machine's).
        """
        from ..web.listener import listening_socket

        try:
            return listening_socket(self.host, self.port)
        except OSError as error:
            raise SetupError(
                f"cannot listen on {self.host}:{self.port}: {error.strerror or error}; "
                "choose another address with --http HOST:PORT"
            ) from None

    async def start(self) -> None:
        """Listen, serve in a task of the running loop, and write the URL file.

        Raises:
            SetupError: the address cannot be bound, or the server did not start.
        """
        sock = self.bind()
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{sock.getsockname()[1]}"
        self.server = _EmbeddedServer(
            uvicorn.Config(
                self.app,
                log_config=None,
                log_level="warning",
                access_log=False,
                lifespan="on",
                timeout_graceful_shutdown=int(SHUTDOWN_GRACE_S),
            )
        )
        self.task = asyncio.get_running_loop().create_task(self.server.serve(sockets=[sock]))
        while not self.server.started:
            if self.task.done():
                sock.close()
                raise SetupError(f"the HTTP server did not start on {self.url}")
            await asyncio.sleep(0.01)
        path = url_path(self.home)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(self.url + "\n")
        log.info(
            "serving HTTP on %s (webhooks at %s<agent>, API at /api/v1/)", self.url, HOOKS_PREFIX
        )

    async def close(self) -> None:
        """Stop serving: end the event streams, stop the server, remove the URL file.

        Requests still running get :data:`SHUTDOWN_GRACE_S` seconds.
        """
        with contextlib.suppress(FileNotFoundError):
            url_path(self.home).unlink()
        if self.server is None or self.task is None:
            return
        self.app.state.feed.close()
        self.server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.task, SHUTDOWN_GRACE_S + 5)
