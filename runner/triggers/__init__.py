"""Triggers: the pure, clock-injected rules the scheduler daemon is built on.

Nothing in this package reads the clock, sleeps, starts a thread or watches a folder: every
function that depends on time takes the current time as an argument, so the daemon and the
tests decide what "now" is (the one I/O is :func:`fingerprint`, which stats a file). The
daemon process itself (its loop, store rows, workers) lives in :mod:`runner.daemon` and
calls these functions. In the style of APScheduler v4, a trigger is just "what is the next
fire time after this one" (:meth:`CronSchedule.next_after`), and every policy is an enum
whose members say where their meaning comes from.

One module per concept; every name is re-exported here, so ``from runner.triggers import
...`` is the way to use them:

- :mod:`runner.triggers.cron` -- :class:`CronSchedule` (croniter behind our own small
  interface) and the daylight-saving rule; :func:`cron_problem` and
  :func:`timezone_problem` for the spec checks; catch-up after downtime
  (:class:`Catchup`, :data:`DEFAULT_GRACE`, :func:`missed_slots`: APScheduler's coalescing
  and ``misfire_grace_time``, Kubernetes CronJob's ``startingDeadlineSeconds``) and run
  identity (:func:`slot_run_id`).
- :mod:`runner.triggers.concurrency` -- :class:`Concurrency` (Kubernetes CronJob's
  ``concurrencyPolicy`` plus ``queue``), :class:`FireDecision`, :func:`on_fire`,
  :func:`start_queued`, :func:`plan_fire` and :func:`plan_recovery` (what a fire or a
  restart starts, cancels and drops).
- :mod:`runner.triggers.watch` -- :class:`EventKind` (watchdog's event types),
  :class:`Change`, :class:`WatchEvent`, :func:`from_watchdog`, :class:`WatchFilter` (globs
  as in :mod:`fnmatch` plus ``**``, and :data:`BUILTIN_IGNORES` for editor noise),
  :class:`Debouncer`, :class:`SelfWriteFilter`.
- :mod:`runner.triggers.webhook` -- :func:`verify_signature` (GitHub's
  ``X-Hub-Signature-256``), :class:`ReplayGuard` (GitHub's ``X-GitHub-Delivery``),
  :func:`inputs_from_payload`.
- :mod:`runner.triggers.queue` -- ``fire_key`` (a Redis stream entry's idempotency key, from
  the stream and the entry id), ``payload_of`` and ``queue_url``, imported from that module
  (not re-exported here); the consumer itself is the daemon's (:mod:`runner.daemon.queueing`).

Importing this package imports none of its submodules: each name is imported from its
submodule on first use (PEP 562 ``__getattr__``), so ``agentrun validate`` pays for the cron
module and not for the watch, webhook and concurrency ones. croniter and watchdog are
imported inside the functions that need them.

Daylight saving (issue 6; the full rule, with examples and how it differs from Debian cron,
is in :mod:`runner.triggers.cron`): cron fields name wall-clock times in the trigger's IANA
zone, and each wall time fires once, for every expression. A wall time that occurs twice
(autumn) fires at its first occurrence; a wall time skipped (spring) fires at the first
instant after the gap; all the wall times that resolve to the same instant fire once
together. Users who want a fixed real interval across DST changes should use
``timezone: UTC``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .concurrency import (
        Concurrency,
        FireDecision,
        FirePlan,
        RecoveryPlan,
        on_fire,
        plan_fire,
        plan_recovery,
        start_queued,
    )
    from .cron import (
        ALIASES,
        DEFAULT_GRACE,
        Catchup,
        CronSchedule,
        cron_problem,
        missed_slots,
        slot_run_id,
        timezone_problem,
    )
    from .watch import (
        ALL_EVENTS,
        BUILTIN_IGNORES,
        DEFAULT_EVENTS,
        Burst,
        Change,
        Debouncer,
        EventKind,
        Fingerprint,
        PathHistory,
        SelfWriteFilter,
        WatchEvent,
        WatchFilter,
        fingerprint,
        from_watchdog,
    )
    from .webhook import (
        MAX_PAYLOAD_DEPTH,
        REPLAY_CAPACITY,
        REPLAY_WINDOW_S,
        BodyReplayWindow,
        PayloadError,
        PayloadPathError,
        ReplayGuard,
        body_digest,
        inputs_from_payload,
        parse_payload,
        verify_signature,
    )

_SUBMODULE = {
    "ALIASES": "cron",
    "ALL_EVENTS": "watch",
    "BUILTIN_IGNORES": "watch",
    "BodyReplayWindow": "webhook",
    "Burst": "watch",
    "Catchup": "cron",
    "Change": "watch",
    "Concurrency": "concurrency",
    "CronSchedule": "cron",
    "DEFAULT_EVENTS": "watch",
    "DEFAULT_GRACE": "cron",
    "Debouncer": "watch",
    "EventKind": "watch",
    "Fingerprint": "watch",
    "FireDecision": "concurrency",
    "FirePlan": "concurrency",
    "MAX_PAYLOAD_DEPTH": "webhook",
    "PathHistory": "watch",
    "PayloadError": "webhook",
    "PayloadPathError": "webhook",
    "REPLAY_CAPACITY": "webhook",
    "REPLAY_WINDOW_S": "webhook",
    "RecoveryPlan": "concurrency",
    "ReplayGuard": "webhook",
    "SelfWriteFilter": "watch",
    "WatchEvent": "watch",
    "WatchFilter": "watch",
    "body_digest": "webhook",
    "cron_problem": "cron",
    "fingerprint": "watch",
    "from_watchdog": "watch",
    "inputs_from_payload": "webhook",
    "missed_slots": "cron",
    "on_fire": "concurrency",
    "parse_payload": "webhook",
    "plan_fire": "concurrency",
    "plan_recovery": "concurrency",
    "slot_run_id": "cron",
    "start_queued": "concurrency",
    "timezone_problem": "cron",
    "verify_signature": "webhook",
}

__all__ = [
    "ALIASES",
    "ALL_EVENTS",
    "BUILTIN_IGNORES",
    "DEFAULT_EVENTS",
    "DEFAULT_GRACE",
    "MAX_PAYLOAD_DEPTH",
    "REPLAY_CAPACITY",
    "REPLAY_WINDOW_S",
    "BodyReplayWindow",
    "Burst",
    "Catchup",
    "Change",
    "Concurrency",
    "CronSchedule",
    "Debouncer",
    "EventKind",
    "Fingerprint",
    "FireDecision",
    "FirePlan",
    "PathHistory",
    "PayloadError",
    "PayloadPathError",
    "RecoveryPlan",
    "ReplayGuard",
    "SelfWriteFilter",
    "WatchEvent",
    "WatchFilter",
    "body_digest",
    "cron_problem",
    "fingerprint",
    "from_watchdog",
    "inputs_from_payload",
    "missed_slots",
    "on_fire",
    "parse_payload",
    "plan_fire",
    "plan_recovery",
    "slot_run_id",
    "start_queued",
    "timezone_problem",
    "verify_signature",
]


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` on first use (PEP 562)."""
    module = _SUBMODULE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_SUBMODULE])
