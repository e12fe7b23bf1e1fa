"""Tamper-evident lineage: each run's event log entries as a SHA-256 hash chain, signed heads.

Every entry of the run event log (:mod:`runner.store.event_log`) carries ``hash``, the
SHA-256 (hex) of its canonical form, and ``prev``, the hash of the run's entry before it
(``""`` for a run's first). The canonical form is the JSON text of the object ::

    {"at": ..., "data": ..., "kind": ..., "prev": ..., "run_id": ...}

with sorted keys, no whitespace (``","`` and ``":"`` separators), non-ASCII characters as
themselves, encoded as UTF-8, NaN and infinities refused: RFC 8785 (JCS) for the values
agentrun writes (strings, integers, floats as Python's shortest repr, booleans, null,
lists, objects). ``data`` is the entry's fields as stored (``data_json``). The run keeps the
hash of its newest entry as ``runs.head_hash``; :func:`chain` computes both in the
transaction that appends the entry, under the store's write lock, so two writers never
chain from the same head.

When a signing key exists (``AGENTRUN_SIGNING_KEY_FILE``, else ``AGENTRUN_HOME/signing.key``:
an Ed25519 private key, PKCS#8 PEM, ``0600``, made by ``agentrun keys --create``), the head
of a run that is not running is signed: at its ``run_finished`` entry and at every entry
after it (an approval decided, a notification sent). ``runs.head_signature`` is
``<fingerprint> <base64 signature>`` over :func:`signed_message`; a running run's is NULL.
A chain rewritten whole, every hash recomputed, is caught by the signature alone.

:func:`verify_chain` is pure: it takes a run's entries (from the store, :func:`read_chains`,
or from an export, :func:`chains_from_export`) and names the first that was changed,
removed, inserted or reordered. Only :mod:`runner.store` and the CLI call this module.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ..errors import StoreError, UsageError
from ..paths import PRIVATE_FILE_MODE, home_path, tighten
from .database import Database
from .export import model_call_event, tool_call_event
from .rows import ModelCallRow, ToolCallRow

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

#: The migration that added the chain; runs started before it have no hashes.
LINEAGE_MIGRATION = "0012_lineage"
#: The file name of the signing key in ``AGENTRUN_HOME``.
SIGNING_KEY_NAME = "signing.key"
#: What a signature signs before the run id and head (so it signs nothing else by mistake).
SIGNATURE_DOMAIN = "agentrun lineage v1"


def canonical(value: Any) -> bytes:
    """``value`` as canonical JSON: sorted keys, no whitespace, UTF-8 (see the module)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def entry_hash(run_id: str, kind: str, data: Any, at: str, prev: str) -> str:
    """The SHA-256 (64 hex digits) of one entry's canonical form."""
    form = {"run_id": run_id, "kind": kind, "data": data, "at": at, "prev": prev}
    return hashlib.sha256(canonical(form)).hexdigest()


def signed_message(run_id: str, head: str) -> bytes:
    """The bytes a run's head signature signs: the domain, the run id and the head hash."""
    return f"{SIGNATURE_DOMAIN}\n{run_id}\n{head}".encode()


# -- the signing key ------------------------------------------------------------------------


def signing_key_path() -> Path:
    """``AGENTRUN_SIGNING_KEY_FILE``, else ``signing.key`` in ``AGENTRUN_HOME``."""
    configured = os.environ.get("AGENTRUN_SIGNING_KEY_FILE")
    return Path(configured).expanduser() if configured else home_path() / SIGNING_KEY_NAME


