"""A function tool for the journal tests: what the run store holds while a tool runs."""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import UTC, datetime


def probe(note: str) -> str:
    """Report the newest run's committed rows, as another process would see them now.

    Args:
        note: any text (echoed back).
    """
    started = datetime.now(UTC).isoformat(timespec="milliseconds")
    db = sqlite3.connect(os.environ["STORE_PROBE_DB"])
    try:
        [run_id] = db.execute("SELECT id FROM runs ORDER BY started_at DESC LIMIT 1").fetchone()
        tool_calls = db.execute(
            "SELECT tool, status FROM tool_calls WHERE run_id = ?", (run_id,)
        ).fetchall()
        model_calls = db.execute(
            "SELECT count(*) FROM model_calls WHERE run_id = ?", (run_id,)
        ).fetchone()[0]
    finally:
        db.close()
    seen = {"tool_calls": tool_calls, "model_calls": model_calls, "started": started}
    return json.dumps({"note": note, "seen": seen})
