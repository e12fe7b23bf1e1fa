"""The PostgreSQL run store: one database several daemons and workers share (psycopg 3).

``AGENTRUN_STORE=postgresql://user:password@host:5432/agentrun`` opens a
:class:`PostgresRunStore` (:mod:`runner.store.location`). It records and reads exactly what
the SQLite store does, with the same SQL (:class:`runner.store.recording.SQLRunStore`): the
store's code talks to a :class:`PostgresConnection`, which takes the calls of a
:class:`sqlite3.Connection` in autocommit mode (:class:`runner.store.database.Database`).
Stored values are the same: instants are the same ISO 8601 text, text columns compare and
sort bytewise (``COLLATE "C"``, SQLite's ``BINARY``), sums come back as ``int`` and
``float``. psycopg is imported only when a PostgreSQL store is opened.

**One writer at a time.** SQLite lets one transaction write at a time (``BEGIN IMMEDIATE``
takes the lock at once, ``BEGIN`` at its first write), and the store relies on it in two
ways: a decision and its log entry are checked and written with nobody in between, and the
run event log's ids become visible in order. A PostgreSQL sequence hands out ids at insert
time while commits land in any order: a follower that read id 8 committed before id 7 would
never read 7 (``events_since(after_id)``: the console's live feed, the daemon's notification
follower). So every transaction here (``BEGIN`` and ``BEGIN IMMEDIATE`` alike) starts by
taking one transaction-scoped advisory lock, :data:`WRITE_LOCK` (``pg_advisory_xact_lock``,
released by the commit or rollback): transactions commit one after the other, and an entry
is inserted only by the transaction holding the lock, so ids become visible in order. Row
locks alone would not do it: two runs' transactions touch no common row, yet share the
log's sequence. Statements outside a transaction (a heartbeat, a fire's ``INSERT ... ON
CONFLICT DO NOTHING``, a claim's ``UPDATE ... WHERE status != 'running'``) are atomic
on their own and never write the log. Every transaction takes the lock first, before any
row lock, so transactions cannot deadlock on it. The store's transactions are short and
never wait for anything outside (everything is committed before a model call, a tool or a
person: :meth:`SQLRunStore.record`).

**A lost connection** (the server restarted, a network cut) raises :class:`StoreError`
naming the store with its password masked; the next call outside a transaction connects
again, so a long-lived daemon recovers by itself. A transaction the connection took with it
is gone: calls inside it keep raising until it is rolled back.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import psycopg
from psycopg.pq import TransactionStatus

from ..errors import StoreError
from .leases import POSTGRES_NOW
from .location import redacted
from .migrations_postgres import migrate_postgres
from .recording import SQLRunStore
from .sealing import SealKey

if TYPE_CHECKING:
    from psycopg.rows import RowMaker

#: Where every machine using a PostgreSQL store reads the seal key; default
#: ``AGENTRUN_HOME/seal.key``. Every machine that resumes runs needs the same key.
SEAL_KEY_ENV = "AGENTRUN_SEAL_KEY_FILE"
#: The advisory lock every transaction holds from ``BEGIN`` to its end ("agentrun" + 1).
WRITE_LOCK = 0x6167656E7472_01
#: Seconds to wait for the server when connecting.
CONNECT_TIMEOUT_S = 10


class Row:
    """A row read by column name (``row["id"]``), by position (``row[0]``) or as ``dict(row)``.

    The shape of :class:`sqlite3.Row`, so the store's code reads both backends' rows alike.
    """

    __slots__ = ("_names", "_values")

    def __init__(self, names: dict[str, int], values: Sequence[Any]) -> None:
        self._names = names
        self._values = values

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            return self._values[self._names[key]]
        return self._values[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def keys(self) -> list[str]:
        """The column names, in order."""
        return list(self._names)

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._names, self._values, strict=True))!r})"


def _row_maker(cursor: psycopg.Cursor[Any]) -> RowMaker[Row]:
    names = {column.name: index for index, column in enumerate(cursor.description or ())}
    return lambda values: Row(names, values)


@functools.lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """``sql`` with sqlite3's ``?`` placeholders as psycopg's ``%s`` (``%`` doubled).

    Quoted text (``'...'``, ``"..."``) is left alone. Cached: the store sends the same few
    hundred statements over and over.
    """
    out: list[str] = []
    quote = ""
    for char in sql:
        if quote:
            if char == quote:
                quote = ""
            out.append("%%" if char == "%" else char)
        elif char in "'\"":
            quote = char
            out.append(char)
        elif char == "?":
            out.append("%s")
        elif char == "%":
            out.append("%%")
        else:
            out.append(char)
    return "".join(out)


class PostgresConnection:
    """A psycopg connection behind the calls the store makes of a :class:`sqlite3.Connection`.

    Autocommit, with transactions opened by ``BEGIN`` (or ``BEGIN IMMEDIATE``), each taking
    :data:`WRITE_LOCK` first (the module's docstring says why). Thread-safe like sqlite3's
    connection with ``check_same_thread=False``: one statement at a time.

    Args:
        url: a ``postgresql://`` URL (libpq's form).

    Raises:
        StoreError: the server cannot be reached or refuses the connection.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.name = redacted(url)
        self._lock = threading.RLock()
        self._connection: psycopg.Connection[Row] | None = None
        # The connection broke inside a transaction: statements raise until it is ended.
        self._lost_transaction = False
        self._was_in_transaction = False
        self._connect()

    def _connect(self) -> psycopg.Connection[Row]:
        try:
            connection = psycopg.connect(
                self.url,
                autocommit=True,
                row_factory=_row_maker,
                connect_timeout=CONNECT_TIMEOUT_S,
                application_name="agentrun",
            )
        except psycopg.Error as error:
            raise StoreError(
                f"cannot connect to the run store {self.name!r}: {self.scrub(error)}"
            ) from None
        self._connection = connection
        return connection

    def scrub(self, error: BaseException) -> str:
        """The error's text, one line, without the URL's password should it appear."""
        text = " ".join(str(error).split())
        password = urlsplit(self.url).password
        return text.replace(password, "***") if password else text

    def _live(self) -> psycopg.Connection[Row]:
        """The connection, connected again when the last one was lost."""
        connection = self._connection
        if connection is None or connection.closed or connection.broken:
            if self._lost_transaction:
                raise StoreError(
                    f"the connection to the run store {self.name!r} was lost in the middle "
                    "of a transaction, which was rolled back; it must be ended first"
                )
            if connection is not None:
                connection.close()
            connection = self._connect()
        return connection

    def _lost(self, error: psycopg.Error, in_transaction: bool) -> StoreError:
        self._lost_transaction = in_transaction
        return StoreError(
            f"lost the connection to the run store {self.name!r}: {self.scrub(error)}; "
            "the next call connects again"
        )

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open (or was, on a connection lost since: not yet ended)."""
        if self._lost_transaction:
            return True
        connection = self._connection
        if connection is None or connection.closed or connection.broken:
            return False
        return connection.info.transaction_status != TransactionStatus.IDLE

    def execute(self, sql: str, parameters: Any = (), /) -> psycopg.Cursor[Row]:
        """Run one statement with ``?`` placeholders; ``BEGIN [IMMEDIATE]`` opens a transaction.

        Raises:
            StoreError: the connection was lost (during this statement, or inside the open
                transaction before it).
            psycopg.errors.IntegrityError: a unique or foreign key refused a row.
        """
        with self._lock:
            command = sql.strip().upper()
            if command in ("BEGIN", "BEGIN IMMEDIATE", "BEGIN DEFERRED"):
                return self._begin()
            connection = self._live()
            self._was_in_transaction = connection.info.transaction_status != TransactionStatus.IDLE
            try:
                return connection.execute(translate(sql), tuple(parameters))
            except psycopg.OperationalError as error:
                if connection.broken or connection.closed:
                    raise self._lost(error, in_transaction=self._was_in_transaction) from None
                raise StoreError(f"the run store {self.name!r}: {self.scrub(error)}") from None

    def _begin(self) -> psycopg.Cursor[Row]:
        self._lost_transaction = False  # whatever was lost is abandoned
        connection = self._live()
        try:
            # One round trip (no parameters: the simple query protocol takes both).
            return connection.execute(f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK:d})")
        except psycopg.OperationalError as error:
            if connection.broken or connection.closed:
                raise self._lost(error, in_transaction=False) from None
            raise StoreError(f"the run store {self.name!r}: {self.scrub(error)}") from None

    def commit(self) -> None:
        """Commit the open transaction (releasing :data:`WRITE_LOCK`).

        Raises:
            StoreError: the connection was lost before the commit (the transaction is rolled
                back) or during it (whether it committed is unknown), or the server refused.
        """
        with self._lock:
            if self._lost_transaction:
                self._lost_transaction = False
                raise StoreError(
                    f"cannot commit: the connection to the run store {self.name!r} was lost "
                    "and took the transaction with it"
                )
            connection = self._live()
            try:
                connection.execute("COMMIT")
            except psycopg.OperationalError as error:
                if connection.broken or connection.closed:
                    # Whether the server committed before the connection went is unknown.
                    raise self._lost(error, in_transaction=False) from None
                raise StoreError(f"the run store {self.name!r}: {self.scrub(error)}") from None

    def rollback(self) -> None:
        """Roll the open transaction back (nothing to do when the connection was lost)."""
        with self._lock:
            self._lost_transaction = False
            connection = self._connection
            if connection is None or connection.closed or connection.broken:
                return
            connection.execute("ROLLBACK")

    def copy_rows(self, table: str, columns: list[str], rows: Iterable[tuple[Any, ...]]) -> None:
        """Load ``rows`` into ``table`` with PostgreSQL's COPY (``agentrun store copy``).

        ``table`` and ``columns`` are names read from the source store's schema, quoted here.
        """
        names = ", ".join(f'"{column}"' for column in columns)
        with (
            self._lock,
            self._live().cursor() as cursor,
            cursor.copy(f'COPY "{table}" ({names}) FROM STDIN') as copying,
        ):
            for row in rows:
                copying.write_row(row)

    def is_identity(self, table: str, column: str) -> bool:
        """Whether ``table.column`` takes its values from a sequence (an identity column)."""
        found = self.execute("SELECT pg_get_serial_sequence(?, ?)", (table, column)).fetchone()
        return found is not None and found[0] is not None

    def move_sequence_past(self, table: str, column: str, at_least: int = 0) -> None:
        """Make ``table.column``'s next value exceed its largest one and ``at_least``."""
        self.execute(
            f"""SELECT setval(pg_get_serial_sequence(?, ?),
                   GREATEST(coalesce(max("{column}"), 0), ?, 1),
                   GREATEST(coalesce(max("{column}"), 0), ?) > 0) FROM "{table}" """,
            (table, column, at_least, at_least),
        )

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()


def seal_key_path(environ: dict[str, str] | None = None) -> Path:
    """The seal key of a PostgreSQL store: ``AGENTRUN_SEAL_KEY_FILE``, else the home's."""
    from ..paths import home

    environ = dict(os.environ) if environ is None else environ
    named = environ.get(SEAL_KEY_ENV, "").strip()
    return Path(named).expanduser() if named else home() / "seal.key"


class PostgresRunStore(SQLRunStore):
    """The PostgreSQL run store (``AGENTRUN_STORE=postgresql://...``).

    Opening it migrates the database (:func:`runner.store.migrations_postgres.migrate_postgres`,
    under a session advisory lock, so processes starting together apply each migration
    once). Sealed messages are sealed with the key in ``AGENTRUN_SEAL_KEY_FILE`` (default
    ``AGENTRUN_HOME/seal.key``): every machine that resumes runs must have the same file.

    Args:
        url: a ``postgresql://`` (or ``postgres://``) URL.

    Raises:
        StoreError: the database cannot be reached or migrated.
    """

    integrity_errors = (psycopg.errors.IntegrityError,)
    lease_now_sql = POSTGRES_NOW

    def __init__(self, url: str) -> None:
        self.url = url
        self.name = redacted(url)
        self.seal_key = SealKey(
            seal_key_path(),
            hint=f"every machine using this store needs the same key file ({SEAL_KEY_ENV})",
        )
        self._start()
        self.postgres = PostgresConnection(url)
        self.db = self.postgres
        try:
            self.migrations_applied = migrate_postgres(self.postgres)
        except psycopg.Error as error:
            self.postgres.close()
            raise StoreError(
                f"cannot migrate the run store {self.name!r}: {self.postgres.scrub(error)}"
            ) from None

    def close(self) -> None:
        """Commit anything still pending and close the connection."""
        try:
            if self.postgres.in_transaction:
                self.postgres.commit()
        finally:
            self.postgres.close()
