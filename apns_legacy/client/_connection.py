"""One gateway connection of the sender: a writer, a reader and a settler over one stream.

Theory of operation
-------------------
Three tasks share one stream and one :class:`InFlightWindow`:

* the **writer** takes jobs from the sender's shared queue, gives them a contiguous
  range of identifiers, records the batch in the window *before* writing it (so an
  error response can never name something the window does not know), and writes the
  whole batch with one ``send_all``. When the window is full it either ends the
  connection with a confirmation probe (``probe_when_full``: the gateway's answer
  settles the whole window at once and the slot reconnects) or waits for room. The
  window's size shrinks after connections die with their window's fate unknown and
  grows back with progress (see ``Sender.window_limit``).
* the **reader** reads the gateway's side of the stream. The gateway only ever
  writes one thing, a 6-byte error response, and then closes. The decoder copes with
  the 6 bytes arriving in pieces or together with the close. The reader is the
  authority on how the connection ended: an error response resolves the window
  (accepted before, rejected at, resent after the named one); a close or a reset
  without one means the window's fate is unknown, so all of it is resent and marked
  as possible duplicates.
* the **settler** accepts batches that have been on the wire for ``settle_after``
  seconds with no error response (the quiet-period rule). While a write is blocked
  (the gateway is not reading) it accepts nothing, and after a long block it restarts
  the clock, since bytes may have sat in socket buffers all that while.

A failed write does not end the connection by itself: TN2265 says to read what the
gateway sent before giving up, so the writer waits up to ``error_wait`` for the
reader to find the error response, and only then treats the window as lost.

Whoever ends the connection calls :meth:`Connection.end`, which cancels the other
two tasks. Every job that was in the window leaves it with an outcome or back in the
queue before that, so nothing is lost when the tasks are cancelled.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Final

import trio

from ..wire import (
    Command,
    ConnectionClosed,
    ErrorResponse,
    ErrorResponseDecoder,
    RemoteProtocolError,
    Status,
    encode_batch,
    encode_broadcast,
    encode_probe,
)
from ._diagnosis import causes
from ._outcomes import BroadcastOutcome, Outcome
from ._window import InFlightWindow

if TYPE_CHECKING:
    from ._sender import Sender

logger = logging.getLogger("apns_legacy.sender")

# A send_all that takes longer than this was held up by the peer (back-pressure).
_BLOCKED: Final = 0.05
_RECEIVE_SIZE: Final = 65_536
# Frames per write, at most; write_size usually stops a batch first.
_MAX_BATCH: Final = 4096


class Connection:
    """One connection's tasks and window. Internal: the :class:`Sender` drives it."""

    def __init__(self, sender: Sender, stream: trio.abc.Stream, number: int) -> None:
        self.sender = sender
        self.stream = stream
        self.number = number
        self.window: InFlightWindow[Outcome] = InFlightWindow()
        self.opened_at = trio.current_time()
        #: Something on this connection was accepted or rejected.
        self.made_progress = False
        #: How it ended: "error", "lost", "idle" or "closed".
        self.end_kind: str | None = None
        #: The gateway closed it (EOF, or a TLS stream cut short) without a word, as
        #: opposed to a reset: what Apple did with the other environment's certificate.
        self.closed_silently = False
        #: How many notifications were in flight when it died without a word.
        self.lost = 0
        self.probe_identifier: int | None = None
        self._send_started: float | None = None
        self._last_write = self.opened_at
        self._clock_floor = -math.inf
        self._window_grew = trio.lowlevel.ParkingLot()
        self._room = trio.lowlevel.ParkingLot()
        self._cancel_scope = trio.CancelScope()

    async def run(self) -> None:
        """Run until the connection ends; the window is empty afterwards."""
        try:
            with self._cancel_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._reader)
                    nursery.start_soon(self._settler)
                    nursery.start_soon(self._writer)
        finally:
            # Also when the sender itself is being cancelled: close the stream and
            # leave no job behind in a window nobody will look at again.
            if self.end_kind is None:
                self.end_kind = "closed"
            leftovers = self.window.take_all()
            if leftovers:
                # Written (perhaps partly) as the connection ended: fate unknown.
                self.sender.requeue(
                    leftovers, certain=False, reason="the connection ended mid-write"
                )
            with trio.CancelScope(shield=True), trio.move_on_after(1.0) as scope:
                try:
                    await self.stream.aclose()
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
            if scope.cancelled_caught:
                await trio.aclose_forcefully(self.stream)

    def end(self, kind: str) -> None:
        if self.end_kind is None:
            self.end_kind = kind
        self._cancel_scope.cancel()

    # -- writer ------------------------------------------------------------------------

    async def _writer(self) -> None:
        sender = self.sender
        config = sender.config
        queue = sender.queue
        window = self.window
        while self.end_kind is None:
            if not len(queue):
                if (
                    sender.probe_wanted
                    and len(window)
                    and self.probe_identifier is None
                    and config.command is not Command.SIMPLE
                ):
                    if await self._write_probe():
                        await self._await_probe_answer()
                        return
                    await self._room.park()  # no identifier free yet: wait for settling
                    continue
                # Nothing to write. Close once idle for idle_timeout with nothing in
                # flight; wake early for new work, a probe request or the sender closing.
                with trio.move_on_at(self._last_write + config.idle_timeout) as idle:
                    await queue.wait()
                if idle.cancelled_caught and not len(queue):
                    if not len(window):
                        logger.info("connection %d idle for %ss: closing", self.number,
                                    config.idle_timeout)  # fmt: skip
                        self.end("idle")
                        return
                    await self._room.park()  # the settler wakes us as the window drains
                continue
            room = sender.window_limit - len(window)
            if room <= 0:
                if (
                    config.probe_when_full
                    and config.command is not Command.SIMPLE
                    and sender.window_limit == config.window_size
                    and await self._write_probe()
                ):
                    # Settle the full window for certain; the gateway's answer ends
                    # this connection and the slot opens a fresh one for the rest.
                    await self._await_probe_answer()
                    return
                await self._room.park()
                continue
            jobs = queue.take(min(room, _MAX_BATCH), config.write_size)
            first = sender.allocator.take(len(jobs), sender.is_live)
            if first is None:  # identifiers wrapped onto live ones: wait for settling
                queue.put_front(jobs)
                await self._room.park()
                continue
            data = _encode_jobs(config.command, first, jobs)
            for offset, job in enumerate(jobs, first):
                job.identifier = offset
            sender.stats.written += len(jobs)
            window.record(first, jobs, math.inf)  # timed once the write completes
            await self._send(data)

    async def _write_probe(self) -> bool:
        sender = self.sender
        first = sender.allocator.take(1, sender.is_live)
        if first is None:
            return False
        self.probe_identifier = first
        sender.stats.probes += 1
        self.window.record(first, [sender.probe_job], math.inf)
        logger.debug("connection %d: confirmation probe %d", self.number, first)
        await self._send(encode_probe(self.sender.config.command, first))
        return True

    async def _await_probe_answer(self) -> None:
        # A real gateway answers the probe and closes, and the reader ends this
        # connection. A server that takes zero-length tokens never answers: then the
        # settler accepts the window (probe included) by quiet period, and we close
        # the connection here, with nothing left in flight, so the slot can go on.
        while len(self.window):
            await self._room.park()
        if self.end_kind is None:
            logger.warning(
                "connection %d: the confirmation probe was not answered (the gateway took a "
                "zero-length token); settled by quiet period instead",
                self.number,
            )
            self.end("closed")

    async def _send(self, data: bytes) -> None:
        self._send_started = started = trio.current_time()
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            # TN2265: the gateway may have explained itself before closing. Give the
            # reader a moment to find the error response; if it does, it ends the
            # connection and cancels this sleep.
            logger.debug("connection %d: write failed (%s); reading what is left",
                         self.number, exc)  # fmt: skip
            await trio.sleep(self.sender.config.error_wait)
            self._lose(f"write failed ({exc}) and no error response followed")
            return
        now = trio.current_time()
        self._send_started = None
        self._last_write = now
        if now - started > _BLOCKED:
            self._clock_floor = now
        self.window.set_last_time(now)
        self._window_grew.unpark_all()

    # -- reader ------------------------------------------------------------------------

    async def _reader(self) -> None:
        decoder = ErrorResponseDecoder()
        try:
            while True:
                data = await self.stream.receive_some(_RECEIVE_SIZE)
                if data:
                    decoder.receive_data(data)
                else:
                    decoder.receive_eof()
                event = decoder.next_event()
                if isinstance(event, ErrorResponse):
                    self._on_error_response(event)
                    return
                if isinstance(event, ConnectionClosed):
                    self.closed_silently = True
                    self._lose("the gateway closed the connection without an error response")
                    return
        except RemoteProtocolError as exc:
            self._lose(f"the gateway sent something other than an error response: {exc}")
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.closed_silently = not any(
                isinstance(cause, ConnectionResetError) for cause in causes(exc)
            )
            self.sender.note_connection_error(exc)
            self._lose(f"connection lost: {exc}")

    def _on_error_response(self, event: ErrorResponse) -> None:
        status, identifier = event.status, event.identifier
        if (
            self.probe_identifier is not None
            and status == Status.MISSING_DEVICE_TOKEN
            and identifier == 0
        ):
            # Real gateways answered a zero-length token with identifier 0.
            identifier = self.probe_identifier
        logger.debug("connection %d: error response status %s identifier %d",
                     self.number, status, identifier)  # fmt: skip
        resolution = self.window.on_error(status, identifier)
        sender = self.sender
        if not resolution.certain:
            sender.stats.unknown_identifiers += 1
            logger.warning(
                "connection %d: error response (status %s) names identifier %d, which is "
                "not in flight; resending all %d in flight as possible duplicates",
                self.number, status, identifier, len(resolution.resend),
            )  # fmt: skip
        reason = "shutdown" if status == Status.SHUTDOWN else "confirmed"
        if resolution.accepted or resolution.rejected is not None:
            self.made_progress = True
        sender.accept(resolution.accepted, reason)
        if resolution.accepted:
            sender.widen_window()
        if resolution.rejected is not None:
            sender.reject(resolution.rejected, status)
        sender.requeue(resolution.resend, certain=resolution.certain, reason="")
        self.end("error")

    def _lose(self, reason: str) -> None:
        jobs = self.window.take_all()
        self.lost = len(jobs)
        if jobs:
            logger.info("connection %d: %s; %d in flight will be resent", self.number, reason,
                        len(jobs))  # fmt: skip
        self.sender.requeue(jobs, certain=False, reason=reason)
        if jobs:
            self.sender.narrow_window(len(jobs))
        self.end("lost")

    # -- settler -----------------------------------------------------------------------

    async def _settler(self) -> None:
        settle_after = self.sender.config.settle_after
        window = self.window
        while True:
            oldest = window.oldest_time
            if oldest is None or oldest == math.inf:
                await self._window_grew.park()
                continue
            await trio.sleep_until(max(oldest, self._clock_floor) + settle_after)
            now = trio.current_time()
            if self._send_started is not None and now - self._send_started > _BLOCKED:
                # The gateway is not reading; what we wrote may still be in buffers.
                self._clock_floor = now
                continue
            cutoff = now - settle_after
            if self._clock_floor > cutoff:
                continue
            accepted = window.settle_written_before(cutoff)
            if accepted:
                self.made_progress = True
                self.sender.accept(accepted, "quiet")
                self.sender.widen_window()
                self._room.unpark_all()


def _encode_jobs(command: Command, first: int, jobs: list[Outcome]) -> bytes:
    # A run of one broadcast's outcomes is encoded straight from their raw tokens,
    # without making a Notification for each; anything else goes through encode_batch.
    head = jobs[0]
    if command == Command.FRAME and type(head) is BroadcastOutcome:
        shared = head.shared
        length = len(head.token_bytes)
        tokens = [
            job.token_bytes
            for job in jobs
            if type(job) is BroadcastOutcome
            and job.shared is shared
            and len(job.token_bytes) == length
        ]
        if len(tokens) == len(jobs):
            return encode_broadcast(first, tokens, shared.payload, shared.expiry, shared.priority)
    return encode_batch(command, first, [job.notification for job in jobs])
