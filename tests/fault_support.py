"""The fault test's cluster (tests/test_fault_cluster.py): its model, its agents, and the
daemon and worker processes it kills with SIGKILL and starts again.

``model`` (AGENTRUN_MODEL_FACTORY=tests.fault_support:model): three calls of the low-risk
tool ``tests.kill_tools:mark``, each with a fresh UUID token, then an answer. The token is
recorded in the call's arguments, so each side-effect line names its run and call id.

Every process runs in a session of its own, so ``kill -9`` of its process group reaches a
worker's pool processes too. Each start of a daemon gets a fresh AGENTRUN_HOME (an
*incarnation*): its lease holder (``host:home``) is new, so a restarted leader never takes
its old lease back at once, and every change of leader raises the lease's term.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

from runner.testing import FunctionModel, Scripted, call, text

ROOT = Path(__file__).resolve().parent.parent

#: The calls of ``mark`` one run makes before its answer.
MARKS = 3

#: The agents, by the trigger that fires them (the cron agent fires every minute).
AGENTS = {
    "manual": "- manual: true",
    "webhook": "- webhook: {secret_env: WEBHOOK_SECRET}",
    "queue": "- queue: {stream: faults, claim_after: 3s}",
    "cron": "- cron: '* * * * *'",
}

WEBHOOK_SECRET = "fault-test-secret"


def model(spec: Any) -> FunctionModel:
    """``mark`` three times (a fresh token each), then answer."""

    def respond(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Scripted:
        done = sum(1 for m in messages if m["role"] == "tool")
        if done < MARKS:
            return call("mark", {"token": uuid.uuid4().hex})
        return text(f"{MARKS} marks made")

    return FunctionModel(respond)


def write_agents(folder: Path) -> None:
    """One spec per trigger kind of :data:`AGENTS` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for kind, trigger in AGENTS.items():
        body = f"""
            version: 1
            name: {kind}-agent
            model: openai/test-double
            goal: mark three times
            concurrency: allow
            tools:
              functions:
                mark: {{function: "tests.kill_tools:mark", risk: low}}
            triggers:
              {trigger}
            """
        (folder / f"{kind}.yaml").write_text(textwrap.dedent(body))


class Member:
    """One process of the cluster (a daemon or a worker), started again after each kill.

    Attributes:
        kind: ``daemon`` or ``worker``.
        slot: its place in the cluster (``daemon-0``, ``worker-2``).
        incarnation: how many times it was started (1 for the first).
        process: the current incarnation's process.
    """

    def __init__(self, kind: str, slot: str, root: Path, env: dict[str, str]) -> None:
        self.kind, self.slot, self.root, self.env = kind, slot, root, env
        self.incarnation = 0
        self.logs: list[Path] = []
        self.start()

    def command(self) -> list[str]:
        raise NotImplementedError

    def extra_env(self) -> dict[str, str]:
        return {}

    def start(self) -> None:
        """Start a new incarnation (not waiting for it to be ready)."""
        self.incarnation += 1
        log_path = self.root / f"{self.slot}-{self.incarnation}.log"
        self.logs.append(log_path)
        with log_path.open("w") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=ROOT,
                env={**self.env, **self.extra_env()},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.process.poll() is None

    def ready(self) -> bool:
        raise NotImplementedError

    def output(self) -> str:
        return self.logs[-1].read_text() if self.logs else ""

    def kill9(self) -> int:
        """SIGKILL the incarnation's whole process group; its pid (= its process group id)."""
        pid = self.process.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        return pid

    def stop(self) -> None:
        if self.alive():
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


