"""Passes, their update tags and device registrations, in SQLite.

The tables live beside the token store's (``apns_legacy.client.TokenStore``) and may
share its file: every table here is prefixed ``wallet_``, and the schema version is
kept in a table of our own (``wallet_schema``), not in ``PRAGMA user_version``, which
belongs to the token store.

**Tags.** Apple's update tag is opaque to the device, "typically a timestamp". Here a
pass's tag is UTC epoch seconds, and it is also its ``Last-Modified`` time. Each
update gives the pass ``max(now, highest tag in the store + 1)``: tags never repeat
and never go backwards, so "serial numbers updated since tag T" (``tag > T``) misses
nothing even when several passes change within one second, and a device that fetched
a pass never gets ``304 Not Modified`` for a later version. (The price: a burst of
more than one update per second runs the tags, and the ``Last-Modified`` times, a few
seconds ahead of the clock.)

**Registrations.** A device (Wallet's ``deviceLibraryIdentifier``) has one push token;
it registers passes one by one. Unregistering the last pass of a device removes the
device. A push token that the gateway rejects (status 8) is removed with every
registration of the devices that hold it, as Apple asks.

Each change runs in one ``BEGIN IMMEDIATE`` transaction, so the web service and a
``wallet update`` in another process take turns.
"""

from __future__ import annotations

import datetime as _dt
import os
import sqlite3
import threading
from collections.abc import Iterable
from typing import Any, Final

import attrs

from ..client._sqlite import SQLiteStore, TokenLike, create_tables, epoch_seconds, from_epoch
from ..wire import FeedbackItem

