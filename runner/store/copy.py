"""A SQLite store's whole history moved to PostgreSQL, verified (``agentrun store copy``).

Every table is copied (the ``migrations`` table aside: the target records its own, of the
same names), parents before children (the order of their foreign keys), with the ids kept,
so references between rows, the run event log's ids a console resumes from and decision
links stay valid. PostgreSQL's COPY protocol moves the rows (``COPY ... FROM STDIN``), all in
one transaction: a failure leaves the target as it was. Each identity's sequence is then
moved past the ids copied (past SQLite's ``AUTOINCREMENT`` high-water mark too, so an id
deleted in SQLite is not reused). A target that already holds runs is refused.

The copy is verified afterwards from both sides: the row count of every table, and a
SHA-256 digest of every run's export (:func:`runner.store.export.export_events`, the JSONL
``agentrun runs export`` prints), which covers the run, its model calls and its tool calls
field by field. Sealed messages are copied as they are, still sealed with the SQLite store's
``seal.key``: machines using the PostgreSQL store need that key
(``AGENTRUN_SEAL_KEY_FILE``) to resume the runs that wait.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from ..errors import StoreError
from .postgres import PostgresRunStore
from .sqlite import SQLiteRunStore

#: Tables a copy leaves alone: each store records its own migrations; SQLite's own table.
SKIPPED = ("migrations", "sqlite_sequence")


@dataclass
class CopyReport:
    """What :func:`copy_store` moved and what it checked.

    Attributes:
        counts: per table, ``(rows in the source, rows in the target)`` after the copy.
        runs: how many runs' export digests were compared.
        mismatched: the ids of runs whose export differs between the two stores.
        seal_key: the SQLite store's seal key file (the one sealed messages need).
    """

    counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    runs: int = 0
    mismatched: list[str] = field(default_factory=list)
    seal_key: Path | None = None

    @property
    def verified(self) -> bool:
        """Every table's count and every run's export digest match."""
        same_counts = all(source == target for source, target in self.counts.values())
        return same_counts and not self.mismatched


def tables_in_order(db: sqlite3.Connection) -> list[str]:
    """The SQLite store's tables, each after the tables its foreign keys refer to."""
    names = [
        row[0]
        for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        if row[0] not in SKIPPED
    ]
    parents = {
        name: {row[2] for row in db.execute(f"PRAGMA foreign_key_list({name})")} - {name}
        for name in names
    }
    ordered: list[str] = []
    while len(ordered) < len(names):
        ready = [n for n in names if n not in ordered and parents[n] <= set(ordered)]
        if not ready:
            raise StoreError(f"the tables' foreign keys form a cycle: {sorted(parents)}")
        ordered.extend(ready)
    return ordered


def export_digest(store: SQLiteRunStore | PostgresRunStore, run_id: str) -> str:
    """SHA-256 (hex) of run ``run_id``'s export, its events as sorted-key JSON lines."""
    digest = hashlib.sha256()
    for event in store.export(run_id):
        digest.update(json.dumps(event, sort_keys=True).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def copy_store(source_path: Path, target_url: str) -> CopyReport:
    """Copy the SQLite store ``source_path`` into the PostgreSQL store ``target_url``.

    Both are opened (and so migrated to the same schema) first.

    Returns:
        The counts and digests compared; :attr:`CopyReport.verified` says if all match.

    Raises:
        StoreError: no store at ``source_path``; the target cannot be reached, or already
            holds runs; a row the target refuses (nothing is then copied).
    """
    if not source_path.is_file():
        raise StoreError(f"no SQLite run store at {str(source_path)!r}")
    source = SQLiteRunStore(source_path)
    target = PostgresRunStore(target_url)
    try:
        held = target.db.execute("SELECT count(*) FROM runs").fetchone()[0]
        if held:
            raise StoreError(
                f"the run store {target.name!r} already holds {held} runs: copy into an "
                "empty one (a new database, migrated by `agentrun store migrate`)"
            )
        tables = tables_in_order(source.sqlite)
        _copy_rows(source, target, tables)
        report = CopyReport(seal_key=source.seal_key.path)
        for table in tables:
            report.counts[table] = (
                int(source.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]),
                int(target.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]),
            )
        run_ids = [row[0] for row in source.db.execute("SELECT id FROM runs ORDER BY id")]
        report.runs = len(run_ids)
        report.mismatched = [
            run_id
            for run_id in run_ids
            if export_digest(source, run_id) != export_digest(target, run_id)
        ]
        return report
    finally:
        source.close()
        target.close()


def _copy_rows(source: SQLiteRunStore, target: PostgresRunStore, tables: list[str]) -> None:
    """Every row of ``tables``, ids kept, in one transaction; sequences moved past them."""
    high_water = dict(source.sqlite.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
    target.db.execute("BEGIN")
    try:
        for table in tables:
            columns = [row[1] for row in source.sqlite.execute(f"PRAGMA table_info({table})")]
            listed = ", ".join(columns)
            rows = source.sqlite.execute(f"SELECT {listed} FROM {table}")
            target.postgres.copy_rows(table, columns, (tuple(row) for row in rows))
            if "id" in columns and target.postgres.is_identity(table, "id"):
                target.postgres.move_sequence_past(table, "id", int(high_water.get(table, 0)))
    except psycopg.Error as error:
        target.db.rollback()
        raise StoreError(
            f"the run store {target.name!r} refused the copy, which was rolled back "
            f"(nothing copied): {target.postgres.scrub(error)}"
        ) from None
    except BaseException:
        target.db.rollback()
        raise
    target.db.commit()
