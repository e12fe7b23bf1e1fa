"""Signed decision links: single-use URLs in notifications that decide a call or answer a question.

A link is ``{console}/d/{token}``. The token is an itsdangerous ``URLSafeTimedSerializer``
signature (HMAC-SHA1 over a JSON payload with a timestamp; itsdangerous's defaults) of::

    {"r": run id, "c": call id, "a": "approve" | "deny" | "answer",
     "h": the call's arguments_sha256 ("" for a question), "n": nonce}

signed with a key kept in ``AGENTRUN_HOME/links.key`` (32 random bytes, owner-only ``0600``,
like the store's seal key). The nonce is recorded in ``decision_links`` with the link's
expiry; the token itself is never stored. What a use must pass (checked by
:mod:`runner.web.link_pages`): a good signature, not older than the link's expiry, a nonce
on record and not used, and for a call the pending approval's arguments hash equal to the
token's. This module has no web framework in it: the notifier (:mod:`runner.notify`) mints
links with it in processes that serve no HTTP.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StoreError
from ..paths import PRIVATE_FILE_MODE, private_dir, tighten

if TYPE_CHECKING:
    from ..store import RunStore

#: How long a link works after it is minted, in seconds (24 hours), unless told otherwise.
DEFAULT_LINK_MAX_AGE_S = 24 * 3600.0
#: The longest a link may work, in seconds (30 days): the cap on its signature's age.
MAX_LINK_AGE_S = 30 * 24 * 3600.0
#: The path prefix of decision links on the console's server.
LINK_PREFIX = "/d/"
#: The serializer's salt: a token signed for decision links means nothing elsewhere.
SALT = "agentrun.decision-link.v1"
#: The actions a link can carry.
ACTIONS = ("approve", "deny", "answer")


def key_path(home: Path) -> Path:
    """Where the links' signing key lives: ``AGENTRUN_HOME/links.key``."""
    return home / "links.key"


def load_key(home: Path) -> bytes:
    """The signing key in ``home``, created (32 random bytes, ``0600``) when missing.

    Raises:
        StoreError: the key cannot be read or written.
    """
    path = key_path(home)
    try:
        private_dir(home)
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE_MODE)
        except FileExistsError:
            tighten(path, PRIVATE_FILE_MODE)
        else:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(secrets.token_bytes(32))
        key = path.read_bytes()
    except OSError as error:
        raise StoreError(f"cannot read or create the links key {str(path)!r}: {error}") from error
    if len(key) < 32:
        raise StoreError(
            f"the links key {str(path)!r} is shorter than 32 bytes; delete it to make a new one"
        )
    return key


@dataclass(frozen=True)
class LinkClaims:
    """What a verified token says.

    Attributes:
        run_id: the run.
        call_id: the tool call (for ``answer``: the ``ask_human`` call of the question).
        action: ``approve``, ``deny`` or ``answer``.
        arguments_sha256: the call's arguments hash the link is bound to ("" for ``answer``).
        nonce: the link's nonce (its row in ``decision_links``).
    """

    run_id: str
    call_id: str
    action: str
    arguments_sha256: str
    nonce: str


class LinkInvalid(Exception):
    """A token that does not verify.

    Attributes:
        reason: ``expired`` (a good signature past its age) or ``bad_signature``.
        claims: the payload when the signature was good but old (to record the run), else None.
    """

    def __init__(self, reason: str, claims: LinkClaims | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.claims = claims


class DecisionLinks:
    """Mints and verifies decision links with the key in ``home``.

    Args:
        home: AGENTRUN_HOME (the key is ``links.key`` there).
        max_age_s: how long a link works after it is minted, in seconds.
        clock: the current time (UTC); tests pass another to age links.
    """

    def __init__(
        self,
        home: Path,
        max_age_s: float = DEFAULT_LINK_MAX_AGE_S,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        from itsdangerous import TimestampSigner, URLSafeTimedSerializer

        self.max_age_s = max_age_s
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        now = self.clock

        class ClockedSigner(TimestampSigner):
            """itsdangerous's timestamp signer, its time read from the injected clock."""

            def get_timestamp(self) -> int:
                return int(now().timestamp())

        self.serializer = URLSafeTimedSerializer(load_key(home), salt=SALT, signer=ClockedSigner)

    def mint(
        self, store: RunStore, run_id: str, call_id: str, action: str, arguments_sha256: str
    ) -> str:
        """A new token for ``action`` on a call, its nonce recorded in ``store``.

        Raises:
            ValueError: ``action`` is not one of :data:`ACTIONS`.
        """
        if action not in ACTIONS:
            raise ValueError(f"unknown decision link action {action!r}; expected one of {ACTIONS}")
        nonce = secrets.token_urlsafe(16)
        expires = self.clock() + timedelta(seconds=self.max_age_s)
        store.add_decision_link(
            nonce,
            run_id,
            call_id,
            action,
            arguments_sha256,
            expires.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        )
        payload = {"r": run_id, "c": call_id, "a": action, "h": arguments_sha256, "n": nonce}
        return str(self.serializer.dumps(payload))

    def verify(self, token: str) -> LinkClaims:
        """The claims of a token signed here and younger than :attr:`max_age_s`.

        Raises:
            LinkInvalid: ``bad_signature`` (forged, altered, signed with another key, not a
                token) or ``expired`` (older than the maximum age).
        """
        from itsdangerous import BadSignature, SignatureExpired

        try:
            payload = self.serializer.loads(token, max_age=int(self.max_age_s))
        except SignatureExpired as error:
            payload = None
            if error.payload is not None:
                with contextlib.suppress(BadSignature):
                    payload = self.serializer.load_payload(error.payload)
            raise LinkInvalid("expired", _claims(payload)) from None
        except BadSignature:
            raise LinkInvalid("bad_signature") from None
        claims = _claims(payload)
        if claims is None:
            raise LinkInvalid("bad_signature")
        return claims


def _claims(payload: Any) -> LinkClaims | None:
    if not isinstance(payload, dict):
        return None
    values = [payload.get(key) for key in ("r", "c", "a", "h", "n")]
    if not all(isinstance(value, str) for value in values) or values[2] not in ACTIONS:
        return None
    return LinkClaims(*values)  # type: ignore[arg-type]
