"""The store contract suite's fixtures: the same tests against SQLite and PostgreSQL.

``store_location`` is parametrized over both backends: a SQLite file in the test's folder,
or an empty PostgreSQL database of the test's own (``postgres_url``, tests/services.py).
``store`` is the store opened there, closed after the test. A test taking either runs
twice, ``[sqlite]`` and ``[postgresql]``; what only a SQLite file has (its size, its WAL,
its triggers) stays in tests that open a file themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.store import RunStore
from runner.store.location import StoreLocation, open_store

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> StoreLocation:
    """Where a store of the test's own is: a SQLite file, or a PostgreSQL URL."""
    if request.param == "sqlite":
        return tmp_path / "store" / "runs.db"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store(store_location: StoreLocation) -> Iterator[RunStore]:
    """The store at ``store_location``, opened (and migrated), closed after the test."""
    opened = open_store(store_location)
    try:
        yield opened
    finally:
        opened.close()
