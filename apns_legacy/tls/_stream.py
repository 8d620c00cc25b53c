"""TLSStream: TLS over any trio stream, using pyOpenSSL in memory-BIO mode.

Theory of operation
-------------------

``SSL.Connection(context, None)`` gives an OpenSSL connection that does no I/O of
its own. It has two memory buffers ("BIOs"): an incoming one that we fill with
bytes read from the transport (``bio_write``, or ``bio_shutdown`` for EOF), and
an outgoing one that OpenSSL appends records to, which we empty (``bio_read``)
and write to the transport. Four calls drive it: ``do_handshake``, ``send``
(encrypt), ``recv`` (decrypt) and ``shutdown`` (queue a close_notify alert). Each
call may

- append bytes to the outgoing BIO (handshake messages, records, alerts),
- consume bytes from the incoming BIO,
- raise ``WantReadError``: it cannot finish until more bytes arrive from the
  peer. The call must then be repeated later with the same arguments (for
  ``send``: the same remaining bytes; ``SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER`` lets
  the retry use a new memoryview of them),
- raise ``ZeroReturnError`` (``recv`` only: the peer sent close_notify), or any
  other ``SSL.Error`` (fatal; OpenSSL has usually queued an alert to send).

``WantWriteError`` cannot happen: a memory BIO grows as needed.

Any call may need to both send and receive (the handshake does several round
trips; a TLS 1.2 renegotiation could make ``send`` wait for the peer, although
our contexts refuse renegotiation), and two tasks may use the stream at once
(one sending, one receiving). So every operation goes through one loop,
``_retry(operation)``, in the shape trio's ``SSLStream`` uses:

1. call the operation (synchronously: no other task can touch the connection
   in the meantime);
2. take everything from the outgoing BIO, still synchronously;
3. do exactly ONE blocking step: if there are bytes to send, send them; else,
   if OpenSSL wants to read, receive once from the transport into the
   incoming BIO; then go back to 1 unless the operation finished.

Sending comes first because the bytes taken in step 2 must reach the wire in
the order OpenSSL produced them. The send lock is a ``trio.StrictFIFOLock`` and
a task queues on it right after step 2, without yielding in between, so order
is kept even when two tasks produced records. Only one step is done per pass
because after any ``await`` what we knew is stale: while we were sending,
another task may already have received the bytes our operation was waiting
for, and a second blocking receive could then wait forever.

Receiving is shared: a task that wants to read notes a counter, takes the
receive lock, and reads from the transport only if nobody else did so while it
waited (the counter is unchanged); otherwise it just retries its operation on
what the other task fed in.

Cancellation: a cancelled *receive* loses nothing (the transport keeps its
bytes). A cancelled *send* may have written part of a record, and a cancelled
handshake leaves OpenSSL mid-state, so both mark the stream broken, as in trio.

Throughput: ``send_all`` encrypts up to ``_SEND_CHUNK`` bytes per pass with one
``send`` call (OpenSSL cuts them into 16 KiB records; partial-write mode is off,
see ``_context``) and writes all resulting records to the transport at once.
``receive_some`` reads the transport in ``RECEIVE_SIZE`` pieces and, after the
first record, keeps decrypting whatever is already buffered, up to
``max_bytes``, so one call returns many records' worth of plaintext.

TLS 1.3 detail (also from trio, openssl#7948): a TLS 1.3 server's OpenSSL writes
its session tickets right when its handshake completes, when the client may not
be reading. Over a zero-buffer transport that deadlocks, so the server holds
those bytes back and sends them in front of its next write.

Closing: ``aclose`` sends close_notify and does not wait for the peer's reply
(allowed by the TLS RFCs; waiting could block forever on a peer that never
reads). Half-close (``send_eof``) is not offered: TLS 1.2 has no half-close.

Session resumption (client side): a ``session`` from an earlier connection to the same
server, made with the same context, is offered in the ClientHello; a server that still
knows it (session cache or ticket) skips the certificate exchange and, in TLS 1.2, one
round trip. ``on_session`` receives the session to offer next time: right after the
handshake in TLS 1.2, and in TLS 1.3 when a NewSessionTicket has been read (servers send
tickets after the handshake, so that is on the first read that processes one).
pyOpenSSL has no ``SSL_session_reused``; :attr:`TLSStream.session_reused` is read from the
handshake's states (a full handshake reads the server's certificate, a resumed one does
not), through the public info callback.

Host names: pyOpenSSL does not check them. A client stream sends SNI (not for IP
addresses) and, after the handshake, checks the server certificate's subject
alternative names: DNS names (one leading ``*.`` wildcard label) for a host
name, IPAddress entries for an IP address. The common name is not consulted.
"""

