"""File-watch triggers: event mapping, path filters, the debouncer, and the agent's own writes.

All timing is on a fake clock. The editor save patterns below were recorded with a real
watchdog 6 Observer (inotify) on this machine: a write in place, a temp file renamed over
the target (8 raw events), vim 9 with 'backup', 'writebackup' and a swap file (47 raw
events, 18 of them file creations, changes, deletions and moves), and `sed -i` (a temp file
with an unpredictable name renamed over the target). Each must be exactly one fire with the
changed path `notes.txt`. One test replays the save styles against a real Observer, with
generous waits and no timing assertions.
"""

from __future__ import annotations

import fnmatch
import math
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from runner.triggers import (
    BUILTIN_IGNORES,
    Change,
    Debouncer,
    EventKind,
    SelfWriteFilter,
    WatchEvent,
    WatchFilter,
    fingerprint,
    from_watchdog,
)

# (event_type, path relative to the watched folder, destination, is_directory), as recorded
RECORDED: dict[str, list[tuple[str, str, str, bool]]] = {
    "in-place": [
        ("opened", "notes.txt", "", False),
        ("modified", "notes.txt", "", False),
        ("modified", "notes.txt", "", False),
        ("closed", "notes.txt", "", False),
        ("modified", ".", "", True),
    ],
    "temp-rename": [
        ("created", ".notes.txt.53du4qqm.tmp", "", False),
        ("modified", ".", "", True),
        ("opened", ".notes.txt.53du4qqm.tmp", "", False),
        ("modified", ".notes.txt.53du4qqm.tmp", "", False),
        ("closed", ".notes.txt.53du4qqm.tmp", "", False),
        ("modified", ".", "", True),
        ("moved", ".notes.txt.53du4qqm.tmp", "notes.txt", False),
        ("modified", ".", "", True),
    ],
    "vim": [
        ("opened", "notes.txt", "", False),
        ("created", ".notes.txt.swp", "", False),
        ("modified", ".", "", True),
        ("opened", ".notes.txt.swp", "", False),
        ("created", ".notes.txt.swx", "", False),
        ("modified", ".", "", True),
        ("opened", ".notes.txt.swx", "", False),
        ("closed", ".notes.txt.swx", "", False),
        ("modified", ".", "", True),
        ("deleted", ".notes.txt.swx", "", False),
        ("modified", ".", "", True),
        ("closed", ".notes.txt.swp", "", False),
        ("modified", ".", "", True),
        ("deleted", ".notes.txt.swp", "", False),
        ("modified", ".", "", True),
        ("created", ".notes.txt.swp", "", False),
        ("modified", ".", "", True),
        ("opened", ".notes.txt.swp", "", False),
        ("modified", ".notes.txt.swp", "", False),
        ("closed_no_write", "notes.txt", "", False),
        ("opened", "notes.txt", "", False),
        ("closed_no_write", "notes.txt", "", False),
        ("modified", ".notes.txt.swp", "", False),
        ("created", "4913", "", False),
        ("modified", ".", "", True),
        ("opened", "4913", "", False),
        ("modified", "4913", "", False),
        ("closed", "4913", "", False),
        ("modified", ".", "", True),
        ("deleted", "4913", "", False),
        ("modified", ".", "", True),
        ("moved", "notes.txt", "notes.txt~", False),
        ("modified", ".", "", True),
        ("created", "notes.txt", "", False),
        ("modified", ".", "", True),
        ("opened", "notes.txt", "", False),
        ("modified", "notes.txt", "", False),
        ("modified", "notes.txt", "", False),
        ("modified", "notes.txt", "", False),
        ("closed", "notes.txt", "", False),
        ("modified", ".", "", True),
        ("modified", "notes.txt", "", False),
        ("modified", ".notes.txt.swp", "", False),
        ("closed", ".notes.txt.swp", "", False),
        ("modified", ".", "", True),
        ("deleted", ".notes.txt.swp", "", False),
        ("modified", ".", "", True),
    ],
    "sed": [
        ("opened", "notes.txt", "", False),
        ("created", "seddDM4JD", "", False),
        ("modified", ".", "", True),
        ("opened", "seddDM4JD", "", False),
        ("modified", "seddDM4JD", "", False),
        ("closed_no_write", "notes.txt", "", False),
        ("modified", "seddDM4JD", "", False),
        ("closed", "seddDM4JD", "", False),
        ("modified", ".", "", True),
        ("moved", "seddDM4JD", "notes.txt", False),
        ("modified", ".", "", True),
    ],
}


