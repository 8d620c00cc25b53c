"""What the project's SQLite stores share: the token store (:class:`TokenStore`) and the
Wallet pass store (``apns_legacy.wallet.PassStore``), which may live in one file.

Times are whole UTC epoch seconds, as on the wire; device tokens are kept as
lower-case hex; the connection is opened with ``isolation_level=None`` (no implicit
transactions) and every change runs in one explicit ``BEGIN IMMEDIATE`` transaction,
so processes sharing the file take turns and a failure part-way leaves it as it was.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import sqlite3
from collections.abc import Callable
from typing import Any, Self, TypeVar

from ..wire import DeviceToken

Moment = _dt.datetime | int | float
TokenLike = DeviceToken | bytes | str

_T = TypeVar("_T")


def epoch_seconds(moment: Moment | None) -> int:
    """Whole UTC epoch seconds from an aware datetime, int or float (None: now)."""
    if moment is None:
        moment = _dt.datetime.now(_dt.UTC)
    if isinstance(moment, _dt.datetime):
        if moment.tzinfo is None:
            raise ValueError("times must be timezone-aware datetimes (naive given)")
        return math.floor(moment.timestamp())
    if not math.isfinite(moment):
        raise ValueError(f"time must be finite, not {moment}")
    return math.floor(moment)


def from_epoch(seconds: int) -> _dt.datetime:
    """Epoch seconds as an aware UTC datetime."""
    return _dt.datetime.fromtimestamp(seconds, tz=_dt.UTC)


def create_tables(db: sqlite3.Connection, schema: str) -> None:
    """Run each statement of ``schema`` (``;``-separated DDL, no ``;`` inside one)."""
    for statement in schema.split(";"):
        if statement.strip():
            db.execute(statement)


class SQLiteStore:
    """The stores' common part: one connection (``_db``), its transactions, closing,
    and device tokens as hex. Subclasses open ``_db`` and set ``path`` and
    ``allow_long_tokens`` in their ``__init__``."""

    path: str
    allow_long_tokens: bool
    _db: sqlite3.Connection
    #: Held around each transaction: nothing by default; a store shared between
    #: threads puts a ``threading.Lock`` here.
    _lock: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _transaction(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work`` in one write transaction: all of it is kept, or none."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                result = work(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return result

    def _hex(self, token: TokenLike) -> str:
        """``token`` as lower-case hex, checked (32 bytes, or up to 100 with
        ``allow_long_tokens``).

        Raises:
            LocalProtocolError: not a valid device token.
        """
        if isinstance(token, DeviceToken):
            return token.hex
        if isinstance(token, str):
            return DeviceToken.from_hex(token, allow_long=self.allow_long_tokens).hex
        return DeviceToken.from_bytes(token, allow_long=self.allow_long_tokens).hex
