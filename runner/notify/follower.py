"""Which channel hears of what: the run event log, read as it grows, turned into notifications.

:class:`NotifyFollower` reads the ``approval_requested``, ``question_asked`` and
``run_finished`` entries of the run event log since its last look (as the daemon's
:class:`~runner.daemon.continuation.PausedRuns` reads decisions) and hands each event a
channel opted into to a :class:`~runner.notify.delivery.Sender`. The events:

``approval_waiting``
    a call waits for a person: its approval is still pending when the run pauses on it
    (``waiting_approval``) or :data:`APPROVAL_GRACE_S` seconds after it was asked (a person
    at a terminal who answers at once, and the ``unattended: deny | fail`` choices, which
    decide at once, notify nobody).
``question_waiting``
    the model asked a person (``ask_human``).
``run_escalated``
    the run ended ``escalated`` (its ``escalate_on`` matched).
``run_failed``
    the run ended with a stop reason in :data:`FAILED_STOPS`: a budget, the loop detector,
    a denial, an approval it could not get, an answer that never came, checks that did not
    pass, an invalid output, the model's or agentrun's error. Not a failure: ``cancelled``
    (a person stopped it), ``interrupted`` (the process died; it can resume), the waiting
    stops, ``escalated`` (its own event).
``run_completed``
    the run ended ``completed`` (or ``proposed``, the ``suggest`` level's end).

Each message's key (the notifications table's ``event_key``) names the event exactly, so a
second follower (another process, a restarted daemon) that sees it claims nothing and
sends nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import StopReason
from . import messages
from .channels import Channel
from .messages import Links

if TYPE_CHECKING:
    from ..store import RunStore
    from ..web.links import DecisionLinks
    from .delivery import Sender

log = logging.getLogger("agentrun.notify")

#: Seconds a call's approval must stay pending, while its run still runs, before
#: ``approval_waiting`` is sent (a run that pauses on it sends at once).
APPROVAL_GRACE_S = 1.0
#: The stop reasons of ``run_failed``.
FAILED_STOPS = frozenset(
    {
        StopReason.MAX_STEPS,
        StopReason.MAX_TOOL_CALLS,
        StopReason.MAX_TOKENS,
        StopReason.MAX_COST_USD,
        StopReason.MAX_DURATION,
        StopReason.LOOP_DETECTED,
        StopReason.DENIED,
        StopReason.APPROVAL_REQUIRED,
        StopReason.ANSWER_TIMEOUT,
        StopReason.CHECKS_FAILED,
        StopReason.OUTPUT_INVALID,
        StopReason.MODEL_ERROR,
        StopReason.ERROR,
    }
)
#: The stop reasons of ``run_completed``.
COMPLETED_STOPS = frozenset({StopReason.COMPLETED, StopReason.PROPOSED})
#: The log entries read.
FOLLOWED_TYPES = ("approval_requested", "question_asked", "run_finished")


def run_event(stop_reason: str) -> str | None:
    """The notification event of a run that ended with ``stop_reason``, or None."""
    if stop_reason == StopReason.ESCALATED:
        return "run_escalated"
    if stop_reason in FAILED_STOPS:
        return "run_failed"
    if stop_reason in COMPLETED_STOPS:
        return "run_completed"
    return None


@dataclass
class _Asked:
    entry: dict[str, Any]
    agent: str
    seen_at: float


class NotifyFollower:
    """Follows the run event log and sends what each run's channels opted into.

    Args:
        store: the run store (read; decision links are recorded in it).
        sender: sends the messages off this thread.
        channels_for: an agent's name -> its channels (its spec's and any default ones).
        console_url: the console's base URL (``http://127.0.0.1:8790``), or None when no
            console is reachable (then messages carry no links).
        links: mints signed decision links (None: no decision links).
        run_id: follow only this run (``agentrun run``'s own), or every run (the daemon).
        monotonic: the clock of :data:`APPROVAL_GRACE_S`, in seconds (tests pass another).
    """

    def __init__(
        self,
        store: RunStore,
        sender: Sender,
        channels_for: Callable[[str], list[Channel]],
        console_url: Callable[[], str | None],
        links: DecisionLinks | None = None,
        run_id: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.sender = sender
        self.channels_for = channels_for
        self.console_url = console_url
        self.links = links
        self.run_id = run_id
        self.monotonic = monotonic
        self.seen = 0
        self.asked: dict[tuple[str, str], _Asked] = {}
        self._agents: dict[str, str] = {}

    def start_at(self, event_id: int) -> None:
        """Look only at entries after ``event_id`` (the log's last id when following starts)."""
        self.seen = event_id

    def replay(self, run_id: str, upto: int) -> None:
        """Handle run ``run_id``'s entries up to id ``upto`` again (a run that still waits).

        What was sent already is not sent twice (the notifications table's unique
        ``(event_key, channel)``); a call decided or a question answered since is skipped.
        """
        after = 0
        while True:
            entries = self.store.events_since(after, run_id=run_id, limit=500, types=FOLLOWED_TYPES)
            for entry in entries:
                after = int(entry["id"])
                if after > upto:
                    return
                try:
                    self._entry(entry)
                except Exception as error:  # a notification never breaks what follows the log
                    log.error("notification for entry %s skipped: %s", entry["id"], error)
            if len(entries) < 500:
                return

    def follow(self) -> None:
        """Send what the entries since the last look, and the calls still waiting, call for."""
        while True:
            entries = self.store.events_since(
                self.seen, run_id=self.run_id, limit=500, types=FOLLOWED_TYPES
            )
            for entry in entries:
                self.seen = int(entry["id"])
                try:
                    self._entry(entry)
                except Exception as error:  # a notification never breaks what follows the log
                    log.error("notification for entry %s skipped: %s", entry["id"], error)
            if len(entries) < 500:
                break
        self._waiting_calls()

    @property
    def waiting(self) -> bool:
        """Whether a call's approval is being watched (follow again soon)."""
        return bool(self.asked)

    # -- entries ----------------------------------------------------------------------------

    def _agent(self, run_id: str) -> str | None:
        if run_id not in self._agents:
            row = self.store.run(run_id)
            if row is None:
                return None
            self._agents[run_id] = row.agent
        return self._agents[run_id]

    def _channels(self, agent: str, event: str) -> list[Channel]:
        return [channel for channel in self.channels_for(agent) if event in channel.events]

    def _entry(self, entry: dict[str, Any]) -> None:
        run_id = str(entry["run_id"])
        agent = self._agent(run_id)
        if agent is None:
            return
        kind = entry["type"]
        if kind == "approval_requested":
            if self._channels(agent, "approval_waiting"):
                key = (run_id, str(entry["call_id"]))
                self.asked.setdefault(key, _Asked(entry, agent, self.monotonic()))
        elif kind == "question_asked":
            self._question(agent, entry)
        elif kind == "run_finished":
            self._finished(agent, entry)

    def _waiting_calls(self) -> None:
        now = self.monotonic()
        for key, asked in list(self.asked.items()):
            run_id, call_id = key
            approval = self.store.latest_approval(run_id, call_id)
            if approval is None or approval["status"] != "pending":
                del self.asked[key]  # decided at once: nobody waits
                continue
            row = self.store.run(run_id)
            paused = row is not None and row.stop_reason == StopReason.WAITING_APPROVAL
            if not paused and now - asked.seen_at < APPROVAL_GRACE_S:
                continue
            del self.asked[key]
            self._approval(asked.agent, asked.entry, approval["arguments_sha256"])

    def _approval(self, agent: str, entry: dict[str, Any], digest: str) -> None:
        run_id, call_id = str(entry["run_id"]), str(entry["call_id"])
        channels = self._channels(agent, "approval_waiting")
        if not channels:
            return
        links = self._links(run_id)
        if links.run and self.links is not None:
            links.approve = self._link(run_id, call_id, "approve", digest)
            links.deny = self._link(run_id, call_id, "deny", digest)
        message = messages.approval_waiting(agent, entry, links)
        key = f"approval_waiting:{run_id}:{call_id}:{digest}"
        for channel in channels:
            self.sender.submit(run_id, "approval_waiting", key, channel, message)

    def _question(self, agent: str, entry: dict[str, Any]) -> None:
        channels = self._channels(agent, "question_waiting")
        if not channels:
            return
        run_id, call_id = str(entry["run_id"]), str(entry["call_id"])
        asked = self.store.question(run_id, call_id)
        if asked is not None and asked["status"] != "waiting":
            return  # answered (or timed out) before anyone was told: nobody waits
        links = self._links(run_id)
        if links.run and self.links is not None:
            links.answer = self._link(run_id, call_id, "answer", "")
        message = messages.question_waiting(agent, entry, links)
        key = f"question_waiting:{run_id}:{call_id}"
        for channel in channels:
            self.sender.submit(run_id, "question_waiting", key, channel, message)

    def _finished(self, agent: str, entry: dict[str, Any]) -> None:
        run_id = str(entry["run_id"])
        if entry.get("stop_reason") == StopReason.WAITING_APPROVAL:
            for asked_key in [k for k in self.asked if k[0] == run_id]:
                asked = self.asked[asked_key]
                asked.seen_at = float("-inf")  # paused on it: send now
            return
        event = run_event(str(entry.get("stop_reason")))
        if event is None:
            return
        channels = self._channels(agent, event)
        if not channels:
            return
        message = messages.run_ended(event, agent, entry, self._links(run_id))
        key = f"{event}:{run_id}:{entry['id']}"
        for channel in channels:
            self.sender.submit(run_id, event, key, channel, message)

    # -- links ------------------------------------------------------------------------------

    def _links(self, run_id: str) -> Links:
        base = self.console_url()
        return Links(run=f"{base.rstrip('/')}/runs/{run_id}" if base else None)

    def _link(self, run_id: str, call_id: str, action: str, digest: str) -> str | None:
        from ..web.links import LINK_PREFIX

        base = self.console_url()
        if not base or self.links is None:
            return None
        token = self.links.mint(self.store, run_id, call_id, action, digest)
        return f"{base.rstrip('/')}{LINK_PREFIX}{token}"
