"""The store's leases (runner/store/leases.py), on every backend: take, renew, expire, fence."""

from __future__ import annotations

import importlib.util
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.store import RunStore
from runner.store.location import open_store

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store location of each backend (PostgreSQL: a database of the test's own)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared' / 'runs.db'}"
    if importlib.util.find_spec("runner.store.postgres") is None:
        pytest.skip("the PostgreSQL run store (runner/store/postgres.py) has not landed yet")
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(store_url: str) -> Iterator[RunStore]:
    opened = open_store(store_url)
    yield opened
    opened.close()


def wait_until_expired(store: RunStore, name: str) -> None:
    deadline = time.monotonic() + 30
    while (lease := store.lease(name)) is not None and lease.held:
        assert time.monotonic() < deadline, lease
        time.sleep(0.05)


def test_a_lease_is_taken_renewed_refused_and_taken_over_with_a_new_term(
    store: RunStore,
) -> None:
    assert store.lease("daemon") is None
    first = store.acquire_lease("daemon", "host-a:/home/a", 0.5)
    assert first is not None and first.holder == "host-a:/home/a" and first.term == 1
    assert 0 < first.remaining_s <= 0.5 and first.held
    # Held by a: b is refused and nothing changes.
    assert store.acquire_lease("daemon", "host-b:/home/b", 60) is None
    seen = store.lease("daemon")
    assert seen is not None and seen.holder == "host-a:/home/a" and seen.term == 1
    # a renews: same term, same acquisition, a later expiry.
    time.sleep(0.01)
    renewed = store.acquire_lease("daemon", "host-a:/home/a", 0.5)
    assert renewed is not None and renewed.term == 1
    assert renewed.acquired == first.acquired and renewed.expires > first.expires
    # Once it expired, b takes it: the term (the fencing token) goes up.
    wait_until_expired(store, "daemon")
    taken = store.acquire_lease("daemon", "host-b:/home/b", 60)
    assert taken is not None and taken.holder == "host-b:/home/b" and taken.term == 2
    assert taken.acquired > first.acquired
    assert store.acquire_lease("daemon", "host-a:/home/a", 60) is None
    # Other names are other leases.
    other = store.acquire_lease("other", "host-a:/home/a", 60)
    assert other is not None and other.term == 1


def test_a_released_lease_is_free_at_once_and_keeps_its_term(store: RunStore) -> None:
    assert store.acquire_lease("daemon", "a", 60) is not None
    assert not store.release_lease("daemon", "b")  # not b's to release
    assert store.acquire_lease("daemon", "b", 60) is None
    assert store.release_lease("daemon", "a")
    assert not store.release_lease("daemon", "a")  # already released
    released = store.lease("daemon")
    assert released is not None and not released.held and released.holder == "a"
    taken = store.acquire_lease("daemon", "b", 60)
    assert taken is not None and taken.term == 2
    as_dict = taken.as_dict()
    assert as_dict["holder"] == "b" and as_dict["term"] == 2 and as_dict["held"] is True
    assert as_dict["expires"].endswith("+00:00")


def test_a_bad_ttl_is_refused(store: RunStore) -> None:
    with pytest.raises(ValueError, match="more than 0 seconds"):
        store.acquire_lease("daemon", "a", 0)


def test_holders_racing_for_a_free_lease_on_their_own_connections_elect_one(
    store_url: str, store: RunStore
) -> None:
    holders = [f"host:{n}" for n in range(8)]
    stores = [open_store(store_url) for _ in holders]
    barrier = threading.Barrier(len(holders))
    won: list[str] = []

    def race(own: RunStore, holder: str) -> None:
        barrier.wait()
        for _ in range(20):  # every holder tries again and again: still only one wins
            if own.acquire_lease("daemon", holder, 60) is not None:
                won.append(holder)

    threads = [
        threading.Thread(target=race, args=pair) for pair in zip(stores, holders, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for own in stores:
        own.close()
    assert len(set(won)) == 1, won
    lease = store.lease("daemon")
    assert lease is not None and lease.holder == won[0] and lease.term == 1
