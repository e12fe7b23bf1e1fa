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
import socket
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .errors import AgentrunError, SpecError, UsageError

log = logging.getLogger("agentrun.daemon")

#: Seconds a stopping daemon lets running runs finish before interrupting them.
SHUTDOWN_GRACE_S = 30.0
#: Seconds past ``max_duration`` after which a run's worker is killed outright.
KILL_GRACE_S = 30.0
#: Longest the main loop sleeps when nothing is due, in seconds.
IDLE_WAKE_S = 30.0


class DaemonError(AgentrunError):
    """The daemon cannot start (another one holds the lock) or cannot be reached."""


def lock_path(home: Path) -> Path:
    """The daemon's lock file in ``home``."""
    return home / "daemon.lock"


def socket_path(home: Path) -> Path:
    """The daemon's control socket in ``home`` (owner-only permissions)."""
    return home / "daemon.sock"


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


# ---------------------------------------------------------------------------------------------
# control client (used by the CLI; no asyncio, no heavy imports)


def control_request(home: Path, request: dict[str, Any], timeout_s: float = 10.0) -> dict[str, Any]:
    """Send one request to the running daemon and return its answer.

    Raises:
        DaemonError: no daemon is running for ``home``, or it did not answer.
    """
    path = socket_path(home)
    if not path.exists():
        raise DaemonError(
            f"no daemon is running for AGENTRUN_HOME={home}; start one with: agentrun daemon DIR"
        )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout_s)
        try:
            client.connect(str(path))
            client.sendall((json.dumps(request) + "\n").encode())
            data = b""
            while not data.endswith(b"\n"):
                chunk = client.recv(65536)
                if not chunk:
                    break
                data += chunk
        except (ConnectionRefusedError, FileNotFoundError):
            raise DaemonError(
                f"no daemon is running for AGENTRUN_HOME={home} (stale socket); "
                "start one with: agentrun daemon DIR"
            ) from None
        except TimeoutError:
            raise DaemonError(f"the daemon did not answer within {timeout_s:g} s") from None
    if not data:
        raise DaemonError("the daemon closed the connection without an answer")
    answer: dict[str, Any] = json.loads(data)
    if "error" in answer:
        raise UsageError(str(answer["error"]))
    return answer


# ---------------------------------------------------------------------------------------------
# state


