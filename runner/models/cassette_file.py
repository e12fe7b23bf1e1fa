"""The cassette file: what a recording holds, its YAML form, and reading it back checked.

:class:`Cassette` and :class:`Interaction` are one run's model calls as data;
:meth:`Cassette.to_yaml` writes them readable, :func:`load_cassette` reads them back and
names the first thing wrong (:class:`CassetteInvalid`), and :func:`cassette_from_run`
rebuilds one from the run store. The models that record and replay are in
:mod:`runner.models.cassette`.

The file, version 1 (docs/concepts/testing.md, "Record and replay")::

    version: 1
    agent: hello                     # the spec's name and model id, for the reader
    model: local/smollm2
    max_output_tokens: 60            # the budget estimate's inputs, replayed (optional)
    pricing: {input_per_mtok: 0.0, output_per_mtok: 0.0}
    prompt_token_estimates: [312, 401]
    compares: [messages, tools, tool_choice]   # what a replay compares (default: all)
    ignore: ['[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+']   # masked on both sides (optional)
    tools: [...]                     # the tool list every request sent unless its own
    interactions:
      - request:
          messages: [...]            # the messages added since the previous request
          tool_choice: required      # only when one was given
        reply:
          content: null
          tool_calls: [{id: call_0, name: read_file, arguments: '{"path": "a.txt"}'}]
          usage: {input_tokens: 312, output_tokens: 21}
          cost_usd: 0.0
          model: local/smollm2
          finish_reason: tool_calls
      - request: {...}
        error: "model 'x' failed: ..."   # the call failed: a replay raises ModelError
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import RunStop, StopReason, UsageError
from ..spec import Pricing
from .base import ModelReply, ToolCallRequest, Usage

#: The cassette format's version, the file's ``version`` key.
CASSETTE_VERSION = 1
#: How the workdir's absolute path is written in a cassette.
WORKDIR_MARK = "{workdir}"
#: What a replay can compare, the values of a cassette's ``compares``.
COMPARED = ("messages", "tools", "tool_choice")

#: Longest excerpt of a value a message shows, in characters.
EXCERPT_CHARS = 80

#: Takes a JSON-like value, returns it with secrets masked (``Redactor.value``).
Redact = Callable[[Any], Any]


class CassetteInvalid(UsageError):
    """A cassette file that cannot be read: names the file and what is wrong (exit 2)."""


class CassetteDiverged(RunStop):
    """A replayed run asked for something the cassette did not record; stop reason ``error``.

    Attributes:
        request: the 1-based number of the request that diverged.
    """

    def __init__(self, message: str, request: int) -> None:
        super().__init__(message, StopReason.ERROR)
        self.request = request


@dataclass
class Interaction:
    """One recorded model call.

    Attributes:
        messages: the whole conversation the request sent (rebuilt from the file's
            increments).
        tools: the tool list it sent (the cassette's shared one unless its own).
        tool_choice: the ``tool_choice`` it sent, or None.
        reply: what the model answered, or None when the call failed.
        error: the failure's message when the call failed (a replay raises ``ModelError``).
    """

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    reply: ModelReply | None = None
    error: str | None = None


@dataclass
class Cassette:
    """A cassette in memory; :func:`load_cassette` reads one, :meth:`to_yaml` writes one.

    Attributes:
        agent: the spec's name when recorded.
        model: the spec's model id when recorded (the replay model's name).
        interactions: the model calls, in order.
        tools: the tool list shared by the requests that have none of their own, or None
            when unknown (a cassette rebuilt from the run store).
        compares: the parts of each request a replay compares (:data:`COMPARED`).
        ignore: regular expressions whose matches are masked on both sides first.
        max_output_tokens: the model's output bound for budget estimates (0: unknown).
        pricing: USD per million tokens, or None.
        estimate_pricing: the price a budget estimate assumes, or None.
        prompt_token_estimates: the prompt tokens the model counted before each call
            (for budget estimates); empty when the spec had no token or cost limit.
        comment: the first lines, written as YAML comments.
    """

    agent: str
    model: str
    interactions: list[Interaction] = field(default_factory=list)
    tools: list[dict[str, Any]] | None = None
    compares: tuple[str, ...] = COMPARED
    ignore: tuple[str, ...] = ()
    max_output_tokens: int = 0
    pricing: Pricing | None = None
    estimate_pricing: Pricing | None = None
    prompt_token_estimates: list[int] = field(default_factory=list)
    comment: str = "agentrun cassette: one run's model traffic; replay: agentrun run --replay FILE"

    def as_data(self) -> dict[str, Any]:
        """The file's mapping (see the module docstring), the conversation in increments."""
        data: dict[str, Any] = {"version": CASSETTE_VERSION, "agent": self.agent}
        data["model"] = self.model
        if self.max_output_tokens:
            data["max_output_tokens"] = self.max_output_tokens
        if self.pricing is not None:
            data["pricing"] = _price(self.pricing)
        if self.estimate_pricing is not None and self.estimate_pricing != self.pricing:
            data["estimate_pricing"] = _price(self.estimate_pricing)
        if self.prompt_token_estimates:
            data["prompt_token_estimates"] = list(self.prompt_token_estimates)
        if tuple(self.compares) != COMPARED:
            data["compares"] = list(self.compares)
        if self.ignore:
            data["ignore"] = list(self.ignore)
        if self.tools is not None:
            data["tools"] = self.tools
        interactions = []
        previous: list[dict[str, Any]] = []
        for interaction in self.interactions:
            request: dict[str, Any] = {}
            messages = interaction.messages
            if messages[: len(previous)] == previous:
                request["messages"] = messages[len(previous) :]
            else:  # not an extension of the previous request: written whole
                request["all_messages"] = messages
            previous = messages
            if interaction.tools is not None and interaction.tools != self.tools:
                request["tools"] = interaction.tools
            if interaction.tool_choice is not None:
                request["tool_choice"] = interaction.tool_choice
            item: dict[str, Any] = {"request": request}
            if interaction.reply is not None:
                item["reply"] = reply_data(interaction.reply)
            if interaction.error is not None:
                item["error"] = interaction.error
            interactions.append(item)
        data["interactions"] = interactions
        return data

    def to_yaml(self) -> str:
        """The cassette as YAML text: keys in the documented order, long texts as blocks."""
        body = yaml.dump(
            self.as_data(),
            Dumper=_Dumper,
            sort_keys=False,
            allow_unicode=True,
            width=100,
            default_flow_style=False,
        )
        header = "".join(f"# {line}\n" for line in self.comment.splitlines())
        return header + body