from __future__ import annotations

import enum
import logging
import operator
import types
from collections.abc import Callable
from typing import Final, TypeVar, final

import trio
from cryptography import x509
from OpenSSL import SSL

from ._context import VerifyLog
from ._diagnosis import (
    describe_failure,
    hostname_problem,
    idna,
    ip_address,
    is_certificate_alert,
)
from ._errors import TLSHandshakeError

logger = logging.getLogger(__name__)

#: Transport read size, and the default ``max_bytes`` of ``receive_some``.
RECEIVE_SIZE: Final = 65536
# Plaintext encrypted per transport write by send_all.
_SEND_CHUNK: Final = 262144
# Outgoing-BIO read size: a full chunk of records (16 KiB + at most ~0.3 KiB of
# header, MAC and padding each) in one bio_read.
_OUT_READ_SIZE: Final = _SEND_CHUNK + 8192
# How long aclose() tries to deliver close_notify, and a failing handshake its alert.
_GOODBYE_TIMEOUT: Final = 2.0
# OpenSSL's SSL_CB_CONNECT_LOOP (a client state change), for the info callback.
_CB_CONNECT_LOOP: Final = 0x1001
# The client states (SSL_state_string_long) that tell a full handshake and a new ticket.
_READ_SERVER_CERTIFICATE: Final = b"SSLv3/TLS read server certificate"
_READ_SESSION_TICKET: Final = b"SSLv3/TLS read server session ticket"

T = TypeVar("T")


class _State(enum.Enum):
    OK = "ok"
    BROKEN = "broken"
    CLOSED = "closed"


class _Guard:
    """Raises BusyResourceError when two tasks use the same direction at once."""

    __slots__ = ("_busy", "_message")

    def __init__(self, message: str) -> None:
        self._busy = False
        self._message = message

    def __enter__(self) -> None:
        if self._busy:
            raise trio.BusyResourceError(self._message)
        self._busy = True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        self._busy = False


class _ChunkWriter:
    """Encrypts one chunk; remembers its progress across WantReadError retries."""

    __slots__ = ("_connection", "_position", "_view")

    def __init__(self, connection: SSL.Connection, view: memoryview) -> None:
        self._connection = connection
        self._view = view
        self._position = 0

    def __call__(self) -> None:
        send = self._connection.send
        view = self._view
        position = self._position
        end = len(view)
        try:
            while position < end:
                position += send(view[position:])
        finally:
            self._position = position


