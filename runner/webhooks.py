"""The daemon's webhook listener: one path per agent, payloads verified before use.

Each POST is checked in this order: a known path; a body within ``max_body`` bytes; an
HMAC-SHA256 signature over the raw body matching GitHub's ``X-Hub-Signature-256``
(constant-time compare, :func:`runner.triggers.verify_signature`); a delivery id
(``X-GitHub-Delivery``) not seen before (in memory, and in the store's ``fires`` table
across restarts); a JSON body from which the spec's input mapping takes the run's inputs.
Only then does it fire. Built on aiohttp's server; loopback by default.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from .errors import UsageError

if TYPE_CHECKING:
    from .scheduler import Agent, Daemon


class WebhookListener:
    """The HTTP listener of a :class:`runner.scheduler.Daemon` (``--webhook-port``)."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self._replay: Any = None

    def routes(self) -> dict[str, Agent]:
        """URL path → agent, for every webhook trigger."""
        routes = {}
        for agent in self.daemon.agents.values():
            for trigger in agent.spec.triggers:
                if trigger.kind == "webhook" and trigger.webhook:
                    routes[trigger.webhook.path or f"/hooks/{agent.name}"] = agent
        return routes

    async def start(self) -> None:
        """Start the webhook listener (aiohttp)."""
        from aiohttp import web

        from .scheduler import log
        from .triggers import ReplayGuard

        self._replay = ReplayGuard()
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/{tail:.*}", self.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        assert self.daemon.webhook is not None
        host, port = self.daemon.webhook
        site = web.TCPSite(runner, host, port)
        await site.start()
        self.daemon._servers.append(runner)
        log.info("webhook listener on http://%s:%d/hooks/<agent>", host, port)

    async def handle(self, request: Any) -> Any:
        """Verify, de-duplicate and map one delivery, then fire."""
        from aiohttp import web

        from .scheduler import Fire, log
        from .store import new_run_id
        from .triggers import PayloadPathError, inputs_from_payload, verify_signature

        agent = self.routes().get(request.path)
        if agent is None or self.daemon.stopping:
            return web.json_response({"error": "no agent at this path"}, status=404)
        [trigger] = [t for t in agent.spec.triggers if t.kind == "webhook"][:1]
        hook = trigger.webhook
        length = request.content_length
        if length is None or length > hook.max_body:
            return web.json_response(
                {"error": f"body missing or over {hook.max_body} bytes"}, status=413
            )
        body = await request.content.read(hook.max_body + 1)
        if len(body) > hook.max_body:
            return web.json_response({"error": f"body over {hook.max_body} bytes"}, status=413)
        secret = os.environ.get(hook.secret_env, "")
        if not secret or not verify_signature(
            secret.encode(), body, request.headers.get("X-Hub-Signature-256")
        ):
            log.error("webhook for %s: bad or missing signature; ignored", agent.name)
            return web.json_response({"error": "signature does not match"}, status=401)
        delivery = request.headers.get("X-GitHub-Delivery") or request.headers.get("X-Delivery-Id")
        if delivery and not self._replay.accept(f"{agent.name}:{delivery}"):
            return web.json_response({"error": "delivery already received"}, status=409)
        try:
            payload = json.loads(body or b"{}")
            inputs = inputs_from_payload(hook.inputs, payload)
            from .compiler import coerce_inputs

            inputs = coerce_inputs(agent.spec, inputs)
        except (json.JSONDecodeError, PayloadPathError, UsageError) as error:
            return web.json_response({"error": str(error)}, status=400)
        fire = Fire(
            agent.name, "webhook", trigger.index, new_run_id(), inputs, key=delivery or None
        )
        outcome = self.daemon.fire(fire)
        status = 409 if outcome == "duplicate" else 202
        return web.json_response({"run_id": fire.run_id, "outcome": outcome}, status=status)
