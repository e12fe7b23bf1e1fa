"""SIGKILL at random points: resume completes every run, and no completed call repeats."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

from runner.store import RunStore, new_run_id
from tests.conftest import ROOT
from tests.helpers import write_spec

KILLS = 50


def worker(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.kill_worker", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigkill_at_random_points(tmp_path: Path) -> None:
    rng = random.Random(20261121)
    spec = write_spec(
        tmp_path,
        """
        version: 1
        name: kill-test
        model: openai/never-called
        goal: Append the lines.
        tools:
          functions:
            append_line: {function: "tests.kill_tools:append_line", risk: medium}
        autonomy: autonomous
        unattended: queue
        budgets: {max_steps: 30}
        """,
    )
    home = tmp_path / "home"
    base_env = {**os.environ, "AGENTRUN_HOME": str(home), "PYTHONPATH": str(ROOT)}
    reruns_denied = interrupted = 0
    for attempt in range(KILLS):
        run_id = new_run_id()
        lines = tmp_path / f"lines-{attempt}.txt"
        env = {**base_env, "KILL_TEST_FILE": str(lines)}
        process = worker(["run", str(spec), run_id], env)
        time.sleep(rng.uniform(0.05, 1.2))  # where the kill lands, not an assertion
        process.kill()
        process.communicate()
        store = RunStore(home / "runs.db")
        killed_row = store.run(run_id)
        if killed_row is not None and killed_row.stop_reason != "completed":
            interrupted += 1
        if store.run(run_id) is None:
            # Killed before the run was recorded: then nothing can have happened yet.
            assert not lines.exists() or lines.read_text() == ""
            process = worker(["run", str(spec), run_id], env)
            process.communicate()
        for _ in range(12):
            row = store.run(run_id)
            assert row is not None, f"run {run_id} was lost"
            if row.stop_reason == "completed":
                break
            if row.status == "waiting_approval" and store.approvals(run_id):
                # The in-flight call may have partly happened: refuse to run it again.
                denied = subprocess.run(
                    [sys.executable, "-m", "runner", "deny", run_id, "--reason", "maybe done"],
                    cwd=ROOT,
                    env=env,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                assert denied.returncode == 0, denied.stderr
                reruns_denied += 1
            process = worker(["resume", run_id], env)
            if rng.random() < 0.3:  # sometimes kill the resumed run too
                time.sleep(rng.uniform(0.05, 0.8))
                process.kill()
            process.communicate()
        row = store.run(run_id)
        assert row is not None and row.stop_reason == "completed", (attempt, row)
        written = lines.read_text().splitlines() if lines.exists() else []
        completed = [
            t
            for t in store.tool_calls(run_id)
            if t["status"] == "ok" and t["tool"] == "append_line"
        ]
        for call in completed:
            line = call["result"].removeprefix("appended ")
            assert written.count(line) == 1, (attempt, line, written)
        assert len(written) == len(set(written)), (attempt, written)
        assert [m for m in store.messages(run_id) if m["role"] == "tool"], attempt
        store.close()
    store = RunStore(home / "runs.db")
    rows = store.db.execute("SELECT count(*), sum(stop_reason = 'completed') FROM runs").fetchone()
    assert tuple(rows) == (KILLS, KILLS)
    # The kills did land mid-run (not all before or after it).
    assert interrupted > 0
    print(f"{interrupted} runs interrupted mid-way, {reruns_denied} in-flight calls asked again")
