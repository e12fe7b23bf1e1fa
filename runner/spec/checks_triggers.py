"""Semantic checks of the triggers that take a payload (webhook, queue), located.

- every input a webhook or queue trigger maps from its payload is a declared input;
- a queue trigger: its URL's ``${NAME}`` placeholders are well formed and in the spec's
  ``env`` allowlist (as a notification channel's), its scheme is one redis-py opens
  (``redis``, ``rediss``, ``unix``), an input that is required and has no default is mapped
  (else every message would fail), and no two queue triggers of one agent read the same
  stream (their fires would share the message ids that keep them unique).

The keys themselves are checked by the schema.
"""

from __future__ import annotations

import difflib
from typing import Any

from ..errors import Diagnostic
from .checks_notify import PLACEHOLDER
from .types import AgentSpec
from .vocabulary import TriggerKind
from .yamlpos import Located

#: URL schemes redis-py's ``Redis.from_url`` opens.
REDIS_SCHEMES = ("redis", "rediss", "unix")
_HINT = "see docs/concepts/triggers.md#queue"


def trigger_payload_checks(spec: AgentSpec, located: Located, file: str) -> list[Diagnostic]:
    """Every problem of the spec's webhook and queue triggers, located at the offending key."""
    out: list[Diagnostic] = []
    streams: dict[str, int] = {}
    for trigger in spec.triggers:
        path: tuple[Any, ...] = ("triggers", trigger.index)
        mapping: dict[str, str] = {}
        if trigger.kind == TriggerKind.WEBHOOK and trigger.webhook is not None:
            mapping, path = trigger.webhook.inputs, (*path, "webhook")
        elif trigger.kind == TriggerKind.QUEUE and trigger.queue is not None:
            mapping, path = trigger.queue.inputs, (*path, "queue")
        else:
            continue
        for name in mapping:
            if name not in spec.inputs:
                out.append(
                    located.diagnostic(
                        file,
                        located.key_pos((*path, "inputs", name)),
                        f"{trigger.kind} maps payload to {name!r}, which is not a declared input",
                        _did_you_mean(name, spec.inputs) or f"declare {name!r} under 'inputs'",
                    )
                )
        queue = trigger.queue
        if queue is None:
            continue
        out += _queue_url_problems(spec, located, file, queue.url, (*path, "url"))
        for name, declared in spec.inputs.items():
            if declared.required and not declared.has_default and name not in mapping:
                out.append(
                    located.diagnostic(
                        file,
                        located.key_pos(path),
                        f"input {name!r} is required, and the queue trigger does not map it: "
                        "every message would be a failed fire",
                        f"map it under 'inputs' (for example {name}: {name}) or give it a default",
                    )
                )
        if queue.stream in streams:
            out.append(
                located.diagnostic(
                    file,
                    located.value_pos((*path, "stream")),
                    f"queue triggers {streams[queue.stream] + 1} and {trigger.index + 1} both "
                    f"read stream {queue.stream!r}",
                    "keep one: a message is one fire of the agent, whatever the group",
                )
            )
        streams.setdefault(queue.stream, trigger.index)
    return out


def _did_you_mean(name: str, declared: Any) -> str:
    close = difflib.get_close_matches(name, sorted(declared), n=1)
    return f"did you mean {close[0]!r}? or declare {name!r} under 'inputs'" if close else ""


def _queue_url_problems(
    spec: AgentSpec, located: Located, file: str, url: str | None, path: tuple[Any, ...]
) -> list[Diagnostic]:
    if url is None:
        return []
    pos = located.value_pos(path)
    out = []
    for name in dict.fromkeys(PLACEHOLDER.findall(url)):
        if name not in spec.env:
            out.append(
                located.diagnostic(
                    file,
                    pos,
                    f"the queue URL uses ${{{name}}}, which is not in the spec's 'env' allowlist",
                    f"add {name!r} to 'env' (its value is read when the daemon connects)",
                )
            )
    if "${" in PLACEHOLDER.sub("", url):
        out.append(
            located.diagnostic(
                file,
                pos,
                f"the queue URL {url!r} has a malformed placeholder",
                "write ${NAME} with NAME a variable's name (letters, digits, _)",
            )
        )
    elif not url.startswith("${"):
        scheme, sep, _ = url.partition("://")
        if not sep or scheme.lower() not in REDIS_SCHEMES:
            out.append(
                located.diagnostic(
                    file,
                    pos,
                    f"the queue URL {url!r} is not a Redis URL",
                    "write redis://HOST:PORT/DB, rediss://... (TLS) or unix:///path/to/socket, "
                    "or ${NAME} with NAME in 'env'; " + _HINT,
                )
            )
    return out
