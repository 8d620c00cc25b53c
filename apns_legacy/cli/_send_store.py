"""``send --db PATH``: skip what the token store knows is dead, record what the gateway kills.

Before anything is sent the store is opened (a missing file or one that is not a
token store is refused, exit 2) and checked (``PRAGMA quick_check``; a damaged store
is refused, exit 1), so a typo or a broken file never turns into a send that
silently ignores the store.

While sending, every notification whose token the store has deactivated (status 8
from an earlier send, or the feedback service) and that has not registered again
since is not sent: it is reported as ``skipped`` with the reason, counted in the
summary, and makes the exit code 1 like a skipped input line. Tokens are looked up
a batch at a time (one query per input chunk), never loaded all at once.

Tokens the gateway rejects with status 8 (invalid token) are deactivated in the
store as the rejections come in, with the reason ``invalid-token`` (what
``tokens deactivate --from-report`` records), in one transaction per batch: when
1,000 are waiting, else within a second, and at the end.

With ``send --http2`` the same goes for 400 BadDeviceToken (deactivated as
``invalid-token``), and a 410 (Unregistered, ExpiredToken) is applied the way a
feedback tuple is, with the 410's timestamp (whole seconds, as HTTP2.md section 5 maps
it): the device is deactivated only if it has not registered again since that time,
and a registration after it brings the device back (the re-registration rule of
:meth:`TokenStore.apply_feedback`).
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterable
from typing import Final

import trio

from ..client import Device, StoreKeeper
from ..wire import DeviceToken
from ._exit import Failed
from ._text import plural
from ._tokens import damage_is_one_line, open_store

#: Rejected tokens waiting to be written to the store before a write is due anyway.
RECORD_BATCH: Final = 1000
#: Seconds between writes of rejected tokens to the store while sending.
RECORD_EVERY: Final = 1.0


def _iso(device: Device) -> str:
    moment = device.deactivated_at
    return "an unknown time" if moment is None else moment.isoformat().replace("+00:00", "Z")


def skip_reason(device: Device) -> str:
    """The report's reason for a token the store has deactivated."""
    return (
        f"deactivated in the token store ({device.deactivated_reason or 'no reason given'}, "
        f"{_iso(device)}); not sent"
    )


class StoreGuard:
    """The token store of one ``send --db``: lookups before sending; rejections after,
    written by a :class:`StoreKeeper` (the library's ``send --db``) in batches."""

    def __init__(self, path: str, *, allow_long_tokens: bool, http2: bool = False) -> None:
        self.path = path
        self.http2 = http2
        self.store = open_store(path, create=False, allow_long_tokens=allow_long_tokens)
        with damage_is_one_line(path):
            problems = self.store.check()
        if problems:
            self.store.close()
            raise Failed(
                f"--db {path}: the token store is damaged ({problems[0]}); nothing was sent. "
                "Restore it from a backup, or try `sqlite3 FILE .recover`"
            )
        #: Records rejections (and 410s) in the store; counts them.
        self.keeper = StoreKeeper(
            self.store, batch=RECORD_BATCH, every=RECORD_EVERY, on_error=self._write_failed
        )
        #: Notifications not sent because the store has their token deactivated.
        self.skipped = 0
        #: Set when the store failed while sending (the rejections are in the report).
        self.failure: str | None = None
        self._closed = False

    def dead(self, tokens: Iterable[DeviceToken]) -> dict[DeviceToken, Device]:
        """The deactivated devices among ``tokens``.

        A store that fails while sending (it was sound when checked) is reported once
        and no longer consulted: the rest is sent as if its tokens were unknown, and the
        exit code is 1.
        """
        if self.failure is not None:
            return {}
        try:
            return self.store.inactive_among(tokens)
        except sqlite3.Error as exc:
            self._failed(
                f"cannot read the token store any more ({exc}); the rest is sent without "
                "skipping deactivated tokens, and new rejections are not recorded"
            )
            return {}

    def _write_failed(self, exc: sqlite3.Error) -> None:
        what = plural(self.keeper.unsaved, "rejected token")
        self._failed(f"could not record {what} ({exc})")

    def _failed(self, what: str) -> None:
        self.failure = (
            f"--db {self.path}: {what}; apply the report later with `apns-legacy tokens "
            "deactivate --from-report FILE`"
        )
        if self.keeper.failure is None:  # a failed read stops the writes too
            self.keeper.failure = sqlite3.Error(what)
        print(f"apns-legacy send: {self.failure}", file=sys.stderr)

    async def keep_recording(self) -> None:
        """Write waiting rejections every RECORD_EVERY seconds, until cancelled."""
        while True:
            await trio.sleep(RECORD_EVERY)
            if self.keeper.unsaved:
                self.keeper.save_or_report()

    def close(self) -> str:
        """Write what is waiting, close the store; the line for the end of the run."""
        if not self._closed:
            self._closed = True
            try:
                self.keeper.save_or_report()
            finally:
                self.store.close()
        keeper = self.keeper
        skipped = f"--db {self.path}: {plural(self.skipped, 'deactivated token')} skipped; "
        if self.http2:
            return (
                f"{skipped}{plural(keeper.rejected, 'token')} rejected as BadDeviceToken, "
                f"{keeper.gone} gone (410), {keeper.deactivated} deactivated in the store"
                + (f", {keeper.reregistered} kept (registered again since the 410)"
                   if keeper.reregistered else "")
            )  # fmt: skip
        return (
            f"{skipped}{plural(keeper.rejected, 'token')} rejected as invalid (status 8), "
            f"{keeper.deactivated} deactivated in the store"
        )
