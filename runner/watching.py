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

import contextlib
import json
import logging
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .scheduler import Agent, Daemon

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


class FileWatching:
    """Spec-folder reloads and watch triggers of a :class:`runner.scheduler.Daemon`."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def _observer(self, poll: bool) -> Any:
        if poll:
            from watchdog.observers.polling import PollingObserver

            return PollingObserver(timeout=1)
        from watchdog.observers import Observer

        return Observer()

    def start_spec_watcher(self) -> None:
        """Reload specs when their folders change (and rescan everything on an overflow)."""
        if not self.daemon.poll:
            with contextlib.suppress(ImportError):  # inotify exists on Linux only
                on_inotify_overflow(self.inotify_overflowed)
        from watchdog.events import FileSystemEventHandler

        daemon, watching = self.daemon, self

        class SpecChanged(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                assert daemon.loop is not None
                daemon.loop.call_soon_threadsafe(watching.spec_changed)

        observer = self._observer(self.daemon.poll)
        for folder in self.daemon.dirs:
            observer.schedule(SpecChanged(), str(folder), recursive=False)
        observer.start()
        self.daemon.observers.append(observer)

    def spec_changed(self) -> None:
        """A spec folder changed: rescan on the next tick."""
        self.daemon.rescan_needed = True
        self.daemon.wake.set()

    def start_watch(self, agent: Agent, index: int, roots: list[Path], poll: bool) -> None:
        """Watch one trigger's folders with watchdog."""
        from watchdog.events import FileSystemEventHandler

        daemon, watching = self.daemon, self
        name, generation = agent.name, agent.generation

        class Changed(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                assert daemon.loop is not None
                daemon.loop.call_soon_threadsafe(
                    watching.on_watch_event, name, generation, index, event
                )

        observer = self._observer(poll or self.daemon.poll)
        for root in roots:
            if root.is_dir():
                observer.schedule(Changed(), str(root), recursive=True)
            else:
                log.error("agent %s watches %s, which is not a folder", name, root)
        observer.start()
        self.daemon.observers.append(observer)
        agent.observers[index] = observer

    def stop_watch(self, agent: Agent, index: int) -> None:
        """Stop watching one trigger's folders."""
        observer = agent.observers.pop(index, None)
        if observer is not None:
            observer.stop()

    def inotify_overflowed(self) -> None:
        """The kernel dropped file events: rescan specs and every watched tree."""
        assert self.daemon.loop is not None
        self.daemon.loop.call_soon_threadsafe(self.rescan_after_overflow)

    def rescan_after_overflow(self) -> None:
        """A full rescan: files changed since the last seen event count as changed."""
        log.error("inotify queue overflow: events were dropped; rescanning watched folders")
        self.daemon.rescan_needed = True
        now = time.monotonic()
        for agent in self.daemon.agents.values():
            for filter_, debouncer, roots in agent.watches.values():
                since = agent.last_event_wall - 2.0
                for root in roots:
                    for path in rescan_changed(root, filter_, since):
                        debouncer.add(path, "modified", now)
        self.daemon.wake.set()

    def is_own_write(self, agent: Agent, path: str) -> bool:
        """Whether ``path`` was last changed by the agent's own run (through its file tools).

        Checked when a burst fires, not per raw event: by then the run's journal entry is in
        the store. The file must not have changed after the run's write, so a person's edit
        to the same file right after still triggers.
        """
        calls = self.daemon.store.recent_tool_calls(
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
        from .triggers import from_watchdog

        agent = self.daemon.agents.get(name)
        if agent is None or agent.generation != generation or index not in agent.watches:
            return
        filter_, debouncer, roots = agent.watches[index]
        ours = from_watchdog(event)
        if ours is None:
            return
        now = time.monotonic()
        agent.last_event_wall = time.time()
        for root in roots:
            for relative, change in filter_.accept(ours, str(root)):
                debouncer.add(str(root / relative), change, now)
        self.daemon.wake.set()

    def due_watches(self, now: float) -> None:
        """Fire every debounced burst that is due (changed paths as ``changed_paths``).

        Paths the agent's own run wrote are dropped; a burst of only those fires nothing.
        """
        from .scheduler import Fire
        from .store import new_run_id

        for agent in list(self.daemon.agents.values()):
            for index, (_, debouncer, _) in agent.watches.items():
                while (paths := debouncer.due(now)) is not None:
                    changed = [p for p in paths if not self.is_own_write(agent, p)]
                    if not changed or self.daemon.stopping:
                        continue
                    inputs: dict[str, Any] = {}
                    if "changed_paths" in agent.spec.inputs:
                        inputs["changed_paths"] = [
                            os.path.relpath(p, agent.spec.workdir) for p in changed
                        ]
                    self.daemon.fire(Fire(agent.name, "watch", index, new_run_id(), inputs))
