"""Queue triggers: a Redis stream message's identity, its payload, and the Redis URL.

Pure functions; the consumer itself (redis-py, threads, retries) lives in
:mod:`runner.daemon.queueing`.

- :func:`fire_key` -- the idempotency key of a message's fire, from (stream, message id):
  Redis delivers a message at least once (a consumer that dies before ``XACK`` leaves it
  pending, and it is delivered again), and the store's unique ``(agent, idempotency_key)``
  index records it once.
- :func:`payload_of` -- a stream entry's payload: one field's JSON object (parsed as strictly
  as a webhook body, :func:`runner.triggers.webhook.parse_payload`), or the entry's fields
  themselves as a mapping of strings; run inputs are then taken from it as from a webhook's
  (:func:`runner.triggers.webhook.inputs_from_payload`).
- :func:`queue_url` -- the Redis URL of a trigger: its ``url`` with ``${NAME}`` taken from
  the environment, else ``AGENTRUN_QUEUE_URL``, else ``AGENTRUN_BROKER``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .webhook import PayloadError, parse_payload

#: The variable naming the Redis server of queue triggers that set no ``url``.
QUEUE_URL_VARIABLE = "AGENTRUN_QUEUE_URL"
#: The Celery broker's variable, the fallback when :data:`QUEUE_URL_VARIABLE` is not set.
BROKER_VARIABLE = "AGENTRUN_BROKER"
#: The prefix of a queue fire's idempotency key (``queue:<stream>:<message id>``).
KEY_PREFIX = "queue:"

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class QueueUrlError(ValueError):
    """A queue trigger's Redis URL cannot be made: the message names the variable to set."""


def fire_key(stream: str, message_id: str) -> str:
    """The idempotency key of the fire of message ``message_id`` (``1733212800000-0``).

    ``queue:<stream>:<message id>``: unique per agent in the store's ``fires`` table, so a
    message delivered again (Redis ``XREADGROUP`` of a pending entry, ``XAUTOCLAIM``) is
    recognised as the duplicate of its first fire.
    """
    return f"{KEY_PREFIX}{stream}:{message_id}"


def _text(value: bytes | str, what: str) -> str:
    if isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as error:
        raise PayloadError(
            f"{what} is not UTF-8 text: byte {error.start} is "
            f"{value[error.start : error.end]!r}; send UTF-8"
        ) from None


def payload_of(fields: Mapping[bytes | str, bytes | str], field: str | None) -> Any:
    """The payload of a stream entry whose fields are ``fields`` (as redis-py returns them).

    With ``field`` set, the payload is that field's value parsed as strict JSON
    (:func:`~runner.triggers.webhook.parse_payload`: UTF-8, no ``NaN``, bounded depth); it
    must be an object. Without, the payload is the entry's fields, names and values decoded
    as UTF-8 strings (an input of another type is parsed from its string as ``--input``
    values are).

    Raises:
        PayloadError: the field is missing, not UTF-8, not JSON, or not a JSON object; or a
            field name or value is not UTF-8. The message says which.
    """
    decoded = {_text(name, "a field name"): value for name, value in fields.items()}
    if field is None:
        return {name: _text(value, f"field {name!r}") for name, value in decoded.items()}
    if field not in decoded:
        names = ", ".join(sorted(decoded)[:10]) or "none"
        raise PayloadError(f"the message has no field {field!r} (its fields: {names})")
    raw = decoded[field]
    try:
        payload = parse_payload(raw if isinstance(raw, bytes) else raw.encode("utf-8"))
    except PayloadError as error:
        raise PayloadError(f"field {field!r}: {str(error).replace('body', 'value', 1)}") from None
    if not isinstance(payload, dict):
        raise PayloadError(
            f"field {field!r} holds JSON {type(payload).__name__} {str(raw)[:80]!r}, "
            'not an object; send a JSON object such as {"title": "..."}'
        )
    return payload


def queue_url(url: str | None, environ: Mapping[str, str]) -> str:
    """The Redis URL of a queue trigger whose spec says ``url`` (None: not set).

    ``${NAME}`` placeholders take their variables from ``environ`` (the spec checks that
    each is in the spec's ``env``). A trigger without a URL uses ``AGENTRUN_QUEUE_URL``,
    else ``AGENTRUN_BROKER`` (the Celery broker's Redis).

    Raises:
        QueueUrlError: a placeholder's variable is not set, or no URL is given and neither
            variable is set.
    """
    if url is None:
        for name in (QUEUE_URL_VARIABLE, BROKER_VARIABLE):
            if environ.get(name):
                return environ[name]
        raise QueueUrlError(
            f"the queue trigger sets no 'url', and neither {QUEUE_URL_VARIABLE} nor "
            f"{BROKER_VARIABLE} is set; set one to redis://HOST:PORT/DB where the daemon runs, "
            "or give the trigger a url"
        )
    missing = [name for name in _PLACEHOLDER.findall(url) if not environ.get(name)]
    if missing:
        raise QueueUrlError(
            f"the queue URL needs the environment variable {missing[0]!r}, which is not set "
            "where the daemon runs; export it before starting the daemon"
        )
    return _PLACEHOLDER.sub(lambda match: environ[match.group(1)], url)
