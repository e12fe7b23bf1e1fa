"""Escalated runs over real HTTP: the API's continue and close, and the run page's forms."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from runner.compiler import compile_agent
from runner.loop import run_agent
from runner.spec import load_spec
from runner.store import RunStore
from runner.testing import ScriptedModel, call
from tests.test_web_api import Console, start_console

SPEC = """
version: 1
name: climber
model: openai/scripted
goal: Look around.
tools:
  list_dir: {paths: [.]}
budgets:
  max_steps: 1
  ceilings: {max_steps: 4}
escalate_on: [max_steps]
"""


def escalated(folder: Path, home: Path, name: str) -> str:
    """Record one run that stops at max_steps and is escalated; its id."""
    spec = folder / f"{name}.yaml"
    spec.write_text(textwrap.dedent(SPEC).lstrip(), encoding="utf-8")
    store = RunStore(home / "runs.db")
    try:
        finished = asyncio.run(
            run_agent(
                compile_agent(load_spec(spec)),
                ScriptedModel([call("list_dir", {"path": "."})]),
                store,
            )
        )
    finally:
        store.close()
    assert finished.stop_reason == "escalated"
    return finished.run_id


@dataclass
class Escalated:
    console: Console
    runs: dict[str, str]  # purpose -> run id
    folder: Path


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Escalated]:
    folder = tmp_path_factory.mktemp("escalated")
    home = folder / "home"
    runs = {
        purpose: escalated(folder, home, purpose)
        for purpose in ("api", "close", "page", "changed", "cookie")
    }
    console = start_console(home)
    try:
        yield Escalated(console, runs, folder)
    finally:
        console.stop()


def test_open_escalations_are_listed_with_their_context(recorded: Escalated) -> None:
    with recorded.console.client(bearer=False) as anonymous:
        assert anonymous.get("/api/v1/escalations").status_code == 401
    with recorded.console.client() as client:
        listed = client.get("/api/v1/escalations", params={"run_id": recorded.runs["api"]})
        assert listed.status_code == 200, listed.text
        [one] = listed.json()["escalations"]
        assert (one["agent"], one["stop_reason"], one["status"]) == ("climber", "max_steps", "open")
        assert "1 of 1 steps" in one["message"] and "--add max_steps=3" in one["message"]
        assert client.get("/api/v1/escalations", params={"status": "maybe"}).status_code == 400


def test_continue_checks_the_grant_then_records_it_once(recorded: Escalated) -> None:
    run_id = recorded.runs["api"]
    path = f"/api/v1/runs/{run_id}/continue"
    store = RunStore(recorded.console.home / "runs.db")
    with recorded.console.client() as client:
        bad = client.post(path, json={"add": {"max_stepz": 1}})
        assert bad.status_code == 422 and "max_stepz" in bad.json()["error"]
        nothing = client.post(path, json={"add": {}})
        assert nothing.status_code == 422 and "--add max_steps=N" in nothing.json()["error"]
        over = client.post(path, json={"add": {"max_steps": 4}})
        assert over.status_code == 403
        assert "the most that can still be granted is 3" in over.json()["error"]
        assert store.grants(run_id) == []
        done = client.post(path, json={"add": {"max_steps": 3}, "reason": "go on"})
        assert done.status_code == 200, done.text
        answer = done.json()
        assert answer["grants"] == {"max_steps": 3} and answer["limits"] == {"max_steps": 4}
        assert answer["by"].startswith("api:") and answer["resume"] == f"agentrun resume {run_id}"
        again = client.post(path, json={"add": {"max_steps": 1}})
        assert again.status_code == 409 and "continued by api:" in again.json()["error"]
        assert client.post(f"/api/v1/runs/{run_id}/close", json={}).status_code == 409
        assert client.post("/api/v1/runs/NOSUCHRUN/continue", json={}).status_code == 404
    [grant] = store.grants(run_id)
    assert (grant["budget"], grant["amount"], grant["reason"]) == ("max_steps", 3, "go on")


def test_close_gives_the_run_its_stop_reason_back(recorded: Escalated) -> None:
    run_id = recorded.runs["close"]
    with recorded.console.client() as client:
        closed = client.post(f"/api/v1/runs/{run_id}/close", json={"reason": "enough"})
        assert closed.status_code == 200, closed.text
        assert closed.json()["status"] == "closed" and closed.json()["resume"] == ""
        assert client.post(f"/api/v1/runs/{run_id}/close", json={}).status_code == 409
        run = client.get(f"/api/v1/runs/{run_id}").json()
        assert run["stop_reason"] == "max_steps"
        cont = client.post(f"/api/v1/runs/{run_id}/continue", json={"add": {"max_steps": 1}})
        assert cont.status_code == 409


def test_a_changed_spec_is_refused(recorded: Escalated) -> None:
    run_id = recorded.runs["changed"]
    spec = recorded.folder / "changed.yaml"
    spec.write_text(spec.read_text().replace("max_steps: 4", "max_steps: 400"))
    with recorded.console.client() as client:
        refused = client.post(f"/api/v1/runs/{run_id}/continue", json={"add": {"max_steps": 1}})
        assert refused.status_code == 409 and "changed since run" in refused.json()["error"]
        page = client.get(f"/runs/{run_id}")
        assert "changed since run" in page.text and 'id="continue-form"' not in page.text


def test_a_cookie_post_needs_the_csrf_token(recorded: Escalated) -> None:
    run_id = recorded.runs["cookie"]
    with recorded.console.client(bearer=False) as client:
        client.get("/login", params={"token": recorded.console.token})
        csrf = client.cookies["csrf"]
        path = f"/api/v1/runs/{run_id}/continue"
        body = {"add": {"max_steps": 1}}
        assert client.post(path, json=body).status_code == 403
        assert client.post(f"/runs/{run_id}/close", data={"csrf": "forged"}).status_code == 403
        done = client.post(path, json=body, headers={"X-CSRF-Token": csrf})
        assert done.status_code == 200 and done.json()["by"] == "console:console@127.0.0.1"


def test_the_run_page_continues_with_more_budget(recorded: Escalated) -> None:
    run_id = recorded.runs["page"]
    store = RunStore(recorded.console.home / "runs.db")
    with recorded.console.client(bearer=False) as client:
        client.get("/login", params={"token": recorded.console.token})
        csrf = client.cookies["csrf"]
        page = client.get(f"/runs/{run_id}")
        assert "Escalated by max_steps" in page.text
        assert 'name="add.max_steps"' in page.text and "ceiling 4, at most 3 more" in page.text
        over = client.post(f"/runs/{run_id}/continue", data={"csrf": csrf, "add.max_steps": "9"})
        assert over.status_code == 303
        assert over.headers["location"] == f"/runs/{run_id}?escalation=grant_refused#escalation"
        assert "a grant over the ceiling is refused" in client.get(over.headers["location"]).text
        assert store.grants(run_id) == []
        done = client.post(
            f"/runs/{run_id}/continue",
            data={"csrf": csrf, "add.max_steps": "2", "reason": "from the page"},
        )
        assert done.headers["location"] == f"/runs/{run_id}?escalation=continued#escalation"
        shown = client.get(done.headers["location"]).text
        assert "Continued with the budget granted" in shown
        assert 'id="continue-form"' not in shown and "Continued by" in shown
    [grant] = store.grants(run_id)
    assert (grant["amount"], grant["granted_by"]) == (2, "console:console@127.0.0.1")