def watchdog_event(root: str, event_type: str, src: str, dest: str, is_dir: bool) -> Any:
    """A real watchdog event object for a recorded row."""
    from watchdog import events

    classes = {
        ("created", False): events.FileCreatedEvent,
        ("modified", False): events.FileModifiedEvent,
        ("deleted", False): events.FileDeletedEvent,
        ("opened", False): events.FileOpenedEvent,
        ("closed", False): events.FileClosedEvent,
        ("closed_no_write", False): events.FileClosedNoWriteEvent,
        ("created", True): events.DirCreatedEvent,
        ("modified", True): events.DirModifiedEvent,
        ("deleted", True): events.DirDeletedEvent,
    }
    src_path = os.path.normpath(os.path.join(root, src))
    if event_type == "moved":
        cls = events.DirMovedEvent if is_dir else events.FileMovedEvent
        return cls(src_path, os.path.join(root, dest))
    return classes[(event_type, is_dir)](src_path)


def replay(
    raw: Iterable[Any],
    root: str,
    watch: WatchFilter,
    debouncer: Debouncer,
    start: float = 0.0,
    step: float = 0.001,
) -> tuple[list[list[str]], float]:
    """Feed raw watchdog events through from_watchdog + filter + debouncer on a fake clock.

    Events arrive `step` seconds apart from `start`; afterwards the clock jumps to each
    deadline. Returns the fires and the time of the last one.
    """
    now = start
    fires: list[list[str]] = []
    for item in raw:
        now += step
        while (deadline := debouncer.next_deadline()) is not None and deadline <= now:
            fired = debouncer.due(deadline)
            if fired:
                fires.append(fired)
        event = from_watchdog(item)
        if event is None:
            continue
        for path, change in watch.accept(event, root):
            debouncer.add(path, change, now)
    while (deadline := debouncer.next_deadline()) is not None:
        now = max(now, deadline)
        fired = debouncer.due(now)
        if fired:
            fires.append(fired)
    return fires, now


def recorded(style: str, root: str = "/w") -> list[Any]:
    return [watchdog_event(root, *row) for row in RECORDED[style]]


# -- recorded editor saves ---------------------------------------------------------------------


def test_recordings_are_what_the_docstring_says() -> None:
    assert len(RECORDED["temp-rename"]) == 8
    file_changes = [
        r
        for r in RECORDED["vim"]
        if not r[3] and r[0] not in ("opened", "closed", "closed_no_write")
    ]
    assert len(RECORDED["vim"]) == 47 and len(file_changes) == 18
    assert ("moved", "notes.txt", "notes.txt~", False) in RECORDED["vim"]


@pytest.mark.parametrize("style", sorted(RECORDED))
@pytest.mark.parametrize("patterns", [("*",), ("*.txt",), ("**/notes.txt",)])
def test_each_recorded_save_is_one_fire_of_notes_txt(style: str, patterns: tuple[str, ...]) -> None:
    watch = WatchFilter(patterns)
    fires, _ = replay(recorded(style), "/w", watch, watch.debouncer(2.0, 30.0))
    assert fires == [["notes.txt"]]


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        # a save of an existing file is a modification ...
        (("modified",), {"in-place", "temp-rename", "vim", "sed"}),
        # ... but a rename onto a path cannot tell a new file from a replaced one
        (("created",), {"temp-rename", "sed"}),
        (("moved",), {"temp-rename", "vim", "sed"}),
        (("deleted",), set()),
    ],
)
def test_events_apply_to_the_net_change_of_a_save(
    events: tuple[str, ...], expected: set[str]
) -> None:
    fired = set()
    for style in RECORDED:
        watch = WatchFilter(("*.txt",), events=events)
        fires, _ = replay(recorded(style), "/w", watch, watch.debouncer(2.0, 30.0))
        assert fires in ([], [["notes.txt"]])
        if fires:
            fired.add(style)
    assert fired == expected


