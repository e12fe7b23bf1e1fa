"""What the daemon does when a trigger fires while a run of the same agent is active.

- :class:`Concurrency` -- the spec's ``concurrency`` policy, after Kubernetes CronJob's
  ``concurrencyPolicy`` (``Allow``, ``Forbid``, ``Replace``), plus ``queue`` (at most one
  waiting run).
- :class:`FireDecision`, :func:`on_fire` -- the decision for one fire, from the policy and
  the agent's active and queued run counts.
- :class:`FirePlan`, :func:`plan_fire` -- the same decision with the runs it touches: which
  active runs a ``replace`` cancels and which waiting fires it drops. The daemon applies it.
- :func:`start_queued` -- whether the waiting run starts now.
- :class:`RecoveryPlan`, :func:`plan_recovery` -- what a restarted daemon does with the fires
  it had recorded but whose runs never began: the same policy, applied to all of them.

Pure functions of their arguments: the daemon passes the run ids it holds. "Active" runs
are the agent's runs that hold or wait for a worker; "queued" (waiting) fires are recorded
but not handed to a worker yet.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
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
    """Cancel the active runs (SIGTERM, then SIGKILL after a grace; a run still waiting for
    a worker is withdrawn before it starts), drop an older fire that waits, and start the new
    one once the cancelled runs have exited (Kubernetes ``Replace``): never two at once."""


class FireDecision(StrEnum):
    """What the daemon does with one fire (:func:`on_fire`); each is recorded with a reason."""

    START = "start"
    """Start a run now."""
    SKIP = "skip"
    """Start nothing; record the fire as skipped."""
    QUEUE = "queue"
    """Keep the fire as the one waiting run; start it when :func:`start_queued` says so."""
    REPLACE = "replace"
    """Cancel the active runs and drop the waiting fire (:class:`FirePlan` names them), then
    let this fire wait, and start it when :func:`start_queued` says so (when the cancelled
    runs have exited; at once when none was running yet)."""


def _counts(active_runs: int, queued: int) -> None:
    if active_runs < 0 or queued < 0:
        raise ValueError(f"run counts cannot be negative (active {active_runs}, queued {queued})")


def on_fire(policy: Concurrency | str, active_runs: int, queued: int) -> FireDecision:
    """What to do with a fire, given the agent's ``active_runs`` and ``queued`` (0 or 1) runs.

    - ``allow``: start, always.
    - ``forbid``: start when nothing is active, else skip.
    - ``queue``: start when nothing is active and nothing waits; queue when runs are active
      and nothing waits; skip when a run already waits (1).
    - ``replace``: start when nothing is active and nothing waits, else replace (2).

    (1) With ``queue``, a waiting run is started before any newer fire: if one waits while
    nothing is active (the moment between a run ending and :func:`start_queued`), the new
    fire is skipped.
    (2) With ``replace``, the newest fire wins: a fire that waits (its predecessors still
    exiting) is dropped by a newer one, even when nothing is active any more.

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
        return FireDecision.REPLACE if active_runs or queued else FireDecision.START
    if queued:
        return FireDecision.SKIP
    return FireDecision.QUEUE if active_runs else FireDecision.START


@dataclass(frozen=True)
class FirePlan:
    """One fire's decision and the runs it touches (:func:`plan_fire`).

    Attributes:
        decision: what becomes of the new fire.
        cancel: active run ids to cancel (``replace`` only): a run holding a worker is sent
            SIGTERM (stop reason ``cancelled``); one still waiting for a worker is withdrawn
            and never starts. Either way its fire is recorded as cancelled.
        drop: waiting fires (run ids) the new fire supersedes (``replace`` only), recorded as
            cancelled; they never start.
    """

    decision: FireDecision
    cancel: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()


