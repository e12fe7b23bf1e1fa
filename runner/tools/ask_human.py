"""The built-in ``ask_human`` tool: the model asks a person a question.

It is not run like the other tools: the loop (:mod:`runner.tool_calls`) sees the call,
records a :class:`~runner.events.QuestionAsked`, and gets the answer from the run's approver
(:meth:`runner.policy.Approver.answer`: the terminal, or the spec's ``unattended`` rule,
which may pause the run until ``agentrun answer``, the API or the console answers). The
answer, as text, is the call's result. This module holds what the model sees (the name,
the description and the JSON Schema of the arguments) and the question's deadline;
:meth:`runner.tool_calls.ToolCaller._ask_human` turns the arguments into a
:class:`~runner.policy.Question`.

The tool's risk is ``low``: asking acts on nothing. It never needs an approval, whatever
the autonomy level (``suggest`` included: a question proposes no action), but a ``deny``
rule on it still refuses it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ..errors import ToolError
from ..spec.vocabulary import Risk
from . import Tool

#: The JSON Schema (draft 2020-12) of the tool's arguments.
PARAMETERS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["question"],
    "properties": {
        "question": {
            "type": "string",
            "minLength": 1,
            "description": "The question, in a sentence or two a person can answer.",
        },
        "context": {
            "type": "string",
            "description": "What the person needs to know to answer: what you did and found.",
        },
        "choices": {
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "minItems": 2,
            "uniqueItems": True,
            "description": "The answers to choose from; omit for a free-text answer.",
        },
    },
}


class AskHuman(Tool):
    """Ask a person; the answer is the result. Built from ``tools.ask_human`` in the spec.

    Args:
        answer_timeout: the longest wait for an answer, in seconds, or None for no limit.
            When it passes, the run stops with stop reason ``answer_timeout``.
    """

    name = "ask_human"
    description = (
        "Ask a person a question when you need a decision or information only a person "
        "has. Give the context they need; give choices when the answer is one of a few. "
        "The run waits for the answer, which comes back as this tool's result."
    )
    parameters = PARAMETERS
    risk = Risk.LOW

    def __init__(self, answer_timeout: float | None = None) -> None:
        self.answer_timeout = answer_timeout

    def expires_at(self, now: datetime | None = None) -> str | None:
        """When a question asked ``now`` (default: the current time) stops waiting.

        UTC ISO-8601, or None when there is no ``answer_timeout``.
        """
        if self.answer_timeout is None:
            return None
        moment = (now or datetime.now(UTC)) + timedelta(seconds=self.answer_timeout)
        return moment.isoformat(timespec="milliseconds")

    def run(self, arguments: dict[str, Any]) -> str:
        """Never called: the loop asks the person (see the module docstring).

        Raises:
            ToolError: always, should anything call it directly.
        """
        raise ToolError("ask_human is answered by a person through the run, not executed")
