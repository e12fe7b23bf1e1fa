"""The daemon's notifications: its runs' events sent to their spec's and its default channels.

Each tick the daemon reads the run event log (:class:`runner.notify.follower.NotifyFollower`)
and sends, off its event loop (:class:`runner.notify.delivery.Sender`'s threads), what the
channels of each run's agent opted into: the loaded spec's ``notify:`` entries plus the
daemon's default channels (``agentrun daemon --notify URL --notify-events ...``), which
apply to every agent it has loaded. A run whose agent is not loaded (removed, or a
terminal's run of another spec) is notified only through the default channels.

Links in messages point at the console: ``--public-url`` when given, else the address the
daemon serves (``--http``); without either, messages carry no links.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import StopReason
from ..notify.channels import Channel
from ..notify.delivery import SEND_TIMEOUT_S, Sender
from ..notify.follower import NotifyFollower
from ..store.location import store_location
from .continuation import DAEMON_TRIGGERS

if TYPE_CHECKING:
    from ..store import RunStore
    from .state import AgentState

log = logging.getLogger("agentrun.daemon")

#: The stop reasons of a run that waits for a person (what a notification asks them to do).
WAITING_FOR_A_PERSON = frozenset(
    {StopReason.WAITING_APPROVAL, StopReason.WAITING_INPUT, StopReason.ESCALATED}
)


@dataclass(frozen=True)
class NotifySettings:
    """The daemon's notification settings (``agentrun daemon`` options).

    Attributes:
        channels: default channels for every loaded agent (``--notify``, ``--notify-events``).
        public_url: the console's URL as people reach it (``--public-url``), or None for the
            address the daemon serves.
        link_max_age_s: how long a decision link works, in seconds (``--link-max-age``).
    """

    channels: tuple[Channel, ...] = ()
    public_url: str | None = None
    link_max_age_s: float | None = None


class DaemonNotifications:
    """What the daemon sends people, and its sender.

    Args:
        store: the daemon's run store.
        home: AGENTRUN_HOME (the decision links' key is there).
        agents: the loaded agents by name (read at each look: specs reload).
        served_url: the address the daemon serves HTTP on, or None (not serving).
        settings: the daemon's default channels, public URL and links' maximum age.
    """

    def __init__(
        self,
        store: RunStore,
        home: Path,
        agents: Callable[[], Mapping[str, AgentState]],
        served_url: Callable[[], str | None],
        settings: NotifySettings | None = None,
    ) -> None:
        from ..web.links import DEFAULT_LINK_MAX_AGE_S, DecisionLinks

        # The daemon's log (set up by configure_logging) shows deliveries and failures too.
        notify_log = logging.getLogger("agentrun.notify")
        if log.handlers and not notify_log.handlers:
            notify_log.handlers[:] = log.handlers
            notify_log.setLevel(log.level)
            notify_log.propagate = False
        self.agents = agents
        self.settings = settings or NotifySettings()
        self.defaults = self.settings.channels
        public = self.settings.public_url
        self.sender = Sender(store_location(home))
        self.follower = NotifyFollower(
            store,
            self.sender,
            self.channels_for,
            lambda: public or served_url(),
            links=DecisionLinks(home, self.settings.link_max_age_s or DEFAULT_LINK_MAX_AGE_S),
        )

    def channels_for(self, agent: str) -> list[Channel]:
        """The channels of ``agent``'s runs: its loaded spec's, then the daemon's defaults."""
        state = self.agents().get(agent)
        own = [
            Channel(entry.url, tuple(entry.events), "spec")
            for entry in (state.spec.notify if state is not None else ())
        ]
        return [*own, *self.defaults]

    def take_over(self, event_id: int, waiting: Iterable[str] | None = None) -> None:
        """At start: follow from ``event_id``, after another look at the runs still waiting.

        Entries before ``event_id`` were the last daemon's to notify; but a run that paused
        (for an approval, a question, or escalated) while no daemon ran, or just before one
        was killed, may never have been notified: its own entries are handled again
        (:meth:`~runner.notify.follower.NotifyFollower.replay`). A notification already sent
        is not sent twice, and a call decided or a question answered meanwhile is not sent.

        Args:
            event_id: the run event log's last id when the daemon starts.
            waiting: ids of runs that wait for a person now; default: the daemon's runs
                that do (stop reason ``waiting_approval``, ``waiting_input``, ``escalated``).
        """
        if waiting is None:
            rows = self.follower.store.paused_runs(DAEMON_TRIGGERS)
            waiting = [row.id for row in rows if row.stop_reason in WAITING_FOR_A_PERSON]
        self.follower.start_at(event_id)
        for run_id in waiting:
            self.follower.replay(run_id, event_id)

    def follow(self) -> None:
        """Send what the run event log's new entries call for (never raises)."""
        try:
            self.follower.follow()
        except Exception as error:  # notifying must never stop the daemon
            log.error("notifications skipped this look: %s", error)

    @property
    def waiting(self) -> bool:
        """Whether a waiting call is watched (the daemon looks again within a second)."""
        return self.follower.waiting

    def close(self) -> None:
        """Give sends under way up to one send timeout, then stop."""
        self.sender.close(wait_s=SEND_TIMEOUT_S)
