"""One run as the events of the JSONL export (``agentrun runs export``), built from its rows.

The format is documented in ``docs/run-store.md``; any :class:`runner.store.RunStore`
implementation builds it with :func:`export_events` from what it read. The run event log
(:mod:`runner.store.event_log`) builds its events with the same functions, so a live view
and an export show an event alike.
"""

from __future__ import annotations

import json
from typing import Any

from .rows import ModelCallRow, RunRow, ToolCallRow


def run_started_event(run: RunRow) -> dict[str, Any]:
    """The ``run_started`` event of ``run``."""
    return {
        "type": "run_started",
        "run_id": run.id,
        "at": run.started_at,
        "agent": run.agent,
        "model": run.model,
        "trigger": run.trigger,
        "spec_path": run.spec_path,
        "spec_sha256": run.spec_sha256,
        "inputs": json.loads(run.inputs_json),
        "goal": run.goal,
    }


def model_call_event(run_id: str, call: ModelCallRow) -> dict[str, Any]:
    """The ``model_call`` event of one ``model_calls`` row (tokens, USD, seconds, the reply)."""
    return {
        "type": "model_call",
        "run_id": run_id,
        "at": call["created_at"],
        "step": call["step"],
        "model": call["model"],
        "input_tokens": call["input_tokens"],
        "output_tokens": call["output_tokens"],
        "cost_usd": call["cost_usd"],
        "duration_s": call["duration_s"],
        "content": call["content"],
        "tool_calls": json.loads(call["tool_calls_json"]),
        "error": call["error"],
    }


def tool_call_event(run_id: str, tool_call: ToolCallRow) -> dict[str, Any]:
    """The ``tool_call`` event of one ``tool_calls`` row (arguments, decision, result, seconds)."""
    return {
        "type": "tool_call",
        "run_id": run_id,
        "at": tool_call["created_at"],
        "step": tool_call["step"],
        "call_id": tool_call["call_id"],
        "tool": tool_call["tool"],
        "risk": tool_call["risk"],
        "arguments": tool_call["arguments"],
        "decision": tool_call["decision"],
        "status": tool_call["status"],
        "result": tool_call["result"],
        "error": tool_call["error"],
        "duration_s": tool_call["duration_s"],
    }


def run_finished_event(run: RunRow) -> dict[str, Any]:
    """The ``run_finished`` event of an ended ``run``: its stop reason, answer and totals.

    An escalated run's also says which stop reason escalated it (``escalated_from``).
    """
    event = {
        "type": "run_finished",
        "run_id": run.id,
        "at": run.ended_at,
        "stop_reason": run.stop_reason,
        "final": run.final,
        "result": None if run.result_json is None else json.loads(run.result_json),
        "message": run.message,
        "steps": run.steps,
        "tool_calls": run.tool_calls,
        "input_tokens": run.input_tokens,
        "output_tokens": run.output_tokens,
        "cost_usd": run.cost_usd,
        "duration_s": run.duration_s,
        "traceback": run.traceback,
    }
    if run.stop_reason == "escalated" and run.escalated_from is not None:
        event["escalated_from"] = run.escalated_from
    return event


def export_events(
    run: RunRow, model_calls: list[ModelCallRow], tool_calls: list[ToolCallRow]
) -> list[dict[str, Any]]:
    """The run's events in order: ``run_started``, each step's calls, ``run_finished``.

    Per step the ``model_call`` comes before its ``tool_call`` events; ``run_finished`` only
    once the run has ended. Each event has ``type``, ``run_id``, ``at`` (UTC ISO-8601) and
    the event's fields.
    """
    events = [run_started_event(run)]
    steps: list[tuple[str, int, int, dict[str, Any]]] = [
        (call["created_at"], call["step"], 0, model_call_event(run.id, call))
        for call in model_calls
    ]
    steps.extend(
        (tool_call["created_at"], tool_call["step"], 1, tool_call_event(run.id, tool_call))
        for tool_call in tool_calls
    )
    events.extend(event for *_, event in sorted(steps, key=lambda s: (s[1], s[2], s[0])))
    if run.ended_at:
        events.append(run_finished_event(run))
    return events
