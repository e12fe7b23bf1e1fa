"""The layout keeps its promises: only ``runner/store/`` holds SQL (DESIGN.md, "only
``runner/store/`` holds SQL"; STYLE.md habit 16, one owner per table)."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import pytest

from tests.conftest import ROOT

RUNNER = ROOT / "runner"
STORE = RUNNER / "store"

#: SQL statements as our code writes them: upper-case keywords, in a string literal.
SQL_STATEMENT = re.compile(
    r"\bSELECT\b[\s\S]+?\bFROM\b"
    r"|\bINSERT\s+(?:OR\s+[A-Z]+\s+)?INTO\b"
    r"|\bUPDATE\s+\w+\s+SET\b"
    r"|\bDELETE\s+FROM\b"
    r"|\b(?:CREATE|DROP)\s+(?:UNIQUE\s+)?(?:TABLE|INDEX|VIEW|TRIGGER)\b"
    r"|\bALTER\s+TABLE\b"
    r"|\bPRAGMA\s+\w+"
    r"|^\s*(?:BEGIN|COMMIT|ROLLBACK)(?:\s+(?:IMMEDIATE|EXCLUSIVE|TRANSACTION))?\s*$"
)
#: A string literal's prefix and quotes around its text (group 2).
LITERAL = re.compile(r"^[A-Za-z]*(\"\"\"|\'\'\'|\"|\')([\s\S]*)\1$")
#: Tokens that hold a literal's text (Python 3.12 splits an f-string into parts).
LITERAL_TOKENS = {tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", tokenize.STRING)}
#: Code that talks to a database directly, whatever the string holds.
DATABASE_CODE = re.compile(
    r"^\s*(?:import|from)\s+(?:sqlite3|psycopg|psycopg2|sqlalchemy)\b"
    r"|\.execute(?:many|script)\("
    r"|\bdb\.execute\("
    r"|\.cursor\(\)",
    re.MULTILINE,
)


def sql_found(source: str) -> list[str]:
    """Each SQL string literal and each direct database call in ``source``, with its line."""
    found = [
        f"line {source.count(chr(10), 0, match.start()) + 1}: {match.group(0).strip()}"
        for match in DATABASE_CODE.finditer(source)
    ]
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in LITERAL_TOKENS:
            continue
        body = LITERAL.sub(r"\2", token.string)
        if SQL_STATEMENT.search(body):
            found.append(f"line {token.start[0]}: {body.strip().splitlines()[0][:60]}")
    return found


def modules_outside_the_store() -> list[Path]:
    return sorted(p for p in RUNNER.rglob("*.py") if STORE not in p.parents)


def test_no_module_outside_the_store_holds_sql() -> None:
    offenders = {
        str(path.relative_to(ROOT)): found
        for path in modules_outside_the_store()
        if (found := sql_found(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}, "SQL outside runner/store/: move it behind a RunStore method"


@pytest.mark.parametrize(
    "source",
    [
        'rows = store.db.execute("SELECT id FROM runs WHERE x = ?", (1,))',
        'q = """INSERT OR IGNORE INTO fires (agent) VALUES (?)"""',
        "q = '''UPDATE runs SET status = ?\n   WHERE id = ?'''",
        'connection.execute("BEGIN IMMEDIATE")',
        "import sqlite3",
        "cursor.executescript(text)",
    ],
)
def test_the_check_finds_sql(source: str) -> None:
    assert sql_found(source)


@pytest.mark.parametrize(
    "source",
    [
        '"""Select the runs from the store, then update the cursor and delete old rows."""',
        "finished = await run.execute()",
        '"""Every slot is one row of the ``fires`` table under a unique index."""',
        'message = "the run was cancelled (commit nothing)"',
    ],
)
def test_the_check_passes_prose_and_the_loop(source: str) -> None:
    assert sql_found(source) == []


def test_the_store_itself_is_found_to_hold_sql() -> None:
    """The check is not vacuous: the store's own modules trip it."""
    assert sql_found((STORE / "sqlite.py").read_text(encoding="utf-8"))
    assert sql_found((STORE / "migrations.py").read_text(encoding="utf-8"))


def test_the_design_map_names_every_module_and_only_those() -> None:
    """docs/design.md's layout lists every folder and module of runner/, one line each."""
    text = (ROOT / "docs" / "design.md").read_text()
    block = text[text.index("## A layout that shows the architecture") :]
    start = block.index("```\nrunner/") + 4
    block = block[start : block.index("\n```", start)]
    named: list[str] = []
    folders: list[str] = []
    for line in block.splitlines()[1:]:
        match = re.match(r"^( +)(\S+)", line)
        if match is None or not match.group(2).endswith((".py", "/")):
            continue
        depth = len(match.group(1)) // 2
        folders[depth - 1 :] = []
        name = match.group(2)
        if name.endswith("/"):
            folders.append(name.rstrip("/"))
        else:
            named.append("/".join([*folders, name]))
    modules = sorted(
        str(path.relative_to(RUNNER))
        for path in RUNNER.rglob("*.py")
        if "__pycache__" not in path.parts
    )
    assert len(named) == len(set(named)), "a module is named twice"
    assert sorted(set(named)) == modules
