"""What the daemon does when a trigger fires while a run of the same agent is active.

- :class:`Concurrency` -- the spec's ``concurrency`` policy, after Kubernetes CronJob's
  ``concurrencyPolicy`` (``Allow``, ``Forbid``, ``Replace``), plus ``queue`` (at most one
  waiting run).
- :class:`FireDecision`, :func:`on_fire` -- the decision for one fire, from the policy and
  the agent's active and queued run counts.
- :func:`start_queued` -- whether the waiting run starts now.

Pure functions of their arguments: the daemon passes the counts it holds.
"""

from __future__ import annotations

from enum import StrEnum


class Concurrency(StrEnum):
    """What happens when a trigger fires while a run of the same agent is active.

    Follows Kubernetes CronJob ``concurrencyPolicy`` (``Allow``, ``Forbid``, ``Replace``),
    plus ``queue``. The spec's default is ``forbid``.
    """

    ALLOW = "allow"
    """Start another run beside the active ones (Kubernetes ``Allow``)."""
    FORBID = "forbid"
    """Skip the new fire while a run is active (Kubernetes ``Forbid``)."""
    QUEUE = "queue"
    """Let the new fire wait until the active run ends; at most one waits, later fires
    while one is waiting are skipped (the waiting run stands for them)."""
    REPLACE = "replace"
    """Cancel the active run (SIGTERM, then SIGKILL after a grace) and start the new one
    once it has exited (Kubernetes ``Replace``)."""


class FireDecision(StrEnum):
    """What the daemon does with one fire (:func:`on_fire`); each is recorded with a reason."""

    START = "start"
    """Start a run now."""
    SKIP = "skip"
    """Start nothing; record the fire as skipped."""
    QUEUE = "queue"
    """Keep the fire as the one waiting run; start it when :func:`start_queued` says so."""
    REPLACE = "replace"
    """Cancel the active runs, then start this one when they have exited."""


def _counts(active_runs: int, queued: int) -> None:
    if active_runs < 0 or queued < 0:
        raise ValueError(f"run counts cannot be negative (active {active_runs}, queued {queued})")


def on_fire(policy: Concurrency | str, active_runs: int, queued: int) -> FireDecision:
    """What to do with a fire, given the agent's ``active_runs`` and ``queued`` (0 or 1) runs.

    - ``allow``: start, always.
    - ``forbid``: start when nothing is active, else skip.
    - ``queue``: start when nothing is active and nothing waits; queue when runs are active
      and nothing waits; skip when a run already waits (1).
    - ``replace``: start when nothing is active, else replace.

    (1) With ``queue``, a waiting run is started before any newer fire: if one waits while
    nothing is active (the moment between a run ending and :func:`start_queued`), the new
    fire is skipped.

    Raises:
        ValueError: an unknown policy or negative counts.
    """
    policy = Concurrency(policy)
    _counts(active_runs, queued)
    if policy is Concurrency.ALLOW:
        return FireDecision.START
    if policy is Concurrency.FORBID:
        return FireDecision.SKIP if active_runs else FireDecision.START
    if policy is Concurrency.REPLACE:
        return FireDecision.REPLACE if active_runs else FireDecision.START
    if queued:
        return FireDecision.SKIP
    return FireDecision.QUEUE if active_runs else FireDecision.START


def start_queued(active_runs: int, queued: int) -> bool:
    """Whether the daemon should start its waiting run now (after a run ended or was cancelled).

    True when a run waits (a ``queue`` fire, or a ``replace`` fire whose predecessor is being
    cancelled) and nothing is active any more.
    """
    _counts(active_runs, queued)
    return queued > 0 and active_runs == 0
