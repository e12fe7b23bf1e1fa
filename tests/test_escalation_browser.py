"""An escalated run's console page in a real headless Chromium: continue with more, or close.

Uses the harness of tests/test_console_browser.py (the console as a process, Selenium over
Debian's chromium, the fake model server); skipped where it is skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from runner.testing import FakeOpenAIServer, call, text
from tests.test_console_browser import World, chromium, pytestmark, spec
from tests.test_web_api import start_console

__all__ = ["pytestmark"]

CLIMBS = """
goal: Summarise the notes.
tools:
  read_file: {paths: [notes]}
budgets:
  max_steps: 1
  ceilings: {max_steps: 3}
escalate_on: [max_steps]
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    pytest.importorskip("selenium", reason="needs selenium (the dev extra)")
    folder = tmp_path_factory.mktemp("escalation")
    home = folder / "home"
    (folder / "notes").mkdir()
    (folder / "notes" / "monday.md").write_text("Shipped the escalation page.\n")
    reading = call("read_file", {"path": "notes/monday.md"}, content="Reading the notes.")
    models = {
        "climber": ([reading, text("Monday: the escalation page shipped.")], False),
        "closer": ([reading], False),
    }
    with FakeOpenAIServer([], models=models) as server:
        env = {**os.environ, "AGENTRUN_HOME": str(home), "FAKE_API_KEY": "sk-fake-000000"}
        home.mkdir()
        console = start_console(home)
        driver = None
        try:
            driver = chromium()
            world = World(console, driver, server, folder, env)
            driver.get(console.login)
            yield world
        finally:
            if driver is not None:
                driver.quit()
            console.stop()


def escalated(world: World, name: str) -> str:
    path = spec(world.folder, name, world.model.api_base, CLIMBS)
    ran = world.agentrun("run", str(path))
    assert ran.returncode == 5, ran.stderr
    [run_id] = world.runs_of(name)
    return run_id


def test_continue_from_the_run_page_then_the_run_completes_live(world: World) -> None:
    run_id = escalated(world, "climber")
    world.open(f"/runs/{run_id}")
    assert "Escalated by max_steps" in world.text("#escalation")
    assert "1 of 1 steps" in world.text("#escalation-context")
    assert "ceiling 3, at most 2 more" in world.text("#continue-form")
    world.shot("escalated", at="#escalation")
    world.act("#add-max_steps", "5")  # past the ceiling: refused, nothing recorded
    world.act("#continue-form button")
    world.until("the refusal", lambda: "over the ceiling" in world.text("#message"))
    store = world.store()
    try:
        assert store.grants(run_id) == []
    finally:
        store.close()
    world.act("#add-max_steps", "2")
    world.act("#continue-reason", "one more look")
    world.act("#continue-form button")
    world.until("the decision", lambda: "Continued" in world.text("#message"))
    assert "Continued by console:console@127.0.0.1" in world.text("#escalation")
    resumed = world.agentrun("resume", run_id)
    assert resumed.returncode == 0, resumed.stderr
    world.until("the run completed", lambda: "completed" in world.text("#run-status"))
    assert "Monday: the escalation page shipped." in world.text("#answer")
    store = world.store()
    try:
        [grant] = store.grants(run_id)
    finally:
        store.close()
    assert (grant["budget"], grant["amount"], grant["reason"]) == ("max_steps", 2, "one more look")


def test_close_from_the_run_page(world: World) -> None:
    run_id = escalated(world, "closer")
    world.open(f"/runs/{run_id}")
    world.act("#close-reason", "not needed")
    world.act("#close-form button")
    world.until("the closing", lambda: "Closed" in world.text("#message"))
    world.until("the stop reason", lambda: "max_steps" in world.text("#run-status"))
    assert world.driver.find_elements("css selector", "#continue-form") == []
    assert world.agentrun("resume", run_id).returncode == 2
