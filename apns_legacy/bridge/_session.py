"""One legacy client's gateway connection through the bridge.

Theory of operation. Two tasks share a *window*: the notifications of this
connection, in the order the client sent them, from the oldest one whose fate the
client has not yet been told of (successes at its head are popped as soon as they
resolve, remembering the last identifier for status 10).

* The reader reads up to 64 KiB, feeds the sans-IO :class:`GatewayDecoder` (the
  simulator's decoder: commands 0, 1 and 2 in any chunking, statuses 2-7 decided while
  parsing) and, for each notification: checks that it can become an HTTP/2 request
  (else a local status: 7 for size, 255 for a payload that is not a JSON object with
  content); in ``exact`` mode offers it to the identity's replay ledger; otherwise
  waits for room in the window (``max_in_flight``: a full window stops the reading,
  so a fast client is slowed by TCP back-pressure, never buffered without bound) and
  submits it to the app's HTTP/2 sender. A bad notification ends the reading at once;
  nothing after it is forwarded, as on Apple's gateway. So does, in ``exact`` and
  ``serial`` modes, the first upstream failure of this connection.
* The decider waits until the window's head is a failure (every notification before
  it has resolved fine: it is the lowest failed identifier, exactly the one Apple would
  have named), or until nothing is left to wait for (the client closed, or the bridge
  is stopping). Then the reader is stopped and the connection ends: the error frame
  ``08 status id`` in one write (command 0: no frame, as Apple), the notifications
  forwarded after the failed one handed to the ledger (``exact``), and a close that
  lets the frame arrive (close_notify, FIN, then reading until the client closes).
  A stopping bridge sends status 10 naming the last notification that succeeded.

In ``feedback-only`` mode upstream answers never fail (the mapping turns them into
silence), so only local statuses end a connection early. ``serial`` is ``exact`` with
a window of one: nothing is forwarded before the previous notification has resolved,
so nothing after a failure has reached Apple and no ledger is needed.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Awaitable, Callable
from typing import Final, Literal

import attrs
import trio

from ..h2wire import AppSettings, infer_push_type, payload_limit
from ..simulator._streams import CloseMode, close
from ..wire import (
    NEED_DATA,
    BadNotification,
    Command,
    DeviceToken,
    GatewayDecoder,
    LocalProtocolError,
    Notification,
    ProtocolError,
    ReceivedNotification,
    Status,
    encode_error_response,
)
from ._config import BridgeMode
from ._replay import OK, Entry, Key, ReplayLedger

logger = logging.getLogger("apns_legacy.bridge")

READ_SIZE: Final = 65536
#: The key of a notification refused locally: never forwarded, never in a ledger.
_LOCAL: Final[Key] = (b"", b"", None, None)

#: Submits one notification upstream; the entry resolves when its answer comes.
Submit = Callable[[Notification, Entry], Awaitable[None]]


@attrs.define
class SessionStats:
    """Counters of the bridge's gateway side, shared by all its connections."""

    connections: int = 0
    notifications: int = 0
    forwarded: int = 0
    #: Notifications a replay matched in the ledger (not sent upstream again).
    replay_matched: int = 0
    local_errors: int = 0
    error_frames: int = 0
    shutdown_frames: int = 0
    silent_closes: int = 0
    #: Most notifications one connection held unanswered at once (``max_in_flight`` bounds it).
    peak_window: int = 0
    by_status: collections.Counter[int] = attrs.Factory(collections.Counter)


class _Slot:
    __slots__ = ("command", "entry", "identifier")

    def __init__(self, identifier: int, command: int, entry: Entry) -> None:
        self.identifier = identifier
        self.command = command
        self.entry = entry


@attrs.frozen
class Ending:
    """How a connection ended (for logs and tests)."""

    kind: Literal["frame", "silent", "shutdown", "closed"]
    status: int = 0
    identifier: int = 0


