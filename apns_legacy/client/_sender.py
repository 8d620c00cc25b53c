"""The sender: a pool of gateway connections that turns notifications into outcomes.

Every submitted notification ends with exactly one :class:`Outcome`: accepted,
rejected (the gateway named it) or failed (the sender gave up). The sender keeps
each one either in its queue, in one connection's in-flight window, or settled;
:attr:`Sender.stats` always satisfies ``submitted == accepted + rejected + failed +
pending``. The bookkeeping is the :class:`~apns_legacy.client._ledger.Ledger`'s; this
class is the front: checking and queueing submissions, waiting, closing, and running
the connection slots.

Connections are "slots": each slot connects when there is work, runs a
:class:`~apns_legacy.client._connection.Connection` until it ends, and connects
again (with exponential backoff and full jitter after failed connects). How each
connection ended goes to the :class:`ConnectionPolicy`, which sizes the next window
(careful after a silent death) and decides when retrying is pointless: a TLS
handshake refused for a certificate problem, a gateway that closes every connection
right after the handshake without a word (Apple's gateway with a certificate for the
other environment), or connection after connection that settles nothing.
"""

from __future__ import annotations

import collections
import logging
import math
import random
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Sequence,
)
from itertools import islice
from typing import Any, TypeVar

import trio

from ..wire import (
    TOKEN_LENGTH,
    Broadcast,
    DeviceToken,
    LocalProtocolError,
    Notification,
    check_token_length,
)
from ._config import SenderConfig
from ._connection import Connection
from ._diagnosis import describe_connect_error, describe_error, is_tls_refusal, token_bytes
from ._ledger import Ledger, OutcomeCallback
from ._outcomes import BroadcastOutcome, Job, Outcome, SenderStats, as_outcome
from ._policy import ConnectionPolicy, EndKind, GiveUp
from ._window import IdentifierAllocator

logger = logging.getLogger("apns_legacy.sender")

#: Opens one connection to the gateway: TCP plus TLS handshake, ready for frames.
Connector = Callable[[], Awaitable[trio.abc.Stream]]
T = TypeVar("T")
# Queued notifications that justify opening one more connection while others are
# still being opened (about one write's worth).
_WORK_PER_NEW_CONNECTION = 512
# A spare connection older than this is closed rather than used (gateways and
# middleboxes drop idle connections; a dead spare would cost a lost window).
_SPARE_MAX_AGE = 60.0
# How long a graceful close waits for spares still in their handshake.
_SPARE_CLOSE_WAIT = 2.0
# Most spare connections per slot (besides the one in use).
_MAX_SPARES = 3
# A spare closed by the gateway sooner than this after its handshake: the gateway
# does not want connections nobody writes on (or counts them), so spares stop. One
# that lived longer met an idle timeout: later spares are kept half as long.
_SPARE_QUICK_DEATH = 1.0
# A spare's pending read (it returns only when the gateway closes or misbehaves).
_RECEIVE_SIZE = 65_536


