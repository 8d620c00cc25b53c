"""One gateway connection, over any ``trio.abc.Stream`` (TLS in service, memory in tests).

The loop reads up to 64 KiB, feeds the sans-IO :class:`GatewayDecoder`, and drains
it before reading again, so a connection holds at most one read plus one incomplete
frame (the decoder keeps no more than one unfinished unit). Each well-formed
notification goes through, in order:

1. the reject faults (``Fault.reject``) and the sink's refusal (the simulator's
   invalid tokens: status 8);
2. acceptance: counted, and handed to the sink (the simulator records it, and for
   an "uninstalled" token adds it to the feedback list);
3. the shutdown, reset and drop faults that count accepted notifications.

The first refusal ends the connection, as on Apple's gateway: the 6-byte error frame
goes out in one write (so it arrives as one TLS record), then the stream is closed
as ``config.error_close`` says (by default a reset if the client's bytes wait unread,
else a graceful close), and whatever the client sent after the bad notification is
dropped unread. Command 0 carries no identifier, so a refusal there closes without a
frame; so does an unparsable stream (unknown command byte, broken command-2 framing:
status 128 in the decoder) unless ``protocol_error_frames`` asks for ``08 80 <id>``.

:class:`GatewayConnection` needs only the configuration, the faults
(:class:`GatewayFaults`, e.g. an empty ``FaultBook``), a :class:`GatewaySink` and a
:class:`SimulatorStats`: it knows nothing of the :class:`Simulator`, so other servers
(a bridge) can reuse the decoding, validation and error frames with their own sink.
"""

from __future__ import annotations

import logging
import time
from typing import Final, Literal, Protocol

import attrs
import trio

from ..wire import (
    NEED_DATA,
    BadNotification,
    Command,
    GatewayDecoder,
    ReceivedNotification,
    RemoteProtocolError,
    Status,
    encode_error_response,
)
from . import _streams
from ._config import ErrorClose, SimulatorConfig
from ._fault_book import ConnectionFaults
from ._faults import DropAfter, Reject, ResetAfter, ShutdownAfter, SplitErrors
from ._records import ErrorRecord, SimulatorStats

logger = logging.getLogger("apns_legacy.simulator")

#: Most bytes asked of the stream at once.
READ_SIZE: Final = _streams.READ_SIZE


class GatewaySink(Protocol):
    """Where a gateway connection's notifications go (the :class:`Simulator`, a bridge, ...)."""

    def refusal(self, notification: ReceivedNotification) -> int | None:
        """The status to refuse a well-formed notification with, or ``None`` to accept it."""
        ...

    def accept(
        self, notification: ReceivedNotification, connection: int, topic: str, now: float, /
    ) -> None:
        """Take one accepted notification from ``connection`` (its number) with the
        certificate's ``topic``; ``now`` is the UNIX time of the read that brought it."""
        ...

    def error_sent(self, record: ErrorRecord) -> None:
        """An error frame was written."""
        ...

    def after_read(self) -> None:
        """Everything of one read was handled (flush records, wake waiters)."""
        ...


class GatewayFaults(Protocol):
    """What a gateway connection asks of the faults (``FaultBook`` answers all of it)."""

    #: True when some fault must look at each notification or at byte counts.
    per_notification: bool

    def take_connection_faults(self) -> ConnectionFaults: ...

    def check_reject(self, seen_on_connection: int, token: bytes) -> Reject | None: ...

    def check_accepted(
        self, accepted_on_connection: int
    ) -> ShutdownAfter | ResetAfter | DropAfter | None: ...

    def check_bytes(
        self, received_before: int, size: int
    ) -> tuple[int, ResetAfter | DropAfter] | None: ...

    def error_delay(self) -> float: ...

    def error_split(self) -> SplitErrors | None: ...


@attrs.frozen
class _Ending:
    """How a connection ends: an error frame, a silent close, a reset or a clean drop."""

    kind: Literal["frame", "silent", "reset", "drop"]
    status: int = 0
    identifier: int = 0
    reason: str = ""


