"""Notification channels: an Apprise URL template with ``${NAME}`` secrets, and its events.

A URL such as ``slack://${SLACK_TOKEN}/#ops`` or ``json://hooks.example.com/agentrun`` names
where messages go (Apprise's URL forms: https://github.com/caronc/apprise/wiki). Each
``${NAME}`` is replaced from the environment when a message is sent, never before, and the
substituted values are masked (``****``) wherever the URL is shown or stored: the run store
keeps only the masked form. In a spec, every ``NAME`` must be in the spec's ``env`` list
(checked by :mod:`runner.spec.checks_notify`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..errors import UsageError
from ..spec.checks_notify import PLACEHOLDER, known_schemes, scheme_problem

#: Every event a channel can opt into, in the order of a run's life.
NOTIFY_EVENTS = (
    "approval_waiting",
    "question_waiting",
    "run_escalated",
    "run_failed",
    "run_completed",
)
#: What a substituted secret shows as.
MASK = "****"


class ChannelError(UsageError):
    """A channel that cannot be used: a ``${NAME}`` unset, an unknown event (exit code 2)."""


@dataclass(frozen=True)
class Channel:
    """Where messages go and which events it hears of.

    Attributes:
        url: the Apprise URL template, ``${NAME}`` unsubstituted.
        events: the events it opted into (a subset of :data:`NOTIFY_EVENTS`).
        origin: ``spec`` or ``daemon`` (the daemon's default channels).
    """

    url: str
    events: tuple[str, ...]
    origin: str = "spec"

    def names(self) -> list[str]:
        """The environment variables the URL names, in order, once each."""
        return list(dict.fromkeys(PLACEHOLDER.findall(self.url)))

    def resolve(self, environ: Mapping[str, str]) -> tuple[str, list[str]]:
        """The URL with every ``${NAME}`` replaced from ``environ``, and the values used.

        Raises:
            ChannelError: a named variable is not set (the message names it, not its value).
        """
        missing = [name for name in self.names() if not environ.get(name)]
        if missing:
            raise ChannelError(
                f"the notification channel {self.url!r} needs environment variable"
                f"{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}, "
                "which is not set; set it where agentrun runs"
            )
        values = [environ[name] for name in self.names()]
        return PLACEHOLDER.sub(lambda m: environ[m.group(1)], self.url), values


def mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret (longest first) replaced by ``****``."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def parse_events(text: str) -> tuple[str, ...]:
    """``approval_waiting,run_failed`` (comma-separated) as a tuple of events.

    Raises:
        ChannelError: an unknown event (the message lists the known ones).
    """
    events = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [event for event in events if event not in NOTIFY_EVENTS]
    if unknown or not events:
        raise ChannelError(
            f"unknown notification event {', '.join(map(repr, unknown)) or repr(text)}; "
            f"expected a comma-separated list of {', '.join(NOTIFY_EVENTS)}"
        )
    return events


def check_url(url: str) -> None:
    """Refuse a channel URL whose scheme Apprise does not know.

    Raises:
        ChannelError: no ``scheme://`` or an unknown scheme (with the closest known one).
    """
    problem = scheme_problem(url, known_schemes())
    if problem is not None:
        raise ChannelError(f"{problem[0]}; {problem[1]}")


def daemon_channels(urls: Iterable[str], events: str) -> tuple[Channel, ...]:
    """The daemon's default channels: each URL (``--notify``) with the ``--notify-events``.

    Every ``${NAME}`` must be set in the daemon's environment now (it is read again at each
    send).

    Raises:
        ChannelError: an unknown event or scheme, or a ``${NAME}`` that is not set.
    """
    import os

    chosen = parse_events(events)
    channels = []
    for url in urls:
        check_url(url)
        channel = Channel(url, chosen, "daemon")
        channel.resolve(os.environ)
        channels.append(channel)
    return tuple(channels)
