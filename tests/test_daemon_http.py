"""The daemon's one HTTP server (``agentrun daemon --http``), over real HTTP.

One daemon subprocess (the scripted model of ``tests.daemon_support``) serves webhooks, the
``/api/v1`` API with the daemon's routes (agents, starting and cancelling runs, status) and
the console's login; the tests talk to it with httpx as any client would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runner.store import RunStore
from runner.web.app import create_app
from tests.helpers import wait_for, write_spec
from tests.test_daemon import ROOT, WAIT_S, DaemonProcess, free_port, sign

AGENTS = {
    "echo": """
        version: 1
        name: echo
        model: openai/test-double
        inputs:
          title: {type: string}
          count: {type: integer, default: 1}
        goal: "echo {{ title }} {{ count }}"
        concurrency: allow
        triggers:
          - manual: true
        """,
    "sleeper": """
        version: 1
        name: sleeper
        model: openai/test-double
        goal: sleep a while
        concurrency: allow
        tools:
          functions:
            nap: {function: "tests.daemon_support:nap", risk: low}
        triggers:
          - manual: true
        """,
    "writer": """
        version: 1
        name: writer
        model: openai/test-double
        goal: write a reply
        autonomy: approve-writes
        unattended: queue
        concurrency: queue
        tools:
          write_file: {paths: [inbox]}
        triggers:
          - manual: true
        """,
    "labeller": """
        version: 1
        name: labeller
        model: openai/test-double
        inputs:
          title: {type: string}
        goal: "label {{ title }}"
        triggers:
          - webhook: {secret_env: WEBHOOK_SECRET, inputs: {title: issue.title}}
        """,
}
BROKEN = """
version: 1
name: broken
model: openai/test-double
goal: hello
budgets:
  max_steps: many
