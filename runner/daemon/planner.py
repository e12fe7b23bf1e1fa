"""The daemon's decisions: what fires, when, and what becomes of each fire.

:class:`Planner` installs an agent's triggers, finds the cron slots that are due, catches up
the slots missed while no daemon ran, applies the concurrency policy to every fire, recovers
the fires a previous daemon recorded but never started, and starts a waiting fire when the
agent's active runs have ended. It reads no clock of its own, starts no process and opens
no socket: the clock, the run store, and the two effects it asks for (hand a fire to a
worker, cancel a run) are passed in. The daemon (:mod:`runner.daemon.lifecycle`) wires them
to the real clock, store and executor; ``tests/test_triggers_policies.py`` drives the same
class on a fake clock and executor.

The rules themselves are pure functions in :mod:`runner.triggers` (catch-up:
:func:`~runner.triggers.missed_slots`; concurrency: ``plan_fire``, ``plan_recovery`` and
``start_queued`` in :mod:`runner.triggers.concurrency`); this class applies them to the
state it keeps and records every outcome in the store's ``fires`` table, where a unique
(agent, trigger, slot) row is what keeps a slot from firing twice.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..spec import TriggerKind
from ..store.rows import FireOutcome
from ..triggers import CronSchedule, missed_slots, slot_run_id
from ..triggers.concurrency import FireDecision, plan_fire, plan_recovery, start_queued
from .state import AgentState, Fire, iso

if TYPE_CHECKING:
    from ..store import RunStore

log = logging.getLogger("agentrun.daemon")

#: How far back a catch-up records the slots it does not run (as ``missed``): a year of
#: minutely slots is not a useful record.
MISSED_RECORD_WINDOW = timedelta(days=7)

#: Hands a started fire to a worker (:meth:`runner.daemon.lifecycle.Daemon.dispatch`).
Dispatch = Callable[[Fire], None]
#: Cancels an active run and records its fire's outcome; True when the run is gone at once
#: (withdrawn before it had a worker), False when it stays active until its worker exits.
Cancel = Callable[[str, str], bool]


def ended_outcome(outcome: str, run_id: str) -> str:
    """An agent's last outcome as ``daemon status`` shows it: ``stop reason (run id)``."""
    return f"{outcome} ({run_id})"


