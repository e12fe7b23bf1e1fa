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
  are adopted and watched to their end.
- **Failures are failures**: a run's outcome is its recorded stop reason; a worker that dies
  without one leaves the run ``interrupted`` (resumable).
- **The daemon never imports litellm**: runs execute in pre-warmed worker processes
  (:mod:`runner.worker`) that paid the import while idle.

Concurrency policies follow Kubernetes CronJob ``concurrencyPolicy`` (plus ``queue``); the
decision itself is :func:`runner.triggers.on_fire`.
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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .control import ControlServer, DaemonError, socket_path
from .errors import SpecError
from .executor import LocalExecutor
from .processes import process_alive
from .watching import FileWatching
from .webhooks import WebhookListener

log = logging.getLogger("agentrun.daemon")

#: Seconds a stopping daemon lets running runs finish before interrupting them.
SHUTDOWN_GRACE_S = 30.0
#: Seconds past ``max_duration`` after which a run's worker is killed outright.
KILL_GRACE_S = 30.0
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
    """

    def __init__(
        self,
        dirs: list[Path],
        home: Path,
        pool_size: int = 1,
        webhook: tuple[str, int] | None = None,
        poll: bool = False,
        shutdown_grace_s: float = SHUTDOWN_GRACE_S,
    ) -> None:
        from .store import RunStore

        self.dirs = [d.resolve() for d in dirs]
        self.home = home
        self.executor = LocalExecutor(home, pool_size, on_change=self.wake_up)
        self.webhook = webhook
        self.poll = poll
        self.shutdown_grace_s = shutdown_grace_s
        self.store = RunStore(home / "runs.db")
        self.agents: dict[str, Agent] = {}
        self.by_path: dict[Path, str] = {}
        self.errors: dict[Path, str] = {}
        self.orphans: dict[str, tuple[str, int]] = {}
        self.heap: list[tuple[datetime, int, str, int]] = []
        self.generation = 0
        self.wake = asyncio.Event()
        self.stopping = False
        self.rescan_needed = True
        self.observers: list[Any] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.started_at = _now()
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
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        handle = lock_path(self.home).open("a+")
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
            self.rescan()  # after the watcher starts, so no edit falls between the two
            self.adopt_orphans()
            if self.webhooks is not None:
                await self.webhooks.start()
            await self.control.start()  # last: the socket appearing means the daemon is up
            log.info(
                "daemon started: %d agents from %s; control socket %s",
                len(self.agents),
                ", ".join(map(str, self.dirs)),
                socket_path(self.home),
            )
            await self.redispatch_recorded()
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
        self.store.db.execute(
            "INSERT INTO notices (at, level, agent, message) VALUES (?, 'error', NULL, ?)",
            (_iso(_now()), message),
        )

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
        now = _now()
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
        row = self.store.db.execute(
            "SELECT cursor FROM cron_cursors WHERE agent = ? AND trigger_key = ?",
            (agent.name, key),
        ).fetchone()
        if row is None:
            self.set_cursor(agent.name, key, now)
            return
        cursor = datetime.fromisoformat(row[0])
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
        self.store.db.execute(
            "INSERT OR REPLACE INTO cron_cursors (agent, trigger_key, cursor) VALUES (?, ?, ?)",
            (agent, key, _iso(moment)),
        )

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
        cursor = self.store.db.execute(
            """INSERT OR IGNORE INTO fires (agent, trigger, trigger_index, slot, run_id, outcome,
               reason, idempotency_key, inputs_json, created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                fire.agent,
                fire.trigger,
                fire.trigger_index,
                _iso(fire.slot) if fire.slot else None,
                fire.run_id,
                outcome,
                reason,
                fire.key,
                json.dumps(fire.inputs),
                _iso(_now()),
            ),
        )
        return cursor.rowcount == 1

    def set_outcome(self, run_id: str, outcome: str, reason: str = "") -> None:
        """Update a recorded fire's outcome."""
        self.store.db.execute(
            "UPDATE fires SET outcome = ?, reason = ? WHERE run_id = ?", (outcome, reason, run_id)
        )

    def fire(self, fire: Fire, catching_up: bool = False) -> str:
        """Apply the agent's concurrency policy to a fire; the outcome recorded."""
        from .triggers import FireDecision, on_fire

        agent = self.agents[fire.agent]
        decision = on_fire(agent.spec.concurrency, len(agent.active), len(agent.queued))
        why = " (catch-up)" if catching_up else ""
        if decision is FireDecision.SKIP:
            reason = f"a run of {agent.name} is active (concurrency: {agent.spec.concurrency})"
            self.record_fire(fire, "skipped", reason)
            log.info("skipped %s fire of %s: %s", fire.trigger, agent.name, reason)
            return "skipped"
        if decision is FireDecision.QUEUE:
            if not self.record_fire(fire, "queued", "waiting for the active run" + why):
                return "duplicate"
            agent.queued.append(fire)
            log.info("queued %s fire of %s as run %s", fire.trigger, agent.name, fire.run_id)
            return "queued"
        if not self.record_fire(fire, "started", fire.trigger + why):
            return "duplicate"
        if decision is FireDecision.REPLACE:
            for run_id in list(agent.active):
                self.cancel(run_id, f"replaced by run {fire.run_id}")
        self.dispatch(fire)
        return "started"

    def dispatch(self, fire: Fire) -> None:
        """Hand a started fire to a worker (asynchronously)."""
        agent = self.agents[fire.agent]
        agent.active.add(fire.run_id)
        task = asyncio.get_running_loop().create_task(self.start_run(agent, fire))
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)

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

    def cancel(self, run_id: str, reason: str) -> None:
        """Cancel a running run (stop reason ``cancelled``)."""
        log.info("cancelling run %s: %s", run_id, reason)
        self.executor.cancel(run_id)

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
        still_owned = row is not None and (pid is None or row.pid == pid)
        if row is not None and row.status == "running" and still_owned:
            # The worker died without recording an end: leave the run resumable.
            self.store.db.execute(
                """UPDATE runs SET status = 'interrupted', stop_reason = 'interrupted',
                   message = ? WHERE id = ? AND status = 'running'""",
                (f"its worker exited (code {code}) before the run ended", run_id),
            )
            row = self.store.run(run_id)
        outcome = (row.stop_reason or row.status) if row else "lost"
        if row is None:
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
        from .triggers import start_queued

        if (
            agent.queued
            and start_queued(len(agent.active), len(agent.queued))
            and not self.stopping
        ):
            fire = agent.queued.pop(0)
            self.set_outcome(fire.run_id, "started", "dequeued")
            self.dispatch(fire)

    # -- restart safety ----------------------------------------------------------------------

    def adopt_orphans(self) -> None:
        """Watch runs whose workers outlived a previous daemon, to their end."""
        rows = self.store.db.execute(
            "SELECT id, agent, pid FROM runs WHERE status = 'running'"
        ).fetchall()
        for row in rows:
            self.orphans[row["id"]] = (row["agent"], int(row["pid"] or 0))
            agent = self.agents.get(row["agent"])
            if agent is not None:
                agent.active.add(row["id"])
            log.info("adopted run %s of %s (pid %s)", row["id"], row["agent"], row["pid"])

    async def redispatch_recorded(self) -> None:
        """Start fires that were recorded but whose runs never began (the daemon died)."""
        rows = self.store.db.execute(
            """SELECT * FROM fires WHERE outcome IN ('started', 'queued') AND run_id IS NOT NULL
               AND run_id NOT IN (SELECT id FROM runs) ORDER BY id"""
        ).fetchall()
        for row in rows:
            agent = self.agents.get(row["agent"])
            if agent is None:
                continue
            fire = Fire(
                row["agent"],
                row["trigger"],
                row["trigger_index"],
                row["run_id"],
                json.loads(row["inputs_json"]),
                datetime.fromisoformat(row["slot"]) if row["slot"] else None,
                row["idempotency_key"],
            )
            if row["outcome"] == "queued" or agent.active:
                if all(q.run_id != fire.run_id for q in agent.queued):
                    agent.queued.append(fire)
                continue
            log.info(
                "starting recorded fire %s of %s (the daemon stopped before it)",
                fire.run_id,
                agent.name,
            )
            self.dispatch(fire)

    # -- main loop ---------------------------------------------------------------------------

    async def tick(self) -> None:
        """One pass: reload specs, reap runs, fire due crons and watches, refill the pool."""
        if self.rescan_needed:
            self.rescan()
        self.reap()
        self.due_crons(_now())
        self.watching.due_watches(time.monotonic())
        if not self.stopping:
            self.executor.refill()

    async def sleep_until_due(self) -> None:
        """Sleep until the next due fire, deadline or wake-up event."""
        delays = [IDLE_WAKE_S]
        if self.heap:
            delays.append((self.heap[0][0] - _now()).total_seconds())
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
