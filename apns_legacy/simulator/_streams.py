"""How the simulator ends connections: graceful close, TCP reset, clean drain, discard.

A server-side connection is a stack of streams: the gateway or feedback logic on top,
TLS below it, and at the bottom a *transport* that owns the TCP socket: a
:class:`SocketTransport`, or a latency layer (``_latency.py``) that owns one in turn.
The helpers here walk down ``transport_stream`` to the first transport and tell it how
to end the TCP connection:

* :data:`CloseMode.GRACEFUL`: TLS close_notify, then ``close()``. If the client's bytes
  wait unread in the receive buffer, the kernel makes that close a reset (RST); the
  gateway's :class:`ErrorClose` policy decides whether to allow that.
* :data:`CloseMode.DRAIN`: close_notify, a FIN (``shutdown(SHUT_WR)``), then read and
  drop until the client closes, for at most :data:`DRAIN_LIMIT` seconds: a close that
  never becomes a reset.
* :data:`CloseMode.RESET`: no close_notify; once what was written has left the socket,
  ``SO_LINGER`` 0 and ``close()`` send a RST.

Streams without a transport (trio memory streams in tests, a bridge's own streams) get
a plain ``aclose`` (graceful) or ``aclose_forcefully`` (reset).
"""

from __future__ import annotations

import enum
import logging
import socket
import struct
from typing import Final, Protocol, runtime_checkable

import trio

logger = logging.getLogger("apns_legacy.simulator")

#: Most bytes asked of a stream at once.
READ_SIZE: Final = 65536
#: Longest a clean (draining) close waits for the client to close its side.
DRAIN_LIMIT: Final = 10.0
#: Longest a reset waits for already written bytes to leave the socket first.
FLUSH_LIMIT: Final = 1.0
_LINGER_ZERO: Final = struct.pack("ii", 1, 0)


class CloseMode(enum.Enum):
    """How a transport ends its TCP connection (see the module docstring)."""

    GRACEFUL = "graceful"
    DRAIN = "drain"
    RESET = "reset"


@runtime_checkable
class Transport(Protocol):
    """The bottom of a server connection's stream stack: it owns the TCP connection."""

    #: How :meth:`aclose` ends the connection.
    close_mode: CloseMode

    def pending_input(self) -> int:
        """Bytes the client sent that nobody has read yet (0 when unknown)."""
        ...

    async def aclose(self) -> None:
        """End the connection as :attr:`close_mode` says."""
        ...


def find_transport(stream: trio.abc.Stream) -> Transport | None:
    """The first :class:`Transport` at or below ``stream`` (via ``transport_stream``)."""
    current: object = stream
    for _ in range(8):
        if isinstance(current, Transport):
            return current
        current = getattr(current, "transport_stream", None)
        if current is None:
            return None
    return None


def pending_input(stream: trio.abc.Stream) -> int:
    """Bytes waiting unread below ``stream`` (0 without a transport)."""
    transport = find_transport(stream)
    return transport.pending_input() if transport is not None else 0


async def close(stream: trio.abc.Stream, mode: CloseMode = CloseMode.GRACEFUL) -> None:
    """End the connection under ``stream``; a peer that is already gone is not an error."""
    transport = find_transport(stream)
    if mode is CloseMode.RESET:
        if transport is None:
            await trio.aclose_forcefully(stream)
            return
        # No close_notify: a reset says nothing more. TLS is abandoned, not closed.
        transport.close_mode = CloseMode.RESET
        await _aclose_quietly(transport)
        return
    if transport is not None:
        transport.close_mode = mode
    await _aclose_quietly(stream)


async def reset(stream: trio.abc.Stream) -> None:
    """Close abruptly with a TCP reset (``SO_LINGER`` 0), no close_notify."""
    await close(stream, CloseMode.RESET)


async def _aclose_quietly(stream: Transport | trio.abc.AsyncResource) -> None:
    try:
        await stream.aclose()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def discard_for(stream: trio.abc.Stream, seconds: float) -> None:
    """Read and drop whatever arrives for ``seconds`` (waiting out the time after an EOF)."""
    with trio.move_on_after(seconds):
        while await stream.receive_some(READ_SIZE):
            pass
        await trio.sleep(seconds)


def _unread_bytes(sock: trio.socket.SocketType) -> int:
    # FIONREAD (SIOCINQ for TCP): bytes in the receive queue. POSIX only; elsewhere 0,
    # and the kernel's own rule (a reset on close with unread data) still applies.
    try:
        import fcntl
        import termios

        answer = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except (ImportError, OSError):
        return 0
    return int(struct.unpack("i", answer)[0])


async def _wait_sent(sock: trio.socket.SocketType, limit: float) -> None:
    # TCP_NOTSENT_LOWAT 1: the socket is writable only once no byte is left unsent,
    # so waiting for writability waits until what was written has left (no polling).
    option = getattr(socket, "TCP_NOTSENT_LOWAT", None)
    if option is None:  # pragma: no cover - Linux and macOS have it
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, option, 1)
    except OSError:  # pragma: no cover
        return
    with trio.move_on_after(limit):
        await trio.lowlevel.wait_writable(sock)


async def end_socket(tcp: trio.SocketStream, mode: CloseMode) -> None:
    """End a TCP connection as ``mode`` says; always closes the socket."""
    try:
        if mode is CloseMode.RESET:
            try:
                await _wait_sent(tcp.socket, FLUSH_LIMIT)
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
            except OSError:
                pass
        elif mode is CloseMode.DRAIN:
            try:
                with trio.move_on_after(DRAIN_LIMIT):
                    await tcp.send_eof()
                    while await tcp.receive_some(READ_SIZE):
                        pass
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
    finally:
        await trio.aclose_forcefully(tcp)


class SocketTransport(trio.abc.Stream):
    """A TCP stream that ends as its :attr:`close_mode` says (a :class:`Transport`)."""

    def __init__(self, tcp: trio.SocketStream) -> None:
        self.transport_stream = tcp
        self.close_mode = CloseMode.GRACEFUL
        self._closed = False

    def pending_input(self) -> int:
        if self._closed:
            return 0
        return _unread_bytes(self.transport_stream.socket)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.transport_stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport_stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.transport_stream.receive_some(max_bytes)

    async def send_eof(self) -> None:
        await self.transport_stream.send_eof()

    async def aclose(self) -> None:
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        await end_socket(self.transport_stream, self.close_mode)
