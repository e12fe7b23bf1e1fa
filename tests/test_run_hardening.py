"""Limits held by the process that runs the loop, an owner-only home, and resumes that neither
lose the model's words nor repeat a side effect (issue 16, items 1, 2, 4, 5, 6 and 7)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.compiler import compile_agent
from runner.events import StopReason
from runner.loop import run_agent
from runner.resume import IN_FLIGHT_NOTE, restore_state
from runner.spec import load_spec
from runner.store import ResumeClaimed, RunStore, new_run_id
from runner.testing import FunctionModel, Scripted, ScriptedModel, call, text
from tests.conftest import ROOT
from tests.helpers import wait_for, write_spec
from tests.test_kill import worker

TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
#: Bounds a subprocess that should end by itself: a stuck test fails instead of hanging.
PROCESS_LIMIT_S = 120


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def silent_server() -> Iterator[str]:
    """An address that accepts connections and never answers: a hung provider."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    listener.close()


class HungModel(ScriptedModel):
    """A model whose call never returns."""

    async def complete(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(3600)
        return await super().complete(*args, **kwargs)


def hung_model_spec(folder: Path, api_base: str, budgets: str = "") -> Path:
    return write_spec(
        folder,
        f"""
        version: 1
        name: hung
        model:
          id: openai/hung
          api_base: {api_base}
          api_key_env: FAKE_API_KEY
          timeout: 3600          # the provider's own limit is no help here
        goal: Say hello.
        {budgets}
        """,
    )


def cli(args: list[str], home: Path, **popen: Any) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "AGENTRUN_HOME": str(home),
        "FAKE_API_KEY": "not-a-real-key",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "runner", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def running_run(home: Path) -> str:
    """The id of the one run recorded as running in ``home``, once there is one."""

    def find() -> str | None:
        if not (home / "runs.db").exists():
            return None
        store = RunStore(home / "runs.db")
        try:
            rows = store.runs(status="running")
            return rows[0].id if rows else None
        finally:
            store.close()

    return str(wait_for(find, "a running run"))


# -- item 1: max_duration bounds a model call in flight -----------------------------------


def test_max_duration_stops_a_hung_model_call_in_the_loop(tmp_path: Path) -> None:
    spec = load_spec(
        hung_model_spec(tmp_path, "http://127.0.0.1:9/v1", "budgets: {max_duration: 1}")
    )
    model = HungModel([text("too late")])
    store = RunStore(tmp_path / "runs.db")
    finished = asyncio.run(
        asyncio.wait_for(run_agent(compile_agent(spec), model, store=store), PROCESS_LIMIT_S)
    )
    assert finished.stop_reason is StopReason.MAX_DURATION
    assert "max_duration" in finished.message
    row = store.run(finished.run_id)
    assert row is not None and row.stop_reason == "max_duration"


def test_agentrun_run_stops_a_hung_provider_at_max_duration(
    tmp_path: Path, silent_server: str
) -> None:
    spec = hung_model_spec(tmp_path, silent_server, "budgets: {max_duration: 2}")
    home = tmp_path / "home"
    process = cli(["run", str(spec)], home)
    try:
        _, err = process.communicate(timeout=PROCESS_LIMIT_S)
    finally:
        process.kill()
    assert process.returncode == 6, err  # timed out
    store = RunStore(home / "runs.db")
    [row] = store.runs()
    assert row.stop_reason == "max_duration"
    assert "max_duration" in err


def test_time_waiting_for_a_person_does_not_count_toward_max_duration(tmp_path: Path) -> None:
    """The deadline is lifted while the approver is asked, as the budget's clock is."""
    (tmp_path / "out").mkdir()
    spec = load_spec(
        write_spec(
            tmp_path,
            """
            version: 1
            name: slow-person
            model: openai/scripted
            goal: Write it.
            tools:
              write_file: {paths: [out]}
            autonomy: approve-writes
            budgets: {max_duration: 1}
            """,
        )
    )

    class SlowPerson:
        name = "slow-person"

        async def request(self, request: Any) -> Any:
            from runner.policy import Approval

            await asyncio.sleep(1.5)  # longer than max_duration: it must not count
            return Approval(True, "fine")

    model = ScriptedModel([call("write_file", {"path": "out/a.txt", "content": "x"}), text("done")])
    finished = asyncio.run(run_agent(compile_agent(spec), model, approver=SlowPerson()))
    assert finished.stop_reason is StopReason.COMPLETED, finished.message
    assert (tmp_path / "out" / "a.txt").read_text() == "x"


# -- item 2: SIGTERM, SIGINT and SIGHUP cancel a run, recorded and resumable ---------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_to_agentrun_run_cancels_the_run(
    tmp_path: Path, silent_server: str, signum: signal.Signals
) -> None:
    spec = hung_model_spec(tmp_path, silent_server)
    home = tmp_path / "home"
    process = cli(["run", str(spec)], home)
    try:
        run_id = running_run(home)
        process.send_signal(signum)
        _, err = process.communicate(timeout=PROCESS_LIMIT_S)
    finally:
        process.kill()
    assert process.returncode == 6, err
    store = RunStore(home / "runs.db")
    row = store.run(run_id)
    assert row is not None
    assert (row.status, row.stop_reason) == ("finished", "cancelled")
    assert row.ended_at is not None
    assert row.resumable


