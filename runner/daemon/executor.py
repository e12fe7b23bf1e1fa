"""Where runs execute: the local executor, a pool of pre-warmed worker processes.

The daemon decides *when* a run happens; an executor decides *where*. This one keeps
idle workers (:mod:`runner.daemon.worker`) that have already paid the imports and first
call of their model path, so a fire starts its run in milliseconds instead of paying
seconds of imports, and each run is its own process: a run that crashes or leaks cannot
take the daemon down. Every worker runs in its own session (process group), so cancelling
a run reaches the processes it started.

A worker is warmed for one model path (:func:`model_path`): ``direct`` (every model of the
spec is an OpenAI-compatible endpoint reached with the openai SDK: the worker never imports
litellm, about 115 MB) or ``litellm`` (both paths warmed, about 260 MB). The executor keeps
``pool_size`` idle workers for each path in use (:meth:`LocalExecutor.use_paths`: the
daemon passes the paths of its loaded specs) and hands each run to a worker of its spec's
path; a run whose path has no idle worker gets one spawned for it (correct, only slower).

How many workers of a path exist is one sum (:func:`workers_to_spawn`): ``pool_size`` idle
workers if the path is in use, plus one for every start waiting for a worker of the path,
less its free idle workers and its spawns already in flight. Counting the spawns in flight
is what keeps N starts in one instant from spawning N(N+1)/2 workers: each start's refill
sees the replacements the earlier starts asked for. Starting a process is a function given
to the executor (:data:`SpawnWorker`), so a test can count spawns without starting any.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..models.openai_direct import is_direct
from ..paths import private_dir, private_file
from ..spec.prices import LOCAL_PREFIX

if TYPE_CHECKING:
    from ..spec import AgentSpec

log = logging.getLogger("agentrun.daemon")

#: Seconds past ``max_duration`` after which a run's worker is killed outright (the worker
#: stops the run itself at ``max_duration``; this is the backstop).
KILL_GRACE_S = 30.0
#: Seconds a cancelled run (SIGTERM) has to end before its worker's process group is killed
#: (SIGKILL), as Kubernetes' default ``terminationGracePeriodSeconds``.
CANCEL_GRACE_S = 30.0
#: Seconds before a worker whose process could not be started (fork or exec failed) is
#: tried again.
SPAWN_RETRY_S = 1.0
#: How long a closing executor waits for its workers' processes to be reaped, in seconds.
CLOSE_WAIT_S = 10.0
#: What a worker that a start has claimed, but that is still warming up, carries as its
#: ``run_id`` until the job is sent.
RESERVED = "reserved"
#: The model paths a worker is warmed for: the openai SDK only, or litellm (and the SDK).
DIRECT = "direct"
LITELLM = "litellm"
PATHS = (DIRECT, LITELLM)


def model_path(spec: AgentSpec) -> str:
    """The path whose warm worker runs ``spec``: :data:`DIRECT` or :data:`LITELLM`.

    :data:`LITELLM` when any model of the spec (the primary or a fallback) goes through
    litellm (:func:`runner.models.openai_direct.is_direct`; ``local/NAME`` is served as
    ``openai/NAME``). A ``max_tokens`` or ``max_cost_usd`` budget does not need litellm: on
    the direct path the estimate before each call counts with tiktoken
    (:mod:`runner.models.tokens`), as litellm's tokenizer counts.
    """
    for model_id in (spec.model.id, *spec.model.fallbacks):
        name = (
            "openai/" + model_id[len(LOCAL_PREFIX) :]
            if model_id.startswith(LOCAL_PREFIX)
            else model_id
        )
        if not is_direct(name):
            return LITELLM
    return DIRECT


class JobInput(Protocol):
    """A worker's stdin, as the executor uses it (:class:`asyncio.StreamWriter` fits)."""

    def write(self, data: bytes, /) -> None:
        """Queue ``data`` to be sent."""

    async def drain(self) -> None:
        """Wait until the queued data is sent."""


