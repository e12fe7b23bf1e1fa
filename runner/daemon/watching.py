"""The daemon's file watching: spec folders, watch triggers, and inotify overflows.

watchdog observers feed raw events, from their own threads, into the daemon's event loop;
:class:`runner.triggers.WatchFilter` keeps the ones that count and a
:class:`runner.triggers.Debouncer` per trigger turns bursts into one fire, with the changed
paths (relative to the workdir) as the ``changed_paths`` input. The agent's own writes
through its file tools are recognised when a burst fires. watchdog 6 drops the kernel's
inotify overflow record silently; :func:`on_inotify_overflow` notices it and the daemon
rescans the watched trees by mtime instead of losing the events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..spec import TriggerKind
from .state import AgentState, Fire

log = logging.getLogger("agentrun.daemon")


def rescan_changed(root: Path, filter_: Any, since: float) -> list[str]:
    """Files under ``root`` that ``filter_`` counts and whose mtime is at or after ``since``."""
    changed = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            relative = str(path.relative_to(root))
            try:
                fresh = path.stat().st_mtime >= since
            except OSError:
                continue
            if fresh and filter_.matches(relative) and not filter_.ignored(relative):
                changed.append(str(path))
    return changed


_overflow_callbacks: list[Any] = []


def on_inotify_overflow(callback: Any) -> None:
    """Call ``callback()`` (from watchdog's thread) whenever the kernel's inotify queue overflows.

    watchdog 6 drops the kernel's ``IN_Q_OVERFLOW`` record without a word (its event parser
    skips every record with ``wd == -1``), so events are lost silently. This wraps that
    parser once per process to notice the record and report it; the events themselves are
    passed through unchanged.
    """
    _overflow_callbacks.append(callback)
    from watchdog.observers import inotify_c

    parse = inotify_c.Inotify._parse_event_buffer
    if getattr(parse, "_agentrun_wrapped", False):
        return

    def parse_and_watch(event_buffer: bytes) -> Any:
        for wd, mask, cookie, name in parse(event_buffer):
            if wd == -1 and mask & inotify_c.InotifyConstants.IN_Q_OVERFLOW:
                for notify in list(_overflow_callbacks):
                    notify()
            yield wd, mask, cookie, name

    parse_and_watch._agentrun_wrapped = True  # type: ignore[attr-defined]
    inotify_c.Inotify._parse_event_buffer = staticmethod(parse_and_watch)  # type: ignore[method-assign]


@dataclass
class Watch:
    """One watch trigger of one agent: its filter, debouncer, folders and observer."""

    filter: Any
    debouncer: Any
    roots: list[Path]
    observer: Any = None


@dataclass
class WatchedAgent:
    """An agent's watch triggers, for the generation of its spec they were set up for."""

    agent: AgentState
    watches: dict[int, Watch] = field(default_factory=dict)
    last_event_wall: float = field(default_factory=time.time)