@dataclass
class Worker:
    """A warm worker process, idle or running one run."""

    process: asyncio.subprocess.Process
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    run_id: str | None = None
    agent: str | None = None
    started: float = 0.0
    deadline: float | None = None


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
        self.pool_size = max(pool_size, 0)
        self.webhook = webhook
        self.poll = poll
        self.shutdown_grace_s = shutdown_grace_s
        self.store = RunStore(home / "runs.db")
        self.agents: dict[str, Agent] = {}
        self.by_path: dict[Path, str] = {}
        self.errors: dict[Path, str] = {}
        self.workers: list[Worker] = []
        self.running: dict[str, Worker] = {}
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
        self._replay: Any = None

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
            self.rescan()
            self.adopt_orphans()
            await self.start_control_server()
            if self.webhook is not None:
                await self.start_webhook_server()
            self.start_spec_watcher()
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
        while self.running and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            self.reap()
        for run_id, worker in list(self.running.items()):
            log.info("interrupting run %s (resume it with: agentrun resume %s)", run_id, run_id)
            with contextlib.suppress(ProcessLookupError):
                worker.process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while self.running and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            self.reap()
        for worker in [*self.workers, *self.running.values()]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.process.pid, signal.SIGKILL)
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
            self.stop_watch(agent, index)

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
                self.stop_watch(old, index)
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
                self.start_watch(agent, trigger.index, roots, watch.poll)
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
        assert self.loop is not None
        self.loop.create_task(self.start_run(agent, fire))

    async def start_run(self, agent: Agent, fire: Fire) -> None:
        """Send the job to a warm worker."""
        worker = await self.take_worker()
        worker.run_id, worker.agent = fire.run_id, agent.name
        worker.started = time.monotonic()
        limit = agent.spec.budgets.max_duration
        worker.deadline = worker.started + limit + KILL_GRACE_S if limit else None
        self.running[fire.run_id] = worker
        job = {
            "run_id": fire.run_id,
            "spec_path": str(agent.path),
            # The last good version: a broken edit on disk does not break scheduled runs.
            "spec_source": agent.source.decode("utf-8"),
            "inputs": fire.inputs,
            "trigger": fire.trigger,
        }
        assert worker.process.stdin is not None
        worker.process.stdin.write((json.dumps(job) + "\n").encode())
        await worker.process.stdin.drain()
        log.info("started run %s of %s (%s)", fire.run_id, agent.name, fire.trigger)
        self.refill_pool()

    def cancel(self, run_id: str, reason: str) -> None:
        """Cancel a running run (SIGTERM to its worker: stop reason ``cancelled``)."""
        worker = self.running.get(run_id)
        log.info("cancelling run %s: %s", run_id, reason)
        if worker is not None:
            with contextlib.suppress(ProcessLookupError):
                worker.process.send_signal(signal.SIGTERM)

    # -- workers -----------------------------------------------------------------------------

    async def spawn_worker(self) -> Worker:
        """Start a worker process; it warms up (imports litellm) in the background."""
        log_dir = self.home / "logs"
        log_dir.mkdir(exist_ok=True)
        stderr = (log_dir / "workers.log").open("ab")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "runner.worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
        )
        stderr.close()
        worker = Worker(process)
        assert self.loop is not None
        self.loop.create_task(self.watch_worker(worker))
        return worker

    async def watch_worker(self, worker: Worker) -> None:
        """Follow a worker's reports until it exits."""
        assert worker.process.stdout is not None
        while True:
            line = await worker.process.stdout.readline()
            if not line:
                break
            with contextlib.suppress(json.JSONDecodeError):
                message = json.loads(line)
                if message.get("ready"):
                    worker.ready.set()
        await worker.process.wait()
        worker.ready.set()
        self.wake.set()

    def refill_pool(self) -> None:
        """Keep ``pool_size`` warm idle workers."""
        idle = [w for w in self.workers if w.run_id is None and w.process.returncode is None]
        if self.stopping:
            return
        assert self.loop is not None
        for _ in range(self.pool_size - len(idle)):
            self.loop.create_task(self.add_idle_worker())

    async def add_idle_worker(self) -> None:
        """Add one warm worker to the pool."""
        worker = await self.spawn_worker()
        self.workers.append(worker)

    async def take_worker(self) -> Worker:
        """A ready worker from the pool (started on demand when none is idle)."""
        while True:
            idle = [w for w in self.workers if w.run_id is None and w.process.returncode is None]
            ready = [w for w in idle if w.ready.is_set()]
            worker = ready[0] if ready else (idle[0] if idle else None)
            if worker is None:
                worker = await self.spawn_worker()
                self.workers.append(worker)
            worker.run_id = "reserved"
            await worker.ready.wait()
            if worker.process.returncode is None:
                self.workers.remove(worker)
                return worker
            self.workers.remove(worker)  # died while warming up: take another

    def reap(self) -> None:
        """Collect finished runs: their outcomes, queued fires, killed stragglers."""
        for run_id, worker in list(self.running.items()):
            if worker.process.returncode is None:
                if worker.deadline is not None and time.monotonic() > worker.deadline:
                    log.error("run %s passed max_duration; killing its worker", run_id)
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(worker.process.pid, signal.SIGKILL)
                continue
            del self.running[run_id]
            self.finish(run_id, worker.agent or "", worker.process.returncode, worker.process.pid)
        for run_id, (name, pid) in list(self.orphans.items()):
            from .store import _alive

            if not _alive(pid):
                del self.orphans[run_id]
                self.finish(run_id, name, None)
        self.workers = [w for w in self.workers if w.process.returncode is None]

    def finish(self, run_id: str, name: str, code: int | None, pid: int | None = None) -> None:
        """Record a run's end in the daemon's state and start a queued fire."""
        row = self.store.run(run_id)
        owner = self.store.db.execute("SELECT pid FROM runs WHERE id = ?", (run_id,)).fetchone()
        still_owned = owner is not None and (pid is None or owner[0] == pid)
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
        self.due_watches(time.monotonic())
        self.refill_pool()

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
        if self.running or self.orphans:
            delays.append(1.0)
        delay = max(min(delays), 0.0)
        self.wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout=delay)

    # -- file watching -----------------------------------------------------------------------

    def _observer(self, poll: bool) -> Any:
        if poll:
            from watchdog.observers.polling import PollingObserver

            return PollingObserver(timeout=1)
        from watchdog.observers import Observer

        return Observer()

    def start_spec_watcher(self) -> None:
        """Reload specs when their folders change."""
        from watchdog.events import FileSystemEventHandler

        daemon = self

        class SpecChanged(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                assert daemon.loop is not None
                daemon.loop.call_soon_threadsafe(daemon.spec_changed)

        observer = self._observer(self.poll)
        for folder in self.dirs:
            observer.schedule(SpecChanged(), str(folder), recursive=False)
        observer.start()
        self.observers.append(observer)

    def spec_changed(self) -> None:
        """A spec folder changed: rescan on the next tick."""
        self.rescan_needed = True
        self.wake.set()

    def start_watch(self, agent: Agent, index: int, roots: list[Path], poll: bool) -> None:
        """Watch one trigger's folders with watchdog."""
        from watchdog.events import FileSystemEventHandler

        daemon = self
        name, generation = agent.name, agent.generation

        class Changed(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                assert daemon.loop is not None
                daemon.loop.call_soon_threadsafe(
                    daemon.on_watch_event, name, generation, index, event
                )

        observer = self._observer(poll or self.poll)
        for root in roots:
            if root.is_dir():
                observer.schedule(Changed(), str(root), recursive=True)
            else:
                log.error("agent %s watches %s, which is not a folder", name, root)
        observer.start()
        self.observers.append(observer)
        agent.observers[index] = observer

    def stop_watch(self, agent: Agent, index: int) -> None:
        """Stop watching one trigger's folders."""
        observer = agent.observers.pop(index, None)
        if observer is not None:
            observer.stop()

    def is_own_write(self, agent: Agent, path: str) -> bool:
        """Whether ``path`` was last changed by the agent's own run (through its file tools).

        Checked when a burst fires, not per raw event: by then the run's journal entry is in
        the store. The file must not have changed after the run's write, so a person's edit
        to the same file right after still triggers.
        """
        rows = self.store.db.execute(
            """SELECT t.arguments, t.created_at, t.duration_s FROM tool_calls t
               JOIN runs r ON r.id = t.run_id
               WHERE r.agent = ? AND t.tool IN ('write_file', 'edit_file')
               AND t.created_at >= ?""",
            (agent.name, _iso(_now() - timedelta(minutes=10))),
        ).fetchall()
        try:
            modified = os.stat(path).st_mtime
        except OSError:
            modified = None
        for row in rows:
            try:
                written = (agent.spec.workdir / json.loads(row[0])["path"]).resolve()
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
            if str(written) != path:
                continue
            done = datetime.fromisoformat(row[1]).timestamp() + float(row[2] or 0) + 1.0
            if modified is None or modified <= done:
                return True
        return False

    def on_watch_event(self, name: str, generation: int, index: int, event: Any) -> None:
        """A raw file event: filter it and feed the trigger's debouncer."""
        from .triggers import from_watchdog

        agent = self.agents.get(name)
        if agent is None or agent.generation != generation or index not in agent.watches:
            return
        filter_, debouncer, roots = agent.watches[index]
        ours = from_watchdog(event)
        if ours is None:
            return
        now = time.monotonic()
        for root in roots:
            for relative, change in filter_.accept(ours, str(root)):
                debouncer.add(str(root / relative), change, now)
        self.wake.set()

    def due_watches(self, now: float) -> None:
        """Fire every debounced burst that is due (changed paths as ``changed_paths``).

        Paths the agent's own run wrote are dropped; a burst of only those fires nothing.
        """
        from .store import new_run_id

        for agent in list(self.agents.values()):
            for index, (_, debouncer, _) in agent.watches.items():
                while (paths := debouncer.due(now)) is not None:
                    changed = [p for p in paths if not self.is_own_write(agent, p)]
                    if not changed or self.stopping:
                        continue
                    inputs: dict[str, Any] = {}
                    if "changed_paths" in agent.spec.inputs:
                        inputs["changed_paths"] = [
                            os.path.relpath(p, agent.spec.workdir) for p in changed
                        ]
                    self.fire(Fire(agent.name, "watch", index, new_run_id(), inputs))

    # -- control socket ----------------------------------------------------------------------

    async def start_control_server(self) -> None:
        """Listen on the owner-only control socket."""
        path = socket_path(self.home)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a stale socket: the lock proves no daemon owns it
        old = os.umask(0o177)
        try:
            server = await asyncio.start_unix_server(self.handle_control, path=str(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        self._servers.append(server)

    async def handle_control(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """One request line in, one answer line out."""
        try:
            line = await reader.readline()
            request = json.loads(line or b"{}")
            answer = self.control(request)
        except (UsageError, ValueError, KeyError) as error:
            answer = {"error": str(error)}
        writer.write((json.dumps(answer) + "\n").encode())
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    def control(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one control request (``status``, ``trigger``, ``stop``)."""
        op = request.get("op")
        if op == "status":
            return self.status()
        if op == "stop":
            self.request_stop()
            return {"stopping": True, "running": sorted(self.running)}
        if op == "trigger":
            return self.manual(request)
        raise UsageError(f"unknown control request {op!r}")

    def manual(self, request: dict[str, Any]) -> dict[str, Any]:
        """A manual trigger; a key seen before returns the run it started."""
        from .compiler import coerce_inputs
        from .store import new_run_id

        name = str(request.get("agent"))
        agent = self.agents.get(name)
        if agent is None:
            known = ", ".join(sorted(self.agents)) or "none"
            raise UsageError(f"no agent named {name!r} in the daemon; agents: {known}")
        manual = [t for t in agent.spec.triggers if t.kind == "manual" and t.manual]
        if not manual:
            raise UsageError(f"agent {name!r} has no manual trigger (add '- manual: true')")
        if self.stopping:
            raise UsageError("the daemon is stopping")
        key = request.get("key") or None
        if key:
            row = self.store.db.execute(
                "SELECT run_id, outcome FROM fires WHERE agent = ? AND idempotency_key = ?",
                (name, key),
            ).fetchone()
            if row is not None:
                return {"run_id": row[0], "outcome": row[1], "duplicate": True}
        inputs = coerce_inputs(agent.spec, request.get("inputs") or {})
        fire = Fire(name, "manual", manual[0].index, new_run_id(), inputs, key=key)
        outcome = self.fire(fire)
        return {"run_id": fire.run_id, "outcome": outcome, "duplicate": outcome == "duplicate"}

    def status(self) -> dict[str, Any]:
        """Agents, triggers, next fire times, running runs, last outcomes."""
        agents = []
        for agent in sorted(self.agents.values(), key=lambda a: a.name):
            triggers = []
            for trigger in agent.spec.triggers:
                entry: dict[str, Any] = {"kind": trigger.kind}
                if trigger.kind == "cron":
                    entry["cron"] = trigger.cron
                    entry["timezone"] = trigger.timezone
                    nxt = agent.next_fire.get(trigger.index)
                    entry["next"] = _iso(nxt) if nxt else None
                elif trigger.kind == "watch" and trigger.watch:
                    entry["paths"] = list(trigger.watch.paths)
                elif trigger.kind == "webhook" and trigger.webhook:
                    entry["path"] = trigger.webhook.path or f"/hooks/{agent.name}"
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
            "started": _iso(self.started_at),
            "agents": agents,
            "errors": [e.split(":", 1)[1] for e in self.errors.values()],
            "workers_idle": len([w for w in self.workers if w.run_id is None]),
        }

    # -- webhooks ----------------------------------------------------------------------------

    def webhook_routes(self) -> dict[str, Agent]:
        """URL path → agent, for every webhook trigger."""
        routes = {}
        for agent in self.agents.values():
            for trigger in agent.spec.triggers:
                if trigger.kind == "webhook" and trigger.webhook:
                    routes[trigger.webhook.path or f"/hooks/{agent.name}"] = agent
        return routes

    async def start_webhook_server(self) -> None:
        """Start the webhook listener (aiohttp)."""
        from aiohttp import web

        from .triggers import ReplayGuard

        self._replay = ReplayGuard()
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/{tail:.*}", self.handle_webhook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        assert self.webhook is not None
        host, port = self.webhook
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._servers.append(runner)
        log.info("webhook listener on http://%s:%d/hooks/<agent>", host, port)

    async def handle_webhook(self, request: Any) -> Any:
        """Verify, de-duplicate and map one delivery, then fire."""
        from aiohttp import web

        from .store import new_run_id
        from .triggers import PayloadPathError, inputs_from_payload, verify_signature

        agent = self.webhook_routes().get(request.path)
        if agent is None or self.stopping:
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
        outcome = self.fire(fire)
        status = 409 if outcome == "duplicate" else 202
        return web.json_response({"run_id": fire.run_id, "outcome": outcome}, status=status)


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


def new_idempotency_key() -> str:
    """A fresh key for a manual trigger (the CLI reuses it when it retries)."""
    return uuid.uuid4().hex
