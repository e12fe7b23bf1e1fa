"""The console's pages in a real headless Chromium, used as a person uses them.

`agentrun console` runs as a process over a store filled with runs; Selenium drives Debian's
`chromium` through `/usr/bin/chromedriver` (given explicitly, so Selenium Manager never
downloads a driver). The tests log in with the token link, watch the runs list and a run's
timeline update without reload while runs are recorded from the test, approve and deny from
the Approvals page, resume with `agentrun resume` (no daemon continues a run here) and check
what the model received. Screenshots go to $AGENTRUN_SCREENSHOTS when set (CI keeps them as
artifacts) and, with AGENTRUN_UPDATE_SCREENSHOTS=1, to docs/assets/console/, which the docs
show (run ids and times differ on every run: the tracked files change only when asked).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from runner.store import RunStore
from runner.testing import FakeOpenAIServer, call, slow, text
from tests.conftest import ROOT
from tests.test_web_api import TESTER, Console, record, start_console

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = "/usr/bin/chromedriver"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None or not Path(CHROMEDRIVER).exists(),
        reason="needs Debian's chromium and chromium-driver "
        "(apt-get install -y chromium chromium-driver; .ci/run installs them)",
    ),
]
SHOTS = ROOT / "docs" / "assets" / "console"
#: Seconds a page may take to show what was recorded (the feed polls every 0.2 s; a stream
#: that ended reconnects after about 3 s).
LIVE_S = 20.0


def spec(folder: Path, name: str, api_base: str, body: str) -> Path:
    path = folder / f"{name}.yaml"
    header = f"""
    version: 1
    name: {name}
    model: {{id: openai/{name}, api_base: "{api_base}", api_key_env: FAKE_API_KEY}}
    """
    path.write_text(textwrap.dedent(header).lstrip() + textwrap.dedent(body), encoding="utf-8")
    return path


WRITES = """
goal: Write the weekly report.
tools:
  write_file: {paths: [out]}
autonomy: approve-writes
unattended: queue
"""
READS = """
goal: Summarise the notes.
tools:
  read_file: {paths: [notes]}
