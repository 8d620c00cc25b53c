"""The bridge's feedback lists: per app (topic), the tokens APNs called gone, in SQLite.

Apple's feedback service kept "one list per topic", listed each token with the time
APNs found the app gone, and cleared the list once it was read (PROTOCOL.md §8). The
bridge fills these lists from HTTP/2 410 answers (Apple's ``timestamp``, in
milliseconds, becomes whole seconds) and, in ``feedback-only`` mode, from
BadDeviceToken; it serves them on the feedback port.

Durable: every change is one committed transaction in a SQLite file (WAL journal), so
a restarted bridge still has what it had not served yet. A token listed twice keeps
its latest time. Each list is bounded: past ``limit`` tokens, the oldest are dropped
(and counted in :attr:`FeedbackStore.dropped`). Reading is two steps, so nothing is
lost when the client goes away mid-read: :meth:`pending` returns the list, and
:meth:`clear` removes exactly what was written to the client afterwards.

The same file keeps the replay ledgers of ``exact`` mode (:meth:`save_ledger`,
:meth:`load_ledger`): the bridge writes a snapshot of every live entry (content,
status, wall-clock expiry) in one transaction, about once a second while a ledger is
not empty and once more when it stops, and reads it back when it starts, so that a
client that replays after a restart is matched as before the restart.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Final

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS feedback (
    topic TEXT NOT NULL,
    token BLOB NOT NULL,
    timestamp INTEGER NOT NULL,       -- UTC epoch seconds: when APNs found the app gone
    PRIMARY KEY (topic, token)
);
CREATE INDEX IF NOT EXISTS feedback_age ON feedback (topic, timestamp);
CREATE TABLE IF NOT EXISTS ledger (
    identity TEXT NOT NULL,           -- the client identity (topic | certificate subject)
    seq INTEGER NOT NULL,             -- the order entries were forwarded in
    token BLOB NOT NULL,
    payload BLOB NOT NULL,
    expiry INTEGER,
    priority INTEGER,
    status INTEGER,                   -- NULL: no answer yet when written; 0: fine; >0
    expires REAL NOT NULL,            -- UTC epoch seconds
    PRIMARY KEY (identity, seq)
);
"""

#: One ledger entry as stored: identity, token, payload, expiry, priority, status and
#: when it expires (UTC epoch seconds).
LedgerRow = tuple[str, bytes, bytes, int | None, int | None, int | None, float]
_ADD: Final = """
INSERT INTO feedback (topic, token, timestamp) VALUES (?1, ?2, ?3)
ON CONFLICT (topic, token) DO UPDATE SET timestamp = MAX(timestamp, excluded.timestamp)
"""
_TRIM: Final = """
DELETE FROM feedback WHERE rowid IN (
    SELECT rowid FROM feedback WHERE topic = ?1 ORDER BY timestamp, rowid LIMIT ?2)
"""


class FeedbackStore:
    """Feedback lists per topic, in a SQLite file (or in memory with ``path=None``).

    Args:
        path: the database file (created if missing); ``None`` for memory only.
        limit: most tokens per topic; older ones are dropped past it.
    """

    def __init__(self, path: str | Path | None, *, limit: int = 1_000_000) -> None:
        self.path = path
        self.limit = limit
        #: Tokens dropped because a list was full, since this store was opened.
        self.dropped = 0
        self._db = sqlite3.connect(":memory:" if path is None else str(path), isolation_level=None)
        if path is not None:
            self._db.execute("PRAGMA journal_mode=WAL")
            # A commit survives the process dying; a power cut may lose the last ones.
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._counts: dict[str, int] = dict(
            self._db.execute("SELECT topic, COUNT(*) FROM feedback GROUP BY topic").fetchall()
        )

    def add(self, topic: str, token: bytes, timestamp: int) -> None:
        """List ``token`` under ``topic`` with ``timestamp`` (UTC epoch seconds)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(_ADD, (topic, token, timestamp))
            count = db.execute(
                "SELECT COUNT(*) FROM feedback WHERE topic = ?1", (topic,)
            ).fetchone()[0]
            if count > self.limit:
                db.execute(_TRIM, (topic, count - self.limit))
                self.dropped += count - self.limit
                count = self.limit
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._counts[topic] = count

    def pending(self, topic: str) -> list[tuple[int, bytes]]:
        """The list of ``topic``, oldest first, as ``(timestamp, token)``; not cleared."""
        rows = self._db.execute(
            "SELECT timestamp, token FROM feedback WHERE topic = ?1 ORDER BY timestamp, rowid",
            (topic,),
        ).fetchall()
        return [(int(ts), bytes(token)) for ts, token in rows]

    def clear(self, topic: str, items: Iterable[tuple[int, bytes]]) -> None:
        """Remove ``items`` (as :meth:`pending` returned them) from ``topic``'s list.

        A token listed again since (a later time) stays listed."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "DELETE FROM feedback WHERE topic = ?1 AND token = ?2 AND timestamp <= ?3",
                [(topic, token, ts) for ts, token in items],
            )
            count = db.execute(
                "SELECT COUNT(*) FROM feedback WHERE topic = ?1", (topic,)
            ).fetchone()[0]
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._counts[topic] = count

    def save_ledger(self, rows: Iterable[LedgerRow]) -> None:
        """Replace the stored ledger entries with ``rows`` (oldest first per identity)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM ledger")
            db.executemany(
                "INSERT INTO ledger (identity, seq, token, payload, expiry, priority, status,"
                " expires) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(row[0], seq, *row[1:]) for seq, row in enumerate(rows)],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def load_ledger(self, now: float) -> list[LedgerRow]:
        """The stored ledger entries that expire after ``now`` (UTC epoch seconds), in
        the order they were saved."""
        rows = self._db.execute(
            "SELECT identity, token, payload, expiry, priority, status, expires FROM ledger"
            " WHERE expires > ?1 ORDER BY seq",
            (now,),
        ).fetchall()
        return [
            (str(i), bytes(t), bytes(p), e, pr, st, float(ex)) for i, t, p, e, pr, st, ex in rows
        ]

    def size(self, topic: str) -> int:
        """How many tokens ``topic``'s list holds."""
        return self._counts.get(topic, 0)

    def sizes(self) -> dict[str, int]:
        """Every non-empty list's size, by topic."""
        return {topic: n for topic, n in self._counts.items() if n}

    def close(self) -> None:
        self._db.close()