class Planner:
    """Applies the agents' triggers and concurrency policies; the daemon's decisions.

    Args:
        store: the run store (fires, cron cursors).
        clock: the current time, timezone-aware (UTC).
        dispatch: hands a started fire to a worker.
        cancel: cancels an active run (see :data:`Cancel`).

    Attributes:
        agents: agent name -> its state.
        heap: ``(instant, generation, agent, trigger index)`` of every cron trigger's next slot.
        stopping: once True, nothing new starts (due slots are still recorded as handled).
        leading: whether this daemon leads (:mod:`runner.daemon.leadership`); a standby
            installs agents but catches up, recovers and starts nothing.
        adopted: run id -> agent name of runs whose workers outlived a previous daemon.
        recorded: agent name -> fires a previous daemon recorded whose runs never began.
    """

    def __init__(
        self,
        store: RunStore,
        clock: Callable[[], datetime],
        dispatch: Dispatch,
        cancel: Cancel,
    ) -> None:
        self.store = store
        self.clock = clock
        self.dispatch_fire = dispatch
        self.cancel_run = cancel
        self.agents: dict[str, AgentState] = {}
        self.heap: list[tuple[datetime, int, str, int]] = []
        self.generation = 0
        self.stopping = False
        self.leading = True
        self.adopted: dict[str, str] = {}
        self.recorded: dict[str, list[Fire]] = {}

    # -- after a restart ---------------------------------------------------------------------

    def take_over(self, adopted: Mapping[str, str]) -> None:
        """Before any spec is installed: the runs still running and the fires never started.

        ``adopted`` maps the run ids whose workers outlived the previous daemon to their
        agents; each becomes active when its agent is installed. The fires recorded as
        started or queued whose runs never began are read now, before anything new is
        recorded, so a catch-up fire recorded during install is never recovered as well.
        """
        self.adopted = dict(adopted)
        self.recorded = self.unstarted()

    def unstarted(self) -> dict[str, list[Fire]]:
        """Agent name -> the fires recorded started or queued whose runs never began."""
        recorded: dict[str, list[Fire]] = {}
        for row in self.store.unstarted_fires():
            recorded.setdefault(row.agent, []).append(
                Fire(
                    row.agent,
                    row.trigger,
                    row.trigger_index,
                    row.run_id,
                    row.inputs,
                    row.slot,
                    row.idempotency_key,
                )
            )
        return recorded

    def pick_up(self) -> None:
        """Start the fires standby daemons recorded (and any other the store has unstarted).

        A standby records the manual and webhook fires it receives as ``queued``
        (:meth:`record_received`); the leader calls this every turn of its loop and applies
        each agent's concurrency policy to them as to recovered fires (:meth:`recover`).
        Fires of agents this daemon has not loaded wait until it does.
        """
        if self.stopping or not self.leading:
            return
        for name, fires in self.unstarted().items():
            agent = self.agents.get(name)
            if agent is not None:
                self.recover(agent, fires, "recorded by a standby daemon")

    def record_received(self, fire: Fire, holder: str) -> FireOutcome:
        """A standby's fire: recorded ``queued`` for the leader to start (:meth:`pick_up`).

        Returns ``queued``, or ``duplicate`` when its idempotency key (a manual trigger's
        key, a webhook's delivery id) or slot was already recorded, by any daemon.
        """
        reason = f"received by the standby daemon {holder}; the leader starts it"
        if not self.record_fire(fire, FireOutcome.QUEUED, reason):
            return FireOutcome.DUPLICATE
        log.info(
            "recorded %s fire of %s as run %s for the leader", fire.trigger, fire.agent, fire.run_id
        )
        return FireOutcome.QUEUED

    def step_down(self) -> None:
        """This daemon no longer leads: it starts nothing, and forgets the fires that wait.

        Its waiting fires stay recorded as ``queued`` in the store, where the new leader
        finds them; its running runs go on and are still collected when they end.
        """
        self.leading = False
        for agent in self.agents.values():
            agent.queued = []

    # -- agents ------------------------------------------------------------------------------

    def install(self, spec: Any, path: Path, mtime: float, source: bytes) -> AgentState:
        """Schedule a (new or reloaded) spec's cron triggers, in this order.

        Its adopted runs become active; its recovered fires follow its concurrency policy
        (:meth:`recover`); then each cron trigger's missed slots are caught up
        (:meth:`catch_up`) and its next slot goes on the heap. A reload keeps the agent's
        active runs, waiting fires and last outcome; a first install (a daemon that
        restarted) takes the last outcome from the store. Watch and webhook triggers are the
        listeners' to set up.
        """
        old = self.agents.get(spec.name)
        self.generation += 1
        agent = AgentState(
            spec=spec, path=path, mtime=mtime, generation=self.generation, source=source
        )
        if old is not None:
            agent.active, agent.queued, agent.last_outcome = (
                old.active,
                old.queued,
                old.last_outcome,
            )
        else:
            # After a restart the last outcome is the store's, not "-" until a run ends.
            last = self.store.last_ended_run(spec.name)
            if last is not None:
                agent.last_outcome = ended_outcome(last.stop_reason or last.status, last.id)
        self.agents[spec.name] = agent
        agent.active |= {run_id for run_id, name in self.adopted.items() if name == spec.name}
        if self.leading:
            self.recover(agent, self.recorded.pop(spec.name, []))
        now = self.clock()
        for trigger in spec.triggers:
            if trigger.kind == TriggerKind.CRON and trigger.cron:
                schedule = CronSchedule(trigger.cron, trigger.timezone)
                agent.crons[trigger.index] = schedule
                if self.leading:  # a standby's cursors are the leader's to move
                    self.catch_up(agent, trigger, schedule, now)
                nxt = schedule.next_after(now)
                agent.next_fire[trigger.index] = nxt
                heapq.heappush(self.heap, (nxt, agent.generation, spec.name, trigger.index))
        return agent

    def remove(self, name: str) -> AgentState | None:
        """Stop scheduling an agent (its running runs go on); its state, or None."""
        return self.agents.pop(name, None)

    # -- cron --------------------------------------------------------------------------------

    @staticmethod
    def cursor_key(trigger: Any) -> str:
        """A cron trigger's cursor key: a changed expression or zone starts a fresh cursor."""
        return f"{trigger.index}:{trigger.cron}:{trigger.timezone}"

    def catch_up(
        self, agent: AgentState, trigger: Any, schedule: CronSchedule, now: datetime
    ) -> None:
        """Handle the slots between the trigger's persisted cursor and ``now``.

        The trigger's ``catchup`` policy chooses the slots that run
        (:func:`runner.triggers.missed_slots`); the others in the last
        :data:`MISSED_RECORD_WINDOW` are recorded as ``missed``. A trigger without a cursor
        (new, or its expression changed) starts from ``now``.
        """
        key = self.cursor_key(trigger)
        cursor = self.store.cron_cursor(agent.name, key)
        if cursor is None:
            self.store.set_cron_cursor(agent.name, key, now)
            return
        chosen = missed_slots(schedule, cursor, now, trigger.catchup, trigger.catchup_max)
        window_start = max(cursor, now - MISSED_RECORD_WINDOW)
        for slot in schedule.slots_between(window_start, now):
            if slot not in chosen:
                self.record_fire(
                    self.slot_fire(agent, trigger.index, slot),
                    FireOutcome.MISSED,
                    f"the daemon was not running at {iso(slot)} (catchup: {trigger.catchup})",
                )
        for slot in chosen:
            self.fire(self.slot_fire(agent, trigger.index, slot), catching_up=True)
        self.store.set_cron_cursor(agent.name, key, now)

    @staticmethod
    def slot_fire(agent: AgentState, index: int, slot: datetime) -> Fire:
        """The fire of one cron slot, with its deterministic run id."""
        return Fire(
            agent.name, TriggerKind.CRON, index, slot_run_id(agent.name, index, slot), slot=slot
        )

    def next_due(self) -> datetime | None:
        """The earliest scheduled cron slot, or None when no agent has a cron trigger."""
        return self.heap[0][0] if self.heap else None

    def due(self, now: datetime) -> None:
        """Fire every cron slot due at ``now``, each once; then persist its cursor.

        The cursor is written after the fire's row: a daemon killed in between reconsiders
        the slot on restart and finds its row (the slot is not fired twice).
        """
        while self.heap and self.heap[0][0] <= now:
            instant, generation, name, index = heapq.heappop(self.heap)
            agent = self.agents.get(name)
            if agent is None or agent.generation != generation:
                continue  # a reloaded or removed spec: its new entries are in the heap
            trigger = agent.spec.triggers[index]
            if not self.stopping:
                self.fire(self.slot_fire(agent, index, instant))
            self.store.set_cron_cursor(name, self.cursor_key(trigger), instant)
            nxt = agent.crons[index].next_after(instant)
            agent.next_fire[index] = nxt
            heapq.heappush(self.heap, (nxt, generation, name, index))

    # -- firing ------------------------------------------------------------------------------

    def record_fire(self, fire: Fire, outcome: FireOutcome, reason: str = "") -> bool:
        """Write the fire's row; False when its slot or key was already handled."""
        from ..store import FireRow

        return self.store.record_fire(
            FireRow(
                agent=fire.agent,
                trigger=fire.trigger,
                trigger_index=fire.trigger_index,
                run_id=fire.run_id,
                outcome=outcome,
                reason=reason,
                slot=fire.slot,
                idempotency_key=fire.key,
                inputs=fire.inputs,
                created_at=self.clock(),
            )
        )

    def set_outcome(self, run_id: str, outcome: FireOutcome, reason: str = "") -> None:
        """Update a recorded fire's outcome."""
        self.store.set_fire_outcome(run_id, outcome, reason)

    def fire(self, fire: Fire, catching_up: bool = False) -> FireOutcome:
        """Apply the agent's concurrency policy to a fire; the outcome recorded.

        Returns what became of it: ``started``, ``queued``, ``skipped``, or ``duplicate``
        (its slot or idempotency key was already handled: nothing done). A ``replace`` fire
        is recorded ``queued`` until the runs it replaces are gone, then ``started``.

        Raises:
            KeyError: no agent of that name is installed.
        """
        agent = self.agents[fire.agent]
        plan = plan_fire(agent.spec.concurrency, agent.active, [q.run_id for q in agent.queued])
        why = " (catch-up)" if catching_up else ""
        if plan.decision is FireDecision.SKIP:
            reason = f"a run of {agent.name} is active (concurrency: {agent.spec.concurrency})"
            self.record_fire(fire, FireOutcome.SKIPPED, reason)
            log.info("skipped %s fire of %s: %s", fire.trigger, agent.name, reason)
            return FireOutcome.SKIPPED
        if plan.decision is FireDecision.QUEUE:
            if not self.record_fire(fire, FireOutcome.QUEUED, "waiting for the active run" + why):
                return FireOutcome.DUPLICATE
            agent.queued.append(fire)
            log.info("queued %s fire of %s as run %s", fire.trigger, agent.name, fire.run_id)
            return FireOutcome.QUEUED
        if plan.decision is FireDecision.START:
            if not self.record_fire(fire, FireOutcome.STARTED, fire.trigger + why):
                return FireOutcome.DUPLICATE
            self.dispatch(agent, fire)
            return FireOutcome.STARTED
        replaced = ", ".join([*plan.cancel, *plan.drop])
        if not self.record_fire(fire, FireOutcome.QUEUED, f"replacing {replaced}{why}"):
            return (
                FireOutcome.DUPLICATE
            )  # before anything is cancelled: a duplicate replaces nothing
        reason = f"replaced by run {fire.run_id}"
        for run_id in plan.cancel:
            self.cancel(agent, run_id, reason)
        for run_id in plan.drop:
            agent.queued = [q for q in agent.queued if q.run_id != run_id]
            self.set_outcome(run_id, FireOutcome.CANCELLED, reason + " while it waited")
            log.info("dropped waiting run %s of %s: %s", run_id, agent.name, reason)
        agent.queued.append(fire)
        if self.start_waiting(agent, f"{fire.trigger}{why}, replacing {replaced}"):
            return FireOutcome.STARTED
        log.info(
            "run %s of %s waits for %s to exit", fire.run_id, agent.name, ", ".join(plan.cancel)
        )
        return FireOutcome.QUEUED

    def dispatch(self, agent: AgentState, fire: Fire) -> None:
        """The fire's run is active from now on; the daemon hands it to a worker."""
        agent.active.add(fire.run_id)
        self.dispatch_fire(fire)

    def cancel(self, agent: AgentState, run_id: str, reason: str) -> None:
        """Cancel one of the agent's active runs; a run withdrawn at once is no longer active."""
        if self.cancel_run(run_id, reason):
            agent.active.discard(run_id)

    def start_waiting(self, agent: AgentState, reason: str = "dequeued") -> bool:
        """Start the agent's waiting fire if nothing of it is active any more; True if started.

        The rule is :func:`runner.triggers.start_queued`; nothing starts while the daemon stops
        (the fire stays recorded as queued, and the next daemon recovers it).
        """
        if (
            self.stopping
            or not self.leading
            or not start_queued(len(agent.active), len(agent.queued))
        ):
            return False
        fire = agent.queued.pop(0)
        if not fire.resume:  # a continued run's fire row keeps what it said when it started
            self.set_outcome(fire.run_id, FireOutcome.STARTED, reason)
        self.dispatch(agent, fire)
        return True

    def continue_run(self, name: str, run_id: str, trigger: str, inputs: dict[str, Any]) -> str:
        """Continue a recorded run of agent ``name`` that paused or was interrupted.

        Not a new fire: nothing is recorded in ``fires``, and the concurrency policy decides
        only when, never whether: with ``allow``, or when no run of the agent is active, it
        is handed to a worker now; otherwise it waits, first in line, for the active runs to
        end (it was begun before any fire that waits). Returns ``started``, ``waiting``, or
        ``known`` (already active or waiting: nothing done); ``stopping`` while the daemon
        stops and ``unknown`` when no agent of that name is installed.
        """
        agent = self.agents.get(name)
        if agent is None:
            return "unknown"
        if run_id in agent.active or any(q.run_id == run_id for q in agent.queued):
            return "known"
        if self.stopping or not self.leading:
            return "stopping"
        kinds = {kind.value: kind for kind in TriggerKind}
        fire = Fire(name, kinds.get(trigger, TriggerKind.MANUAL), 0, run_id, inputs, resume=True)
        if agent.spec.concurrency == "allow" or not agent.active:
            self.dispatch(agent, fire)
            return "started"
        agent.queued.insert(0, fire)
        return "waiting"

    def run_ended(self, name: str, run_id: str, outcome: str) -> None:
        """A run of agent ``name`` ended (``outcome``: its stop reason): start what waits."""
        self.adopted.pop(run_id, None)
        agent = self.agents.get(name)
        if agent is None:
            return
        agent.active.discard(run_id)
        agent.last_outcome = ended_outcome(outcome, run_id)
        self.start_waiting(agent)

    def not_started(self, run_id: str, error: BaseException) -> None:
        """A started fire's run could not be handed to a worker: it failed; start what waits."""
        log.error("run %s could not be handed to a worker: %r", run_id, error)
        self.set_outcome(run_id, FireOutcome.FAILED, f"it could not be handed to a worker: {error}")
        for agent in self.agents.values():
            if run_id in agent.active:
                agent.active.discard(run_id)
                self.start_waiting(agent)

    # -- recovery ----------------------------------------------------------------------------

    def recover(
        self, agent: AgentState, fires: list[Fire], after: str = "recovered after a restart"
    ) -> None:
        """Start, queue, skip or drop an agent's recovered fires by its concurrency policy.

        The rule is :func:`runner.triggers.concurrency.plan_recovery` (``allow``: all start;
        ``forbid``: the oldest; ``queue``: the oldest, and one waits; ``replace``: only the
        newest). Fires already active or waiting in this daemon are left alone. ``after``
        says why in each fire's recorded reason.
        """
        known = agent.active | {q.run_id for q in agent.queued}
        by_id = {f.run_id: f for f in fires if f.run_id not in known}
        if not by_id:
            return
        policy = agent.spec.concurrency
        plan = plan_recovery(policy, agent.active, by_id)
        newest = max([*agent.active, *by_id])
        for run_id in plan.skip:
            self.set_outcome(
                run_id,
                FireOutcome.SKIPPED,
                f"{after}: a run of {agent.name} is active or waiting (concurrency: {policy})",
            )
        for run_id in plan.drop:
            self.set_outcome(run_id, FireOutcome.CANCELLED, f"{after}: replaced by run {newest}")
        for run_id in plan.cancel:
            self.cancel(agent, run_id, f"replaced by run {newest}, {after}")
        for run_id in plan.queue:
            self.set_outcome(run_id, FireOutcome.QUEUED, f"{after}: waiting for the active run")
            agent.queued.append(by_id[run_id])
        for run_id in plan.start:
            self.set_outcome(run_id, FireOutcome.STARTED, after)
            log.info("starting recorded fire %s of %s (%s)", run_id, agent.name, after)
            self.dispatch(agent, by_id[run_id])
        log.info(
            "recovered %d fires of %s (concurrency: %s): %d started, %d waiting, %d skipped, "
            "%d replaced",
            len(by_id),
            agent.name,
            policy,
            len(plan.start),
            len(plan.queue),
            len(plan.skip),
            len(plan.drop),
        )