budgets: {max_steps: 5, max_tool_calls: 4, max_tokens: 20000, max_duration: 2m}
"""


@dataclass
class World:
    """The console, a browser logged in to it, and the fake model server behind the runs."""

    console: Console
    driver: Any
    server: FakeOpenAIServer | None  # None with the daemon's own test-double model
    folder: Path
    env: dict[str, str]

    def agentrun(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "runner", *args],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )

    @property
    def model(self) -> FakeOpenAIServer:
        assert self.server is not None
        return self.server

    def store(self) -> RunStore:
        return RunStore(self.console.home / "runs.db")

    def runs_of(self, agent: str) -> list[str]:
        store = self.store()
        try:
            return [row.id for row in store.runs(agent=agent)]
        finally:
            store.close()

    def open(self, path: str) -> None:
        self.driver.get(self.console.base + path)
        # A mark that a reload would erase: what changes later changed without one.
        self.driver.execute_script("window.agentrunMark = 'kept';")

    def not_reloaded(self) -> bool:
        return self.driver.execute_script("return window.agentrunMark") == "kept"

    def text(self, css: str) -> str:
        """The visible text of what ``css`` selects, read at once (a live swap may follow)."""
        script = "return [...document.querySelectorAll(arguments[0])].map(e => e.innerText)"
        return "\n".join(self.driver.execute_script(script, css))

    def act(self, css: str, keys: str | None = None) -> None:
        """Click (or type ``keys`` into) what ``css`` selects; again if a live swap replaced it."""
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.common.by import By

        for _ in range(20):
            try:
                element = self.driver.find_element(By.CSS_SELECTOR, css)
                if keys is None:
                    element.click()
                else:
                    element.send_keys(keys)
                return
            except StaleElementReferenceException:
                time.sleep(0.1)
        raise AssertionError(f"{css} kept being replaced")

    def until(self, what: str, check: Callable[[], bool], timeout_s: float = LIVE_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.1)
        logs = self.driver.get_log("browser")
        raise AssertionError(
            f"the page never showed {what} within {timeout_s} s; console: {logs}; "
            f"page: {self.text('main')[:2000]!r}"
        )

    def shot(self, name: str, at: str | None = None) -> None:
        """Save what the window shows as ``name``.png (scrolled to ``at`` first, if given)."""
        if at is not None:
            self.driver.execute_script("document.querySelector(arguments[0]).scrollIntoView()", at)
        folders = [Path(extra)] if (extra := os.environ.get("AGENTRUN_SCREENSHOTS")) else []
        if os.environ.get("AGENTRUN_UPDATE_SCREENSHOTS") == "1":
            folders.append(SHOTS)
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
            self.driver.save_screenshot(str(folder / f"{name}.png"))


def chromium() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1200,800",
        "--hide-scrollbars",
    ):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    pytest.importorskip("selenium", reason="needs selenium (the dev extra)")
    folder = tmp_path_factory.mktemp("console")
    home = folder / "home"
    for name in ("out", "notes"):
        (folder / name).mkdir()
    (folder / "notes" / "monday.md").write_text("Shipped the console pages.\n")
    old = os.environ.get("AGENTRUN_HOME")
    os.environ["AGENTRUN_HOME"] = str(home)
    try:
        for i in range(3):
            record(folder, home, TESTER, [text(f"done {i}")])
    finally:
        if old is None:
            del os.environ["AGENTRUN_HOME"]
        else:
            os.environ["AGENTRUN_HOME"] = old
    scripts = {
        "approver": [
            call(
                "write_file",
                {"path": "out/report.md", "content": "# Weekly report\n"},
                content="The report is ready; saving it to out/report.md.",
            ),
            text("Saved the weekly report to out/report.md."),
        ],
        "denier": [
            call(
                "write_file",
                {"path": "out/summary.md", "content": "short"},
                content="Saving the summary next to the report.",
            ),
            text("Understood: the summary goes to the wiki instead."),
        ],
        "reader": [
            slow(call("read_file", {"path": "notes/monday.md"}, content="Reading the notes."), 2),
            slow(text("Monday: the console pages shipped."), 2),
        ],
    }
    models = {name: (script, False) for name, script in scripts.items()}
    with FakeOpenAIServer([], models=models) as server:
        env = {**os.environ, "AGENTRUN_HOME": str(home), "FAKE_API_KEY": "sk-fake-000000"}
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


def row_ids(world: World) -> list[str]:
    return world.driver.execute_script(
        "return [...document.querySelectorAll('#runs tr[data-run]')].map(r => r.dataset.run)"
    )


def test_login_lands_on_the_runs_list_and_a_new_run_appears_without_reload(
    world: World,
) -> None:
    assert world.driver.current_url == world.console.base + "/"
    assert "Runs" in world.text("h1")
    world.open("/runs")
    shown = row_ids(world)
    assert len(shown) == 3 and world.text("#runs").count("completed") == 3
    world.shot("runs")
    new = record(world.folder, world.console.home, TESTER, [text("one more")])
    world.until("the new run in the list", lambda: row_ids(world)[:1] == [new])
    assert world.not_reloaded()


def test_the_runs_filters_are_a_get_form(world: World) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    world.open("/runs")
    Select(world.driver.find_element(By.NAME, "status")).select_by_value("waiting_approval")
    world.driver.find_element(By.CSS_SELECTOR, "form.filters button").click()
    world.until("the filtered list", lambda: "status=waiting_approval" in world.driver.current_url)
    assert "No runs match these filters" in world.text("#runs")


def test_a_run_timeline_grows_live_until_its_answer(world: World) -> None:
    reader = spec(world.folder, "reader", world.model.api_base, READS)
    process = subprocess.Popen(
        [sys.executable, "-m", "runner", "run", str(reader)],
        cwd=world.folder,
        env=world.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        world.until("the reader run in the store", lambda: bool(world.runs_of("reader")))
        [run_id] = world.runs_of("reader")
        world.open(f"/runs/{run_id}")
        assert "Run started" in world.text("#timeline")
        world.until("the model call", lambda: "Model call" in world.text("#timeline"))
        world.until("the tool call", lambda: "Tool call read_file" in world.text("#timeline"))
        # Budgets count while it runs (the run's totals are recorded at its end).
        assert "1 of 5" in world.text(".budgets") and "1 of 4" in world.text(".budgets")
        world.shot("run-live")
        world.until("the answer", lambda: "completed" in world.text("#run-status"))
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    assert world.not_reloaded()
    assert "Monday: the console pages shipped." in world.text("#answer")
    timeline = world.text("#timeline")
    assert "notes/monday.md" in timeline and "Run stopped: completed" in timeline
    budgets = world.text(".budgets")
    assert "2 of 5" in budgets and "1 of 4" in budgets and "30 of 20000" in budgets
    world.shot("run")
    world.shot("run-timeline", at=".timeline")


def paused(world: World, name: str) -> str:
    path = spec(world.folder, name, world.model.api_base, WRITES)
    ran = world.agentrun("run", str(path))
    assert ran.returncode == 5, ran.stderr
    [run_id] = world.runs_of(name)
    return run_id


def card(run_id: str) -> str:
    return f"article.approval[data-run='{run_id}']"


def test_approve_in_the_approvals_page_then_the_run_completes_live(world: World) -> None:
    world.open("/approvals")
    run_id = paused(world, "approver")
    # The queue is live: the new request appears without reload.
    world.until("the approval", lambda: run_id in world.text("#queue"))
    assert world.not_reloaded()
    shown = world.text(card(run_id))
    assert "write_file" in shown and "risk medium" in shown
    assert '"path": "out/report.md"' in shown
    assert "The report is ready; saving it to out/report.md." in shown
    world.shot("approvals")
    world.act(f"{card(run_id)} button.approve")
    world.until("the decision", lambda: "Approved" in world.text("#message"))
    assert world.driver.current_url.startswith(world.console.base + "/approvals?")
    assert run_id not in world.text("#queue")
    world.shot("approved")
    store = world.store()
    try:
        [approval] = store.approvals(run_id, status=None)
    finally:
        store.close()
    assert approval["status"] == "approved"
    assert approval["decided_by"] == "console:console@127.0.0.1"

    world.open(f"/runs/{run_id}")
    assert "waiting_approval" in world.text("#run-status")
    assert "Approved" in world.text("#timeline") and "console:console@127.0.0.1" in world.text(
        "#timeline"
    )
    resumed = world.agentrun("resume", run_id)
    assert resumed.returncode == 0, resumed.stderr
    world.until("the run completed", lambda: "completed" in world.text("#run-status"))
    assert world.not_reloaded()
    assert "Saved the weekly report" in world.text("#answer")
    assert (world.folder / "out" / "report.md").read_text() == "# Weekly report\n"
    world.shot("run-approved")


def test_deny_with_a_reason_reaches_the_model(world: World) -> None:
    run_id = paused(world, "denier")
    world.open("/approvals")
    world.act(f"{card(run_id)} input[name=reason]", "Summaries go to the wiki, not the repo.")
    world.act(f"{card(run_id)} button.deny")
    world.until("the denial", lambda: "Denied" in world.text("#message"))
    world.shot("denied")
    resumed = world.agentrun("resume", run_id)
    assert resumed.returncode == 0, resumed.stderr
    asked = [r for r in world.model.requests if r.get("model") == "denier"]
    tool_message = asked[-1]["messages"][-1]
    assert tool_message["role"] == "tool"
    assert tool_message["content"] == (
        "error: a person denied this call of write_file: Summaries go to the wiki, not the repo."
    )
    assert not (world.folder / "out" / "summary.md").exists()
    world.open(f"/runs/{run_id}")
    assert "Denied" in world.text("#timeline")
    assert "Summaries go to the wiki" in world.text("#timeline")


def test_a_second_decision_is_refused_with_a_message(world: World) -> None:
    [run_id] = world.runs_of("approver")
    store = world.store()
    try:
        [approval] = store.approvals(run_id, status=None)
    finally:
        store.close()
    cookies = {c["name"]: c["value"] for c in world.driver.get_cookies()}
    with httpx.Client(base_url=world.console.base, cookies=cookies) as client:
        answer = client.post(
            f"/approvals/{run_id}/{approval['call_id']}",
            data={"decision": "deny", "reason": "too late", "csrf": cookies["csrf"]},
        )
        assert answer.status_code == 303
        page = client.get(answer.headers["location"])
        assert "was already decided" in page.text
        forged = client.post(
            f"/approvals/{run_id}/{approval['call_id']}", data={"decision": "deny"}
        )
        assert forged.status_code == 403


def test_agents_and_daemon_pages_say_no_daemon_runs(world: World) -> None:
    for path in ("/agents", "/daemon"):
        world.open(path)
        assert "No daemon is running" in world.text("#no-daemon")
    world.shot("daemon")


def test_the_pages_load_no_inline_or_foreign_script(world: World) -> None:
    world.open("/runs")
    sources = world.driver.execute_script(
        "return [...document.scripts].map(s => [s.src, s.textContent.trim().length])"
    )
    assert sources and all(
        src.startswith(world.console.base + "/static/") and inline == 0 for src, inline in sources
    )
    assert world.driver.execute_script("return typeof htmx") == "object"
    world.driver.get_log("browser")  # start from here
    for path in ("/runs", f"/runs/{world.runs_of('reader')[0]}", "/approvals", "/daemon"):
        world.open(path)
        time.sleep(0.5)
    refused = [
        e for e in world.driver.get_log("browser") if "Content Security Policy" in e["message"]
    ]
    assert not refused, "the pages break their own CSP"


def test_what_a_run_recorded_is_shown_as_text_never_as_markup(world: World) -> None:
    markup = '<img src="x" id="injected"><script>window.injected = 1</script>'
    run_id = record(world.folder, world.console.home, TESTER, [text(markup)])
    world.open(f"/runs/{run_id}")
    assert world.text("#answer") == markup
    assert world.driver.execute_script(
        "return [document.getElementById('injected'), window.injected ?? null]"
    ) == [None, None]


# ---------------------------------------------------------------------------------------------
# served by the daemon


@pytest.fixture(scope="module")
def daemon_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    pytest.importorskip("selenium", reason="needs selenium (the dev extra)")
    from tests.helpers import wait_for, write_spec
    from tests.test_daemon import DaemonProcess, free_port
    from tests.test_daemon_http import AGENTS, BROKEN

    root = tmp_path_factory.mktemp("console-daemon")
    agents, home = root / "agents", root / "home"
    agents.mkdir()
    home.mkdir()
    (agents / "inbox").mkdir()
    for name in ("echo", "writer"):
        write_spec(agents, AGENTS[name], name=f"{name}.yaml")
    (agents / "broken.yaml").write_text(BROKEN)
    daemon = DaemonProcess(agents, home, "--http", f"127.0.0.1:{free_port()}")
    driver = None
    try:
        url = wait_for(
            lambda: (home / "daemon.url").exists() and (home / "daemon.url").read_text().strip(),
            "the daemon's URL file",
        )
        token = (home / "console.token").read_text().strip()
        console = Console(daemon.process, url, f"{url}/login?token={token}", token, home)
        driver = chromium()
        driver.get(console.login)
        yield World(console, driver, None, root, daemon.env)
    finally:
        if driver is not None:
            driver.quit()
        if daemon.process.poll() is None:
            daemon.stop()


def test_with_a_daemon_the_agents_and_daemon_pages_show_its_specs(daemon_world: World) -> None:
    world = daemon_world
    world.open("/agents")
    agents = world.text("table.agents")
    assert "echo" in agents and "writer" in agents and "manual" in agents
    assert "broken.yaml" in agents and "max_steps" in agents  # its located error
    assert not world.text("#no-daemon")
    world.shot("agents")
    world.open("/daemon")
    assert "process" in world.text("main") and "broken.yaml" in world.text("main")
    world.shot("daemon-running")


def test_with_a_daemon_an_approval_in_the_page_continues_the_run_by_itself(
    daemon_world: World,
) -> None:
    world = daemon_world
    headers = {"Authorization": f"Bearer {world.console.token}"}
    with httpx.Client(base_url=world.console.base, headers=headers, timeout=60) as client:
        started = client.post("/api/v1/agents/writer/runs", json={})
        assert started.status_code in (200, 201, 202), started.text
        run_id = started.json()["run_id"]
    world.open("/approvals")

    def asked() -> bool:
        store = world.store()
        try:
            return bool(store.approvals(run_id))
        finally:
            store.close()

    logs = sorted(world.folder.glob("daemon-*.log"))
    world.until("a pending approval in the store", asked, timeout_s=60)
    assert logs, "no daemon log"
    world.until("the writer's approval", lambda: run_id in world.text("#queue"))
    world.act(f"{card(run_id)} button.approve")
    world.until("the decision", lambda: "Approved" in world.text("#message"))
    world.open(f"/runs/{run_id}")
    # No `agentrun resume`: the daemon continues the run, and its page shows it end.
    world.until("the run completed", lambda: "completed" in world.text("#run-status"))
    assert world.not_reloaded()
    assert "done: write a reply" in world.text("#answer")
    world.shot("run-daemon")


def test_with_a_daemon_run_now_starts_a_run_with_typed_inputs(daemon_world: World) -> None:
    world = daemon_world
    form = "#run-now-echo"
    world.open("/agents")
    world.act(f"{form} input[name='input.title']", "weekly <notes>")
    world.act(f"{form} input[name='input.count']", "many")
    world.act(f"{form} button[type=submit]")
    # Refused with the same message as `agentrun trigger --input count=many`.
    world.until("the refusal", lambda: "count" in world.text("#message"))
    assert "integer" in world.text("#message")
    world.act(f"{form} input[name='input.title']", "weekly <notes>")
    world.act(f"{form} input[name='input.count']", "3")
    world.shot("run-now")
    world.act(f"{form} button[type=submit]")
    world.until("a run's page or the runs", lambda: "/runs" in world.driver.current_url)
    if "/runs/" not in world.driver.current_url:  # not started within 5 s: the live list
        world.until("the echo run", lambda: "echo" in world.text("#runs tr[data-run]"))
        world.act("#runs tr[data-run] a")
    world.until("the run completed", lambda: "completed" in world.text("#run-status"))
    assert world.text("#answer") == "done: echo weekly <notes> 3"
