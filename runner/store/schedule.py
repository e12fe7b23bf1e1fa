"""The daemon's scheduling records: trigger fires and cron cursors (both backends).

Split from :mod:`runner.store.recording` along what they record: not what a run did, but what
the daemon decided to run and when (``fires`` keeps a slot or an idempotency key from firing
twice; ``cron_cursors`` says up to which slot a cron trigger was handled). The class is a
part of :class:`runner.store.recording.SQLRunStore`, which holds the connection.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from ..spec import TriggerKind
from .database import Database
from .rows import FireOutcome, FireRow


def now_iso() -> str:
    """Now, in UTC, as ISO 8601 with milliseconds (how the store writes instants)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def iso(moment: datetime) -> str:
    """``moment`` in UTC as ISO 8601 with milliseconds."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


class ScheduleRecords:
    """Fires and cron cursors, on the connection of the store it is part of."""

    db: Database

    def record_fire(self, fire: FireRow) -> bool:
        """Write a fire's row; False when its slot or idempotency key was already recorded.

        The ``fires`` table's unique indexes make the check and the write one statement.
        """
        cursor = self.db.execute(
            """INSERT INTO fires (agent, trigger, trigger_index, slot, run_id, outcome,
               reason, idempotency_key, inputs_json, created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
            (
                fire.agent,
                fire.trigger,
                fire.trigger_index,
                iso(fire.slot) if fire.slot else None,
                fire.run_id,
                fire.outcome,
                fire.reason,
                fire.idempotency_key,
                json.dumps(fire.inputs),
                now_iso() if fire.created_at is None else iso(fire.created_at),
            ),
        )
        return cursor.rowcount == 1

    def set_fire_outcome(self, run_id: str, outcome: FireOutcome, reason: str = "") -> None:
        """Change what became of the fire of run ``run_id``."""
        self.db.execute(
            "UPDATE fires SET outcome = ?, reason = ? WHERE run_id = ?", (outcome, reason, run_id)
        )

    def fire_of_run(self, run_id: str) -> FireRow | None:
        """The fire that started (or was to start) run ``run_id``, or None."""
        row = self.db.execute(
            "SELECT * FROM fires WHERE run_id = ? ORDER BY id LIMIT 1", (run_id,)
        ).fetchone()
        return None if row is None else _fire_row(row)

    def fire_by_key(self, agent: str, key: str) -> FireRow | None:
        """The agent's fire recorded under idempotency key ``key``, or None."""
        row = self.db.execute(
            "SELECT * FROM fires WHERE agent = ? AND idempotency_key = ?", (agent, key)
        ).fetchone()
        return None if row is None else _fire_row(row)

    def unstarted_fires(self) -> list[FireRow]:
        """Fires recorded ``started`` or ``queued`` whose runs never began, oldest first."""
        rows = self.db.execute(
            """SELECT * FROM fires WHERE outcome IN (?, ?) AND run_id IS NOT NULL
               AND run_id NOT IN (SELECT id FROM runs) ORDER BY id""",
            (FireOutcome.STARTED, FireOutcome.QUEUED),
        )
        return [_fire_row(row) for row in rows]

    def cron_cursor(self, agent: str, trigger_key: str) -> datetime | None:
        """The instant up to which every slot of a cron trigger was handled, or None."""
        row = self.db.execute(
            "SELECT cursor FROM cron_cursors WHERE agent = ? AND trigger_key = ?",
            (agent, trigger_key),
        ).fetchone()
        return None if row is None else datetime.fromisoformat(row[0])

    def set_cron_cursor(self, agent: str, trigger_key: str, cursor: datetime) -> None:
        """Persist that every slot of a cron trigger at or before ``cursor`` was handled."""
        self.db.execute(
            """INSERT INTO cron_cursors (agent, trigger_key, cursor) VALUES (?, ?, ?)
               ON CONFLICT (agent, trigger_key) DO UPDATE SET cursor = excluded.cursor""",
            (agent, trigger_key, iso(cursor)),
        )


def _fire_row(row: Any) -> FireRow:
    """A ``fires`` row, typed."""
    return FireRow(
        agent=row["agent"],
        trigger=TriggerKind(row["trigger"]),
        trigger_index=row["trigger_index"],
        run_id=row["run_id"],
        outcome=FireOutcome(row["outcome"]),
        reason=row["reason"],
        slot=datetime.fromisoformat(row["slot"]) if row["slot"] else None,
        idempotency_key=row["idempotency_key"],
        inputs=json.loads(row["inputs_json"]),
        created_at=datetime.fromisoformat(row["created_at"]),
    )
