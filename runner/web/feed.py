"""One poller of the run event log per app, fanned out to every live stream.

Server-Sent Events clients (the API's ``/events/stream`` endpoints, later the console's
live pages) do not query the store each: one task reads the log's new entries every
``interval_s`` (0.2 s by default) while at least one client listens, and hands each entry
to every subscriber, so fifty clients cost one query per interval, not fifty.

A client that resumes (SSE's ``Last-Event-ID``) first reads what it missed from the store,
then takes the live entries, skipping any it already sent: :meth:`EventFeed.events`. A
client too slow to keep up (``queue_size`` entries behind) is dropped from the fan-out and
catches up from the store the same way, so nothing is lost and nothing grows unbounded.

The feed reads through two callables, so it knows no store: ``read(after_id, run_id,
limit)`` gives entries (mappings with an increasing integer ``id`` and a ``run_id``),
oldest first; ``last_id()`` gives the newest id.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from anyio import to_thread

Entry = Mapping[str, Any]
Read = Callable[[int, str | None, int], Sequence[Entry]]

#: Seconds between two reads of the log while someone listens: an event reaches a stream
#: half of it later on average, all of it at worst (issue 20's target: p99 under 200 ms,
#: ``python bench/console.py``); a read that finds nothing costs about 0.1 ms.
POLL_INTERVAL_S = 0.1
#: Entries read at most in one query.
PAGE = 500
#: Entries a subscriber may fall behind before it is dropped (it then catches up).
QUEUE_SIZE = 10_000


class Subscription:
    """One listener's queue of live entries (of one run, or of all when ``run_id`` is None)."""

    def __init__(self, run_id: str | None, queue_size: int) -> None:
        self.run_id = run_id
        self.queue_size = queue_size
        self.overflowed = False
        self.closed = False
        self._entries: deque[Entry] = deque()
        self._ready = asyncio.Event()

    def push(self, entry: Entry) -> bool:
        """Queue ``entry`` if it concerns this listener; False once it has fallen too far behind."""
        if self.run_id is not None and entry["run_id"] != self.run_id:
            return True
        if len(self._entries) >= self.queue_size:
            self.overflowed = True
            self._entries.clear()
            self._ready.set()
            return False
        self._entries.append(entry)
        self._ready.set()
        return True

    def close(self) -> None:
        """End the listening: :meth:`next` answers None from now on."""
        self.closed = True
        self._ready.set()

    async def next(self) -> Entry | None:
        """The next live entry (waits for one); None once the listener was dropped or closed."""
        while not self._entries or self.closed:
            if self.overflowed or self.closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        return self._entries.popleft()


class EventFeed:
    """Polls the run event log for an app and fans its entries out.

    Args:
        read: ``read(after_id, run_id, limit)``: entries after ``after_id``, oldest first.
        last_id: the newest entry's id (0 for an empty log).
        interval_s: seconds between reads while someone listens.
        queue_size: entries a listener may fall behind before it is dropped.

    Call :meth:`start` and :meth:`stop` from the event loop that serves the streams.
    """

    def __init__(
        self,
        read: Read,
        last_id: Callable[[], int],
        interval_s: float = POLL_INTERVAL_S,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self._read = read
        self._last_id = last_id
        self.interval_s = interval_s
        self.queue_size = queue_size
        self._subscribers: set[Subscription] = set()
        self._cursor = 0
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    @property
    def listeners(self) -> int:
        """How many streams listen now."""
        return len(self._subscribers)

    def start(self) -> None:
        """Start polling (it idles while nobody listens)."""
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._poll())

    def close(self) -> None:
        """End every stream (the server is stopping); streams opened later end at once."""
        self.closed = True
        for subscriber in list(self._subscribers):
            subscriber.close()

    def close_threadsafe(self) -> None:
        """:meth:`close` from another thread or a signal handler (Ctrl-C)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.close)

    async def stop(self) -> None:
        """Stop polling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _poll(self) -> None:
        while True:
            if not self._subscribers:
                self._wake.clear()
                await self._wake.wait()
                continue
            async with self._lock:
                entries = await to_thread.run_sync(self._read, self._cursor, None, PAGE)
                for entry in entries:
                    for subscriber in list(self._subscribers):
                        if not subscriber.push(entry):
                            self._subscribers.discard(subscriber)
                if entries:
                    self._cursor = int(entries[-1]["id"])
            if len(entries) < PAGE:
                await asyncio.sleep(self.interval_s)

    @contextlib.asynccontextmanager
    async def subscribe(self, run_id: str | None) -> AsyncIterator[Subscription]:
        """Listen to live entries (of one run, or all) while the context lasts.

        The first listener moves the feed's cursor to the log's end, so a feed that idled
        does not read the entries of its idle time; a listener reads what it missed itself.
        """
        async with self._lock:
            if not self._subscribers:
                self._cursor = await to_thread.run_sync(self._last_id)
            subscription = Subscription(run_id, self.queue_size)
            if self.closed:
                subscription.close()
            self._subscribers.add(subscription)
            self._wake.set()
        try:
            yield subscription
        finally:
            self._subscribers.discard(subscription)

    async def events(self, after_id: int, run_id: str | None = None) -> AsyncIterator[Entry]:
        """Every entry after ``after_id`` (of one run, or all): the recorded ones, then live.

        Ends only when the feed is closed (the server stops); otherwise the caller stops
        iterating (the client went away, or the run finished).
        """
        last = after_id
        while not self.closed:
            async with self.subscribe(run_id) as subscription:
                while True:  # what was recorded before this subscription, from the store
                    entries = await to_thread.run_sync(self._read, last, run_id, PAGE)
                    for entry in entries:
                        last = int(entry["id"])
                        yield entry
                    if len(entries) < PAGE:
                        break
                while (live := await subscription.next()) is not None:
                    if int(live["id"]) > last:
                        last = int(live["id"])
                        yield live
            # Dropped for falling behind: catch up from the store, then listen again.
