"""The ledger: where every submitted notification is, until it has its one outcome.

A sender's connections never settle outcomes themselves; they tell the ledger, which
keeps the statistics, fills in each :class:`Outcome` exactly once, hands it out (to a
callback, or to the stream that :meth:`Sender.outcomes` reads) and wakes whoever waits
for settling. It owns the queue of notifications waiting to be written, since a
notification moves between the two (resent after a rejection or a lost connection).
The binary sender and the HTTP/2 sender share it: the outcome model is the same.

The invariant, at every moment: ``stats.submitted == accepted + rejected + failed +
pending``, where pending ones are in the queue or in exactly one connection's window.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable, Sequence

import trio

from ..wire import Status
from ._outcomes import Evidence, Job, Outcome, OutcomeKind, SenderStats, as_outcome
from ._queue import JobQueue

logger = logging.getLogger("apns_legacy.sender")

OutcomeCallback = Callable[[Outcome], None]


class Ledger:
    """Outcomes, statistics and the queue of one sender. Internal."""

    def __init__(
        self, *, queue_size: int, max_losses: int, on_outcome: OutcomeCallback | None
    ) -> None:
        self.stats = SenderStats()
        self.queue = JobQueue(queue_size)
        #: Set by ``flush``/closing: connections end their windows with a probe now.
        self.confirm_requested = False
        self._max_losses = max_losses
        self._on_outcome = on_outcome
        self._outcome_send, self._outcome_receive = trio.open_memory_channel[Outcome](math.inf)
        self._settled = trio.lowlevel.ParkingLot()
        self._fatal: str | None = None
        self._finished = False
        #: Connections that died without a word so far (their windows went back to the
        #: queue as possible duplicates). A connection that sees it change stops taking.
        self.silent_losses = 0

    # -- submitting --------------------------------------------------------------------

    @property
    def fatal(self) -> str | None:
        """Why everything fails from now on, if something made retrying pointless."""
        return self._fatal

    def add(self, job: Outcome) -> None:
        self.stats.submitted += 1
        if self._fatal is not None:
            self.fail(job, self._fatal)
        else:
            self.queue.put(job)

    def add_many(self, jobs: Sequence[Job]) -> None:
        self.stats.submitted += len(jobs)
        if self._fatal is not None:
            for job in jobs:
                self.fail(as_outcome(job), self._fatal)
        else:
            self.queue.put_many(jobs)

    # -- settling ----------------------------------------------------------------------

    def accept(self, jobs: list[Outcome], evidence: Evidence) -> None:
        # What _emit does, with the choice made once for the whole list.
        emit = self._on_outcome
        if emit is None:
            emit = self._outcome_send.send_nowait
        accepted = OutcomeKind.ACCEPTED
        for job in jobs:
            job.kind = accepted
            job.evidence = evidence
            emit(job)
        self.stats.accepted += len(jobs)
        if evidence is Evidence.ASSUMED:
            self.stats.assumed += len(jobs)
        self._after_settling()

    def reject(self, job: Outcome, status: Status | int) -> None:
        self.stats.rejected += 1
        self.stats.rejected_by_status[int(status)] += 1
        job.kind = OutcomeKind.REJECTED
        job.status = status
        self._emit(job)
        self._after_settling()

    def fail(self, job: Outcome, reason: str) -> None:
        self.stats.failed += 1
        job.kind = OutcomeKind.FAILED
        job.reason = reason
        self._emit(job)
        self._after_settling()

    def fail_unconfirmed(self, jobs: list[Outcome], reason: str) -> None:
        self.stats.unconfirmed += len(jobs)
        for job in jobs:
            self.fail(job, reason)

    def requeue(self, jobs: list[Outcome], *, certain: bool, reason: str) -> None:
        """Put jobs back at the head of the queue, failing those lost too often.

        ``certain``: the gateway said it discarded them (after a rejection), so writing
        them again cannot duplicate them. Otherwise each counts a loss.
        """
        keep: list[Outcome] = []
        if not certain:
            self.silent_losses += 1
        for job in jobs:
            if not certain:
                job.losses += 1
                self.stats.possible_duplicates += 1
                if job.losses >= self._max_losses:
                    self.fail(job, f"in flight on {job.losses} connections that died: {reason}")
                    continue
            if self._fatal is not None:
                self.fail(job, self._fatal)
                continue
            keep.append(job)
        if keep:
            self.stats.replayed += len(keep)
            self.queue.put_front(keep)
        self._after_settling()

    def set_fatal(self, reason: str) -> None:
        """Fail what is queued, and everything submitted from now on, with ``reason``."""
        if self._fatal is None:
            self._fatal = reason
        self.fail_queued(reason)

    def fail_queued(self, reason: str) -> None:
        for job in self.queue.take_all():
            self.fail(as_outcome(job), reason)

    async def wait_settled(self) -> None:
        """Wait until some outcome settles."""
        await self._settled.park()

    def _emit(self, outcome: Outcome) -> None:
        if self._on_outcome is not None:
            self._on_outcome(outcome)
        else:
            self._outcome_send.send_nowait(outcome)

    def _after_settling(self) -> None:
        self._settled.unpark_all()
        if self._finished and not self.stats.pending:
            self._outcome_send.close()

    # -- the outcome stream ------------------------------------------------------------

    def finish(self) -> None:
        """No more submissions: the outcome stream ends after the last pending outcome."""
        self._finished = True
        self._after_settling()

    @property
    def finished(self) -> bool:
        return self._finished

    async def outcomes(self) -> AsyncIterator[Outcome]:
        if self._on_outcome is not None:
            raise RuntimeError("outcomes() is not available when on_outcome is given")
        async for outcome in self._outcome_receive:
            yield outcome
