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

import datetime as dt
import math
import sqlite3
import sys
import time
from collections.abc import Iterable
from typing import Final

import trio

from ..client import BAD_TOKEN_REASONS, GONE_REASONS, INVALID_TOKEN_REASON, Device
from ..wire import DeviceToken, FeedbackItem, Status
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
    """The token store of one ``send --db``: lookups before sending, rejections after."""

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
        #: Notifications not sent because the store has their token deactivated.
        self.skipped = 0
        #: Status-8 rejections seen, and how many of them deactivated a device.
        self.rejected = 0
        self.deactivated = 0
        #: HTTP/2: 410 answers seen, and how many found the device registered again since.
        self.gone = 0
        self.reregistered = 0
        #: Set when writing to the store failed (the rejections are in the report).
        self.failure: str | None = None
        self._waiting: list[DeviceToken] = []
        self._waiting_gone: list[FeedbackItem] = []
        self._last_write = time.monotonic()
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
            self.failure = (
                f"--db {self.path}: cannot read the token store any more ({exc}); the rest "
                "is sent without skipping deactivated tokens, and new rejections are not "
                "recorded (apply the report later with `apns-legacy tokens deactivate "
                "--from-report FILE`)"
            )
            print(f"apns-legacy send: {self.failure}", file=sys.stderr)
            return {}

    def rejected_token(self, token: DeviceToken, status: Status | int | None) -> None:
        """Note a rejection; status 8 deactivates the token (in a batch, soon)."""
        if status != Status.INVALID_TOKEN:
            return
        self.rejected += 1
        self._waiting.append(token)
        self._maybe_record()

    def rejected_http2(
        self, token: DeviceToken, reason: str | None, timestamp: dt.datetime | None
    ) -> None:
        """Note an HTTP/2 rejection: BadDeviceToken deactivates the token; a 410 is
        applied with its timestamp (the current time if APNs gave none) as feedback."""
        if reason in BAD_TOKEN_REASONS:
            self.rejected += 1
            self._waiting.append(token)
        elif reason in GONE_REASONS:
            self.gone += 1
            seconds = math.floor(timestamp.timestamp()) if timestamp is not None else time.time()
            self._waiting_gone.append(FeedbackItem(timestamp=int(seconds), token=token.value))
        else:
            return
        self._maybe_record()

    def _maybe_record(self) -> None:
        if (
            len(self._waiting) + len(self._waiting_gone) >= RECORD_BATCH
            or time.monotonic() - self._last_write >= RECORD_EVERY
        ):
            self.record()

    async def keep_recording(self) -> None:
        """Write waiting rejections every RECORD_EVERY seconds, until cancelled."""
        while True:
            await trio.sleep(RECORD_EVERY)
            if self._waiting or self._waiting_gone:
                self.record()

    def record(self) -> None:
        """Deactivate the rejected tokens noted so far, in one transaction."""
        self._last_write = time.monotonic()
        if not (self._waiting or self._waiting_gone) or self.failure is not None:
            return
        waiting, self._waiting = self._waiting, []
        gone, self._waiting_gone = self._waiting_gone, []
        try:
            if waiting:
                self.deactivated += self.store.deactivate(waiting, reason=INVALID_TOKEN_REASON)
            if gone:
                result = self.store.apply_feedback(gone)
                self.deactivated += result.deactivated
                self.reregistered += result.skipped_reregistered
        except sqlite3.Error as exc:
            what = plural(len(waiting) + len(gone), "rejected token")
            self.failure = (
                f"--db {self.path}: could not record {what} "
                f"({exc}); apply the report later with `apns-legacy tokens deactivate "
                "--from-report FILE`"
            )
            print(f"apns-legacy send: {self.failure}", file=sys.stderr)

    def close(self) -> str:
        """Write what is waiting, close the store; the line for the end of the run."""
        if not self._closed:
            self._closed = True
            try:
                self.record()
            finally:
                self.store.close()
        skipped = f"--db {self.path}: {plural(self.skipped, 'deactivated token')} skipped; "
        if self.http2:
            return (
                f"{skipped}{plural(self.rejected, 'token')} rejected as BadDeviceToken, "
                f"{self.gone} gone (410), {self.deactivated} deactivated in the store"
                + (f", {self.reregistered} kept (registered again since the 410)"
                   if self.reregistered else "")
            )  # fmt: skip
        return (
            f"{skipped}{plural(self.rejected, 'token')} rejected as invalid (status 8), "
            f"{self.deactivated} deactivated in the store"
        )