class FileWatching:
    """Spec-folder reloads and watch triggers, on watchdog observers.

    Args:
        dirs: the spec folders.
        poll: poll folders instead of OS notifications (network file systems).
        specs_changed: called (in the event loop) when a spec folder changed.
        wake: called (in the event loop) when a burst may be due.
        fire: applies the agent's concurrency policy to a fire
            (:meth:`runner.daemon.planner.Planner.fire`).
        recent_writes: the agent's recent ``write_file``/``edit_file`` calls
            (:meth:`runner.store.RunStore.recent_tool_calls`).
        stopping: whether the daemon is stopping (then nothing fires).
    """

    def __init__(
        self,
        dirs: list[Path],
        poll: bool,
        specs_changed: Callable[[], None],
        wake: Callable[[], None],
        fire: Callable[[Fire], object],
        recent_writes: Callable[[str, tuple[str, ...], datetime], list[Any]],
        stopping: Callable[[], bool],
    ) -> None:
        self.dirs = dirs
        self.poll = poll
        self.specs_changed = specs_changed
        self.wake = wake
        self.fire = fire
        self.recent_writes = recent_writes
        self.stopping = stopping
        self.agents: dict[str, WatchedAgent] = {}
        self.observers: list[Any] = []
        self.loop: asyncio.AbstractEventLoop | None = None

    def _observer(self, poll: bool) -> Any:
        if poll:
            from watchdog.observers.polling import PollingObserver

            return PollingObserver(timeout=1)
        from watchdog.observers import Observer

        return Observer()

    def _soon(self, callback: Callable[..., None], *args: Any) -> None:
        """Run ``callback(*args)`` in the event loop (called from watchdog's threads)."""
        assert self.loop is not None
        self.loop.call_soon_threadsafe(callback, *args)

    def start_spec_watcher(self, loop: asyncio.AbstractEventLoop) -> None:
        """Reload specs when their folders change (and rescan everything on an overflow)."""
        self.loop = loop
        if not self.poll:
            with contextlib.suppress(ImportError):  # inotify exists on Linux only
                on_inotify_overflow(lambda: self._soon(self.rescan_after_overflow))
        from watchdog.events import FileSystemEventHandler

        watching = self

        class SpecChanged(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                watching._soon(watching.specs_changed)

        observer = self._observer(self.poll)
        for folder in self.dirs:
            observer.schedule(SpecChanged(), str(folder), recursive=False)
        observer.start()
        self.observers.append(observer)

    def watch_agent(self, agent: AgentState) -> None:
        """Set up (or set up again, for a reloaded spec) the agent's watch triggers."""
        from ..triggers import WatchFilter

        self.unwatch_agent(agent.name)
        watched = WatchedAgent(agent)
        self.agents[agent.name] = watched
        for trigger in agent.spec.triggers:
            if trigger.kind != TriggerKind.WATCH or not trigger.watch:
                continue
            spec = trigger.watch
            filter_ = WatchFilter(spec.patterns, spec.ignore, spec.events)
            roots = [(agent.spec.workdir / p).resolve() for p in spec.paths]
            watch = Watch(filter_, filter_.debouncer(spec.debounce, spec.max_wait), roots)
            watched.watches[trigger.index] = watch
            watch.observer = self._start_observer(agent, trigger.index, roots, spec.poll)

    def _start_observer(self, agent: AgentState, index: int, roots: list[Path], poll: bool) -> Any:
        from watchdog.events import FileSystemEventHandler

        watching = self
        name, generation = agent.name, agent.generation

        class Changed(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                watching._soon(watching.on_watch_event, name, generation, index, event)

        observer = self._observer(poll or self.poll)
        for root in roots:
            if root.is_dir():
                observer.schedule(Changed(), str(root), recursive=True)
            else:
                log.error("agent %s watches %s, which is not a folder", name, root)
        observer.start()
        self.observers.append(observer)
        return observer

    def unwatch_agent(self, name: str) -> None:
        """Stop watching the agent's folders."""
        watched = self.agents.pop(name, None)
        if watched is None:
            return
        for watch in watched.watches.values():
            if watch.observer is not None:
                watch.observer.stop()

    def stop(self) -> None:
        """Stop every observer (call :meth:`join` after)."""
        for observer in self.observers:
            observer.stop()

    def join(self, timeout_s: float = 2.0) -> None:
        """Wait for the observers' threads to end, each at most ``timeout_s`` seconds."""
        for observer in self.observers:
            with contextlib.suppress(Exception):
                observer.join(timeout=timeout_s)

    def next_deadline(self) -> float | None:
        """The earliest moment (``time.monotonic()``) a debounced burst is due, or None."""
        deadlines = [
            deadline
            for watched in self.agents.values()
            for watch in watched.watches.values()
            if (deadline := watch.debouncer.next_deadline()) is not None
        ]
        return min(deadlines, default=None)

    def rescan_after_overflow(self) -> None:
        """The kernel dropped file events: rescan specs and every watched tree.

        Files changed since the last seen event (less two seconds) count as changed.
        """
        log.error("inotify queue overflow: events were dropped; rescanning watched folders")
        self.specs_changed()
        now = time.monotonic()
        for watched in self.agents.values():
            since = watched.last_event_wall - 2.0
            for watch in watched.watches.values():
                for root in watch.roots:
                    for path in rescan_changed(root, watch.filter, since):
                        watch.debouncer.add(path, "modified", now)
        self.wake()

    def is_own_write(self, agent: AgentState, path: str) -> bool:
        """Whether ``path`` was last changed by the agent's own run (through its file tools).

        Checked when a burst fires, not per raw event: by then the run's journal entry is in
        the store. The file must not have changed after the run's write, so a person's edit
        to the same file right after still triggers.
        """
        calls = self.recent_writes(
            agent.name, ("write_file", "edit_file"), datetime.now(UTC) - timedelta(minutes=10)
        )
        try:
            modified = os.stat(path).st_mtime
        except OSError:
            modified = None
        for call in calls:
            try:
                written = (agent.spec.workdir / json.loads(call.arguments)["path"]).resolve()
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
            if str(written) != path:
                continue
            done = call.started_at.timestamp() + call.duration_s + 1.0
            if modified is None or modified <= done:
                return True
        return False

    def on_watch_event(self, name: str, generation: int, index: int, event: Any) -> None:
        """A raw file event: filter it and feed the trigger's debouncer."""
        from ..triggers import from_watchdog

        watched = self.agents.get(name)
        if watched is None or watched.agent.generation != generation:
            return
        watch = watched.watches.get(index)
        ours = from_watchdog(event)
        if watch is None or ours is None:
            return
        now = time.monotonic()
        watched.last_event_wall = time.time()
        for root in watch.roots:
            for relative, change in watch.filter.accept(ours, str(root)):
                watch.debouncer.add(str(root / relative), change, now)
        self.wake()

    def due_watches(self, now: float) -> None:
        """Fire every debounced burst due at ``now`` (``time.monotonic()``).

        The changed paths, relative to the workdir, are the ``changed_paths`` input when
        the spec declares it. Paths the agent's own run wrote are dropped; a burst of only
        those fires nothing.
        """
        from ..store import new_run_id

        for watched in list(self.agents.values()):
            agent = watched.agent
            for index, watch in watched.watches.items():
                while (paths := watch.debouncer.due(now)) is not None:
                    changed = [p for p in paths if not self.is_own_write(agent, p)]
                    if not changed or self.stopping():
                        continue
                    inputs: dict[str, Any] = {}
                    if "changed_paths" in agent.spec.inputs:
                        inputs["changed_paths"] = [
                            os.path.relpath(p, agent.spec.workdir) for p in changed
                        ]
                    self.fire(Fire(agent.name, TriggerKind.WATCH, index, new_run_id(), inputs))