# -- item 4: everything in AGENTRUN_HOME is owner-only ------------------------------------


def test_the_store_is_created_owner_only_in_a_loose_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    home = tmp_path / "loose-home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    monkeypatch.setenv("AGENTRUN_HOME", str(home))
    old_umask = os.umask(0o022)
    try:
        with caplog.at_level(logging.WARNING, logger="agentrun"):
            store = RunStore.default()
            store.db.execute("INSERT INTO notices (at, level, message) VALUES ('t', 'info', 'x')")
    finally:
        os.umask(old_umask)
    assert mode(home) == 0o700
    for name in ("runs.db", "runs.db-wal", "runs.db-shm"):
        assert (home / name).exists(), name
        assert mode(home / name) == 0o600, name
    assert any(str(home) in message and "0755" in message for message in caplog.messages)
    store.close()


def test_a_store_found_readable_by_others_is_tightened_with_a_notice(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "store" / "runs.db"
    RunStore(path).close()
    for name in ("runs.db", "runs.db-wal", "runs.db-shm"):
        if (path.parent / name).exists():
            os.chmod(path.parent / name, 0o644)
    os.chmod(path.parent, 0o755)
    with caplog.at_level(logging.WARNING, logger="agentrun"):
        RunStore(path).close()
    assert mode(path.parent) == 0o700
    assert mode(path) == 0o600
    assert any("runs.db" in message and "0644" in message for message in caplog.messages)


def test_a_store_put_in_a_shared_sticky_folder_leaves_the_folder_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AGENTRUN_STORE=sqlite:////tmp/runs.db once made /tmp itself 0700 (every other user
    locked out of it): a shared folder with the sticky bit is never tightened."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    monkeypatch.setenv("AGENTRUN_STORE", f"sqlite:///{shared}/runs.db")
    RunStore.default().close()
    assert stat.S_IMODE((shared).stat().st_mode) == 0o1777
    assert mode(shared / "runs.db") == 0o600


# -- item 5: a paused call resumes with exactly the arguments the model sent ---------------


def paused_write(tmp_path: Path) -> tuple[RunStore, Any, str]:
    """A run paused on a write_file whose content holds a token; (store, spec, run id)."""
    (tmp_path / "out").mkdir()
    spec = load_spec(
        write_spec(
            tmp_path,
            """
            version: 1
            name: secret-writer
            model: openai/scripted
            goal: Write the config.
            tools:
              write_file: {paths: [out]}
            autonomy: approve-writes
            unattended: queue
            """,
        )
    )
    store = RunStore(tmp_path / "runs.db")
    model = ScriptedModel(
        [call("write_file", {"path": "out/config.txt", "content": f"token: {TOKEN}\n"})]
    )
    finished = asyncio.run(run_agent(compile_agent(spec), model, store=store))
    assert finished.stop_reason is StopReason.WAITING_APPROVAL
    return store, spec, finished.run_id


def test_an_approved_paused_call_writes_the_real_value_and_the_record_stays_clean(
    tmp_path: Path,
) -> None:
    store, spec, run_id = paused_write(tmp_path)
    assert store.decide(run_id, None, True, "ok") == 1
    store.claim_for_resume(run_id)
    model = ScriptedModel([text("written")])
    finished = asyncio.run(
        run_agent(
            compile_agent(spec),
            model,
            store=store,
            run_id=run_id,
            resume=restore_state(store, run_id),
        )
    )
    assert finished.stop_reason is StopReason.COMPLETED, finished.message
    assert (tmp_path / "out" / "config.txt").read_text() == f"token: {TOKEN}\n"
    # The resumed model is given back its own words, not the masked record of them.
    sent = json.dumps(model.requests[0][0])
    assert TOKEN in sent and "[REDACTED]" not in sent
    # Nothing readable in the store or its export holds the token...
    assert TOKEN not in json.dumps(store.export(run_id))
    assert TOKEN not in json.dumps(store.messages(run_id))
    # ...and once the run can no longer be resumed, its sealed form is gone too.
    assert store.sealed_messages(run_id) == {}
    store.close()
    for name in ("runs.db", "runs.db-wal"):
        if (tmp_path / name).exists():
            assert TOKEN.encode() not in (tmp_path / name).read_bytes(), name


