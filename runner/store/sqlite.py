"""The SQLite run store: one database file under ``AGENTRUN_HOME``, the default backend.

One :class:`SQLiteRunStore` per process. It migrates the database forward on open
(:mod:`runner.store.migrations`), uses WAL so readers never block a running agent, and
records :mod:`runner.events` as they happen through the SQL both backends share
(:class:`runner.store.recording.SQLRunStore`).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ..errors import StoreError
from ..paths import PRIVATE_FILE_MODE, private_dir, private_file, tighten
from . import migrations
from .recording import SQLRunStore
from .sealing import SealKey


class SQLiteRunStore(SQLRunStore):
    """The SQLite run store (``RunStore(path)`` opens one).

    The database, its ``-wal`` and ``-shm`` files and the seal key are owner-only
    (``0600``, their folder ``0700``; see :mod:`runner.paths`). The seal key is
    ``seal.key`` beside the database.

    Args:
        path: the database file (created with its folder if missing).

    Raises:
        StoreError: when the file cannot be opened or migrated.
    """

    integrity_errors = (sqlite3.IntegrityError,)

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)
        self.seal_key = SealKey(path.with_name("seal.key"))
        self._start()
        try:
            private_dir(path.parent)
            # SQLite gives the -wal and -shm files the database file's mode.
            private_file(path)
            for suffix in ("-wal", "-shm"):
                tighten(path.with_name(path.name + suffix), PRIVATE_FILE_MODE)
        except OSError as error:
            raise StoreError(f"cannot create the run store {str(path)!r}: {error}") from error
        try:
            self.db = self.sqlite = sqlite3.connect(
                path, isolation_level=None, timeout=30, check_same_thread=False
            )
            self.sqlite.row_factory = sqlite3.Row
            self.sqlite.execute("PRAGMA journal_mode=WAL")
            self.sqlite.execute("PRAGMA synchronous=NORMAL")
            self.sqlite.execute("PRAGMA foreign_keys=ON")
            self.migrations_applied = migrations.migrate(self.sqlite)
        except sqlite3.Error as error:
            raise StoreError(f"cannot open the run store {str(path)!r}: {error}") from error

    def close(self) -> None:
        """Commit anything still pending and close the connection."""
        if self.sqlite.in_transaction:
            self.sqlite.commit()
        self.sqlite.close()
