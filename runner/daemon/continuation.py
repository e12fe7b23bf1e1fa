"""The daemon's paused runs: continued once decided, or after a restart when interrupted.

A run of the daemon that waits for approval continues by itself once none of its calls
waits any more, whoever decided them (``agentrun approve``, the API, the console, another
process): :class:`PausedRuns` follows the run event log's ``approval_decided`` entries
(and ``escalation_decided``: an escalated run a person continued) while any run waits,
and hands the run to the planner (:meth:`Planner.continue_run`), which
applies the concurrency policy. At start it also continues the runs found ``interrupted``
whose spec says ``on_interrupt: resume``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..errors import StopReason
from ..spec import TriggerKind

if TYPE_CHECKING:
    from ..store import RunStore
    from .planner import Planner

log = logging.getLogger("agentrun.daemon")

#: How often the daemon reads the run event log for decided approvals, in seconds: a paused
#: run continues at most this long after its last pending call is decided, whoever decided
#: it (the CLI, another machine's process; the daemon's own API and pages wake it at once).
DECISION_POLL_S = 0.5
#: The triggers of the daemon's own runs (a run of ``agentrun run`` is its terminal's: the
#: daemon never continues it).
DAEMON_TRIGGERS = tuple(kind.value for kind in TriggerKind)


class PausedRuns:
    """The daemon's runs that wait for a decision, and what continues them.

    Attributes:
        seen: the run event log's id up to which decisions were looked at.
        waiting: ids of the daemon's runs that wait for a decision (the log is read only
            while there are some).
    """

    def __init__(self, store: RunStore, planner: Planner, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.planner = planner
        self.clock = clock
        self.seen = 0
        self.waiting: set[str] = set()

    def take_over(self) -> None:
        """At start: continue the runs decided while no daemon ran, and the interrupted ones."""
        self.seen = self.store.last_event_id()
        for row in self.store.paused_runs(DAEMON_TRIGGERS):
            self.consider(row, restarting=True)

    def follow(self) -> None:
        """Continue the daemon's paused runs whose last pending call was just decided.

        Reads the ``approval_decided`` entries of the run event log since the last look: a
        decision made anywhere (``agentrun approve``, the API, the console) is in it.
        """
        if not self.waiting:
            return
        entries = self.store.events_since(
            self.seen, limit=1000, types=("approval_decided", "escalation_decided")
        )
        if not entries:
            return
        self.seen = int(entries[-1]["id"])
        for run_id in dict.fromkeys(str(entry["run_id"]) for entry in entries):
            row = self.store.run(run_id)
            if row is not None and row.trigger in DAEMON_TRIGGERS:
                self.consider(row)

    def consider(self, row: Any, restarting: bool = False) -> None:
        """Continue one of the daemon's runs where it stopped, if it should continue now.

        A run waiting for approval continues once none of its calls waits any more; an
        escalated run once a person continued it (with the budget granted; a closed one is
        no longer resumable); an
        interrupted run only when the daemon starts (``restarting``) and its spec says
        ``on_interrupt: resume`` (a run interrupted while this daemon runs, by its worker's
        death, is left to ``agentrun resume``: continuing it at once could repeat a crash).
        A run whose spec changed since it started is not continued (a notice says how to):
        its recorded conversation belongs to the version it ran.
        """
        if not row.resumable or row.stop_reason not in (
            StopReason.WAITING_APPROVAL,
            StopReason.ESCALATED,
            StopReason.INTERRUPTED,
        ):
            self.waiting.discard(row.id)  # continued or ended some other way
            return
        agent = self.planner.agents.get(row.agent)
        if agent is None:
            return
        if row.stop_reason == StopReason.INTERRUPTED:
            if not restarting or agent.spec.on_interrupt != "resume":
                return
        elif row.stop_reason == StopReason.ESCALATED:
            if self.store.escalations(row.id):
                self.waiting.add(row.id)  # a person has not closed or continued it yet
                return
        elif self.store.approvals(row.id):
            self.waiting.add(row.id)  # a call still waits for a person
            return
        if hashlib.sha256(agent.source).hexdigest() != row.spec_sha256:
            message = (
                f"run {row.id} of {row.agent} was not continued: {agent.path} changed since "
                f"it started; continue it with: agentrun resume {row.id} --force"
            )
            log.warning("%s", message)
            self.store.record_notice("warning", message, agent=row.agent, at=self.clock())
            return
        why = {
            StopReason.WAITING_APPROVAL: "its calls were decided",
            StopReason.ESCALATED: "a person continued it",
        }.get(row.stop_reason, "it was interrupted (on_interrupt: resume)")
        outcome = self.planner.continue_run(
            row.agent, row.id, row.trigger, json.loads(row.inputs_json)
        )
        self.waiting.discard(row.id)
        if outcome == "started":
            log.info("continuing run %s of %s: %s", row.id, row.agent, why)
        elif outcome == "waiting":
            log.info("run %s of %s continues once its active run ends: %s", row.id, row.agent, why)
