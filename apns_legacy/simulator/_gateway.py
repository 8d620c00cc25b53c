"""One gateway connection, over any ``trio.abc.Stream`` (TLS in service, memory in tests).

The loop reads up to 64 KiB, feeds the sans-IO :class:`GatewayDecoder`, and drains
it before reading again, so a connection holds at most one read plus one incomplete
frame (the decoder keeps no more than one unfinished unit). Each well-formed
notification goes through, in order:

1. the reject faults (``Fault.reject``) and the configured invalid tokens (status 8);
2. acceptance: counted, recorded, and for an "uninstalled" token added to the
   feedback list with the time of the push;
3. the shutdown and reset faults that count accepted notifications.

The first refusal ends the connection, as on Apple's gateway: the 6-byte error frame
goes out in one write (so it arrives as one TLS record), then the stream is closed
gracefully, and whatever the client sent after the bad notification is dropped
unread. Command 0 carries no identifier, so a refusal there closes without a frame;
so does an unparsable stream (unknown command byte, broken command-2 framing: status
128 in the decoder) unless ``protocol_error_frames`` asks for ``08 80 <id>``.
"""

from __future__ import annotations

import logging
import socket
import struct
import time
from typing import TYPE_CHECKING, Final, Literal

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
from ._faults import ResetAfter, ShutdownAfter
from ._records import AcceptedRecord, ErrorRecord

if TYPE_CHECKING:
    from ._simulator import Simulator

logger = logging.getLogger("apns_legacy.simulator")

#: Most bytes asked of the stream at once.
READ_SIZE: Final = 65536
_LINGER_ZERO: Final = struct.pack("ii", 1, 0)


@attrs.frozen
class _Ending:
    """How a connection ends: an error frame, a silent close, or a TCP reset."""

    kind: Literal["frame", "silent", "reset"]
    status: int = 0
    identifier: int = 0
    reason: str = ""


