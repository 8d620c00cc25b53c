"""The scripted gateway and feedback service of one case, built from the wire and TLS layers.

Not the simulator: a case needs exact control over what goes out and when (an
error response in pieces, each its own TLS record; a reset with the client's data
unread; a delay during which the client's writes are read and dropped; a silent
close right after the handshake; a server certificate the client must refuse), and
a record of every arrival with its fate, for grading.

One :class:`CaseGateway` serves every connection of one case (a client reconnects
after an error response), over any transport: TCP from ``conform run`` and
``conform serve``, or trio memory streams in tests. Every connection records its
bytes both ways (first and last KiB) and a timeline. Errors of one connection end
that connection only.
"""

from __future__ import annotations

import logging
import math
import socket
import struct
from typing import Final

import attrs
import trio
from cryptography import x509
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

from ..tls import TLSStream, certificate_topic
from ..wire import (
    NEED_DATA,
    BadNotification,
    Command,
    GatewayDecoder,
    ReceivedNotification,
    RemoteProtocolError,
    Status,
    encode_error_response,
    encode_feedback_item,
)
from ._catalogue import CLIENT_TOPIC
from ._grading import ranges
from ._model import (
    Arrival,
    BadFrame,
    Case,
    Close,
    ConnectionLog,
    Fate,
    Observation,
    Service,
    token_case,
    token_index,
)

logger = logging.getLogger("apns_legacy.conform")

_READ_SIZE: Final = 65536
_LINGER_ZERO: Final = struct.pack("ii", 1, 0)
#: How long a wrong-environment connection is read and dropped before the close
#: (node-apn waited 100 ms to notice it).
WRONG_ENVIRONMENT_DELAY: Final = 0.1
_HANDSHAKE_TIMEOUT: Final = 10.0


@attrs.frozen
class _Ending:
    kind: str  # "frame" | "silent" | "reset"
    status: int = 0
    identifier: int = 0
    reason: str = ""