def test_three_saves_three_ways_are_three_fires() -> None:
    watch = WatchFilter(("*.txt",))
    debouncer = watch.debouncer(2.0, 30.0)
    fires: list[list[str]] = []
    now = 0.0
    for style in ("in-place", "temp-rename", "vim"):
        got, now = replay(recorded(style), "/w", watch, debouncer, start=now + 60)
        fires += got
    assert fires == [["notes.txt"]] * 3


def test_without_builtin_ignores_the_editor_files_show_up() -> None:
    """The built-in ignores are what keeps vim's backup out (the test can fail)."""
    watch = WatchFilter(("*",), builtin_ignores=False)
    fires, _ = replay(recorded("vim"), "/w", watch, watch.debouncer(2.0, 30.0))
    # swap files and 4913 come and go within the burst; the backup stays
    assert fires == [["notes.txt", "notes.txt~"]]


# -- mapping raw watchdog events ---------------------------------------------------------------


def test_from_watchdog_maps_every_kind() -> None:
    from watchdog import events

    assert from_watchdog(events.FileCreatedEvent("/w/a")) == WatchEvent(EventKind.CREATED, "/w/a")
    assert from_watchdog(events.FileModifiedEvent("/w/a")) == WatchEvent(EventKind.MODIFIED, "/w/a")
    assert from_watchdog(events.FileDeletedEvent("/w/a")) == WatchEvent(EventKind.DELETED, "/w/a")
    assert from_watchdog(events.FileMovedEvent("/w/a", "/w/b")) == WatchEvent(
        EventKind.MOVED, "/w/a", "/w/b"
    )
    assert from_watchdog(events.DirMovedEvent(b"/w/d", b"/w/e")) == WatchEvent(
        EventKind.MOVED, "/w/d", "/w/e", is_directory=True
    )
    assert from_watchdog(events.DirModifiedEvent("/w")) == WatchEvent(
        EventKind.MODIFIED, "/w", is_directory=True
    )
    assert from_watchdog(events.FileCreatedEvent(b"/w/caf\xc3\xa9")) == WatchEvent(
        EventKind.CREATED, "/w/café"
    )
    for dropped in (events.FileOpenedEvent, events.FileClosedEvent, events.FileClosedNoWriteEvent):
        assert from_watchdog(dropped("/w/a")) is None


def test_a_move_is_two_changes() -> None:
    move = WatchEvent(EventKind.MOVED, "/w/a.md", "/w/sub/b.md")
    assert move.changes() == [("/w/a.md", Change.MOVED_FROM), ("/w/sub/b.md", Change.MOVED_TO)]
    watch = WatchFilter(("*.md",))
    assert watch.accept(move, "/w") == [("a.md", Change.MOVED_FROM), ("sub/b.md", Change.MOVED_TO)]
    assert watch.accept(WatchEvent(EventKind.MOVED, "/w/a.md", "/elsewhere/a.md"), "/w") == [
        ("a.md", Change.MOVED_FROM)
    ]
    assert watch.accept(WatchEvent(EventKind.MOVED, "/w/x.tmp", "/w/a.md"), "/w") == [
        ("a.md", Change.MOVED_TO)
    ]
    assert watch.accept(WatchEvent(EventKind.CREATED, "/w/d", is_directory=True), "/w") == []
    assert watch.accept(WatchEvent(EventKind.CREATED, "/other/a.md"), "/w") == []
    assert watch.accept(WatchEvent(EventKind.CREATED, "/w2/a.md"), "/w") == []


# -- globs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("*.md", "a.md", True),
        ("*.md", "deep/er/a.md", True),  # no slash: the file name, at any depth
        ("*.md", "a.mdx", False),
        ("notes/*.md", "notes/a.md", True),
        ("notes/*.md", "notes/x/a.md", False),  # * does not cross /
        ("notes/*.md", "a.md", False),
        ("docs/**/*.md", "docs/a.md", True),  # ** is zero or more folders
        ("docs/**/*.md", "docs/x/y/a.md", True),
        ("docs/**/*.md", "other/docs/a.md", False),
        ("**/*.md", "a.md", True),
        ("**/*.md", "x/y/a.md", True),
        ("inbox/**", "inbox/a/b.pdf", True),
        ("inbox/**", "outbox/a.pdf", False),
        ("report-[0-9].csv", "report-7.csv", True),
        ("report-[!0-9].csv", "report-7.csv", False),
        ("report-?.csv", "report-x.csv", True),
        ("report-?.csv", "report-xy.csv", False),
        ("*", ".hidden", True),
    ],
)
def test_glob_rules(pattern: str, path: str, matches: bool) -> None:
    assert WatchFilter((pattern,)).matches(path) is matches


