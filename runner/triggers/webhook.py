"""Webhook triggers: authenticating a delivery and turning its payload into run inputs.

- :func:`verify_signature` -- GitHub's ``X-Hub-Signature-256`` header (HMAC-SHA256 of the
  raw body, keyed with the webhook secret), compared in constant time.
- :class:`ReplayGuard` -- rejects a delivery id (GitHub's ``X-GitHub-Delivery``) seen
  before, in bounded memory that the daemon persists.
- :func:`inputs_from_payload` and :class:`PayloadPathError` -- the spec's
  ``webhook.inputs``: dotted paths into the JSON payload, with messages that say where a
  path stops.

The HTTP server itself lives in the daemon; these are pure functions and small classes.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def verify_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is GitHub's ``X-Hub-Signature-256`` for ``body`` under ``secret``.

    The header is ``sha256=`` and the hex HMAC-SHA256 of the raw request body (before any
    JSON parsing or re-encoding), keyed with the webhook secret. GitHub sends lowercase hex;
    uppercase is accepted too. The comparison is constant-time (:func:`hmac.compare_digest`).
    A missing or malformed header, or an empty secret, is never valid.
    """
    if not header or not secret:
        return False
    scheme, _, given = header.strip().partition("=")
    if scheme != "sha256" or not given.isascii():
        return False
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), given.lower().encode())


class ReplayGuard:
    """Rejects a webhook delivery id (GitHub's ``X-GitHub-Delivery``) seen before.

    Memory is bounded: the newest ``capacity`` ids are remembered, older ones forgotten
    first. The daemon persists them: it passes the stored ids (oldest first) as ``seen``
    and an ``on_new`` callback that stores each newly accepted id; if ``on_new`` raises,
    the id is not accepted. Call :meth:`accept` only after :func:`verify_signature`
    succeeded, or forged requests could use up delivery ids. Thread-safe.
    """

    def __init__(
        self,
        capacity: int = 10_000,
        seen: Iterable[str] = (),
        on_new: Callable[[str], None] | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._on_new = on_new
        self._lock = threading.Lock()
        self._ids: OrderedDict[str, None] = OrderedDict()
        for delivery_id in seen:
            self._remember(delivery_id)

    def accept(self, delivery_id: str | None) -> bool:
        """True (and remembered) for a new id; False for a replay or a missing id."""
        if not delivery_id:
            return False
        with self._lock:
            if delivery_id in self._ids:
                return False
            if self._on_new is not None:
                self._on_new(delivery_id)
            self._remember(delivery_id)
            return True

    def _remember(self, delivery_id: str) -> None:
        self._ids[delivery_id] = None
        self._ids.move_to_end(delivery_id)
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)

    def __contains__(self, delivery_id: object) -> bool:
        return delivery_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)


class PayloadPathError(ValueError):
    """A webhook input's path does not exist in the payload; the message says where it stops."""


def inputs_from_payload(mapping: Mapping[str, str], payload: Any) -> dict[str, Any]:
    """The run's inputs taken from a webhook payload, as the spec's ``webhook.inputs`` maps them.

    ``mapping`` is input name -> dotted path into the parsed JSON body: ``issue.title``
    walks objects by key, ``issue.labels.0.name`` indexes lists from 0. Values are returned
    as they are in the payload (strings, numbers, objects, ...); input types are checked
    where every run's inputs are.

    Raises:
        PayloadPathError: a path is empty or malformed, a key is missing, an index is out of
            range or not a number, or the path goes through a scalar. The message names the
            input, the path and the part that failed.
    """
    inputs: dict[str, Any] = {}
    for name, path in mapping.items():
        parts = path.split(".")
        if not path or any(part == "" for part in parts):
            raise PayloadPathError(f"webhook input {name!r}: {path!r} is not a dotted path")
        value = payload
        for depth, part in enumerate(parts):
            where = ".".join(parts[:depth]) or "the payload"
            if isinstance(value, Mapping):
                if part not in value:
                    raise PayloadPathError(
                        f"webhook input {name!r}: payload has no {path!r}: {where} has no "
                        f"key {part!r}" + _keys_hint(part, value)
                    )
                value = value[part]
            elif isinstance(value, list):
                if not (part.isascii() and part.isdigit()):
                    raise PayloadPathError(
                        f"webhook input {name!r}: {where} is a list; {part!r} must be an "
                        "index like 0"
                    )
                if int(part) >= len(value):
                    raise PayloadPathError(
                        f"webhook input {name!r}: payload has no {path!r}: {where} has "
                        f"{len(value)} item(s), so there is no index {part}"
                    )
                value = value[int(part)]
            else:
                raise PayloadPathError(
                    f"webhook input {name!r}: payload has no {path!r}: {where} is "
                    f"{type(value).__name__} {value!r}, not an object or a list"
                )
        inputs[name] = value
    return inputs


def _keys_hint(part: str, value: Mapping[Any, Any]) -> str:
    import difflib

    keys = sorted(str(key) for key in value)
    close = difflib.get_close_matches(part, keys, n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    if keys:
        shown = ", ".join(keys[:10]) + (", ..." if len(keys) > 10 else "")
        return f" (it has: {shown})"
    return " (it is empty)"