class WorkerOutput(Protocol):
    """A worker's stdout, as the executor uses it (:class:`asyncio.StreamReader` fits)."""

    async def readline(self) -> bytes:
        """The next line, with its newline; ``b""`` at the end."""


class WorkerProcess(Protocol):
    """A worker process, as the executor uses it (:class:`asyncio.subprocess.Process` fits).

    ``pid`` is also its process group (workers run in their own session).
    """

    @property
    def pid(self) -> int:
        """The process id."""

    @property
    def returncode(self) -> int | None:
        """The exit code once it has exited (negative: the signal that ended it), else None."""

    @property
    def stdin(self) -> JobInput | None:
        """Where the job line is written."""

    @property
    def stdout(self) -> WorkerOutput | None:
        """Where ``{"ready": true}`` and the end of the run are reported."""

    async def wait(self) -> int:
        """Wait for the process to exit; its exit code."""

    def send_signal(self, signum: int, /) -> None:
        """Send a signal to the process (not its group)."""


#: Starts one worker process warmed for a model path (``python -m runner.daemon.worker PATH``)
#: and returns it, not waiting for it to warm up. May raise :class:`OSError` (fork or exec
#: failed).
SpawnWorker = Callable[[str], Awaitable[WorkerProcess]]


def worker_spawner(home: Path) -> SpawnWorker:
    """The real :data:`SpawnWorker`: ``python -m runner.daemon.worker PATH`` in its own session.

    Its stderr is appended to ``logs/workers.log`` in ``home`` (AGENTRUN_HOME).
    """

    async def spawn(path: str) -> WorkerProcess:
        log = private_file(private_dir(home / "logs") / "workers.log")
        with log.open("ab") as stderr:
            return await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "runner.daemon.worker",
                path,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                start_new_session=True,
            )

    return spawn


def workers_to_spawn(pool_size: int, free: int, spawning: int, waiting: int) -> int:
    """How many worker processes of one model path to start now.

    Enough that every start ``waiting`` for a worker gets one and ``pool_size`` stay idle
    after that, counting the ``free`` idle workers (warming up or ready, not claimed by a
    start) and the spawns in flight (``spawning``: asked for, process not started yet). A
    worker a start has claimed is neither free nor waiting: the pool is one short until its
    replacement is spawned.
    """
    return max(pool_size + waiting - free - spawning, 0)


@dataclass
class Worker:
    """A worker process: idle (warming up or ready), claimed by a start, or running one run."""

    process: WorkerProcess
    path: str = DIRECT
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    run_id: str | None = None
    agent: str | None = None
    deadline: float | None = None
    #: The last report the worker printed (``ready``, then ``finished`` or ``error``).
    report: dict[str, Any] = field(default_factory=dict)


