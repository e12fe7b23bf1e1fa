"""The daemon threads tools run on: reused between calls, never blocked by a hung call."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from runner.tools import DaemonThreads, Tool
from tests.helpers import wait_for


def test_a_thread_is_reused_once_its_job_is_done() -> None:
    pool = DaemonThreads("test-reuse")
    names: list[str] = []
    for _ in range(3):
        done = threading.Event()

        def job(done: threading.Event = done) -> None:
            names.append(threading.current_thread().name)
            done.set()

        pool.submit(job)
        assert done.wait(5)
        wait_for(lambda: pool.idle_threads() == 1, "the thread to be idle again")
    assert names == ["test-reuse-1"] * 3
    assert all(threading.current_thread().name != name for name in names)


def test_a_stuck_job_does_not_delay_the_next() -> None:
    pool = DaemonThreads("test-stuck")
    release, stuck_started, second_ran = threading.Event(), threading.Event(), threading.Event()
    threads: list[threading.Thread] = []

    def stuck() -> None:
        threads.append(threading.current_thread())
        stuck_started.set()
        release.wait(30)

    def second() -> None:
        threads.append(threading.current_thread())
        second_ran.set()

    pool.submit(stuck)
    assert stuck_started.wait(5)
    pool.submit(second)  # no idle thread: a new one takes it
    assert second_ran.wait(5)
    assert threads[0] is not threads[1] and threads[0].daemon and threads[1].daemon
    release.set()
    wait_for(lambda: pool.idle_threads() == 2, "both threads idle")


def test_a_failing_job_leaves_the_thread_serving() -> None:
    pool = DaemonThreads("test-fail")
    ran = threading.Event()

    def boom() -> None:
        raise RuntimeError("job bug")

    pool.submit(boom)
    wait_for(lambda: pool.idle_threads() == 1, "the thread to survive the failure")
    pool.submit(ran.set)
    assert ran.wait(5)


def test_idle_threads_exit_after_idle_s() -> None:
    pool = DaemonThreads("test-idle", idle_s=0.05)
    started = threading.Event()
    seen: list[threading.Thread] = []

    def job() -> None:
        seen.append(threading.current_thread())
        started.set()

    pool.submit(job)
    assert started.wait(5)
    wait_for(lambda: not seen[0].is_alive(), "the idle thread to exit")
    assert pool.idle_threads() == 0
    again = threading.Event()
    pool.submit(again.set)  # a new thread starts for the next job
    assert again.wait(5)


class _Echo(Tool):
    name = "echo"

    def run(self, arguments: dict[str, Any]) -> str:
        if arguments.get("fail"):
            raise ValueError("asked to fail")
        return f"{arguments['text']} on {threading.current_thread().name}"


def test_tool_call_runs_off_the_event_loop_and_returns_errors() -> None:
    async def calls() -> tuple[str, str, BaseException | None]:
        loop_thread = threading.current_thread().name
        result = await _Echo().call({"text": "hi"})
        try:
            await _Echo().call({"fail": True})
        except ValueError as error:
            return loop_thread, result, error
        return loop_thread, result, None

    loop_thread, result, error = asyncio.run(calls())
    assert result.startswith("hi on tool-") and loop_thread not in result
    assert isinstance(error, ValueError) and str(error) == "asked to fail"