class _Spare:
    """A connection opened ahead of need (``SenderConfig.spare_connection``).

    Once its handshake is done it waits with a read pending, so a spare the gateway
    (or a middlebox) closes while it waits is noticed and thrown away, never handed a
    window whose fate would then be unknown. Taking it cancels that read (a
    cancelled read loses nothing) and hands the stream over.
    """

    def __init__(self) -> None:
        self._ready = trio.Event()
        self._watched = trio.Event()
        self._stream: trio.abc.Stream | None = None
        self._watch = trio.CancelScope()
        self._abandoned = False
        self.opened_at = 0.0
        self.max_age = _SPARE_MAX_AGE
        #: Seconds the connect and handshake took (None: failed or not finished).
        self.connect_seconds: float | None = None
        #: The gateway closed it while it waited.
        self.died = False
        #: Seconds it waited, ready, before the gateway closed it.
        self.waited = 0.0

    async def run(self, connect: Connector, connect_timeout: float, max_age: float) -> None:
        self.max_age = max_age
        started = trio.current_time()
        try:
            try:
                with trio.fail_after(connect_timeout):
                    stream = await connect()
            except (OSError, trio.BrokenResourceError, trio.TooSlowError):
                return  # the slot connects the ordinary way, with its retry rules
            if self._abandoned:
                await trio.aclose_forcefully(stream)
                return
            self._stream = stream
            self.opened_at = trio.current_time()
            self.connect_seconds = self.opened_at - started
            self._ready.set()
            with self._watch:
                with trio.move_on_after(max_age) as aged:
                    try:
                        await stream.receive_some(_RECEIVE_SIZE)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass
                # Anything at all from the gateway before we wrote (a close, a reset,
                # bytes) means this connection is not fit to carry a window. One
                # unused for a while is closed by us, before a middlebox forgets it.
                self.died = not aged.cancelled_caught
                self.waited = trio.current_time() - self.opened_at
                self._stream = None
                if self.died:
                    await trio.aclose_forcefully(stream)
                else:
                    await _close_gently(stream)
        finally:
            self._ready.set()
            self._watched.set()

    async def take(self) -> trio.abc.Stream | None:
        """The spare's stream, once its connect has finished; None if it failed, died
        or is stale."""
        await self._ready.wait()
        self._watch.cancel()
        await self._watched.wait()
        stream, self._stream = self._stream, None
        if stream is not None and trio.current_time() - self.opened_at > self.max_age:
            await trio.aclose_forcefully(stream)
            return None
        return stream

    async def ready(self) -> None:
        """Return once the connect and handshake have finished (or failed)."""
        await self._ready.wait()

    async def discard(self) -> None:
        self._abandoned = True
        self._watch.cancel()
        if self._ready.is_set():
            await self._watched.wait()  # the watching read has let go of the stream
        stream, self._stream = self._stream, None
        if stream is not None:
            await _close_gently(stream)


async def _close_gently(stream: trio.abc.Stream) -> None:
    # A spare we no longer need ends with TLS close_notify, as any connection we close
    # does (an abrupt close reads as an error on the gateway's side), within a second.
    with trio.move_on_after(1.0) as scope:
        try:
            await stream.aclose()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
    if scope.cancelled_caught:
        await trio.aclose_forcefully(stream)


class _Spares:
    """One slot's spare connections: opened in parallel, taken oldest first.

    How many are kept follows the traffic: enough that the next one has finished
    its handshake by the time the current connection ends, that is the handshake's
    time over a connection's life (at 20 ms round trip and 0.5% invalid tokens a
    connection lives one round trip, a resumed handshake takes two), at least one
    and at most ``_MAX_SPARES``. A spare that the gateway closes right after its
    handshake turns spares off for the slot (a gateway that counts connections, or
    refuses idle ones, would otherwise see a stream of them); one it closes after
    waiting a while met an idle timeout (a middlebox's, say), and later spares are
    closed by us after half that wait instead of a minute.
    """

    def __init__(self, connect: Connector, connect_timeout: float) -> None:
        self._connect = connect
        self._timeout = connect_timeout
        self._pending: collections.deque[_Spare] = collections.deque()
        self._handshake: float | None = None
        self._life: float | None = None
        self.enabled = True
        # How long a spare may wait for its turn.
        self._max_age = _SPARE_MAX_AGE

    @property
    def wanted(self) -> int:
        if not self.enabled:
            return 0
        if self._handshake is None or self._life is None:
            return 1
        need = math.ceil(self._handshake / max(self._life, 1e-3))
        return max(1, min(_MAX_SPARES, need))

    def replenish(self, nursery: trio.Nursery) -> None:
        """Start opening spares until the slot has as many as it wants, in parallel."""
        while len(self._pending) < self.wanted:
            spare = _Spare()
            self._pending.append(spare)
            nursery.start_soon(spare.run, self._connect, self._timeout, self._max_age)

    async def take(self) -> tuple[trio.abc.Stream | None, bool]:
        """A spare's stream (None if none is usable) and whether one was used."""
        while self._pending:
            spare = self._pending.popleft()
            stream = await spare.take()
            if spare.connect_seconds is not None:
                self._handshake = _average(self._handshake, spare.connect_seconds)
            if spare.died and spare.waited < _SPARE_QUICK_DEATH:
                logger.info("a spare connection was closed by the gateway right after its "
                            "handshake; no more spares on this slot")  # fmt: skip
                self.enabled = False
                await self.discard()
            elif spare.died:
                self._max_age = min(self._max_age, spare.waited / 2)
                logger.info("a spare connection was closed by the gateway after %.1fs "
                            "unused; spares now wait at most %.1fs", spare.waited,
                            self._max_age)  # fmt: skip
                await self.discard()
            if stream is not None:
                return stream, True
        return None, False

    def connection_ended(self, duration: float) -> None:
        self._life = _average(self._life, duration)

    async def discard(self) -> None:
        while self._pending:
            await self._pending.popleft().discard()

    async def wind_down(self) -> None:
        """Close every spare with close_notify, letting one still in its handshake
        finish it first (the caller bounds the wait): cut off mid-handshake, it reads
        as a failed handshake on the gateway's side."""
        for spare in list(self._pending):
            await spare.ready()
        await self.discard()