def fingerprint(public_key: Ed25519PublicKey) -> str:
    """``SHA256:`` and the unpadded base64 of the SHA-256 of the raw 32-byte key (as ssh)."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return "SHA256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")


def public_pem(public_key: Ed25519PublicKey) -> str:
    """The public key as PEM (SubjectPublicKeyInfo), what ``--public-key`` reads."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def create_signing_key(path: Path) -> Ed25519PrivateKey:
    """Make a new Ed25519 key in ``path`` (PKCS#8 PEM, ``0600``, its folder made).

    Raises:
        UsageError: ``path`` exists already (a key is never overwritten).
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE_MODE)
    except FileExistsError:
        raise UsageError(
            f"a signing key exists already at {str(path)!r}; it is never overwritten "
            "(move it away first if you mean to replace it)"
        ) from None
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
        handle.flush()
        os.fsync(handle.fileno())
    return key


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in ``path`` (tightened to ``0600``).

    Raises:
        StoreError: the file is not an unencrypted Ed25519 private key in PEM.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    tighten(path, PRIVATE_FILE_MODE)
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, OSError) as error:
        raise StoreError(
            f"the signing key {str(path)!r} does not load ({error}); expected an unencrypted "
            "Ed25519 private key in PEM, as `agentrun keys --create` writes"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise StoreError(f"the signing key {str(path)!r} is not an Ed25519 key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from ``path``.

    The file holds a PEM block (what ``agentrun keys`` prints; other lines are ignored), a
    private key, or the base64 of the raw 32 bytes.

    Raises:
        UsageError: the file is missing or holds no Ed25519 key.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read the public key {str(path)!r}: {error}") from None
    if "PRIVATE KEY-----" in text:
        return load_signing_key(path).public_key()
    begin, end = "-----BEGIN PUBLIC KEY-----", "-----END PUBLIC KEY-----"
    try:
        if begin in text and end in text:
            block = text[text.index(begin) : text.index(end) + len(end)]
            key = load_pem_public_key(block.encode())
        else:
            key = Ed25519PublicKey.from_public_bytes(base64.b64decode(text.strip(), validate=True))
    except ValueError as error:
        raise UsageError(
            f"{str(path)!r} holds no Ed25519 public key ({error}); give the PEM `agentrun "
            "keys` prints"
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"{str(path)!r} holds a public key that is not Ed25519")
    return key


_loaded: dict[tuple[str, int], tuple[Ed25519PrivateKey, str]] = {}


def _signer() -> tuple[Ed25519PrivateKey, str] | None:
    """The signing key and its fingerprint, when the key file exists (cached by mtime)."""
    path = signing_key_path()
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return None
    cached = _loaded.get((str(path), stamp))
    if cached is None:
        key = load_signing_key(path)
        cached = _loaded[(str(path), stamp)] = (key, fingerprint(key.public_key()))
    return cached


def sign_head(run_id: str, head: str) -> str | None:
    """``<fingerprint> <base64 signature>`` of ``head``, or None with no signing key."""
    signer = _signer()
    if signer is None:
        return None
    key, print_ = signer
    signature = base64.b64encode(key.sign(signed_message(run_id, head))).decode()
    return f"{print_} {signature}"


#: The entry kinds that name a row whose content the entry's ``row_sha256`` covers.
ROW_KINDS = {"model_call": "model_calls", "tool_call": "tool_calls"}


def event_digest(event: dict[str, Any]) -> str:
    """The SHA-256 of an export event's canonical form (what ``row_sha256`` holds)."""
    return hashlib.sha256(canonical(event)).hexdigest()


def row_event(kind: str, run_id: str, row: dict[str, Any]) -> dict[str, Any]:
    """The export event of a ``model_calls`` or ``tool_calls`` row (``kind`` says which)."""
    if kind == "model_call":
        return model_call_event(run_id, cast(ModelCallRow, row))
    return tool_call_event(run_id, cast(ToolCallRow, row))


def row_digest(db: Database, kind: str, run_id: str, row_id: int) -> str | None:
    """:func:`event_digest` of the row a ``kind`` entry names; None when there is none."""
    table = ROW_KINDS[kind]  # one of two literals
    row = db.execute(f"SELECT * FROM {table} WHERE id = ?", (row_id,)).fetchone()
    return None if row is None else event_digest(row_event(kind, run_id, dict(row)))


# -- writing ----------------------------------------------------------------------------------


