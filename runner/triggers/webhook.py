"""Webhook triggers: authenticating a delivery and turning its payload into run inputs.

- :func:`verify_signature` -- GitHub's ``X-Hub-Signature-256`` header (HMAC-SHA256 of the
  raw body, keyed with the webhook secret), compared in constant time.
- :class:`ReplayGuard` -- rejects a delivery id (GitHub's ``X-GitHub-Delivery``) seen
  before, in bounded memory (a store can seed it and keep what it accepts).
- :class:`BodyReplayWindow` and :func:`body_digest` -- rejects a signed body received
  before within :data:`REPLAY_WINDOW_S`, whatever its delivery id: the signature covers
  the body and not the delivery header, so a captured delivery replayed under a new id is
  caught by its body.
- :func:`parse_payload` and :class:`PayloadError` -- the body as JSON, strictly (UTF-8,
  RFC 8259, at most :data:`MAX_PAYLOAD_DEPTH` levels deep), every failure one clear error.
- :func:`inputs_from_payload` and :class:`PayloadPathError` -- the spec's
  ``webhook.inputs``: dotted paths into the JSON payload, with messages that say where a
  path stops.

The HTTP server itself lives in the daemon; these are pure functions and small classes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
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


#: Seconds a signed body is remembered by :class:`BodyReplayWindow` (24 hours).
REPLAY_WINDOW_S = 24 * 60 * 60.0
#: Most bodies :class:`BodyReplayWindow` remembers at once (the oldest are forgotten first,
#: even inside the window); each costs about 200 bytes, so about 2 MB in all.
REPLAY_CAPACITY = 10_000


def body_digest(body: bytes) -> str:
    """The hex SHA-256 of a delivery's exact body bytes, as signed (before any parsing)."""
    return hashlib.sha256(body).hexdigest()


class BodyReplayWindow:
    """Rejects a signed webhook body received before, within a time window.

    GitHub's signature (``X-Hub-Signature-256``) covers the body only; the delivery id
    header does not count, so :class:`ReplayGuard` alone lets a captured delivery be
    replayed under a new id. This window is keyed by the body's SHA-256
    (:func:`body_digest`; the daemon prefixes the agent's name): the same bytes are
    accepted once per ``window_s`` seconds, whatever the headers. A sender that really means
    to send an identical body twice within the window has the second refused, and should
    put something unique in the body (a timestamp, an event id).

    Memory is bounded: at most ``capacity`` bodies, the oldest forgotten first (so under
    more than ``capacity`` deliveries per window, the effective window is shorter). Times
    are seconds on a clock that never goes back (the daemon passes :func:`time.monotonic`);
    nothing here reads the clock. As with :class:`ReplayGuard`, a store can seed it with
    ``seen`` (key and time received, oldest first) and keep each new key through ``on_new``
    (if it raises, the body is not accepted). Call :meth:`accept` only after
    :func:`verify_signature` succeeded, or forged requests could fill the window.
    Thread-safe.
    """

    def __init__(
        self,
        window_s: float = REPLAY_WINDOW_S,
        capacity: int = REPLAY_CAPACITY,
        seen: Iterable[tuple[str, float]] = (),
        on_new: Callable[[str, float], None] | None = None,
    ) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be positive, got {window_s!r}")
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity!r}")
        self.window_s = window_s
        self.capacity = capacity
        self._on_new = on_new
        self._lock = threading.Lock()
        self._received: OrderedDict[str, float] = OrderedDict()
        for key, at in seen:
            self._remember(key, at)

    def received_at(self, key: str, now: float) -> float | None:
        """When ``key`` was accepted, if that is less than ``window_s`` seconds before ``now``."""
        with self._lock:
            self._expire(now)
            return self._received.get(key)

    def accept(self, key: str, now: float) -> bool:
        """True (and remembered at ``now``) for a body not received within the window."""
        with self._lock:
            self._expire(now)
            if key in self._received:
                return False
            if self._on_new is not None:
                self._on_new(key, now)
            self._remember(key, now)
            return True

    def _remember(self, key: str, at: float) -> None:
        self._received[key] = at
        self._received.move_to_end(key)
        while len(self._received) > self.capacity:
            self._received.popitem(last=False)

    def _expire(self, now: float) -> None:
        while self._received:
            oldest = next(iter(self._received.values()))
            if now - oldest < self.window_s:
                return
            self._received.popitem(last=False)

    def __len__(self) -> int:
        return len(self._received)


