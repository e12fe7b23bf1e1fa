"""The daemon's side of the lease (runner/daemon/leadership.py) on a fake monotonic clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.daemon.leadership import LEASE_NAME, Change, Leadership, takeover_bound_s
from runner.store import RunStore


class Clock:
    """A monotonic clock the test moves, in seconds."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_standby_is_elected_once_the_leaders_lease_runs_out(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.db")
    clock = Clock()
    leader = Leadership(store, "a", ttl_s=0.3, monotonic=clock)
    standby = Leadership(store, "b", ttl_s=0.3, monotonic=clock)
    assert leader.turn() is Change.ELECTED and leader.leading()
    assert standby.turn() is Change.NONE and not standby.leading()
    assert standby.status()["role"] == "standby" and standby.status()["lease"]["holder"] == "a"
    # The leader renews every third of the TTL; nothing changes while it does.
    clock.now += 0.1
    assert leader.turn() is Change.NONE and leader.leading()
    assert leader.until_next_s() == pytest.approx(0.1)
    # It dies: the standby's attempts fail until the lease has expired in the database.
    store.db.execute("UPDATE leases SET expires = expires - 1")  # its TTL has passed there
    clock.now += 0.1
    assert standby.turn() is Change.ELECTED and standby.leading()
    assert standby.lease is not None and standby.lease.term == 2
    assert takeover_bound_s(0.3) == pytest.approx(0.4)


def test_a_leader_that_cannot_renew_steps_down_when_its_lease_runs_out(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.db")
    clock = Clock()
    leadership = Leadership(store, "a", ttl_s=3.0, monotonic=clock)
    assert leadership.turn() is Change.ELECTED
    gone = RunStore(tmp_path / "runs.db")
    gone.close()  # every call on it now raises, as on a database that does not answer
    leadership.store = gone
    clock.now += 1.0  # a renewal is due and fails: still the leader until the deadline
    assert leadership.turn() is Change.NONE and leadership.leading()
    clock.now += 1.0
    assert leadership.turn() is Change.NONE and leadership.leading()
    clock.now += 0.999
    assert leadership.leading()
    assert leadership.until_next_s() == pytest.approx(0.001, abs=1e-6)
    clock.now += 0.001  # sent + ttl: it must not act any more, whatever the database says
    assert not leadership.leading()
    assert leadership.turn() is Change.DEPOSED and leadership.status()["role"] == "standby"


def test_a_paused_leader_whose_lease_was_taken_steps_down_and_stays_down(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.db")
    clock = Clock()
    old = Leadership(store, "a", ttl_s=0.3, monotonic=clock)
    assert old.turn() is Change.ELECTED
    store.db.execute("UPDATE leases SET expires = expires - 1")
    assert store.acquire_lease(LEASE_NAME, "b", 60) is not None  # taken while it slept
    clock.now += 10.0  # it wakes up far past its deadline
    assert not old.leading()
    assert old.turn() is Change.DEPOSED  # its renewal is refused: someone else holds it
    clock.now += 0.1
    assert old.turn() is Change.NONE and not old.leading()


def test_a_graceful_stop_releases_the_lease_and_a_bad_ttl_is_refused(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.db")
    leadership = Leadership(store, "a", ttl_s=60)
    assert leadership.turn() is Change.ELECTED
    leadership.release()
    lease = store.lease(LEASE_NAME)
    assert lease is not None and not lease.held and not leadership.leading()
    assert store.acquire_lease(LEASE_NAME, "b", 60) is not None
    with pytest.raises(ValueError, match="more than 0 seconds"):
        Leadership(store, "a", ttl_s=0)