class GatewayConnection:
    """The server side of one gateway connection. Create, then ``await run()``."""

    def __init__(
        self, sim: Simulator, stream: trio.abc.Stream, *, number: int, topic: str | None
    ) -> None:
        self.sim = sim
        self.stream = stream
        self.number = number
        self.topic = topic
        self.bytes_received = 0
        self.seen = 0  # well-formed notifications, rejected ones included
        self.accepted = 0
        # Identifier of the last accepted notification, for status 10; None for command 0.
        self.last_identifier: int | None = None
        self.last_command: int | None = None

    async def run(self) -> None:
        sim = self.sim
        decoder = GatewayDecoder(
            payload_limit=sim.payload_limit, max_token_length=sim.max_token_length
        )
        conditions = sim.faults.take_connection_faults()
        slow = conditions.slow_reader
        read_size = slow.chunk if slow is not None else READ_SIZE
        idle = conditions.idle_timeout.seconds if conditions.idle_timeout is not None else None
        stream = self.stream
        while True:
            if idle is None:
                data = await stream.receive_some(read_size)
            else:
                data = None
                with trio.move_on_after(idle):
                    data = await stream.receive_some(read_size)
                if data is None:
                    logger.debug("gateway #%d: idle for %ss, closing", self.number, idle)
                    sim.stats.idle_closes += 1
                    await _close(stream)
                    return
            if not data:
                decoder.receive_eof()
                try:
                    decoder.next_event()
                except RemoteProtocolError as exc:
                    logger.debug("gateway #%d: %s", self.number, exc)
                await _close(stream)
                return
            cut = (
                sim.faults.check_bytes(self.bytes_received, len(data))
                if sim.faults.per_notification
                else None
            )
            if cut is not None:
                data = data[:cut]
            self.bytes_received += len(data)
            sim.stats.bytes_received += len(data)
            decoder.receive_data(data)
            ending = self._drain(decoder)
            if decoder.buffered > sim.stats.max_buffered:
                sim.stats.max_buffered = decoder.buffered
            sim.flush_records()
            sim.changed()
            if ending is None and cut is not None:
                ending = _Ending("reset", reason=f"reset after {self.bytes_received} bytes")
            if ending is not None:
                await self._end(ending)
                return
            if slow is not None:
                await trio.sleep(len(data) / slow.bytes_per_second)

    def _drain(self, decoder: GatewayDecoder) -> _Ending | None:
        # The hot path: keep per-notification work to a minimum.
        sim = self.sim
        faults = sim.faults
        invalid = sim.invalid_tokens
        uninstalled = sim.uninstalled_tokens
        keep = sim.keeps_records
        now: float | None = None
        while True:
            event = decoder.next_event()
            if event is NEED_DATA:
                return None
            if type(event) is ReceivedNotification:
                self.seen += 1
                identifier = event.identifier or 0
                if self.topic is None:
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
                if event.token in invalid:
                    return self._refuse(
                        event.command,
                        Status.INVALID_TOKEN,
                        identifier,
                        "the token is in the invalid set",
                    )
                self.accepted += 1
                sim.stats.accepted += 1
                self.last_identifier = event.identifier
                self.last_command = event.command
                if keep or uninstalled:
                    if now is None:
                        now = time.time()
                    if keep:
                        sim.record(self._record(event, now))
                    if event.token in uninstalled:
                        sim.feedback.add(self.topic, event.token, int(now))
                if faults.per_notification:
                    after = faults.check_accepted(self.accepted)
                    if isinstance(after, ShutdownAfter):
                        return self._shutdown()
                    if isinstance(after, ResetAfter):
                        return _Ending("reset", reason=f"reset after {self.accepted} notifications")
            elif isinstance(event, BadNotification):
                return self._refuse(event.command, event.status, event.identifier, event.reason)
            else:  # ConnectionClosed comes only after receive_eof()
                return None

    def _record(self, event: ReceivedNotification, now: float) -> AcceptedRecord:
        return AcceptedRecord(
            connection=self.number,
            command=int(event.command),
            identifier=event.identifier,
            token=event.token.hex(),
            payload=event.payload.decode("utf-8", "replace"),
            expiry=event.expiry,
            priority=event.priority,
            time=now,
            topic=self.topic,
        )

    def _refuse(self, command: int, status: int, identifier: int, reason: str) -> _Ending:
        self.sim.stats.rejected += 1
        if command == Command.SIMPLE:
            # Command 0 has no error response: Apple closed without a word (ALF).
            return _Ending("silent", status, identifier, f"command 0: {reason}")
        if status == Status.PROTOCOL_ERROR and not self.sim.protocol_error_frames:
            # TN2265: "zero bytes back" for an invalid command byte or parse error.
            return _Ending("silent", status, identifier, reason)
        return _Ending("frame", status, identifier, reason)

    def _shutdown(self) -> _Ending:
        if self.last_command == Command.SIMPLE:
            return _Ending("silent", Status.SHUTDOWN, 0, "shutdown after a command-0 notification")
        return _Ending("frame", Status.SHUTDOWN, self.last_identifier or 0, "shutdown fault")

    async def _end(self, ending: _Ending) -> None:
        sim = self.sim
        stream = self.stream
        if ending.kind == "reset":
            logger.debug("gateway #%d: %s", self.number, ending.reason)
            sim.stats.resets += 1
            await reset(stream)
            return
        if ending.kind == "silent":
            logger.debug("gateway #%d: closing without a frame (%s)", self.number, ending.reason)
            sim.stats.silent_closes += 1
            sim.changed()
            await _close(stream)
            return
        delay = sim.faults.error_delay()
        if delay:
            await _discard_for(stream, delay)
        frame = encode_error_response(ending.status, ending.identifier)
        logger.debug(
            "gateway #%d: error %d for id %d (%s)",
            self.number,
            ending.status,
            ending.identifier,
            ending.reason,
        )
        # One write: the 6 bytes travel in one TLS record, ahead of the close.
        await stream.send_all(frame)
        sim.stats.error_frames += 1
        sim.errors_sent.append(
            ErrorRecord(
                connection=self.number,
                status=ending.status,
                identifier=ending.identifier,
                reason=ending.reason,
                time=time.time(),
            )
        )
        sim.changed()
        await _close(stream)


async def _discard_for(stream: trio.abc.Stream, seconds: float) -> None:
    """Read and drop whatever arrives for ``seconds`` (or until EOF)."""
    with trio.move_on_after(seconds):
        while await stream.receive_some(READ_SIZE):
            pass
        # EOF before the delay ran out: still wait out the delay.
        await trio.sleep(seconds)


async def _close(stream: trio.abc.Stream) -> None:
    """Close gracefully; a peer that is already gone is not an error."""
    try:
        await stream.aclose()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


def _socket_stream(stream: trio.abc.Stream) -> trio.SocketStream | None:
    # Walk down TLS (or other) wrappers to the TCP stream, if there is one.
    current: object = stream
    for _ in range(8):
        if isinstance(current, trio.SocketStream):
            return current
        current = getattr(current, "transport_stream", None)
        if current is None:
            return None
    return None


async def reset(stream: trio.abc.Stream) -> None:
    """Close abruptly: SO_LINGER 0 makes the kernel send RST and drop unsent data."""
    tcp = _socket_stream(stream)
    if tcp is None:
        await trio.aclose_forcefully(stream)
        return
    try:
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
    except OSError:
        pass
    await trio.aclose_forcefully(tcp)