@pytest.mark.parametrize(
    ("ignore", "path"),
    [
        ("build", "build/out/a.md"),
        ("build/**", "build/out/a.md"),
        ("drafts/*.md", "drafts/a.md"),
        ("*.log", "logs/x.log"),
        ("node_modules", "web/node_modules/pkg/readme.md"),
    ],
)
def test_ignore_patterns_cover_folders_below(ignore: str, path: str) -> None:
    assert WatchFilter(("*",)).matches(path)
    assert not WatchFilter(("*",), (ignore,)).matches(path)


EDITOR_FILES = [
    ".notes.txt.swp",
    ".notes.txt.swo",
    ".notes.txt.swx",
    "notes.txt~",
    "notes.txt.~1~",
    ".#notes.txt",
    "#notes.txt#",
    "4913",
    "5036",
    ".notes.txt.kate-swp",
    "notes.txt.tmp",
    ".goutputstream-Q1W2E3",
    "notes.txt___jb_tmp___",
    "notes.txt___jb_old___",
    ".~lock.report.odt#",
    "~$report.docx",
    "movie.mkv.part",
    "setup.exe.crdownload",
    ".DS_Store",
    ".git/index",
    "sub/.git/refs/heads/main",
]


@pytest.mark.parametrize("name", EDITOR_FILES)
def test_builtin_ignores(name: str) -> None:
    assert not WatchFilter(("*",)).matches(name)
    assert WatchFilter(("*",), builtin_ignores=False).matches(name)


@pytest.mark.parametrize("name", ["notes.txt", "4914", "2024", "swp", "notes.swpx", "tmp", "a~b"])
def test_ordinary_names_are_not_ignored(name: str) -> None:
    assert WatchFilter(("*",)).matches(name)


def test_builtin_ignores_are_the_documented_ones() -> None:
    assert {"*.swp", "*.swx", "*~", ".#*", "*.tmp", ".*.kate-swp"} <= set(BUILTIN_IGNORES)


segment_chars = st.sampled_from("ab.")
pattern_chars = st.sampled_from(["a", "b", ".", "*", "?", "[ab]", "[!a]"])


@given(
    pattern=st.lists(pattern_chars, min_size=1, max_size=6).map("".join),
    name=st.lists(segment_chars, min_size=1, max_size=6).map("".join),
)
def test_slashless_globs_agree_with_fnmatch_on_names(pattern: str, name: str) -> None:
    assume(name not in (".", ".."))
    watch = WatchFilter((pattern,), builtin_ignores=False)
    assert watch.matches(name) == fnmatch.fnmatchcase(name, pattern)
    assert watch.matches(f"dir/{name}") == fnmatch.fnmatchcase(name, pattern)


def test_a_negated_set_stays_inside_its_segment_and_a_leading_caret_is_a_member() -> None:
    # [!a] matched the separator: a/a/a[!a]a matched a/a/a/a (found by the property below)
    assert not WatchFilter(("a/a/a[!a]a",), builtin_ignores=False).matches("a/a/a/a")
    assert WatchFilter(("a/a/a[!a]a",), builtin_ignores=False).matches("a/a/aba")
    assert not WatchFilter(("x[!.]y",), builtin_ignores=False).matches("x/y")
    # fnmatch: [^a] is the set of ^ and a, not a negation
    caret = WatchFilter(("[^a]",), builtin_ignores=False)
    assert caret.matches("^") and caret.matches("a") and not caret.matches("b")
    assert fnmatch.fnmatchcase("^", "[^a]") and not fnmatch.fnmatchcase("b", "[^a]")


@given(
    pattern=st.lists(
        st.lists(pattern_chars, min_size=1, max_size=3).map("".join), min_size=2, max_size=3
    ),
    path=st.lists(
        st.lists(segment_chars, min_size=1, max_size=3).map("".join), min_size=1, max_size=4
    ),
)
def test_slashed_globs_match_segment_by_segment(pattern: list[str], path: list[str]) -> None:
    assume(not any(p in (".", "..") for p in path))
    assume("**" not in pattern)  # a whole-segment ** is the one rule fnmatch lacks (see above)
    watch = WatchFilter(("/".join(pattern),), builtin_ignores=False)
    expected = len(pattern) == len(path) and all(
        fnmatch.fnmatchcase(p, q) for p, q in zip(path, pattern, strict=True)
    )
    assert watch.matches("/".join(path)) == expected


