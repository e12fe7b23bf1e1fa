"""The HTTP API over real HTTP: `agentrun console` started as a process on a recorded store."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from runner.compiler import compile_agent
from runner.loop import run_agent
from runner.spec import load_spec
from runner.store import RunStore, new_run_id
from runner.testing import FakeOpenAIServer, ScriptedModel, call, text
from tests.conftest import ROOT
from tests.helpers import wait_for


@dataclass
class Console:
    """A running `agentrun console` process and how to reach it."""

    process: subprocess.Popen[str]
    base: str
    login: str
    token: str
    home: Path

    def client(self, bearer: bool = True) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if bearer else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=httpx.Timeout(60.0))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def console_env(home: Path) -> dict[str, str]:
    return {**os.environ, "AGENTRUN_HOME": str(home)}


def start_console(home: Path, *args: str) -> Console:
    """Start `agentrun console --no-browser --http 127.0.0.1:0` and read its login link."""
    process = subprocess.Popen(
        [sys.executable, "-m", "runner", "console", "--no-browser", "--http", "127.0.0.1:0", *args],
        cwd=ROOT,
        env=console_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    seen = []
    for line in process.stdout:  # ends (empty) if the process exits
        seen.append(line)
        if "/login?token=" in line:
            login = line.strip()
            break
    else:
        process.wait()
        raise AssertionError("the console printed no login link:\n" + "".join(seen))
    base = login.split("/login?")[0]
    token = login.split("token=")[1]
    return Console(process, base, login, token, home)


WRITER = """
version: 1
name: writer
model: openai/scripted
goal: Write the report.
tools:
  write_file: {paths: [out]}
autonomy: approve-writes
unattended: queue
"""
TESTER = """
version: 1
name: tester
model: openai/scripted
goal: Say done.
"""


def record(folder: Path, home: Path, spec_body: str, script: list[Any]) -> str:
    """Record one run with the scripted model into ``home``'s store; its id."""
    (folder / "out").mkdir(exist_ok=True)
    spec = folder / f"{abs(hash(spec_body))}.yaml"
    spec.write_text(textwrap.dedent(spec_body).lstrip(), encoding="utf-8")
    store = RunStore(home / "runs.db")
    try:
        finished = asyncio.run(
            run_agent(compile_agent(load_spec(spec)), ScriptedModel(script), store)
        )
    finally:
        store.close()
    return finished.run_id


@dataclass
class Recorded:
    console: Console
    completed: list[str]  # oldest first
    paused: dict[str, str]  # purpose -> run id


def paused_run(folder: Path, home: Path, name: str) -> str:
    return record(
        folder,
        home,
        WRITER,
        [
            call(
                "write_file", {"path": f"out/{name}.md", "content": name}, content=f"Saving {name}."
            )
        ],
    )


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    folder = tmp_path_factory.mktemp("web")
    home = folder / "home"
    old = os.environ.get("AGENTRUN_HOME")
    os.environ["AGENTRUN_HOME"] = str(home)
    try:
        completed = [record(folder, home, TESTER, [text(f"done {i}")]) for i in range(3)]
        paused = {
            purpose: paused_run(folder, home, purpose)
            for purpose in ("listed", "cookie", "all", "stream")
        }
    finally:
        if old is None:
            del os.environ["AGENTRUN_HOME"]
        else:
            os.environ["AGENTRUN_HOME"] = old
    console = start_console(home)
    try:
        yield Recorded(console, completed, paused)
    finally:
        console.stop()


def pending_call(recorded: Recorded, purpose: str) -> str:
    store = RunStore(recorded.console.home / "runs.db")
    try:
        [approval] = store.approvals(recorded.paused[purpose], status=None)
    finally:
        store.close()
    return approval["call_id"]


# ---------------------------------------------------------------------------------------------
# authentication


def test_every_route_but_login_needs_a_credential(recorded: Recorded) -> None:
    with recorded.console.client(bearer=False) as client:
        for path in (
            "/",
            "/api/v1/runs",
            "/api/v1/approvals",
            f"/api/v1/runs/{recorded.completed[0]}",
            "/api/v1/openapi.json",
            "/api/v1/events/stream",
            "/api/v1/no-such-route",
        ):
            answer = client.get(path)
            assert answer.status_code == 401, path
            assert "authentication required" in answer.json()["error"]
        wrong = client.get("/api/v1/runs", headers={"Authorization": "Bearer not-the-token"})
        assert wrong.status_code == 401
        assert client.get("/login", params={"token": "not-the-token"}).status_code == 401