class Daemon(Member):
    """``agentrun daemon --executor celery --lease-ttl TTL --http 127.0.0.1:PORT``."""

    def __init__(
        self, slot: str, root: Path, env: dict[str, str], agents: Path, port: int, ttl: float
    ) -> None:
        self.agents, self.port, self.ttl = agents, port, ttl
        super().__init__("daemon", slot, root, env)

    @property
    def home(self) -> Path:
        return self.root / f"{self.slot}-home-{self.incarnation}"

    @property
    def holder(self) -> str:
        """Its lease holder name (as runner.daemon.leadership writes it)."""
        return f"{os.uname().nodename}:{self.home}"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "runner",
            "daemon",
            str(self.agents),
            "--grace",
            "1",
            "--executor",
            "celery",
            "--lease-ttl",
            str(self.ttl),
            "--http",
            f"127.0.0.1:{self.port}",
        ]

    def extra_env(self) -> dict[str, str]:
        self.home.mkdir(parents=True, exist_ok=True)
        return {"AGENTRUN_HOME": str(self.home), "WEBHOOK_SECRET": WEBHOOK_SECRET}

    def ready(self) -> bool:
        return self.alive() and (self.home / "daemon.sock").exists()


class Worker(Member):
    """``agentrun worker --concurrency 1 --hostname SLOT-N@fault``."""

    def __init__(self, slot: str, root: Path, env: dict[str, str]) -> None:
        super().__init__("worker", slot, root, env)

    @property
    def hostname(self) -> str:
        return f"{self.slot}-{self.incarnation}@fault"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "runner",
            "worker",
            "--concurrency",
            "1",
            "--model-path",
            "direct",
            "--hostname",
            self.hostname,
        ]

    def ready(self) -> bool:
        return self.alive() and f"{self.hostname} ready." in self.output()


def side_effects(path: Path) -> list[tuple[str, int, int, float]]:
    """The lines ``mark`` appended: ``(token, pid, process group id, Unix seconds)`` each."""
    if not path.exists():
        return []
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    return [(token, int(pid), int(group), float(at)) for token, pid, group, at in lines]


def in_flight_violations(
    calls: dict[str, tuple[str, float]],
    lines: list[tuple[str, int, int, float]],
    killed: set[int],
) -> tuple[list[str], int]:
    """Where the side effects break the in-flight rule; and the cut-off attempts counted.

    Args:
        calls: token -> (status of the call's newest tool_calls row, its ``created_at`` in
            Unix seconds: when the attempt that recorded it began, rounded down to the ms).
        lines: the side effects (:func:`side_effects`).
        killed: the process groups killed with SIGKILL.

    The rule (runner/resume.py; docs/concepts/triggers.md, the executor's delivery): a call
    whose result was recorded (``ok``/``error``) never runs again, and a low-risk call cut
    off before its result was recorded runs again on resume. So a completed call has exactly
    one line at or after its ``created_at``, every earlier line from a killed process group;
    a call not completed only lines of killed process groups; no process executes a call
    twice; every line belongs to a recorded call.
    """
    by_token: dict[str, list[tuple[int, int, float]]] = {}
    for token, pid, group, at in lines:
        by_token.setdefault(token, []).append((pid, group, at))
    wrong = [
        f"side effect of a call the store never recorded: {t}" for t in by_token if t not in calls
    ]
    cut_offs = 0
    for token, (status, began) in calls.items():
        done = by_token.get(token, [])
        where = f"{token} ({status}, began {began:.3f}): lines {done}"
        pids = [pid for pid, _, _ in done]
        if len(set(pids)) != len(pids):
            wrong.append("one process executed a call twice: " + where)
        if status in ("ok", "error"):
            recorded = [line for line in done if line[2] >= began]
            cut_off = [line for line in done if line[2] < began]
            if len(recorded) != 1:
                wrong.append(f"a completed call executed {len(recorded)} times: " + where)
            if any(group not in killed for _, group, _ in cut_off):
                wrong.append("an attempt before the recorded one was not killed: " + where)
            cut_offs += len(cut_off)
        elif any(group not in killed for _, group, _ in done):
            wrong.append("a call never completed ran in a worker not killed: " + where)
    return wrong, cut_offs
