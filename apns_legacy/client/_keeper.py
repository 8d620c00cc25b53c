"""StoreKeeper: what ``send --db`` does, for programs that send through the library.

Two halves around one :class:`TokenStore`:

* before sending, :meth:`StoreKeeper.split` sorts notifications into those to send and
  those whose token the store has deactivated (status 8 from an earlier send, or the
  feedback service) and that have not registered again since: one query per 500 tokens;
* while sending, :meth:`StoreKeeper.on_outcome` (pass it to ``open_sender``) notes every
  status-8 rejection and deactivates those tokens with the reason ``"invalid-token"``,
  in one transaction per batch: when ``batch`` are waiting, at the first rejection a
  second or more after the last write, and on :meth:`save` (leaving the ``with`` block).
  Given to ``open_http2_sender`` instead, it does the same for 400 BadDeviceToken, and
  applies a 410 (Unregistered, ExpiredToken) the way a feedback tuple is applied, at the
  410's timestamp: the device is deactivated only if it has not registered again since.

So a job that sends every day stops paying for the same dead tokens every day.

A write that fails inside :meth:`StoreKeeper.on_outcome` (the store's disk is full, a
lock held too long by another process) raises ``sqlite3.Error`` out of the sender's
callback, which ends the send, unless an ``on_error`` hook is given: the keeper then
hands it the error, stops writing, and keeps counting; what was not written is
``unsaved`` (the outcomes are all still reported, so nothing is lost for good: a
report can be applied later, as ``tokens deactivate --from-report`` does).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable
from typing import Final

from ..wire import DeviceToken, FeedbackItem, Notification, Status
from ._ledger import OutcomeCallback
from ._outcomes import Outcome
from ._store import Device, TokenStore

#: The reason recorded for a status-8 rejection (what ``tokens deactivate
#: --from-report`` and ``send --db`` record).
INVALID_TOKEN_REASON: Final = "invalid-token"
#: HTTP/2 reasons that mean the token is bad (deactivated like status 8).
BAD_TOKEN_REASONS: Final = frozenset({"BadDeviceToken"})
#: HTTP/2 reasons (status 410) that mean the app is gone: applied as feedback entries.
GONE_REASONS: Final = frozenset({"Unregistered", "ExpiredToken"})


class StoreKeeper:
    """Skips tokens a :class:`TokenStore` has deactivated; records new status-8 rejections.

    Args:
        store: an open token store (the keeper does not close it).
        on_outcome: your own outcome callback; the keeper calls it for every outcome
            after noting a rejection.
        batch: rejections waiting before they are written at once.
        every: seconds after which the next rejection writes what is waiting.
        on_error: called with the ``sqlite3.Error`` of a write that failed inside
            :meth:`on_outcome`, instead of raising it into the sender; the keeper
            writes nothing more after it (see :attr:`failure` and :attr:`unsaved`).

    Example::

        with TokenStore("devices.db") as store, StoreKeeper(store) as keeper:
            send, dead = keeper.split(notifications)
            async with open_sender(ctx, on_outcome=keeper.on_outcome) as sender:
                await sender.submit_many(send)
    """

    def __init__(
        self,
        store: TokenStore,
        *,
        on_outcome: OutcomeCallback | None = None,
        batch: int = 1000,
        every: float = 1.0,
        on_error: Callable[[sqlite3.Error], None] | None = None,
    ) -> None:
        if batch < 1:
            raise ValueError(f"batch must be at least 1, not {batch}")
        self.store = store
        self._forward = on_outcome
        self._batch = batch
        self._every = every
        self._on_error = on_error
        #: The error that stopped the writes (only with ``on_error``), if one did.
        self.failure: sqlite3.Error | None = None
        self._waiting: list[DeviceToken] = []
        self._waiting_gone: list[FeedbackItem] = []
        self._last_write = time.monotonic()
        #: Notifications :meth:`split` kept back (their token is deactivated).
        self.skipped = 0
        #: Status-8 (or BadDeviceToken) rejections seen, 410s seen, how many devices
        #: they deactivated in the store, and 410s whose device registered again since.
        self.rejected = 0
        self.gone = 0
        self.deactivated = 0
        self.reregistered = 0

    def split(
        self, notifications: Iterable[Notification]
    ) -> tuple[list[Notification], list[tuple[Notification, Device]]]:
        """``(to_send, skipped)``: skipped pairs each notification with the store's
        record of its device (``deactivated_reason``, ``deactivated_at``). Order kept."""
        items = list(notifications)
        dead = self.store.inactive_among(n.token for n in items)
        if not dead:
            return items, []
        send: list[Notification] = []
        skipped: list[tuple[Notification, Device]] = []
        for notification in items:
            device = dead.get(notification.token)
            if device is None:
                send.append(notification)
            else:
                skipped.append((notification, device))
        self.skipped += len(skipped)
        return send, skipped

    def on_outcome(self, outcome: Outcome) -> None:
        """The sender's outcome callback: notes status 8 (HTTP/2: 400 BadDeviceToken,
        410), then calls yours."""
        status = outcome.status
        if status == Status.INVALID_TOKEN or (
            status == 400 and outcome.reason in BAD_TOKEN_REASONS
        ):
            self.rejected += 1
            self._waiting.append(outcome.notification.token)
            self._save_if_due()
        elif status == 410 and outcome.reason in GONE_REASONS:
            self.gone += 1
            moment = getattr(outcome, "timestamp", None)  # an Http2Outcome's 410 time
            seconds = int(moment.timestamp()) if moment is not None else int(time.time())
            self._waiting_gone.append(
                FeedbackItem(timestamp=seconds, token=outcome.notification.token.value)
            )
            self._save_if_due()
        if self._forward is not None:
            self._forward(outcome)

    @property
    def unsaved(self) -> int:
        """Rejections noted and not written to the store yet (all of them after a failure)."""
        return len(self._waiting) + len(self._waiting_gone)

    def _save_if_due(self) -> None:
        if self.failure is None and (
            self.unsaved >= self._batch or time.monotonic() - self._last_write >= self._every
        ):
            self.save_or_report()

    def save_or_report(self) -> int:
        """:meth:`save`, handing an error to ``on_error`` if there is one (then nothing
        more is written); without the hook the error is raised. 0 after a failure."""
        if self.failure is not None:
            return 0
        try:
            return self.save()
        except sqlite3.Error as exc:
            if self._on_error is None:
                raise
            self.failure = exc
            self._on_error(exc)
            return 0

    def save(self) -> int:
        """Deactivate the rejected tokens noted so far (one transaction for the status-8
        kind, one for the 410s); how many devices changed (unknown and already inactive
        tokens, and devices registered again since a 410, change nothing)."""
        self._last_write = time.monotonic()
        changed = 0
        if self._waiting:
            waiting, self._waiting = self._waiting, []
            try:
                changed += self.store.deactivate(waiting, reason=INVALID_TOKEN_REASON)
            except BaseException:
                self._waiting = waiting + self._waiting  # kept for the next try
                raise
        if self._waiting_gone:
            gone, self._waiting_gone = self._waiting_gone, []
            try:
                result = self.store.apply_feedback(gone)
            except BaseException:
                self._waiting_gone = gone + self._waiting_gone
                raise
            changed += result.deactivated
            self.reregistered += result.skipped_reregistered
        self.deactivated += changed
        return changed

    def __enter__(self) -> StoreKeeper:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.save_or_report()