class GatewayConnection:
    """The server side of one gateway connection. Create, then ``await run()``.

    Args:
        stream: the (decrypted) connection; closed by :meth:`run`.
        config: the validation limits, ``protocol_error_frames``, ``error_close`` and
            ``idle_timeout`` are read from it.
        faults: the faults to apply.
        sink: takes accepted notifications and may refuse some.
        stats: counters to update.
        number: this connection's number (in logs and records).
        topic: the client certificate's topic; ``None`` refuses every notification
            with status 3 (missing topic).
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        config: SimulatorConfig,
        faults: GatewayFaults,
        sink: GatewaySink,
        stats: SimulatorStats,
        number: int,
        topic: str | None,
    ) -> None:
        self.stream = stream
        self.config = config
        self.faults = faults
        self.sink = sink
        self.stats = stats
        self.number = number
        self.topic = topic
        self.bytes_received = 0
        self.seen = 0  # well-formed notifications, rejected ones included
        self.accepted = 0
        # Identifier of the last accepted notification, for status 10; None for command 0.
        self.last_identifier: int | None = None
        self.last_command: int | None = None

    async def run(self) -> None:
        config = self.config
        stats = self.stats
        faults = self.faults
        sink = self.sink
        decoder = GatewayDecoder(
            payload_limit=config.payload_limit, max_token_length=config.max_token_length
        )
        conditions = faults.take_connection_faults()
        slow = conditions.slow_reader
        read_size = slow.chunk if slow is not None else READ_SIZE
        idle = (
            conditions.idle_timeout.seconds
            if conditions.idle_timeout is not None
            else config.idle_timeout
        )
        # Bytes left before a stop-reading fault stops the reading; None: no such fault.
        stop_after = conditions.stop_reading.after_bytes if conditions.stop_reading else None
        stream = self.stream
        while True:
            if stop_after is not None:
                if stop_after <= 0:
                    await self._stall()
                    return
                size = min(read_size, stop_after)
            else:
                size = read_size
            if idle is None:
                data = await stream.receive_some(size)
            else:
                data = None
                with trio.move_on_after(idle):
                    data = await stream.receive_some(size)
                if data is None:
                    logger.debug("gateway #%d: idle for %ss, closing", self.number, idle)
                    stats.idle_closes += 1
                    await _streams.close(stream)
                    return
            if not data:
                decoder.receive_eof()
                try:
                    decoder.next_event()
                except RemoteProtocolError as exc:
                    logger.debug("gateway #%d: %s", self.number, exc)
                await _streams.close(stream)
                return
            if stop_after is not None:
                stop_after -= len(data)
            cut = (
                faults.check_bytes(self.bytes_received, len(data))
                if faults.per_notification
                else None
            )
            if cut is not None:
                data = data[: cut[0]]
            self.bytes_received += len(data)
            stats.bytes_received += len(data)
            decoder.receive_data(data)
            ending = self._drain(decoder)
            if decoder.buffered > stats.max_buffered:
                stats.max_buffered = decoder.buffered
            sink.after_read()
            if ending is None and cut is not None:
                kind: Literal["reset", "drop"] = (
                    "reset" if isinstance(cut[1], ResetAfter) else "drop"
                )
                ending = _Ending(kind, reason=f"{kind} after {self.bytes_received} bytes")
            if ending is not None:
                await self._end(ending)
                return
            if slow is not None:
                await trio.sleep(len(data) / slow.bytes_per_second)

    async def _stall(self) -> None:
        # The stop-reading fault: never read again, never close; the client's writes
        # fill the buffers and block. Ends when the simulator (or bridge) cancels us.
        logger.debug(
            "gateway #%d: stopped reading after %d bytes", self.number, self.bytes_received
        )
        self.stats.stalls += 1
        await trio.sleep_forever()

    def _drain(self, decoder: GatewayDecoder) -> _Ending | None:
        # The hot path: keep per-notification work to a minimum.
        stats = self.stats
        faults = self.faults
        sink = self.sink
        refusal = sink.refusal
        accept = sink.accept
        topic = self.topic
        number = self.number
        now = time.time()
        while True:
            event = decoder.next_event()
            if event is NEED_DATA:
                return None
            if type(event) is ReceivedNotification:
                self.seen += 1
                identifier = event.identifier or 0
                if topic is None:
                    return self._refuse(
                        event.command,
                        Status.MISSING_TOPIC,
                        identifier,
                        "the certificate names no topic (subject UID)",
                    )
                if faults.per_notification:
                    reject = faults.check_reject(self.seen, event.token)
                    if reject is not None:
                        return self._refuse(
                            event.command, reject.status, identifier, "rejected by a fault"
                        )
                status = refusal(event)
                if status is not None:
                    return self._refuse(
                        event.command, status, identifier, "refused (e.g. an invalid token)"
                    )
                self.accepted += 1
                stats.accepted += 1
                self.last_identifier = event.identifier
                self.last_command = event.command
                accept(event, number, topic, now)
                if faults.per_notification:
                    after = faults.check_accepted(self.accepted)
                    if isinstance(after, ShutdownAfter):
                        return self._shutdown()
                    if isinstance(after, ResetAfter):
                        return _Ending("reset", reason=f"reset after {self.accepted} notifications")
                    if isinstance(after, DropAfter):
                        return _Ending("drop", reason=f"drop after {self.accepted} notifications")
            elif isinstance(event, BadNotification):
                return self._refuse(event.command, event.status, event.identifier, event.reason)
            else:  # ConnectionClosed comes only after receive_eof()
                return None

    def _refuse(self, command: int, status: int, identifier: int, reason: str) -> _Ending:
        self.stats.rejected += 1
        if command == Command.SIMPLE:
            # Command 0 has no error response: Apple closed without a word (ALF).
            return _Ending("silent", status, identifier, f"command 0: {reason}")
        if status == Status.PROTOCOL_ERROR and not self.config.protocol_error_frames:
            # TN2265: "zero bytes back" for an invalid command byte or parse error.
            return _Ending("silent", status, identifier, reason)
        return _Ending("frame", status, identifier, reason)

    def _shutdown(self) -> _Ending:
        if self.last_command == Command.SIMPLE:
            return _Ending("silent", Status.SHUTDOWN, 0, "shutdown after a command-0 notification")
        return _Ending("frame", Status.SHUTDOWN, self.last_identifier or 0, "shutdown fault")

    async def _end(self, ending: _Ending) -> None:
        stats = self.stats
        stream = self.stream
        if ending.kind == "reset":
            logger.debug("gateway #%d: %s", self.number, ending.reason)
            stats.resets += 1
            await _streams.reset(stream)
            return
        if ending.kind == "drop":
            logger.debug("gateway #%d: %s (clean close)", self.number, ending.reason)
            stats.drops += 1
            await _streams.close(stream, _streams.CloseMode.DRAIN)
            return
        if ending.kind == "silent":
            logger.debug("gateway #%d: closing without a frame (%s)", self.number, ending.reason)
            stats.silent_closes += 1
            await self._close_after_error()
            return
        delay = self.faults.error_delay()
        if delay:
            await _streams.discard_for(stream, delay)
        frame = encode_error_response(ending.status, ending.identifier)
        logger.debug(
            "gateway #%d: error %d for id %d (%s)",
            self.number,
            ending.status,
            ending.identifier,
            ending.reason,
        )
        split = self.faults.error_split()
        if split is None:
            # One write: the 6 bytes travel in one TLS record, ahead of the close.
            await stream.send_all(frame)
        else:
            start = 0
            for index, size in enumerate(split.pieces):
                if index:
                    await _streams.discard_for(stream, split.gap)
                await stream.send_all(frame[start : start + size])
                start += size
        stats.error_frames += 1
        self.sink.error_sent(
            ErrorRecord(
                connection=self.number,
                status=ending.status,
                identifier=ending.identifier,
                reason=ending.reason,
                time=time.time(),
            )
        )
        await self._close_after_error()

    async def _close_after_error(self) -> None:
        policy = self.config.error_close
        stream = self.stream
        if policy is ErrorClose.DRAIN:
            await _streams.close(stream, _streams.CloseMode.DRAIN)
        elif policy is ErrorClose.RESET or _streams.pending_input(stream):
            if policy is ErrorClose.RESET_IF_UNREAD:
                self.stats.unread_resets += 1
                logger.debug("gateway #%d: client bytes unread, closing with a reset", self.number)
            await _streams.reset(stream)
        else:
            await _streams.close(stream)
