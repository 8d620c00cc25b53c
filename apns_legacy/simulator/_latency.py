"""A network path with one-way delay, between the TCP socket and TLS (``Fault.latency``).

Theory of operation. :class:`LatencyStream` sits where the wire would be: below TLS, so
the handshake, every record, the close_notify and the TCP close are all delayed. Two
pump tasks move the bytes:

* in: read the socket as soon as bytes arrive, stamp each chunk ``arrival + delay``,
  queue it; ``receive_some`` hands out queued bytes once their time has come, in order.
  An EOF or a reset from the client is queued the same way and is seen that much later.
* out: ``send_all`` stamps the bytes ``now + delay`` and queues them (returning at once,
  as a kernel's send buffer does); the pump writes each chunk to the socket at its time,
  in order. Closing queues an end marker behind the data: the TCP close (FIN, drain or
  reset, see ``_streams.CloseMode``) happens ``delay`` after the simulator closed.

At most ``window`` bytes wait in each direction, like a TCP window: when the server
stops reading, the pump stops reading the socket and the client's writes block; when
the client stops reading, ``send_all`` blocks. A graceful close with client bytes
still queued unread becomes a reset, as the server's kernel would make it.

:func:`open_latency_stream` owns the pumps: on leaving it, the end of the connection
is delivered (bounded in time), then the pumps are cancelled.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from ._streams import DRAIN_LIMIT, FLUSH_LIMIT, READ_SIZE, CloseMode, Transport

# An incoming item: bytes, None for EOF, or the error that ended the client's side.
_Incoming = bytes | trio.BrokenResourceError | trio.ClosedResourceError | None


class LatencyStream(trio.abc.Stream):
    """Delays everything between ``transport_stream`` and its user by ``delay`` seconds.

    Build with :func:`open_latency_stream`, which runs the pumps.
    """

    def __init__(self, transport: trio.abc.Stream, delay: float, *, window: int) -> None:
        if not delay >= 0:
            raise ValueError(f"delay must be 0 or more, not {delay}")
        if window < 1:
            raise ValueError(f"window must be at least 1, not {window}")
        self.transport_stream = transport
        self.close_mode = CloseMode.GRACEFUL
        # A Transport knows how to end a TCP connection; any other stream (a memory
        # stream in tests) is closed, or closed forcefully for a reset.
        self._transport: Transport | None = transport if isinstance(transport, Transport) else None
        self._delay = delay
        self._window = window
        self._incoming: deque[tuple[float, _Incoming]] = deque()
        self._incoming_bytes = 0
        self._outgoing: deque[tuple[float, bytes | CloseMode]] = deque()
        self._outgoing_bytes = 0
        self._in_data = trio.lowlevel.ParkingLot()
        self._in_space = trio.lowlevel.ParkingLot()
        self._out_data = trio.lowlevel.ParkingLot()
        self._out_space = trio.lowlevel.ParkingLot()
        self._in_scope = trio.CancelScope()
        self._in_done = trio.Event()
        self._closing = False
        self._broken: BaseException | None = None
        self.done = trio.Event()

    # -- the user's side ---------------------------------------------------------------

    def pending_input(self) -> int:
        """Client bytes not yet read: queued here, plus those in the socket."""
        below = self._transport.pending_input() if self._transport is not None else 0
        return self._incoming_bytes + below

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        limit = READ_SIZE if max_bytes is None else max_bytes
        if limit < 1:
            raise ValueError("max_bytes must be at least 1")
        await trio.lowlevel.checkpoint()
        while True:
            if self._closing:
                raise trio.ClosedResourceError("the stream was closed")
            if not self._incoming:
                await self._in_data.park()
                continue
            due, item = self._incoming[0]
            if due > trio.current_time():
                await trio.sleep_until(due)
                continue
            if item is None:
                return b""
            if not isinstance(item, bytes):
                raise trio.BrokenResourceError("the client's side ended") from item
            return self._take(limit)

    def _take(self, limit: int) -> bytearray:
        now = trio.current_time()
        out = bytearray()
        while self._incoming and len(out) < limit:
            due, item = self._incoming[0]
            if due > now or not isinstance(item, bytes):
                break
            room = limit - len(out)
            if len(item) <= room:
                out += item
                self._incoming.popleft()
            else:
                out += item[:room]
                self._incoming[0] = (due, item[room:])
        self._incoming_bytes -= len(out)
        self._in_space.unpark_all()
        return out

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self._check_sendable()
        await trio.lowlevel.checkpoint()
        chunk = bytes(data)
        if not chunk:
            return
        while self._outgoing_bytes >= self._window:
            await self._out_space.park()
            self._check_sendable()
        self._outgoing.append((trio.current_time() + self._delay, chunk))
        self._outgoing_bytes += len(chunk)
        self._out_data.unpark_all()

    async def wait_send_all_might_not_block(self) -> None:
        self._check_sendable()
        await trio.lowlevel.checkpoint()
        while self._outgoing_bytes >= self._window:
            await self._out_space.park()
            self._check_sendable()

    def _check_sendable(self) -> None:
        if self._closing:
            raise trio.ClosedResourceError("the stream was closed")
        if self._broken is not None:
            raise trio.BrokenResourceError("the client's side is gone") from self._broken

    async def aclose(self) -> None:
        """Queue the end of the connection (as :attr:`close_mode` says) behind the data."""
        self.begin_close()
        await trio.lowlevel.checkpoint()

    def begin_close(self) -> None:
        """:meth:`aclose` without the checkpoint."""
        if self._closing:
            return
        self._closing = True
        self._outgoing.append((trio.current_time() + self._delay, self.close_mode))
        self._out_data.unpark_all()
        self._in_data.unpark_all()
        self._out_space.unpark_all()

    # -- the pumps ----------------------------------------------------------------------

    async def pump_in(self) -> None:
        try:
            with self._in_scope:
                await self._pump_in()
        finally:
            self._in_done.set()

    async def _pump_in(self) -> None:
        while True:
            while self._incoming_bytes >= self._window:
                await self._in_space.park()
            item: _Incoming
            try:
                data = await self.transport_stream.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                item = exc
            else:
                item = bytes(data) if data else None
            self._incoming.append((trio.current_time() + self._delay, item))
            if isinstance(item, bytes):
                self._incoming_bytes += len(item)
            self._in_data.unpark_all()
            if not isinstance(item, bytes):
                return

    async def pump_out(self) -> None:
        try:
            while True:
                while not self._outgoing:
                    await self._out_data.park()
                due, head = self._outgoing[0]
                await trio.sleep_until(due)
                if isinstance(head, CloseMode):
                    self._outgoing.popleft()
                    await self._finish(head)
                    return
                now = trio.current_time()
                chunk = bytearray()
                while self._outgoing:
                    due, item = self._outgoing[0]
                    if due > now or not isinstance(item, bytes):
                        break
                    chunk += item
                    self._outgoing.popleft()
                if self._broken is None:
                    try:
                        await self.transport_stream.send_all(chunk)
                    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                        self._broken = exc
                self._outgoing_bytes -= len(chunk)
                self._out_space.unpark_all()
        finally:
            self.done.set()

    async def _finish(self, mode: CloseMode) -> None:
        self._in_scope.cancel()
        await self._in_done.wait()  # so that nothing else reads the socket now
        if mode is CloseMode.GRACEFUL and self._incoming_bytes:
            # Client bytes arrived that the server never read: its kernel would reset.
            mode = CloseMode.RESET
        if self._transport is not None:
            self._transport.close_mode = mode
            await self._transport.aclose()
        elif mode is CloseMode.RESET:
            await trio.aclose_forcefully(self.transport_stream)
        else:
            try:
                await self.transport_stream.aclose()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass


@asynccontextmanager
async def open_latency_stream(
    transport: trio.abc.Stream, delay: float, *, window: int = 1 << 20
) -> AsyncIterator[LatencyStream]:
    """A :class:`LatencyStream` over ``transport`` with its pumps, for the block.

    ``transport`` is the simulator's TCP transport, or any stream (a trio memory
    stream, to run a gateway with latency under the autojump clock). Leaving the
    block closes the stream if it is still open and waits (for at most the delay
    plus the drain and flush limits) until its end reached the transport.
    """
    stream = LatencyStream(transport, delay, window=window)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.pump_in)
            nursery.start_soon(stream.pump_out)
            try:
                yield stream
            finally:
                stream.begin_close()
                with trio.move_on_after(delay + DRAIN_LIMIT + FLUSH_LIMIT + 1):
                    await stream.done.wait()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The pumps never raise: a group holds what the block raised; give it back as is.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
