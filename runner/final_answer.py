"""The final answer: accepted as text, or checked against ``output.schema``.

A reply without tool calls ends the run. With ``output.schema`` in the spec the answer must
be one JSON value (bare, or in a ```json fence) that satisfies it; otherwise the model is
told the problems and asked again, up to ``output.max_retries`` times, and then the run
stops with ``output_invalid``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .errors import OutputInvalid

_FENCE = re.compile(r"^\s*```(?:json)?\s*\n(.*?)\n\s*```\s*$", re.DOTALL)


def parse_json_answer(content: str) -> Any:
    """The JSON value in a final answer (a bare value, or one inside a ```json fence).

    Raises:
        ValueError: when the answer holds no JSON value.
    """
    match = _FENCE.match(content)
    text = match.group(1) if match else content.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"the answer is not JSON ({error.msg} at character {error.pos})") from None


def check_answer(content: str, schema: dict[str, Any]) -> tuple[Any, list[str]]:
    """The answer's JSON value, and its problems against ``schema`` (none: it satisfies it).

    ``schema`` is a JSON Schema (draft 2020-12).
    """
    from jsonschema import Draft202012Validator

    try:
        value = parse_json_answer(content)
    except ValueError as error:
        return None, [str(error)]
    problems = [
        (f"{'/'.join(map(str, e.absolute_path))}: " if e.absolute_path else "") + e.message
        for e in Draft202012Validator(schema).iter_errors(value)
    ]
    return value, problems


def correction_request(schema: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """The user message that asks the model for a corrected answer."""
    return {
        "role": "user",
        "content": "Your answer must be a single JSON value that satisfies this JSON "
        f"Schema:\n{json.dumps(schema)}\nProblems: {'; '.join(problems[:5])}. "
        "Answer again with only the corrected JSON.",
    }


def output_invalid(problems: list[str]) -> OutputInvalid:
    """The stop (``output_invalid``) when the retries are used up."""
    return OutputInvalid(
        "the final answer does not satisfy output.schema: " + "; ".join(problems[:3])
    )


def judge(content: str, output: Any, retries_used: int) -> tuple[Any, dict[str, Any] | None]:
    """The final answer against the spec's ``output``: accepted, or a correction to ask for.

    ``(value, None)`` when accepted; ``(None, the message asking for a corrected answer)``
    when not.

    ``value`` is the parsed JSON when ``output.schema`` is set, else None.

    Raises:
        OutputInvalid: the answer is wrong and ``output.max_retries`` corrections were
            asked for already (stop reason ``output_invalid``).
    """
    if output.schema is None:
        return None, None
    value, problems = check_answer(content, output.schema)
    if not problems:
        return value, None
    if retries_used >= output.max_retries:
        raise output_invalid(problems)
    return None, correction_request(output.schema, problems)
