"""Heavy imports stay off the start-up path: litellm only when a model is called."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PROBE = """
import sys
from pathlib import Path
import runner.cli
try:
    runner.cli.main({argv!r})
except SystemExit:
    pass
heavy = [m for m in {modules!r} if m in sys.modules]
print("HEAVY=" + ",".join(heavy))
"""


HEAVY = ("litellm", "llama_cpp", "cyllama", "openai", "httpx", "mcp", "watchdog", "psycopg")


def imported_after(argv: list[str], modules: tuple[str, ...] = HEAVY) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=argv, modules=modules)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    line = next(x for x in result.stdout.splitlines() if x.startswith("HEAVY="))
    return [m for m in line.removeprefix("HEAVY=").split(",") if m]


def test_importing_runner_and_its_cli_does_not_import_litellm() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, runner, runner.cli, runner.spec; print('litellm' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["validate", "agents/"],
        ["explain", "agents/hello.yaml"],
        ["schema"],
        ["run", "--help"],
    ],
)
def test_light_commands_import_no_heavy_module(argv: list[str]) -> None:
    assert imported_after(argv) == []


def test_validate_imports_only_what_the_specs_need() -> None:
    # agents/ has cron triggers in the plain grammar ("0 6 * * 1-5", "*/30 * * * *"): no
    # croniter; and none of the daemon's watch, webhook or concurrency machinery.
    unneeded = (
        "croniter",
        "runner.triggers.watch",
        "runner.triggers.webhook",
        "runner.triggers.concurrency",
        "runner.daemon.lifecycle",
        "runner.store",
    )
    assert imported_after(["validate", "agents/"], unneeded) == []
    # A restricted day of the month: croniter searches for a date that matches.
    never = "tests/spec_corpus/cron_never_fires.yaml"
    assert imported_after(["validate", never], ("croniter",)) == ["croniter"]


#: The HTTP stack: only `agentrun console` (and, later, the daemon's server) loads it; and
#: notifications (Apprise takes about 0.4 s to import, and the links' signer), only when a
#: spec's `notify:` or the daemon's `--notify` sends something.
WEB = (
    "fastapi",
    "uvicorn",
    "starlette",
    "runner.web",
    "apprise",
    "itsdangerous",
    "runner.notify",
)


@pytest.mark.parametrize(
    "argv", [["--help"], ["run", "--help"], ["console", "--help"], ["validate", "agents/"]]
)
def test_the_web_stack_stays_off_the_cli_path(argv: list[str]) -> None:
    assert imported_after(argv, WEB) == []


def test_a_run_does_not_import_the_web_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runner.testing import FakeOpenAIServer, text

    with FakeOpenAIServer([text("done")]) as server:
        spec = tmp_path / "spec.yaml"
        spec.write_text(
            "version: 1\nname: plain\n"
            f'model: {{id: openai/fake, api_base: "{server.api_base}", api_key_env: FAKE_KEY}}\n'
            "goal: Say done.\n",
            encoding="utf-8",
        )
        monkeypatch.setenv("FAKE_KEY", "sk-fake-000000")
        assert imported_after(["run", "-q", str(spec)], WEB) == []
        assert len(server.requests) == 1  # the run did call the model


def test_importing_runner_does_not_import_the_web_stack() -> None:
    probe = "import sys, runner, runner.cli; print([m for m in {!r} if m in sys.modules])"
    result = subprocess.run(
        [sys.executable, "-c", probe.format(WEB)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    assert result.stdout.strip() == "[]"


def test_a_run_with_the_sqlite_store_does_not_import_psycopg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """psycopg only when a PostgreSQL store is opened (AGENTRUN_STORE=postgresql://...)."""
    from runner.testing import FakeOpenAIServer, text

    with FakeOpenAIServer([text("done")]) as server:
        spec = tmp_path / "spec.yaml"
        spec.write_text(
            "version: 1\nname: plain\n"
            f'model: {{id: openai/fake, api_base: "{server.api_base}", api_key_env: FAKE_KEY}}\n'
            "goal: Say done.\n",
            encoding="utf-8",
        )
        monkeypatch.setenv("FAKE_KEY", "sk-fake-000000")
        assert imported_after(["run", "-q", str(spec)], ("psycopg",)) == []
        assert len(server.requests) == 1
    assert imported_after(["runs"], ("psycopg", "runner.store.postgres")) == []


QUEUE_SPEC = """\
version: 1
name: triage
model: openai/test-double
inputs:
  title: {type: string}
goal: "triage {{ title }}"
triggers:
  - queue: {stream: tickets, url: "redis://127.0.0.1:9/0", inputs: {title: title}}
"""


def test_redis_is_imported_only_by_a_queue_trigger_s_consumer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """validate and explain of a spec with a queue trigger import no redis or tenacity, and
    neither does a daemon that loaded it: its consumer thread does, once it starts."""
    queue_modules = ("redis", "tenacity", "runner.daemon.queueing", "runner.triggers.queue")
    folder = tmp_path / "agents"
    folder.mkdir()
    (folder / "triage.yaml").write_text(QUEUE_SPEC, encoding="utf-8")
    spec = str(folder / "triage.yaml")
    assert imported_after(["validate", spec], queue_modules) == []
    assert imported_after(["explain", spec], queue_modules) == []
    probe = (
        "import sys; from pathlib import Path; from runner.daemon.lifecycle import Daemon;"
        f"d = Daemon([Path({str(folder)!r})], Path({str(tmp_path / 'home')!r})); d.rescan();"
        "print(sorted(d.queues.watched), [m for m in ('redis', 'tenacity') if m in sys.modules])"
    )
    monkeypatch.setenv("AGENTRUN_HOME", str(tmp_path / "home"))
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    assert result.stdout.strip() == "['triage'] []", result.stderr


#: The Celery executor's stack: only `agentrun worker` and `agentrun daemon --executor celery`.
CELERY = ("celery", "kombu", "billiard", "redis", "runner.daemon.celery_worker")


@pytest.mark.parametrize(
    "argv", [["--help"], ["run", "--help"], ["worker", "--help"], ["daemon", "--help"]]
)
def test_the_celery_stack_stays_off_the_cli_path(argv: list[str]) -> None:
    assert imported_after(argv, CELERY) == []


def test_a_run_and_a_local_daemon_do_not_import_celery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runner.testing import FakeOpenAIServer, text

    with FakeOpenAIServer([text("done")]) as server:
        spec = tmp_path / "spec.yaml"
        spec.write_text(
            "version: 1\nname: plain\n"
            f'model: {{id: openai/fake, api_base: "{server.api_base}", api_key_env: FAKE_KEY}}\n'
            "goal: Say done.\n",
            encoding="utf-8",
        )
        monkeypatch.setenv("FAKE_KEY", "sk-fake-000000")
        assert imported_after(["run", "-q", str(spec)], CELERY) == []
    # The daemon's own modules with the local executor (the Celery executor's module is
    # imported, its libraries only when it is made).
    probe = (
        "import sys, asyncio; from pathlib import Path; from runner.daemon.lifecycle import Daemon;"
        f"d = Daemon([Path({str(tmp_path)!r})], Path({str(tmp_path / 'home')!r}));"
        "print(type(d.executor).__name__, [m for m in {!r} if m in sys.modules])"
    )
    monkeypatch.setenv("AGENTRUN_HOME", str(tmp_path / "home"))
    result = subprocess.run(
        [sys.executable, "-c", probe.format(CELERY[:3])],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    assert result.stdout.strip() == "LocalExecutor []", result.stderr
