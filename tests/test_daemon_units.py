"""Daemon pieces in process: inotify overflow detection and the rescan it triggers."""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import pytest

from runner.daemon.watching import on_inotify_overflow, rescan_changed
from runner.triggers import WatchFilter

inotify_c = pytest.importorskip("watchdog.observers.inotify_c")


def test_overflow_record_is_reported_not_dropped() -> None:
    seen: list[str] = []
    on_inotify_overflow(lambda: seen.append("overflow"))
    overflow = struct.pack("iIII", -1, inotify_c.InotifyConstants.IN_Q_OVERFLOW, 0, 0)
    name = b"a.txt\x00\x00\x00"
    modify = struct.pack("iIII", 1, inotify_c.InotifyConstants.IN_MODIFY, 0, len(name)) + name
    records = list(inotify_c.Inotify._parse_event_buffer(modify + overflow))
    assert seen == ["overflow"]
    assert [(wd, mask) for wd, mask, _, _ in records] == [
        (1, inotify_c.InotifyConstants.IN_MODIFY),
        (-1, inotify_c.InotifyConstants.IN_Q_OVERFLOW),
    ]
    # Installing twice wraps once: one record, one report per callback.
    on_inotify_overflow(lambda: None)
    list(inotify_c.Inotify._parse_event_buffer(overflow))
    assert seen == ["overflow", "overflow"]


def test_rescan_after_overflow_finds_files_changed_since(tmp_path: Path) -> None:
    old = tmp_path / "old.md"
    old.write_text("before")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    (tmp_path / "sub").mkdir()
    fresh = tmp_path / "sub" / "fresh.md"
    fresh.write_text("after")
    (tmp_path / "fresh.txt").write_text("not a pattern match")
    (tmp_path / ".fresh.md.swp").write_text("editor swap file")
    since = time.time() - 60
    changed = rescan_changed(tmp_path, WatchFilter(("*.md", "**/*.md")), since)
    assert changed == [str(fresh)]
