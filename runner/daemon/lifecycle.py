"""The daemon's lifecycle: lock, signals, main loop, shutdown, and the runs it hands out.

``agentrun daemon [DIR...]`` runs :class:`Daemon` in the foreground::

    spec folders ──watch──▶ agents (last good version of each spec)
    cron (heap of next fire instants) ─┐
    file-watch (watchdog → filter → debounce) ─┤
    manual (control socket) ─┤──▶ fire ──▶ concurrency policy ──▶ warm worker process ──▶ run store
    webhook (HMAC-verified HTTP) ─┤       API (POST /api/v1/agents/{name}/runs) ─┘
    queue (Redis stream consumer threads, runner.daemon.queueing) ─┘

With ``--http HOST:PORT`` the daemon serves one HTTP server in its event loop
(:class:`runner.daemon.http.HttpServer`): the webhooks, the JSON API of :mod:`runner.web`
with the daemon's operations (this class implements
:class:`runner.web.operations.DaemonOperations`), and the console.

Guarantees, and how:

- **One daemon per AGENTRUN_HOME**: an exclusive ``flock`` on ``daemon.lock``.
- **One leader among daemons sharing a store** (``AGENTRUN_STORE``): a lease in the store
  (:mod:`runner.daemon.leadership`). Only the leader plans, watches, continues and starts
  runs; a standby records the manual and webhook fires it receives, which the leader starts
  within :data:`PICK_UP_S`, and takes over when the leader's lease runs out.
- **No slot run twice**: a cron slot's run id derives from (agent, trigger, instant)
  (:func:`runner.triggers.slot_run_id`), and every slot is one row of the ``fires`` table
  under a unique index, written before its run starts; a restarted daemon that reconsiders
  the slot finds the row and does nothing.
- **No slot lost**: each cron trigger has a persisted cursor (every slot at or before it was
  handled). After downtime the slots in between are caught up by the trigger's ``catchup``
  policy (the rest recorded as ``missed``); a fire recorded but whose run never started (the
  daemon died in between) is started on restart; runs whose workers outlived a killed daemon
  are adopted and watched to their end. Recovered fires follow the agent's concurrency
  policy like any fire (:func:`runner.triggers.concurrency.plan_recovery`), before the
  slots missed while the daemon was down are caught up.
- **Failures are failures**: a run's outcome is its recorded stop reason; a worker that dies
  without one leaves the run ``interrupted`` (resumable).
- **The daemon never imports litellm**: runs execute in pre-warmed worker processes
  (:mod:`runner.daemon.worker`) that paid their model path's imports while idle. A worker
  is warmed for one path (:func:`runner.daemon.executor.model_path`): a spec whose models
  are all OpenAI-compatible runs in a ``direct`` worker, which never imports litellm; idle
  workers are kept only for the paths the loaded specs use.

Concurrency policies follow Kubernetes CronJob ``concurrencyPolicy`` (plus ``queue``); the
decision itself is :func:`runner.triggers.concurrency.plan_fire`, applied by
:meth:`runner.daemon.planner.Planner.fire`.
``replace`` cancels every active run of the agent (SIGTERM to one holding a worker; one still
waiting for a worker is withdrawn and never starts), drops an older fire that waits, and
starts the new run only when nothing of the agent is active: never two runs at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StopReason
from ..paths import private_dir, private_file
from ..processes import process_alive
from ..store.rows import FireOutcome, RunRow
from .celery_executor import CeleryExecutor
from .continuation import DECISION_POLL_S, PausedRuns
from .control import ControlServer, DaemonError, socket_path
from .executor import LocalExecutor, SpawnWorker, model_path
from .leadership import DEFAULT_LEASE_TTL_S, DaemonLeadership, Leadership, holder_name
from .notifying import DaemonNotifications, NotifySettings
from .planner import Planner
from .queueing import QueueConsumers, consumer_name
from .requests import DaemonRequests
from .specs import Invalid, Loaded, Removed, SpecFolders, load_warnings
from .state import AgentState, Fire
from .watching import FileWatching

if TYPE_CHECKING:
    from ..store import RunStore

log = logging.getLogger("agentrun.daemon")

#: Seconds a stopping daemon lets running runs finish before interrupting them.
SHUTDOWN_GRACE_S = 30.0
#: Longest the main loop sleeps when nothing is due, in seconds.
IDLE_WAKE_S = 30.0
#: Longest the leader's loop sleeps, in seconds, before it starts the fires standby daemons
#: recorded (:meth:`runner.daemon.planner.Planner.pick_up`).
PICK_UP_S = 1.0


def lock_path(home: Path) -> Path:
    """The daemon's lock file in ``home``."""
    return home / "daemon.lock"


