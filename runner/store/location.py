"""Which run store a process opens: ``AGENTRUN_STORE``, or the SQLite file in AGENTRUN_HOME.

``AGENTRUN_STORE`` takes a URL (the forms SQLAlchemy and libpq use):

    sqlite:////var/lib/agentrun/runs.db     a SQLite file (four slashes: an absolute path)
    postgresql://user:password@host:5432/db a PostgreSQL database (psycopg 3; the
                                            ``[postgres]`` extra); ``postgres://`` too

Unset, every process uses ``runs.db`` in its ``AGENTRUN_HOME`` (one machine). Daemons and
workers on several machines share one PostgreSQL store by giving each the same URL.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from ..errors import StoreError
from .interface import RunStore

STORE_ENV = "AGENTRUN_STORE"
POSTGRES_SCHEMES = ("postgresql", "postgres")

StoreLocation = str | Path
"""A SQLite file (a :class:`~pathlib.Path`, or a ``sqlite:///`` URL) or a PostgreSQL URL."""


def store_location(
    home: Path | None = None, environ: Mapping[str, str] | None = None
) -> StoreLocation:
    """``AGENTRUN_STORE`` when set, else ``runs.db`` in ``home`` (default: AGENTRUN_HOME).

    Raises:
        StoreError: ``AGENTRUN_STORE`` is set to something that is not a store URL.
    """
    environ = os.environ if environ is None else environ
    url = environ.get(STORE_ENV, "").strip()
    if url:
        scheme(url)  # refuse a bad one where it is read, naming the variable
        return url
    if home is None:
        from ..paths import store_path

        return store_path()
    return home / "runs.db"


def scheme(location: StoreLocation) -> str:
    """``"sqlite"`` or ``"postgresql"``.

    Raises:
        StoreError: an unknown scheme, or a ``sqlite:`` URL without an absolute path.
    """
    if isinstance(location, Path):
        return "sqlite"
    parts = urlsplit(location)
    if parts.scheme in POSTGRES_SCHEMES:
        return "postgresql"
    if parts.scheme == "sqlite":
        if not sqlite_path(location).is_absolute():
            raise StoreError(
                f"{STORE_ENV}: {redacted(location)!r}: a SQLite URL names an absolute path "
                "(sqlite:////var/lib/agentrun/runs.db)"
            )
        return "sqlite"
    raise StoreError(
        f"{STORE_ENV}: {redacted(location)!r} is not a store URL: use "
        "sqlite:////absolute/path/runs.db or postgresql://user:password@host/database"
    )


def sqlite_path(location: StoreLocation) -> Path:
    """The file of a SQLite location."""
    if isinstance(location, Path):
        return location
    return Path(unquote(urlsplit(location).path))


def open_store(location: StoreLocation) -> RunStore:
    """Open (and migrate) the store at ``location``.

    Raises:
        StoreError: a bad location, a PostgreSQL URL without psycopg installed, or a store
            that cannot be reached, opened or migrated.
    """
    if scheme(location) == "sqlite":
        from .sqlite import SQLiteRunStore

        return SQLiteRunStore(sqlite_path(location))
    try:
        from .postgres import PostgresRunStore
    except ImportError as error:
        raise StoreError(
            f"{STORE_ENV} names a PostgreSQL store, which needs psycopg: "
            f"pip install 'agentrun[postgres]' ({error})"
        ) from error
    assert isinstance(location, str)
    return PostgresRunStore(location)


def redacted(location: StoreLocation) -> str:
    """``location`` fit to print: a URL's password replaced by ``***``."""
    if isinstance(location, Path):
        return str(location)
    parts = urlsplit(location)
    if parts.password is None:
        return location
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))
