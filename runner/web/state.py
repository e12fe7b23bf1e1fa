"""What every request of one app shares: the run store (behind a lock), the login token, the feed.

The store is one SQLite connection; requests are served on a thread pool, so every call to
it goes through :meth:`WebState.read` (one at a time, each a few milliseconds on a WAL
database). The event feed (:class:`~runner.web.feed.EventFeed`) reads the same way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from ..store import HEARTBEAT_S, RunStore
from .auth import Credential

T = TypeVar("T")


@dataclass
class WebState:
    """The shared state of one app (``app.state.web``).

    Attributes:
        store: the run store, used only through :meth:`read`.
        credential: the login token and its label.
        lock: serialises the store's calls.
    """

    store: RunStore
    credential: Credential
    lock: threading.Lock = field(default_factory=threading.Lock)
    swept_at: float = field(default=float("-inf"))

    def read(self, query: Callable[[RunStore], T]) -> T:
        """``query(store)``, alone on the store (blocks the calling thread until it may).

        Raises:
            StoreError: from the store.
        """
        with self.lock:
            return query(self.store)

    def sweep(self) -> None:
        """Mark runs whose process died ``interrupted``, as ``agentrun runs`` does first.

        At most once every :data:`~runner.store.HEARTBEAT_S` seconds (it is a write), so a
        list never shows a dead run as ``running`` for longer than a heartbeat.

        Raises:
            StoreError: from the store.
        """
        with self.lock:
            now = time.monotonic()
            if now - self.swept_at >= HEARTBEAT_S:
                self.store.sweep_interrupted()
                self.swept_at = now
