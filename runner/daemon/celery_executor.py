"""Where runs execute past one machine: the Celery executor (``--executor celery``).

The daemon decides *when* a run happens; this executor sends each run (and each resume of a
paused or interrupted run) as one Celery task to a Redis broker (``AGENTRUN_BROKER``), and
``agentrun worker`` processes on any machine run them against the same run store
(:mod:`runner.daemon.celery_worker`). Tasks are sent by name (``send_task``): the daemon
never imports the task's module, nor litellm. Delivery settings (late acknowledgement,
rejection on a lost worker, prefetch 1, the visibility timeout) are in
:mod:`runner.daemon.celery_app`.

Task ids are run ids: a task's id is the id of the run it runs or continues, for a resume
too. Nothing is ever revoked (Celery workers remember revoked ids for the life of the
process, and a revoked id would swallow a later resume of the same run): a cancel is a row
in the run store instead. The daemon records the run's fire ``cancelled``
(:meth:`runner.daemon.lifecycle.Daemon.cancel`); the worker running the run reads it every
:data:`runner.daemon.celery_worker.CANCEL_POLL_S` seconds and cancels the run (stop reason
``cancelled``), and a task that reaches a worker after the cancel is not run. The store
being the one place both sides read, a cancel survives a broker restart and reaches a run on
any machine, which a broadcast ``revoke(terminate=True)`` does not (it reaches only the
workers connected when it is sent).

The daemon learns that a run ended from the store alone: the run's row with an end. What
it does when a row says nothing:

- no row, the fire recorded ``failed``: a worker could not start it (it says why);
- no row yet: the task waits in the broker for a worker of its queue (nothing to do; a
  cancelled one is counted ended :data:`CANCEL_SETTLE_S` seconds after its cancel, the time
  a worker that took it just before the cancel needs to record the run and see the cancel);
- ``interrupted``: counted ended only after :data:`INTERRUPTED_SETTLE_S` seconds (a task
  delivered again marks the run interrupted, then claims it back at once);
- still ``running`` past ``max_duration`` + :data:`~runner.daemon.executor.KILL_GRACE_S` +
  :data:`~runner.store.interface.HEARTBEAT_STALE_S` since the daemon first saw it run: its
  worker is stuck or gone (the worker's hard time limit, Celery's ``time_limit``, is
  ``max_duration`` + ``KILL_GRACE_S``), and the run is ended ``max_duration``;
- a heartbeat older than ``HEARTBEAT_STALE_S`` plus the visibility timeout: its worker died
  and no delivery took the task up again (a task that failed outside the run): the run is
  marked ``interrupted`` (:meth:`runner.store.RunStore.sweep_interrupted`), every
  :data:`LOST_SWEEP_S` seconds.

Runs outlive the daemon: a stopping daemon does not interrupt them, and the next daemon
adopts the runs recorded ``running`` into :attr:`CeleryExecutor.running` (:meth:`adopt`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import StopReason
from ..store.interface import HEARTBEAT_STALE_S
from ..store.rows import FireOutcome
from .celery_app import DEFAULT_QUEUE, TASK_NAME, broker_url, check_broker, make_app
from .executor import DIRECT, KILL_GRACE_S

if TYPE_CHECKING:
    from ..store import RunStore

log = logging.getLogger("agentrun.daemon")

#: Seconds a cancelled run with no row yet is kept before it counts as withdrawn.
CANCEL_SETTLE_S = 3.0
#: Seconds a run seen ``interrupted`` is kept before it counts as ended (a redelivered task
#: claims it back within moments).
INTERRUPTED_SETTLE_S = 3.0
#: Seconds between the sweeps for runs whose workers died unseen.
LOST_SWEEP_S = 30.0
#: Seconds between refreshes of the workers seen (Celery's ``inspect``).
WORKERS_REFRESH_S = 5.0
#: Seconds an ``inspect`` waits for the workers' replies.
INSPECT_TIMEOUT_S = 1.0


@dataclass
class CeleryRun:
    """A run sent as a task, until the daemon collects its end.

    Attributes:
        agent: the agent's name.
        queue: the Celery queue it was sent to.
        max_duration: the spec's ``max_duration`` in seconds, or None.
        running_since: :func:`time.monotonic` when the daemon first saw its row ``running``.
        cancelled_at: :func:`time.monotonic` of the cancel, or None.
        interrupted_since: :func:`time.monotonic` when first seen ``interrupted``, or None.
    """

    agent: str
    queue: str = DEFAULT_QUEUE
    max_duration: float | None = None
    running_since: float | None = None
    cancelled_at: float | None = None
    interrupted_since: float | None = None


class CeleryExecutor:
    """Sends runs to Celery workers; learns their ends from the run store.

    The same surface as :class:`runner.daemon.executor.LocalExecutor`, for the daemon.

    Args:
        store: the run store the daemon and the workers share.
        broker: the Redis broker URL; default ``AGENTRUN_BROKER``.
        on_change: called when the workers seen change (the daemon wakes up).
        visibility_s: the Redis visibility timeout in seconds (default
            :func:`runner.daemon.celery_app.visibility_timeout_s`).
        monotonic: the clock of the settle times and deadlines, in seconds.

    Raises:
        SetupError: no broker URL, or the broker cannot be reached (the message says where,
            without a password).

    Attributes:
        running: each run sent and not yet collected, by run id.
        workers: the workers seen at the last refresh: ``{"hostname", "queues", "active"}``
            (``active``: the run ids it runs), sorted by hostname.
    """

    #: Runs go on when the daemon stops; it neither waits for them nor interrupts them.
    runs_outlive_daemon = True
    name = "celery"

    def __init__(
        self,
        store: RunStore,
        broker: str | None = None,
        on_change: Callable[[], None] | None = None,
        visibility_s: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        from .celery_app import visibility_timeout_s

        self.store = store
        self.broker = broker_url(broker)
        check_broker(self.broker)
        self.visibility_s = visibility_timeout_s() if visibility_s is None else visibility_s
        self.app = make_app(self.broker, self.visibility_s)
        self.on_change = on_change or (lambda: None)
        self.monotonic = monotonic
        self.running: dict[str, CeleryRun] = {}
        self.workers: list[dict[str, Any]] = []
        # The LocalExecutor's idle pool has no counterpart here: the workers are elsewhere.
        self.idle: list[Any] = []
        self.paths: set[str] = {DIRECT}
        self._last_sweep = monotonic()
        self._refreshed = -WORKERS_REFRESH_S
        self._refreshing: asyncio.Task[None] | None = None

    def use_paths(self, paths: set[str]) -> None:
        """Nothing to keep warm here: each worker warms its own pool processes."""
        self.paths = set(paths)

    async def start(
        self, job: dict[str, Any], agent: str, max_duration: float | None, path: str = DIRECT
    ) -> None:
        """Send ``job`` as task :data:`~runner.daemon.celery_app.TASK_NAME`, id the run id.

        The queue is ``job["queue"]`` (the spec's ``executor.queue``). The task's hard time
        limit (Celery's ``time_limit``) is ``max_duration`` + ``KILL_GRACE_S`` seconds: the
        run stops itself at ``max_duration``; the pool process of a stuck one is killed.
        ``path`` is unused (every worker warms its own model path).

        Raises:
            kombu.exceptions.OperationalError: the broker cannot be reached (the daemon
                records the fire ``failed`` with the message).
        """
        run_id = str(job["run_id"])
        queue = str(job.get("queue") or DEFAULT_QUEUE)
        options: dict[str, Any] = {"task_id": run_id, "queue": queue}
        if max_duration is not None:
            options["time_limit"] = max_duration + KILL_GRACE_S
        await asyncio.to_thread(self.app.send_task, TASK_NAME, args=[job], **options)
        self.running[run_id] = CeleryRun(agent, queue, max_duration)

    def adopt(self, run_id: str, agent: str) -> None:
        """Watch a run recorded ``running`` by a previous daemon's executor to its end."""
        self.running.setdefault(run_id, CeleryRun(agent, running_since=self.monotonic()))

    def cancel(self, run_id: str) -> bool:
        """Cancel a run on whatever worker runs it; False when it is not one of this executor's.

        The cancel itself is the fire's outcome ``cancelled`` that the daemon records right
        after this returns True (see the module doc): the worker running the run reads it
        and cancels the run; a task not taken yet is dropped by the worker that takes it.
        """
        entry = self.running.get(run_id)
        if entry is None:
            return False
        entry.cancelled_at = self.monotonic()
        return True

    def interrupt(self, run_id: str) -> bool:
        """Runs on Celery workers outlive the daemon: never interrupted by it (False)."""
        return False

    def collect(self) -> list[tuple[str, str, int | None, int]]:
        """Runs that ended, from their rows: ``(run_id, agent, None, 0)`` (no exit code here).

        See the module doc for a row that says nothing (none yet, ``interrupted``, stuck).
        """
        now = self.monotonic()
        if now - self._last_sweep >= LOST_SWEEP_S:
            self._last_sweep = now
            for run_id in self.store.sweep_interrupted(HEARTBEAT_STALE_S + self.visibility_s):
                log.info("run %s: its worker stopped beating; marked interrupted", run_id)
        done: list[tuple[str, str, int | None, int]] = []
        for run_id, entry in list(self.running.items()):
            if self._ended(run_id, entry, now):
                del self.running[run_id]
                done.append((run_id, entry.agent, None, 0))
        return done

    def _ended(self, run_id: str, entry: CeleryRun, now: float) -> bool:
        row = self.store.run(run_id)
        if row is None:
            fire = self.store.fire_of_run(run_id)
            if fire is not None and fire.outcome == FireOutcome.FAILED:
                return True  # its worker could not start it, and recorded why
            if entry.cancelled_at is None:
                return False  # waiting in the broker for a worker of its queue
            return now - entry.cancelled_at >= CANCEL_SETTLE_S
        if row.status == "running":
            entry.interrupted_since = None
            if entry.running_since is None:
                entry.running_since = now
            limit = entry.max_duration
            if limit is not None and now - entry.running_since > (
                limit + KILL_GRACE_S + HEARTBEAT_STALE_S
            ):
                self.store.end_run_left_running(
                    run_id,
                    "finished",
                    StopReason.MAX_DURATION,
                    f"its worker did not end it at max_duration ({limit:g} s) nor after "
                    f"{KILL_GRACE_S:g} s more: stuck or lost",
                )
                return True
            return False
        if row.stop_reason == StopReason.INTERRUPTED and entry.cancelled_at is None:
            if entry.interrupted_since is None:
                entry.interrupted_since = now
            return now - entry.interrupted_since >= INTERRUPTED_SETTLE_S
        return True

    def refill(self) -> None:
        """Refresh :attr:`workers` in the background every :data:`WORKERS_REFRESH_S` seconds."""
        now = self.monotonic()
        if self._refreshing is not None or now - self._refreshed < WORKERS_REFRESH_S:
            return
        self._refreshed = now
        self._refreshing = asyncio.get_running_loop().create_task(self._refresh())

    async def _refresh(self) -> None:
        try:
            seen = await asyncio.to_thread(self.inspect_workers)
        except Exception as error:  # the broker is down: say so, keep the last list
            log.warning("could not ask the Celery workers: %s", error)
        else:
            if seen != self.workers:
                self.workers = seen
                self.on_change()
        finally:
            self._refreshing = None

    def inspect_workers(self, timeout_s: float = INSPECT_TIMEOUT_S) -> list[dict[str, Any]]:
        """The workers answering Celery's ``inspect`` ``active_queues`` and ``active``.

        Each: ``{"hostname", "queues": [names], "active": [run ids]}``, sorted by hostname;
        blocks up to ``timeout_s`` seconds.
        """
        inspect = self.app.control.inspect(timeout=timeout_s)
        queues = inspect.active_queues() or {}
        active = inspect.active() or {}
        return [
            {
                "hostname": host,
                "queues": sorted(q.get("name", "") for q in queues.get(host) or []),
                "active": sorted(t.get("id", "") for t in active.get(host) or []),
            }
            for host in sorted(set(queues) | set(active))
        ]

    def kill_all(self) -> None:
        """Nothing to kill: runs go on on their workers."""

    async def aclose(self, timeout_s: float = 0.0) -> None:
        """Wait for a workers refresh in flight, then close the broker's connections."""
        if self._refreshing is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._refreshing, INSPECT_TIMEOUT_S * 3)
        with contextlib.suppress(Exception):
            self.app.close()
