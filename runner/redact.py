"""Secrets out of the record: redaction of known values and common key formats.

A :class:`Redactor` replaces (1) the values of environment variables the spec names (its
``env`` allowlist, ``model.api_key_env``, webhook secrets) and (2) anything that looks like
a common credential (OpenAI/Anthropic ``sk-...`` keys, GitHub tokens, AWS access key ids,
Slack tokens, JWTs, bearer tokens, PEM private keys) with ``[REDACTED]``. It is applied to
every event before the run store, the screen or an export sees it; the model's own
conversation is not altered.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import fields, is_dataclass, replace
from typing import Any, TypeVar

MASK = "[REDACTED]"
#: Values shorter than this are not redacted (they would mask ordinary words).
MIN_SECRET_LENGTH = 6

PATTERNS = [
    r"sk-(?:proj-|ant-)?[A-Za-z0-9_\-]{16,}",
    r"gh[pousr]_[A-Za-z0-9]{30,}",
    r"github_pat_[A-Za-z0-9_]{40,}",
    r"(?:AKIA|ASIA)[0-9A-Z]{16}",
    r"xox[abprs]-[A-Za-z0-9-]{10,}",
    r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
    r"(?i:bearer)\s+[A-Za-z0-9._~+/=-]{16,}",
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
]

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

    def text(self, value: str) -> str:
        """``value`` with every secret replaced by ``[REDACTED]``."""
        return self._pattern.sub(MASK, value)

    def value(self, value: Any) -> Any:
        """Redact strings inside dicts, lists and tuples (returns new containers)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.value(v) for v in value)
        return value

    def event(self, event: T) -> T:
        """A copy of a dataclass event with every string field (deeply) redacted."""
        if not is_dataclass(event) or isinstance(event, type):
            return event
        changes = {}
        for field in fields(event):
            current = getattr(event, field.name)
            cleaned = self.value(current)
            if cleaned != current:
                changes[field.name] = cleaned
        return replace(event, **changes) if changes else event
