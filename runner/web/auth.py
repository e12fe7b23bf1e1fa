"""Who may use the console and the API: the login token, the session cookie, CSRF.

No web framework here: these are the decisions, as plain functions over strings, that the
app's middleware (:mod:`runner.web.app`) applies to every request.

* **The token.** One random token (32 bytes, URL-safe base 64) kept in
  ``AGENTRUN_HOME/console.token``, created owner-only (``0600``) when missing. Whoever can
  read that file may use the console; ``agentrun console`` prints a login link with it,
  as Jupyter does.
* **API clients** send ``Authorization: Bearer TOKEN``. Such a request carries no ambient
  credential (a browser never adds the header by itself), so it needs no CSRF token.
* **Browsers** open ``/login?token=TOKEN`` once and get two cookies: the session cookie
  (``HttpOnly``, ``SameSite=Strict``), whose value is an HMAC-SHA256 of a fixed label under
  the token, so the token itself never sits in a cookie; and the ``csrf`` cookie (readable
  by the page's script, also ``SameSite=Strict``), a random value.
* **CSRF.** A state-changing request (``POST``, ``PUT``, ``PATCH``, ``DELETE``)
  authenticated by the session cookie must repeat the ``csrf`` cookie's value in an
  ``X-CSRF-Token`` header or a ``csrf`` form field: the double-submit cookie pattern of
  OWASP's Cross-Site Request Forgery Prevention Cheat Sheet. A page of another origin can
  make the browser send the cookies but cannot read them to repeat the value.

Every comparison of a secret is made in constant time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from ..paths import PRIVATE_FILE_MODE, tighten

#: Random bytes in a login token and in a CSRF token.
TOKEN_BYTES = 32
#: The session cookie's name (``HttpOnly``, ``SameSite=Strict``).
SESSION_COOKIE = "agentrun_session"
#: The double-submit CSRF cookie's name (readable by the page, ``SameSite=Strict``).
CSRF_COOKIE = "csrf"
#: The header that repeats the CSRF cookie's value.
CSRF_HEADER = "X-CSRF-Token"
#: The form field that repeats it, for a plain HTML form.
CSRF_FIELD = "csrf"
#: HTTP methods that change state and so need a CSRF token when a cookie authenticates them.
STATE_CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Seconds a browser session lasts (the cookies' ``Max-Age``): 7 days.
SESSION_MAX_AGE_S = 7 * 24 * 3600

_SESSION_LABEL = b"agentrun console session v1"


class Face(StrEnum):
    """Through which face of agentrun a person acted (the first word of a decision's ``by``)."""

    API = "api"
    """An API client with the bearer token."""
    CONSOLE = "console"
    """A browser with the session cookie."""


@dataclass(frozen=True)
class Principal:
    """Who made an authenticated request.

    Attributes:
        face: the API (bearer token) or the console (session cookie).
        label: the token's label (``console`` for the token in ``console.token``).
        client: the client's address as the server saw it (``127.0.0.1``), or ``unknown``.
    """

    face: Face
    label: str
    client: str

    @property
    def by(self) -> str:
        """What a decision records as its maker: ``api:console@127.0.0.1``."""
        return f"{self.face}:{self.label}@{self.client}"


@dataclass(frozen=True)
class Credential:
    """A login token and its label.

    Attributes:
        label: the name decisions record (``console``).
        token: the secret itself.
    """

    label: str
    token: str

    @property
    def session(self) -> str:
        """The session cookie's value: HMAC-SHA256 of a fixed label under the token, hex.

        It proves the browser logged in with the token without being the token; changing
        the token (deleting ``console.token``) ends every session.
        """
        return hmac.new(self.token.encode(), _SESSION_LABEL, hashlib.sha256).hexdigest()

    def matches_token(self, presented: str | None) -> bool:
        """Whether ``presented`` is the token (constant time)."""
        return presented is not None and hmac.compare_digest(
            presented.encode(), self.token.encode()
        )

    def matches_session(self, presented: str | None) -> bool:
        """Whether ``presented`` is a valid session cookie value (constant time)."""
        return presented is not None and hmac.compare_digest(
            presented.encode(), self.session.encode()
        )


def load_token(path: Path, label: str = "console") -> Credential:
    """The token in ``path``, made (32 random bytes, file mode ``0600``) when it is missing.

    A file that exists is tightened to ``0600`` if it is looser (with a warning, see
    :func:`runner.paths.tighten`); an empty one gets a new token.

    Raises:
        OSError: the file cannot be read or written.
    """
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE_MODE)
    except FileExistsError:
        tighten(path, PRIVATE_FILE_MODE)
        token = path.read_text(encoding="utf-8").strip()
        if token:
            return Credential(label, token)
        descriptor = os.open(path, os.O_WRONLY | os.O_TRUNC)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(token + "\n")
    return Credential(label, token)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header (RFC 6750), or None."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def new_csrf_token() -> str:
    """A fresh value for the ``csrf`` cookie."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def csrf_matches(cookie: str | None, submitted: str | None) -> bool:
    """Whether the submitted CSRF token repeats the cookie's (constant time; both needed)."""
    if not cookie or not submitted:
        return False
    return hmac.compare_digest(cookie.encode(), submitted.encode())