# -- the debouncer -----------------------------------------------------------------------------


def reference_bursts(
    events: list[tuple[float, str]], debounce: float, max_wait: float
) -> list[tuple[float, float, list[str]]]:
    """(first, deadline, paths) of each burst, straight from the definition."""
    bursts: list[list[Any]] = []
    for when, path in events:
        if bursts:
            first, last, paths = bursts[-1]
            if when < min(last + debounce, first + max_wait):
                bursts[-1] = [first, when, [*paths, path]]
                continue
        bursts.append([when, when, [path]])
    return [
        (first, min(last + debounce, first + max_wait), sorted(set(paths)))
        for first, last, paths in bursts
    ]


gaps_strategy = st.lists(
    st.one_of(st.floats(0, 3), st.floats(0, 60), st.just(0.0)), min_size=1, max_size=80
)


@settings(max_examples=300, deadline=None)
@given(
    gaps=gaps_strategy,
    names=st.data(),
    debounce=st.floats(0, 5),
    extra=st.floats(0, 30),
)
def test_one_fire_per_burst_never_after_first_plus_max_wait(
    gaps: list[float], names: st.DataObject, debounce: float, extra: float
) -> None:
    max_wait = debounce + extra
    times = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    events = [(t, names.draw(st.sampled_from(["a", "b", "c/d"]))) for t in times]
    debouncer = Debouncer(debounce, max_wait)
    fires: list[tuple[float, list[str]]] = []
    index = 0
    while index < len(events) or debouncer.pending:
        deadline = debouncer.next_deadline()
        next_event = events[index][0] if index < len(events) else math.inf
        if deadline is not None and deadline <= next_event:
            assert debouncer.due(deadline - 1e-9 if deadline > 0 else -1.0) is None
            paths = debouncer.due(deadline)
            assert paths is not None
            fires.append((deadline, paths))
        else:
            debouncer.add(events[index][1], EventKind.MODIFIED, next_event)
            index += 1
    expected = reference_bursts(events, debounce, max_wait)
    assert [paths for _, paths in fires] == [paths for _, _, paths in expected]
    for (fired_at, _), (first, deadline, _) in zip(fires, expected, strict=True):
        assert fired_at == deadline
        assert first <= fired_at <= first + max_wait


@settings(max_examples=200, deadline=None)
@given(
    gaps=gaps_strategy,
    polls=st.lists(st.floats(0, 100), max_size=80),
    debounce=st.floats(0, 5),
    extra=st.floats(0, 30),
)
def test_bursts_do_not_depend_on_when_the_caller_polls(
    gaps: list[float], polls: list[float], debounce: float, extra: float
) -> None:
    max_wait = debounce + extra
    times = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    events = [(t, f"f{i % 4}") for i, t in enumerate(times)]
    expected = reference_bursts(events, debounce, max_wait)
    debouncer = Debouncer(debounce, max_wait)
    fires: list[list[str]] = []
    poll_times = sorted(polls)
    for when, path in events:
        while poll_times and poll_times[0] < when:
            poll = poll_times.pop(0)
            while (paths := debouncer.due(poll)) is not None:
                fires.append(paths)
        debouncer.add(path, EventKind.MODIFIED, when)
        # the pending deadline is never past the first event of its burst + max_wait
        pending = expected[len(fires)]
        deadline = debouncer.next_deadline()
        assert deadline is not None and deadline <= pending[0] + max_wait
    while (paths := debouncer.due(math.inf)) is not None:
        fires.append(paths)
    assert fires == [paths for _, _, paths in expected]
    assert not debouncer.pending and debouncer.next_deadline() is None


def test_a_busy_folder_fires_every_max_wait() -> None:
    debouncer = Debouncer(1.0, 10.0)
    fires: list[tuple[float, list[str] | None]] = []
    for tick in range(200):  # a change every 0.5 s for 100 s
        now = tick * 0.5
        while (paths := debouncer.due(now)) is not None:
            fires.append((now, paths))
        debouncer.add(f"f{tick}", EventKind.MODIFIED, now)
    while (deadline := debouncer.next_deadline()) is not None:
        fires.append((deadline, debouncer.due(deadline)))
    assert [when for when, _ in fires] == [10.0 * k for k in range(1, 11)]
    assert sum(len(paths or []) for _, paths in fires) == 200


