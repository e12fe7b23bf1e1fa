"""Secrets out of the record: redaction of known values and common key formats.

A :class:`Redactor` replaces (1) the values of environment variables the spec names (its
``env`` allowlist, ``model.api_key_env``, webhook secrets) and (2) anything that looks like
a common credential (OpenAI/Anthropic ``sk-...`` keys, GitHub tokens, AWS access key ids,
Slack tokens, JWTs, bearer tokens, PEM private keys) with ``[REDACTED]``. It is applied to
every event before the run store, the screen or an export sees it; the model's own
conversation is not altered.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable
from dataclasses import fields, is_dataclass, replace
from typing import Any, TypeVar

MASK = "[REDACTED]"
#: Values shorter than this are not redacted (they would mask ordinary words).
MIN_SECRET_LENGTH = 6
#: Most characters of clean strings a :class:`Redactor` holds on to, so as not to search
#: them twice (see :meth:`Redactor.text`).
CLEAN_CACHE_CHARS = 4 * 1024 * 1024

#: Credential shapes, each with the literal text any match of it contains (its anchors):
#: a string that holds none of the anchors (nor a secret value) is not searched at all.
CREDENTIALS: list[tuple[str, tuple[str, ...]]] = [
    (r"sk-(?:proj-|ant-)?[A-Za-z0-9_\-]{16,}", ("sk-",)),
    (r"gh[pousr]_[A-Za-z0-9]{30,}", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")),
    (r"github_pat_[A-Za-z0-9_]{40,}", ("github_pat_",)),
    (r"(?:AKIA|ASIA)[0-9A-Z]{16}", ("AKIA", "ASIA")),
    (r"xox[abprs]-[A-Za-z0-9-]{10,}", ("xoxa-", "xoxb-", "xoxp-", "xoxr-", "xoxs-")),
    (r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}", ("eyJ",)),
    (r"(?i:bearer)\s+[A-Za-z0-9._~+/=-]{16,}", ()),  # anchored by BEARER, any case
    (
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
        ("-----BEGIN ",),
    ),
]
PATTERNS = [pattern for pattern, _ in CREDENTIALS]
ANCHORS = tuple(anchor for _, anchors in CREDENTIALS for anchor in anchors)
BEARER = re.compile("bearer", re.IGNORECASE)

T = TypeVar("T")


class Redactor:
    """Masks secret values and credential-shaped text.

    Args:
        variables: names of environment variables whose current values are secret.
        extra_values: more literal values to mask.
    """

    def __init__(self, variables: Iterable[str] = (), extra_values: Iterable[str] = ()) -> None:
        values = [os.environ.get(name, "") for name in variables]
        values.extend(extra_values)
        secrets = sorted({v for v in values if len(v) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
        parts = [re.escape(v) for v in secrets] + PATTERNS
        self._pattern = re.compile("|".join(f"(?:{p})" for p in parts))
        self._anchors = (*secrets, *ANCHORS)
        # Strings lately found clean, by identity; each is held, so its id is not reused.
        # A step's events carry the same objects more than once (a tool's result in the
        # call and in the conversation, its arguments in four events), and a long result
        # costs about 17 ns a character to search (``timeit``, the reference machine).
        self._clean: dict[int, str] = {}
        self._clean_chars = 0

    def text(self, value: str) -> str:
        """``value`` with every secret replaced by ``[REDACTED]`` (``value`` itself if none).

        A string found clean is remembered (up to :data:`CLEAN_CACHE_CHARS` characters in
        all) and not searched again when the same object comes back.
        """
        if len(value) < MIN_SECRET_LENGTH or self._clean.get(id(value)) is value:
            return value  # the same object, even for a str subclass such as a StrEnum member
        if self.may_hold_secret(value) and self._pattern.search(value):
            return self._pattern.sub(MASK, value)
        if self._clean_chars + len(value) > CLEAN_CACHE_CHARS:
            self._clean.clear()
            self._clean_chars = 0
        if len(value) <= CLEAN_CACHE_CHARS:
            self._clean[id(value)] = value
            self._clean_chars += len(value)
        return value

    def may_hold_secret(self, value: str) -> bool:
        """False when ``value`` holds none of the anchors (secret values, credential prefixes).

        Each substring test is a fast scan (about 1 ms a megabyte against 80 ms for the
        full pattern search, ``timeit`` on the reference machine); a True only means the
        full search runs.
        """
        return any(anchor in value for anchor in self._anchors) or BEARER.search(value) is not None

    def value(self, value: Any) -> Any:
        """Redact strings inside dicts, lists and tuples.

        Returns ``value`` itself when it holds no secret, else new containers along the path
        to each masked string (the input is never modified).
        """
        kind = type(value)
        if kind is int or kind is float or kind is bool or value is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            changed: dict[Any, Any] | None = None
            for key, item in value.items():
                cleaned = self.value(item)
                if cleaned is not item:
                    if changed is None:
                        changed = dict(value)
                    changed[key] = cleaned
            return value if changed is None else changed
        if isinstance(value, list | tuple):
            items = [self.value(item) for item in value]
            if all(new is old for new, old in zip(items, value, strict=True)):
                return value
            return type(value)(items)
        return value

    def event(self, event: T) -> T:
        """A copy of a dataclass event with every string field (deeply) redacted.

        The event itself when it holds no secret (the common case: no copy is made).
        """
        klass: Any = type(event)
        names = _field_names(klass)
        if not names:
            return event
        changes = {}
        for name in names:
            current = getattr(event, name)
            cleaned = self.value(current)
            if cleaned is not current:
                changes[name] = cleaned
        return replace(event, **changes) if changes else event  # type: ignore[type-var]


@functools.cache
def _field_names(cls: Any) -> tuple[str, ...]:
    """The dataclass fields of an event class, or ``()`` for anything else."""
    return tuple(field.name for field in fields(cls)) if is_dataclass(cls) else ()


def secret_variables(spec: Any) -> list[str]:
    """The environment variables of an :class:`~runner.spec.AgentSpec` that hold secrets.

    Its ``env`` allowlist, ``model.api_key_env``, webhook secrets, and the header variables
    of ``http_request`` and of MCP servers.
    """
    names = [*spec.env, *([spec.model.api_key_env] if spec.model.api_key_env else [])]
    names += [t.webhook.secret_env for t in spec.triggers if t.webhook]
    if spec.tools.http_request is not None:
        names += spec.tools.http_request.headers_env.values()
    for server in spec.tools.mcp.values():
        names += server.headers_env.values()
    return names