def daemon_running(home: Path) -> bool:
    """Whether a daemon holds the lock of ``home`` (AGENTRUN_HOME) now.

    The lock is an ``flock`` the daemon holds until its last step of shutdown (or until the
    kernel drops it with the process), so a lock that can be taken means the daemon has
    exited. Taking it here is a shared lock released at once.
    """
    try:
        handle = lock_path(home).open("rb")
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def wait_until_stopped(home: Path, timeout_s: float, poll_s: float = 0.1) -> bool:
    """Wait until the daemon of ``home`` has exited; False if it still runs after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while daemon_running(home):
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)
    return True


def _now() -> datetime:
    return datetime.now(UTC)


class Daemon(DaemonRequests, DaemonLeadership):
    """Keeps agents running on their triggers.

    Args:
        dirs: folders of spec files.
        home: AGENTRUN_HOME.
        pool_size: warm workers kept idle for each model path the loaded specs use
            (``direct``: about 115 MB each; ``litellm``: about 260 MB).
        http: ``(host, port)`` of the HTTP server (webhooks, API, console), or None for none.
        poll: poll watched folders instead of OS notifications.
        shutdown_grace_s: how long running runs may finish when the daemon stops, in seconds.
        spawn: starts one worker process (the default: ``python -m runner.daemon.worker``);
            tests pass a fake (:data:`runner.daemon.executor.SpawnWorker`).
        clock: the current time, timezone-aware (UTC); tests pass a fixed one.
        notify: default notification channels, public URL, links' maximum age.
        executor: where runs execute: ``local`` (warm worker processes here) or ``celery``
            (tasks on ``broker`` for ``agentrun worker`` processes anywhere:
            :mod:`runner.daemon.celery_executor`; raises SetupError when the broker is
            unset or cannot be reached).
        broker: the Celery executor's Redis URL; default ``AGENTRUN_BROKER``.
        lease_ttl_s: seconds the leadership lease lasts unless renewed (renewed every
            third); daemons sharing a store take over within ``lease_ttl_s * 4 / 3`` of the
            leader's death (:mod:`runner.daemon.leadership`).

    The decisions are the :class:`~runner.daemon.planner.Planner`'s; this class owns the
    processes, the listeners and the event loop, and carries out what the planner asks
    (:meth:`dispatch`, :meth:`cancel`).
    """

    def __init__(
        self,
        dirs: list[Path],
        home: Path,
        pool_size: int = 1,
        http: tuple[str, int] | None = None,
        poll: bool = False,
        shutdown_grace_s: float = SHUTDOWN_GRACE_S,
        spawn: SpawnWorker | None = None,
        clock: Callable[[], datetime] = _now,
        notify: NotifySettings | None = None,
        executor: str = "local",
        broker: str | None = None,
        lease_ttl_s: float = DEFAULT_LEASE_TTL_S,
    ) -> None:
        from ..store.location import open_store, store_location

        self.home = home
        self.clock = clock
        self.shutdown_grace_s = shutdown_grace_s
        self.store: RunStore = open_store(store_location(home))
        self.executor: LocalExecutor | CeleryExecutor = (
            CeleryExecutor(self.store, broker, on_change=self.wake_up)
            if executor == "celery"
            else LocalExecutor(home, pool_size, on_change=self.wake_up, spawn=spawn)
        )
        self.planner = Planner(self.store, clock, self.dispatch, self.cancel)
        # One daemon of those sharing the store leads (runner/daemon/leadership.py).
        self.leadership = Leadership(self.store, holder_name(home), lease_ttl_s)
        self.leadership.turn()  # lead from the start if no other daemon does
        self.next_sweep = 0.0
        self.next_pick_up = 0.0
        self.specs = SpecFolders(dirs)
        # Runs whose workers outlived the previous daemon: run id -> (agent, pid).
        self.orphans: dict[str, tuple[str, int]] = {}
        # Runs handed to the executor that wait for a worker: cancelling the task withdraws them.
        self.starting: dict[str, asyncio.Task[None]] = {}
        # Runs sent SIGTERM by a cancel, and why, until they are collected.
        self.cancelled: dict[str, str] = {}
        self.wake = asyncio.Event()
        self.stopping = False
        self.rescan_needed = True
        self.started_at = clock()
        # The daemon's paused runs, continued once decided (or, at start, interrupted).
        self.paused = PausedRuns(self.store, self.planner, clock)
        served = lambda: self.http.url if self.http is not None else None  # noqa: E731
        agents = lambda: self.agents  # noqa: E731
        self.notifications = DaemonNotifications(self.store, home, agents, served, notify)
        self._lock_file: Any = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.control = ControlServer(
            home, {"status": self.status, "trigger": self.trigger, "stop": self.stop}
        )
        self.watching = FileWatching(
            self.specs.dirs,
            poll,
            specs_changed=self.specs_changed,
            wake=self.wake_up,
            fire=self.fire,
            recent_writes=self.store.recent_tool_calls,
            # A standby drops its file events: the leader's watchers fire.
            stopping=lambda: self.stopping or not self.leadership.leading(),
        )
        self.http_address = http
        self.http: Any = None  # the HttpServer, once started
        self.queues = QueueConsumers(
            consumer_name(home),
            agents=lambda: self.agents,
            fire=self.fire,
            record_failed=lambda fire, why: self.planner.record_fire(fire, FireOutcome.FAILED, why),
            record_notice=self.store.record_notice,
            stopping=lambda: self.stopping,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def acquire_lock(self) -> None:
        """Take the one-daemon-per-home lock.

        Raises:
            DaemonError: another daemon holds it.
        """
        private_dir(self.home)
        handle = private_file(lock_path(self.home)).open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            handle.close()
            raise DaemonError(
                f"another agentrun daemon (pid {holder}) is running for AGENTRUN_HOME={self.home}"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_file = handle

    async def run(self) -> None:
        """Serve until SIGTERM, SIGINT or ``agentrun daemon stop``; then stop gracefully."""
        loop = asyncio.get_running_loop()
        self.acquire_lock()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop)
        try:
            self.leadership.turn()  # again, if the attempt made on creation is due again
            if self.leadership.leading():
                self.store.sweep_interrupted()
                self.next_sweep = time.monotonic() + self.leadership.ttl_s
            self.watching.start_spec_watcher(loop)
            self.take_over()  # after the watcher starts, so no edit falls between the two
            if self.http_address is not None:
                await self.start_http(*self.http_address)
            self.queues.start(loop)  # queue triggers' consumers (Redis streams)
            await self.control.start()  # last: the socket appearing means the daemon is up
            log.info(
                "daemon started (%s, lease holder %s): %d agents from %s; control socket %s",
                "leader" if self.leadership.leading() else "standby",
                self.leadership.holder,
                len(self.agents),
                ", ".join(map(str, self.specs.dirs)),
                socket_path(self.home),
            )
            while not self.stopping:
                await self.tick()
                await self.sleep_until_due()
        finally:
            await self.shutdown()

    def wake_up(self) -> None:
        """Make the main loop run a tick now (a worker exited, a request came in)."""
        self.wake.set()

    def wake_threadsafe(self, loop: asyncio.AbstractEventLoop) -> None:
        """:meth:`wake_up` from another thread (the HTTP server's workers)."""
        loop.call_soon_threadsafe(self.wake_up)

    def specs_changed(self) -> None:
        """A spec folder changed: rescan on the next tick, now."""
        self.rescan_needed = True
        self.wake.set()

    def request_stop(self) -> None:
        """Stop firing new runs and begin a graceful shutdown."""
        if not self.stopping:
            log.info(
                "stopping: no new runs; running runs get %.0f s to finish", self.shutdown_grace_s
            )
        self.stopping = True
        self.planner.stopping = True
        self.wake.set()

    async def shutdown(self) -> None:
        """Stop watchers and servers; let runs finish, then interrupt them; release the lock."""
        self.watching.stop()
        self.queues.stop()
        for listener in (self.http, self.control):
            if listener is not None:
                with contextlib.suppress(Exception):
                    await listener.close()
        # Runs on Celery workers go on without the daemon: neither waited for nor interrupted.
        local = not self.executor.runs_outlive_daemon
        deadline = time.monotonic() + self.shutdown_grace_s
        while local and self.executor.running and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            self.reap()
            self.hold_lease()
        for run_id in list(self.executor.running) if local else []:
            log.info("interrupting run %s (resume it with: agentrun resume %s)", run_id, run_id)
            self.executor.interrupt(run_id)
        deadline = time.monotonic() + 10
        while local and self.executor.running and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            self.reap()
            self.hold_lease()
        await self.executor.aclose()
        for task in self.starting.values():
            task.cancel()  # their fires stay recorded as started: the next daemon recovers them
        self.leadership.release()  # a standby leads from its next attempt
        self.watching.join()
        self.queues.join()
        with contextlib.suppress(FileNotFoundError):
            socket_path(self.home).unlink()
        self.notifications.close()
        self.store.close()
        if self._lock_file is not None:
            self._lock_file.close()
        log.info("daemon stopped")

    # -- specs -------------------------------------------------------------------------------

    def rescan(self) -> None:
        """(Re)load changed spec files; an invalid edit keeps the last good version."""
        self.rescan_needed = False

        def path_of(name: str) -> Path | None:
            agent = self.agents.get(name)
            return None if agent is None else agent.path

        for change in self.specs.scan(path_of, os.environ):
            match change:
                case Invalid(message=message):
                    log.error("%s", message)
                    self.store.record_notice("error", message, at=self.clock())
                case Removed(name=name, path=path):
                    log.info("spec %s removed: agent %s no longer scheduled", path, name)
                    self.remove_agent(name)
                case Loaded(spec=spec, path=path, mtime=mtime, source=source, replaces=old):
                    if old is not None:
                        self.remove_agent(old)
                    agent = self.planner.install(spec, path, mtime, source)
                    self.watching.watch_agent(agent)
                    self.queues.consume_agent(agent)
                    log.info(
                        "loaded agent %s from %s (%d triggers)",
                        spec.name,
                        path,
                        len(spec.triggers),
                    )
                    for warning in load_warnings(change, self.http_address is not None):
                        log.warning("%s", warning)
        # Idle workers only for the model paths the loaded specs use.
        self.executor.use_paths({model_path(agent.spec) for agent in self.agents.values()})

    def remove_agent(self, name: str) -> None:
        """Stop scheduling an agent (its running runs go on)."""
        self.planner.remove(name)
        self.watching.unwatch_agent(name)
        self.queues.remove_agent(name)

    # -- restart safety ----------------------------------------------------------------------

    def take_over(self) -> None:
        """What a (re)started daemon does before it serves, in this order.

        1. Adopt the runs whose workers outlived the previous daemon: they are watched to
           their end (:meth:`reap`) and count as their agents' active runs.
        2. Read the fires it recorded whose runs never began
           (:meth:`runner.daemon.planner.Planner.take_over`).
        3. Load the specs; for each agent, as it is installed, its adopted runs become active,
           its recorded fires are recovered under its concurrency policy, and only then are
           the slots it missed caught up (:meth:`runner.daemon.planner.Planner.install`): a
           catch-up fire sees the recovered runs, and is itself recorded only after the
           recorded fires were read, so it is never recovered (dispatched a second time) as
           well.

        A standby (another daemon sharing the store leads) only loads the specs; it does all
        of this when it takes the lease (:meth:`become_leader`).
        """
        if self.leadership.leading():
            self.planner.take_over(self.adopt_running())
        else:
            self.planner.leading = False
        self.rescan()
        if self.planner.leading:
            # 4. Continue the paused runs whose calls were all decided while no daemon ran,
            #    and the interrupted ones whose spec says on_interrupt: resume.
            self.notifications.take_over(self.store.last_event_id())
            self.paused.take_over()

    def adopt(self, row: RunRow) -> bool:
        """Watch a run a previous daemon left running; False if it cannot be watched here.

        A Celery run is watched through its row; a local worker by its pid, on this machine
        only: another machine's is ended by a sweep once its heartbeat is stale.
        """
        if isinstance(self.executor, CeleryExecutor):  # its row says when it ends
            self.executor.adopt(row.id, row.agent)
        elif row.hostname in (None, socket.gethostname()):
            self.orphans[row.id] = (row.agent, int(row.pid or 0))
        else:
            return False
        log.info("adopted run %s of %s (pid %s)", row.id, row.agent, row.pid)
        return True

    def reinstalled(self, agent: AgentState) -> None:
        """An agent installed again by a new leader: its watchers and consumers follow."""
        self.watching.watch_agent(agent)
        self.queues.consume_agent(agent)

    # -- effects the planner asks for --------------------------------------------------------

    def dispatch(self, fire: Fire) -> None:
        """Hand a started fire to a worker (asynchronously)."""
        agent = self.agents[fire.agent]
        task = asyncio.get_running_loop().create_task(self.start_run(agent, fire))
        self.starting[fire.run_id] = task
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda done: self.handed_over(fire.run_id, done))

    async def start_run(self, agent: AgentState, fire: Fire) -> None:
        """Hand the job to the executor (a warm worker process)."""
        job = {
            "run_id": fire.run_id,
            "spec_path": str(agent.path),
            # The last good version: a broken edit on disk does not break scheduled runs.
            "spec_source": agent.source.decode("utf-8"),
            "inputs": fire.inputs,
            "trigger": fire.trigger,
            "resume": fire.resume,
            "traceparent": fire.traceparent,  # a webhook sender's trace (runner.telemetry)
            "queue": agent.spec.executor.queue,  # the Celery executor's; the local one ignores it
        }
        path = model_path(agent.spec)
        await self.executor.start(job, agent.name, agent.spec.budgets.max_duration, path)
        where = (
            f"queue {agent.spec.executor.queue}"
            if isinstance(self.executor, CeleryExecutor)
            else f"{path} worker"
        )
        log.info("started run %s of %s (%s, %s)", fire.run_id, agent.name, fire.trigger, where)

    def handed_over(self, run_id: str, task: asyncio.Task[None]) -> None:
        """A start task ended: the run has a worker, was withdrawn, or could not start."""
        if self.starting.get(run_id) is task:
            del self.starting[run_id]
        if task.cancelled() or task.exception() is None or run_id in self.executor.running:
            return
        error = task.exception()
        assert error is not None
        self.planner.not_started(run_id, error)

    def cancel(self, run_id: str, reason: str) -> bool:
        """Cancel an active run; its fire is recorded as ``cancelled`` with ``reason``.

        A run holding a worker is sent SIGTERM (stop reason ``cancelled``; it stays active
        until its worker exits, killed after :data:`runner.daemon.executor.CANCEL_GRACE_S`).
        A run still waiting for a worker is withdrawn: it never starts, and True is returned
        (it is no longer active). A run this daemon did not start (a worker adopted from a
        previous daemon) is not signalled: it ends by itself, and what waits for it waits.
        """
        if run_id in self.cancelled:
            return False  # already sent SIGTERM
        if run_id in self.executor.running:
            if self.executor.cancel(run_id):
                self.cancelled[run_id] = reason
                self.planner.set_outcome(run_id, FireOutcome.CANCELLED, reason)
                log.info("cancelling run %s: %s", run_id, reason)
            # else its worker has just exited: collected with the outcome it recorded
            return False
        task = self.starting.pop(run_id, None)
        if task is not None:
            task.cancel()
            self.planner.set_outcome(
                run_id, FireOutcome.CANCELLED, reason + " before it had a worker"
            )
            log.info("withdrew run %s before it had a worker: %s", run_id, reason)
            return True
        log.info(
            "run %s is not one of this daemon's workers; it is left to end (%s)", run_id, reason
        )
        return False

    # -- runs ending -------------------------------------------------------------------------

    def reap(self) -> None:
        """Collect finished runs: their outcomes, then queued fires."""
        for run_id, agent, code, pid in self.executor.collect():
            self.finish(run_id, agent, code, pid)
        for run_id, (name, pid) in list(self.orphans.items()):
            if not process_alive(pid):
                del self.orphans[run_id]
                self.finish(run_id, name, None)

    def finish(self, run_id: str, name: str, code: int | None, pid: int | None = None) -> None:
        """Record a run's end and tell the planner (which starts a waiting fire)."""
        row = self.store.run(run_id)
        cancelled = self.cancelled.pop(run_id, None)
        still_owned = row is not None and (pid is None or row.pid == pid)
        if row is not None and row.status == "running" and still_owned:
            # The worker died without recording an end: leave the run resumable, unless it
            # was being cancelled (killed after the grace): then it ends cancelled.
            killed = cancelled is not None
            ending = (
                ("finished", StopReason.CANCELLED)
                if killed
                else ("interrupted", StopReason.INTERRUPTED)
            )
            message = f"its worker exited (code {code}) before the run ended"
            self.store.end_run_left_running(
                run_id, *ending, f"{cancelled}; {message}" if killed else message
            )
            row = self.store.run(run_id)
        lost = "lost" if cancelled is None else "cancelled"
        outcome = (row.stop_reason or row.status) if row else lost
        if row is None and cancelled is None and code is not None:
            # The worker died before recording the run (a spec that no longer compiles).
            # (A Celery worker records the fire failed itself, with its error: code None.)
            self.planner.set_outcome(
                run_id, FireOutcome.FAILED, f"the worker exited (code {code}) before the run began"
            )
        detail = _first_line(row.message) if row is not None and row.message else ""
        log.info("run %s of %s ended: %s%s", run_id, name, outcome, f": {detail}" if detail else "")
        if row is not None and row.stop_reason in (
            StopReason.WAITING_APPROVAL,
            StopReason.WAITING_INPUT,
            StopReason.ESCALATED,
        ):
            self.paused.waiting.add(run_id)  # continued once decided (calls, answer, escalation)
        self.planner.run_ended(name, run_id, outcome)

    # -- main loop ---------------------------------------------------------------------------

    async def tick(self) -> None:
        """One pass: the lease, specs, ended runs; and as the leader, what is due.

        As the leader: start what standbys recorded, fire due crons and watches, refill the
        pool.
        """
        self.lead()  # first: a leader whose lease ran out does nothing below
        if self.rescan_needed:
            self.rescan()
        self.reap()
        leading = self.leadership.leading()
        if leading and not self.stopping:
            self.paused.follow()
            if time.monotonic() >= self.next_pick_up:  # one look a second, however busy
                self.next_pick_up = time.monotonic() + PICK_UP_S
                self.planner.pick_up()
        if leading:
            self.notifications.follow()
            self.planner.due(self.clock())
        self.watching.due_watches(time.monotonic())  # a standby's bursts are dropped
        if leading and not self.stopping:
            self.executor.refill()

    async def sleep_until_due(self) -> None:
        """Sleep until the next due fire, deadline or wake-up event."""
        delays = [IDLE_WAKE_S, self.leadership.until_next_s()]
        if self.paused.waiting or self.notifications.waiting:
            delays.append(DECISION_POLL_S)
        next_slot = self.planner.next_due()
        if self.leadership.leading():
            delays.append(self.next_pick_up - time.monotonic())
            if next_slot is not None:
                delays.append((next_slot - self.clock()).total_seconds())
        deadline = self.watching.next_deadline()
        if deadline is not None:
            delays.append(deadline - time.monotonic())
        if self.executor.running or self.orphans:
            delays.append(1.0)
        delay = max(min(delays), 0.0)
        self.wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout=delay)

    # -- the HTTP server and its operations (runner.web.operations.DaemonOperations) --------

    async def start_http(self, host: str, port: int) -> None:
        """Serve the webhooks, the API and the console on ``host:port`` (uvicorn, this loop).

        Raises:
            SetupError: the address cannot be bound.
        """
        from ..store.location import store_location
        from ..web.app import create_app
        from .http import HttpServer, WebhookRoute, Webhooks

        loop = asyncio.get_running_loop()
        webhooks = Webhooks(
            agents=lambda: self.planner.agents,
            fire=self.fire,
            record_notice=self.store.record_notice,
            stopping=lambda: self.stopping,
        )
        app = create_app(
            store_location(self.home),  # the daemon's own store: AGENTRUN_STORE or runs.db
            self.home,
            daemon=self,
            first_routes=[WebhookRoute(webhooks)],
            public_posts=webhooks.serves,
            # A decision (made on a worker thread of the server) wakes the main loop, which
            # continues the run at once instead of at its next look at the event log.
            on_decision=lambda run_id: self.wake_threadsafe(loop),
        )
        self.http = HttpServer(host, port, self.home, app)
        await self.http.start()


def _first_line(text: str, limit: int = 300) -> str:
    """The first line of a run's message, at most ``limit`` characters, for one log line."""
    lines = text.strip().splitlines()
    line = lines[0] if lines else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def configure_logging(log_format: str) -> None:
    """Readable lines on stderr, or one JSON object per line (``--log-format json``)."""
    handler = logging.StreamHandler()
    if log_format == "json":

        class JsonFormatter(logging.Formatter):
            def format(self, record: logging.LogRecord) -> str:
                return json.dumps(
                    {
                        "at": datetime.fromtimestamp(record.created, UTC).isoformat(
                            timespec="milliseconds"
                        ),
                        "level": record.levelname.lower(),
                        "message": record.getMessage(),
                    }
                )

        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
