"""The scheduler daemon: specs on their triggers, each run in its own worker process.

``agentrun daemon [DIR...]`` runs :class:`Daemon` in the foreground::

    spec folders ──watch──▶ agents (last good version of each spec)
    cron (heap of next fire instants) ─┐
    file-watch (watchdog → filter → debounce) ─┤
    manual (control socket) ─┤──▶ fire ──▶ concurrency policy ──▶ warm worker process ──▶ run store
    webhook (HMAC-verified HTTP) ─┘

Guarantees, and how:

- **One daemon per AGENTRUN_HOME**: an exclusive ``flock`` on ``daemon.lock``.
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
  (:mod:`runner.worker`) that paid the import while idle.

Concurrency policies follow Kubernetes CronJob ``concurrencyPolicy`` (plus ``queue``); the
decision itself is :func:`runner.triggers.concurrency.plan_fire`, applied by :meth:`Daemon.fire`.
``replace`` cancels every active run of the agent (SIGTERM to one holding a worker; one still
waiting for a worker is withdrawn and never starts), drops an older fire that waits, and
starts the new run only when nothing of the agent is active: never two runs at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import heapq
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .control import ControlServer, DaemonError, socket_path
from .errors import SpecError
from .executor import LocalExecutor, SpawnWorker
from .paths import private_dir, private_file
from .processes import process_alive
from .watching import FileWatching
from .webhooks import WebhookListener

if TYPE_CHECKING:
    from .store import RunStore

log = logging.getLogger("agentrun.daemon")

#: Seconds a stopping daemon lets running runs finish before interrupting them.
SHUTDOWN_GRACE_S = 30.0
#: Longest the main loop sleeps when nothing is due, in seconds.
IDLE_WAKE_S = 30.0


def lock_path(home: Path) -> Path:
    """The daemon's lock file in ``home``."""
    return home / "daemon.lock"


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


# ---------------------------------------------------------------------------------------------
# state


@dataclass
class Fire:
    """One trigger firing: what starts, for whom, with which inputs."""

    agent: str
    trigger: str
    trigger_index: int
    run_id: str
    inputs: dict[str, Any] = field(default_factory=dict)
    slot: datetime | None = None
    key: str | None = None


@dataclass
class Agent:
    """One loaded spec and its scheduling state."""

    spec: Any
    path: Path
    mtime: float
    generation: int
    source: bytes = b""
    crons: dict[int, Any] = field(default_factory=dict)
    next_fire: dict[int, datetime] = field(default_factory=dict)
    watches: dict[int, tuple[Any, Any, list[Path]]] = field(default_factory=dict)
    observers: dict[int, Any] = field(default_factory=dict)
    active: set[str] = field(default_factory=set)
    queued: list[Fire] = field(default_factory=list)
    last_outcome: str = ""
    last_event_wall: float = field(default_factory=time.time)

    @property
    def name(self) -> str:
        """The agent's name."""
        return str(self.spec.name)


