"""The daemon's state: one :class:`Fire` per trigger firing, one :class:`AgentState` per spec.

Plain data, no I/O; the planner (:mod:`runner.daemon.planner`) changes it, the lifecycle
(:mod:`runner.daemon.lifecycle`) and the listeners read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..spec.vocabulary import TriggerKind


def iso(moment: datetime) -> str:
    """``moment`` in UTC as ISO 8601 with milliseconds (``2026-12-03T06:00:00.000+00:00``)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


@dataclass
class Fire:
    """One trigger firing: what starts, for whom, with which inputs.

    Attributes:
        agent: the agent's name.
        trigger: the trigger's kind (``cron``, ``watch``, ``manual``, ``webhook``).
        trigger_index: the trigger's position in the spec's ``triggers`` list.
        run_id: the run it starts (a cron slot's is derived from the slot,
            :func:`runner.triggers.slot_run_id`; any other is a fresh ULID).
        inputs: the run's inputs, already coerced to their declared types.
        slot: a cron fire's slot instant (UTC), else None.
        key: an idempotency key (a manual trigger's ``--key``, a webhook's delivery id).
        resume: True when it continues a recorded run that paused or was interrupted (no
            new fire: its run id is the recorded run's, its trigger the run's first one).
        traceparent: the W3C ``traceparent`` a webhook delivery carried (valid, normalised):
            the run's trace continues the sender's (:mod:`runner.telemetry`). Not kept in
            the store: a fire started again after a restart begins a trace of its own.
    """

    agent: str
    trigger: TriggerKind
    trigger_index: int
    run_id: str
    inputs: dict[str, Any] = field(default_factory=dict)
    slot: datetime | None = None
    key: str | None = None
    resume: bool = False
    traceparent: str | None = None


@dataclass
class AgentState:
    """One loaded spec and its scheduling state.

    Attributes:
        spec: the last good :class:`runner.spec.AgentSpec` of the file.
        path: the spec file.
        mtime: the file's modification time when it was loaded (seconds since the epoch).
        generation: increases with every (re)load, so entries of an older version of the
            spec (cron heap entries, file events) are recognised and ignored.
        source: the file's bytes as loaded (workers run this, not what is on disk now).
        crons: trigger index -> its :class:`runner.triggers.CronSchedule`.
        next_fire: trigger index -> the next slot (UTC).
        active: run ids that hold or wait for a worker.
        queued: fires recorded but not handed to a worker yet, oldest first.
        last_outcome: the last run's stop reason and id, for ``daemon status``.
    """

    spec: Any
    path: Path
    mtime: float
    generation: int
    source: bytes = b""
    crons: dict[int, Any] = field(default_factory=dict)
    next_fire: dict[int, datetime] = field(default_factory=dict)
    active: set[str] = field(default_factory=set)
    queued: list[Fire] = field(default_factory=list)
    last_outcome: str = ""

    @property
    def name(self) -> str:
        """The agent's name."""
        return str(self.spec.name)
