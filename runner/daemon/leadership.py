"""Which of the daemons sharing one run store leads: a lease in the store, renewed.

Several daemons (each with its own AGENTRUN_HOME, so its own lock) may share one store
(``AGENTRUN_STORE``). The one holding the ``daemon`` lease (:mod:`runner.store.leases`)
leads: it plans cron slots, watches files, continues paused runs, sweeps interrupted runs
and starts every fire. The others stand by: they load the specs and answer requests, and
record the manual and webhook fires they receive for the leader to start.

The rules, after Kubernetes' leader election (``leaseDurationSeconds``, ``renewDeadline``,
``retryPeriod``):

- The leader renews every ``ttl_s / 3``; a standby tries to take the lease as often.
- The leader counts its lease from the instant it *sent* its last successful renewal, on
  its own monotonic clock: it may act until ``sent + ttl_s``, which is no later than the
  row's expiry on the database's clock (the statement ran after it was sent). When that
  instant passes without a renewal (a store that does not answer, a process that was
  paused), it steps down at once, before anything else it would do.
- A standby takes an expired lease with its next attempt, so the leadership is vacant for at
  most ``ttl_s + ttl_s / 3`` seconds after a leader dies (:func:`takeover_bound_s`).

The holder is ``hostname:AGENTRUN_HOME``: the lock makes it one process at a time, so a
daemon restarted on the same home renews its own lease at once instead of waiting for it to
expire, and a single daemon leads from its first instant, as before leases existed.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..store.interface import HEARTBEAT_STALE_S

if TYPE_CHECKING:
    from ..store import RunStore
    from ..store.leases import Lease
    from ..store.rows import RunRow
    from .continuation import PausedRuns
    from .planner import Planner
    from .state import AgentState

log = logging.getLogger("agentrun.daemon")

#: The lease the daemons' leadership is.
LEASE_NAME = "daemon"
#: Seconds a leader's lease lasts unless renewed (``agentrun daemon --lease-ttl``).
DEFAULT_LEASE_TTL_S = 15.0


def takeover_bound_s(ttl_s: float) -> float:
    """Seconds the leadership stays vacant at most after the leader dies.

    The lease's TTL plus one attempt interval of the standbys (a third of the TTL).
    """
    return ttl_s + ttl_s / 3


def holder_name(home: Path) -> str:
    """The lease holder a daemon of ``home`` is: ``hostname:AGENTRUN_HOME``."""
    return f"{socket.gethostname()}:{home}"


class Change(enum.Enum):
    """What one :meth:`Leadership.turn` did to this daemon's role."""

    NONE = "none"
    """Still the leader, or still standing by."""
    ELECTED = "elected"
    """It has just taken the lease: it leads from now on."""
    DEPOSED = "deposed"
    """Its lease ran out, or was taken: it stands by from now on."""


