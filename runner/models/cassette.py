"""Record and replay of model traffic: cassettes.

A cassette is a readable YAML file holding one run's model calls: what each request sent
(the conversation, the tool list, ``tool_choice``) and what the model replied (text, tool
calls, usage, USD cost, model id, finish reason). :class:`RecordingModel` wraps any
:class:`~runner.models.base.Model` and writes the cassette after every call, so a run that
crashes still leaves the calls it made. :class:`ReplayModel` answers from a cassette with
no network and no API key; each request is compared with the recorded one, and the first
difference ends the run with stop reason ``error`` (:class:`CassetteDiverged`). The idea
and the name follow VCR (Ruby) and go-vcr, as docker-agent uses them for model traffic.

The file's format, its reading and its rebuilding from the run store are in
:mod:`runner.models.cassette_file`.

What may legitimately differ between the recording and the replay, and how:

- Secrets: both sides pass through the same redaction (the caller's ``redact``, the
  spec's secret variables), so a key in the conversation is ``[REDACTED]`` in the file
  and compared as such; the replayed replies carry the redacted text.
- The workdir: its absolute path is written as ``{workdir}`` and put back at replay, so a
  cassette recorded in a checkout replays in ``agentrun test``'s temporary copy.
- Tool call ids come from the model's reply, which is replayed, so they match as they are.
- Tool results are compared as they are: a tool whose output changes from run to run (a
  clock, a random name) makes the replay diverge unless the cassette's ``ignore`` patterns
  mask it. Durations and timestamps are never part of a request (the loop keeps them in
  its events, not in the conversation).

Redaction is a callable injected by the caller (the CLI, ``agentrun test``): the models
layer may not import :mod:`runner.redact`.
"""

from __future__ import annotations

import copy
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from ..errors import ModelError
from .base import Model, ModelReply
from .cassette_file import (
    EXCERPT_CHARS,
    WORKDIR_MARK,
    Cassette,
    CassetteDiverged,
    Interaction,
    Redact,
    load_cassette,
    parse_reply,
    plain_copy,
    reply_data,
    short_repr,
    swap_text,
    workdir_text,
)

#: What an ``ignore`` pattern's matches become, on both sides, before comparing.
IGNORED = "…"

# -----------------------------------------------------------------------------------------
# the two models


class RecordingModel(Model):
    """Wraps ``inner`` and records each of its calls to the cassette at ``path``.

    Every ability is the inner model's; :meth:`complete` also writes the whole cassette
    (atomically: a new file renamed over the old, mode 0600) after each call, including a
    call that failed with :class:`~runner.errors.ModelError` (recorded as ``error``).

    Args:
        inner: the model that answers.
        path: the cassette file to write (replaced if it exists).
        redact: masks secrets in a JSON-like value; applied to everything written. The
            caller passes the spec's (``Redactor(secret_variables(spec)).value``).
        workdir: the run's workdir; its absolute path is written as ``{workdir}``.
        agent: the spec's name, written for the reader.
    """

    def __init__(
        self,
        inner: Model,
        path: str | Path,
        redact: Redact | None = None,
        workdir: str | Path | None = None,
        agent: str = "",
    ) -> None:
        self.inner = inner
        self.path = Path(path)
        self.redact: Redact = redact or (lambda value: value)
        self.workdir = workdir_text(workdir)
        self.name = inner.name
        self.pricing = inner.pricing
        self.estimate_pricing = inner.estimate_pricing
        self.cassette = Cassette(agent=agent, model=inner.name)
        self._estimated = False

    def _clean(self, value: Any) -> Any:
        """What the file holds of ``value``: copied, redacted, the workdir marked."""
        clean = plain_copy(self.redact(value))
        return swap_text(clean, self.workdir, WORKDIR_MARK) if self.workdir else clean

    def prepare(self) -> None:
        """The inner model's."""
        self.inner.prepare()

    @property
    def prepare_is_quick(self) -> bool:
        """The inner model's."""
        return self.inner.prepare_is_quick

    async def aclose(self) -> None:
        """The inner model's; a budget estimate made after the last call is written too."""
        if self._estimated:
            self._write()
        await self.inner.aclose()

    @property
    def max_output_tokens(self) -> int:
        """The inner model's."""
        return self.inner.max_output_tokens

    def count_prompt_tokens(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
    ) -> int:
        """The inner model's count, kept for the replay's budget estimates."""
        count = self.inner.count_prompt_tokens(messages, tools)
        estimates = self.cassette.prompt_token_estimates
        position = len(self.cassette.interactions)
        del estimates[position:]
        estimates.extend([0] * (position - len(estimates)))
        estimates.append(count)
        self._estimated = True
        return count

    async def complete(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        tool_choice: str | dict[str, Any] | None = None,
    ) -> ModelReply:
        """The inner model's reply, recorded (with its request) before it is returned.

        Raises:
            ModelError: the inner model's, recorded first as the interaction's ``error``.
        """
        request = self._clean({"m": messages, "t": tools, "c": tool_choice})
        cassette = self.cassette
        if not cassette.interactions:
            cassette.tools = request["t"]
            cassette.max_output_tokens = self.inner.max_output_tokens
            cassette.pricing = self.inner.pricing
            cassette.estimate_pricing = self.inner.estimate_pricing
        interaction = Interaction(
            messages=request["m"], tools=request["t"], tool_choice=request["c"]
        )
        try:
            reply = await self.inner.complete(messages, tools, tool_choice)
        except ModelError as error:
            interaction.error = str(self._clean(str(error)))
            cassette.interactions.append(interaction)
            self._write()
            raise
        interaction.reply = parse_reply(self._clean(reply_data(reply)), "reply")
        cassette.interactions.append(interaction)
        self._write()
        return reply

    def _write(self) -> None:
        """Replace the cassette file with the calls so far (a new file, renamed over)."""
        self._estimated = False
        text = self.cassette.to_yaml()
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write(text)
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


