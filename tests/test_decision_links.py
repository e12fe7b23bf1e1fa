"""Signed decision links: a GET confirms, a POST decides once; every misuse refused and recorded."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from runner.compiler import compile_agent
from runner.decisions import decide
from runner.events import ApprovalRequested, QuestionAsked
from runner.loop import run_agent
from runner.spec import load_spec
from runner.store import RunStore
from runner.testing import ScriptedModel, call, text
from runner.tool_calls import arguments_sha256
from runner.web.app import create_app
from runner.web.links import MAX_LINK_AGE_S, DecisionLinks
from tests.conftest import ROOT
from tests.helpers import wait_for, write_spec
from tests.receivers import HttpReceiver
from tests.test_daemon import WAIT_S, DaemonProcess, free_port

ARGUMENTS = {"path": "out/report.md", "content": "numbers"}


@pytest.fixture
def paused(tmp_path: Path) -> tuple[Path, RunStore, str, dict[str, Any]]:
    """A run of a spec that waits for approval of one write_file call (unattended: queue)."""
    home = tmp_path / "home"
    (tmp_path / "out").mkdir()
    spec = load_spec(
        write_spec(
            tmp_path,
            "version: 1\nname: writer\nmodel: openai/scripted\ngoal: write\n"
            "autonomy: approve-writes\nunattended: queue\n"
            "tools:\n  write_file: {paths: [out]}\n",
        )
    )
    store = RunStore(home / "runs.db")
    model = ScriptedModel([call("write_file", ARGUMENTS), text("written")])
    finished = asyncio.run(run_agent(compile_agent(spec), model=model, store=store))
    assert finished.stop_reason == "waiting_approval"
    [approval] = store.approvals(finished.run_id)
    return home, store, finished.run_id, dict(approval)


@pytest.fixture
def client(paused: tuple[Path, RunStore, str, dict[str, Any]]) -> Iterator[TestClient]:
    home = paused[0]
    with TestClient(create_app(home / "runs.db", home)) as test_client:
        yield test_client


def link(store: RunStore, home: Path, approval: dict[str, Any], action: str = "approve") -> str:
    token = DecisionLinks(home).mint(
        store, approval["run_id"], approval["call_id"], action, approval["arguments_sha256"]
    )
    return f"/d/{token}"


def refusals(store: RunStore) -> list[str]:
    return [r["reason"] for r in store.decision_link_refusals()]


def test_a_get_shows_the_call_and_decides_nothing_a_post_approves_once(
    paused: tuple[Path, RunStore, str, dict[str, Any]], client: TestClient
) -> None:
    home, store, run_id, approval = paused
    url = link(store, home, approval)
    page = client.get(url)  # no login: the token is the credential
    assert page.status_code == 200
    assert "write_file" in page.text and "out/report.md" in page.text and "medium" in page.text
    assert store.latest_approval(run_id, approval["call_id"])["status"] == "pending"
    assert client.get(url).status_code == 200  # a second look decides nothing either

    used = client.post(url, data={"reason": "looks right"})
    assert used.status_code == 200 and 'data-outcome="approved"' in used.text
    decided = store.latest_approval(run_id, approval["call_id"])
    assert decided["status"] == "approved"
    nonce = _nonce(store)
    assert decided["decided_by"] == f"link:{nonce[:8]}"
    assert decided["decision_reason"] == "looks right"

    again = client.post(url)
    assert again.status_code == 409 and 'data-reason="used"' in again.text
    assert refusals(store) == ["used"]
    assert client.get(url).status_code == 409  # and its page says so


def _nonce(store: RunStore) -> str:
    [row] = store.db.execute("SELECT nonce FROM decision_links").fetchall()
    return str(row[0])


def test_a_post_without_a_valid_token_decides_nothing(
    paused: tuple[Path, RunStore, str, dict[str, Any]], client: TestClient
) -> None:
    home, store, run_id, approval = paused
    url = link(store, home, approval)
    forged = url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB")
    assert client.post(forged).status_code == 403
    assert client.post("/d/not-a-token").status_code == 403
    other_key = DecisionLinks(home.parent / "elsewhere").mint(
        store, run_id, approval["call_id"], "approve", approval["arguments_sha256"]
    )
    assert client.post(f"/d/{other_key}").status_code == 403  # signed with another key
    assert client.post("/approvals/x/y").status_code == 401  # nothing else skips the login
    assert store.latest_approval(run_id, approval["call_id"])["status"] == "pending"
    assert refusals(store) == ["bad_signature"] * 3


def test_an_expired_link_is_refused_and_recorded(
    paused: tuple[Path, RunStore, str, dict[str, Any]], client: TestClient
) -> None:
    home, store, run_id, approval = paused
    now = datetime.now(UTC)
    minted = DecisionLinks(home, max_age_s=60, clock=lambda: now).mint(
        store, run_id, approval["call_id"], "approve", approval["arguments_sha256"]
    )
    later = now + timedelta(seconds=61)
    client.app.state.links = DecisionLinks(home, MAX_LINK_AGE_S, clock=lambda: later)  # type: ignore[attr-defined]
    refused = client.post(f"/d/{minted}")
    assert refused.status_code == 410 and 'data-reason="expired"' in refused.text
    assert store.latest_approval(run_id, approval["call_id"])["status"] == "pending"
    [row] = store.decision_link_refusals()
    assert (row["reason"], row["run_id"]) == ("expired", run_id)


def test_a_link_for_other_arguments_is_refused(
    paused: tuple[Path, RunStore, str, dict[str, Any]], client: TestClient
) -> None:
    home, store, run_id, approval = paused
    url = link(store, home, approval)
    # The same call asked again with other arguments (a resumed run whose model changed them):
    other = json.dumps({"path": "out/other.md", "content": "numbers"})
    store.record(
        ApprovalRequested(
            run_id,
            approval["call_id"],
            "write_file",
            other,
            arguments_sha256("write_file", other),
            approval["risk"],
            "approve-writes asks for medium-risk tools",
        )
    )
    refused = client.post(url)
    assert refused.status_code == 409 and 'data-reason="other_arguments"' in refused.text
    assert client.get(url).status_code == 409
    assert [a["status"] for a in store.approvals(run_id, status=None)] == ["pending", "pending"]
    assert refusals(store) == ["other_arguments", "other_arguments"]


def test_a_call_decided_another_way_refuses_its_link(
    paused: tuple[Path, RunStore, str, dict[str, Any]], client: TestClient
) -> None:
    home, store, run_id, approval = paused
    url = link(store, home, approval, "deny")
    decide(store, run_id, approval["call_id"], True, "", by="cli")
    refused = client.post(url)
    assert refused.status_code == 409 and 'data-reason="decided"' in refused.text
    assert store.latest_approval(run_id, approval["call_id"])["status"] == "approved"
    assert refusals(store) == ["decided"]


def test_a_post_from_another_site_is_refused(
    paused: tuple[Path, RunStore, str, dict[str, Any]], client: TestClient
) -> None:
    home, store, run_id, approval = paused
    url = link(store, home, approval)
    refused = client.post(url, headers={"Origin": "https://evil.example"})
    assert refused.status_code == 403
    assert store.latest_approval(run_id, approval["call_id"])["status"] == "pending"
    assert client.post(url, headers={"Origin": "http://testserver"}).status_code == 200


def test_an_answer_link_answers_the_question_once(
    paused: tuple[Path, RunStore, str, dict[str, Any]], client: TestClient
) -> None:
    home, store, run_id, _ = paused
    store.record(QuestionAsked(run_id, "ask-1", "Which region?", "for the report", ["eu", "us"]))
    token = DecisionLinks(home).mint(store, run_id, "ask-1", "answer", "")
    page = client.get(f"/d/{token}")
    assert page.status_code == 200 and "Which region?" in page.text and 'value="eu"' in page.text
    assert store.question(run_id, "ask-1")["status"] == "waiting"
    assert client.post(f"/d/{token}", data={"answer": "EU"}).status_code == 200
    question = store.question(run_id, "ask-1")
    assert (question["status"], question["answer"]) == ("answered", "eu")
    assert question["answered_by"].startswith("link:")
    assert client.post(f"/d/{token}", data={"answer": "us"}).status_code == 409


def test_the_daemon_sends_a_link_that_approves_and_continues_the_run(
    agents: Path, home: Path, daemons: list[DaemonProcess]
) -> None:
    receiver = HttpReceiver()
    try:
        write_spec(
            agents,
            f"""
            version: 1
            name: writer
            model: openai/test-double
            goal: write a reply
            autonomy: approve-writes
            unattended: queue
            tools:
              write_file: {{paths: [inbox]}}
            triggers:
              - manual: true
            env: [WEBHOOK_SECRET]
            notify:
              - url: json://agentrun:${{WEBHOOK_SECRET}}@127.0.0.1:{receiver.port}/agentrun
                events: [approval_waiting, run_completed]
            """,
            name="writer.yaml",
        )
        (agents / "inbox").mkdir()
        daemon = DaemonProcess(agents, home, "--http", f"127.0.0.1:{free_port()}")
        daemons.append(daemon)
        run_id = daemon.cli("trigger", "writer").stdout.split()[1].rstrip(":")
        [message] = wait_for(
            lambda: receiver.json_bodies("/agentrun"), "the approval_waiting message", WAIT_S
        )
        assert run_id in message["message"] and "write_file" in message["message"]
        approve = next(
            line.removeprefix("Approve: ")
            for line in message["message"].splitlines()
            if line.startswith("Approve: ")
        )
        assert approve.startswith((home / "daemon.url").read_text().strip() + "/d/")
        with httpx.Client() as browser:
            page = browser.get(approve)
            assert page.status_code == 200 and "write_file" in page.text
            store = RunStore(home / "runs.db")
            assert store.approvals(run_id)  # still pending: the GET decided nothing
            used = browser.post(approve, data={"reason": "ok"})
            assert used.status_code == 200, used.text
        row = wait_for(
            lambda: (r := store.run(run_id)) and r.stop_reason == "completed" and r,
            "the daemon to continue the run",
            WAIT_S,
        )
        assert row.final == "done: write a reply", daemon.output()
        assert (agents / "inbox" / "reply.txt").read_text() == "write a reply"
        wait_for(lambda: len(receiver.requests) == 2, "the run_completed message", WAIT_S)
        events = [n["event"] for n in store.notifications(run_id)]
        assert sorted(events) == ["approval_waiting", "run_completed"]
        # The channel's secret (from the daemon's environment) reached the receiver only.
        secret = daemon.env["WEBHOOK_SECRET"]
        assert all("authorization" in {k.lower() for k in r["headers"]} for r in receiver.requests)
        assert daemon.stop() == 0
        logged = Path(daemon.log.name).read_text()
        assert f"notification approval_waiting of run {run_id} sent to json://agentrun:" in logged
        assert secret not in logged
        store.close()
        stored = b"".join(p.read_bytes() for p in home.iterdir() if p.name.startswith("runs.db"))
        assert secret.encode() not in stored
    finally:
        receiver.close()


def test_the_daemon_refuses_bad_notify_options(tmp_path: Path) -> None:
    env = {**os.environ, "AGENTRUN_HOME": str(tmp_path / "home")}
    (tmp_path / "agents").mkdir()
    for args, words in (
        (["--notify", "json://${NOT_SET_HERE}@127.0.0.1/x"], "'NOT_SET_HERE'"),
        (["--notify", "json://127.0.0.1/x", "--notify-events", "run_exploded"], "run_exploded"),
        (["--public-url", "ftp://x"], "--public-url"),
        (["--link-max-age", "soon"], "--link-max-age"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "runner", "daemon", str(tmp_path / "agents"), *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=WAIT_S,
        )
        assert result.returncode == 2, result.stderr
        assert words in result.stderr and "Traceback" not in result.stderr