class Leadership:
    """This daemon's side of the ``daemon`` lease.

    Args:
        store: the shared run store.
        holder: this daemon's holder name (:func:`holder_name`).
        ttl_s: seconds a lease lasts unless renewed; renewals and attempts every third.
        monotonic: the clock the deadline is kept on (seconds); tests pass a fake.

    Attributes:
        valid_until: the monotonic instant up to which this daemon may lead (0: it does not).
        lease: the lease as last read or written, or None.
        next_attempt: the monotonic instant of the next renewal or attempt.
    """

    def __init__(
        self,
        store: RunStore,
        holder: str,
        ttl_s: float = DEFAULT_LEASE_TTL_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not ttl_s > 0:
            raise ValueError(f"a lease TTL must be more than 0 seconds, not {ttl_s!r}")
        self.store = store
        self.holder = holder
        self.ttl_s = ttl_s
        self.monotonic = monotonic
        self.valid_until = 0.0
        self.lease: Lease | None = None
        self.next_attempt = 0.0
        self.was_leading = False

    @property
    def interval_s(self) -> float:
        """Seconds between renewals (leader) or attempts (standby): a third of the TTL."""
        return self.ttl_s / 3

    def leading(self) -> bool:
        """Whether this daemon may act as the leader now (its lease has not run out)."""
        return self.monotonic() < self.valid_until

    def turn(self) -> Change:
        """Step down if the lease ran out; renew or try to take it when an attempt is due.

        A store error (a database that does not answer) counts as a failed attempt: it is
        logged, and the leader steps down when its lease runs out.
        """
        now = self.monotonic()
        if now >= self.next_attempt:
            self.next_attempt = now + self.interval_s
            try:
                lease = self.store.acquire_lease(LEASE_NAME, self.holder, self.ttl_s)
            except Exception as error:  # any backend's error: the database is out of reach
                # The lease may still be ours until valid_until: keep it until then.
                log.error("could not reach the run store to renew the lease: %s", error)
            else:
                if lease is not None:
                    self.valid_until = now + self.ttl_s
                    self.lease = lease
                else:
                    self.valid_until = 0.0  # someone else holds it: never act beside them
        leading = self.leading()
        change = Change.NONE
        if leading and not self.was_leading:
            change = Change.ELECTED
        elif self.was_leading and not leading:
            change = Change.DEPOSED
            self.valid_until = 0.0
        self.was_leading = leading
        return change

    def until_next_s(self) -> float:
        """Seconds until :meth:`turn` has something to do (an attempt or the lease's end)."""
        now = self.monotonic()
        deadline = self.next_attempt
        if self.was_leading:
            deadline = min(deadline, self.valid_until)
        return max(deadline - now, 0.0)

    def release(self) -> None:
        """Give the lease up (a graceful stop): a standby takes it with its next attempt."""
        if self.was_leading:
            self.was_leading = False
            self.valid_until = 0.0
            try:
                self.store.release_lease(LEASE_NAME, self.holder)
            except Exception as error:  # the lease then expires by itself
                log.error("could not release the lease: %s", error)

    def status(self) -> dict[str, Any]:
        """This daemon's role and the lease as the store has it now (for ``daemon status``)."""
        try:
            lease = self.store.lease(LEASE_NAME)
        except Exception as error:
            log.error("could not read the lease: %s", error)
            lease = self.lease
        return {
            "role": "leader" if self.leading() else "standby",
            "holder": self.holder,
            "lease_ttl_s": self.ttl_s,
            "lease": lease.as_dict() if lease is not None else None,
        }


#: Seconds between the leader's sweeps for runs whose process was lost (another machine's
#: runs have no pid to look at here: their heartbeats going stale is the only sign).
SWEEP_S = HEARTBEAT_STALE_S / 4


class DaemonLeadership:
    """What a daemon does as its role changes; a part of :class:`runner.daemon.Daemon`.

    The state it changes is the :class:`Daemon`'s: the planner's role, the runs it adopts,
    its paused runs and notifications.
    """

    store: RunStore
    planner: Planner
    executor: Any
    leadership: Leadership
    orphans: dict[str, tuple[str, int]]
    starting: dict[str, asyncio.Task[None]]
    paused: PausedRuns
    notifications: Any
    stopping: bool
    next_sweep: float

    def lead(self) -> None:
        """A turn of the lease (the first thing of every tick); then a due sweep."""
        change = self.leadership.turn()
        if change is Change.ELECTED:
            self.become_leader()
        elif change is Change.DEPOSED:
            self.step_down()
        due = time.monotonic() >= self.next_sweep
        if due and self.leadership.leading() and not self.stopping:
            self.sweep()

    def adopt_running(self) -> dict[str, str]:
        """Adopt the runs recorded running that this daemon does not run itself.

        Their workers outlived the daemon that started them (killed, or deposed); each is
        watched to its end (:meth:`adopt`). A local worker on another machine cannot be
        watched from here: its heartbeat going stale is the sign it was lost (:meth:`sweep`).
        Returns the adopted run ids (and those adopted before) with their agents.
        """
        adopted = {run_id: name for run_id, (name, _) in self.orphans.items()}
        for row in self.store.running_runs():
            if row.id in self.executor.running or row.id in adopted:
                continue
            if self.adopt(row):
                adopted[row.id] = row.agent
        return adopted

    def sweep(self) -> None:
        """End the runs whose process was lost ``interrupted``; continue them by their spec.

        The store's :meth:`~runner.store.RunStore.sweep_interrupted` finds them (no such pid
        on this machine, or a heartbeat older than
        :data:`~runner.store.HEARTBEAT_STALE_S`); a run of a lost machine then continues by
        its spec's ``on_interrupt`` as after a restart. This daemon's own workers are left to
        their collection (a run whose worker crashed is not continued: it could crash again).
        """
        self.next_sweep = time.monotonic() + SWEEP_S
        own = {*self.executor.running, *self.orphans}  # collected by reap, with their ending
        for run_id in self.store.sweep_interrupted(keep=own):
            log.warning("run %s lost its process: interrupted", run_id)
            row = self.store.run(run_id)
            if row is not None:
                self.paused.consider(row, restarting=True)

    def become_leader(self) -> None:
        """This standby took the lease: it does what a restarted daemon does, in order.

        It adopts the runs left running on this machine, reads the fires recorded but never
        started, and installs every agent again as the leader: each agent's recorded fires
        are recovered under its concurrency policy, then the cron slots that fell in the gap
        are caught up from the cursors in the store (a slot already fired by the old leader
        has its row, and is not fired again). Then paused runs and notifications are taken
        over, as at a start.
        """
        lease = self.leadership.lease
        log.warning(
            "this daemon leads now (lease %r, term %s)",
            LEASE_NAME,
            lease.term if lease is not None else "?",
        )
        self.store.sweep_interrupted(keep={*self.executor.running, *self.orphans})
        self.next_sweep = time.monotonic() + SWEEP_S
        self.planner.leading = True
        self.planner.take_over(self.adopt_running())
        for agent in list(self.planner.agents.values()):
            installed = self.planner.install(agent.spec, agent.path, agent.mtime, agent.source)
            self.reinstalled(installed)
        self.notifications.take_over(self.store.last_event_id())
        self.paused.take_over()

    def reinstalled(self, agent: AgentState) -> None:
        """An agent was installed again (a new generation): its listeners follow it."""
        raise NotImplementedError

    def step_down(self) -> None:
        """The lease ran out or was taken: stop scheduling at once.

        Nothing new starts; runs still waiting for a worker are withdrawn (their fires stay
        recorded ``started``, and the new leader starts them); fires waiting for an active
        run are forgotten here (recorded ``queued``, the new leader's). Runs already running
        go on and are collected as they end.
        """
        log.warning(
            "this daemon's lease %r ran out before it was renewed: it stands by and starts "
            "nothing until it leads again",
            LEASE_NAME,
        )
        self.planner.step_down()
        for run_id, task in list(self.starting.items()):
            task.cancel()
            for agent in self.planner.agents.values():
                agent.active.discard(run_id)
        self.paused.waiting.clear()

    def adopt(self, row: RunRow) -> bool:
        """Watch a run a previous daemon left running (the :class:`Daemon`'s)."""
        raise NotImplementedError

    def hold_lease(self) -> None:
        """While stopping: renew the lease this daemon holds (its runs finish), take none."""
        if self.leadership.was_leading and self.leadership.turn() is Change.DEPOSED:
            self.step_down()