def test_temp_files_and_deletions() -> None:
    debouncer = Debouncer(2.0, 30.0)
    debouncer.add("tmp123", Change.CREATED, 0.0)
    debouncer.add("tmp123", Change.MODIFIED, 0.1)
    debouncer.add("tmp123", Change.MOVED_FROM, 0.2)
    assert debouncer.due(5.0) is None and not debouncer.pending  # nothing changed: no fire
    debouncer.add("gone.md", Change.DELETED, 6.0)
    debouncer.add("new.md", Change.CREATED, 6.0)
    assert debouncer.due(8.0) == ["gone.md", "new.md"]
    assert debouncer.last_burst is not None
    assert debouncer.last_burst.history["gone.md"].net() == {EventKind.DELETED}
    assert debouncer.last_burst.history["new.md"].net() == {EventKind.CREATED}
    only_created = Debouncer(2.0, 30.0, events=["created"])
    only_created.add("old.md", "modified", 0.0)
    assert only_created.due(2.0) is None
    only_created.add("old.md", EventKind.MOVED, 3.0)  # the moved-onto side: arrived
    assert only_created.due(5.0) == ["old.md"]


def test_debouncer_arguments() -> None:
    with pytest.raises(ValueError, match="longer than max_wait"):
        Debouncer(5.0, 2.0)
    with pytest.raises(ValueError, match="negative"):
        Debouncer(-1.0, 2.0)
    instant = Debouncer(0.0, 0.0)
    instant.add("a", "created", 1.0)
    assert instant.due(1.0) == ["a"]
    assert instant.next_deadline() is None and instant.due(9.0) is None


# -- the agent's own writes ---------------------------------------------------------------------


def test_self_writes_are_dropped_and_later_edits_are_not(tmp_path: Path) -> None:
    out = tmp_path / "out.md"
    out.write_text("by the agent\n")
    own = SelfWriteFilter()
    own.mark(str(out), fingerprint(str(out)), now=100.0)
    assert own.drop_own([str(out)], now=101.0) == []
    assert own.drop_own([str(out)], now=500.0) == []  # however late the events come
    # someone else edits it: same path, another fingerprint
    out.write_text("edited by a person\n")
    assert own.drop_own([str(out)], now=502.0) == [str(out)]
    assert len(own) == 0  # the obsolete mark is gone


def test_self_write_atomic_replacement_with_same_size_and_mtime_is_not_own(tmp_path: Path) -> None:
    out = tmp_path / "out.md"
    out.write_text("aaaa\n")
    own = SelfWriteFilter()
    mark = fingerprint(str(out))
    assert mark is not None
    own.mark(str(out), mark, now=0.0)
    replacement = tmp_path / "tmp"
    replacement.write_text("bbbb\n")
    os.utime(replacement, ns=(mark[2], mark[2]))
    os.replace(replacement, out)  # new inode, same size and mtime
    assert own.drop_own([str(out)], now=1.0) == [str(out)]


def test_self_deletions_expiry_and_capacity(tmp_path: Path) -> None:
    gone = str(tmp_path / "gone.md")
    own = SelfWriteFilter(ttl_s=60.0, capacity=3)
    own.mark(gone, None, now=0.0)
    assert own.is_own(gone, fingerprint(gone), now=1.0)
    assert not own.is_own(gone, (1, 2, 3), now=2.0)  # re-created by someone
    own.mark(gone, None, now=10.0)
    assert not own.is_own(gone, None, now=71.0)  # expired
    for number in range(5):
        own.mark(f"/w/{number}", (number, 1, 1), now=80.0)
    assert len(own) == 3 and not own.is_own("/w/0", (0, 1, 1), now=81.0)
    assert own.is_own("/w/./4", (4, 1, 1), now=81.0)  # normalized paths
    assert own.drop_own(["/w/3", "/w/9"], now=82.0, stat=lambda p: (3, 1, 1)) == ["/w/9"]


# -- a real Observer ---------------------------------------------------------------------------


