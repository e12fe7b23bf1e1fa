"""Notifications and signed decision links: who was told what, and the links' uses.

Split from :mod:`runner.store.recording` along a concept: what agentrun sent people about a
run (:mod:`runner.notify`) and the single-use links those messages carry
(:mod:`runner.web.links`), as opposed to what the run did. The class is a part of
:class:`runner.store.recording.SQLRunStore`, which holds the connection.

A notification is claimed before it is sent (``INSERT ... ON CONFLICT DO NOTHING`` on the unique
``(event_key, channel)``): whichever process claims it sends it, and no other does. Its end
(``sent`` or ``failed``) is a ``notification`` entry of the run event log, in the same
transaction. A link's one use is marked in the transaction of the decision it makes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from . import event_log
from .database import Database
from .rows import DecisionLinkRow, NotificationRow
from .schedule import now_iso

T = TypeVar("T")


class NotificationRecords:
    """Notifications, decision links and their refusals, on the store's connection."""

    db: Database

    # -- notifications ----------------------------------------------------------------------

    def claim_notification(
        self, run_id: str, event: str, event_key: str, channel: str
    ) -> int | None:
        """Claim the sending of ``event_key`` to ``channel``: the new row's id, or None.

        None when any process claimed it before (the row exists): that process sends it.
        ``channel`` must already have its secrets masked. The row starts ``pending``.
        """
        rows = self.db.execute(
            """INSERT INTO notifications (run_id, event, event_key, channel, status,
               attempts, created_at) VALUES (?, ?, ?, ?, 'pending', 0, ?)
               ON CONFLICT DO NOTHING RETURNING id""",
            (run_id, event, event_key, channel, now_iso()),
        ).fetchall()
        return int(rows[0][0]) if rows else None

    def notification_attempted(
        self, notification_id: int, status: str, attempts: int, error: str | None
    ) -> None:
        """Record an attempt of notification ``notification_id``.

        ``status`` is ``pending`` (another attempt follows), ``sent`` or ``failed`` (the
        last); ``error`` is the failure's text with secrets masked (None when sent). The
        last attempt writes a ``notification`` entry of the run event log in its
        transaction.
        """
        now = now_iso()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            row = self.db.execute(
                """UPDATE notifications SET status = ?, attempts = ?, error = ?,
                   sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END
                   WHERE id = ? RETURNING run_id, event, channel""",
                (status, attempts, error, status, now, notification_id),
            ).fetchone()
            if row is not None and status != "pending":
                data = {
                    "event": row["event"],
                    "channel": row["channel"],
                    "status": status,
                    "attempts": attempts,
                    "error": error,
                }
                event_log.append(self.db, row["run_id"], "notification", data, now)
        except BaseException:
            self.db.rollback()
            raise
        self.db.commit()

    def notifications(self, run_id: str | None = None) -> list[NotificationRow]:
        """Notifications, oldest first, of one run or of all."""
        if run_id is None:
            rows = self.db.execute("SELECT * FROM notifications ORDER BY id")
        else:
            rows = self.db.execute(
                "SELECT * FROM notifications WHERE run_id = ? ORDER BY id", (run_id,)
            )
        return [cast(NotificationRow, dict(r)) for r in rows]

    # -- decision links ---------------------------------------------------------------------

    def add_decision_link(
        self,
        nonce: str,
        run_id: str,
        call_id: str,
        action: str,
        arguments_sha256: str,
        expires_at: str,
    ) -> None:
        """Record a link minted for a notification (its nonce; never the token itself)."""
        self.db.execute(
            """INSERT INTO decision_links (nonce, run_id, call_id, action, arguments_sha256,
               created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)""",
            (nonce, run_id, call_id, action, arguments_sha256, now_iso(), expires_at),
        )

    def decision_link(self, nonce: str) -> DecisionLinkRow | None:
        """The link with ``nonce``, or None."""
        row = self.db.execute("SELECT * FROM decision_links WHERE nonce = ?", (nonce,)).fetchone()
        return None if row is None else cast(DecisionLinkRow, dict(row))

    def use_decision_link(
        self, nonce: str, by: str, decide: Callable[[], tuple[T, str]]
    ) -> tuple[T, str] | None:
        """Use link ``nonce`` once: mark it used and make its decision in one transaction.

        ``decide`` makes the decision through this store's own methods (which join the
        transaction) and returns its result and the outcome to record (``approved``,
        ``denied``, ``answered``). None when the link was used already (nothing decided);
        an exception from ``decide`` rolls back the mark too, and propagates.
        """
        self.db.execute("BEGIN IMMEDIATE")
        try:
            cursor = self.db.execute(
                """UPDATE decision_links SET used_at = ?, used_by = ?
                   WHERE nonce = ? AND used_at IS NULL""",
                (now_iso(), by, nonce),
            )
            if cursor.rowcount != 1:
                self.db.rollback()
                return None
            result = decide()
            self.db.execute(
                "UPDATE decision_links SET outcome = ? WHERE nonce = ?", (result[1], nonce)
            )
        except BaseException:
            if self.db.in_transaction:
                self.db.rollback()
            raise
        self.db.commit()
        return result

    def refuse_decision_link(
        self, nonce: str | None, run_id: str | None, reason: str, remote: str | None
    ) -> None:
        """Record a refused use of a link (used twice, expired, bad signature, ...)."""
        self.db.execute(
            """INSERT INTO decision_link_refusals (nonce, run_id, reason, remote, created_at)
               VALUES (?, ?, ?, ?, ?)""",
            (nonce, run_id, reason, remote, now_iso()),
        )

    def decision_link_refusals(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Refused uses of decision links, oldest first, of one run or of all."""
        if run_id is None:
            rows = self.db.execute("SELECT * FROM decision_link_refusals ORDER BY id")
        else:
            rows = self.db.execute(
                "SELECT * FROM decision_link_refusals WHERE run_id = ? ORDER BY id", (run_id,)
            )
        return [dict(r) for r in rows]
