"""The connection the store's SQL runs on: the subset of :mod:`sqlite3` both backends give.

The store's records and queries (:mod:`runner.store.recording` and its parts) are written
once and run on ``self.db``, a :class:`Database`: a :class:`sqlite3.Connection` in
autocommit mode (``isolation_level=None``) for SQLite, or
:class:`runner.store.postgres.PostgresConnection` for PostgreSQL, which takes the same
calls (``?`` placeholders, ``BEGIN`` / ``BEGIN IMMEDIATE`` / ``commit()`` / ``rollback()``,
rows read by column name and by position, ``dict(row)``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol


class Cursor(Protocol):
    """What an ``execute`` returns: the rows of a query, or the count of rows changed."""

    @property
    def rowcount(self) -> int:
        """Rows an ``INSERT``/``UPDATE``/``DELETE`` changed (-1 for a query)."""
        ...

    def fetchone(self) -> Any:
        """The next row, or None."""
        ...

    def fetchall(self) -> list[Any]:
        """The remaining rows."""
        ...

    def __iter__(self) -> Iterator[Any]:
        """The remaining rows, one by one."""
        ...


class Database(Protocol):
    """A connection in autocommit mode whose transactions are opened by ``BEGIN``.

    ``BEGIN IMMEDIATE`` takes the store's write lock at once (SQLite's semantics: one
    writer at a time); plain ``BEGIN`` takes it at the first write in SQLite and at once in
    PostgreSQL (see :mod:`runner.store.postgres`).
    """

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open (``BEGIN`` ran, no commit or rollback yet)."""
        ...

    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor:
        """Run one statement with ``?`` placeholders bound to ``parameters``."""
        ...

    def commit(self) -> None:
        """Commit the open transaction."""
        ...

    def rollback(self) -> None:
        """Roll the open transaction back."""
        ...


@contextmanager
def joined_transaction(db: Database, begin: str = "BEGIN IMMEDIATE") -> Iterator[None]:
    """The block in a transaction: its own, or the caller's when one is open already.

    Its own starts with ``begin`` (``BEGIN IMMEDIATE``: the write lock at once, see
    :class:`Database`), commits when the block ends and rolls back when it raises
    (any exception, ``KeyboardInterrupt`` included). In a transaction already open the block
    joins it: the caller commits or rolls back.
    """
    own = not db.in_transaction
    if own:
        db.execute(begin)
    try:
        yield
    except BaseException:
        if own:
            db.rollback()
        raise
    if own:
        db.commit()