def test_the_token_file_is_owner_only(recorded: Recorded) -> None:
    token_file = recorded.console.home / "console.token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert token_file.read_text().strip() == recorded.console.token


def test_login_sets_an_httponly_strict_session_and_a_csrf_cookie(recorded: Recorded) -> None:
    with recorded.console.client(bearer=False) as client:
        answer = client.get("/login", params={"token": recorded.console.token})
        assert answer.status_code == 303 and answer.headers["location"] == "/"
        cookies = {
            header.split("=")[0]: header.lower() for header in answer.headers.get_list("set-cookie")
        }
        session = cookies["agentrun_session"]
        assert "httponly" in session and "samesite=strict" in session
        assert recorded.console.token.lower() not in session  # derived, not the token
        assert "samesite=strict" in cookies["csrf"] and "httponly" not in cookies["csrf"]
        # Logged in: the client now sends the cookies.
        page = client.get("/")
        assert page.status_code == 200 and "/api/v1/openapi.json" in page.text
        for answer in (page, client.get("/api/v1/runs"), client.get("/api/v1/nope")):
            assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
            assert answer.headers["referrer-policy"] == "no-referrer"
            assert answer.headers["cache-control"] == "no-store"
        # No Swagger UI (its script comes from a CDN); an unknown path is a JSON 404.
        assert client.get("/api/v1/docs").json() == {"error": "Not Found"}
        assert client.get("/api/v1/runs").status_code == 200


def test_a_cookie_post_needs_the_csrf_token(recorded: Recorded) -> None:
    run_id = recorded.paused["cookie"]
    call_id = pending_call(recorded, "cookie")
    path = f"/api/v1/runs/{run_id}/approvals/{call_id}"
    body = {"approved": False, "reason": "not from a page of another site"}
    with recorded.console.client(bearer=False) as client:
        client.get("/login", params={"token": recorded.console.token})
        csrf = client.cookies["csrf"]
        assert client.post(path, json=body).status_code == 403
        refused = client.post(path, json=body, headers={"X-CSRF-Token": "forged"})
        assert refused.status_code == 403 and "csrf" in refused.json()["error"].lower()
        # The form field is checked too: a wrong one is refused; the right one passes
        # the CSRF check (then the body, a form and not JSON, does not match: 422).
        assert client.post(path, data={"csrf": "forged"}).status_code == 403
        assert client.post(path, data={"csrf": csrf}).status_code == 422
        decided = client.post(path, json=body, headers={"X-CSRF-Token": csrf})
        assert decided.status_code == 200, decided.text
        assert decided.json()["by"] == "console:console@127.0.0.1"


# ---------------------------------------------------------------------------------------------
# runs