def _average(old: float | None, new: float) -> float:
    return new if old is None else 0.7 * old + 0.3 * new


class Sender:
    """Sends notifications over a pool of connections; see :func:`open_sender`.

    Not constructed directly: :func:`open_sender` runs its tasks.
    """

    def __init__(
        self,
        connect: Connector,
        config: SenderConfig,
        on_outcome: OutcomeCallback | None,
        describe: str,
    ) -> None:
        #: The settings this sender runs with.
        self.config = config
        self._ledger = ledger = Ledger(
            queue_size=config.queue_size, max_losses=config.max_losses, on_outcome=on_outcome
        )
        self._queue = ledger.queue
        self._allocator = IdentifierAllocator()
        self._policy = ConnectionPolicy(
            command=config.command,
            window_size=config.window_size,
            max_unproductive=config.max_unproductive,
            confirm_after=config.confirm_after,
            connections=config.connections,
        )
        self._connect = connect
        self._describe = describe
        self._connections: list[Connection | None] = [None] * config.connections
        self._scope = trio.CancelScope()
        self._closed = False
        self._connecting = 0
        self._nursery: trio.Nursery | None = None
        #: Each slot's spare connections (closed gently by a graceful close).
        self._spares: list[_Spares] = []

    @property
    def stats(self) -> SenderStats:
        """Running totals; ``submitted == accepted + rejected + failed + pending``."""
        return self._ledger.stats

    @property
    def fatal_error(self) -> str | None:
        """Why the sender gave up on the gateway for good, if it did."""
        return self._ledger.fatal

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # The connection slots run in a scope of their own, so that closing the
        # sender cancels them and never the caller's code around it.
        with self._scope:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for slot in range(self.config.connections):
                    nursery.start_soon(self._run_slot, slot)
                task_status.started()

    # -- submitting --------------------------------------------------------------------

    def check(self, notification: Notification) -> None:
        """Raise :class:`LocalProtocolError` if ``notification`` breaks this sender's limits."""
        self.check_limits(self.config, notification)

    @staticmethod
    def check_limits(config: SenderConfig, notification: Notification) -> None:
        """Raise :class:`LocalProtocolError` if ``notification`` breaks ``config``'s limits."""
        size = len(notification.payload)
        if size > config.payload_limit:
            raise LocalProtocolError(
                f"payload is {size} bytes; the limit is {config.payload_limit}"
            )
        check_token_length(len(notification.token.value), allow_long=config.allow_long_tokens)

    async def submit(self, notification: Notification, tag: Any = None) -> None:
        """Queue one notification; waits while the queue is full (back-pressure).

        Raises:
            LocalProtocolError: it breaks the configured limits (nothing is queued).
            trio.ClosedResourceError: the sender is closed, or :meth:`finish` was called.
        """
        self.check(notification)
        self._check_open()
        await trio.lowlevel.checkpoint_if_cancelled()
        await self._queue.wait_for_room()
        self._ledger.add(Outcome(notification, tag))

    def submit_nowait(self, notification: Notification, tag: Any = None) -> None:
        """Queue one notification if there is room, without waiting.

        The fast path for a loop that submits many: call this, and ``await
        submit(...)`` only when it raises :class:`trio.WouldBlock`.

        Raises:
            trio.WouldBlock: the queue is full (nothing was queued).
            LocalProtocolError: it breaks the configured limits (nothing is queued).
            trio.ClosedResourceError: the sender is closed.
        """
        self.check(notification)
        self._check_open()
        if not self._queue.room() > 0:
            raise trio.WouldBlock
        self._ledger.add(Outcome(notification, tag))

    def submit_nowait_many(self, items: Sequence[tuple[Notification, Any]]) -> int:
        """Queue ``(notification, tag)`` pairs from the front of ``items`` while there
        is room, without waiting; returns how many were queued (0 when the queue is full).

        :meth:`submit_nowait` for a batch: the checks and the queue's bookkeeping once
        for all of them. Each queued one has its own outcome, with its tag.

        Raises:
            LocalProtocolError: one breaks the configured limits; those before it are
                queued, it and those after it are not.
            trio.ClosedResourceError: the sender is closed.
        """
        self._check_open()
        room = self._queue.room()
        if room < len(items):
            items = items[: max(room, 0)]
        jobs = [Outcome(notification, tag) for notification, tag in items]
        self._queue_checked([notification for notification, _ in items], jobs)
        return len(jobs)

    async def submit_many(
        self, notifications: Iterable[Notification] | AsyncIterable[Notification]
    ) -> int:
        """Queue every notification from a (possibly async) iterable; returns the count.

        The bulk path: notifications are checked and queued in chunks, waiting only
        when the queue is full. Tags are not supported here; use :meth:`submit`.

        Raises:
            LocalProtocolError: one breaks the configured limits; those before it
                are queued, it and those after it are not.
        """
        count = 0
        if isinstance(notifications, AsyncIterable):
            async for notification in notifications:
                await self.submit(notification)
                count += 1
            return count
        iterator = iter(notifications)
        while chunk := await self._next_chunk(iterator):
            # Queued as they are: each gets its Outcome when it leaves the queue or a
            # window (Connection), not while it waits there.
            self._queue_checked(chunk, chunk)
            count += len(chunk)
            await trio.lowlevel.checkpoint()
        await trio.lowlevel.checkpoint()
        return count

    async def submit_broadcast(
        self,
        tokens: Iterable[DeviceToken | bytes],
        *,
        payload: bytes,
        expiry: int = 0,
        priority: int = 10,
        tag: Any = None,
    ) -> int:
        """Queue one notification per token, all with the same payload; returns the count.

        The fastest path for one message to many devices: the payload, expiry and
        priority are checked once, each token only for its length, and each device
        costs one small outcome object (:class:`BroadcastOutcome`, whose
        ``notification`` is made only if you look at it). Every device still gets its
        own outcome, with ``tag`` on each. Waits only when the queue is full.

        Raises:
            LocalProtocolError: the payload breaks the limits (nothing is queued), or
                a token has a wrong length (those before it are queued; the message
                names its position, counting from 1).
        """
        shared = Broadcast(payload=payload, expiry=expiry, priority=priority)
        self.check(shared.notification(bytes(TOKEN_LENGTH)))
        long_tokens = self.config.allow_long_tokens
        iterator = iter(tokens)
        count = 0
        while chunk := await self._next_chunk(iterator):
            jobs: list[Outcome] = []
            for token in chunk:
                raw = token if type(token) is bytes else token_bytes(token)
                if len(raw) != TOKEN_LENGTH:
                    try:
                        check_token_length(len(raw), allow_long=long_tokens)
                    except LocalProtocolError as exc:
                        self._queue_jobs(jobs)
                        where = f"token {count + len(jobs) + 1} of the broadcast is"
                        raise LocalProtocolError(
                            str(exc).replace("device token is", where, 1)
                        ) from None
                jobs.append(BroadcastOutcome(raw, shared, tag))
            self._queue_jobs(jobs)
            count += len(jobs)
            await trio.lowlevel.checkpoint()
        await trio.lowlevel.checkpoint()
        return count

    async def _next_chunk(self, iterator: Iterator[T]) -> list[T]:
        # The bulk paths take as many items as the queue has room for (at least one,
        # after waiting for room), so that they never overfill it; [] at the end.
        self._check_open()
        await self._queue.wait_for_room()
        return list(islice(iterator, max(self._queue.room(), 1)))

    def _queue_jobs(self, jobs: Sequence[Job]) -> None:
        self._ledger.add_many(jobs)

    def _queue_checked(self, notifications: Sequence[Notification], jobs: Sequence[Job]) -> None:
        """Queue ``jobs`` (one for each of ``notifications``, in order) after checking
        the notifications; at one that breaks the limits, queue those before it and
        raise. check() runs in full only where the sizes that pass at a glance do not:
        a payload within the limit and a 32-byte token always pass."""
        limit = self.config.payload_limit
        for index, notification in enumerate(notifications):
            if len(notification.payload) > limit or len(notification.token.value) != TOKEN_LENGTH:
                try:
                    self.check(notification)
                except LocalProtocolError:
                    self._queue_jobs(jobs[:index])
                    raise
        self._queue_jobs(jobs)

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the sender is closed")
        if self._ledger.finished:
            raise trio.ClosedResourceError("finish() was called: no more submissions")

    # -- waiting and closing -----------------------------------------------------------

    async def flush(self, *, confirm: bool = True) -> None:
        """Wait until every notification submitted so far has its outcome.

        With ``confirm=True`` (the default) each connection that has notifications in
        flight ends with a confirmation probe at once; with False, only after
        ``confirm_after``. The gateway's answer to the probe is what proves that
        everything written before it was accepted. (Command 0 has no error response:
        there outcomes are assumed after the quiet period.)
        """
        ledger = self._ledger
        if confirm:
            ledger.confirm_requested = True
            self._queue.wake_all()
        try:
            while ledger.stats.pending:
                await ledger.wait_settled()
                if confirm:
                    self._queue.wake_all()
        finally:
            ledger.confirm_requested = False
        await trio.lowlevel.checkpoint()

    def request_confirmation(self) -> None:
        """From now on, end each window with a probe as soon as nothing more is queued
        (instead of after ``confirm_after``): outcomes as early as possible, at the
        price of a reconnect per quiet moment. For request/response use."""
        self._ledger.confirm_requested = True
        self._queue.wake_all()

    def finish(self) -> None:
        """Say that nothing more will be submitted.

        :meth:`outcomes` then ends after the last outcome of what was submitted; the
        sender keeps running until it is closed (leaving ``open_sender``, or
        :meth:`aclose`). Submitting afterwards raises :class:`trio.ClosedResourceError`.
        """
        self._ledger.finish()
        self._ledger.confirm_requested = True  # nothing more is coming: confirm now
        self._queue.wake_all()

    async def aclose(self, *, graceful: bool = True) -> None:
        """Settle what is outstanding (up to ``close_timeout``), then stop.

        Anything still unsettled at the deadline ends ``failed``. With
        ``graceful=False`` (what leaving ``open_sender`` by an exception does), it
        does not wait: everything unsettled ends ``failed`` at once. The outcome
        stream ends after the last outcome. Safe to call inside the ``open_sender``
        block (it stops only the sender's own tasks), and idempotent.
        """
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        ledger = self._ledger
        if graceful:
            with trio.move_on_after(self.config.close_timeout) as scope:
                await self.flush(confirm=True)
            if scope.cancelled_caught:
                logger.warning("close timed out with %d outcomes outstanding", self.stats.pending)
            # Spares still in their handshake get a moment to finish it, so that every
            # spare ends with close_notify rather than as a failed handshake.
            with trio.move_on_after(min(self.config.connect_timeout, _SPARE_CLOSE_WAIT)):
                for spares in self._spares:
                    await spares.wind_down()
        leftovers = self._queue.take_all()
        for connection in self._connections:
            if connection is not None:
                leftovers += connection.take_window()
        for job in leftovers:
            ledger.fail(
                as_outcome(job),
                "the sender closed before the gateway settled it"
                if graceful
                else "the sender was interrupted before the gateway settled it",
            )
        self._scope.cancel()
        ledger.finish()

    async def outcomes(self) -> AsyncIterator[Outcome]:
        """Every outcome, each exactly once, as it happens.

        The stream ends after the last outcome once :meth:`finish` was called or the
        sender closed, so a task iterating it beside the submitting code ends by
        itself. Only when no ``on_outcome`` callback was given. Outcomes are buffered
        until read.
        """
        async for outcome in self._ledger.outcomes():
            yield outcome

    # -- connection slots --------------------------------------------------------------

    async def _run_slot(self, slot: int) -> None:
        spares = _Spares(self._connect, self.config.connect_timeout)
        spares.enabled = self.config.spare_connection
        self._spares.append(spares)
        try:
            await self._slot_loop(slot, spares)
        finally:
            with trio.CancelScope(shield=True):
                await spares.discard()

    async def _slot_loop(self, slot: int, spares: _Spares) -> None:
        config = self.config
        failures = 0
        opened = 0
        while True:
            await self._queue.wait()
            queued = len(self._queue)
            # Open connections as the work needs them: not one more while those being
            # opened can take everything that is queued (one notification and 50
            # slots must not make 50 connections).
            if not queued:
                continue
            if queued <= self._connecting * _WORK_PER_NEW_CONNECTION:
                # Not now: look again when more work comes or a connect finishes
                # (waiting on the queue itself would spin while it is not empty).
                await self._queue.wait_for_more()
                continue
            if self._ledger.fatal is not None:
                self._ledger.fail_queued(self._ledger.fatal)
                continue
            stream, from_spare = await spares.take()
            self._connecting += 1
            try:
                if stream is None:
                    with trio.fail_after(config.connect_timeout):
                        stream = await self._connect()
            except (OSError, trio.BrokenResourceError, trio.TooSlowError) as exc:
                self.stats.connect_failures += 1
                if is_tls_refusal(exc):
                    self._give_up(
                        GiveUp(f"TLS handshake refused: {describe_error(exc)}", permanent=True)
                    )
                    continue
                failures += 1
                why = describe_connect_error(exc, config.connect_timeout)
                message = f"could not connect to {self._describe}: {why}"
                if failures >= config.max_connect_attempts:
                    # Every queued notification fails with this reason, which is how
                    # the caller hears of it; the log says it once more for operators.
                    logger.info("%s (%d attempts); failing the queue", message, failures)
                    self._ledger.fail_queued(f"{message} ({failures} attempts)")
                    # Until a connection succeeds again, give later work one attempt,
                    # not a whole new round of backoff: a gateway that is down stays
                    # down for a while, and a caller with a million queued
                    # notifications wants its answer in seconds, not hours.
                    failures = config.max_connect_attempts - 1
                    continue
                delay = random.uniform(
                    0, min(config.backoff_max, config.backoff_initial * 2**failures)
                )
                logger.info("%s; retrying in %.2fs", message, delay)
                await trio.sleep(delay)
                continue
            finally:
                self._connecting -= 1
                self._queue.nudge()
            failures = 0
            opened += 1
            self.stats.connections_opened += 1
            if opened > 1:
                self.stats.reconnects += 1
            if from_spare:
                self.stats.spares_used += 1
            if getattr(stream, "session_reused", False) is True:  # a TLSStream that resumed
                self.stats.tls_resumed += 1
            connection = Connection(
                stream,
                number=self.stats.connections_opened,
                config=config,
                ledger=self._ledger,
                allocator=self._allocator,
                window_limit=self._policy.window,
                confirm_after=self._policy.confirm_after,
            )
            self._connections[slot] = connection
            if self._nursery is not None:
                # Replace the spare just taken (and open more, in parallel, when
                # connections end faster than a handshake), while this one works.
                spares.replenish(self._nursery)
            try:
                ended = await connection.run()
            finally:
                self._connections[slot] = None
            spares.connection_ended(ended.duration)
            if ended.kind is EndKind.IDLE:
                await spares.discard()
            verdict = self._policy.on_end(ended)
            if verdict is not None:
                self._give_up(verdict)

    def _give_up(self, verdict: GiveUp) -> None:
        if verdict.permanent:
            if self._ledger.fatal is None:
                logger.error("giving up on %s: %s", self._describe, verdict.reason)
            self._ledger.set_fatal(verdict.reason)
            return
        logger.error("giving up on what is queued for %s: %s", self._describe, verdict.reason)
        self._ledger.fail_queued(verdict.reason)
