"""One gateway connection of the sender: a writer and a reader over one stream.

Theory of operation
-------------------
The gateway never says "yes". It answers one bad notification per connection with a
6-byte error response that names it, and then closes. So "accepted" has to be earned:
a notification counts as accepted only when the gateway has answered something
written *after* it on the same connection (a later notification's rejection, or our
deliberately bad confirmation probe), or when a status-10 answer names it or a later
one. Never because time passed since our write: bytes can sit unread in socket buffers,
or answers can still be on the wire, for as long as the network likes.

Two tasks share the stream and one :class:`InFlightWindow`:

* the **writer** takes jobs from the sender's queue, gives each batch a contiguous
  range of identifiers, records it in the window *before* writing it (so an error
  response can never name something the window does not know) and writes it with one
  ``send_all``. It ends the window with a confirmation probe (a zero-length token,
  which any real gateway rejects) when the window is full, when asked to (``flush``,
  closing), or when nothing more has come to write for ``confirm_after`` seconds. It
  then writes nothing more on this connection (the gateway will close after its
  answer) and waits up to ``probe_timeout`` for the answer. No answer: the window's
  notifications end ``failed`` ("unconfirmed"); their fate is unknown and resending
  them could duplicate them.
* the **reader** reads the gateway's side. It is the authority on how the connection
  ended: an error response resolves the window (accepted before the named one,
  rejected at it, resent after it); a close or a reset without one means the window's
  fate is unknown, so all of it is resent and marked as possible duplicates.

A write that fails (the gateway closed or reset first, as it does right after an
error response) is not the end by itself: the reader goes on reading what arrived
before the close (TN2265), and the writer waits up to ``error_wait`` for its verdict.
A write that makes no progress for ``write_timeout`` (the gateway stopped reading)
ends the connection with the window's fate unknown.

With command 0 (no error responses, no probes) or the opt-in ``assume_accepted``, a
**settler** also accepts batches by assumption: once the kernel reports the bytes
acknowledged by the server's TCP stack, and ``settle_after`` more seconds pass with no
error response. Those outcomes carry ``Evidence.ASSUMED``.

Whoever ends the connection calls :meth:`Connection.end`, which cancels the other
tasks. Every job in the window leaves it with an outcome or back in the queue before
that, so nothing is lost when the tasks are cancelled. :meth:`Connection.run`
returns an :class:`Ended` record for the sender's :class:`ConnectionPolicy`; outcomes
are settled through the sender's :class:`Ledger`. A connection knows nothing else of the
sender.
"""

from __future__ import annotations

import logging
import math
from typing import Final

import trio

from ..wire import (
    Command,
    ConnectionClosed,
    DeviceToken,
    ErrorResponse,
    ErrorResponseDecoder,
    Notification,
    RemoteProtocolError,
    Status,
    encode_batch,
    encode_broadcast,
    encode_probe,
)
from ._config import SenderConfig
from ._diagnosis import causes, describe_error, is_tls_refusal
from ._ledger import Ledger
from ._outcomes import Evidence, Job, Outcome, job_notification
from ._policy import CAREFUL_WINDOW, Ended, EndKind
from ._transport import unacknowledged_bytes
from ._window import IdentifierAllocator, InFlightWindow, Run

logger = logging.getLogger("apns_legacy.sender")

_RECEIVE_SIZE: Final = 65_536
# Frames per write, at most; write_size usually stops a batch first.
_MAX_BATCH: Final = 4096
# How often the assumption settler asks the kernel whether the bytes were acknowledged.
_ACK_POLL: Final = 0.02
# The confirmation probe's stand-in in a window; never reported.
_PROBE: Final = Outcome(Notification(token=DeviceToken(bytes(32)), payload=b"{}"))


def _outcomes(runs: list[Run[Job]]) -> list[Outcome]:
    """The outcomes of jobs leaving a window, each with the identifier it was written
    with; a bare notification (from ``submit_many``) gets its Outcome here. Without the
    probe."""
    outcomes: list[Outcome] = []
    append = outcomes.append
    for first, items in runs:
        for identifier, job in enumerate(items, first):
            if job is _PROBE:
                continue
            outcome = job if isinstance(job, Outcome) else Outcome(job)
            outcome.identifier = identifier
            append(outcome)
    return outcomes


def _count(runs: list[Run[Job]]) -> int:
    """How many jobs the runs hold, the probe not counted (it is only ever written last)."""
    total = 0
    for _, items in runs:
        total += len(items)
        if items and items[-1] is _PROBE:
            total -= 1
    return total


