"""The daemon's answers to requests: status, the agent list, manual fires and cancels.

The control socket (``agentrun daemon status``, ``agentrun trigger``) and the HTTP API
(:class:`runner.web.operations.DaemonOperations`) ask :class:`DaemonRequests`, a part of
:class:`runner.daemon.lifecycle.Daemon` kept apart from its lifecycle.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..spec import TriggerKind
from ..store.rows import FireOutcome
from .state import AgentState, Fire, iso

if TYPE_CHECKING:
    from ..store import RunStore
    from .celery_executor import CeleryExecutor
    from .executor import LocalExecutor
    from .leadership import Leadership
    from .planner import Planner
    from .queueing import QueueConsumers
    from .specs import SpecFolders

#: How many of the latest notices the API's daemon status shows.
NOTICES_SHOWN = 50


class DaemonRequests:
    """What the daemon answers; the state it reads is the :class:`Daemon`'s."""

    store: RunStore
    planner: Planner
    executor: LocalExecutor | CeleryExecutor
    specs: SpecFolders
    clock: Callable[[], datetime]
    started_at: datetime
    stopping: bool
    http: Any
    starting: dict[str, Any]
    cancelled: dict[str, str]
    queues: QueueConsumers
    leadership: Leadership

    @property
    def agents(self) -> dict[str, AgentState]:
        """The installed agents, by name (the planner's)."""
        return self.planner.agents

    def wake_up(self) -> None:
        """Wake the main loop (the :class:`Daemon`'s)."""
        raise NotImplementedError

    def request_stop(self) -> None:
        """Begin a graceful shutdown (the :class:`Daemon`'s)."""
        raise NotImplementedError

    def cancel(self, run_id: str, reason: str) -> bool:
        """Cancel an active run (the :class:`Daemon`'s)."""
        raise NotImplementedError

    def agents_today(self) -> dict[str, tuple[int, float]]:
        """Agent -> (runs started since 00:00 UTC, their known cost in USD)."""
        since = self.clock().astimezone(UTC).strftime("%Y-%m-%dT00:00:00")
        today: dict[str, tuple[int, float]] = {}
        for row in self.store.stats(since=since):
            count, spend = today.get(row["agent"], (0, 0.0))
            today[row["agent"]] = (count + row["runs"], spend + (row["cost_usd"] or 0.0))
        return today

    def daemon_status(self) -> dict[str, Any]:
        """:meth:`status` and the latest :data:`NOTICES_SHOWN` notices, newest last."""
        notices = self.store.notices()[-NOTICES_SHOWN:]
        return {**self.status(), "notices": [dict(notice) for notice in notices]}

    def agent_list(self) -> list[dict[str, Any]]:
        """Every spec file of the folders: its agent (loaded or not) and its located errors."""
        status = {entry["path"]: entry for entry in self.status()["agents"]}
        today = self.agents_today()
        errors = {path: message.split(":", 1)[1] for path, message in self.specs.errors.items()}
        answer = []
        for path in sorted({*map(Path, status), *errors, *self.specs.files()}):
            entry = status.get(str(path))
            agent = self.planner.agents.get(entry["name"]) if entry else None
            error = errors.get(path)
            inputs = []
            if agent is not None:
                for spec_input in agent.spec.inputs.values():
                    inputs.append(
                        {
                            "name": spec_input.name,
                            "type": spec_input.type,
                            "required": spec_input.required and not spec_input.has_default,
                            "default": spec_input.default,
                            "values": list(spec_input.values) or None,
                            "description": spec_input.description or None,
                        }
                    )
            name = entry["name"] if entry else None
            runs, spend = today.get(name or "", (0, 0.0))
            answer.append(
                {
                    "name": name,
                    "path": str(path),
                    "valid": error is None and entry is not None,
                    "errors": [error] if error else [],
                    "loaded": entry is not None,
                    "inputs": inputs,
                    "triggers": entry["triggers"] if entry else [],
                    "running": entry["running"] if entry else [],
                    "queued": entry["queued"] if entry else [],
                    "last": (entry["last"] or None) if entry else None,
                    "runs_today": runs,
                    "spend_today_usd": round(spend, 6),
                }
            )
        return answer

    def fire_manual(
        self,
        agent: str,
        inputs: dict[str, Any],
        key: str | None,
        traceparent: str | None = None,
    ) -> dict[str, Any]:
        """Fire ``agent``'s manual trigger with ``inputs`` (:meth:`trigger`), for the API.

        ``traceparent`` (a request's W3C trace context) becomes the run's trace parent.

        Raises:
            Refused: 404 no such agent, 409 no manual trigger, 422 bad inputs, 503 stopping.
        """
        from ..web.operations import Refused

        found = self.planner.agents.get(agent)
        if found is None:
            known = ", ".join(sorted(self.planner.agents)) or "none"
            raise Refused(404, f"no agent named {agent!r} in the daemon; agents: {known}")
        if not any(t.kind == TriggerKind.MANUAL and t.manual for t in found.spec.triggers):
            raise Refused(409, f"agent {agent!r} has no manual trigger (add '- manual: true')")
        if self.stopping:
            raise Refused(503, "the daemon is stopping")
        try:
            answer = self.trigger(
                {"agent": agent, "inputs": inputs, "key": key, "traceparent": traceparent}
            )
        except UsageError as error:
            raise Refused(422, str(error)) from None
        self.wake_up()
        return answer

    def ended(self, run_id: str) -> dict[str, Any] | None:
        """How ``run_id`` ended: None while it may still run.

        ``{}`` once its run ended (or waits for a person); ``{"outcome", "reason"}`` when
        its fire never ran (failed, cancelled, skipped).
        """
        row = self.store.run(run_id)
        if row is not None:
            return None if row.status == "running" else {}
        fire = self.store.fire_of_run(run_id)
        if fire is not None and fire.outcome in ("failed", "cancelled", "skipped"):
            return {"outcome": str(fire.outcome), "reason": fire.reason}
        return None

    def cancel_run(self, run_id: str, by: str) -> str:
        """Cancel an active run of this daemon for the API (:meth:`cancel`).

        Raises:
            Refused: 409 the run is not active in this daemon.
        """
        from ..web.operations import Refused

        active = run_id in self.starting or (
            run_id in self.executor.running and run_id not in self.cancelled
        )
        if not active:
            raise Refused(
                409,
                f"run {run_id} is not active in the daemon (it ended, is being cancelled, "
                "or is not one of its workers)",
            )
        withdrawn = self.cancel(run_id, f"cancelled by {by}")
        self.wake_up()
        return "withdrawn" if withdrawn else "cancelling"

    # -- control requests --------------------------------------------------------------------

    def stop(self, request: dict[str, Any]) -> dict[str, Any]:
        """``{"op": "stop"}``: begin a graceful shutdown; the runs still running."""
        self.request_stop()
        return {"stopping": True, "running": sorted(self.executor.running)}

    def trigger(self, request: dict[str, Any]) -> dict[str, Any]:
        """``{"op": "trigger", "agent", "inputs", "key", "traceparent"}``: a manual fire.

        A key seen before returns the run it started (``duplicate``: true).

        Raises:
            UsageError: no such agent, no manual trigger, bad inputs, or the daemon stops.
        """
        from ..compiler import coerce_inputs
        from ..store import new_run_id
        from ..telemetry import parse_traceparent

        name = str(request.get("agent"))
        agent = self.agents.get(name)
        if agent is None:
            known = ", ".join(sorted(self.agents)) or "none"
            raise UsageError(f"no agent named {name!r} in the daemon; agents: {known}")
        manual = [t for t in agent.spec.triggers if t.kind == TriggerKind.MANUAL and t.manual]
        if not manual:
            raise UsageError(f"agent {name!r} has no manual trigger (add '- manual: true')")
        if self.stopping:
            raise UsageError("the daemon is stopping")
        key = request.get("key") or None
        if key:
            seen = self.store.fire_by_key(name, key)
            if seen is not None:
                return {"run_id": seen.run_id, "outcome": seen.outcome, "duplicate": True}
        inputs = coerce_inputs(agent.spec, request.get("inputs") or {})
        fire = Fire(
            name,
            TriggerKind.MANUAL,
            manual[0].index,
            new_run_id(),
            inputs,
            key=key,
            traceparent=parse_traceparent(request.get("traceparent")),
        )
        outcome = self.fire(fire)
        if outcome is FireOutcome.DUPLICATE and key:
            # Another daemon sharing the store recorded the key in between: its run.
            seen = self.store.fire_by_key(name, key)
            if seen is not None:
                return {"run_id": seen.run_id, "outcome": seen.outcome, "duplicate": True}
        return {
            "run_id": fire.run_id,
            "outcome": outcome,
            "duplicate": outcome is FireOutcome.DUPLICATE,
        }

    def fire(self, fire: Fire) -> FireOutcome:
        """A fire a listener received (control socket, API, webhook, queue, file watch).

        The leader applies the concurrency policy and starts it
        (:meth:`runner.daemon.planner.Planner.fire`); a standby records it ``queued`` for
        the leader (:meth:`runner.daemon.planner.Planner.record_received`), once whichever
        daemon received it: its slot, idempotency key or delivery id is unique in the store.
        Returns the outcome (``duplicate``: already recorded, nothing done).
        """
        if self.leadership.leading():
            return self.planner.fire(fire)
        return self.planner.record_received(fire, self.leadership.holder)

    def status(self, request: dict[str, Any] | None = None) -> dict[str, Any]:
        """``{"op": "status"}``: agents, triggers, next fire times, running runs, last outcomes.

        Also this daemon's ``role`` (``leader`` or ``standby``), its lease ``holder`` name,
        ``lease_ttl_s``, and the ``lease`` as the store has it (holder, term, expires,
        remaining_s; :meth:`runner.daemon.leadership.Leadership.status`).
        """
        agents = []
        for agent in sorted(self.agents.values(), key=lambda a: a.name):
            triggers = []
            for trigger in agent.spec.triggers:
                entry: dict[str, Any] = {"kind": trigger.kind}
                if trigger.kind == TriggerKind.CRON:
                    entry["cron"] = trigger.cron
                    entry["timezone"] = trigger.timezone
                    nxt = agent.next_fire.get(trigger.index)
                    entry["next"] = iso(nxt) if nxt else None
                elif trigger.kind == TriggerKind.WATCH and trigger.watch:
                    entry["paths"] = list(trigger.watch.paths)
                elif trigger.kind == TriggerKind.WEBHOOK and trigger.webhook:
                    entry["path"] = trigger.webhook.path or f"/hooks/{agent.name}"
                elif trigger.kind == TriggerKind.QUEUE and trigger.queue:
                    entry.update(self.queues.status(agent.name, trigger))
                triggers.append(entry)
            agents.append(
                {
                    "name": agent.name,
                    "path": str(agent.path),
                    "triggers": triggers,
                    "running": sorted(agent.active),
                    "queued": [q.run_id for q in agent.queued],
                    "last": agent.last_outcome,
                }
            )
        return {
            "pid": os.getpid(),
            "started": iso(self.started_at),
            # role (leader or standby), this daemon's holder name, the lease as stored.
            **self.leadership.status(),
            "url": self.http.url if self.http is not None else None,
            "agents": agents,
            "errors": self.specs.error_messages(),
            # Where runs execute: local, or celery with the workers its last inspect saw.
            "executor": self.executor.name,
            "workers": self.executor.workers,
            "workers_idle": len([w for w in self.executor.idle if w.ready.is_set()]),
            "workers_idle_by_path": {
                path: len([w for w in self.executor.idle if w.ready.is_set() and w.path == path])
                for path in sorted(self.executor.paths)
            },
            # The daemon's own process never imports litellm: its workers do.
            "litellm_imported": "litellm" in sys.modules,
        }