class GatewaySession:
    """The server side of one legacy gateway connection (see the module docstring).

    Args:
        stream: the decrypted connection; closed by :meth:`run`.
        number: this connection's number (logs).
        settings: the app's HTTP/2 settings (topic), or ``None`` for a client
            certificate that names no configured app: every notification is refused
            with status 3, as Apple refused unknown topics.
        submit: hands a notification to the app's HTTP/2 sender.
        mode: the app's replay mode.
        ledger: the client identity's replay ledger (``exact`` mode only).
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        number: int,
        settings: AppSettings | None,
        submit: Submit,
        mode: BridgeMode,
        ledger: ReplayLedger | None,
        stats: SessionStats,
        payload_limit: int,
        max_in_flight: int,
        rewrite_payload: bytes | None = None,
        on_forward: Callable[[], None] | None = None,
    ) -> None:
        self.stream = stream
        self.number = number
        self.settings = settings
        self.submit = submit
        self.mode = mode
        self.ledger = ledger if mode is BridgeMode.EXACT else None
        self.stats = stats
        self.payload_limit = payload_limit
        self.max_in_flight = 1 if mode is BridgeMode.SERIAL else max_in_flight
        self.rewrite_payload = rewrite_payload
        #: The last (payload, topic) that passed the payload check: bulk sends repeat
        #: one payload, and parsing its JSON again for each device was the bridge's
        #: largest cost per notification.
        self._checked: tuple[bytes, str | None] | None = None
        self.on_forward = on_forward
        self.window: collections.deque[_Slot] = collections.deque()
        self.failed = False  # an upstream failure in this window: stop forwarding
        self.reading_done = False
        self.stopping = False  # the bridge is shutting down
        self.last_ok: int | None = None
        self.last_ok_command: int | None = None
        self.ending: Ending | None = None
        self._changed = trio.Event()
        self._reader_scope = trio.CancelScope()

    # -- called by entries and the bridge ----------------------------------------------

    def resolved(self, entry: Entry) -> None:
        if entry.status != OK and self.mode is not BridgeMode.FEEDBACK_ONLY:
            self.failed = True
        self._advance()
        self._wake()

    def request_shutdown(self) -> None:
        """The bridge is stopping: stop reading, drain, then status 10 (or the failure)."""
        self.stopping = True
        self._reader_scope.cancel()
        self._wake()

    # -- the connection ----------------------------------------------------------------

    async def run(self) -> Ending:
        """Serve the connection until it ends; returns how it ended."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._reader)
                await self._decide()
                self._reader_scope.cancel()
            ending = self._ending()
            self.ending = ending
            await self._end(ending)
            return ending
        finally:
            # Entries still pending answer to nobody now (410s still reach feedback).
            for slot in self.window:
                if slot.entry.owner is self:
                    slot.entry.owner = None

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _advance(self) -> None:
        window = self.window
        while window and window[0].entry.status == OK:
            slot = window.popleft()
            self.last_ok = slot.identifier
            self.last_ok_command = slot.command

    def _head_failed(self) -> bool:
        return bool(self.window) and self.window[0].entry.status not in (None, OK)

    async def _decide(self) -> None:
        while True:
            changed = self._changed
            if self._head_failed():
                return
            if self.reading_done and not self.window:
                return
            await changed.wait()

    def _ending(self) -> Ending:
        if self._head_failed():
            head = self.window[0]
            status = head.entry.status
            assert status is not None
            if head.command == Command.SIMPLE:
                return Ending("silent", status, 0)
            return Ending("frame", status, head.identifier)
        if self.stopping:
            if self.last_ok_command == Command.SIMPLE:
                return Ending("silent", Status.SHUTDOWN, 0)
            return Ending("shutdown", Status.SHUTDOWN, self.last_ok or 0)
        return Ending("closed")

    async def _end(self, ending: Ending) -> None:
        stats = self.stats
        if ending.kind == "frame" or (ending.kind == "silent" and ending.status != Status.SHUTDOWN):
            stats.by_status[ending.status] += 1
            if self.ledger is not None:
                # What this connection forwarded after the failed one: Apple would have
                # discarded it, so the client resends it; the ledger absorbs that.
                after = [
                    slot.entry for slot in list(self.window)[1:] if slot.entry.key is not _LOCAL
                ]
                if after:
                    self.ledger.add(after)
                    logger.debug(
                        "gateway #%d: %d forwarded after id %d wait in the ledger",
                        self.number,
                        len(after),
                        ending.identifier,
                    )
        if ending.kind in ("frame", "shutdown"):
            logger.debug(
                "gateway #%d: error %d for id %d", self.number, ending.status, ending.identifier
            )
            try:
                await self.stream.send_all(encode_error_response(ending.status, ending.identifier))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                logger.debug(
                    "gateway #%d: client gone before its error frame: %r", self.number, exc
                )
            if ending.kind == "frame":
                stats.error_frames += 1
            else:
                stats.shutdown_frames += 1
        elif ending.kind == "silent":
            stats.silent_closes += 1
        if ending.kind == "closed":
            await close(self.stream)
        else:
            # close_notify, FIN, then read until the client closes: the frame arrives
            # before any reset could destroy it.
            await close(self.stream, CloseMode.DRAIN)

    # -- reading -------------------------------------------------------------------------

    async def _reader(self) -> None:
        decoder = GatewayDecoder(payload_limit=self.payload_limit)
        stream = self.stream
        try:
            with self._reader_scope:
                while True:
                    data = await stream.receive_some(READ_SIZE)
                    if not data:
                        logger.debug("gateway #%d: the client closed", self.number)
                        break
                    decoder.receive_data(data)
                    if not await self._drain(decoder):
                        break
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            logger.debug("gateway #%d: connection lost: %r", self.number, exc)
        finally:
            self.reading_done = True
            self._wake()

    def _must_stop(self) -> bool:
        # A method, not the attributes: they change while the reader awaits.
        return self.failed or self.stopping

    def _refuse(self, status: int, identifier: int, command: int, reason: str) -> None:
        logger.debug(
            "gateway #%d: status %d for id %d (%s)", self.number, status, identifier, reason
        )
        self.stats.local_errors += 1
        entry = Entry(_LOCAL, None)
        entry.status = status
        self.window.append(_Slot(identifier, command, entry))

    async def _drain(self, decoder: GatewayDecoder) -> bool:
        """Handle every complete event; False when the reading must stop."""
        stats = self.stats
        while True:
            if self._must_stop():
                return False
            event = decoder.next_event()
            if event is NEED_DATA:
                return True
            if isinstance(event, BadNotification):
                self._refuse(event.status, event.identifier, event.command, event.reason)
                return False
            if not isinstance(event, ReceivedNotification):
                return True  # ConnectionClosed: only after EOF
            stats.notifications += 1
            identifier = event.identifier or 0
            if self.settings is None:
                self._refuse(
                    Status.MISSING_TOPIC,
                    identifier,
                    event.command,
                    "the client certificate names no configured app",
                )
                return False
            key: Key = (event.token, event.payload, event.expiry, event.priority)
            # A ledger match was checked when it was first forwarded (same content).
            entry = self.ledger.take(key, self) if self.ledger is not None else None
            if entry is not None:
                stats.replay_matched += 1
                logger.debug(
                    "gateway #%d: id %d is a replay of one already forwarded",
                    self.number,
                    identifier,
                )
            else:
                notification = self._notification(event)
                if isinstance(notification, tuple):
                    self._refuse(notification[0], identifier, event.command, notification[1])
                    return False
                while len(self.window) >= self.max_in_flight:
                    changed = self._changed
                    await changed.wait()
                    if self._must_stop():
                        return False
                entry = Entry(key, self)
                await self.submit(notification, entry)
                stats.forwarded += 1
                if self.on_forward is not None:
                    self.on_forward()
            self.window.append(_Slot(identifier, event.command, entry))
            if len(self.window) > stats.peak_window:
                stats.peak_window = len(self.window)
            if entry.status is not None:
                self.resolved(entry)

    def _notification(self, event: ReceivedNotification) -> Notification | tuple[int, str]:
        """The notification to forward, or the local status and why it cannot be."""
        settings = self.settings
        assert settings is not None
        payload = self.rewrite_payload or event.payload
        try:
            notification = Notification(
                token=DeviceToken.from_bytes(event.token, allow_long=True),
                payload=payload,
                expiry=event.expiry or 0,
                priority=event.priority or 10,
            )
            # What build_request will check for these settings (no push type or priority
            # of their own): a JSON object with content, and the push type's size limit.
            checked = (payload, settings.topic)
            if checked != self._checked:
                push_type = infer_push_type(payload, settings.topic)
                if len(payload) > payload_limit(push_type):
                    return Status.INVALID_PAYLOAD_SIZE, f"payload over {payload_limit(push_type)}"
                self._checked = checked
        except (LocalProtocolError, ProtocolError, ValueError, TypeError) as exc:
            # Not a JSON object, or one with nothing to show: APNs would refuse the
            # request (HTTP/2 has no such payload); the binary table has no closer code.
            return Status.UNKNOWN, str(exc)
        return notification