_SCHEMA_VERSION: Final = 1
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS wallet_schema (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS wallet_passes (
    pass_type_id TEXT NOT NULL,
    serial_number TEXT NOT NULL,
    authentication_token TEXT NOT NULL,
    tag INTEGER NOT NULL,                -- update tag = Last-Modified, UTC epoch seconds
    content_digest TEXT NOT NULL,        -- SHA-256 hex of the manifest
    pkpass BLOB NOT NULL,                -- the signed archive as served
    PRIMARY KEY (pass_type_id, serial_number)
);
CREATE INDEX IF NOT EXISTS wallet_passes_tag ON wallet_passes (pass_type_id, tag);
CREATE TABLE IF NOT EXISTS wallet_devices (
    device_library_id TEXT PRIMARY KEY,
    push_token TEXT NOT NULL,            -- lower-case hex
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS wallet_devices_token ON wallet_devices (push_token);
CREATE TABLE IF NOT EXISTS wallet_registrations (
    device_library_id TEXT NOT NULL,
    pass_type_id TEXT NOT NULL,
    serial_number TEXT NOT NULL,
    registered_at INTEGER NOT NULL,
    PRIMARY KEY (device_library_id, pass_type_id, serial_number)
);
CREATE INDEX IF NOT EXISTS wallet_registrations_pass
    ON wallet_registrations (pass_type_id, serial_number);
"""
#: Longest device library identifier or serial number accepted (Apple's are far shorter).
MAX_IDENTIFIER_LENGTH: Final = 256


def check_identifier(name: str, value: str) -> str:
    """``value`` if it is a usable identifier (non-empty, printable, not too long).

    Raises:
        ValueError: naming ``name`` and the limit.
    """
    if not value or len(value) > MAX_IDENTIFIER_LENGTH or not value.isprintable():
        raise ValueError(
            f"{name} must be 1 to {MAX_IDENTIFIER_LENGTH} printable characters, not {value!r}"
        )
    return value


@attrs.frozen(kw_only=True)
class StoredPass:
    """A pass as the store holds it (``pkpass`` is None when not asked for)."""

    pass_type_id: str
    serial_number: str
    authentication_token: str = attrs.field(repr=False)
    tag: int
    content_digest: str
    pkpass: bytes | None = attrs.field(default=None, repr=False)
    #: Registered devices (filled in by :meth:`PassStore.passes`).
    devices: int = 0

    @property
    def last_modified(self) -> _dt.datetime:
        """The time the current version was made: the tag as an aware UTC datetime."""
        return from_epoch(self.tag)


@attrs.frozen(kw_only=True)
class Registration:
    """A device registered for a pass, with its push token (hex)."""

    device_library_id: str
    push_token: str
    pass_type_id: str
    serial_number: str
    registered_at: _dt.datetime


@attrs.frozen(kw_only=True)
class UpdatedSerials:
    """The answer to "which of my passes changed since this tag"."""

    serial_numbers: list[str]
    #: The tag to ask with next time (the newest tag among them), as Wallet stores it.
    last_updated: str


@attrs.frozen(kw_only=True)
class PassFeedbackResult:
    """What :meth:`PassStore.apply_feedback` did."""

    #: Devices forgotten (the entry was later than their last registration).
    removed_devices: int = 0
    #: Their registrations, removed with them.
    removed_registrations: int = 0
    #: Devices kept: registered again at or after the entry's time.
    kept_reregistered: int = 0
    #: Entries whose token no device holds.
    unknown: int = 0


class PassStore(SQLiteStore):
    """Wallet passes and device registrations in a SQLite file (or ``":memory:"``).

    Args:
        path: the database file (created if missing); may be the token store's file.
        allow_long_tokens: accept push tokens of 33 to 100 bytes (32 only by default).
        timeout: seconds to wait for another process's write lock.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        allow_long_tokens: bool = False,
        timeout: float = 30.0,
    ) -> None:
        self.path = os.fspath(path)
        self.allow_long_tokens = allow_long_tokens
        # isolation_level=None: no implicit transactions; _transaction() is explicit.
        # check_same_thread=False: the web service calls in from worker threads. One
        # lock around every statement and transaction keeps callers in different
        # threads from interleaving inside each other's transactions.
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.path, timeout=timeout, isolation_level=None, check_same_thread=False
        )
        try:
            self._migrate()
        except BaseException:
            self._db.close()
            raise

    def _migrate(self) -> None:
        def version_of(db: sqlite3.Connection) -> int:
            exists = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'wallet_schema'"
            ).fetchone()
            row = db.execute("SELECT version FROM wallet_schema").fetchone() if exists else None
            return 0 if row is None else int(row[0])

        def migrate(db: sqlite3.Connection) -> None:
            version = version_of(db)
            if version > _SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    f"{self.path}: wallet schema version {version} is newer than this "
                    f"library's ({_SCHEMA_VERSION})"
                )
            if version == _SCHEMA_VERSION:
                return
            # Version 0 -> 1: create everything. Later versions add steps here, each
            # in this same transaction.
            create_tables(db, _SCHEMA)
            db.execute("DELETE FROM wallet_schema")
            db.execute("INSERT INTO wallet_schema (version) VALUES (?)", (_SCHEMA_VERSION,))

        self._transaction(migrate)

    def _query(self, sql: str, parameters: tuple[object, ...]) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, parameters).fetchall()

    # -- passes ---------------------------------------------------------------------

    def put_pass(
        self,
        *,
        pass_type_id: str,
        serial_number: str,
        authentication_token: str,
        pkpass: bytes,
        content_digest: str,
        now: _dt.datetime | float | None = None,
    ) -> int:
        """Store a new version of a pass (or its first) with a new tag; returns the tag.

        The tag is ``max(now, highest tag in the store + 1)`` (see the module notes).
        """
        check_identifier("passTypeIdentifier", pass_type_id)
        check_identifier("serialNumber", serial_number)
        seconds = epoch_seconds(now)

        def work(db: sqlite3.Connection) -> int:
            (highest,) = db.execute("SELECT COALESCE(MAX(tag), 0) FROM wallet_passes").fetchone()
            tag = max(seconds, int(highest) + 1)
            db.execute(
                "INSERT INTO wallet_passes (pass_type_id, serial_number, authentication_token,"
                " tag, content_digest, pkpass) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (pass_type_id, serial_number) DO UPDATE SET"
                " authentication_token = excluded.authentication_token, tag = excluded.tag,"
                " content_digest = excluded.content_digest, pkpass = excluded.pkpass",
                (pass_type_id, serial_number, authentication_token, tag, content_digest, pkpass),
            )
            return tag

        return self._transaction(work)

    def get_pass(
        self, pass_type_id: str, serial_number: str, *, with_pkpass: bool = True
    ) -> StoredPass | None:
        """The pass, or None if the store does not have it."""
        rows = self._query(
            "SELECT authentication_token, tag, content_digest"
            + (", pkpass" if with_pkpass else "")
            + " FROM wallet_passes WHERE pass_type_id = ? AND serial_number = ?",
            (pass_type_id, serial_number),
        )
        if not rows:
            return None
        row = rows[0]
        return StoredPass(
            pass_type_id=pass_type_id,
            serial_number=serial_number,
            authentication_token=row[0],
            tag=row[1],
            content_digest=row[2],
            pkpass=bytes(row[3]) if with_pkpass else None,
        )

    def passes(self, pass_type_id: str | None = None) -> list[StoredPass]:
        """Every pass (of ``pass_type_id``), without the archive, with device counts."""
        rows = self._query(
            "SELECT p.pass_type_id, p.serial_number, p.authentication_token, p.tag,"
            " p.content_digest, COUNT(r.device_library_id) FROM wallet_passes AS p"
            " LEFT JOIN wallet_registrations AS r USING (pass_type_id, serial_number)"
            " WHERE ?1 IS NULL OR p.pass_type_id = ?1"
            " GROUP BY p.pass_type_id, p.serial_number ORDER BY p.pass_type_id, p.serial_number",
            (pass_type_id,),
        )
        return [
            StoredPass(
                pass_type_id=row[0],
                serial_number=row[1],
                authentication_token=row[2],
                tag=row[3],
                content_digest=row[4],
                devices=row[5],
            )
            for row in rows
        ]

    # -- registrations --------------------------------------------------------------

    def register(
        self,
        *,
        device_library_id: str,
        push_token: TokenLike,
        pass_type_id: str,
        serial_number: str,
        now: _dt.datetime | float | None = None,
    ) -> bool:
        """Register a device for a pass; True if new, False if it was registered already.

        The device's push token is replaced by ``push_token`` either way (a device
        that registers again may have a new one).

        Raises:
            ValueError: an empty or overlong identifier.
            LocalProtocolError: ``push_token`` is not a valid device token.
        """
        check_identifier("deviceLibraryIdentifier", device_library_id)
        token = self._hex(push_token)
        seconds = epoch_seconds(now)

        def work(db: sqlite3.Connection) -> bool:
            db.execute(
                "INSERT INTO wallet_devices (device_library_id, push_token, updated_at)"
                " VALUES (?, ?, ?) ON CONFLICT (device_library_id) DO UPDATE SET"
                " push_token = excluded.push_token, updated_at = excluded.updated_at",
                (device_library_id, token, seconds),
            )
            cursor = db.execute(
                "INSERT OR IGNORE INTO wallet_registrations (device_library_id, pass_type_id,"
                " serial_number, registered_at) VALUES (?, ?, ?, ?)",
                (device_library_id, pass_type_id, serial_number, seconds),
            )
            return cursor.rowcount == 1

        return self._transaction(work)

    def unregister(self, *, device_library_id: str, pass_type_id: str, serial_number: str) -> bool:
        """Remove one registration (and the device, if it was its last); True if it existed."""

        def work(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "DELETE FROM wallet_registrations WHERE device_library_id = ?"
                " AND pass_type_id = ? AND serial_number = ?",
                (device_library_id, pass_type_id, serial_number),
            )
            db.execute(
                "DELETE FROM wallet_devices WHERE device_library_id = ? AND NOT EXISTS"
                " (SELECT 1 FROM wallet_registrations WHERE device_library_id = ?)",
                (device_library_id, device_library_id),
            )
            return cursor.rowcount == 1

        return self._transaction(work)

    def remove_push_tokens(self, tokens: Iterable[TokenLike]) -> int:
        """Forget devices holding these push tokens, with all their registrations.

        For tokens the gateway rejected as invalid (status 8). Returns how many
        registrations were removed.
        """
        hexes = [self._hex(token) for token in tokens]

        def work(db: sqlite3.Connection) -> int:
            removed = 0
            for token in hexes:
                cursor = db.execute(
                    "DELETE FROM wallet_registrations WHERE device_library_id IN"
                    " (SELECT device_library_id FROM wallet_devices WHERE push_token = ?)",
                    (token,),
                )
                removed += cursor.rowcount
                db.execute("DELETE FROM wallet_devices WHERE push_token = ?", (token,))
            return removed

        return self._transaction(work)

    def apply_feedback(self, items: Iterable[FeedbackItem]) -> PassFeedbackResult:
        """Apply the feedback service's list with Apple's re-registration rule.

        A device whose push token is listed is forgotten, with its registrations, only
        when the entry is *later* than the device's last registration (whole seconds;
        a tie keeps it), as for the token store. One transaction for the whole list.
        """
        entries = [(item.token.hex(), item.timestamp) for item in items]

        def work(db: sqlite3.Connection) -> PassFeedbackResult:
            removed_devices = removed = kept = unknown = 0
            for token, timestamp in entries:
                devices = db.execute(
                    "SELECT device_library_id, updated_at FROM wallet_devices WHERE push_token = ?",
                    (token,),
                ).fetchall()
                if not devices:
                    unknown += 1
                for device, updated_at in devices:
                    if timestamp <= updated_at:
                        kept += 1
                        continue
                    cursor = db.execute(
                        "DELETE FROM wallet_registrations WHERE device_library_id = ?", (device,)
                    )
                    removed += cursor.rowcount
                    db.execute("DELETE FROM wallet_devices WHERE device_library_id = ?", (device,))
                    removed_devices += 1
            return PassFeedbackResult(
                removed_devices=removed_devices,
                removed_registrations=removed,
                kept_reregistered=kept,
                unknown=unknown,
            )

        return self._transaction(work)

    def registrations(
        self, pass_type_id: str | None = None, serial_number: str | None = None
    ) -> list[Registration]:
        """Registrations (of one pass type, or one pass), with each device's push token."""
        rows = self._query(
            "SELECT r.device_library_id, d.push_token, r.pass_type_id, r.serial_number,"
            " r.registered_at FROM wallet_registrations AS r"
            " JOIN wallet_devices AS d USING (device_library_id)"
            " WHERE (?1 IS NULL OR r.pass_type_id = ?1) AND (?2 IS NULL OR r.serial_number = ?2)"
            " ORDER BY r.pass_type_id, r.serial_number, r.device_library_id",
            (pass_type_id, serial_number),
        )
        return [
            Registration(
                device_library_id=row[0],
                push_token=row[1],
                pass_type_id=row[2],
                serial_number=row[3],
                registered_at=from_epoch(row[4]),
            )
            for row in rows
        ]

    def push_tokens(self, pass_type_id: str, serial_number: str) -> list[str]:
        """The distinct push tokens (hex) of the devices registered for a pass."""
        return sorted({reg.push_token for reg in self.registrations(pass_type_id, serial_number)})

    def updated_since(
        self, device_library_id: str, pass_type_id: str, tag: int | None
    ) -> UpdatedSerials | None:
        """The device's passes of this type whose tag is later than ``tag`` (None: all).

        Returns None when there are none (the web service answers 204).
        """
        rows = self._query(
            "SELECT p.serial_number, p.tag FROM wallet_registrations AS r"
            " JOIN wallet_passes AS p USING (pass_type_id, serial_number)"
            " WHERE r.device_library_id = ? AND r.pass_type_id = ? AND p.tag > ?"
            " ORDER BY p.serial_number",
            (device_library_id, pass_type_id, -1 if tag is None else tag),
        )
        if not rows:
            return None
        return UpdatedSerials(
            serial_numbers=[row[0] for row in rows],
            last_updated=str(max(row[1] for row in rows)),
        )
