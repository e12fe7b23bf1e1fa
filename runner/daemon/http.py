"""The daemon's HTTP listener (webhooks): one path per agent, payloads verified before use.

Each POST is checked in this order, and the first failure is the answer:

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

Only then does it fire. A request refused before its signature is verified is only logged
(anyone can send those, and they must not fill the store); a signed delivery refused (400,
409) is logged and kept in the store's ``notices`` (level ``warning``, with the agent), as
the daemon keeps its spec errors. Neither delivery ids nor bodies are remembered for a
delivery that is refused, so a sender can fix a payload and send it again. Built on
aiohttp's server; loopback by default.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import UsageError
from ..spec import TriggerKind
from ..store.rows import FireOutcome
from .state import AgentState, Fire

log = logging.getLogger("agentrun.daemon")

#: Longest refusal message kept in a notice, a log line and an answer, in characters (a
#: message can quote a value from the payload).
MAX_MESSAGE_CHARS = 1000


def webhook_routes(agents: Mapping[str, AgentState]) -> dict[str, AgentState]:
    """URL path -> agent, for every webhook trigger (default path ``/hooks/<agent>``)."""
    routes = {}
    for agent in agents.values():
        for trigger in agent.spec.triggers:
            if trigger.kind == TriggerKind.WEBHOOK and trigger.webhook:
                routes[trigger.webhook.path or f"/hooks/{agent.name}"] = agent
    return routes


class WebhookListener:
    """The daemon's HTTP listener (``--webhook-port``), on aiohttp.

    Args:
        host: address to listen on (loopback by default in the CLI).
        port: TCP port.
        agents: the daemon's installed agents (read at each request).
        fire: applies the agent's concurrency policy to a fire; returns its outcome
            (:meth:`runner.daemon.planner.Planner.fire`).
        record_notice: keeps a refusal in the store
            (:meth:`runner.store.RunStore.record_notice`).
        stopping: whether the daemon is stopping (then every path is 404).
    """

    def __init__(
        self,
        host: str,
        port: int,
        agents: Callable[[], Mapping[str, AgentState]],
        fire: Callable[[Fire], FireOutcome],
        record_notice: Callable[..., Any],
        stopping: Callable[[], bool],
    ) -> None:
        self.host, self.port = host, port
        self.agents = agents
        self.fire = fire
        self.record_notice = record_notice
        self.stopping = stopping
        self.runner: Any = None
        self._replay: Any = None
        self._bodies: Any = None

    async def start(self) -> None:
        """Start the webhook listener (aiohttp)."""
        from aiohttp import web

        from ..triggers import ReplayGuard
        from ..triggers.webhook import BodyReplayWindow

        self._replay = ReplayGuard()
        self._bodies = BodyReplayWindow()
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port)
        await site.start()
        log.info("webhook listener on http://%s:%d/hooks/<agent>", self.host, self.port)

    async def close(self) -> None:
        """Stop listening."""
        if self.runner is not None:
            await self.runner.cleanup()

    async def handle(self, request: Any) -> Any:
        """Verify, map, type-check and de-duplicate one delivery, then fire.

        Never raises for anything in the request: every refusal is an answer with a JSON
        ``{"error": ...}`` (see the module docstring for the order and the status codes).
        """
        import asyncio

        from aiohttp import web

        from ..compiler import coerce_inputs
        from ..store import new_run_id
        from ..triggers import inputs_from_payload, verify_signature
        from ..triggers.webhook import PayloadError, body_digest, parse_payload

        agent = webhook_routes(self.agents()).get(request.path)
        if agent is None or self.stopping():
            return web.json_response({"error": "no agent at this path"}, status=404)
        [trigger] = [t for t in agent.spec.triggers if t.kind == TriggerKind.WEBHOOK][:1]
        hook = trigger.webhook
        length = request.content_length
        if length is None or length > hook.max_body:
            return web.json_response(
                {"error": f"body missing or over {hook.max_body} bytes"}, status=413
            )
        try:
            # read(n) may return fewer bytes than are coming; readexactly waits for them all.
            body = await request.content.readexactly(length)
        except asyncio.IncompleteReadError as error:
            return web.json_response(
                {
                    "error": f"body ended after {len(error.partial)} of the {length} bytes "
                    "its Content-Length announced"
                },
                status=400,
            )
        secret = os.environ.get(hook.secret_env, "")
        if not secret or not verify_signature(
            secret.encode(), body, request.headers.get("X-Hub-Signature-256")
        ):
            log.error("webhook for %s: bad or missing signature; ignored", agent.name)
            return web.json_response({"error": "signature does not match"}, status=401)
        delivery = request.headers.get("X-GitHub-Delivery") or request.headers.get("X-Delivery-Id")
        try:
            payload = parse_payload(body)
            inputs = coerce_inputs(agent.spec, inputs_from_payload(hook.inputs, payload))
        except (PayloadError, UsageError) as error:
            return self.refuse(agent.name, delivery, 400, str(error))
        delivery_key = f"{agent.name}:{delivery}"
        if delivery and delivery_key in self._replay:
            return self.refuse(agent.name, delivery, 409, "delivery already received")
        body_key = f"{agent.name}:{body_digest(body)}"
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
        )
        outcome = self.fire(fire)
        if outcome is FireOutcome.DUPLICATE:  # its fire was recorded before the daemon restarted
            return self.refuse(agent.name, delivery, 409, "delivery already received")
        return web.json_response({"run_id": fire.run_id, "outcome": outcome}, status=202)

    def refuse(self, agent: str, delivery: str | None, status: int, message: str) -> Any:
        """Answer a signed delivery with ``status`` and ``{"error": message}``, and record it.

        The refusal is logged (level warning) and kept in the store's ``notices`` table
        (level ``warning``, the agent's name, no run), as the daemon keeps its spec errors;
        the message is cut to :data:`MAX_MESSAGE_CHARS`.
        """
        from aiohttp import web

        if len(message) > MAX_MESSAGE_CHARS:
            message = message[: MAX_MESSAGE_CHARS - 1] + "…"
        which = f"delivery {delivery[:100]!r}" if delivery else "a delivery without an id"
        notice = f"webhook {which} for {agent} refused with {status}: {message}"
        log.warning("%s", notice)
        self.record_notice("warning", notice, agent=agent)
        return web.json_response({"error": message}, status=status)
