"""The daemon's paused runs: continued once decided, or after a restart when interrupted.

A run of the daemon that waits for approval continues by itself once none of its calls
waits any more, whoever decided them (``agentrun approve``, the API, the console, another
process): :class:`PausedRuns` follows the run event log's ``approval_decided`` entries
(and ``escalation_decided``: an escalated run a person continued; ``question_answered``
and ``question_timed_out``: a run paused by the ``ask_human`` tool) while any run waits,
and hands the run to the planner (:meth:`Planner.continue_run`), which
applies the concurrency policy. At start it also continues the runs found ``interrupted``
whose spec says ``on_interrupt: resume``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
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
#: How often, in seconds, the daemon marks questions past their ``answer_timeout`` timed
#: out (a run waiting on one then continues, to end with stop reason ``answer_timeout``) and
#: looks at every paused run again, while any waits.
QUESTION_SWEEP_S = 2.0
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
        self.next_question_sweep = 0.0

    def take_over(self) -> None:
        """At start: continue the runs decided while no daemon ran, and the interrupted ones."""
        self.seen = self.store.last_event_id()
        self.store.expire_questions()  # a question that timed out meanwhile ends its run
        for row in self.store.paused_runs(DAEMON_TRIGGERS):
            self.consider(row, restarting=True)

    def follow(self) -> None:
        """Continue the daemon's paused runs whose last pending call was just decided.

        Reads the ``approval_decided``, ``escalation_decided``, ``question_answered`` and
        ``question_timed_out`` entries of the run event log since the last look: a decision
        or answer made anywhere (the CLI, the API, the console) is in it. Every
        :data:`QUESTION_SWEEP_S` it also times out questions past their deadline.
        """
        if not self.waiting:
            return
        recheck: list[str] = []
        now = time.monotonic()
        if now >= self.next_question_sweep:
            # Questions past their answer_timeout become question_timed_out entries (read
            # below); and every paused run is looked at again, in case its answer or decision
            # came while it was running (a resume that paused again).
            self.next_question_sweep = now + QUESTION_SWEEP_S
            self.store.expire_questions()
            recheck = sorted(self.waiting)
        entries = self.store.events_since(
            self.seen,
            limit=1000,
            types=(
                "approval_decided",
                "escalation_decided",
                "question_answered",
                "question_timed_out",
            ),
        )
        if entries:
            self.seen = int(entries[-1]["id"])
        runs = [*recheck, *(str(entry["run_id"]) for entry in entries)]
        for run_id in dict.fromkeys(runs):
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
            StopReason.WAITING_INPUT,
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
        elif row.stop_reason == StopReason.WAITING_INPUT:
            if self.store.questions(row.id):
                self.waiting.add(row.id)  # its question still waits for an answer
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
            StopReason.WAITING_INPUT: "its question was answered (or timed out)",
        }.get(row.stop_reason, "it was interrupted (on_interrupt: resume)")
        outcome = self.planner.continue_run(
            row.agent, row.id, row.trigger, json.loads(row.inputs_json)
        )
        self.waiting.discard(row.id)
        if outcome == "started":
            log.info("continuing run %s of %s: %s", row.id, row.agent, why)
        elif outcome == "waiting":
            log.info("run %s of %s continues once its active run ends: %s", row.id, row.agent, why)