class Daemon:
    """Keeps agents running on their triggers.

    Args:
        dirs: folders of spec files.
        home: AGENTRUN_HOME.
        pool_size: warm workers kept idle (each holds litellm, about 150 MB).
        webhook: ``(host, port)`` of the webhook listener, or None for none.
        poll: poll watched folders instead of OS notifications.
        shutdown_grace_s: how long running runs may finish when the daemon stops.
        spawn: starts one worker process (the default: ``python -m runner.worker``); tests
            pass a fake (:data:`runner.executor.SpawnWorker`).
        clock: the current time, timezone-aware (UTC); tests pass a fixed one.
    """

    def __init__(
        self,
        dirs: list[Path],
        home: Path,
        pool_size: int = 1,
        webhook: tuple[str, int] | None = None,
        poll: bool = False,
        shutdown_grace_s: float = SHUTDOWN_GRACE_S,
        spawn: SpawnWorker | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        from .store import SQLiteRunStore

        self.dirs = [d.resolve() for d in dirs]
        self.home = home
        self.clock = clock
        self.executor = LocalExecutor(home, pool_size, on_change=self.wake_up, spawn=spawn)
        self.webhook = webhook
        self.poll = poll
        self.shutdown_grace_s = shutdown_grace_s
        self.store: RunStore = SQLiteRunStore(home / "runs.db")
        self.agents: dict[str, Agent] = {}
        self.by_path: dict[Path, str] = {}
        self.errors: dict[Path, str] = {}
        self.orphans: dict[str, tuple[str, int]] = {}
        # Runs handed to the executor that wait for a worker: cancelling the task withdraws them.
        self.starting: dict[str, asyncio.Task[None]] = {}
        # Runs sent SIGTERM by a cancel, and why, until they are collected.
        self.cancelled: dict[str, str] = {}
        # Fires recorded before a restart whose runs never began, by agent (see take_over).
        self.recorded: dict[str, list[Fire]] = {}
        self.heap: list[tuple[datetime, int, str, int]] = []
        self.generation = 0
        self.wake = asyncio.Event()
        self.stopping = False
        self.rescan_needed = True
        self.observers: list[Any] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.started_at = clock()
        self._lock_file: Any = None
        self._servers: list[Any] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.control = ControlServer(self)
        self.watching = FileWatching(self)
        self.webhooks = WebhookListener(self) if webhook is not None else None

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
        self.loop = asyncio.get_running_loop()
        self.acquire_lock()
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(signum, self.request_stop)
        try:
            self.store.sweep_interrupted()
            self.watching.start_spec_watcher()
            self.take_over()  # after the watcher starts, so no edit falls between the two
            if self.webhooks is not None:
                await self.webhooks.start()
            await self.control.start()  # last: the socket appearing means the daemon is up
            log.info(
                "daemon started: %d agents from %s; control socket %s",
                len(self.agents),
                ", ".join(map(str, self.dirs)),
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

    def request_stop(self) -> None:
        """Stop firing new runs and begin a graceful shutdown."""
        if not self.stopping:
            log.info(
                "stopping: no new runs; running runs get %.0f s to finish", self.shutdown_grace_s
            )
        self.stopping = True
        self.wake.set()

    async def shutdown(self) -> None:
        """Stop watchers and servers; let runs finish, then interrupt them; release the lock."""
        for observer in self.observers:
            observer.stop()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.cleanup() if hasattr(server, "cleanup") else server.close()
        deadline = time.monotonic() + self.shutdown_grace_s
        while self.executor.running and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            self.reap()
        for run_id in list(self.executor.running):
            log.info("interrupting run %s (resume it with: agentrun resume %s)", run_id, run_id)
            self.executor.interrupt(run_id)
        deadline = time.monotonic() + 10
        while self.executor.running and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            self.reap()
        self.executor.kill_all()
        for task in self.starting.values():
            task.cancel()  # their fires stay recorded as started: the next daemon recovers them
        for observer in self.observers:
            with contextlib.suppress(Exception):
                observer.join(timeout=2)
        with contextlib.suppress(FileNotFoundError):
            socket_path(self.home).unlink()
        self.store.close()
        if self._lock_file is not None:
            self._lock_file.close()
        log.info("daemon stopped")

    # -- specs -------------------------------------------------------------------------------

    def spec_files(self) -> list[Path]:
        """Every spec file in the daemon's folders."""
        files: list[Path] = []
        for folder in self.dirs:
            files.extend(sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]))
        return files

    def rescan(self) -> None:
        """(Re)load changed spec files; an invalid edit keeps the last good version."""
        from .spec import check_spec

        self.rescan_needed = False
        seen: set[Path] = set()
        for path in self.spec_files():
            seen.add(path)
            try:
                mtime = path.stat().st_mtime
            except FileNotFoundError:
                continue
            name = self.by_path.get(path)
            if name is not None and self.agents[name].mtime == mtime:
                continue
            if path in self.errors and self.errors[path].startswith(f"{mtime}:"):
                continue
            try:
                source = path.read_bytes()
                spec, diagnostics = check_spec(path, source)
            except SpecError as error:
                spec, diagnostics = None, error.diagnostics
            except OSError:
                continue  # removed or unreadable mid-scan: the next scan sees it
            if spec is None:
                first = next(d for d in diagnostics if d.severity == "error")
                keeping = " (keeping the last good version)" if name else ""
                self.record_error(path, mtime, first.headline() + keeping)
                continue
            other = self.agents.get(spec.name)
            if other is not None and other.path != path:
                self.record_error(
                    path, mtime, f"{path}: agent name {spec.name!r} is already used by {other.path}"
                )
                continue
            self.errors.pop(path, None)
            if name is not None and name != spec.name:
                self.remove_agent(name)
            self.install(spec, path, mtime, source)
        for path, name in list(self.by_path.items()):
            if path not in seen:
                log.info("spec %s removed: agent %s no longer scheduled", path, name)
                self.remove_agent(name)

    def record_error(self, path: Path, mtime: float, message: str) -> None:
        """Log a located spec error and keep it in the store's notices."""
        self.errors[path] = f"{mtime}:{message}"
        log.error("%s", message)
        self.store.record_notice("error", message, at=self.clock())

    def remove_agent(self, name: str) -> None:
        """Stop scheduling an agent (its running runs go on)."""
        agent = self.agents.pop(name, None)
        if agent is None:
            return
        self.by_path.pop(agent.path, None)
        for index in list(agent.watches):
            self.watching.stop_watch(agent, index)

    def install(self, spec: Any, path: Path, mtime: float, source: bytes) -> None:
        """Schedule a (new or reloaded) spec: cron catch-up and next fires, file watches."""
        from .triggers import CronSchedule, WatchFilter

        old = self.agents.get(spec.name)
        self.generation += 1
        agent = Agent(spec=spec, path=path, mtime=mtime, generation=self.generation, source=source)
        if old is not None:
            agent.active, agent.queued, agent.last_outcome = (
                old.active,
                old.queued,
                old.last_outcome,
            )
            for index in list(old.watches):
                self.watching.stop_watch(old, index)
        self.agents[spec.name] = agent
        self.by_path[path] = spec.name
        # Workers that outlived the previous daemon are this agent's active runs ...
        agent.active |= {run_id for run_id, (name, _) in self.orphans.items() if name == spec.name}
        # ... and its recorded fires that never ran go before the slots it missed.
        self.recover(agent, self.recorded.pop(spec.name, []))
        now = self.clock()
        for trigger in spec.triggers:
            if trigger.kind == "cron" and trigger.cron:
                schedule = CronSchedule(trigger.cron, trigger.timezone)
                agent.crons[trigger.index] = schedule
                self.catch_up(agent, trigger, schedule, now)
                nxt = schedule.next_after(now)
                agent.next_fire[trigger.index] = nxt
                heapq.heappush(self.heap, (nxt, agent.generation, spec.name, trigger.index))
            elif trigger.kind == "watch" and trigger.watch:
                watch = trigger.watch
                filter_ = WatchFilter(watch.patterns, watch.ignore, watch.events)
                roots = [(spec.workdir / p).resolve() for p in watch.paths]
                agent.watches[trigger.index] = (
                    filter_,
                    filter_.debouncer(watch.debounce, watch.max_wait),
                    roots,
                )
                self.watching.start_watch(agent, trigger.index, roots, watch.poll)
        log.info("loaded agent %s from %s (%d triggers)", spec.name, path, len(spec.triggers))

    # -- cron --------------------------------------------------------------------------------

    def cursor_key(self, trigger: Any) -> str:
        """The cursor's key: a changed expression or zone starts a fresh cursor."""
        return f"{trigger.index}:{trigger.cron}:{trigger.timezone}"

    def catch_up(self, agent: Agent, trigger: Any, schedule: Any, now: datetime) -> None:
        """Handle the slots between the trigger's persisted cursor and now."""
        from .triggers import missed_slots

        key = self.cursor_key(trigger)
        cursor = self.store.cron_cursor(agent.name, key)
        if cursor is None:
            self.set_cursor(agent.name, key, now)
            return
        chosen = missed_slots(schedule, cursor, now, trigger.catchup, trigger.catchup_max)
        # Bound the record of missed slots: a year of minutely slots is not useful.
        window_start = max(cursor, now - timedelta(days=7))
        for slot in schedule.slots_between(window_start, now):
            if slot not in chosen:
                self.record_fire(
                    Fire(
                        agent.name,
                        "cron",
                        trigger.index,
                        self.slot_id(agent, trigger, slot),
                        slot=slot,
                    ),
                    "missed",
                    f"the daemon was not running at {_iso(slot)} (catchup: {trigger.catchup})",
                )
        for slot in chosen:
            self.fire(
                Fire(
                    agent.name, "cron", trigger.index, self.slot_id(agent, trigger, slot), slot=slot
                ),
                catching_up=True,
            )
        self.set_cursor(agent.name, key, now)

    def slot_id(self, agent: Agent, trigger: Any, slot: datetime) -> str:
        """The deterministic run id of one cron slot."""
        from .triggers import slot_run_id

        return slot_run_id(agent.name, trigger.index, slot)

    def set_cursor(self, agent: str, key: str, moment: datetime) -> None:
        """Persist that every slot at or before ``moment`` was handled."""
        self.store.set_cron_cursor(agent, key, moment)

    def due_crons(self, now: datetime) -> None:
        """Fire every cron slot that is due, each once, and schedule the next."""
        while self.heap and self.heap[0][0] <= now:
            instant, generation, name, index = heapq.heappop(self.heap)
            agent = self.agents.get(name)
            if agent is None or agent.generation != generation:
                continue  # a reloaded or removed spec: its new entries are in the heap
            trigger = agent.spec.triggers[index]
            schedule = agent.crons[index]
            if not self.stopping:
                self.fire(
                    Fire(name, "cron", index, self.slot_id(agent, trigger, instant), slot=instant)
                )
            self.set_cursor(name, self.cursor_key(trigger), instant)
            nxt = schedule.next_after(instant)
            agent.next_fire[index] = nxt
            heapq.heappush(self.heap, (nxt, generation, name, index))

    # -- firing ------------------------------------------------------------------------------

    def record_fire(self, fire: Fire, outcome: str, reason: str = "") -> bool:
        """Write the fire's row; False when its slot or key was already handled."""
        from .store import FireRow

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

    def set_outcome(self, run_id: str, outcome: str, reason: str = "") -> None:
        """Update a recorded fire's outcome."""
        self.store.set_fire_outcome(run_id, outcome, reason)

    def fire(self, fire: Fire, catching_up: bool = False) -> str:
        """Apply the agent's concurrency policy to a fire; the outcome recorded.

        Returns what became of it: ``started``, ``queued``, ``skipped``, or ``duplicate``
        (its slot or idempotency key was already handled: nothing done). A ``replace`` fire
        is recorded ``queued`` until the runs it replaces are gone, then ``started``.
        """
        from .triggers.concurrency import FireDecision, plan_fire

        agent = self.agents[fire.agent]
        plan = plan_fire(agent.spec.concurrency, agent.active, [q.run_id for q in agent.queued])
        why = " (catch-up)" if catching_up else ""
        if plan.decision is FireDecision.SKIP:
            reason = f"a run of {agent.name} is active (concurrency: {agent.spec.concurrency})"
            self.record_fire(fire, "skipped", reason)
            log.info("skipped %s fire of %s: %s", fire.trigger, agent.name, reason)
            return "skipped"
        if plan.decision is FireDecision.QUEUE:
            if not self.record_fire(fire, "queued", "waiting for the active run" + why):
                return "duplicate"
            agent.queued.append(fire)
            log.info("queued %s fire of %s as run %s", fire.trigger, agent.name, fire.run_id)
            return "queued"
        if plan.decision is FireDecision.START:
            if not self.record_fire(fire, "started", fire.trigger + why):
                return "duplicate"
            self.dispatch(fire)
            return "started"
        replaced = ", ".join([*plan.cancel, *plan.drop])
        if not self.record_fire(fire, "queued", f"replacing {replaced}{why}"):
            return "duplicate"  # before anything is cancelled: a duplicate replaces nothing
        reason = f"replaced by run {fire.run_id}"
        for run_id in plan.cancel:
            self.cancel(run_id, reason)
        for run_id in plan.drop:
            agent.queued = [q for q in agent.queued if q.run_id != run_id]
            self.set_outcome(run_id, "cancelled", reason + " while it waited")
            log.info("dropped waiting run %s of %s: %s", run_id, agent.name, reason)
        agent.queued.append(fire)
        if self.start_waiting(agent, f"{fire.trigger}{why}, replacing {replaced}"):
            return "started"
        log.info(
            "run %s of %s waits for %s to exit", fire.run_id, agent.name, ", ".join(plan.cancel)
        )
        return "queued"

    def start_waiting(self, agent: Agent, reason: str = "dequeued") -> bool:
        """Start the agent's waiting fire if nothing of it is active any more; True if started.

        The rule is :func:`runner.triggers.start_queued`; nothing starts while the daemon stops
        (the fire stays recorded as queued, and the next daemon recovers it).
        """
        from .triggers.concurrency import start_queued

        if self.stopping or not start_queued(len(agent.active), len(agent.queued)):
            return False
        fire = agent.queued.pop(0)
        self.set_outcome(fire.run_id, "started", reason)
        self.dispatch(fire)
        return True

    def dispatch(self, fire: Fire) -> None:
        """Hand a started fire to a worker (asynchronously): it is active from now on."""
        agent = self.agents[fire.agent]
        agent.active.add(fire.run_id)
        task = asyncio.get_running_loop().create_task(self.start_run(agent, fire))
        self.starting[fire.run_id] = task
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda done: self.handed_over(fire.run_id, done))

    async def start_run(self, agent: Agent, fire: Fire) -> None:
        """Hand the job to the executor (a warm worker process)."""
        job = {
            "run_id": fire.run_id,
            "spec_path": str(agent.path),
            # The last good version: a broken edit on disk does not break scheduled runs.
            "spec_source": agent.source.decode("utf-8"),
            "inputs": fire.inputs,
            "trigger": fire.trigger,
        }
        await self.executor.start(job, agent.name, agent.spec.budgets.max_duration)
        log.info("started run %s of %s (%s)", fire.run_id, agent.name, fire.trigger)

    def handed_over(self, run_id: str, task: asyncio.Task[None]) -> None:
        """A start task ended: the run has a worker, was withdrawn, or could not start."""
        if self.starting.get(run_id) is task:
            del self.starting[run_id]
        if task.cancelled() or task.exception() is None or run_id in self.executor.running:
            return
        log.error("run %s could not be handed to a worker: %r", run_id, task.exception())
        self.set_outcome(
            run_id, "failed", f"it could not be handed to a worker: {task.exception()}"
        )
        for agent in self.agents.values():
            if run_id in agent.active:
                agent.active.discard(run_id)
                self.start_waiting(agent)

    def cancel(self, run_id: str, reason: str) -> None:
        """Cancel an active run; its fire is recorded as ``cancelled`` with ``reason``.

        A run holding a worker is sent SIGTERM (stop reason ``cancelled``; it stays active
        until its worker exits, killed after :data:`runner.executor.CANCEL_GRACE_S`). A run
        still waiting for a worker is withdrawn: it never
        starts and is no longer active. A run this daemon did not start (a worker adopted from
        a previous daemon) is not signalled: it ends by itself, and what waits for it waits.
        """
        if run_id in self.cancelled:
            return  # already sent SIGTERM
        if run_id in self.executor.running:
            if self.executor.cancel(run_id):
                self.cancelled[run_id] = reason
                self.set_outcome(run_id, "cancelled", reason)
                log.info("cancelling run %s: %s", run_id, reason)
            # else its worker has just exited: collected with the outcome it recorded
            return
        task = self.starting.pop(run_id, None)
        if task is not None:
            task.cancel()
            self.set_outcome(run_id, "cancelled", reason + " before it had a worker")
            for agent in self.agents.values():
                agent.active.discard(run_id)
            log.info("withdrew run %s before it had a worker: %s", run_id, reason)
            return
        log.info(
            "run %s is not one of this daemon's workers; it is left to end (%s)", run_id, reason
        )

    def reap(self) -> None:
        """Collect finished runs: their outcomes, then queued fires."""
        for run_id, agent, code, pid in self.executor.collect():
            self.finish(run_id, agent, code, pid)
        for run_id, (name, pid) in list(self.orphans.items()):
            if not process_alive(pid):
                del self.orphans[run_id]
                self.finish(run_id, name, None)

    def finish(self, run_id: str, name: str, code: int | None, pid: int | None = None) -> None:
        """Record a run's end in the daemon's state and start a queued fire."""
        row = self.store.run(run_id)
        cancelled = self.cancelled.pop(run_id, None)
        still_owned = row is not None and (pid is None or row.pid == pid)
        if row is not None and row.status == "running" and still_owned:
            # The worker died without recording an end: leave the run resumable, unless it
            # was being cancelled (killed after the grace): then it ends cancelled.
            killed = cancelled is not None
            ending = ("finished", "cancelled") if killed else ("interrupted", "interrupted")
            message = f"its worker exited (code {code}) before the run ended"
            self.store.end_run_left_running(
                run_id, *ending, f"{cancelled}; {message}" if killed else message
            )
            row = self.store.run(run_id)
        lost = "lost" if cancelled is None else "cancelled"
        outcome = (row.stop_reason or row.status) if row else lost
        if row is None and cancelled is None:
            # The worker died before recording the run (a spec that no longer compiles).
            self.set_outcome(
                run_id, "failed", f"the worker exited (code {code}) before the run began"
            )
        agent = self.agents.get(name)
        log.info("run %s of %s ended: %s", run_id, name, outcome)
        if agent is None:
            return
        agent.active.discard(run_id)
        agent.last_outcome = f"{outcome} ({run_id})"
        self.start_waiting(agent)

    # -- restart safety ----------------------------------------------------------------------

    def take_over(self) -> None:
        """What a (re)started daemon does before it serves, in this order.

        1. Adopt the runs whose workers outlived the previous daemon (:meth:`adopt_orphans`).
        2. Read the fires it recorded whose runs never began (:meth:`recorded_fires`).
        3. Load the specs; for each agent, as it is installed, its adopted runs become active,
           its recorded fires are recovered under its concurrency policy (:meth:`recover`),
           and only then are the slots it missed caught up (:meth:`catch_up`): a catch-up
           fire sees the recovered runs, and is itself recorded only after the recorded
           fires were read, so it is never recovered (dispatched a second time) as well.
        """
        self.adopt_orphans()
        self.recorded = self.recorded_fires()
        self.rescan()

    def adopt_orphans(self) -> None:
        """Watch runs whose workers outlived a previous daemon, to their end."""
        for row in self.store.running_runs():
            self.orphans[row.id] = (row.agent, int(row.pid or 0))
            agent = self.agents.get(row.agent)
            if agent is not None:
                agent.active.add(row.id)
            log.info("adopted run %s of %s (pid %s)", row.id, row.agent, row.pid)

    def recorded_fires(self) -> dict[str, list[Fire]]:
        """Fires recorded as started or queued whose runs never began, by agent, oldest first."""
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

    def recover(self, agent: Agent, fires: list[Fire]) -> None:
        """Start, queue, skip or drop an agent's recovered fires by its concurrency policy.

        The rule is :func:`runner.triggers.concurrency.plan_recovery` (``allow``: all start;
        ``forbid``: the oldest; ``queue``: the oldest, and one waits; ``replace``: only the
        newest). Fires already active or waiting in this daemon are left alone.
        """
        from .triggers.concurrency import plan_recovery

        known = agent.active | {q.run_id for q in agent.queued}
        by_id = {f.run_id: f for f in fires if f.run_id not in known}
        if not by_id:
            return
        policy = agent.spec.concurrency
        plan = plan_recovery(policy, agent.active, by_id)
        newest = max([*agent.active, *by_id])
        after = "recovered after a restart"
        for run_id in plan.skip:
            self.set_outcome(
                run_id,
                "skipped",
                f"{after}: a run of {agent.name} is active or waiting (concurrency: {policy})",
            )
        for run_id in plan.drop:
            self.set_outcome(run_id, "cancelled", f"{after}: replaced by run {newest}")
        for run_id in plan.cancel:
            self.cancel(run_id, f"replaced by run {newest}, {after}")
        for run_id in plan.queue:
            self.set_outcome(run_id, "queued", f"{after}: waiting for the active run")
            agent.queued.append(by_id[run_id])
        for run_id in plan.start:
            self.set_outcome(run_id, "started", after)
            log.info("starting recorded fire %s of %s (%s)", run_id, agent.name, after)
            self.dispatch(by_id[run_id])
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

    # -- main loop ---------------------------------------------------------------------------

    async def tick(self) -> None:
        """One pass: reload specs, reap runs, fire due crons and watches, refill the pool."""
        if self.rescan_needed:
            self.rescan()
        self.reap()
        self.due_crons(self.clock())
        self.watching.due_watches(time.monotonic())
        if not self.stopping:
            self.executor.refill()

    async def sleep_until_due(self) -> None:
        """Sleep until the next due fire, deadline or wake-up event."""
        delays = [IDLE_WAKE_S]
        if self.heap:
            delays.append((self.heap[0][0] - self.clock()).total_seconds())
        now = time.monotonic()
        for agent in self.agents.values():
            for _, debouncer, _ in agent.watches.values():
                deadline = debouncer.next_deadline()
                if deadline is not None:
                    delays.append(deadline - now)
        if self.executor.running or self.orphans:
            delays.append(1.0)
        delay = max(min(delays), 0.0)
        self.wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout=delay)


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