def chain(db: Database, run_id: str, kind: str, data_json: str, at: str) -> tuple[str, str]:
    """Chain a new entry of ``run_id`` onto its head; ``(prev, hash)`` to store with it.

    Moves ``runs.head_hash`` to the new hash and signs it (or clears the signature while
    the run is running). Must run in the transaction that inserts the entry.
    """
    row = db.execute("SELECT head_hash, status FROM runs WHERE id = ?", (run_id,)).fetchone()
    prev = (row["head_hash"] or "") if row is not None else ""
    digest = entry_hash(run_id, kind, json.loads(data_json), at, prev)
    if row is not None:
        signature = None if row["status"] == "running" else sign_head(run_id, digest)
        db.execute(
            "UPDATE runs SET head_hash = ?, head_signature = ? WHERE id = ?",
            (digest, signature, run_id),
        )
    return prev, digest


def sign_ended(db: Database, run_id: str) -> None:
    """Sign the head of a run that was ended without a new entry (the crash sweep).

    A run whose process died ends by a status change alone: no entry is chained, so its
    head (the last entry its process wrote) would stay unsigned. Nothing happens while the
    run is running, without a head, or without a signing key. Must run in the transaction
    that ends the run.
    """
    row = db.execute("SELECT head_hash, status FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None or not row["head_hash"] or row["status"] == "running":
        return
    signature = sign_head(run_id, row["head_hash"])
    if signature is not None:
        db.execute("UPDATE runs SET head_signature = ? WHERE id = ?", (signature, run_id))


# -- reading and verifying --------------------------------------------------------------------


@dataclass
class Entry:
    """One entry of a run's chain as stored or exported; ``hash`` None before the chain."""

    id: int
    kind: str
    at: str
    data: Any
    prev: str | None
    hash: str | None
    #: The digest of the entry's row as it is now (:func:`row_digest`), ``"gone"`` when the
    #: row was deleted, ``"absent"`` when an export has no such event; None when the entry
    #: names no row.
    row_now: str | None = None

    def describe(self) -> str:
        """``#id kind at``, how a finding names the entry."""
        return f"#{self.id} {self.kind} at {self.at}"


@dataclass
class Chain:
    """One run's entries, oldest first, with its stored head and head signature."""

    run_id: str
    entries: list[Entry] = field(default_factory=list)
    head: str | None = None
    signature: str | None = None
    running: bool = False
    #: The run started after the chain existed (so it must have hashes).
    after_lineage: bool = True
    #: An export's model and tool call events that no entry's ``row_sha256`` names.
    extra_events: list[str] = field(default_factory=list)


class Problem(StrEnum):
    """What :func:`verify_chain` found wrong with a run."""

    CHANGED = "changed"
    """An entry's content no longer hashes to its stored hash."""
    REMOVED = "removed"
    """An entry names as its previous a hash no stored entry has, or the head does."""
    INSERTED = "inserted"
    """An entry that is not in the chain: the entry after it names one before it."""
    REORDERED = "reordered"
    """An entry stored before the entry it names as its previous."""
    UNCHAINED = "unchained"
    """A run with no hashes although it started after the chain existed."""
    SIGNATURE = "signature"
    """The head signature does not verify (the chain was rewritten, or another key)."""
    UNSIGNED = "unsigned"
    """An ended run without a signature when signatures are required."""


@dataclass
class Verdict:
    """The outcome of verifying one run.

    ``problem`` None means intact. ``entry`` is the first bad entry when there is one;
    ``detail`` says what happened in words. ``legacy`` counts the entries recorded before
    the chain existed (not verifiable); ``signed_by`` the fingerprint that signed the head.
    """

    run_id: str
    entries: int
    problem: Problem | None = None
    entry: Entry | None = None
    detail: str = ""
    legacy: int = 0
    signed_by: str | None = None

    @property
    def intact(self) -> bool:
        """Whether nothing is wrong."""
        return self.problem is None


def verify_chain(
    chain_: Chain, public_key: Ed25519PublicKey | None = None, require_signature: bool = False
) -> Verdict:
    """Recompute ``chain_`` and name its first bad entry (see :class:`Problem`).

    Entries before the run's first hashed one are counted as ``legacy`` (recorded before
    migration 0012); a run with none hashed is bad only when it started after the
    migration. With ``public_key`` the head signature of an ended run is checked; with
    ``require_signature`` an ended run without one is bad too.
    """
    entries = chain_.entries
    verdict = Verdict(chain_.run_id, len(entries))

    def bad(problem: Problem, entry: Entry | None, detail: str) -> Verdict:
        verdict.problem, verdict.entry, verdict.detail = problem, entry, detail
        return verdict

    start = next((i for i, e in enumerate(entries) if e.hash is not None), len(entries))
    verdict.legacy = start
    if start == len(entries):
        if entries and chain_.after_lineage:
            return bad(
                Problem.UNCHAINED,
                entries[0],
                "no entry has a hash although the run started after lineage existed: "
                "the hashes were erased",
            )
        return verdict
    chained = entries[start:]
    position: dict[str, int] = {e.hash: i for i, e in enumerate(chained) if e.hash is not None}
    expected = ""
    for i, entry in enumerate(chained):
        if entry.hash is None:
            return bad(
                Problem.INSERTED,
                entry,
                "it has no hash in a chained run: inserted afterwards, or its hash erased",
            )
        if entry_hash(chain_.run_id, entry.kind, entry.data, entry.at, entry.prev or "") != (
            entry.hash
        ):
            return bad(Problem.CHANGED, entry, "its content no longer matches its hash")
        row_problem = _row_problem(entry)
        if row_problem is not None:
            return bad(*row_problem)
        if entry.prev != expected:
            found = _misplaced(chained, i, entry, expected, position)
            if found is not None:
                return bad(*found)
        expected = entry.hash
    if chain_.extra_events and start == 0:
        return bad(
            Problem.INSERTED,
            None,
            f"the export's {chain_.extra_events[0]} is in no hashed entry: it was added or changed",
        )
    if chain_.head != expected:
        last = chained[-1]
        if chain_.head is None:
            return bad(Problem.REMOVED, last, "the run's head hash was erased")
        k = position.get(chain_.head)
        if k is not None and k < len(chained) - 1:
            return bad(
                Problem.INSERTED,
                chained[k + 1],
                f"the run's head is entry #{chained[k].id}: this and the "
                f"{len(chained) - k - 1} entries from it were added after it",
            )
        return bad(
            Problem.REMOVED,
            last,
            "the run's head names a hash no stored entry has: entries after this one were removed",
        )
    return _check_signature(chain_, verdict, public_key, require_signature, bad)


def _row_problem(entry: Entry) -> tuple[Problem, Entry, str] | None:
    """What happened to the row ``entry`` names, when it is not as recorded."""
    recorded = entry.data.get("row_sha256") if isinstance(entry.data, dict) else None
    if recorded is None or entry.row_now is None or entry.row_now == recorded:
        return None
    what = f"its {ROW_KINDS[entry.kind]} row (the export's {entry.kind} event)"
    if entry.row_now == "gone":
        return Problem.REMOVED, entry, f"{what} was deleted"
    if entry.row_now == "absent":
        return Problem.CHANGED, entry, f"{what} is not in the file as recorded"
    return Problem.CHANGED, entry, f"{what} was changed after it was recorded"


def _misplaced(
    chained: list[Entry], i: int, entry: Entry, expected: str, position: dict[str, int]
) -> tuple[Problem, Entry, str] | None:
    """Why ``entry``'s prev is not the hash of the entry stored before it."""
    if entry.prev == "" and i > 0:
        return (
            Problem.INSERTED,
            chained[0],
            f"entry #{entry.id} is a run's first, so the {i} stored before it were inserted",
        )
    j = position.get(entry.prev or "")
    if j is None:
        return (
            Problem.REMOVED,
            entry,
            "its previous hash is no stored entry's: the entry recorded before it was "
            "removed (or rewritten with a new hash)",
        )
    if j > i:
        return (
            Problem.REORDERED,
            entry,
            f"it was recorded after #{chained[j].id} {chained[j].kind} but is stored before it",
        )
    if j < i - 1:
        return (
            Problem.INSERTED,
            chained[j + 1],
            f"entry #{entry.id} follows #{chained[j].id} in the chain, so this one, stored "
            "between them, is not in it",
        )
    return None  # pragma: no cover - j == i - 1 means prev == expected


def _check_signature(
    chain_: Chain,
    verdict: Verdict,
    public_key: Ed25519PublicKey | None,
    require_signature: bool,
    bad: Callable[[Problem, Entry | None, str], Verdict],
) -> Verdict:
    if chain_.running:
        return verdict
    if chain_.signature is None:
        if require_signature:
            return bad(Problem.UNSIGNED, None, "the run ended but its head is not signed")
        return verdict
    print_, _, encoded = chain_.signature.partition(" ")
    verdict.signed_by = print_
    if public_key is None:
        return verdict
    from cryptography.exceptions import InvalidSignature

    if fingerprint(public_key) != print_:
        return bad(
            Problem.SIGNATURE,
            None,
            f"the head is signed by key {print_}, not by the key given ({fingerprint(public_key)})",
        )
    try:
        public_key.verify(
            base64.b64decode(encoded), signed_message(chain_.run_id, chain_.head or "")
        )
    except (InvalidSignature, ValueError):
        return bad(
            Problem.SIGNATURE,
            None,
            "the head signature does not verify: the chain was rewritten (hashes "
            "recomputed without the key) or the signature was altered",
        )
    return verdict


def _lineage_started(db: Database) -> str | None:
    row = db.execute(
        "SELECT applied_at FROM migrations WHERE name = ?", (LINEAGE_MIGRATION,)
    ).fetchone()
    return None if row is None else str(row[0])


def read_chains(db: Database, run_ids: Iterable[str] | None = None) -> Iterator[Chain]:
    """The chains of ``run_ids`` (every run's when None), in run id order.

    Raises:
        StoreError: the store predates lineage (migration 0012 not applied).
    """
    since = _lineage_started(db)
    if since is None:
        raise StoreError("this run store has no lineage yet (migration 0012 not applied)")
    query = "SELECT id, status, started_at, head_hash, head_signature FROM runs"
    params: tuple[str, ...] = ()
    if run_ids is not None:
        params = tuple(run_ids)
        query += f" WHERE id IN ({','.join('?' * len(params))})" if params else " WHERE 0 = 1"
    runs = {row["id"]: row for row in db.execute(query, params)}
    entries: dict[str, list[Entry]] = {run_id: [] for run_id in runs}
    query = "SELECT id, run_id, type, at, data_json, prev_hash, hash FROM run_events"
    if run_ids is not None:
        query += f" WHERE run_id IN ({','.join('?' * len(params))})" if params else " WHERE 0 = 1"
    for row in db.execute(query + " ORDER BY id", params):
        entries.setdefault(row["run_id"], []).append(
            Entry(
                int(row["id"]),
                row["type"],
                row["at"],
                json.loads(row["data_json"]),
                row["prev_hash"],
                row["hash"],
            )
        )
    _read_rows(db, entries)
    for run_id in sorted(entries):
        run = runs.get(run_id)
        yield Chain(
            run_id,
            entries[run_id],
            head=None if run is None else run["head_hash"],
            signature=None if run is None else run["head_signature"],
            running=run is not None and run["status"] == "running",
            after_lineage=run is None or run["started_at"] >= since,
        )


def _read_rows(db: Database, entries: dict[str, list[Entry]]) -> None:
    """Set ``row_now`` of every entry that names a row (``"gone"`` for a row deleted)."""
    for kind, table in ROW_KINDS.items():
        named = {
            int(e.data["row"]): (run_id, e)
            for run_id, run_entries in entries.items()
            for e in run_entries
            if e.kind == kind and isinstance(e.data, dict) and e.data.get("row") is not None
        }
        found: dict[int, dict[str, Any]] = {}
        wanted = sorted(named)
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT * FROM {table} WHERE id IN ({marks})"  # table: one of two literals
            found.update((int(row["id"]), dict(row)) for row in db.execute(query, chunk))
        for row_id, (run_id, entry) in named.items():
            row = found.get(row_id)
            entry.row_now = "gone" if row is None else event_digest(row_event(kind, run_id, row))


def export_records(chain_: Chain) -> list[dict[str, Any]]:
    """The export's lineage lines of a run: one ``log_entry`` each, then ``log_head``."""
    records: list[dict[str, Any]] = [
        {
            "type": "log_entry",
            "run_id": chain_.run_id,
            "id": e.id,
            "kind": e.kind,
            "at": e.at,
            "data": e.data,
            "prev": e.prev,
            "hash": e.hash,
        }
        for e in chain_.entries
    ]
    records.append(
        {
            "type": "log_head",
            "run_id": chain_.run_id,
            "head": chain_.head,
            "signature": chain_.signature,
            "running": chain_.running,
            "after_lineage": chain_.after_lineage,
        }
    )
    return records


def chains_from_export(lines: Iterable[str], source: str) -> list[Chain]:
    """The chains of an export (``runs export`` JSONL), in the order of the file's lines.

    Raises:
        UsageError: a line is not JSON, or a lineage line lacks a field; or the file has
            no lineage lines (an export from before lineage).
    """
    chains: dict[str, Chain] = {}
    events: dict[str, list[dict[str, Any]]] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            kind = record.get("type") if isinstance(record, dict) else None
            if kind == "log_entry":
                chain_ = chains.setdefault(record["run_id"], Chain(record["run_id"]))
                chain_.entries.append(
                    Entry(
                        int(record["id"]),
                        str(record["kind"]),
                        str(record["at"]),
                        record["data"],
                        record["prev"],
                        record["hash"],
                    )
                )
            elif kind == "log_head":
                chain_ = chains.setdefault(record["run_id"], Chain(record["run_id"]))
                chain_.head, chain_.signature = record["head"], record["signature"]
                chain_.running = bool(record.get("running", False))
                chain_.after_lineage = bool(record.get("after_lineage", True))
            elif kind in ROW_KINDS:
                events.setdefault(str(record["run_id"]), []).append(record)
        except (ValueError, KeyError, TypeError) as error:
            raise UsageError(
                f"{source}:{number}: not a line of `agentrun runs export` ({error!r}): "
                f"{line.strip()[:80]!r}"
            ) from None
    if not chains:
        raise UsageError(
            f"{source} holds no lineage (no 'log_entry' lines): it was exported before "
            "lineage existed, or is not a `runs export` file"
        )
    for run_id, chain_ in chains.items():
        _match_export_rows(chain_, events.get(run_id, []))
    return list(chains.values())


def _match_export_rows(chain_: Chain, events: list[dict[str, Any]]) -> None:
    """Check an export's model and tool call events against the entries' ``row_sha256``.

    An entry whose digest no event line has gets ``row_now`` ``"absent"`` (the event was
    changed or removed); an event no entry names is listed in ``extra_events``, unless it
    is a tool call cut off by a crash (status ``running``), which never had one.
    """
    digests = [event_digest(event) for event in events]
    recorded = set()
    for entry in chain_.entries:
        wanted = entry.data.get("row_sha256") if isinstance(entry.data, dict) else None
        if wanted is not None:
            recorded.add(wanted)
            entry.row_now = wanted if wanted in digests else "absent"
    for event, digest in zip(events, digests, strict=True):
        if digest not in recorded and event.get("status") != "running":
            chain_.extra_events.append(f"{event['type']} event of step {event.get('step')}")
