"""Tamper-evident lineage (runner/store/lineage.py, `agentrun runs verify`, `agentrun keys`):
an edit, a delete, an insert or a reorder of an event, by SQL on the store (both backends)
or in an export file, is named by `runs verify`; a chain rewritten whole is caught by the
head's Ed25519 signature; a store from before the chain says so."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from runner.errors import StoreError
from runner.events import RunFinished, RunNotice, RunStarted, StopReason
from runner.store import RunStore, SQLiteRunStore, lineage, new_run_id
from runner.store.location import StoreLocation
from runner.store.recording import SQLRunStore
from tests.helpers import invoke
from tests.test_event_log import writer_run

TAMPERS = ["edit", "delete", "insert", "reorder"]


def db_of(store: RunStore) -> Any:
    assert isinstance(store, SQLRunStore)
    return store.db


def record_run(store: RunStore, notices: int = 3, end: bool = True) -> str:
    """A run recorded directly (no loop): started, ``notices`` notices, finished; its id."""
    run_id = new_run_id()
    store.record(RunStarted(run_id, "auditor", "openai/scripted", "a.yaml", "0" * 64, {}, "Go."))
    for number in range(notices):
        store.record(RunNotice(run_id, "auditor", f"notice {number}"))
    if end:
        store.record(RunFinished(run_id, StopReason.COMPLETED, "done", 1, 0, 10, 5, 0.001, 0.5))
    return run_id


def entry_ids(store: RunStore, run_id: str) -> list[int]:
    rows = db_of(store).execute("SELECT id FROM run_events WHERE run_id = ? ORDER BY id", (run_id,))
    return [int(row[0]) for row in rows]


def tamper_store(store: RunStore, run_id: str, how: str) -> int:
    """Tamper with the third entry (a notice) of ``run_id`` by SQL; the entry id to name."""
    db = db_of(store)
    ids = entry_ids(store, run_id)
    third = ids[2]
    db.execute("BEGIN")
    if how == "edit":
        db.execute(
            "UPDATE run_events SET data_json = ? WHERE id = ?",
            (json.dumps({"level": "warning", "message": "nothing to see"}), third),
        )
        named = third
    elif how == "delete":
        db.execute("DELETE FROM run_events WHERE id = ?", (third,))
        named = ids[3]  # the entry after the gap
    elif how == "insert":
        # A knowing forger: a well-formed entry chained to the one before it, stored
        # between two entries (a free id: the one deleted and re-used for the forgery).
        row = db.execute("SELECT prev_hash FROM run_events WHERE id = ?", (third,)).fetchone()
        db.execute("UPDATE run_events SET id = ? WHERE id = ?", (ids[-1] + 100, ids[-1]))
        for old, new in zip(reversed(ids[2:-1]), reversed(ids[3:]), strict=True):
            db.execute("UPDATE run_events SET id = ? WHERE id = ?", (new, old))
        data = {"level": "warning", "message": "forged"}
        at = "2026-01-01T00:00:00+00:00"
        forged = lineage.entry_hash(run_id, "notice", data, at, row[0])
        db.execute(
            """INSERT INTO run_events (id, run_id, type, at, data_json, prev_hash, hash)
               VALUES (?, ?, 'notice', ?, ?, ?, ?)""",
            (third, run_id, at, json.dumps(data), row[0], forged),
        )
        named = third
    else:  # reorder: swap the third and fourth entries' ids
        fourth = ids[3]
        db.execute("UPDATE run_events SET id = ? WHERE id = ?", (-1, third))
        db.execute("UPDATE run_events SET id = ? WHERE id = ?", (third, fourth))
        db.execute("UPDATE run_events SET id = ? WHERE id = ?", (fourth, -1))
        named = third  # now holding what was the fourth, recorded after the third
    db.commit()
    return named


def test_each_entry_is_chained_to_the_one_before_and_the_run_keeps_its_head(
    store: RunStore,
) -> None:
    run_id = record_run(store)
    [chain] = lineage.read_chains(db_of(store), [run_id])
    kinds = [e.kind for e in chain.entries]
    assert kinds == ["run_started", "notice", "notice", "notice", "run_finished"]
    assert chain.entries[0].prev == ""
    for before, after in zip(chain.entries, chain.entries[1:], strict=False):
        assert after.prev == before.hash
    assert chain.head == chain.entries[-1].hash
    first = chain.entries[0]
    assert first.hash == lineage.entry_hash(run_id, first.kind, first.data, first.at, "")
    verdict = lineage.verify_chain(chain)
    assert verdict.intact and verdict.entries == 5 and verdict.legacy == 0


@pytest.mark.parametrize("how", TAMPERS)
def test_tampering_by_sql_is_named_at_its_first_bad_entry(
    how: str,
    store_location: StoreLocation,
    store: RunStore,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clean = record_run(store)
    run_id = record_run(store, notices=4)
    named = tamper_store(store, run_id, how)
    location = store_location if isinstance(store_location, str) else f"sqlite:///{store_location}"
    monkeypatch.setenv("AGENTRUN_STORE", location)
    code, out, _ = invoke(["runs", "verify", run_id, clean], capsys)
    assert code == 1, out
    problem = {"edit": "changed", "delete": "removed", "insert": "inserted"}.get(how, "reordered")
    assert f"BAD {run_id}: {problem} #{named} " in out
    assert f"ok {clean} (5 entries)" in out
    assert "2 runs verified: 1 intact, 1 bad" in out
    code, out, _ = invoke(["runs", "verify", "--all"], capsys)
    assert code == 1 and f"BAD {run_id}: {problem} #{named} " in out and clean not in out


def test_an_entry_added_after_the_head_and_entries_cut_from_the_end_are_caught(
    store: RunStore,
) -> None:
    db = db_of(store)
    appended, cut = record_run(store), record_run(store)
    [chain] = lineage.read_chains(db, [appended])
    data = {"level": "warning", "message": "late"}
    forged = lineage.entry_hash(appended, "notice", data, "2027", chain.head or "")
    db.execute(
        """INSERT INTO run_events (run_id, type, at, data_json, prev_hash, hash)
           VALUES (?, 'notice', '2027', ?, ?, ?)""",
        (appended, json.dumps(data), chain.head, forged),
    )
    db.execute("DELETE FROM run_events WHERE id = ?", (entry_ids(store, cut)[-1],))
    verdicts = {v.run_id: v for v in map(lineage.verify_chain, lineage.read_chains(db))}
    assert verdicts[appended].problem is lineage.Problem.INSERTED
    assert verdicts[appended].entry is not None and verdicts[appended].entry.at == "2027"
    assert verdicts[cut].problem is lineage.Problem.REMOVED
    assert "entries after this one were removed" in verdicts[cut].detail


def export_of(run_id: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    code, out, err = invoke(["runs", "export", run_id], capsys)
    assert code == 0, err
    return out.splitlines()


@pytest.mark.parametrize("how", TAMPERS)
def test_tampering_with_an_export_is_named_at_its_first_bad_entry(
    how: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = RunStore.default()
    run_id = record_run(store, notices=4)
    store.close()
    lines = export_of(run_id, capsys)
    entries = [i for i, line in enumerate(lines) if json.loads(line)["type"] == "log_entry"]
    head = json.loads(lines[-1])
    assert head["type"] == "log_head" and head["head"] == json.loads(lines[entries[-1]])["hash"]
    clean = tmp_path / "clean.jsonl"
    clean.write_text("\n".join(lines) + "\n")
    code, out, _ = invoke(["runs", "verify", "--file", str(clean)], capsys)
    assert code == 0 and f"ok {run_id} (6 entries)" in out
    third = entries[2]
    third_id = json.loads(lines[third])["id"]
    if how == "edit":
        record = json.loads(lines[third])
        record["data"]["message"] = "nothing to see"
        lines[third] = json.dumps(record)
        named = third_id
    elif how == "delete":
        named = json.loads(lines[third + 1])["id"]
        del lines[third]
    elif how == "insert":
        before = json.loads(lines[third - 1])
        data = {"level": "warning", "message": "forged"}
        forged = {
            "type": "log_entry",
            "run_id": run_id,
            "id": third_id,
            "kind": "notice",
            "at": before["at"],
            "data": data,
            "prev": before["hash"],
            "hash": lineage.entry_hash(run_id, "notice", data, before["at"], before["hash"]),
        }
        lines.insert(third, json.dumps(forged))
        named = third_id
    else:
        named = json.loads(lines[third + 1])["id"]
        lines[third], lines[third + 1] = lines[third + 1], lines[third]
    edited = tmp_path / "edited.jsonl"
    edited.write_text("\n".join(lines) + "\n")
    code, out, _ = invoke(["runs", "verify", "--file", str(edited)], capsys)
    problem = {"edit": "changed", "delete": "removed", "insert": "inserted"}.get(how, "reordered")
    assert code == 1 and f"BAD {run_id}: {problem} #{named} " in out, out


def test_a_thousand_untouched_runs_verify_clean(
    agentrun_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = SQLiteRunStore(agentrun_home / "runs.db")
    run_ids = [record_run(store, notices=1) for _ in range(1000)]
    store.close()
    code, out, _ = invoke(["runs", "verify", "--all"], capsys)
    assert (code, out.strip()) == (0, "1000 runs verified: 1000 intact")
    db = sqlite3.connect(agentrun_home / "runs.db")
    # every run has a chain of its own: 3 entries, 3 distinct hashes, its head the last
    heads = db.execute("SELECT count(DISTINCT head_hash) FROM runs").fetchone()[0]
    hashes = db.execute("SELECT count(DISTINCT hash) FROM run_events").fetchone()[0]
    assert (heads, hashes, len(set(run_ids))) == (1000, 3000, 1000)


def rewrite_chain(db: Any, run_id: str, message: str) -> None:
    """An attacker without the key: edit an entry, recompute every hash and the head."""
    [chain] = lineage.read_chains(db, [run_id])
    db.execute("BEGIN")
    prev = ""
    for entry in chain.entries:
        if entry.kind == "notice":
            entry.data = {**entry.data, "message": message}
        digest = lineage.entry_hash(run_id, entry.kind, entry.data, entry.at, prev)
        db.execute(
            "UPDATE run_events SET data_json = ?, prev_hash = ?, hash = ? WHERE id = ?",
            (json.dumps(entry.data), prev, digest, entry.id),
        )
        prev = digest
    db.execute("UPDATE runs SET head_hash = ? WHERE id = ?", (prev, run_id))
    db.commit()


def test_a_rewritten_chain_is_caught_by_the_head_signature(
    store: RunStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = invoke(["keys", "--create"], capsys)
    assert code == 0 and "fingerprint: SHA256:" in out
    key_file = lineage.signing_key_path()
    assert key_file.stat().st_mode & 0o777 == 0o600
    code, _, _ = invoke(["keys", "--create"], capsys)
    assert code == 2  # never overwritten
    code, printed, _ = invoke(["keys"], capsys)
    public = tmp_path / "public.pem"
    public.write_text(printed)  # the fingerprint line and the PEM, as printed
    running = record_run(store, end=False)
    signed, rewritten = record_run(store), record_run(store)
    db = db_of(store)
    rewrite_chain(db, rewritten, "all is well")
    key = lineage.load_public_key(public)
    verdicts = {
        v.run_id: v for v in (lineage.verify_chain(c, key) for c in lineage.read_chains(db))
    }
    assert verdicts[signed].intact and verdicts[signed].signed_by == printed.split()[1]
    assert verdicts[running].intact and verdicts[running].signed_by is None
    assert verdicts[rewritten].problem is lineage.Problem.SIGNATURE
    # the hashes alone cannot tell: they were recomputed
    assert lineage.verify_chain(next(lineage.read_chains(db, [rewritten]))).intact
    # another key is named as such; a stripped signature is caught when signatures are required
    other = tmp_path / "other.key"
    other_key = lineage.create_signing_key(other).public_key()
    verdict = lineage.verify_chain(next(lineage.read_chains(db, [signed])), other_key)
    assert verdict.problem is lineage.Problem.SIGNATURE and "not by the key given" in verdict.detail
    db.execute("UPDATE runs SET head_signature = NULL WHERE id = ?", (signed,))
    verdict = lineage.verify_chain(next(lineage.read_chains(db, [signed])), key, True)
    assert verdict.problem is lineage.Problem.UNSIGNED


def test_the_signature_is_checked_through_the_cli_on_another_machine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    invoke(["keys", "--create"], capsys)
    _, printed, _ = invoke(["keys"], capsys)
    public = tmp_path / "public.pem"
    public.write_text(printed)
    store = RunStore.default()
    run_id = record_run(store)
    store.close()
    lines = export_of(run_id, capsys)
    exported = tmp_path / "run.jsonl"
    exported.write_text("\n".join(lines) + "\n")
    # the other machine has the public key only
    monkeypatch.setenv("AGENTRUN_HOME", str(tmp_path / "elsewhere"))
    code, out, _ = invoke(
        ["runs", "verify", "--file", str(exported), "--public-key", str(public)], capsys
    )
    assert code == 0 and "signature verified: SHA256:" in out, out
    forged = [json.loads(line) for line in lines]
    prev = ""
    for record in forged:
        if record["type"] == "log_entry":
            if record["kind"] == "notice":
                record["data"]["message"] = "all is well"
            record["prev"] = prev
            record["hash"] = prev = lineage.entry_hash(
                run_id, record["kind"], record["data"], record["at"], prev
            )
        elif record["type"] == "log_head":
            record["head"] = prev
    exported.write_text("".join(json.dumps(r) + "\n" for r in forged))
    code, out, _ = invoke(
        ["runs", "verify", "--file", str(exported), "--public-key", str(public)], capsys
    )
    assert code == 1 and f"BAD {run_id}: signature: the head signature does not verify" in out


def test_a_store_from_before_the_chain_says_so(
    agentrun_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = SQLiteRunStore(agentrun_home / "runs.db")
    old = record_run(store)
    db = store.db
    # as the store was before migration 0012: no hashes, the chain's start after this run's
    db.execute("UPDATE run_events SET hash = NULL, prev_hash = NULL")
    db.execute("UPDATE runs SET head_hash = NULL")
    db.execute(
        "UPDATE migrations SET applied_at = '9999' WHERE name = ?", (lineage.LINEAGE_MIGRATION,)
    )
    # a run begun before the upgrade and ended after it: its first entry has no hash
    mixed = new_run_id()
    store.record(RunStarted(mixed, "auditor", "openai/scripted", "a.yaml", "0" * 64, {}, "Go."))
    db.execute("UPDATE run_events SET hash = NULL, prev_hash = NULL WHERE run_id = ?", (mixed,))
    db.execute("UPDATE runs SET head_hash = NULL, started_at = '0000' WHERE id = ?", (mixed,))
    store.record(RunFinished(mixed, StopReason.COMPLETED, "done", 1, 0, 10, 5, 0.001, 0.5))
    store.close()
    code, out, _ = invoke(["runs", "verify", old, mixed], capsys)
    assert code == 0, out
    assert f"unchained {old}: recorded before lineage existed, no hashes" in out
    assert "2 runs verified: 2 intact; 2 with entries recorded before lineage existed" in out
    # hashes erased from a run started after the chain existed are not taken for an old run
    fresh = SQLiteRunStore(agentrun_home / "runs.db")
    erased = record_run(fresh)
    fresh.db.execute("UPDATE migrations SET applied_at = '0000'")
    fresh.db.execute("UPDATE run_events SET hash = NULL WHERE run_id = ?", (erased,))
    fresh.close()
    code, out, _ = invoke(["runs", "verify", erased], capsys)
    assert code == 1 and f"BAD {erased}: unchained #" in out
    # an export made before lineage existed, and a store not migrated at all
    legacy = agentrun_home / "legacy.jsonl"
    legacy.write_text(json.dumps({"type": "run_started", "run_id": old}) + "\n")
    code, _, err = invoke(["runs", "verify", "--file", str(legacy)], capsys)
    assert code == 2 and "holds no lineage" in err
    bare = sqlite3.connect(":memory:")
    bare.row_factory = sqlite3.Row
    bare.execute("CREATE TABLE migrations (name TEXT, applied_at TEXT)")
    with pytest.raises(StoreError, match="no lineage yet"):
        list(lineage.read_chains(bare))


def test_bad_input_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = invoke(["runs", "verify"], capsys)
    assert code == 2 and "give the runs to verify, or --all" in err
    code, _, err = invoke(["runs", "verify", "nope"], capsys)
    assert code == 2 and "no run with id 'nope'" in err
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"type": "log_entry", "run_id": "r"}\nnot json\n')
    code, _, err = invoke(["runs", "verify", "--file", str(broken)], capsys)
    assert code == 2 and "broken.jsonl:1: not a line of `agentrun runs export`" in err
    code, _, err = invoke(["runs", "verify", "--all", "--file", str(broken)], capsys)
    assert code == 2 and "--file alone" in err
    not_a_key = tmp_path / "key.pem"
    not_a_key.write_text("hello")
    code, _, err = invoke(["runs", "verify", "--all", "--public-key", str(not_a_key)], capsys)
    assert code == 2 and "holds no Ed25519 public key" in err
    code, _, err = invoke(["runs", "verify", "--all", "--require-signature"], capsys)
    assert code == 2 and "needs a public key" in err
    code, _, err = invoke(["keys"], capsys)
    assert code == 2 and "agentrun keys --create" in err


def test_a_model_reply_or_tool_result_changed_in_its_row_is_caught(
    tmp_path: Path, store: RunStore
) -> None:
    run_id = writer_run(tmp_path, store)
    db = db_of(store)
    [chain] = lineage.read_chains(db, [run_id])
    assert lineage.verify_chain(chain).intact
    called = [e for e in chain.entries if e.kind in ("model_call", "tool_call")]
    assert len(called) == 3 and all(len(e.data["row_sha256"]) == 64 for e in called)
    # the live view shows the row, not the digest
    assert all("row_sha256" not in e for e in store.events_since(0))
    tool = next(e for e in called if e.kind == "tool_call")
    db.execute("UPDATE tool_calls SET result = 'goodbye' WHERE id = ?", (tool.data["row"],))
    verdict = lineage.verify_chain(next(lineage.read_chains(db, [run_id])))
    assert (verdict.problem, verdict.entry and verdict.entry.id) == (
        lineage.Problem.CHANGED,
        tool.id,
    )
    assert "tool_calls row" in verdict.detail and "changed after it was recorded" in verdict.detail
    first = called[0]
    db.execute("DELETE FROM model_calls WHERE id = ?", (first.data["row"],))
    verdict = lineage.verify_chain(next(lineage.read_chains(db, [run_id])))
    assert (verdict.problem, verdict.entry and verdict.entry.id) == (
        lineage.Problem.REMOVED,
        first.id,
    )


def test_a_tool_result_edited_or_a_model_call_added_in_an_export_is_caught(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = RunStore.default()
    run_id = writer_run(tmp_path / "work", store)
    store.close()
    lines = export_of(run_id, capsys)
    records = [json.loads(line) for line in lines]
    at = next(i for i, r in enumerate(records) if r["type"] == "tool_call")
    entry = next(r for r in records if r["type"] == "log_entry" and r["kind"] == "tool_call")
    edited = [dict(r) for r in records]
    edited[at]["result"] = "goodbye"
    path = tmp_path / "edited.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in edited))
    code, out, _ = invoke(["runs", "verify", "--file", str(path)], capsys)
    assert code == 1 and f"BAD {run_id}: changed #{entry['id']} tool_call" in out, out
    assert "not in the file as recorded" in out
    model = next(r for r in records if r["type"] == "model_call")
    added = [*records[:at], {**model, "step": 9, "content": "forged"}, *records[at:]]
    path.write_text("".join(json.dumps(r) + "\n" for r in added))
    code, out, _ = invoke(["runs", "verify", "--file", str(path)], capsys)
    assert code == 1 and f"BAD {run_id}: inserted: the export's model_call event of step 9" in out


def test_a_paused_run_stays_signed_through_its_decision_and_a_copy_to_postgresql(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from runner.store.copy import copy_store
    from runner.store.postgres import PostgresRunStore

    invoke(["keys", "--create"], capsys)
    key = lineage.load_signing_key(lineage.signing_key_path()).public_key()
    source = tmp_path / "runs.db"
    store = SQLiteRunStore(source)
    run_id = writer_run(tmp_path, store)  # waits for approval: ended, so signed
    [before] = lineage.read_chains(store.db, [run_id])
    assert before.signature is not None and lineage.verify_chain(before, key).intact
    store.decide(run_id, None, approved=False, reason="no", by="auditor")
    [after] = lineage.read_chains(store.db, [run_id])
    assert after.entries[-1].kind == "approval_decided" and after.head != before.head
    assert after.signature not in (None, before.signature)
    assert lineage.verify_chain(after, key, require_signature=True).intact
    store.close()
    report = copy_store(source, postgres_url)
    assert report.verified
    target = PostgresRunStore(postgres_url)
    try:
        [copied] = lineage.read_chains(target.db, [run_id])
    finally:
        target.close()
    assert (copied.head, copied.signature) == (after.head, after.signature)
    assert lineage.verify_chain(copied, key, require_signature=True).intact


def test_a_run_ended_by_the_crash_sweep_is_signed_as_its_process_left_it(
    store: RunStore, tmp_path: Path
) -> None:
    key = lineage.create_signing_key(lineage.signing_key_path()).public_key()
    swept, left = record_run(store, end=False), record_run(store, end=False)
    assert swept in store.sweep_interrupted(stale_after_s=0.0)  # every heartbeat is stale
    store.end_run_left_running(left, "finished", StopReason.CANCELLED, "its worker died")
    db = db_of(store)
    for run_id in (swept, left):
        verdict = lineage.verify_chain(next(lineage.read_chains(db, [run_id])), key, True)
        assert verdict.intact, verdict
        assert verdict.signed_by == lineage.fingerprint(key)
    # the signature covers the head as the process left it: an edit is still named
    ids = entry_ids(store, swept)
    db.execute("UPDATE run_events SET at = ? WHERE id = ?", ("2020-01-01T00:00:00+00:00", ids[1]))
    verdict = lineage.verify_chain(next(lineage.read_chains(db, [swept])), key, True)
    assert not verdict.intact