class ReplayModel(Model):
    """Answers from a cassette, comparing each request with the recorded one; no network.

    Args:
        path: the cassette file (:func:`load_cassette`).
        redact: the same redaction the recording used, applied to each live request
            before comparing (the file holds the redacted form).
        workdir: the run's workdir: ``{workdir}`` in the cassette's replies becomes it, and
            it is written as ``{workdir}`` in the live requests before comparing.

    Attributes:
        calls: how many requests were answered so far.
        divergence: the message of the divergence that ended the run, or None.

    Raises:
        CassetteInvalid: at construction, when ``path`` is not a valid cassette.
    """

    def __init__(
        self, path: str | Path, redact: Redact | None = None, workdir: str | Path | None = None
    ) -> None:
        self.path = Path(path)
        self.cassette = load_cassette(path)
        self.redact: Redact = redact or (lambda value: value)
        self.workdir = workdir_text(workdir)
        self.name = self.cassette.model
        self.pricing = self.cassette.pricing
        self.estimate_pricing = self.cassette.estimate_pricing
        self.calls = 0
        self.divergence: str | None = None
        self._ignore = [re.compile(pattern) for pattern in self.cassette.ignore]

    @property
    def max_output_tokens(self) -> int:
        """The recorded model's output bound (0 when the cassette does not say)."""
        return self.cassette.max_output_tokens

    def count_prompt_tokens(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
    ) -> int:
        """The count the recorded model made before this call (0 when none was recorded)."""
        estimates = self.cassette.prompt_token_estimates
        return estimates[self.calls] if self.calls < len(estimates) else 0

    @property
    def remaining(self) -> int:
        """Recorded calls the run has not asked for (yet)."""
        return len(self.cassette.interactions) - self.calls

    def _comparable(self, value: Any) -> Any:
        """``value`` as compared: copied, the workdir marked, ``ignore`` matches masked."""
        value = plain_copy(value)
        if self.workdir:
            value = swap_text(value, self.workdir, WORKDIR_MARK)
        if self._ignore:
            value = _masked(value, self._ignore)
        return value

    async def complete(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        tool_choice: str | dict[str, Any] | None = None,
    ) -> ModelReply:
        """The recorded reply of the next interaction, once the request matches it.

        Raises:
            CassetteDiverged: the request differs from the recorded one (the message names
                the request, the first difference and both values), or the cassette holds
                no more interactions.
            ModelError: the recorded call failed (its message).
        """
        number = self.calls + 1
        interactions = self.cassette.interactions
        if self.calls >= len(interactions):
            held = len(interactions)
            self._diverge(
                f"request {number} has no recording: the cassette {self.path} holds "
                f"{held} interaction{'s' if held != 1 else ''}, and the run asked the model "
                "once more; record it again with --record if the change is intended",
                number,
            )
        recorded = interactions[self.calls]
        live = {"messages": self.redact(messages), "tools": self.redact(tools)}
        live["tool_choice"] = self.redact(tool_choice)
        for part in self.cassette.compares:
            if part == "tools" and recorded.tools is None:
                continue  # unknown (rebuilt from the run store)
            expected = getattr(recorded, part)
            difference = first_difference(
                self._comparable(expected), self._comparable(live[part]), part
            )
            if difference is not None:
                where, what = difference
                self._diverge(
                    f"request {number} diverges from the cassette {self.path} at {where}: "
                    f"{what}; record it again with --record if the change is intended",
                    number,
                )
        self.calls += 1
        if recorded.reply is None:
            raise ModelError(f"{recorded.error} (as recorded in the cassette {self.path})")
        reply = recorded.reply
        if self.workdir:
            reply = parse_reply(swap_text(reply_data(reply), WORKDIR_MARK, self.workdir), "reply")
        return copy.deepcopy(reply)

    def _diverge(self, message: str, number: int) -> None:
        self.divergence = message
        raise CassetteDiverged(message, number)


