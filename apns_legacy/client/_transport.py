"""What the kernel knows about a connection that the stream API does not say."""

from __future__ import annotations

import fcntl
import struct
import termios
from typing import Final

import trio

# Linux: bytes in the socket's send queue, sent or not, that the peer's TCP stack has
# not acknowledged yet (SIOCOUTQ, which has the same number as TIOCOUTQ).
_OUTQ: Final = getattr(termios, "TIOCOUTQ", None)


def socket_stream(stream: trio.abc.Stream) -> trio.SocketStream | None:
    """The TCP stream under ``stream`` (through TLS or other wrappers), if there is one."""
    current: object = stream
    for _ in range(8):
        if isinstance(current, trio.SocketStream):
            return current
        current = getattr(current, "transport_stream", None)
        if current is None:
            return None
    return None


def unacknowledged_bytes(stream: trio.abc.Stream) -> int | None:
    """Bytes written to ``stream`` that the peer's TCP stack has not acknowledged.

    None where that cannot be known (no socket underneath, as with trio's memory
    streams, or a platform without SIOCOUTQ); callers then take a finished
    ``send_all`` as the best they have.
    """
    tcp = socket_stream(stream)
    if tcp is None or _OUTQ is None:
        return None
    try:
        raw = fcntl.ioctl(tcp.socket.fileno(), _OUTQ, b"\0\0\0\0")
    except OSError:
        return None
    value: int = struct.unpack("i", raw)[0]
    return value