def _price(pricing: Pricing) -> dict[str, float]:
    return {
        "input_per_mtok": pricing.input_per_mtok,
        "output_per_mtok": pricing.output_per_mtok,
    }


def reply_data(reply: ModelReply) -> dict[str, Any]:
    """A reply as the cassette writes it (``failed_attempts`` only when there were some)."""
    data: dict[str, Any] = {
        "content": reply.content,
        "tool_calls": [
            {"id": call.id, "name": call.name, "arguments": call.arguments}
            for call in reply.tool_calls
        ],
        "usage": {
            "input_tokens": reply.usage.input_tokens,
            "output_tokens": reply.usage.output_tokens,
        },
        "cost_usd": reply.cost_usd,
        "model": reply.model,
        "finish_reason": reply.finish_reason,
    }
    if reply.failed_attempts:
        data["failed_attempts"] = list(reply.failed_attempts)
    return data


class _Dumper(yaml.SafeDumper):
    """Safe YAML with no anchors (each request reads on its own) and block texts."""

    def ignore_aliases(self, data: Any) -> bool:
        return True

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)  # list items indented under their key


def _represent_text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # A text of several lines reads best as a block; PyYAML falls back to a quoted form
    # when a block cannot hold it exactly (trailing spaces, control characters).
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_text)


# -----------------------------------------------------------------------------------------
# reading