@final
class TLSStream(trio.abc.Stream):
    """A TLS connection over ``transport_stream``, client or server side.

    The handshake runs on first use, or explicitly with :meth:`do_handshake`.
    TLS failures raise :class:`trio.BrokenResourceError` (handshake failures the
    subclass :class:`TLSHandshakeError`) whose ``__cause__`` is the OpenSSL error;
    using the stream after :meth:`aclose` raises :class:`trio.ClosedResourceError`.
    Cancelling a send or the handshake leaves the stream broken.

    Args:
        transport_stream: carries the encrypted bytes (a TCP stream, or a memory
            stream in tests).
        context: from :func:`client_context` or :func:`server_context`; the same
            context may serve any number of streams.
        server_side: True for the server end.
        server_hostname: client side: sent as SNI (unless an IP address) and
            checked against the server certificate. None skips both.
        session: client side: a session from an earlier connection to the same
            server with the same context, offered for resumption (the server may
            decline; then the handshake is a full one).
        on_session: client side: called with a resumable session once the
            connection has one (after the handshake in TLS 1.2; after the first
            NewSessionTicket read in TLS 1.3), to offer on a later connection.
    """

    def __init__(
        self,
        transport_stream: trio.abc.Stream,
        context: SSL.Context,
        *,
        server_side: bool,
        server_hostname: str | None = None,
        session: SSL.Session | None = None,
        on_session: Callable[[SSL.Session], None] | None = None,
    ) -> None:
        self.transport_stream: trio.abc.Stream = transport_stream
        self._server_side = server_side
        self._server_hostname = None if server_side else server_hostname
        self._connection = SSL.Connection(context, None)
        self._verify_log = VerifyLog()
        self._connection.set_app_data(self._verify_log)
        if server_side:
            self._connection.set_accept_state()
        else:
            self._connection.set_connect_state()
            if server_hostname and ip_address(server_hostname) is None:
                self._connection.set_tlsext_host_name(idna(server_hostname).encode("ascii"))
        self._offered_session = session is not None and not server_side
        self._full_handshake = False
        self._new_ticket = False
        self._on_session = None if server_side else on_session
        if self._offered_session or self._on_session is not None:
            self._connection.set_info_callback(self._on_state)
            if session is not None and not server_side:
                self._connection.set_session(session)
        self._state = _State.OK
        self._broken_reason = "the TLS stream is broken"
        # Set when only our sending side broke (a failed or cancelled transport
        # write): records already received can still be read and decrypted, and
        # must be, since a peer that answers and then closes (Apple's gateway
        # with its error response) often makes our next write fail first.
        self._send_broken: str | None = None
        self._handshake_started = False
        self._handshake_finished = trio.Event()
        self._delayed_outgoing = b""
        self._deferred_error: SSL.Error | None = None
        self._send_lock = trio.StrictFIFOLock()
        self._receive_lock = trio.Lock()
        self._receive_count = 0
        self._send_guard = _Guard("another task is sending on this TLSStream")
        self._receive_guard = _Guard("another task is receiving on this TLSStream")

    # -- public API ---------------------------------------------------------

    @property
    def peer_certificate(self) -> x509.Certificate | None:
        """The peer's certificate once the handshake is done (None before, or if none)."""
        if not self._handshake_finished.is_set():
            return None
        return self._connection.get_peer_certificate(as_cryptography=True)

    @property
    def tls_version(self) -> str | None:
        """The negotiated protocol, e.g. ``"TLSv1.2"``, once the handshake is done."""
        if not self._handshake_finished.is_set():
            return None
        return self._connection.get_protocol_version_name()

    @property
    def alpn_protocol(self) -> bytes | None:
        """The protocol ALPN selected (e.g. ``b"h2"``) once the handshake is done, or None."""
        if not self._handshake_finished.is_set():
            return None
        return self._connection.get_alpn_proto_negotiated() or None

    @property
    def session_reused(self) -> bool:
        """True once a handshake has completed by resuming the offered session."""
        return (
            self._handshake_finished.is_set()
            and self._state is not _State.BROKEN
            and self._offered_session
            and not self._full_handshake
        )

    def _on_state(self, connection: SSL.Connection, where: int, ret: int) -> None:
        # OpenSSL's info callback, client side only; runs inside OpenSSL calls.
        if where & _CB_CONNECT_LOOP == _CB_CONNECT_LOOP:
            state = connection.get_state_string()
            if state == _READ_SERVER_CERTIFICATE:
                self._full_handshake = True
            elif state == _READ_SESSION_TICKET:
                self._new_ticket = True

    def _deliver_session(self) -> None:
        self._new_ticket = False
        if self._on_session is not None:
            session = self._connection.get_session()
            if session is not None:
                self._on_session(session)

    async def do_handshake(self) -> None:
        """Run the handshake now, or wait for the one in progress; no-op when done.

        Raises:
            TLSHandshakeError: certificate rejected, host name mismatch, no common
                protocol version, or the peer closed the connection.
            trio.ClosedResourceError: the stream was closed.
        """
        self._check_status()
        await trio.lowlevel.checkpoint_if_cancelled()
        await self._ensure_handshake()
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt ``data`` and write it to the transport.

        See :meth:`trio.abc.SendStream.send_all`.
        """
        with self._send_guard:
            self._check_status()
            if self._send_broken is not None:
                raise trio.BrokenResourceError(self._send_broken)
            await trio.lowlevel.checkpoint_if_cancelled()
            await self._ensure_handshake()
            view = memoryview(data)
            if view.itemsize != 1:
                view = view.cast("B")
            if not view:
                # SSL_write(0 bytes) is an error, not a no-op.
                await trio.lowlevel.checkpoint()
                return
            for start in range(0, len(view), _SEND_CHUNK):
                chunk = view[start : start + _SEND_CHUNK]
                await self._retry(_ChunkWriter(self._connection, chunk), broken_on_cancel=True)

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        """Return some decrypted bytes (at most ``max_bytes``), or b"" after close_notify.

        See :meth:`trio.abc.ReceiveStream.receive_some`. A peer that closes the
        connection without close_notify (a truncated stream) raises
        :class:`trio.BrokenResourceError`.
        """
        with self._receive_guard:
            if max_bytes is None:
                max_bytes = RECEIVE_SIZE
            else:
                max_bytes = operator.index(max_bytes)
                if max_bytes < 1:
                    raise ValueError("max_bytes must be >= 1")
            self._check_status()
            await trio.lowlevel.checkpoint_if_cancelled()
            await self._ensure_handshake()
            limit = max_bytes
            data = await self._retry(lambda: self._read(limit))
            if self._new_ticket:  # TLS 1.3: a NewSessionTicket came with these records
                self._deliver_session()
            if data is None:  # pragma: no cover - _read never returns None
                raise AssertionError("no data from a finished read")
            return data

    async def wait_send_all_might_not_block(self) -> None:
        """See :meth:`trio.abc.SendStream.wait_send_all_might_not_block`."""
        with self._send_guard:
            self._check_status()
            # A receive may be using the transport's send side (to send a
            # handshake or alert); wait our turn rather than report a conflict.
            async with self._send_lock:
                await self.transport_stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        """Send close_notify (without waiting for the peer's), then close the transport.

        Safe to call repeatedly; a cancelled ``aclose`` still closes the transport.
        """
        if self._state is _State.CLOSED:
            await trio.lowlevel.checkpoint()
            return
        if (
            self._state is _State.BROKEN
            or self._send_broken is not None
            or not self._handshake_finished.is_set()
        ):
            # Nothing can be said securely before the handshake has finished, or
            # after a write was cut short.
            self._state = _State.CLOSED
            await self.transport_stream.aclose()
            return
        try:
            with trio.move_on_after(_GOODBYE_TIMEOUT):
                try:
                    # shutdown() queues close_notify; its second half (waiting for
                    # the peer's close_notify) is what ignore_want_read skips.
                    await self._retry(self._connection.shutdown, ignore_want_read=True)
                except (trio.BrokenResourceError, trio.BusyResourceError):
                    # The peer may have closed first, which is fine.
                    pass
        except BaseException:
            self._state = _State.CLOSED
            await trio.aclose_forcefully(self.transport_stream)
            raise
        self._state = _State.CLOSED
        await self.transport_stream.aclose()

    # -- the engine -----------------------------------------------------------

    def _check_status(self) -> None:
        if self._state is _State.OK:
            return
        if self._state is _State.BROKEN:
            raise trio.BrokenResourceError(self._broken_reason)
        raise trio.ClosedResourceError("the TLS stream was closed")

    def _mark_broken(self, reason: str | None = None) -> None:
        # Never turn a closed stream into a broken one: after aclose() the
        # contract is ClosedResourceError.
        if self._state is _State.OK:
            self._state = _State.BROKEN
            if reason:
                self._broken_reason = reason

    async def _ensure_handshake(self) -> None:
        if self._handshake_finished.is_set():
            self._check_status()
            return
        if self._handshake_started:
            await self._handshake_finished.wait()
            self._check_status()
            return
        self._handshake_started = True
        try:
            await self._handshake()
        except BaseException as exc:
            reason = str(exc) if isinstance(exc, trio.BrokenResourceError) else None
            self._mark_broken(reason or "the TLS handshake did not finish")
            raise
        finally:
            self._handshake_finished.set()

    async def _handshake(self) -> None:
        try:
            await self._retry(self._connection.do_handshake, is_handshake=True)
        except TLSHandshakeError:
            raise
        except trio.BrokenResourceError as exc:
            # The transport broke (e.g. connection reset) mid-handshake.
            raise TLSHandshakeError(
                f"TLS handshake failed: the connection broke ({exc or type(exc).__name__})",
                refused=False,
            ) from exc
        logger.debug(
            "TLS handshake done (%s, %s)",
            self._connection.get_protocol_version_name(),
            self._connection.get_cipher_name(),
        )
        if self._server_hostname:
            certificate = self._connection.get_peer_certificate(as_cryptography=True)
            problem = hostname_problem(certificate, self._server_hostname)
            if problem:
                raise TLSHandshakeError(f"TLS handshake failed: {problem}")
        if self._on_session is not None and (
            self._connection.get_protocol_version_name() != "TLSv1.3" or self._new_ticket
        ):
            # TLS 1.2: the session is resumable once the handshake is done (by its id,
            # or by the ticket read in the handshake). TLS 1.3: only with a ticket.
            self._deliver_session()

    async def _retry(
        self,
        operation: Callable[[], T],
        *,
        is_handshake: bool = False,
        ignore_want_read: bool = False,
        broken_on_cancel: bool = False,
    ) -> T | None:
        await trio.lowlevel.checkpoint_if_cancelled()
        yielded = False
        result: T | None = None
        finished = False
        while not finished:
            # Steps 1 and 2 of the theory above: no await until to_send is taken.
            want_read = False
            try:
                result = operation()
                finished = True
            except SSL.WantReadError:
                finished = ignore_want_read
                want_read = not ignore_want_read
            except SSL.Error as exc:
                await self._fail(exc, during_handshake=is_handshake)
            to_send = self._take_outgoing()
            if (
                is_handshake
                and finished
                and self._server_side
                and self._connection.get_protocol_version_name() == "TLSv1.3"
            ):
                self._delayed_outgoing = to_send
                to_send = b""
            # Step 3: one blocking step.
            if to_send:
                yielded = True
                await self._send_raw(to_send)
            elif want_read:
                yielded = True
                await self._receive_raw(broken_on_cancel=broken_on_cancel)
        if not yielded:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return result

    def _read(self, max_bytes: int) -> bytes:
        if self._deferred_error is not None:
            error, self._deferred_error = self._deferred_error, None
            raise error
        recv = self._connection.recv
        try:
            data = recv(max_bytes)
        except SSL.ZeroReturnError:
            return b""
        # Drain what is already buffered, without blocking. An error here is
        # kept for the next call so the data already decrypted is not lost.
        size = len(data)
        if size >= max_bytes:
            return data
        parts = [data]
        while size < max_bytes:
            try:
                more = recv(max_bytes - size)
            except (SSL.WantReadError, SSL.ZeroReturnError):
                break
            except SSL.Error as exc:
                self._deferred_error = exc
                break
            parts.append(more)
            size += len(more)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _take_outgoing(self) -> bytes:
        bio_read = self._connection.bio_read
        try:
            first = bio_read(_OUT_READ_SIZE)
        except SSL.WantReadError:
            return b""
        if len(first) < _OUT_READ_SIZE:
            return first
        parts = [first]
        while True:
            try:
                more = bio_read(_OUT_READ_SIZE)
            except SSL.WantReadError:
                break
            parts.append(more)
            if len(more) < _OUT_READ_SIZE:
                break
        return b"".join(parts)

    async def _send_raw(self, data: bytes) -> None:
        lock = self._send_lock
        try:
            # Uncontended (the usual case): take the lock without the extra
            # schedule point of `async with`; the transport send checkpoints.
            # An unlocked trio lock has no waiters, so FIFO order is kept.
            if lock.locked():
                await lock.acquire()
            else:
                lock.acquire_nowait()
            try:
                if self._delayed_outgoing:
                    data = self._delayed_outgoing + data
                    self._delayed_outgoing = b""
                await self.transport_stream.send_all(data)
            finally:
                lock.release()
        except BaseException as exc:
            # Records produced by OpenSSL were (partly) lost: nothing more can be
            # sent. What the peer already sent can still be read (see __init__).
            if self._state is _State.OK and self._send_broken is None:
                detail = "" if isinstance(exc, trio.Cancelled) else f": {exc or type(exc).__name__}"
                self._send_broken = f"the TLS stream broke while sending{detail}"
            if not self._handshake_finished.is_set():
                self._mark_broken("the TLS stream broke while sending")
            raise

    async def _receive_raw(self, *, broken_on_cancel: bool) -> None:
        count = self._receive_count
        lock = self._receive_lock
        try:
            if lock.locked():  # same fast path as _send_raw
                await lock.acquire()
            else:
                lock.acquire_nowait()
            try:
                if count != self._receive_count:
                    return  # another task fed the incoming BIO; just retry
                data = await self.transport_stream.receive_some(RECEIVE_SIZE)
                if data:
                    self._connection.bio_write(data)
                else:
                    self._connection.bio_shutdown()
                self._receive_count += 1
            finally:
                lock.release()
        except trio.Cancelled:
            if broken_on_cancel and self._send_broken is None:
                # A cancelled send_all may have left a record half-encrypted in
                # OpenSSL: the sending side is unusable, the receiving side is not.
                self._send_broken = "a send on this TLS stream was cancelled"
            raise
        except trio.BrokenResourceError as exc:
            self._mark_broken(f"the TLS transport broke: {exc or type(exc).__name__}")
            raise

    async def _fail(self, error: SSL.Error, *, during_handshake: bool) -> None:
        """Mark broken, try to deliver OpenSSL's alert, raise a described error."""
        message = describe_failure(
            error,
            during_handshake=during_handshake,
            server_side=self._server_side,
            verify_failures=self._verify_log.failures,
        )
        self._mark_broken(message)
        alert = self._take_outgoing()
        if alert:
            with trio.move_on_after(_GOODBYE_TIMEOUT):
                try:
                    await self._send_raw(alert)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
        if during_handshake or is_certificate_alert(error):
            # A peer that just closes (SysCallError: EOF or reset) has not refused
            # anything in TLS terms; everything else is TLS saying no.
            refused = not isinstance(error, SSL.SysCallError)
            raise TLSHandshakeError(message, refused=refused) from error
        raise trio.BrokenResourceError(message) from error