def _masked(value: Any, patterns: list[re.Pattern[str]]) -> Any:
    if isinstance(value, str):
        for pattern in patterns:
            value = pattern.sub(IGNORED, value)
        return value
    if isinstance(value, dict):
        return {key: _masked(item, patterns) for key, item in value.items()}
    if isinstance(value, list):
        return [_masked(item, patterns) for item in value]
    return value


# -----------------------------------------------------------------------------------------
# comparing


def first_difference(recorded: Any, live: Any, where: str) -> tuple[str, str] | None:
    """Where ``live`` first differs from ``recorded``, and how, or None when equal.

    Args:
        recorded: the value from the cassette (JSON-like).
        live: the value the run sent.
        where: the path of both, such as ``messages``.

    Returns:
        ``(path, description)``: ``("messages[4].content", "recorded 'X', got 'Y'")``.
        Mappings are compared key by key (in the recorded order, then the new keys), lists
        item by item, then by length; texts show an excerpt around their first difference.
    """
    if isinstance(recorded, dict) and isinstance(live, dict):
        for key in [*recorded, *(k for k in live if k not in recorded)]:
            here = f"{where}.{key}"
            if key not in live:
                return here, f"recorded {short_repr(recorded[key])}, got no {key!r}"
            if key not in recorded:
                return here, f"recorded no {key!r}, got {short_repr(live[key])}"
            found = first_difference(recorded[key], live[key], here)
            if found is not None:
                return found
        return None
    if isinstance(recorded, list) and isinstance(live, list):
        for index, (old, new) in enumerate(zip(recorded, live, strict=False)):
            found = first_difference(old, new, f"{where}[{index}]")
            if found is not None:
                return found
        if len(recorded) > len(live):
            index = len(live)
            return f"{where}[{index}]", f"recorded {short_repr(recorded[index])}, got nothing"
        if len(live) > len(recorded):
            index = len(recorded)
            return f"{where}[{index}]", f"recorded nothing, got {short_repr(live[index])}"
        return None
    if recorded == live and type(recorded) is type(live):
        return None
    if isinstance(recorded, str) and isinstance(live, str):
        old, new = _excerpts(recorded, live)
        return where, f"recorded {old}, got {new}"
    return where, f"recorded {short_repr(recorded)}, got {short_repr(live)}"


def _excerpts(old: str, new: str) -> tuple[str, str]:
    """Both texts around their first differing character, each as a ``repr`` excerpt."""
    at = next(
        (i for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b),
        min(len(old), len(new)),
    )
    start = max(0, at - EXCERPT_CHARS // 3)

    def excerpt(text: str) -> str:
        part = text[start : start + EXCERPT_CHARS]
        return (
            ("…" if start else "") + repr(part) + ("…" if start + EXCERPT_CHARS < len(text) else "")
        )

    return excerpt(old), excerpt(new)
