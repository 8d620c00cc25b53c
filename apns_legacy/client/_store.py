"""A SQLite token store that applies the feedback service's re-registration rule.

Apple (docs/PROTOCOL.md section 8): "Use the timestamp to verify that the device tokens
haven't been reregistered since the feedback entry was generated. For each device
that has not been reregistered, stop sending notifications." So a feedback entry
deactivates a device only when its time is *later* than the device's last
registration. Times are whole UTC epoch seconds, as on the wire; a tie keeps the
device active (the safe side: one more push to a dead token costs nothing, a
wrongly dropped live token loses a user).

Nothing is ever deleted. A deactivated device keeps its row with the reason
(``"feedback"``, or whatever :meth:`TokenStore.deactivate` was given), when we
deactivated it, and the feedback time. A later registration reactivates it, but
only a registration later than the event that deactivated it: a delayed or
replayed old registration does not undo a cleanup.

Each call that changes rows runs in one transaction (``BEGIN IMMEDIATE``, so
concurrent processes such as a cron job and a registration service take turns):
an exception or an interrupt part-way leaves the store exactly as it was.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from typing import IO, Any, Final, Literal

import attrs

from ..wire import DeviceToken, FeedbackItem
from ._sqlite import Moment, SQLiteStore, TokenLike, create_tables, epoch_seconds, from_epoch

ExportKind = Literal["all", "active", "deactivated"]
ExportFormat = Literal["csv", "jsonl"]

#: The reason :meth:`TokenStore.apply_feedback` records.
FEEDBACK_REASON: Final = "feedback"

_SCHEMA_VERSION: Final = 1
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS devices (
    token TEXT PRIMARY KEY,              -- lower-case hex
    topic TEXT,
    registered_at INTEGER NOT NULL,      -- UTC epoch seconds of the last registration
    active INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    deactivated_at INTEGER,              -- when we deactivated it
    deactivated_reason TEXT,             -- "feedback", or a caller's reason
    feedback_time INTEGER                -- the feedback service's time for it
);
CREATE INDEX IF NOT EXISTS devices_inactive ON devices (deactivated_at) WHERE active = 0;
"""
_UPSERT: Final = """
INSERT INTO devices (token, topic, registered_at) VALUES (?1, ?2, ?3)
ON CONFLICT (token) DO UPDATE SET
    topic = COALESCE(excluded.topic, topic),
    registered_at = MAX(registered_at, excluded.registered_at)
"""
# A registration at or after the event that deactivated a device (the feedback time,
# or the deactivation itself for other reasons) brings it back.
_REACTIVATE: Final = """
UPDATE devices SET active = 1, deactivated_at = NULL, deactivated_reason = NULL
WHERE token = ?1 AND active = 0 AND ?3 >= COALESCE(
    CASE deactivated_reason WHEN 'feedback' THEN feedback_time ELSE deactivated_at END, 0)
"""
_CSV_FIELDS: Final = (
    "token",
    "topic",
    "registered_at",
    "active",
    "deactivated_at",
    "deactivated_reason",
    "feedback_time",
)
_COLUMNS: Final = ", ".join(_CSV_FIELDS)
# Tokens per query of inactive_among (SQLite allowed 999 parameters before 3.32).
_LOOKUP_BATCH: Final = 500


def _utc(seconds: int | None) -> _dt.datetime | None:
    return None if seconds is None else from_epoch(seconds)


