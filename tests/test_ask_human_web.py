"""Questions to a person over HTTP: the API's list and answer, and the console's answer form.

The app is the one ``agentrun console`` and the daemon serve (:func:`create_app`), driven
with a real HTTP client: a bearer token for the API, the session cookie and CSRF token for
the console's form, as a browser sends them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from runner.compiler import compile_agent
from runner.events import StopReason
from runner.loop import run_agent
from runner.spec import load_spec
from runner.store import RunStore
from runner.testing import ScriptedModel, call
from runner.web.app import create_app
from tests.test_ask_human import QUESTION, asker_spec


def paused(folder: Path, store: RunStore, arguments: dict[str, object]) -> tuple[str, str]:
    """A run paused on a question with ``arguments``: its id and the call's id."""
    agent = compile_agent(load_spec(asker_spec(folder)))
    finished = asyncio.run(
        run_agent(agent, ScriptedModel([call("ask_human", arguments)]), store=store)
    )
    assert finished.stop_reason == StopReason.WAITING_INPUT
    [question] = store.questions(finished.run_id)
    return finished.run_id, question["call_id"]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    folder = tmp_path / "home"
    folder.mkdir()
    return folder


@pytest.fixture
def app_client(home: Path) -> Iterator[TestClient]:
    app = create_app(home / "runs.db", home)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client


def token(home: Path) -> dict[str, str]:
    return {"Authorization": f"Bearer {(home / 'console.token').read_text().strip()}"}


def test_the_api_lists_and_answers_and_refuses_alike(
    tmp_path: Path, home: Path, app_client: TestClient
) -> None:
    store = RunStore(home / "runs.db")
    run_id, call_id = paused(tmp_path, store, QUESTION)
    auth = token(home)
    listed = app_client.get("/api/v1/questions", headers=auth)
    assert listed.status_code == 200, listed.text
    [shown] = listed.json()["questions"]
    assert shown["run_id"] == run_id and shown["agent"] == "asker"
    assert shown["choices"] == ["main", "stable"] and shown["status"] == "waiting"
    assert shown["context"] == QUESTION["context"]
    assert (
        app_client.get("/api/v1/questions", params={"run_id": "NOPE"}, headers=auth).status_code
        == 404
    )

    path = f"/api/v1/runs/{run_id}/questions/{call_id}/answer"
    not_a_choice = app_client.post(path, json={"answer": "develop"}, headers=auth)
    assert not_a_choice.status_code == 422
    assert "is not one of the choices" in not_a_choice.json()["error"]
    unknown = app_client.post(
        f"/api/v1/runs/{run_id}/questions/call_nope/answer", json={"answer": "main"}, headers=auth
    )
    assert unknown.status_code == 404
    done = app_client.post(path, json={"answer": "main"}, headers=auth)
    assert done.status_code == 200, done.text
    body = done.json()
    assert (body["run_id"], body["call_id"], body["answer"]) == (run_id, call_id, "main")
    assert body["by"].startswith("api:") and body["resume"] == f"agentrun resume {run_id}"
    again = app_client.post(path, json={"answer": "stable"}, headers=auth)
    assert again.status_code == 409 and "answered by api:" in again.json()["error"]
    assert app_client.get("/api/v1/questions", headers=auth).json() == {"questions": []}
    recorded = store.question(run_id, call_id)
    assert recorded is not None and recorded["answer"] == "main"


def test_the_console_shows_the_question_and_its_form_answers_with_csrf(
    tmp_path: Path, home: Path, app_client: TestClient
) -> None:
    store = RunStore(home / "runs.db")
    run_id, call_id = paused(tmp_path, store, QUESTION)
    app_client.get("/login", params={"token": token(home)["Authorization"].split()[1]})
    csrf = app_client.cookies["csrf"]
    queue = app_client.get("/approvals")
    assert queue.status_code == 200
    assert "Which branch should I release from?" in queue.text
    assert f'action="/questions/{run_id}/{call_id}"' in queue.text
    assert 'name="answer" value="stable"' in queue.text
    page = app_client.get(f"/runs/{run_id}")
    assert "Waiting for an answer" in page.text and "Question asked" in page.text

    form = f"/questions/{run_id}/{call_id}"
    forged = app_client.post(form, data={"csrf": "forged", "answer": "stable"})
    assert forged.status_code == 403
    assert store.question(run_id, call_id)["status"] == "waiting"  # type: ignore[index]
    wrong = app_client.post(form, data={"csrf": csrf, "answer": "develop"})
    assert "not one of" in wrong.text  # followed the 303 back to the queue
    answered = app_client.post(form, data={"csrf": csrf, "answer": "stable"})
    assert answered.status_code == 200 and f"Answered {call_id} of run {run_id}" in answered.text
    recorded = store.question(run_id, call_id)
    assert recorded is not None and recorded["answer"] == "stable"
    assert recorded["answered_by"].startswith("console:")  # type: ignore[union-attr]
    assert "Which branch" not in app_client.get("/approvals").text
    twice = app_client.post(form, data={"csrf": csrf, "answer": "main"})
    assert "no longer waits" in twice.text


def test_a_free_text_question_gets_a_text_box(
    tmp_path: Path, home: Path, app_client: TestClient
) -> None:
    store = RunStore(home / "runs.db")
    run_id, call_id = paused(tmp_path, store, {"question": "What version?"})
    app_client.get("/login", params={"token": token(home)["Authorization"].split()[1]})
    csrf = app_client.cookies["csrf"]
    assert f'id="answer-{call_id}"' in app_client.get("/approvals").text
    app_client.post(f"/questions/{run_id}/{call_id}", data={"csrf": csrf, "answer": " v2.1 "})
    assert store.question(run_id, call_id)["answer"] == "v2.1"  # type: ignore[index]
