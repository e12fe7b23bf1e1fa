"""Sealed values: what the record must not show but a resume must have, encrypted at rest.

Every event is redacted before the run store sees it (:mod:`runner.redact`), but a run that
pauses for approval or is interrupted continues from the store, and it must continue with
exactly what the model said: a ``write_file`` whose content holds a token writes the token,
not ``[REDACTED]``. So the exact form of each message that redaction changed is *sealed*:
encrypted with AES-256-GCM (``cryptography``), a 96-bit random nonce per message, and the
run id and message number as associated data (a sealed row moved to another run or place
does not open). The 256-bit key lives in ``seal.key`` beside the database, ``0600``; a
PostgreSQL store, which several machines share, reads it from ``AGENTRUN_SEAL_KEY_FILE``
(default ``AGENTRUN_HOME/seal.key``), and every machine that resumes runs needs the same one
(:mod:`runner.store.postgres`).

Why encrypted, when the key sits in the same folder: the database is the file people copy,
back up, attach to a bug report or move to another store; a copy of ``runs.db`` alone
reveals no secret. The store keeps sealed rows only while the run can still be resumed.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from ..errors import StoreError
from ..paths import PRIVATE_FILE_MODE, tighten

#: Bytes of the AES-256-GCM key.
KEY_BYTES = 32
#: Bytes of each message's nonce.
NONCE_BYTES = 12


class SealKey:
    """The key in ``path``, created on first use (``0600``).

    Args:
        path: the key file (``seal.key`` beside a SQLite store; for PostgreSQL,
            ``AGENTRUN_SEAL_KEY_FILE`` or ``AGENTRUN_HOME/seal.key``: see
            :mod:`runner.store.postgres`).
        hint: what to do when a sealed message does not open, added to the error.
    """

    def __init__(self, path: Path, hint: str = "") -> None:
        self.path = path
        self.hint = hint
        self._key: bytes | None = None

    def _load(self, create: bool) -> bytes:
        if self._key is not None:
            return self._key
        if not create and not self.path.exists():
            raise StoreError(
                f"cannot open sealed messages: their key {str(self.path)!r} is missing "
                f"({self.hint or 'the run store was moved without it'}); the run cannot be "
                "resumed with its exact arguments"
            )
        try:
            descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE_MODE)
        except FileExistsError:
            tighten(self.path, PRIVATE_FILE_MODE)
            key = self.path.read_bytes()
        else:
            key = secrets.token_bytes(KEY_BYTES)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(key)
                handle.flush()
                os.fsync(handle.fileno())
        if len(key) != KEY_BYTES:
            raise StoreError(
                f"the seal key {str(self.path)!r} holds {len(key)} bytes, expected {KEY_BYTES}"
            )
        self._key = key
        return key

    def seal(self, plaintext: bytes, context: bytes) -> tuple[bytes, bytes]:
        """Encrypt ``plaintext`` bound to ``context``; ``(nonce, ciphertext)``."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce, AESGCM(self._load(create=True)).encrypt(nonce, plaintext, context)

    def open(self, nonce: bytes, ciphertext: bytes, context: bytes) -> bytes:
        """Decrypt what :meth:`seal` gave for the same ``context``.

        Raises:
            StoreError: the key is missing or another, or the row was changed or moved.
        """
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        try:
            return AESGCM(self._load(create=False)).decrypt(nonce, ciphertext, context)
        except InvalidTag:
            raise StoreError(
                f"a sealed message ({context.decode()}) does not open with the key "
                f"{str(self.path)!r}: the key was replaced or the row was changed"
                + (f"; {self.hint}" if self.hint else "")
            ) from None