class Connection:
    """One connection's tasks and window. Internal: the :class:`Sender` drives it."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        number: int,
        config: SenderConfig,
        ledger: Ledger,
        allocator: IdentifierAllocator,
        window_limit: int,
        confirm_after: float,
    ) -> None:
        self.stream = stream
        self.number = number
        self._config = config
        self._ledger = ledger
        self._allocator = allocator
        # Jobs are written as they come from the queue; their outcomes are made (and
        # given their identifiers) as they leave, a run at a time (_outcomes).
        self.window: InFlightWindow[Job] = InFlightWindow(on_release=allocator.release)
        self.window_limit = window_limit
        self._careful = window_limit <= CAREFUL_WINDOW
        self._confirm_after = confirm_after
        self._writing = False
        self.opened_at = trio.current_time()
        self._can_probe = config.command is not Command.SIMPLE
        self._tls_refusal: str | None = None
        self._assume = config.assume_accepted or not self._can_probe
        self._kind: EndKind | None = None
        self._reason = ""
        self._progress = False
        self._silent = False
        self._unknown = 0
        self._written = 0
        self._accepted = 0
        self._rejected = False
        self._probe_identifier: int | None = None
        self._last_write = self.opened_at
        self._window_grew = trio.lowlevel.ParkingLot()
        self._room = trio.lowlevel.ParkingLot()
        self._cancel_scope = trio.CancelScope()
        self._silent_losses = ledger.silent_losses

    async def run(self) -> Ended:
        """Run until the connection ends; the window is empty afterwards."""
        try:
            with self._cancel_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._reader)
                    nursery.start_soon(self._writer)
                    if self._assume:
                        nursery.start_soon(self._settler)
        finally:
            # Also when the sender itself is being cancelled: leave no job behind in a
            # window nobody will look at again, and close the stream.
            ended_at = trio.current_time()
            quiet_for = 0.0 if self._writing else ended_at - self._last_write
            if self._kind is None:
                self._kind = EndKind.CLOSED
            leftovers = self.take_window()
            if leftovers:
                # Written (perhaps partly) as the connection ended: fate unknown.
                self._unknown += len(leftovers)
                self._ledger.requeue(
                    leftovers, certain=False, reason="the connection ended mid-write"
                )
            with trio.CancelScope(shield=True), trio.move_on_after(1.0) as scope:
                try:
                    await self.stream.aclose()
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
            if scope.cancelled_caught:
                await trio.aclose_forcefully(self.stream)
        return Ended(
            kind=self._kind,
            duration=ended_at - self.opened_at,
            written=self._written,
            unknown=self._unknown,
            progress=self._progress,
            silent=self._silent,
            careful=self._careful,
            quiet_for=quiet_for,
            accepted=self._accepted,
            rejected=self._rejected,
            reason=self._reason,
            tls_refusal=self._tls_refusal,
        )

    def end(self, kind: EndKind, reason: str = "") -> None:
        if self._kind is None:
            self._kind = kind
            self._reason = reason
        self._cancel_scope.cancel()

    def take_window(self) -> list[Outcome]:
        """Empty the window (the sender is closing); the notifications in it, in order."""
        return _outcomes(self.window.take_all_runs())

    # -- writer ------------------------------------------------------------------------

    async def _writer(self) -> None:
        ledger = self._ledger
        config = self._config
        queue = ledger.queue
        window = self.window
        # A wake-up (new work) can come in the same scheduling round as the reader's
        # end(): check before taking anything from the queue, so nothing is taken onto
        # a connection that is already over.
        while self._kind is None:
            if not len(queue):
                if len(window) and self._can_probe:
                    # Nothing to write and something to confirm: wait a little for more
                    # work (each probe costs a reconnect), then probe.
                    # A careful connection (after one died without a word) probes at
                    # once: its point is to learn quickly whether the gateway answers.
                    oldest = window.oldest_time
                    deadline = (
                        -math.inf
                        if ledger.confirm_requested or self._careful or oldest is None
                        else oldest + self._confirm_after
                    )
                    with trio.move_on_at(deadline):
                        await queue.wait()
                    if not len(queue) and (
                        ledger.confirm_requested or trio.current_time() >= deadline
                    ):
                        await self._probe()
                        return
                    continue
                # Close once idle for idle_timeout with nothing in flight; wake early
                # for new work, a probe request or the sender closing.
                with trio.move_on_at(self._last_write + config.idle_timeout) as idle:
                    await queue.wait()
                if idle.cancelled_caught and not len(queue):
                    if not len(window):
                        logger.info("connection %d idle for %ss: closing", self.number,
                                    config.idle_timeout)  # fmt: skip
                        self.end(EndKind.IDLE, "idle")
                        return
                    await self._room.park()  # the settler wakes us as the window drains
                continue
            room = self.window_limit - len(window)
            if self._ledger.silent_losses != self._silent_losses and len(window):
                # Another connection died without a word and its window went back to
                # the head of the queue. Taking on here would carry those (and more)
                # past whatever killed it, on a window sized before anyone knew: end
                # this one with a probe and let the next connection start careful.
                room = 0
            if room <= 0:
                if self._can_probe:
                    # Settle the full window for certain; the gateway's answer ends this
                    # connection and the slot opens a fresh one for the rest.
                    await self._probe()
                    return
                await self._room.park()  # command 0: the settler makes room
                continue
            jobs = queue.take(min(room, _MAX_BATCH), config.write_size)
            first = self._allocator.take(len(jobs))
            if first is None:  # identifiers wrapped onto live ones: wait for settling
                queue.put_front(jobs)
                await ledger.wait_settled()
                continue
            data = _encode_jobs(config.command, first, jobs)
            ledger.stats.written += len(jobs)
            self._written += len(jobs)
            window.record(first, jobs, math.inf)  # timed once the write completes
            await self._send(data)
        await trio.lowlevel.checkpoint()

    async def _probe(self) -> None:
        """Write the confirmation probe, then wait for its answer (the reader's)."""
        ledger = self._ledger
        while (first := self._allocator.take(1)) is None:
            await ledger.wait_settled()
        self._probe_identifier = first
        ledger.stats.probes += 1
        self.window.record(first, [_PROBE], math.inf)
        logger.debug("connection %d: confirmation probe %d", self.number, first)
        await self._send(encode_probe(self._config.command, first))
        timeout = self._config.probe_timeout
        with trio.move_on_after(timeout):
            # The reader ends the connection (and cancels this) when the answer comes.
            # With assume_accepted the settler may empty the window first: then a server
            # that takes zero-length tokens has had its chance, and we are done.
            while len(self.window) > 1 or not self._assume:
                await self._room.park()
            self.end(EndKind.CLOSED, "settled by assumption; the probe was not answered")
            return
        ledger.stats.probes_unanswered += 1
        jobs = self.take_window()
        reason = (
            f"unconfirmed: the gateway did not answer the confirmation probe within "
            f"{timeout:g} s, so whether it took this notification is unknown"
        )
        logger.warning("connection %d: %s (%d notifications)", self.number, reason, len(jobs))
        ledger.fail_unconfirmed(jobs, reason)
        self.end(EndKind.UNCONFIRMED, "the confirmation probe was not answered")

    async def _send(self, data: bytes) -> None:
        config = self._config
        failure: BaseException | None = None
        self._writing = True
        with trio.move_on_after(config.write_timeout) as stall:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                failure = exc
        self._writing = False
        if failure is None and not stall.cancelled_caught:
            now = trio.current_time()
            self._last_write = now
            self.window.set_last_time(now)
            self._window_grew.unpark_all()
            return
        # TN2265: the gateway may have explained itself before the close that broke
        # this write, or may answer although it stopped reading. The reader goes on
        # reading; if it finds the error response it ends the connection, and this
        # wait with it.
        if failure is not None:
            logger.debug("connection %d: write failed (%s); reading what is left",
                         self.number, failure)  # fmt: skip
        await trio.sleep(config.error_wait)
        if failure is not None:
            self._lose(
                EndKind.LOST,
                f"write failed ({describe_error(failure)}) and no error response followed",
            )
        else:
            self._ledger.stats.stalled_writes += 1
            self._lose(
                EndKind.STALLED,
                f"a write made no progress for {config.write_timeout:g} s "
                "(the gateway stopped reading)",
            )
        await trio.sleep_forever()  # end() has cancelled us

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
                    self._silent = True
                    self._lose(
                        EndKind.LOST, "the gateway closed the connection without an error response"
                    )
                    return
        except RemoteProtocolError as exc:
            self._lose(
                EndKind.LOST, f"the gateway sent something other than an error response: {exc}"
            )
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._silent = not any(isinstance(cause, ConnectionResetError) for cause in causes(exc))
            if is_tls_refusal(exc):
                self._tls_refusal = describe_error(exc)
            self._lose(EndKind.LOST, f"connection lost: {describe_error(exc)}")

    def _on_error_response(self, event: ErrorResponse) -> None:
        status, identifier = event.status, event.identifier
        if (
            self._probe_identifier is not None
            and status == Status.MISSING_DEVICE_TOKEN
            and identifier == 0
        ):
            # Real gateways answered a zero-length token with identifier 0.
            identifier = self._probe_identifier
        logger.debug("connection %d: error response status %s identifier %d",
                     self.number, status, identifier)  # fmt: skip
        resolution = self.window.on_error_runs(status, identifier)
        ledger = self._ledger
        accepted = _count(resolution.accepted)
        resend = _outcomes(resolution.resend)
        rejected_run = resolution.rejected
        rejected = _outcomes([rejected_run])[0] if rejected_run and _count([rejected_run]) else None
        if not resolution.certain:
            ledger.stats.unknown_identifiers += 1
            logger.warning(
                "connection %d: error response (status %s) names identifier %d, which is "
                "not in flight; resending all %d in flight as possible duplicates",
                self.number, status, identifier, sum(len(items) for _, items in resolution.resend),
            )  # fmt: skip
            self._unknown += len(resend)
        evidence = Evidence.SHUTDOWN if status == Status.SHUTDOWN else Evidence.CONFIRMED
        if accepted or rejected_run is not None:
            self._progress = True
        self._accepted += accepted
        # Run by run (a write's worth each), so that a whole window's outcomes never
        # exist at once: each is handed out and, unless the caller keeps it, freed.
        for run in resolution.accepted:
            if outcomes := _outcomes([run]):
                ledger.accept(outcomes, evidence)
        if rejected is not None:
            self._rejected = True
            ledger.reject(rejected, status)
        ledger.requeue(resend, certain=resolution.certain, reason="")
        self.end(EndKind.ANSWERED, f"error response: status {int(status)}")

    def _lose(self, kind: EndKind, reason: str) -> None:
        jobs = self.take_window()
        self._unknown += len(jobs)
        if jobs:
            logger.info("connection %d: %s; %d in flight will be resent", self.number, reason,
                        len(jobs))  # fmt: skip
        self._ledger.requeue(jobs, certain=False, reason=reason)
        self.end(kind, reason)

    # -- settler (command 0 and assume_accepted only) ----------------------------------

    async def _settler(self) -> None:
        settle_after = self._config.settle_after
        window = self.window
        while True:
            oldest = window.oldest_time
            if oldest is None or oldest == math.inf:
                await self._window_grew.park()
                continue
            # Wait until the server's TCP stack has acknowledged everything written so
            # far; the quiet period counts from then, not from our write. The kernel
            # has no notification for that, so ask it now and then.
            while (unacked := unacknowledged_bytes(self.stream)) is not None and unacked > 0:  # noqa: ASYNC110
                await trio.sleep(_ACK_POLL)
            acknowledged_at = trio.current_time()
            await trio.sleep(settle_after)
            runs = window.settle_runs_written_before(acknowledged_at)
            if any(items for _, items in runs):
                self._progress = True
                for run in runs:
                    if outcomes := _outcomes([run]):
                        self._ledger.accept(outcomes, Evidence.ASSUMED)
                # No probe ends this window (command 0), so the connection goes on:
                # grow a careful window here, as the policy does between connections.
                self.window_limit = min(self._config.window_size, self.window_limit * 2)
                self._room.unpark_all()


def _encode_jobs(command: Command, first: int, jobs: list[Job]) -> bytes:
    # The devices of one broadcast share one Broadcast value: their frames differ only
    # in token and identifier, and are assembled from the raw tokens without a
    # Notification each. Anything else goes through encode_batch.
    head = jobs[0]
    shared = head.broadcast if isinstance(head, Outcome) else None
    if command == Command.FRAME and shared is not None:
        tokens = [
            job.token_bytes for job in jobs if isinstance(job, Outcome) and job.broadcast is shared
        ]
        if len(tokens) == len(jobs) and all(len(t) == len(tokens[0]) for t in tokens):
            return encode_broadcast(first, tokens, shared.payload, shared.expiry, shared.priority)
    return encode_batch(command, first, [job_notification(job) for job in jobs])