def plan_fire(
    policy: Concurrency | str, active: Collection[str], queued: Sequence[str]
) -> FirePlan:
    """What to do with a fire, given the agent's ``active`` run ids and ``queued`` fires.

    The decision is :func:`on_fire`'s; a ``replace`` also names every active run to cancel
    and every waiting fire to drop, and the new fire then waits until
    :func:`start_queued` says it starts (the daemon asks right away: a run withdrawn before
    it had a worker is gone at once, a running one once it has exited).

    Raises:
        ValueError: an unknown policy.
    """
    decision = on_fire(policy, len(active), len(queued))
    if decision is FireDecision.REPLACE:
        return FirePlan(decision, tuple(sorted(active)), tuple(queued))
    return FirePlan(decision)


def start_queued(active_runs: int, queued: int) -> bool:
    """Whether the daemon should start its waiting run now (after a run ended or was cancelled).

    True when a run waits (a ``queue`` fire, or a ``replace`` fire whose predecessor is being
    cancelled) and nothing is active any more.
    """
    _counts(active_runs, queued)
    return queued > 0 and active_runs == 0


@dataclass(frozen=True)
class RecoveryPlan:
    """What a restarted daemon does with an agent's recovered fires (:func:`plan_recovery`).

    Every recovered fire is in exactly one of ``start``, ``queue``, ``skip`` and ``drop``;
    ``cancel`` names active runs (never recovered fires). Each tuple is in run id order.

    Attributes:
        start: fires to hand to workers now.
        queue: fires that wait (``queue``: behind an active run; ``replace``: the newest
            fire, until the cancelled runs have exited).
        skip: fires recorded as skipped (``forbid``, ``queue``: a run was active or waiting).
        drop: fires recorded as cancelled: a newer fire or run replaced them (``replace``).
        cancel: active runs to cancel: a newer recovered fire replaces them (``replace``).
    """

    start: tuple[str, ...] = ()
    queue: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    cancel: tuple[str, ...] = ()


def plan_recovery(
    policy: Concurrency | str, active: Collection[str], recovered: Collection[str]
) -> RecoveryPlan:
    """Apply an agent's concurrency policy to its recovered fires, all at once.

    ``recovered`` are fires the daemon recorded (started or queued) whose runs never began
    (the daemon died in between); ``active`` are the agent's runs that are running (workers
    adopted from the previous daemon, or already started by this one). Run ids sort by the
    time they stand for (ULIDs: a fire's instant, or a cron slot's), so "oldest" and "newest"
    are run id order.

    - ``allow``: every recovered fire starts (the pool hands out workers as they come).
    - ``forbid``: the oldest starts when nothing is active; every other one is skipped.
    - ``queue``: the oldest starts when nothing is active, else it waits; the next waits when
      the oldest started; every other one is skipped.
    - ``replace``: the newest of all (active runs and recovered fires) wins. If it is a
      recovered fire, every active run is cancelled and it starts once they have exited (at
      once when none is active); every other recovered fire is dropped.

    So recovery is the decision :func:`plan_fire` would make if the recovered fires arrived
    again now, oldest first, except that under ``replace`` a fire older than a run already
    running never displaces it.

    Raises:
        ValueError: an unknown policy, or a run id both active and recovered.
    """
    policy = Concurrency(policy)
    both = set(active) & set(recovered)
    if both:
        raise ValueError(f"runs both active and recovered: {sorted(both)!r}")
    fires = sorted(recovered)
    if policy is Concurrency.REPLACE:
        newest = max([*active, *fires], default=None)
        if newest is None or newest in active:
            return RecoveryPlan(drop=tuple(fires), cancel=tuple(sorted(set(active) - {newest})))
        drop = tuple(f for f in fires if f != newest)
        if active:
            return RecoveryPlan(queue=(newest,), drop=drop, cancel=tuple(sorted(active)))
        return RecoveryPlan(start=(newest,), drop=drop)
    start: list[str] = []
    queue: list[str] = []
    skip: list[str] = []
    for run_id in fires:
        decision = on_fire(policy, len(active) + len(start), len(queue))
        if decision is FireDecision.START:
            start.append(run_id)
        elif decision is FireDecision.QUEUE:
            queue.append(run_id)
        else:
            skip.append(run_id)
    return RecoveryPlan(start=tuple(start), queue=tuple(queue), skip=tuple(skip))
