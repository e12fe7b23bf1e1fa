"""The spec's vocabulary: autonomy levels, risks and trigger kinds, as string enums.

A leaf of the spec package (it imports nothing of agentrun), so that the types
(:mod:`runner.spec.types`) and the catalogue of built-in tools
(:mod:`runner.spec.builtin_tools`, whose entries carry a risk) both name these without
importing each other. Each is a :class:`~enum.StrEnum`: a member is equal to its string,
so specs, JSON, the run store and ``agentrun explain`` see the same words as before; the
values are the ``enum`` lists of ``schemas/agent.schema.json``.
"""

from __future__ import annotations

from enum import StrEnum


class AutonomyLevel(StrEnum):
    """How much of a run goes on without a person (the spec's ``autonomy:``).

    The levels follow the usual five of human involvement; :mod:`runner.policy` says which
    risks run alone at each.
    """

    SUGGEST = "suggest"
    """Nothing runs: the model's tool calls are recorded as proposals."""
    APPROVE_ALL = "approve-all"
    """Every tool call asks a person."""
    APPROVE_WRITES = "approve-writes"
    """Low-risk calls run; anything riskier asks."""
    APPROVE_RISKY = "approve-risky"
    """Low- and medium-risk calls run; high-risk calls ask."""
    AUTONOMOUS = "autonomous"
    """Every call the spec allows runs without asking."""


class Risk(StrEnum):
    """How much harm one tool call can do (a tool's default, or the spec's ``risk:``)."""

    LOW = "low"
    """Reads and changes nothing outside the run (``read_file``, ``list_dir``)."""
    MEDIUM = "medium"
    """Writes in declared places or reads the network (``write_file``, HTTP ``GET``)."""
    HIGH = "high"
    """Anything else: commands, writes to the network, code nobody reviewed."""


class TriggerKind(StrEnum):
    """What starts a run of the daemon (the key a spec's trigger sets)."""

    CRON = "cron"
    """A cron expression in a time zone."""
    WATCH = "watch"
    """Files changing under watched folders (debounced)."""
    MANUAL = "manual"
    """``agentrun trigger`` or the control API."""
    WEBHOOK = "webhook"
    """A signed HTTP request to the daemon."""
    QUEUE = "queue"
    """A message of a Redis stream, read in a consumer group."""
