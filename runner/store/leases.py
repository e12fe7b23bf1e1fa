"""Leases in the run store: who holds a named role (the daemons' leadership) until when.

A lease is one row of the ``leases`` table (migration ``0010_leases``): its name, its holder,
a term (the fencing token: incremented each time the holder changes, never reset), when the
current holder acquired it and when it expires. The pattern is the database lease of
Kubernetes' leader election (a ``Lease`` object with a holder identity, a duration and a
transition count), kept in the store every daemon already shares, so no other service
(ZooKeeper, etcd) is needed.

**Clocks.** Expiry instants are the database's clock, never a caller's: every statement
reads the time with :attr:`LeaseSQL.now_sql` (SQLite: the clock of the machine whose process
runs the statement; PostgreSQL: the server's ``clock_timestamp()``), so daemons on machines
whose clocks disagree still agree on who holds the lease. A holder that must know how long
it may still act measures from the moment it *sent* the renewal with its own monotonic clock
(:attr:`Lease.ttl_s` after it): the database's ``now`` inside the statement is no earlier
than that, so the holder's deadline falls no later than the row's expiry. Only the clocks'
rates must agree, not their settings (no NTP requirement for correctness; a SQLite store on a
shared file is one machine's clock anyway).

:class:`StoreLeases` is written in portable SQL (``?`` placeholders, ``INSERT ... ON
CONFLICT ... DO UPDATE ... WHERE``, ``RETURNING``, no dialect function outside
:attr:`~StoreLeases.lease_now_sql`) and runs through :meth:`StoreLeases.lease_rows`, so a
backend mixes it in and overrides at most those two.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

#: The database's "now" as seconds since the Unix epoch (a float), per dialect.
SQLITE_NOW = "((julianday('now') - 2440587.5) * 86400.0)"
POSTGRES_NOW = "(EXTRACT(EPOCH FROM clock_timestamp())::double precision)"


@dataclass(frozen=True)
class Lease:
    """A lease as the database saw it when it was read or written.

    Attributes:
        name: what the lease is for (``daemon``: the daemons' leadership).
        holder: who holds (or last held) it: ``hostname:AGENTRUN_HOME`` for a daemon.
        term: the fencing token, 1 for the first holder, +1 at each change of holder.
        acquired: when ``holder`` took it (UTC, the database's clock).
        expires: when it lapses unless renewed (UTC, the database's clock).
        remaining_s: seconds from the database's now to ``expires``; 0 or less: expired
            (free for anyone to take).
    """

    name: str
    holder: str
    term: int
    acquired: datetime
    expires: datetime
    remaining_s: float

    @property
    def held(self) -> bool:
        """Whether the lease had not expired when it was read."""
        return self.remaining_s > 0

    def as_dict(self) -> dict[str, Any]:
        """The lease as JSON-ready values (instants in ISO 8601, UTC)."""
        return {
            "name": self.name,
            "holder": self.holder,
            "term": self.term,
            "acquired": self.acquired.isoformat(timespec="milliseconds"),
            "expires": self.expires.isoformat(timespec="milliseconds"),
            "remaining_s": round(self.remaining_s, 3),
            "held": self.held,
        }


def _instant(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(float(epoch_s), UTC)


def _lease(row: Any) -> Lease:
    """A ``(name, holder, term, acquired, expires, now)`` row, typed."""
    name, holder, term, acquired, expires, now = row
    return Lease(
        name=str(name),
        holder=str(holder),
        term=int(term),
        acquired=_instant(acquired),
        expires=_instant(expires),
        remaining_s=float(expires) - float(now),
    )


class StoreLeases:
    """The lease methods of :class:`runner.store.interface.RunStore`, in portable SQL.

    A part of :class:`runner.store.sqlite.SQLiteRunStore`; a PostgreSQL store mixes it in
    too, setting :attr:`lease_now_sql` to :data:`POSTGRES_NOW` and, if its driver does not
    take ``?`` placeholders, overriding :meth:`lease_rows`.
    """

    db: Any
    #: The dialect's expression for the database's now, in epoch seconds.
    lease_now_sql: str = SQLITE_NOW

    def lease_rows(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        """Run one statement (committed on its own) and return its rows.

        The default is a DB-API connection ``self.db`` in autocommit mode that takes ``?``
        placeholders (sqlite3's).
        """
        return list(self.db.execute(sql, params).fetchall())

    def acquire_lease(self, name: str, holder: str, ttl_s: float) -> Lease | None:
        """Take lease ``name`` for ``holder`` for ``ttl_s`` seconds, or renew it.

        One atomic statement: the lease is taken when it does not exist or has expired
        (its term goes up by one when the holder changes), and renewed (its expiry moved to
        now + ``ttl_s``) when ``holder`` holds it; held by someone else, nothing changes.

        Returns:
            The lease when ``holder`` holds it after the statement, else None.

        Raises:
            ValueError: ``ttl_s`` is not positive.
        """
        if not ttl_s > 0:
            raise ValueError(f"a lease's ttl_s must be more than 0 seconds, not {ttl_s!r}")
        now = self.lease_now_sql
        rows = self.lease_rows(
            f"""INSERT INTO leases (name, holder, term, acquired, expires)
                VALUES (?, ?, 1, {now}, {now} + ?)
                ON CONFLICT (name) DO UPDATE SET
                    term = CASE WHEN leases.holder = excluded.holder
                                THEN leases.term ELSE leases.term + 1 END,
                    acquired = CASE WHEN leases.holder = excluded.holder
                                     AND leases.expires > excluded.acquired
                                    THEN leases.acquired ELSE excluded.acquired END,
                    holder = excluded.holder,
                    expires = excluded.expires
                WHERE leases.holder = excluded.holder OR leases.expires <= excluded.acquired
                RETURNING name, holder, term, acquired, expires, {now}""",
            (name, holder, float(ttl_s)),
        )
        return _lease(rows[0]) if rows else None

    def release_lease(self, name: str, holder: str) -> bool:
        """Give up lease ``name`` if ``holder`` holds it; True if it was released.

        It expires now; the row, its holder and its term stay, so the next holder's term is
        still one more.
        """
        now = self.lease_now_sql
        rows = self.lease_rows(
            f"""UPDATE leases SET expires = {now}
                WHERE name = ? AND holder = ? AND expires > {now}
                RETURNING name""",
            (name, holder),
        )
        return bool(rows)

    def lease(self, name: str) -> Lease | None:
        """Lease ``name`` as it stands (held or expired), or None if it was never taken."""
        rows = self.lease_rows(
            f"""SELECT name, holder, term, acquired, expires, {self.lease_now_sql}
                FROM leases WHERE name = ?""",
            (name,),
        )
        return _lease(rows[0]) if rows else None