def test_sealed_messages_are_encrypted_and_bound_to_their_place(tmp_path: Path) -> None:
    store, _, run_id = paused_write(tmp_path)
    rows = store.db.execute(
        "SELECT seq, nonce, ciphertext FROM sealed_messages WHERE run_id = ?", (run_id,)
    ).fetchall()
    assert rows, "the assistant message with the token was not sealed"
    assert all(TOKEN.encode() not in row["ciphertext"] for row in rows)
    opened = store.sealed_messages(run_id)
    assert any(TOKEN in json.dumps(message) for message in opened.values())
    # A row moved to another place does not open; a lost key is a clear error.
    store.db.execute("UPDATE sealed_messages SET seq = seq + 100 WHERE run_id = ?", (run_id,))
    with pytest.raises(Exception, match="does not open"):
        store.sealed_messages(run_id)
    store.db.execute("UPDATE sealed_messages SET seq = seq - 100 WHERE run_id = ?", (run_id,))
    (tmp_path / "seal.key").unlink()
    with pytest.raises(Exception, match="missing"):
        RunStore(tmp_path / "runs.db").sealed_messages(run_id)
    assert mode(tmp_path / "runs.db") == 0o600


# -- item 6: a call cut off after its approval asks again --------------------------------


def kill_spec(tmp_path: Path, function: str) -> Path:
    return write_spec(
        tmp_path,
        f"""
        version: 1
        name: kill-approved
        model: openai/never-called
        goal: Append the lines.
        tools:
          functions:
            append_line: {{function: "{function}", risk: medium}}
        autonomy: approve-writes
        unattended: queue
        budgets: {{max_steps: 10}}
        """,
    )


def test_sigkill_during_an_approved_call_then_resume_asks_again(tmp_path: Path) -> None:
    spec = kill_spec(tmp_path, "tests.kill_tools:append_then_hang")
    home, lines = tmp_path / "home", tmp_path / "lines.txt"
    env = {
        **os.environ,
        "AGENTRUN_HOME": str(home),
        "PYTHONPATH": str(ROOT),
        "KILL_TEST_FILE": str(lines),
        "KILL_TEST_CALLS": "1",
    }
    run_id = new_run_id()
    first = worker(["run", str(spec), run_id], env)
    output = first.communicate(timeout=PROCESS_LIMIT_S)
    assert first.returncode == 5, output
    store = RunStore(home / "runs.db")
    assert store.decide(run_id, None, True, "go ahead") == 1

    approved = worker(["resume", run_id], env)
    try:
        wait_for(lambda: lines.exists() and lines.read_text() == "line-0\n", "the side effect")
    finally:
        approved.kill()  # SIGKILL, mid-call
        approved.communicate()

    again = worker(["resume", run_id], env)
    try:
        out, err = again.communicate(timeout=PROCESS_LIMIT_S)
    finally:
        again.kill()
    assert again.returncode == 5, out + err  # paused: a person must say it again
    assert lines.read_text() == "line-0\n"  # the side effect happened once
    [pending] = store.approvals(run_id)
    assert pending["note"] == IN_FLIGHT_NOTE
    row = store.run(run_id)
    assert row is not None and row.status == "waiting_approval"


# -- item 7: claiming a run for resume is one atomic step --------------------------------

TRIALS = 50