def save_in_place(path: Path) -> None:
    path.write_text(path.read_text() + "in place\n")


def save_temp_rename(path: Path) -> None:
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        handle.write(path.read_text() + "renamed\n")
    os.replace(temp, path)


def save_like_vim(path: Path) -> None:
    """vim's 'backup' + 'writebackup' + swap file sequence (as recorded above)."""
    swap = path.with_name(f".{path.name}.swp")
    swap.write_bytes(b"b0VIM 9.1")
    probe = path.with_name("4913")
    probe.write_text("")
    probe.unlink()
    backup = path.with_name(path.name + "~")
    text = path.read_text()
    os.rename(path, backup)
    path.write_text(text + "vim\n")
    swap.write_bytes(b"b0VIM 9.1 2")
    swap.unlink()


def save_like_sed(path: Path) -> None:
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix="sed")
    with os.fdopen(fd, "w") as handle:
        handle.write(path.read_text() + "sed\n")
    os.replace(temp, path)


def save_with_real_vim(path: Path) -> None:
    vim = shutil.which("vim")
    if vim is None:
        pytest.skip("vim is not installed")
    subprocess.run(
        [
            vim,
            "-u",
            "NONE",
            "-i",
            "NONE",
            "-N",
            "-es",
            "--cmd",
            "set backup writebackup swapfile backupcopy=auto backupskip= backupdir=. directory=.",
            "-c",
            "normal Goreal vim",
            "-c",
            "wq",
            str(path),
        ],
        cwd=path.parent,
        check=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )


@pytest.mark.parametrize(
    "save",
    [save_in_place, save_temp_rename, save_like_vim, save_like_sed, save_with_real_vim],
    ids=["in-place", "temp-rename", "vim-like", "sed-like", "real-vim"],
)
def test_real_observer_one_save_one_fire(tmp_path: Path, save: Any) -> None:
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    root = tmp_path / "watched"
    root.mkdir()
    notes = root / "notes.txt"
    notes.write_text("one\n")
    raw: list[FileSystemEvent] = []
    done = threading.Event()

    class Record(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            raw.append(event)
            if os.fsdecode(event.src_path).endswith("sentinel.flag"):
                done.set()

    observer = Observer()
    observer.schedule(Record(), str(root), recursive=True)
    observer.start()  # the inotify watch exists when start() returns
    try:
        save(notes)
        (root / "sentinel.flag").write_text("")  # inotify keeps order: after the save's events
        assert done.wait(timeout=30), "the observer reported nothing"
    finally:
        observer.stop()
        observer.join(timeout=30)
    watch = WatchFilter(("*.txt",))
    before_sentinel = [e for e in raw if not os.fsdecode(e.src_path).endswith("sentinel.flag")]
    assert len(before_sentinel) > 1  # a save is many raw events ...
    fires, _ = replay(before_sentinel, str(root), watch, watch.debouncer(2.0, 30.0))
    assert fires == [["notes.txt"]]  # ... and one fire


def test_agent_writes_into_its_watched_folder_trigger_nothing(tmp_path: Path) -> None:
    root = tmp_path / "watched"
    root.mkdir()
    # the agent's run writes a report (the events a write makes, as recorded above) ...
    report = root / "report.md"
    report.write_text("# Report\n")
    own = SelfWriteFilter()
    own.mark(str(report), fingerprint(str(report)), now=0.0)  # ... and its worker marks it
    raw = [
        watchdog_event(str(root), "created", "report.md", "", False),
        watchdog_event(str(root), "opened", "report.md", "", False),
        watchdog_event(str(root), "modified", "report.md", "", False),
        watchdog_event(str(root), "closed", "report.md", "", False),
        watchdog_event(str(root), "modified", ".", "", True),
    ]
    watch = WatchFilter(("*.md",))
    fires, now = replay(raw, str(root), watch, watch.debouncer(2.0, 30.0))
    assert fires == [["report.md"]]  # the debouncer sees the write ...
    assert own.drop_own([str(root / p) for p in fires[0]], now=now) == []  # ... the daemon drops it
    # a person then edits the report: that is a run
    report.write_text("# Report\nedited\n")
    fires, now = replay(raw[2:], str(root), watch, watch.debouncer(2.0, 30.0), start=now)
    assert own.drop_own([str(root / p) for p in fires[0]], now=now) == [str(report)]
