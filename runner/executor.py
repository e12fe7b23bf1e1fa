"""Where runs execute: the local executor, a pool of pre-warmed worker processes.

The daemon decides *when* a run happens; an executor decides *where*. This one keeps
``pool_size`` idle workers (:mod:`runner.worker`) that have already imported litellm, so a
fire starts its run in milliseconds instead of paying seconds of imports, and each run is
its own process: a run that crashes or leaks cannot take the daemon down. Every worker runs
in its own session (process group), so cancelling a run reaches the processes it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Seconds past ``max_duration`` after which a run's worker is killed outright (the worker
#: stops the run itself at ``max_duration``; this is the backstop).
KILL_GRACE_S = 30.0


@dataclass
class Worker:
    """A worker process: idle (warming up or ready) or running one run."""

    process: asyncio.subprocess.Process
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    run_id: str | None = None
    agent: str | None = None
    deadline: float | None = None


class LocalExecutor:
    """Runs jobs in warm worker processes on this machine.

    Args:
        home: AGENTRUN_HOME (worker stderr goes to ``logs/workers.log`` there).
        pool_size: idle workers kept warm (each holds litellm: about 150 MB).
        on_change: called when a worker exits (the daemon collects its run).
    """

    def __init__(self, home: Path, pool_size: int, on_change: Callable[[], None]) -> None:
        self.home = home
        self.pool_size = max(pool_size, 0)
        self.on_change = on_change
        self.idle: list[Worker] = []
        self.running: dict[str, Worker] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def _background(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)

    async def spawn(self) -> Worker:
        """Start a worker process; it warms up (imports litellm) in the background."""
        log_dir = self.home / "logs"
        log_dir.mkdir(exist_ok=True)
        with (log_dir / "workers.log").open("ab") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "runner.worker",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                start_new_session=True,
            )
        worker = Worker(process)
        self._background(self._follow(worker))
        return worker

    async def _follow(self, worker: Worker) -> None:
        assert worker.process.stdout is not None
        while True:
            line = await worker.process.stdout.readline()
            if not line:
                break
            with contextlib.suppress(json.JSONDecodeError):
                if json.loads(line).get("ready"):
                    worker.ready.set()
        await worker.process.wait()
        worker.ready.set()
        self.on_change()

    def refill(self) -> None:
        """Keep ``pool_size`` warm idle workers (started in the background)."""
        self.idle = [w for w in self.idle if w.process.returncode is None]
        missing = self.pool_size - len([w for w in self.idle if w.run_id is None])
        for _ in range(missing):
            self._background(self._add_idle())

    async def _add_idle(self) -> None:
        self.idle.append(await self.spawn())

    async def _take(self) -> Worker:
        while True:
            free = [w for w in self.idle if w.run_id is None and w.process.returncode is None]
            ready = [w for w in free if w.ready.is_set()]
            worker = ready[0] if ready else (free[0] if free else None)
            if worker is None:
                worker = await self.spawn()
                self.idle.append(worker)
            worker.run_id = "reserved"
            await worker.ready.wait()
            self.idle.remove(worker)
            if worker.process.returncode is None:
                return worker
            # It died while warming up: take another.

    async def start(self, job: dict[str, Any], agent: str, max_duration: float | None) -> None:
        """Send ``job`` to a ready worker (one is started when none is idle)."""
        worker = await self._take()
        worker.run_id, worker.agent = str(job["run_id"]), agent
        if max_duration is not None:
            worker.deadline = time.monotonic() + max_duration + KILL_GRACE_S
        self.running[worker.run_id] = worker
        assert worker.process.stdin is not None
        worker.process.stdin.write((json.dumps(job) + "\n").encode())
        await worker.process.stdin.drain()
        self.refill()

    def _signal(self, run_id: str, signum: int) -> None:
        worker = self.running.get(run_id)
        if worker is not None:
            with contextlib.suppress(ProcessLookupError):
                worker.process.send_signal(signum)

    def cancel(self, run_id: str) -> None:
        """Cancel a run (SIGTERM: its stop reason becomes ``cancelled``)."""
        self._signal(run_id, signal.SIGTERM)

    def interrupt(self, run_id: str) -> None:
        """Interrupt a run (SIGUSR1: ``interrupted``, resumable with ``agentrun resume``)."""
        self._signal(run_id, signal.SIGUSR1)

    def collect(self) -> list[tuple[str, str, int | None, int]]:
        """Runs whose workers exited: ``(run_id, agent, exit code, pid)``.

        A worker past its run's ``max_duration`` plus :data:`KILL_GRACE_S` is killed.
        """
        done: list[tuple[str, str, int | None, int]] = []
        for run_id, worker in list(self.running.items()):
            if worker.process.returncode is None:
                if worker.deadline is not None and time.monotonic() > worker.deadline:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(worker.process.pid, signal.SIGKILL)
                continue
            del self.running[run_id]
            done.append((run_id, worker.agent or "", worker.process.returncode, worker.process.pid))
        return done

    def kill_all(self) -> None:
        """Kill every worker and its process group (the end of a shutdown)."""
        for worker in [*self.idle, *self.running.values()]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.process.pid, signal.SIGKILL)