def test_two_resumes_started_together_run_the_approved_call_once(tmp_path: Path) -> None:
    spec = kill_spec(tmp_path, "tests.kill_tools:append_line")
    home = tmp_path / "home"
    base_env = {
        **os.environ,
        "AGENTRUN_HOME": str(home),
        "PYTHONPATH": str(ROOT),
        "KILL_TEST_CALLS": "1",
    }
    agent = compile_agent(load_spec(spec))
    store = RunStore(home / "runs.db")
    for trial in range(TRIALS):
        lines = tmp_path / f"lines-{trial}.txt"
        env = {**base_env, "KILL_TEST_FILE": str(lines)}

        def respond(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Scripted:
            return call("append_line", {"line": "line-0"})

        finished = asyncio.run(run_agent(agent, FunctionModel(respond), store=store))
        assert finished.stop_reason is StopReason.WAITING_APPROVAL
        store.decide(finished.run_id, None, True, "ok")
        both = [worker(["resume", finished.run_id], env) for _ in range(2)]
        outputs = [process.communicate(timeout=PROCESS_LIMIT_S)[0] for process in both]
        codes = sorted(process.returncode for process in both)
        assert codes == [0, 9], (trial, codes, outputs)
        assert any("already running" in out or "cannot be resumed" in out for out in outputs)
        assert lines.read_text() == "line-0\n", trial


def claim(
    contender: RunStore, run_id: str, barrier: threading.Barrier, outcomes: list[str]
) -> None:
    barrier.wait()
    try:
        contender.claim_for_resume(run_id)
        outcomes.append("won")
    except ResumeClaimed as error:
        outcomes.append(str(error))


def test_the_claim_is_atomic_between_connections(tmp_path: Path) -> None:
    """Many threads, each with its own connection, race for one run: one wins each time."""
    store, _, run_id = paused_write(tmp_path)
    store.decide(run_id, None, True, "ok")
    original = store.run(run_id)
    assert original is not None
    for _ in range(TRIALS):
        stores = [RunStore(tmp_path / "runs.db") for _ in range(4)]
        barrier = threading.Barrier(len(stores))
        outcomes: list[str] = []

        threads = [
            threading.Thread(target=claim, args=(s, run_id, barrier, outcomes)) for s in stores
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert outcomes.count("won") == 1, outcomes
        assert all("already running" in o for o in outcomes if o != "won")
        store.release_claim(original)
        for contender in stores:
            contender.close()


def test_resume_of_a_running_run_says_who_holds_it(tmp_path: Path) -> None:
    store, _, run_id = paused_write(tmp_path)
    store.claim_for_resume(run_id)
    with pytest.raises(ResumeClaimed, match=rf"pid {os.getpid()} on {socket.gethostname()}"):
        store.claim_for_resume(run_id)


def test_an_approval_binds_the_target_not_the_spelling(tmp_path: Path) -> None:
    """Approved for out/link/x.txt while link led to a/; the link then leads to b/: the
    approval does not apply to the resumed call, which is refused instead of writing into b/."""
    out = tmp_path / "out"
    (out / "a").mkdir(parents=True)
    (out / "b").mkdir()
    (out / "link").symlink_to(out / "a")
    spec = load_spec(
        write_spec(
            tmp_path,
            """
            version: 1
            name: retarget
            model: openai/scripted
            goal: Write it.
            tools:
              write_file: {paths: [out]}
            autonomy: approve-writes
            unattended: queue
            """,
        )
    )
    store = RunStore(tmp_path / "runs.db")
    write = call("write_file", {"path": "out/link/x.txt", "content": "x"})
    finished = asyncio.run(run_agent(compile_agent(spec), ScriptedModel([write]), store=store))
    assert finished.stop_reason is StopReason.WAITING_APPROVAL
    store.decide(finished.run_id, None, True, "fine for a/")
    (out / "link").unlink()
    (out / "link").symlink_to(out / "b")
    store.claim_for_resume(finished.run_id)
    again = asyncio.run(
        run_agent(
            compile_agent(spec),
            ScriptedModel([text("done")]),
            store=store,
            run_id=finished.run_id,
            resume=restore_state(store, finished.run_id),
        )
    )
    assert again.stop_reason is StopReason.COMPLETED
    assert not (out / "b" / "x.txt").exists()
    [refused] = store.tool_calls(finished.run_id)
    assert refused["status"] == "refused"
    assert "different arguments" in refused["result"]


def test_the_daemons_lock_and_worker_log_are_owner_only(tmp_path: Path) -> None:
    from runner.daemon.executor import worker_spawner
    from runner.daemon.lifecycle import Daemon, lock_path

    home = tmp_path / "daemon-home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    old_umask = os.umask(0o022)
    try:
        daemon = Daemon([tmp_path], home)
        daemon.acquire_lock()
        daemon._lock_file.close()  # what shutdown does
        daemon.store.close()

        async def spawn_one() -> None:
            process = await worker_spawner(home)("direct")
            process.kill()
            await process.wait()

        asyncio.run(spawn_one())
    finally:
        os.umask(old_umask)
    assert mode(home) == 0o700
    assert mode(lock_path(home)) == 0o600
    assert mode(home / "logs") == 0o700
    assert mode(home / "logs" / "workers.log") == 0o600