def _iso(moment: _dt.datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


@attrs.frozen(kw_only=True)
class Device:
    """One row of the store."""

    token: DeviceToken
    topic: str | None
    registered_at: _dt.datetime
    active: bool
    deactivated_at: _dt.datetime | None
    deactivated_reason: str | None
    feedback_time: _dt.datetime | None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; times as ISO-8601 UTC (``...Z``)."""
        return {
            "token": self.token.hex,
            "topic": self.topic,
            "registered_at": _iso(self.registered_at),
            "active": self.active,
            "deactivated_at": _iso(self.deactivated_at),
            "deactivated_reason": self.deactivated_reason,
            "feedback_time": _iso(self.feedback_time),
        }


@attrs.frozen(kw_only=True)
class FeedbackResult:
    """What :meth:`TokenStore.apply_feedback` did with each feedback entry."""

    #: Active devices made inactive (feedback later than their last registration).
    deactivated: int = 0
    #: Active devices kept: registered again at or after the feedback time.
    skipped_reregistered: int = 0
    #: Tokens not in the store.
    unknown: int = 0
    #: Devices that were inactive already (e.g. the same list applied twice).
    already_inactive: int = 0

    @property
    def total(self) -> int:
        return self.deactivated + self.skipped_reregistered + self.unknown + self.already_inactive


@attrs.frozen(kw_only=True)
class StoreCounts:
    """Row counts; ``by_reason`` counts inactive devices per deactivation reason."""

    total: int
    active: int
    deactivated: int
    by_reason: dict[str, int] = attrs.field(factory=dict)


class StoreError(sqlite3.DatabaseError):
    """The file is not a token store (missing, empty, not SQLite, another database, a
    newer schema). The message names the file. A ``sqlite3.DatabaseError``, so code
    that catches SQLite's errors catches it too."""


class TokenStore(SQLiteStore):
    """Device tokens in a SQLite file (or ``":memory:"``), with the feedback rule.

    Args:
        path: the database file, or ``":memory:"``.
        allow_long_tokens: accept tokens of 33 to 100 bytes (32 only by default).
        timeout: seconds to wait for another process's write lock.
        create: make the file and its table if there is none (the default). With
            ``create=False`` a missing or empty file, a file that is not SQLite and a
            SQLite database without the store's table raise :class:`StoreError`
            instead, so that a typo never yields a new empty store.

    Raises:
        StoreError: see ``create``; also a store written by a newer version.

    Example::

        with TokenStore("devices.db") as store:
            store.register("a1b2...", topic="com.example.app")
            result = store.apply_feedback(await read_feedback(context))
            print(result.deactivated, "tokens deactivated")
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        allow_long_tokens: bool = False,
        timeout: float = 30.0,
        create: bool = True,
    ) -> None:
        self.path = os.fspath(path)
        self.allow_long_tokens = allow_long_tokens
        if not create and self.path != ":memory:":
            _check_existing(self.path)
        # isolation_level=None: no implicit transactions; _transaction() is explicit.
        try:
            self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open the token store ({exc})") from exc
        try:
            self._migrate(create)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StoreError(f"{self.path}: not a token store ({exc})") from exc
        except BaseException:
            self._db.close()
            raise

    def _migrate(self, create: bool) -> None:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version > _SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: token store schema version {version} is newer than this "
                f"library's ({_SCHEMA_VERSION})"
            )
        if version == 0 and not create and self.path != ":memory:":
            raise StoreError(f"{self.path}: a SQLite database, but not a token store")

        def make_schema(db: sqlite3.Connection) -> None:
            create_tables(db, _SCHEMA)
            db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")

        if version < _SCHEMA_VERSION:
            self._transaction(make_schema)

    # -- lifecycle ------------------------------------------------------------------

    def check(self) -> list[str]:
        """SQLite's ``PRAGMA quick_check``: the problems found (one line each), or ``[]``
        for a sound store.

        Cheap (it reads every page once, without checking index contents). Run it
        before anything destructive that depends on the store, such as reading the
        feedback service, which clears its list.
        """
        try:
            rows = self._db.execute("PRAGMA quick_check").fetchall()
        except sqlite3.DatabaseError as exc:
            return [str(exc)]
        problems = [str(row[0]) for row in rows]
        if problems == ["ok"]:
            return []
        # One row may hold several problems on several lines, under a
        # "*** in database main ***" heading: one problem per item, one line each.
        lines = (line.strip() for problem in problems for line in problem.splitlines())
        return [line for line in lines if line and not line.startswith("***")] or problems

    # -- registering ----------------------------------------------------------------

    def register(
        self, token: TokenLike, *, topic: str | None = None, at: Moment | None = None
    ) -> None:
        """Record that the app registered ``token`` (at ``at``, default now).

        A known token gets the later of its two registration times, and is active
        again unless it was deactivated by something later than ``at``.

        Raises:
            LocalProtocolError: ``token`` is not a valid device token.
        """
        self.register_many([token], topic=topic, at=at)

    def register_many(
        self, tokens: Iterable[TokenLike], *, topic: str | None = None, at: Moment | None = None
    ) -> int:
        """Register many tokens in one transaction (all or none); returns how many.

        Every token is checked before anything is written.

        Raises:
            LocalProtocolError: one of ``tokens`` is not a valid device token.
        """
        seconds = epoch_seconds(at)
        rows = [(self._hex(token), topic, seconds) for token in tokens]

        def work(db: sqlite3.Connection) -> None:
            db.executemany(_UPSERT, rows)
            db.executemany(_REACTIVATE, rows)

        self._transaction(work)
        return len(rows)

    def deactivate(
        self, tokens: Iterable[TokenLike], *, reason: str, at: Moment | None = None
    ) -> int:
        """Deactivate known active tokens for ``reason`` (e.g. ``"invalid-token"`` after
        status 8); returns how many changed. Unknown and inactive tokens are left alone."""
        if reason == FEEDBACK_REASON:
            raise ValueError("use apply_feedback() for feedback entries")
        seconds = epoch_seconds(at)
        rows = [(seconds, reason, self._hex(token)) for token in tokens]

        def work(db: sqlite3.Connection) -> int:
            changed = 0
            for row in rows:
                cursor = db.execute(
                    "UPDATE devices SET active = 0, deactivated_at = ?1, "
                    "deactivated_reason = ?2 WHERE token = ?3 AND active = 1",
                    row,
                )
                changed += cursor.rowcount
            return changed

        return self._transaction(work)

    # -- the feedback rule ----------------------------------------------------------

    def apply_feedback(
        self, items: Iterable[FeedbackItem], *, now: Moment | None = None
    ) -> FeedbackResult:
        """Apply feedback entries with the re-registration rule, in one transaction.

        A device is deactivated only when the entry's time is later than its last
        registration. Running the same entries again changes nothing. If iterating
        ``items`` raises (or anything else goes wrong), nothing is applied.

        Args:
            items: the entries, e.g. from :func:`read_feedback`.
            now: recorded as ``deactivated_at`` (default the current time).

        Returns:
            How many entries deactivated a device, were skipped because the device
            registered again since, were unknown, or found the device inactive.
        """
        deactivated_at = epoch_seconds(now)

        def work(db: sqlite3.Connection) -> FeedbackResult:
            counts = dict.fromkeys(
                ("deactivated", "skipped_reregistered", "unknown", "already_inactive"), 0
            )
            for item in items:
                token = item.token.hex()
                row = db.execute(
                    "SELECT active, registered_at FROM devices WHERE token = ?", (token,)
                ).fetchone()
                if row is None:
                    counts["unknown"] += 1
                elif not row[0]:
                    counts["already_inactive"] += 1
                elif item.timestamp <= row[1]:
                    counts["skipped_reregistered"] += 1
                else:
                    db.execute(
                        "UPDATE devices SET active = 0, deactivated_at = ?, "
                        "deactivated_reason = ?, feedback_time = ? WHERE token = ?",
                        (deactivated_at, FEEDBACK_REASON, item.timestamp, token),
                    )
                    counts["deactivated"] += 1
            return FeedbackResult(**counts)

        return self._transaction(work)

    # -- reading --------------------------------------------------------------------

    def get(self, token: TokenLike) -> Device | None:
        """The row for ``token``, or None."""
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM devices WHERE token = ?", (self._hex(token),)
        ).fetchone()
        return None if row is None else _device(row)

    def active_tokens(self, *, topic: str | None = None) -> Iterator[DeviceToken]:
        """The tokens to send to: every active device (of ``topic``, if given)."""
        if topic is None:
            cursor = self._db.execute("SELECT token FROM devices WHERE active = 1 ORDER BY token")
        else:
            cursor = self._db.execute(
                "SELECT token FROM devices WHERE active = 1 AND topic = ? ORDER BY token",
                (topic,),
            )
        for (token,) in cursor:
            yield DeviceToken(bytes.fromhex(token))

    def inactive_among(self, tokens: Iterable[TokenLike]) -> dict[DeviceToken, Device]:
        """The deactivated devices among ``tokens``, by token: those not to send to.

        A device deactivated by feedback or a rejection and registered again since is
        active again (see :meth:`register`), so it is not among them. Unknown tokens
        are not either. One query per 500 tokens.

        Raises:
            LocalProtocolError: one of ``tokens`` is not a valid device token.
        """
        hexes = list(dict.fromkeys(self._hex(token) for token in tokens))
        found: dict[DeviceToken, Device] = {}
        for start in range(0, len(hexes), _LOOKUP_BATCH):
            part = hexes[start : start + _LOOKUP_BATCH]
            marks = ",".join("?" * len(part))
            cursor = self._db.execute(
                f"SELECT {_COLUMNS} FROM devices WHERE active = 0 AND token IN ({marks})", part
            )
            for row in cursor:
                device = _device(row)
                found[device.token] = device
        return found

    def deactivated(self, since: Moment | None = None) -> Iterator[Device]:
        """Inactive devices, oldest deactivation first (only those at or after ``since``)."""
        start = -(2**62) if since is None else epoch_seconds(since)
        cursor = self._db.execute(
            f"SELECT {_COLUMNS} FROM devices WHERE active = 0 AND deactivated_at >= ? "
            "ORDER BY deactivated_at, token",
            (start,),
        )
        for row in cursor:
            yield _device(row)

    def devices(self, kind: ExportKind = "all") -> Iterator[Device]:
        """Every device of ``kind`` (``"all"``, ``"active"`` or ``"deactivated"``), by token."""
        where = {"all": "", "active": " WHERE active = 1", "deactivated": " WHERE active = 0"}
        if kind not in where:
            raise ValueError(f"kind must be 'all', 'active' or 'deactivated', not {kind!r}")
        for row in self._db.execute(f"SELECT {_COLUMNS} FROM devices{where[kind]} ORDER BY token"):
            yield _device(row)

    def counts(self) -> StoreCounts:
        """How many devices there are, active and inactive (by reason)."""
        total, active = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(active), 0) FROM devices"
        ).fetchone()
        by_reason = dict(
            self._db.execute(
                "SELECT COALESCE(deactivated_reason, '?'), COUNT(*) FROM devices "
                "WHERE active = 0 GROUP BY 1 ORDER BY 1"
            ).fetchall()
        )
        return StoreCounts(
            total=total, active=active, deactivated=total - active, by_reason=by_reason
        )

    def export(self, kind: ExportKind, fp: IO[str], format: ExportFormat = "csv") -> int:
        """Write devices of ``kind`` to the text file ``fp``; returns how many rows.

        ``csv`` has a header line; ``jsonl`` is one JSON object a line. Columns:
        token, topic, registered_at, active, deactivated_at, deactivated_reason,
        feedback_time (times ISO-8601 UTC, empty/null when not set).
        """
        if format not in ("csv", "jsonl"):
            raise ValueError(f"format must be 'csv' or 'jsonl', not {format!r}")
        writer = csv.DictWriter(fp, fieldnames=_CSV_FIELDS, lineterminator="\n")
        if format == "csv":
            writer.writeheader()
        count = 0
        for device in self.devices(kind):
            data = device.to_json()
            if format == "jsonl":
                fp.write(json.dumps(data, separators=(",", ":")) + "\n")
            else:
                data["active"] = int(data["active"])
                writer.writerow(data)
            count += 1
        return count


_SQLITE_MAGIC: Final = b"SQLite format 3\x00"


def _check_existing(path: str) -> None:
    """Refuse what cannot be an existing token store, before SQLite creates one."""
    try:
        with open(path, "rb") as file:
            head = file.read(len(_SQLITE_MAGIC))
    except FileNotFoundError:
        raise StoreError(f"{path}: no token store there") from None
    except IsADirectoryError:
        raise StoreError(f"{path}: is a directory, not a token store") from None
    except OSError as exc:
        raise StoreError(f"{path}: cannot read ({exc.strerror})") from None
    if not head:
        raise StoreError(f"{path}: an empty file, not a token store")
    if head != _SQLITE_MAGIC:
        raise StoreError(f"{path}: file is not a database (not SQLite), so not a token store")


def _device(row: tuple[Any, ...]) -> Device:
    token, topic, registered_at, active, deactivated_at, reason, feedback_time = row
    registered = _utc(registered_at)
    assert registered is not None
    return Device(
        token=DeviceToken(bytes.fromhex(token)),
        topic=topic,
        registered_at=registered,
        active=bool(active),
        deactivated_at=_utc(deactivated_at),
        deactivated_reason=reason,
        feedback_time=_utc(feedback_time),
    )