class ReplayGuard(BodyReplayWindow):
    """Rejects a webhook delivery id (GitHub's ``X-GitHub-Delivery``) seen before.

    A :class:`BodyReplayWindow` keyed by the id, with no time limit: the newest ``capacity``
    ids are remembered, older ones forgotten first. A store can persist them: pass the
    stored ids (oldest first) as ``seen`` and an ``on_new`` callback that stores each newly
    accepted id; if ``on_new`` raises, the id is not accepted. (The daemon passes neither
    today: across a restart, a delivery id is recognised by the ``fires`` row of the run it
    started.) Call :meth:`accept` only after :func:`verify_signature` succeeded, or forged
    requests could use up delivery ids. Thread-safe.
    """

    def __init__(
        self,
        capacity: int = 10_000,
        seen: Iterable[str] = (),
        on_new: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(
            math.inf,
            capacity,
            ((delivery_id, 0.0) for delivery_id in seen),
            None if on_new is None else lambda delivery_id, _at: on_new(delivery_id),
        )

    def accept(self, key: str | None, now: float = 0.0) -> bool:
        """True (and remembered) for a new id ``key``; False for a replay or a missing id."""
        if not key:
            return False
        return super().accept(key, now)

    def __contains__(self, delivery_id: object) -> bool:
        return delivery_id in self._received


#: Deepest nesting of objects and lists :func:`parse_payload` accepts. GitHub's payloads
#: are under ten levels deep; the bound keeps recursion in later steps (rendering,
#: recording) far from Python's limit.
MAX_PAYLOAD_DEPTH = 64


class PayloadError(ValueError):
    """A signed webhook body the daemon cannot use; the message says why, in plain words."""


class PayloadPathError(PayloadError):
    """A webhook input's path does not exist in the payload; the message says where it stops."""


def parse_payload(body: bytes, max_depth: int = MAX_PAYLOAD_DEPTH) -> Any:
    r"""The JSON value of a webhook body; an empty body is ``{}``.

    Strict where Python's :func:`json.loads` is lenient, so every value that reaches a run
    is plain JSON (RFC 8259): the bytes must be UTF-8 (not UTF-16 or UTF-32, no byte order
    mark), ``NaN`` and ``Infinity`` are refused, and so are strings with an unpaired
    surrogate escape (``"\ud800"``, which no UTF-8 text can hold). Objects and lists may
    nest at most ``max_depth`` levels (the top level is 1).

    Raises:
        PayloadError: the body is not UTF-8 (with the byte offset), not JSON (with line and
            column), uses a non-standard constant, holds an unpaired surrogate, or nests
            deeper than ``max_depth``.
    """
    if not body:
        return {}
    if body.startswith(b"\xef\xbb\xbf"):
        raise PayloadError("body starts with a byte order mark; send UTF-8 JSON without one")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise PayloadError(
            f"body is not UTF-8 text: byte {error.start} is {body[error.start : error.end]!r}; "
            "send JSON encoded as UTF-8"
        ) from None

    def refuse_constant(name: str) -> Any:
        raise PayloadError(f"body is not standard JSON: {name} is not a JSON number")

    try:
        payload = json.loads(text, parse_constant=refuse_constant)
    except json.JSONDecodeError as error:
        raise PayloadError(
            f"body is not JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    except RecursionError:
        raise PayloadError(
            f"body nests objects or lists deeper than {max_depth} levels; send a flatter payload"
        ) from None
    _check_depth_and_text(payload, max_depth)
    return payload


def _check_depth_and_text(payload: Any, max_depth: int) -> None:
    """Walk ``payload`` without recursion; raise :class:`PayloadError` on what it refuses."""
    stack: list[tuple[Any, int]] = [(payload, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            _check_text(value)
        elif isinstance(value, dict | list):
            if depth > max_depth:
                raise PayloadError(
                    f"body nests objects or lists deeper than {max_depth} levels; "
                    "send a flatter payload"
                )
            if isinstance(value, dict):
                for key in value:
                    _check_text(key)
                stack.extend((item, depth + 1) for item in value.values())
            else:
                stack.extend((item, depth + 1) for item in value)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise PayloadError(
            f"body is not valid Unicode: the string {text[:40]!r} holds an unpaired "
            f"surrogate escape \\u{ord(text[error.start]):04x}"
        ) from None


def inputs_from_payload(
    mapping: Mapping[str, str], payload: Any, trigger: str = "webhook"
) -> dict[str, Any]:
    """The run's inputs taken from a payload, as the spec's ``webhook.inputs`` maps them.

    A queue trigger's ``queue.inputs`` maps a message's payload the same way (``trigger``
    names the kind in the messages: ``webhook`` or ``queue``).

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
            raise PayloadPathError(f"{trigger} input {name!r}: {path!r} is not a dotted path")
        value = payload
        for depth, part in enumerate(parts):
            where = ".".join(parts[:depth]) or "the payload"
            if isinstance(value, Mapping):
                if part not in value:
                    raise PayloadPathError(
                        f"{trigger} input {name!r}: payload has no {path!r}: {where} has no "
                        f"key {part!r}" + _keys_hint(part, value)
                    )
                value = value[part]
            elif isinstance(value, list):
                if not (part.isascii() and part.isdigit()):
                    raise PayloadPathError(
                        f"{trigger} input {name!r}: {where} is a list; {part!r} must be an "
                        "index like 0"
                    )
                if int(part) >= len(value):
                    raise PayloadPathError(
                        f"{trigger} input {name!r}: payload has no {path!r}: {where} has "
                        f"{len(value)} item(s), so there is no index {part}"
                    )
                value = value[int(part)]
            else:
                raise PayloadPathError(
                    f"{trigger} input {name!r}: payload has no {path!r}: {where} is "
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
