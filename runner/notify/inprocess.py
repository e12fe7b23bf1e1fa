"""Notifications of ``agentrun run``: its own run's events, sent from a thread beside it.

:class:`RunNotifier` is a sink of the loop that only learns the run's id; a thread follows
the run event log for that run (its own connection to the store) and sends what the spec's
``notify:`` channels opted into. When the run ends, :meth:`RunNotifier.finish` takes a last
look and waits at most one send timeout (:data:`~runner.notify.delivery.SEND_TIMEOUT_S`) for
deliveries under way; a delivery still going then is dropped and stays ``pending`` in the
store. The run's result and exit code never depend on any of it.

Links point at the console of a daemon serving this home (``AGENTRUN_HOME/daemon.url``) or
at ``AGENTRUN_PUBLIC_URL`` when set; without either, messages carry no links.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..events import RunResumed, RunStarted
from .channels import Channel
from .delivery import SEND_TIMEOUT_S, Sender
from .follower import NotifyFollower

if TYPE_CHECKING:
    from ..spec import AgentSpec

log = logging.getLogger("agentrun.notify")

#: Seconds between the thread's looks at the run event log.
POLL_S = 0.25
#: The environment variable naming the console's URL as people reach it.
PUBLIC_URL_VARIABLE = "AGENTRUN_PUBLIC_URL"


def console_url(home: Path, environ: Mapping[str, str] | None = None) -> str | None:
    """The console's base URL: ``AGENTRUN_PUBLIC_URL``, else a serving daemon's, else None."""
    environ = os.environ if environ is None else environ
    if environ.get(PUBLIC_URL_VARIABLE):
        return environ[PUBLIC_URL_VARIABLE].rstrip("/")
    try:
        served = (home / "daemon.url").read_text().strip()
    except OSError:
        return None
    return served or None


class RunNotifier:
    """Sends one run's notifications from a thread while it runs.

    Args:
        spec: the run's spec (its ``notify`` channels).
        home: AGENTRUN_HOME (the store ``runs.db``, the links' key, ``daemon.url``).
        environ: where ``${NAME}`` values and ``AGENTRUN_PUBLIC_URL`` come from.
        timeout_s: each send's timeout in seconds, and the most :meth:`finish` waits.
    """

    def __init__(
        self,
        spec: AgentSpec,
        home: Path,
        environ: Mapping[str, str] | None = None,
        timeout_s: float = SEND_TIMEOUT_S,
    ) -> None:
        from ..store.location import open_store, store_location
        from ..web.links import DecisionLinks

        self.channels = [Channel(c.url, tuple(c.events), "spec") for c in spec.notify]
        self.home = home
        self.environ = os.environ if environ is None else environ
        self.timeout_s = timeout_s
        location = store_location(home)
        self.store = open_store(location)
        self.sender = Sender(location, environ=self.environ, timeout_s=timeout_s)
        self.follower = NotifyFollower(
            self.store,
            self.sender,
            lambda agent: self.channels,
            lambda: console_url(home, self.environ),
            links=DecisionLinks(home),
        )
        self.follower.start_at(self.store.last_event_id())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def sink(self, event: Any) -> None:
        """The loop's sink: learns the run's id from its first event and starts following."""
        if self._thread is None and isinstance(event, RunStarted | RunResumed):
            self.follower.run_id = event.run_id
            self._thread = threading.Thread(
                target=self._follow, name="agentrun-notify-follow", daemon=True
            )
            self._thread.start()

    def _follow(self) -> None:
        while not self._stop.wait(POLL_S):
            self._look()

    def _look(self) -> None:
        with self._lock:
            try:
                self.follower.follow()
            except Exception as error:  # never into the run
                log.error("notifications skipped this look: %s", error)

    def finish(self) -> None:
        """After the run: a last look, then wait at most one send timeout for deliveries."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s)
            self._look()
        self.sender.close(wait_s=self.timeout_s)
        self.store.close()