class LocalExecutor:
    """Runs jobs in warm worker processes on this machine.

    The spec's ``executor.queue`` is not used here: every agent runs on this machine.

    Args:
        home: AGENTRUN_HOME (worker stderr goes to ``logs/workers.log`` there).
        pool_size: idle workers kept warm for each model path in use (:meth:`use_paths`).
        on_change: called when a worker exits (the daemon collects its run).
        spawn: starts one worker process for a model path; the default is
            :func:`worker_spawner` of ``home``. Tests pass a fake that counts.
        monotonic: the clock of deadlines, in seconds (:func:`time.monotonic`).

    Attributes:
        idle: workers not running a run: free, or claimed by a start (``run_id`` is
            :data:`RESERVED`) while they warm up.
        running: the worker of each run it was handed, by run id, until collected.
        spawning: spawns in flight (asked for, process not started yet), all paths.
        waiting: starts waiting for a free worker, all paths.
        spawned: worker processes started so far.
        paths: the model paths kept warm (``pool_size`` idle workers each).
        spawning_by_path, waiting_by_path: :attr:`spawning` and :attr:`waiting` by path.
    """

    #: Runs end with the daemon's shutdown (finished, or interrupted after the grace).
    runs_outlive_daemon = False
    name = "local"

    def __init__(
        self,
        home: Path,
        pool_size: int,
        on_change: Callable[[], None],
        spawn: SpawnWorker | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.home = home
        self.monotonic = monotonic
        self.pool_size = max(pool_size, 0)
        self.on_change = on_change
        self.spawn_process = spawn or worker_spawner(home)
        self.idle: list[Worker] = []
        self.running: dict[str, Worker] = {}
        self.paths: set[str] = {DIRECT}
        self.spawning_by_path = dict.fromkeys(PATHS, 0)
        self.waiting_by_path = dict.fromkeys(PATHS, 0)
        self.spawned = 0
        self.closed = False
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def workers(self) -> list[dict[str, Any]]:
        """This machine, as ``daemon status`` shows the Celery executor's workers."""
        return [{"hostname": socket.gethostname(), "queues": [], "active": sorted(self.running)}]

    @property
    def spawning(self) -> int:
        """Spawns in flight, all paths."""
        return sum(self.spawning_by_path.values())

    @property
    def waiting(self) -> int:
        """Starts waiting for a free worker, all paths."""
        return sum(self.waiting_by_path.values())

    def use_paths(self, paths: set[str]) -> None:
        """Keep ``pool_size`` idle workers for each of ``paths`` (the loaded specs' paths).

        Free idle workers of a path no longer in use are stopped at the next :meth:`refill`.
        """
        self.paths = set(paths)

    def _background(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)

    def _notify(self) -> None:
        """Wake the starts waiting for a worker (a worker was added or released)."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def _follow(self, worker: Worker) -> None:
        assert worker.process.stdout is not None
        while True:
            line = await worker.process.stdout.readline()
            if not line:
                break
            with contextlib.suppress(json.JSONDecodeError):
                report = json.loads(line)
                if isinstance(report, dict):
                    worker.report = report
                    if report.get("ready"):
                        worker.ready.set()
        await worker.process.wait()
        worker.ready.set()
        self.on_change()

    def free_workers(self, path: str | None = None) -> list[Worker]:
        """Idle workers no start has claimed, alive (warming up or ready), of ``path`` if given."""
        return [
            w
            for w in self.idle
            if w.run_id is None
            and w.process.returncode is None
            and (path is None or w.path == path)
        ]

    def refill(self) -> None:
        """Start workers (in the background) up to :func:`workers_to_spawn`; none once closed.

        Per model path: ``pool_size`` idle for a path in :attr:`paths`, none for another
        (its free idle workers are stopped), plus one for each start waiting for the path.
        """
        self.idle = [w for w in self.idle if w.process.returncode is None]
        if self.closed:
            return
        for path in PATHS:
            pool = self.pool_size if path in self.paths else 0
            waiting = self.waiting_by_path[path]
            free = self.free_workers(path)
            if pool == 0 and waiting == 0:
                for worker in free:  # a path no loaded spec uses any more: free its memory
                    self.idle.remove(worker)
                    self._kill(worker)
                continue
            missing = workers_to_spawn(pool, len(free), self.spawning_by_path[path], waiting)
            for _ in range(missing):
                # Counted now, not when the process exists: the fix for N(N+1)/2.
                self.spawning_by_path[path] += 1
                self._background(self._add_idle(path))

    async def _add_idle(self, path: str) -> None:
        try:
            try:
                process = await self.spawn_process(path)
            except Exception:
                log.exception("could not start a worker process; trying again")
                await asyncio.sleep(SPAWN_RETRY_S)
                return
            self.spawned += 1
            worker = Worker(process, path)
            self.idle.append(worker)
            self._background(self._follow(worker))
            if self.closed:  # the daemon stopped while this one was starting
                self._kill(worker)
        finally:
            self.spawning_by_path[path] -= 1
            self._notify()

    async def _take(self, path: str) -> Worker:
        """A free worker of ``path``, claimed and warm; waits for one spawned when none is free.

        Safe to cancel: a worker claimed by a cancelled start goes back to the pool.
        """
        while True:
            free = self.free_workers(path)
            if not free:
                changed = self._changed
                self.waiting_by_path[path] += 1
                try:
                    self.refill()
                    await changed.wait()
                finally:
                    self.waiting_by_path[path] -= 1
                continue
            ready = [w for w in free if w.ready.is_set()]
            worker = (ready or free)[0]
            worker.run_id = RESERVED
            try:
                await worker.ready.wait()
            except asyncio.CancelledError:
                worker.run_id = None
                self._notify()
                raise
            if worker in self.idle:
                self.idle.remove(worker)
            if worker.process.returncode is None:
                return worker
            # It died while warming up: take another.

    async def start(
        self, job: dict[str, Any], agent: str, max_duration: float | None, path: str = DIRECT
    ) -> None:
        """Send ``job`` to a ready worker of ``path``, waiting for one spawned when none is free.

        ``path`` is the :func:`model_path` of the job's spec. A start cancelled while it
        waits for a worker never reaches one: nothing is awaited between taking the worker
        and writing the job. Once written, the run is in :attr:`running` (cancel it with
        :meth:`cancel`).
        """
        worker = await self._take(path)
        run_id = str(job["run_id"])
        worker.run_id, worker.agent = run_id, agent
        if max_duration is not None:
            worker.deadline = self.monotonic() + max_duration + KILL_GRACE_S
        self.running[run_id] = worker
        assert worker.process.stdin is not None
        worker.process.stdin.write((json.dumps(job) + "\n").encode())
        self.refill()
        await worker.process.stdin.drain()

    def _signal(self, run_id: str, signum: int) -> Worker | None:
        worker = self.running.get(run_id)
        if worker is None or worker.process.returncode is not None:
            return None
        try:
            worker.process.send_signal(signum)
        except ProcessLookupError:
            return None
        return worker

    def cancel(self, run_id: str) -> bool:
        """Cancel a run: SIGTERM now (its stop reason becomes ``cancelled``), SIGKILL later.

        Its process group is killed if it has not exited :data:`CANCEL_GRACE_S` seconds later
        (see :meth:`collect`). Returns False when the run has no live worker here (not
        started by this executor, or its worker already exited: it is collected as it ended).
        """
        worker = self._signal(run_id, signal.SIGTERM)
        if worker is None:
            return False
        grace = self.monotonic() + CANCEL_GRACE_S
        worker.deadline = grace if worker.deadline is None else min(worker.deadline, grace)
        return True

    def interrupt(self, run_id: str) -> bool:
        """Interrupt a run (SIGUSR1: ``interrupted``, resumable); False: no live worker here."""
        return self._signal(run_id, signal.SIGUSR1) is not None

    def collect(self) -> list[tuple[str, str, int | None, int]]:
        """Runs whose workers exited: ``(run_id, agent, exit code, pid)``.

        A worker past its deadline is killed with its process group: ``max_duration`` plus
        :data:`KILL_GRACE_S`, or :data:`CANCEL_GRACE_S` after a cancel.
        """
        done: list[tuple[str, str, int | None, int]] = []
        for run_id, worker in list(self.running.items()):
            if worker.process.returncode is None:
                if worker.deadline is not None and self.monotonic() > worker.deadline:
                    self._kill(worker)
                continue
            del self.running[run_id]
            done.append((run_id, worker.agent or "", worker.process.returncode, worker.process.pid))
        return done

    @staticmethod
    def _kill(worker: Worker) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.process.pid, signal.SIGKILL)

    def kill_all(self) -> None:
        """Kill every worker and its process group, and start no more (the end of a shutdown).

        A spawn still in flight is killed as soon as its process exists.
        """
        self.closed = True
        for worker in [*self.idle, *self.running.values()]:
            self._kill(worker)

    async def aclose(self, timeout_s: float = CLOSE_WAIT_S) -> None:
        """:meth:`kill_all`, then wait (at most ``timeout_s`` seconds) for what it started.

        Every worker's process is reaped and every spawn in flight has ended before the
        event loop closes: a subprocess transport left behind is closed by the garbage
        collector after the loop, and that prints an "Event loop is closed" traceback as the
        daemon exits.
        """
        self.kill_all()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)