class CaseGateway:
    """Serves one case to any number of connections and records what happened.

    Args:
        case: the case.
        number: its number (the second byte of its tokens).
        context: the server TLS context (None: the transport is used as it is,
            without TLS, for byte-level tests).
    """

    def __init__(self, case: Case, number: int, context: SSL.Context | None) -> None:
        self.case = case
        self.number = number
        self.context = context
        self.observation = Observation()
        self.client_names: set[str] = set()
        self.open_connections = 0
        self._fired: set[str] = set()
        self._feedback_served: set[str | None] = set()
        self._noted = 0  # arrivals already in the timeline
        self._start = trio.current_time()
        self._changed = trio.Event()
        self.last_activity = self._start

    # -- waiting --------------------------------------------------------------------

    def now(self) -> float:
        return trio.current_time() - self._start

    def _touch(self) -> None:
        self.last_activity = trio.current_time()
        self._changed.set()
        self._changed = trio.Event()

    async def wait_closed(self) -> None:
        """Until no connection is open."""
        while self.open_connections:
            await self._changed.wait()

    async def wait_changed(self) -> None:
        await self._changed.wait()

    # -- one connection ---------------------------------------------------------------

    async def serve_transport(
        self,
        transport: trio.abc.Stream,
        *,
        tls: trio.abc.Stream | None = None,
        initial: bytes = b"",
        name: str | None = None,
    ) -> None:
        """Serve one connection: handshake (unless ``tls`` is given), then the script.

        ``initial`` holds plaintext already read from ``tls`` (``conform serve`` reads
        the first notification to pick the case). Never raises for the client's faults.
        """
        obs = self.observation
        log = ConnectionLog(number=len(obs.connections) + 1, opened=self.now(), client_name=name)
        obs.connections.append(log)
        obs.note(log.opened, log.number, "connected")
        self.open_connections += 1
        self._touch()
        try:
            stream: trio.abc.Stream
            if tls is not None:
                stream = tls
                log.handshake = "ok"
            elif self.context is None:
                stream = transport
                log.handshake = "ok"
            else:
                stream = TLSStream(transport, self.context, server_side=True)
                try:
                    with trio.fail_after(_HANDSHAKE_TIMEOUT):
                        await stream.do_handshake()
                except (trio.TooSlowError, trio.BrokenResourceError, OSError) as exc:
                    log.handshake = f"failed: {exc}"
                    log.ending = "handshake failed"
                    obs.note(self.now(), log.number, f"TLS handshake failed: {exc}")
                    return
                log.handshake = "ok"
                certificate = stream.peer_certificate
                if certificate is not None and log.client_name is None:
                    log.client_name = client_name(certificate)
                obs.note(self.now(), log.number, f"TLS handshake done ({stream.tls_version})")
            if log.client_name:
                self.client_names.add(log.client_name)
            topic = _topic_of(stream)
            if self.case.service is Service.FEEDBACK:
                await self._feedback(stream, log, topic)
            else:
                await self._gateway(stream, transport, log, initial)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            log.ending = log.ending or f"client went away: {exc}"
            obs.note(self.now(), log.number, f"connection broke: {exc}")
        except Exception as exc:  # a bug here must not take the runner down
            logger.exception("conform: unexpected error in case %s", self.case.id)
            log.ending = f"internal error: {exc!r}"
        finally:
            await trio.aclose_forcefully(transport)
            log.closed = self.now()
            self.open_connections -= 1
            obs.note(log.closed, log.number, f"closed ({log.ending or 'done'})")
            self._touch()

    # -- gateway ----------------------------------------------------------------------

    async def _gateway(
        self,
        stream: trio.abc.Stream,
        transport: trio.abc.Stream,
        log: ConnectionLog,
        initial: bytes,
    ) -> None:
        script = self.case.script
        obs = self.observation
        if script.close_after_handshake:
            await self._discard_for(stream, log, WRONG_ENVIRONMENT_DELAY)
            log.ending = "silent close after the handshake (wrong environment)"
            obs.note(self.now(), log.number, log.ending)
            await _close(stream)
            return
        decoder = GatewayDecoder(payload_limit=2048)
        rate = script.read_rate
        read_size = max(1024, min(_READ_SIZE, rate // 10)) if rate else _READ_SIZE
        idle = script.idle_drop if script.idle_drop is not None else math.inf
        pending = initial
        while True:
            data: bytes | bytearray | None
            if pending:
                data, pending = pending, b""
            else:
                data = None
                with trio.move_on_after(idle):
                    data = await stream.receive_some(read_size)
                if data is None:
                    log.ending = f"idle for {idle:g} s: closed without a frame"
                    obs.note(self.now(), log.number, log.ending)
                    await _close(stream)
                    return
                log.bytes_in += len(data)
                log.wire_in.add(data)
            if not data:
                decoder.receive_eof()
                try:
                    decoder.next_event()
                    log.ending = "client closed"
                except RemoteProtocolError as exc:
                    log.ending = f"client closed mid-frame: {exc}"
                obs.note(self.now(), log.number, log.ending)
                await _close(stream)
                return
            decoder.receive_data(data)
            ending = self._drain(decoder, log)
            self._note_arrivals(log)
            self._touch()
            if ending is not None:
                await self._end(ending, stream, transport, log)
                return
            if rate:
                await trio.sleep(len(data) / rate)

    def _drain(self, decoder: GatewayDecoder, log: ConnectionLog) -> _Ending | None:
        script = self.case.script
        obs = self.observation
        while True:
            event = decoder.next_event()
            if event is NEED_DATA:
                return None
            now = self.now()
            if isinstance(event, ReceivedNotification):
                index = token_index(event.token)
                if token_case(event.token) != self.number:
                    index = None
                    obs.foreign += 1
                identifier = event.identifier or 0
                status = script.reject.get(index) if index is not None else None
                fate = Fate.REJECTED if status is not None else Fate.DELIVERED
                obs.arrivals.append(
                    Arrival(
                        connection=log.number,
                        at=now,
                        index=index,
                        token=event.token,
                        identifier=event.identifier,
                        command=int(event.command),
                        priority=event.priority,
                        expiry=event.expiry,
                        fate=fate,
                    )
                )
                if status is not None:
                    return self._refuse(event.command, status, identifier, f"line {index}")
                if index is None:
                    continue
                if index == script.shutdown_after and self._fire("shutdown"):
                    if event.command == Command.SIMPLE:
                        return _Ending("silent", reason="shutdown after a command-0 notification")
                    return _Ending("frame", Status.SHUTDOWN, identifier, f"shutdown after {index}")
                if index == script.reset_after and self._fire("reset"):
                    return _Ending("reset", reason=f"reset after line {index}")
                if index == script.silent_close_after and self._fire("silent"):
                    return _Ending("silent", reason=f"silent close after line {index}")
            elif isinstance(event, BadNotification):
                if event.status == Status.MISSING_DEVICE_TOKEN:
                    # A zero-length token: the confirmation probe (Pushy 0.x's
                    # KnownBadPushNotification, PROTOCOL.md section 11), not a mistake;
                    # the workload has no empty token. Answered as Apple did: 08 02 0.
                    obs.probes += 1
                    self._note_arrivals(log)
                    obs.note(now, log.number, "confirmation probe (zero-length token)")
                    return _Ending("frame", event.status, event.identifier, "probe")
                obs.bad_frames.append(
                    BadFrame(
                        connection=log.number,
                        at=now,
                        command=event.command,
                        status=int(event.status),
                        identifier=event.identifier,
                        reason=event.reason,
                    )
                )
                return self._refuse(event.command, event.status, event.identifier, event.reason)
            else:
                return None

    def _note_arrivals(self, log: ConnectionLog) -> None:
        # One timeline line for the arrivals since the last note (per read, and before
        # anything else that happens in the same read, so the order stays true).
        new = self.observation.arrivals[self._noted :]
        self._noted = len(self.observation.arrivals)
        if not new:
            return
        by_fate: dict[Fate, list[int]] = {}
        for arrival in new:
            if arrival.index is not None:
                by_fate.setdefault(arrival.fate, []).append(arrival.index)
        parts = [f"{fate.value} {ranges(indices)}" for fate, indices in by_fate.items()]
        commands = sorted({a.command for a in new})
        self.observation.note(
            self.now(),
            log.number,
            f"read {len(new)} (command {'/'.join(map(str, commands))}): " + "; ".join(parts),
        )

    def _fire(self, what: str) -> bool:
        if what in self._fired:
            return False
        self._fired.add(what)
        return True

    @staticmethod
    def _refuse(command: int, status: int, identifier: int, reason: str) -> _Ending:
        if command not in (Command.ENHANCED, Command.FRAME):
            # Command 0 has no error response; an unknown command byte got "zero bytes
            # back" (TN2265). Everything else gets 08 <status> <id> (128 for a frame
            # that does not parse: the 2018 table).
            return _Ending("silent", status, identifier, reason)
        return _Ending("frame", status, identifier, reason)

    async def _end(
        self,
        ending: _Ending,
        stream: trio.abc.Stream,
        transport: trio.abc.Stream,
        log: ConnectionLog,
    ) -> None:
        obs = self.observation
        style = self.case.script.error
        if ending.kind == "reset":
            log.ending = f"TCP reset, no error response ({ending.reason})"
            obs.note(self.now(), log.number, log.ending)
            await _reset(transport)
            return
        if ending.kind == "silent":
            log.ending = f"closed without a frame ({ending.reason})"
            obs.note(self.now(), log.number, log.ending)
            await _close(stream)
            return
        if style.delay:
            obs.note(self.now(), log.number, f"holding the error response for {style.delay:g} s")
            await self._discard_for(stream, log, style.delay)
        frame = encode_error_response(ending.status, ending.identifier)
        at = 0
        for number, size in enumerate(style.pieces):
            if number:
                await trio.sleep(style.piece_gap)
            piece = frame[at : at + size]
            at += size
            await stream.send_all(piece)
            log.bytes_out += len(piece)
            log.wire_out.add(piece)
        obs.note(
            self.now(),
            log.number,
            f"error response {frame.hex(' ')} ({ending.reason})"
            + (f" in pieces {'+'.join(map(str, style.pieces))}" if len(style.pieces) > 1 else ""),
        )
        if style.close is Close.RESET:
            # Stop reading: whatever the client wrote after the bad one stays unread,
            # and the close becomes a reset (SO_LINGER 0 makes sure of it).
            await trio.sleep(0.05)
            log.ending = "error response, then TCP reset with unread data"
            obs.note(self.now(), log.number, log.ending)
            await _reset(transport)
            return
        log.ending = f"error response {ending.status}, then close"
        await _close(stream)

    async def _discard_for(
        self, stream: trio.abc.Stream, log: ConnectionLog, seconds: float
    ) -> None:
        with trio.move_on_after(seconds):
            while True:
                data = await stream.receive_some(_READ_SIZE)
                if not data:
                    break
                log.bytes_in += len(data)
                log.wire_in.add(data)
            await trio.sleep(seconds)

    # -- feedback ---------------------------------------------------------------------

    async def _feedback(
        self, stream: trio.abc.Stream, log: ConnectionLog, topic: str | None
    ) -> None:
        script = self.case.script
        obs = self.observation
        if topic in self._feedback_served:
            entries = []  # Apple cleared the list once read
        else:
            entries = [e for e in script.feedback if e.topic == topic]
            self._feedback_served.add(topic)
        data = b"".join(encode_feedback_item(e.timestamp, e.token) for e in entries)
        piece = script.feedback_piece or max(len(data), 1)
        for start in range(0, len(data), piece):
            chunk = data[start : start + piece]
            await stream.send_all(chunk)
            log.bytes_out += len(chunk)
            log.wire_out.add(chunk)
        obs.feedback_written += len(entries)
        obs.feedback_complete = True
        log.ending = f"{len(entries)} feedback tuples written, then close"
        obs.note(self.now(), log.number, log.ending)
        await _close(stream)


def client_name(certificate: x509.Certificate) -> str:
    """The client's name from its certificate: the CN, else the subject UID."""
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if names:
        return str(names[0].value)
    return certificate_topic(certificate) or "unknown"


def _topic_of(stream: trio.abc.Stream) -> str | None:
    if isinstance(stream, TLSStream) and stream.peer_certificate is not None:
        return certificate_topic(stream.peer_certificate)
    # Without TLS (byte-level tests) the client is taken to have the case's topic.
    return CLIENT_TOPIC


async def _close(stream: trio.abc.Stream) -> None:
    try:
        await stream.aclose()
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass


def _socket_stream(stream: object) -> trio.SocketStream | None:
    current: object = stream
    for _ in range(8):
        if isinstance(current, trio.SocketStream):
            return current
        current = getattr(current, "transport_stream", None)
        if current is None:
            return None
    return None


async def _reset(transport: trio.abc.Stream) -> None:
    """Close abruptly: SO_LINGER 0 makes the kernel send RST (memory streams just close)."""
    tcp = _socket_stream(transport)
    if tcp is not None:
        try:
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
        except OSError:
            pass
    await trio.aclose_forcefully(transport)
