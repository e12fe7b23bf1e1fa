"""A one-line status at the terminal: what the run waits for, and for how long.

``agentrun run`` and ``resume`` show it on stderr while a run goes on, when stderr is a
terminal (nothing otherwise: a log file or a pipe gets the event lines only). The line says
what the run is doing from the events it emits (starting the model, which covers loading
it and its first call; waiting for the model at step N; running a tool; it steps aside
while an approval or a question to a person is asked) and the seconds it has been at it,
redrawn in place every :data:`REFRESH_S` seconds by a daemon thread; every other line
printed through :meth:`Progress.echo` clears it first and redraws it after, so the two never
mix. As pip's and cargo's progress lines: a carriage return and an erase of the line
(``ESC [2K``), no cursor movement across lines.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO

#: Seconds between redraws of the elapsed time.
REFRESH_S = 0.5
#: The terminal escape that erases the current line.
ERASE_LINE = "\r\x1b[2K"


class Progress:
    """The status line of one run on ``stream`` (stderr), drawn only at a terminal.

    Args:
        stream: where to draw (default ``sys.stderr``).
        enabled: draw at all; default: whether ``stream`` is a terminal.
        clock: monotonic seconds (tests pass a fake).
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.clock = clock
        self.status = ""
        self.since = clock()
        self.shown = False
        self.paused = False
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None
        self.model, self.step = "the model", 1

    # -- what the run is doing ---------------------------------------------------------------

    def event(self, event: Any) -> None:
        """Follow one loop event (a sink of :func:`runner.loop.run_agent`)."""
        from ..events import (
            ApprovalDecided,
            ApprovalRequested,
            ModelCalled,
            QuestionAnswered,
            QuestionAsked,
            RunFinished,
            RunResumed,
            RunStarted,
            ToolCalled,
            ToolStarted,
        )

        match event:
            case RunStarted(model=model):
                self.model, self.step = model, 1
                self.set(f"starting {model} (step 1)")
            case RunResumed():
                self.set("resuming")
            case ModelCalled(step=step, tool_calls=calls):
                self.step = step + 1
                if not calls:
                    self.set("finishing")
            case ToolStarted(tool=tool):
                self.set(f"running {tool}")
            case ToolCalled():
                self.waiting_for_model()
            case ApprovalRequested() | QuestionAsked():
                self.pause()
            case ApprovalDecided() | QuestionAnswered():
                self.resume()
            case RunFinished():
                self.stop()
            case _:
                pass

    def waiting_for_model(self) -> None:
        """The next model call is under way."""
        self.set(f"waiting for {self.model} (step {self.step})")

    # -- drawing -----------------------------------------------------------------------------

    def start(self) -> Progress:
        """Start redrawing (nothing when not enabled); returns self."""
        if self.enabled and self.thread is None:
            self.thread = threading.Thread(target=self._tick, name="progress", daemon=True)
            self.thread.start()
        return self

    def set(self, status: str) -> None:
        """Show ``status`` from now on, its seconds counted from now."""
        with self.lock:
            self.status, self.since = status, self.clock()
            self._draw()

    def echo(self, line: str) -> None:
        """Print ``line`` on the stream above the status line."""
        with self.lock:
            self._erase()
            self.stream.write(line + "\n")
            self._draw()

    def pause(self) -> None:
        """Take the line away (a prompt needs the terminal) until :meth:`resume`."""
        with self.lock:
            self._erase()
            self.paused = True

    def resume(self) -> None:
        """Draw again after :meth:`pause`."""
        with self.lock:
            self.paused = False
            self._draw()

    def stop(self) -> None:
        """Erase the line and stop redrawing (idempotent)."""
        self.stopped.set()
        with self.lock:
            self._erase()
            self.status = ""

    def render(self) -> str:
        """The status line's text: ``⋯ waiting for openai/gpt-4o (step 2) · 3.5 s``."""
        return f"⋯ {self.status} · {self.clock() - self.since:.1f} s"

    def _tick(self) -> None:
        while not self.stopped.wait(REFRESH_S):
            with self.lock:
                self._draw()

    def _draw(self) -> None:
        if not self.enabled or self.paused or not self.status or self.stopped.is_set():
            return
        self.stream.write(ERASE_LINE + self.render())
        self.stream.flush()
        self.shown = True

    def _erase(self) -> None:
        if self.shown:
            self.stream.write(ERASE_LINE)
            self.stream.flush()
            self.shown = False