def load_cassette(path: str | Path) -> Cassette:
    """Read and check the cassette at ``path``.

    Raises:
        CassetteInvalid: the file is missing, not YAML, or not a cassette; the message
            names the file and the first key that is wrong (``interactions[2].reply``).
    """
    shown = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CassetteInvalid(f"cassette {shown}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise CassetteInvalid(f"cassette {shown}: cannot be read: {error}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise CassetteInvalid(f"cassette {shown}: not valid YAML{at}: {problem}") from None
    try:
        return _cassette(data)
    except _Bad as bad:
        raise CassetteInvalid(
            f"cassette {shown}: {bad.where}: {bad.problem}; record it again with "
            "`agentrun run SPEC --record FILE`"
            if bad.where
            else f"cassette {shown}: {bad.problem}"
        ) from None


class _Bad(Exception):
    def __init__(self, where: str, problem: str) -> None:
        super().__init__(problem)
        self.where = where
        self.problem = problem


def _expect(value: Any, kind: type | tuple[type, ...], where: str, what: str) -> Any:
    """``value`` when it is a ``kind`` (a YAML true/false is no number), else :class:`_Bad`."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise _Bad(where, f"expected {what}, found {short_repr(value)}")
    return value


def _pricing(value: Any, where: str) -> Pricing | None:
    if value is None:
        return None
    _expect(value, dict, where, "a mapping with input_per_mtok and output_per_mtok")
    for key in ("input_per_mtok", "output_per_mtok"):
        _expect(value.get(key), (int, float), f"{where}.{key}", "a number (USD)")
    return Pricing(float(value["input_per_mtok"]), float(value["output_per_mtok"]))


def _cassette(data: Any) -> Cassette:
    if not isinstance(data, dict):
        raise _Bad("", f"not a cassette: expected a mapping, found {short_repr(data)}")
    if "interactions" not in data or "version" not in data:
        raise _Bad("", "not a cassette: it has no 'version' and 'interactions' keys")
    known = {
        "version",
        "agent",
        "model",
        "max_output_tokens",
        "pricing",
        "estimate_pricing",
        "prompt_token_estimates",
        "compares",
        "ignore",
        "tools",
        "interactions",
    }
    for key in data:
        if key not in known:
            raise _Bad(str(key), f"unknown key; a cassette has {', '.join(sorted(known))}")
    if data["version"] != CASSETTE_VERSION:
        raise _Bad(
            "version",
            f"cassette version {data['version']!r} is not supported (this agentrun reads "
            f"version {CASSETTE_VERSION})",
        )
    compares = tuple(_expect(data.get("compares", list(COMPARED)), list, "compares", "a list"))
    for index, part in enumerate(compares):
        if part not in COMPARED:
            raise _Bad(f"compares[{index}]", f"{part!r} is not one of {', '.join(COMPARED)}")
    ignore = tuple(_expect(data.get("ignore", []), list, "ignore", "a list of regexes"))
    for index, pattern in enumerate(ignore):
        _expect(pattern, str, f"ignore[{index}]", "a regular expression")
        try:
            re.compile(pattern)
        except re.error as error:
            raise _Bad(f"ignore[{index}]", f"invalid regular expression: {error}") from None
    estimates = _expect(
        data.get("prompt_token_estimates", []), list, "prompt_token_estimates", "a list"
    )
    for index, estimate in enumerate(estimates):
        _expect(estimate, int, f"prompt_token_estimates[{index}]", "a token count")
    tools = data.get("tools")
    if tools is not None:
        _expect(tools, list, "tools", "a list of tools")
    cassette = Cassette(
        agent=str(data.get("agent") or ""),
        model=str(data.get("model") or "cassette"),
        tools=tools,
        compares=compares,
        ignore=ignore,
        max_output_tokens=_expect(
            data.get("max_output_tokens", 0), int, "max_output_tokens", "a token count"
        ),
        pricing=_pricing(data.get("pricing"), "pricing"),
        estimate_pricing=_pricing(data.get("estimate_pricing"), "estimate_pricing"),
        prompt_token_estimates=list(estimates),
    )
    interactions = _expect(data["interactions"], list, "interactions", "a list")
    previous: list[dict[str, Any]] = []
    for index, item in enumerate(interactions):
        interaction = _interaction(item, f"interactions[{index}]", previous, tools)
        previous = interaction.messages
        cassette.interactions.append(interaction)
    return cassette


def _interaction(
    item: Any, where: str, previous: list[dict[str, Any]], tools: list[dict[str, Any]] | None
) -> Interaction:
    _expect(item, dict, where, "a mapping with 'request' and 'reply'")
    extra = set(item) - {"request", "reply", "error"}
    if extra:
        raise _Bad(f"{where}.{sorted(extra)[0]}", "unknown key; expected request, reply or error")
    request = _expect(item.get("request"), dict, f"{where}.request", "a mapping")
    if ("messages" in request) == ("all_messages" in request):
        raise _Bad(f"{where}.request", "needs 'messages' (added since the last) or 'all_messages'")
    extra = set(request) - {"messages", "all_messages", "tools", "tool_choice"}
    if extra:
        raise _Bad(
            f"{where}.request.{sorted(extra)[0]}",
            "unknown key; expected messages, all_messages, tools or tool_choice",
        )
    key = "messages" if "messages" in request else "all_messages"
    given = _expect(request[key], list, f"{where}.request.{key}", "a list of messages")
    for number, message in enumerate(given):
        _expect(message, dict, f"{where}.request.{key}[{number}]", "a message mapping")
        _expect(message.get("role"), str, f"{where}.request.{key}[{number}].role", "a role")
    messages = [*previous, *given] if key == "messages" else list(given)
    own_tools = request.get("tools")
    if own_tools is not None:
        _expect(own_tools, list, f"{where}.request.tools", "a list of tools")
    choice = request.get("tool_choice")
    if choice is not None:
        _expect(choice, (str, dict), f"{where}.request.tool_choice", "a string or a mapping")
    if ("reply" in item) == ("error" in item):
        raise _Bad(where, "needs a 'reply' or an 'error' (one of them)")
    reply = None
    error = None
    if "reply" in item:
        reply = parse_reply(item["reply"], f"{where}.reply")
    else:
        error = _expect(item["error"], str, f"{where}.error", "the failure's message")
    return Interaction(
        messages=messages,
        tools=own_tools if own_tools is not None else tools,
        tool_choice=choice,
        reply=reply,
        error=error,
    )


def parse_reply(data: Any, where: str) -> ModelReply:
    """A reply as the file holds it (``reply:``), checked; ``where`` names it in errors.

    Raises:
        _Bad: a key missing or of the wrong type (:func:`load_cassette` turns it into
            :class:`CassetteInvalid`).
    """
    _expect(data, dict, where, "a mapping with content and tool_calls")
    content = data.get("content")
    if content is not None:
        _expect(content, str, f"{where}.content", "a text or null")
    calls = []
    for index, call in enumerate(
        _expect(data.get("tool_calls", []), list, f"{where}.tool_calls", "a list")
    ):
        here = f"{where}.tool_calls[{index}]"
        _expect(call, dict, here, "a mapping with id, name and arguments")
        calls.append(
            ToolCallRequest(
                id=_expect(call.get("id"), str, f"{here}.id", "the call id"),
                name=_expect(call.get("name"), str, f"{here}.name", "the tool name"),
                arguments=_expect(
                    call.get("arguments", ""), str, f"{here}.arguments", "the arguments' JSON text"
                ),
            )
        )
    usage = _expect(data.get("usage", {}), dict, f"{where}.usage", "a mapping")
    tokens = [
        _expect(usage.get(key, 0), int, f"{where}.usage.{key}", "a token count")
        for key in ("input_tokens", "output_tokens")
    ]
    cost = data.get("cost_usd")
    if cost is not None:
        _expect(cost, (int, float), f"{where}.cost_usd", "a number (USD) or null")
    failed = _expect(data.get("failed_attempts", []), list, f"{where}.failed_attempts", "a list")
    return ModelReply(
        content=content,
        tool_calls=calls,
        usage=Usage(tokens[0], tokens[1]),
        cost_usd=None if cost is None else float(cost),
        model=str(data.get("model") or ""),
        finish_reason=str(data.get("finish_reason") or ""),
        failed_attempts=tuple(str(f) for f in failed),
    )


# -----------------------------------------------------------------------------------------
# values as the file holds them


def swap_text(value: Any, old: str, new: str) -> Any:
    """``value`` with every ``old`` inside its strings replaced by ``new`` (deeply, copied)."""
    if isinstance(value, str):
        return value.replace(old, new) if old in value else value
    if isinstance(value, dict):
        return {key: swap_text(item, old, new) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [swap_text(item, old, new) for item in value]
    return value


def workdir_text(workdir: str | Path | None) -> str:
    """The workdir's absolute path as text, or ``""`` when none (or one too short to swap)."""
    text = str(workdir) if workdir is not None else ""
    return text if len(text) > 1 else ""


def plain_copy(value: Any) -> Any:
    """A deep copy of a JSON-like value with tuples as lists (as YAML gives them back)."""
    if isinstance(value, dict):
        return {key: plain_copy(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain_copy(item) for item in value]
    return value


# -----------------------------------------------------------------------------------------
# rebuilding from the run store


def cassette_from_run(
    agent: str,
    model: str,
    messages: list[dict[str, Any]],
    replies: list[ModelReply],
    workdir: str | Path | None = None,
) -> Cassette:
    """A cassette rebuilt from a recorded run: its conversation and its model calls.

    The request of the n-th call is the conversation before the n-th assistant message
    (the loop appends each reply as one). The run store keeps neither the tool lists nor
    ``tool_choice``, so the cassette compares the conversation only (``compares:
    [messages]``); nor the finish reason, so each reply's is ``tool_calls`` or ``stop``.

    Args:
        agent: the run's agent.
        model: the run's model id.
        messages: the run's conversation as recorded (redacted), in order.
        replies: one reply per model call, in step order (as the run store recorded its
            text, tool calls, usage, cost and model).
        workdir: the spec's workdir, written as ``{workdir}`` (None: left as it is).
    """
    text = workdir_text(workdir)

    def marked(value: Any) -> Any:
        return swap_text(plain_copy(value), text, WORKDIR_MARK) if text else plain_copy(value)

    cassette = Cassette(
        agent=agent,
        model=model,
        compares=("messages",),
        comment="agentrun cassette rebuilt from the run store (agentrun runs replay).\n"
        "The store keeps no tool lists: a replay compares the conversation only.",
    )
    answers = [
        index for index, message in enumerate(messages) if message.get("role") == "assistant"
    ]
    for position, reply in zip(answers, replies, strict=False):
        cassette.interactions.append(
            Interaction(
                messages=marked(messages[:position]),
                reply=parse_reply(marked(reply_data(reply)), "reply"),
            )
        )
    return cassette


def short_repr(value: Any) -> str:
    """``repr`` of a value, cut to :data:`EXCERPT_CHARS` characters."""
    text = repr(value)
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"
