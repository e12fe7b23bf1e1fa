"""`agentrun store`: migrate the run store, or copy a SQLite history into PostgreSQL."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..errors import StoreError, UsageError
from .base import EXIT_ERROR, cli


@cli.group()
def store() -> None:
    """The run store itself: its migrations, and moving a history to PostgreSQL."""


@store.command()
@click.option(
    "--store",
    "location",
    default=None,
    metavar="URL",
    help="The store to migrate: sqlite:////abs/path/runs.db or postgresql://... "
    "[default: AGENTRUN_STORE, else runs.db in AGENTRUN_HOME]",
)
def migrate(location: str | None) -> None:
    """Apply the store's pending migrations (each once, even with other processes starting).

    Prints the migrations applied; nothing to do is not an error. Safe to run before every
    upgrade of daemons and workers (docs/run-store.md).
    """
    from ..store.location import open_store, redacted, scheme, store_location
    from ..store.recording import SQLRunStore

    where = store_location() if location is None else location
    if location is not None:
        try:
            scheme(location)
        except StoreError as error:
            raise UsageError(f"--store: {error}") from None
    opened = open_store(where)
    try:
        applied = opened.migrations_applied if isinstance(opened, SQLRunStore) else []
    finally:
        opened.close()
    for name in applied:
        click.echo(f"applied {name}")
    count = "no migration was pending" if not applied else f"{len(applied)} applied"
    click.echo(f"{redacted(where)}: up to date ({count})")


@store.command()
@click.argument("sqlite_file", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("postgres_url")
def copy(sqlite_file: Path, postgres_url: str) -> None:
    """Copy a SQLite store's whole history into an empty PostgreSQL store, then verify it.

    Every table with its ids; then each table's row count and each run's export digest
    (SHA-256) are compared on both sides. Exits 1 naming any run that differs.
    """
    from ..store.location import redacted, scheme

    if scheme(postgres_url) != "postgresql":
        raise UsageError(f"POSTGRES_URL: {redacted(postgres_url)!r} is not a postgresql:// URL")
    from ..store.copy import copy_store

    report = copy_store(sqlite_file.resolve(), postgres_url)
    click.echo(f"{'TABLE':<24} {'SQLITE':>9} {'POSTGRESQL':>11}")
    for table, (source, target) in report.counts.items():
        mark = "" if source == target else "  MISMATCH"
        click.echo(f"{table:<24} {source:>9} {target:>11}{mark}")
    if not report.verified:
        for run_id in report.mismatched:
            click.echo(f"run {run_id}: its export differs between the two stores", err=True)
        click.echo(
            f"the copy to {redacted(postgres_url)} does not match its source {str(sqlite_file)!r}",
            err=True,
        )
        sys.exit(EXIT_ERROR)
    click.echo(f"verified: {report.runs} runs, each export's SHA-256 the same on both sides")
    click.echo(
        f"sealed messages need the key {str(report.seal_key)!r} on every machine that resumes "
        "runs: point AGENTRUN_SEAL_KEY_FILE at a copy of it"
    )