"""


class Served:
    """The daemon, its base URL, its token and its store."""

    def __init__(self, daemon: DaemonProcess, base: str) -> None:
        self.daemon = daemon
        self.base = base
        self.token = (daemon.home / "console.token").read_text().strip()
        self.store = RunStore(daemon.home / "runs.db")

    def client(self, bearer: bool = True) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if bearer else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=60)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("daemon-http")
    agents, home = root / "agents", root / "home"
    agents.mkdir()
    home.mkdir()
    (agents / "inbox").mkdir()
    for name, body in AGENTS.items():
        write_spec(agents, body, name=f"{name}.yaml")
    (agents / "broken.yaml").write_text(BROKEN)
    port = free_port()
    daemon = DaemonProcess(agents, home, "--http", f"127.0.0.1:{port}")
    try:
        url = wait_for(
            lambda: (home / "daemon.url").exists() and (home / "daemon.url").read_text().strip(),
            "the daemon's URL file",
        )
        assert url == f"http://127.0.0.1:{port}"
        assert (home / "daemon.url").stat().st_mode & 0o777 == 0o600
        yield Served(daemon, url)
    finally:
        if daemon.process.poll() is None:
            daemon.stop()
        daemon.log.close()
        assert not (home / "daemon.url").exists(), "the URL file outlived the daemon"


def _run(served: Served, run_id: str) -> Any:
    return served.store.run(run_id)


# -- authentication ---------------------------------------------------------------------------


def test_every_daemon_route_needs_the_token(served: Served) -> None:
    with served.client(bearer=False) as client:
        for method, path in [
            ("GET", "/api/v1/agents"),
            ("GET", "/api/v1/daemon"),
            ("POST", "/api/v1/agents/echo/runs"),
            ("POST", "/api/v1/runs/01ABC/cancel"),
        ]:
            answer = client.request(method, path, json={})
            assert answer.status_code == 401, (path, answer.text)
            assert "authentication required" in answer.json()["error"]


def test_a_cookie_start_without_its_csrf_token_is_refused(served: Served) -> None:
    with served.client(bearer=False) as client:
        login = client.get("/login", params={"token": served.token})
        assert login.status_code == 303
        answer = client.post("/api/v1/agents/echo/runs", json={"inputs": {"title": "x"}})
        assert answer.status_code == 403, answer.text
        assert "X-CSRF-Token" in answer.json()["error"]
        assert client.get("/api/v1/agents").status_code == 200  # reads need no CSRF token
        csrf = client.cookies["csrf"]
        started = client.post(
            "/api/v1/agents/echo/runs",
            json={"inputs": {"title": "cookie"}, "wait": 60},
            headers={"X-CSRF-Token": csrf},
        )
        assert started.status_code == 200, started.text


# -- agents and status ------------------------------------------------------------------------


def test_agents_lists_every_spec_with_its_errors_triggers_and_today(served: Served) -> None:
    with served.client() as client:
        client.post("/api/v1/agents/echo/runs", json={"inputs": {"title": "t"}, "wait": 60})
        agents = {Path(a["path"]).name: a for a in client.get("/api/v1/agents").json()["agents"]}
    assert set(agents) == {
        "echo.yaml",
        "sleeper.yaml",
        "writer.yaml",
        "labeller.yaml",
        "broken.yaml",
    }
    broken = agents["broken.yaml"]
    assert broken["valid"] is False and broken["loaded"] is False and broken["name"] is None
    [error] = broken["errors"]
    assert "broken.yaml:" in error and "max_steps" in error
    echo = agents["echo.yaml"]
    assert echo["valid"] and echo["loaded"] and echo["errors"] == []
    assert echo["triggers"] == [
        {"kind": "manual", **dict.fromkeys(("cron", "timezone", "next", "paths", "path"))}
    ]
    assert [(i["name"], i["type"], i["required"]) for i in echo["inputs"]] == [
        ("title", "string", True),
        ("count", "integer", False),
    ]
    assert echo["runs_today"] >= 1 and echo["last"].startswith("completed (")
    assert isinstance(echo["spend_today_usd"], float)
    assert agents["labeller.yaml"]["triggers"][0]["path"] == "/hooks/labeller"


def test_daemon_status_shows_agents_workers_errors_and_notices(served: Served) -> None:
    with served.client() as client:
        status = client.get("/api/v1/daemon").json()
    assert status["pid"] == served.daemon.process.pid
    assert status["url"] == served.base
    assert {a["name"] for a in status["agents"]} == {"echo", "sleeper", "writer", "labeller"}
    assert any("broken.yaml" in e for e in status["errors"])
    assert any("broken.yaml" in n["message"] for n in status["notices"])
    assert status["litellm_imported"] is False
    assert set(status["workers_idle_by_path"]) >= {"direct"} or status["workers_idle_by_path"]


# -- starting runs ----------------------------------------------------------------------------


def test_start_with_wait_answers_the_result_and_a_key_starts_one_run(served: Served) -> None:
    body = {"inputs": {"title": "hello", "count": "3"}, "idempotency_key": "k-1", "wait": 60}
    with served.client() as client:
        first = client.post("/api/v1/agents/echo/runs", json=body)
        assert first.status_code == 200, first.text
        answer = first.json()
        assert answer["done"] and not answer["duplicate"] and answer["outcome"] == "started"
        run = answer["run"]
        assert run["stop_reason"] == "completed" and run["final"] == "done: echo hello 3"
        assert run["inputs"] == {"title": "hello", "count": 3} and run["trigger"] == "manual"
        again = client.post("/api/v1/agents/echo/runs", json=body)
        assert again.status_code == 200 and again.json()["duplicate"] is True
        assert again.json()["run_id"] == answer["run_id"]
    assert len([r for r in served.store.runs(limit=100) if r.inputs_json.count("hello")]) == 1


def test_start_without_wait_answers_202_with_the_run_id(served: Served) -> None:
    with served.client() as client:
        answer = client.post("/api/v1/agents/echo/runs", json={"inputs": {"title": "later"}})
    assert answer.status_code == 202, answer.text
    run_id = answer.json()["run_id"]
    row = wait_for(lambda: (r := _run(served, run_id)) and r.status != "running" and r, "the run")
    assert row.final == "done: echo later 1"


def test_bad_inputs_are_422_with_the_clis_located_message(served: Served) -> None:
    with served.client() as client:
        answer = client.post(
            "/api/v1/agents/echo/runs", json={"inputs": {"title": "x", "count": "many"}}
        )
        missing = client.post("/api/v1/agents/echo/runs", json={"inputs": {}})
        shape = client.post("/api/v1/agents/echo/runs", json={"wait": -1})
    assert answer.status_code == 422
    cli = served.daemon.cli("trigger", "echo", "-i", "title=x", "-i", "count=many")
    assert cli.returncode == 2 and answer.json()["error"] in cli.stderr, cli.stderr
    assert "count" in answer.json()["error"]
    assert missing.status_code == 422 and "title" in missing.json()["error"]
    assert shape.status_code == 422 and "wait" in shape.json()["error"]


def test_starting_an_unknown_agent_is_404_and_one_without_manual_trigger_409(
    served: Served,
) -> None:
    with served.client() as client:
        unknown = client.post("/api/v1/agents/nobody/runs", json={})
        hooked = client.post("/api/v1/agents/labeller/runs", json={"inputs": {"title": "x"}})
    assert unknown.status_code == 404 and "no agent named 'nobody'" in unknown.json()["error"]
    assert hooked.status_code == 409 and "no manual trigger" in hooked.json()["error"]


# -- cancelling -------------------------------------------------------------------------------


def test_cancel_ends_an_active_run_and_refuses_others(served: Served) -> None:
    with served.client() as client:
        started = client.post("/api/v1/agents/sleeper/runs", json={})
        assert started.status_code == 202, started.text
        run_id = started.json()["run_id"]
        wait_for(lambda: _run(served, run_id), "the run to begin")  # it naps for 30 s
        cancel = client.post(f"/api/v1/runs/{run_id}/cancel")
        assert cancel.status_code == 202, cancel.text + served.daemon.output()
        assert cancel.json() == {"run_id": run_id, "state": "cancelling"}
        row = wait_for(
            lambda: (r := _run(served, run_id)) and r.status != "running" and r,
            "the cancelled run to end",
            WAIT_S,
        )
        assert row.stop_reason == "cancelled"
        again = client.post(f"/api/v1/runs/{run_id}/cancel")
        assert again.status_code == 409 and "not active" in again.json()["error"]
        unknown = client.post("/api/v1/runs/01NOSUCHRUN/cancel")
        assert unknown.status_code == 404


# -- approvals: the run continues by itself -----------------------------------------------------


def test_a_run_waiting_for_approval_completes_after_an_api_decision(served: Served) -> None:
    with served.client() as client:
        answer = client.post("/api/v1/agents/writer/runs", json={"wait": 60})
        assert answer.status_code == 200, answer.text
        run_id = answer.json()["run_id"]
        assert answer.json()["run"]["stop_reason"] == "waiting_approval"
        [pending] = client.get("/api/v1/approvals", params={"run_id": run_id}).json()["approvals"]
        assert pending["tool"] == "write_file"
        decided = client.post(
            f"/api/v1/runs/{run_id}/approvals", json={"approved": True, "reason": "fine"}
        )
        assert decided.status_code == 200, decided.text
        assert decided.json()["resume"] == "the daemon continues the run"
    row = wait_for(
        lambda: (r := _run(served, run_id)) and r.stop_reason == "completed" and r,
        "the run to continue by itself and complete",
        WAIT_S,
    )
    assert row.final == "done: write a reply"
    assert (served.daemon.home.parent / "agents" / "inbox" / "reply.txt").exists()


# -- webhooks on the same server ----------------------------------------------------------------


def test_webhooks_are_verified_on_the_same_server_without_the_token(served: Served) -> None:
    body = json.dumps({"issue": {"title": "Crash"}}).encode()
    headers = {"Content-Type": "application/json", "X-GitHub-Delivery": "http-1"}
    with served.client(bearer=False) as client:
        good = client.post(
            "/hooks/labeller", content=body, headers={**headers, "X-Hub-Signature-256": sign(body)}
        )
        assert good.status_code == 202, good.text
        bad = client.post(
            "/hooks/labeller",
            content=body,
            headers={**headers, "X-GitHub-Delivery": "http-2", "X-Hub-Signature-256": "sha256=0"},
        )
        assert bad.status_code == 401
        replay = client.post(
            "/hooks/labeller", content=body, headers={**headers, "X-Hub-Signature-256": sign(body)}
        )
        assert replay.status_code == 409
        assert client.post("/hooks/nobody", content=b"{}").status_code == 404
        # Only POSTs to webhook paths go without the token.
        assert client.get("/hooks/labeller").status_code == 401
    run_id = good.json()["run_id"]
    row = wait_for(lambda: (r := _run(served, run_id)) and r.status != "running" and r, "run")
    assert row.final == "done: label Crash" and row.trigger == "webhook"


# -- the console and the CLI ----------------------------------------------------------------------


def test_daemon_status_names_the_url(served: Served) -> None:
    status = served.daemon.cli("daemon", "status")
    assert f"serving HTTP on {served.base}" in status.stdout, status.stderr


def test_console_prints_the_daemons_link_instead_of_serving(served: Served) -> None:
    printed = served.daemon.cli("console", "--no-browser")
    assert printed.returncode == 0, printed.stderr
    assert f"{served.base}/login?token={served.token}" in printed.stdout


def test_a_remote_address_is_refused_without_allow_remote(tmp_path: Path) -> None:
    (tmp_path / "agents").mkdir()
    refused = subprocess.run(
        [sys.executable, "-m", "runner", "daemon", "agents", "--http", "0.0.0.0:8790"],
        cwd=tmp_path,
        env={"AGENTRUN_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2, refused.stderr
    assert "--allow-remote" in refused.stderr
    assert not (tmp_path / "home" / "daemon.lock").exists()


def test_without_a_daemon_its_routes_answer_404_saying_so(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    app = create_app(tmp_path / "runs.db", tmp_path)
    token = (tmp_path / "console.token").read_text().strip()
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as client:
        for method, path in [
            ("GET", "/api/v1/agents"),
            ("GET", "/api/v1/daemon"),
            ("POST", "/api/v1/agents/echo/runs"),
        ]:
            answer = client.request(method, path, json={})
            assert answer.status_code == 404, path
            assert "no daemon is running" in answer.json()["error"]
        paths = client.get("/api/v1/openapi.json").json()["paths"]
    assert {"/api/v1/agents", "/api/v1/agents/{name}/runs", "/api/v1/daemon"} <= set(paths)


def test_the_daemon_stops_promptly_with_an_event_stream_open(tmp_path: Path) -> None:
    agents, home = tmp_path / "agents", tmp_path / "home"
    agents.mkdir()
    home.mkdir()
    write_spec(agents, AGENTS["echo"], name="echo.yaml")
    port = free_port()
    daemon = DaemonProcess(agents, home, "--http", f"127.0.0.1:{port}")
    try:
        wait_for(lambda: (home / "daemon.url").exists(), "the daemon's URL file")
        token = (home / "console.token").read_text().strip()
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.stream(
            "GET", f"http://127.0.0.1:{port}/api/v1/events/stream", headers=headers, timeout=60
        ) as stream:
            assert stream.status_code == 200
            assert daemon.stop() == 0  # SIGTERM: the stream ends, the server and daemon stop
            assert list(stream.iter_bytes()) is not None  # the stream was closed, not hung
        output = Path(daemon.log.name).read_text()
        assert "Traceback" not in output and "daemon stopped" in output, output
        assert not (home / "daemon.url").exists()
    finally:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait()