def test_runs_are_listed_newest_first_through_several_pages(recorded: Recorded) -> None:
    store = RunStore(recorded.console.home / "runs.db")
    try:
        everything = [row.id for row in store.runs(limit=1000)]
    finally:
        store.close()
    assert len(everything) >= 5
    with recorded.console.client() as client:
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 2}
            if cursor:
                params["cursor"] = cursor
            answer = client.get("/api/v1/runs", params=params)
            assert answer.status_code == 200, answer.text
            page = answer.json()
            pages += 1
            assert len(page["runs"]) <= 2
            seen.extend(run["id"] for run in page["runs"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert pages >= 3
        assert seen == everything == sorted(everything, reverse=True)


def test_runs_are_filtered_as_the_cli_filters_them(recorded: Recorded) -> None:
    with recorded.console.client() as client:
        testers = client.get("/api/v1/runs", params={"agent": "tester"}).json()["runs"]
        assert sorted(run["id"] for run in testers) == sorted(recorded.completed)
        assert {run["status"] for run in testers} == {"completed"}
        completed = client.get("/api/v1/runs", params={"status": "completed"}).json()["runs"]
        assert {run["agent"] for run in completed} == {"tester"}
        recent = client.get("/api/v1/runs", params={"since": "1h"}).json()["runs"]
        assert set(recorded.completed) | set(recorded.paused.values()) <= {
            run["id"] for run in recent
        }
        future = client.get("/api/v1/runs", params={"since": "2999-01-01"}).json()["runs"]
        assert future == []
        for params in ({"status": "finished"}, {"since": "yesterday"}, {"cursor": "garbage"}):
            answer = client.get("/api/v1/runs", params=params)
            assert answer.status_code == 400, params
            assert answer.json()["error"]
        assert client.get("/api/v1/runs", params={"limit": 0}).status_code == 422


def test_one_run_by_id_or_prefix(recorded: Recorded) -> None:
    run_id = recorded.completed[0]
    with recorded.console.client() as client:
        run = client.get(f"/api/v1/runs/{run_id}").json()
        assert run["id"] == run_id and run["final"] == "done 0" and run["agent"] == "tester"
        assert run["stop_reason"] == "completed" and run["resumable"] is False
        # A unique prefix works as in `agentrun runs show`; an unknown id is 404.
        assert client.get(f"/api/v1/runs/{run_id[:-3]}").json()["id"] == run_id
        # Wildcards of a prefix match are no part of an id.
        assert client.get(f"/api/v1/runs/{run_id[:3]}%25").status_code == 404
        assert client.get(f"/api/v1/runs/{run_id[:-1]}_").status_code == 404
        for path in ("", "/events", "/export", "/events/stream"):
            missing = client.get(f"/api/v1/runs/NOSUCHRUN{path}")
            assert missing.status_code == 404, path
            assert "no run with id 'NOSUCHRUN'" in missing.json()["error"]


def test_a_run_whose_process_died_shows_as_interrupted(recorded: Recorded) -> None:
    # A process records a run's start and exits without ending it (as if killed).
    ghost = new_run_id()
    started = (
        "import sys; from pathlib import Path; from runner.events import RunStarted; "
        "from runner.store import RunStore; "
        "store = RunStore(Path(sys.argv[1])); "
        "store.record(RunStarted(sys.argv[2], 'ghost', 'm', 'ghost.yaml', '0', {}, 'go')); "
        "store.close()"
    )
    subprocess.run(
        [sys.executable, "-c", started, str(recorded.console.home / "runs.db"), ghost],
        cwd=ROOT,
        check=True,
    )
    with recorded.console.client() as client:

        def status() -> bool:
            return client.get(f"/api/v1/runs/{ghost}").json()["status"] == "interrupted"

        wait_for(status, "the dead run swept as interrupted")
        [listed] = client.get("/api/v1/runs", params={"agent": "ghost"}).json()["runs"]
        assert listed["status"] == listed["stop_reason"] == "interrupted"


def test_events_as_json_and_as_jsonl(recorded: Recorded) -> None:
    run_id = recorded.completed[1]
    with recorded.console.client() as client:
        events = client.get(f"/api/v1/runs/{run_id}/events").json()
        assert events[0]["type"] == "run_started"
        assert events[-1]["type"] == "run_finished"
        export = client.get(f"/api/v1/runs/{run_id}/export")
        assert export.headers["content-type"].startswith("application/x-ndjson")
    records = [json.loads(line) for line in export.text.splitlines()]
    # the events, then the run's hash chain (docs/audit.md): a log_entry per event, a log_head
    assert records[: len(events)] == events
    chain = records[len(events) :]
    assert [r["type"] for r in chain] == ["log_entry"] * len(events) + ["log_head"]
    assert {r["run_id"] for r in chain} == {run_id}
    assert [r["kind"] for r in chain[:-1]] == [e["type"] for e in events]
    assert chain[-1]["head"] == chain[-2]["hash"]
    cli = subprocess.run(
        [sys.executable, "-m", "runner", "runs", "export", run_id],
        cwd=ROOT,
        env=console_env(recorded.console.home),
        capture_output=True,
        text=True,
        check=True,
    )
    assert cli.stdout == export.text  # the same lines as `agentrun runs export`


def verify_file(path: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """`agentrun runs verify --file PATH`, as a user checks a downloaded export."""
    return subprocess.run(
        [sys.executable, "-m", "runner", "runs", "verify", "--file", str(path)],
        cwd=ROOT,
        env=console_env(home),
        capture_output=True,
        text=True,
    )


def test_an_export_downloaded_from_the_api_verifies(recorded: Recorded, tmp_path: Path) -> None:
    run_id = recorded.completed[0]
    with recorded.console.client() as client:
        export = client.get(f"/api/v1/runs/{run_id}/export")
    assert export.status_code == 200
    downloaded = tmp_path / f"{run_id}.jsonl"
    downloaded.write_text(export.text, encoding="utf-8")
    verified = verify_file(downloaded, recorded.console.home)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith(f"ok {run_id} (")
    assert "1 run verified: 1 intact" in verified.stdout
    # the same download with its model call's answer changed no longer verifies
    lines = export.text.splitlines(keepends=True)
    [at] = [i for i, line in enumerate(lines) if json.loads(line)["type"] == "model_call"]
    changed = json.loads(lines[at])
    assert changed["output_tokens"] >= 0
    changed["output_tokens"] += 1
    lines[at] = json.dumps(changed, ensure_ascii=False) + "\n"
    downloaded.write_text("".join(lines), encoding="utf-8")
    tampered = verify_file(downloaded, recorded.console.home)
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    assert tampered.stdout.startswith(f"BAD {run_id}: ")


def test_the_openapi_document_describes_every_endpoint(recorded: Recorded) -> None:
    with recorded.console.client() as client:
        document = client.get("/api/v1/openapi.json").json()
    paths = document["paths"]
    for path in (
        "/api/v1/runs",
        "/api/v1/runs/{run_id}",
        "/api/v1/runs/{run_id}/events",
        "/api/v1/runs/{run_id}/export",
        "/api/v1/runs/{run_id}/events/stream",
        "/api/v1/events/stream",
        "/api/v1/approvals",
        "/api/v1/runs/{run_id}/approvals",
        "/api/v1/runs/{run_id}/approvals/{call_id}",
    ):
        assert path in paths, path
    assert "RunPage" in document["components"]["schemas"]
    assert set(document["components"]["securitySchemes"]) == {"bearer", "session"}
    # Errors are documented as served: {"error": ...}, not FastAPI's default body.
    assert "HTTPValidationError" not in document["components"]["schemas"]
    answers = paths["/api/v1/runs/{run_id}/approvals/{call_id}"]["post"]["responses"]
    assert {"401", "403", "404", "409", "422"} <= set(answers)
    assert answers["409"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorOut")


# ---------------------------------------------------------------------------------------------
# approvals


def test_pending_approvals_with_their_context(recorded: Recorded) -> None:
    run_id = recorded.paused["listed"]
    with recorded.console.client() as client:
        approvals = client.get("/api/v1/approvals").json()["approvals"]
        mine = [a for a in approvals if a["run_id"] == run_id]
        assert len(mine) == 1
        [approval] = mine
        assert approval["agent"] == "writer" and approval["tool"] == "write_file"
        assert approval["arguments"] == {"path": "out/listed.md", "content": "listed"}
        assert approval["risk"] == "medium" and approval["status"] == "pending"
        assert approval["model_says"] == "Saving listed."
        assert approval["requested_at"] and approval["decided_by"] is None
        assert {a["status"] for a in approvals} == {"pending"}
        only = client.get("/api/v1/approvals", params={"run_id": run_id[:-2]}).json()
        assert [a["run_id"] for a in only["approvals"]] == [run_id]


def test_deciding_one_call_records_who_and_a_second_decision_is_409(
    recorded: Recorded, tmp_path: Path
) -> None:
    env = {**console_env(recorded.console.home), "FAKE_API_KEY": "sk-fake-000000"}
    script = [
        call("write_file", {"path": "out/report.md", "content": "all good"}, content="Saving."),
        text("Saved."),
    ]
    with FakeOpenAIServer(script) as server:
        (tmp_path / "out").mkdir()
        spec = tmp_path / "writer.yaml"
        spec.write_text(
            textwrap.dedent(WRITER).replace(
                "model: openai/scripted",
                f'model: {{id: openai/fake, api_base: "{server.api_base}", '
                "api_key_env: FAKE_API_KEY}",
            ),
            encoding="utf-8",
        )
        paused = agentrun(["run", str(spec)], env)
        assert paused.returncode == 5, paused.stderr
        with recorded.console.client() as client:
            listed = client.get("/api/v1/approvals").json()["approvals"]
        [approval] = [
            a for a in listed if a["arguments"] == {"path": "out/report.md", "content": "all good"}
        ]
        run_id, call_id = approval["run_id"], approval["call_id"]
        path = f"/api/v1/runs/{run_id}/approvals/{call_id}"
        with recorded.console.client() as client:
            # A bearer request needs no CSRF token: a browser never adds the header itself.
            decided = client.post(path, json={"approved": True, "reason": "looks right"})
            assert decided.status_code == 200, decided.text
            assert decided.json() == {
                "run_id": run_id,
                "approved": True,
                "calls": [call_id],
                "by": "api:console@127.0.0.1",
                "resume": f"agentrun resume {run_id}",
            }
            again = client.post(path, json={"approved": False, "reason": "changed my mind"})
            assert again.status_code == 409
            assert "approved by api:console@127.0.0.1" in again.json()["error"]
            unknown = client.post(f"/api/v1/runs/{run_id}/approvals/nope", json={"approved": True})
            assert unknown.status_code == 404
            nowhere = client.post("/api/v1/runs/NOSUCHRUN/approvals/nope", json={"approved": True})
            assert nowhere.status_code == 404
            bad = client.post(path, json={"approved": "perhaps"})
            assert bad.status_code == 422 and "approved" in bad.json()["error"]
            assert run_id not in {
                a["run_id"] for a in client.get("/api/v1/approvals").json()["approvals"]
            }
        # The CLI sees the decision the API made: the run resumes and shows who decided.
        resumed = agentrun(["resume", run_id], env)
        assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "out" / "report.md").read_text() == "all good"
    shown = agentrun(["runs", "show", run_id], env)
    assert "approved by api:console@127.0.0.1" in shown.stdout, shown.stdout
    assert "looks right" in shown.stdout


def agentrun(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_deciding_all_of_a_run(recorded: Recorded) -> None:
    run_id = recorded.paused["all"]
    call_id = pending_call(recorded, "all")
    with recorded.console.client() as client:
        path = f"/api/v1/runs/{run_id}/approvals"
        denied = client.post(path, json={"approved": False, "reason": "not today"})
        assert denied.status_code == 200, denied.text
        assert denied.json()["calls"] == [call_id] and denied.json()["approved"] is False
        nothing = client.post(path, json={"approved": True})
        assert nothing.status_code == 409 and "no pending approval" in nothing.json()["error"]
        assert (
            client.post("/api/v1/runs/NOSUCHRUN/approvals", json={"approved": True}).status_code
            == 404
        )


# ---------------------------------------------------------------------------------------------
# Server-Sent Events


def read_sse(
    response: httpx.Response, until: Callable[[dict[str, Any]], bool] | None = None
) -> list[dict[str, Any]]:
    """Events of an SSE answer (id, event, data) until one matches ``until`` or it ends."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    for line in response.iter_lines():
        if not line:
            if "data" in current:
                events.append(current)
                if until is not None and until(current):
                    break
            current = {}
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            current[field] = json.loads(value) if field == "data" else value
    return events


def test_a_run_stream_replays_and_ends_and_resumes_from_last_event_id(recorded: Recorded) -> None:
    run_id = recorded.completed[2]
    with recorded.console.client() as client:
        with client.stream("GET", f"/api/v1/runs/{run_id}/events/stream") as answer:
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("text/event-stream")
            events = read_sse(answer)  # ends by itself after run_finished
        assert events[0]["event"] == "run_started"
        assert events[-1]["event"] == "run_finished"
        assert all(e["data"]["run_id"] == run_id for e in events)
        ids = [int(e["id"]) for e in events]
        assert ids == sorted(ids) and all(int(e["id"]) == e["data"]["id"] for e in events)
        # Reconnecting with Last-Event-ID gives only what came after it.
        headers = {"Last-Event-ID": str(ids[0])}
        stream = f"/api/v1/runs/{run_id}/events/stream"
        with client.stream("GET", stream, headers=headers) as answer:
            assert [int(e["id"]) for e in read_sse(answer)] == ids[1:]
        with client.stream("GET", stream, params={"last_event_id": ids[-2]}) as answer:
            assert [int(e["id"]) for e in read_sse(answer)] == ids[-1:]
        bad = client.get(stream, headers={"Last-Event-ID": "yesterday"})
        assert bad.status_code == 400


def test_the_live_stream_delivers_a_decision_and_resumes(recorded: Recorded) -> None:
    run_id = recorded.paused["stream"]
    call_id = pending_call(recorded, "stream")
    with recorded.console.client() as client:
        with client.stream("GET", f"/api/v1/runs/{run_id}/events/stream") as answer:
            last = int(read_sse(answer)[-1]["id"])  # the paused run's run_finished

        def ours(event: dict[str, Any]) -> bool:
            return event["event"] == "approval_decided" and event["data"]["run_id"] == run_id

        headers = {"Last-Event-ID": str(last)}
        with client.stream("GET", "/api/v1/events/stream", headers=headers) as live:
            assert live.status_code == 200
            decided = client.post(
                f"/api/v1/runs/{run_id}/approvals/{call_id}",
                json={"approved": False, "reason": "watched live"},
            )
            assert decided.status_code == 200
            event = read_sse(live, until=ours)[-1]
        assert ours(event) and event["data"]["by"] == "api:console@127.0.0.1"
        # From the id before it, the stream replays it first.
        headers = {"Last-Event-ID": str(int(event["id"]) - 1)}
        with client.stream("GET", "/api/v1/events/stream", headers=headers) as resumed:
            again = read_sse(resumed, until=lambda _: True)
        assert again == [event]


# ---------------------------------------------------------------------------------------------
# the feed: one poller for every stream


class FakeLog:
    """A run event log in memory that counts who reads it."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.reads: list[tuple[int, str | None]] = []

    def add(self, run_id: str) -> None:
        self.entries.append({"id": len(self.entries) + 1, "run_id": run_id, "type": "notice"})

    def read(self, after_id: int, run_id: str | None, limit: int) -> list[dict[str, Any]]:
        self.reads.append((after_id, run_id))
        found = [e for e in self.entries if e["id"] > after_id]
        return [e for e in found if run_id is None or e["run_id"] == run_id][:limit]

    def last_id(self) -> int:
        return len(self.entries)


async def wait_until(predicate: Callable[[], bool], what: str) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(poll(), timeout=60)
    except TimeoutError:
        raise AssertionError(f"gave up waiting for {what}") from None


def test_fifty_streams_share_one_poller() -> None:
    from runner.web.feed import EventFeed

    log = FakeLog()
    for run_id in ("A", "B", "A"):
        log.add(run_id)

    async def scenario() -> list[list[int]]:
        feed = EventFeed(log.read, log.last_id, interval_s=0.01)
        feed.start()
        received: list[list[int]] = [[] for _ in range(50)]

        async def listen(index: int) -> None:
            async for entry in feed.events(0, "A"):
                received[index].append(entry["id"])
                if entry["id"] == 5:
                    return

        listeners = [asyncio.create_task(listen(i)) for i in range(50)]
        await wait_until(lambda: all(ids == [1, 3] for ids in received), "the recorded entries")
        await wait_until(lambda: feed.listeners == 50, "50 listeners")
        log.add("B")
        log.add("A")
        await asyncio.gather(*listeners)
        await feed.stop()
        return received

    received = asyncio.run(scenario())
    assert received == [[1, 3, 5]] * 50
    # Each stream read its own past once; everything live came from the one poller's reads.
    assert sum(1 for _, run_id in log.reads if run_id == "A") == 50
    assert {run_id for _, run_id in log.reads} == {"A", None}


def test_a_stream_that_falls_behind_catches_up_from_the_log() -> None:
    from runner.web.feed import EventFeed

    log = FakeLog()

    async def scenario() -> list[int]:
        feed = EventFeed(log.read, log.last_id, interval_s=0.01, queue_size=2)
        feed.start()
        stream = feed.events(0)
        log.add("A")
        ids = [(await anext(stream))["id"]]
        # Not reading while the poller delivers 6 entries: more than the queue holds.
        polls = len(log.reads)
        for _ in range(6):
            log.add("A")
        await wait_until(lambda: feed.listeners == 0, "the slow stream dropped")
        assert len(log.reads) > polls
        async for entry in stream:
            ids.append(entry["id"])
            if entry["id"] == 7:
                break
        await stream.aclose()
        await feed.stop()
        return ids

    assert asyncio.run(scenario()) == [1, 2, 3, 4, 5, 6, 7]
