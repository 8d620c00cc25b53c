"""The sender's queue of notifications waiting to be written, shared by its connections."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

import trio

from ._outcomes import Job, Outcome, job_notification

# Bytes a frame adds to its payload (a command-2 frame with a 32-byte token: 61),
# rounded up; used only to size writes.
_FRAME_OVERHEAD = 64


class JobQueue:
    """A FIFO of pending outcomes with a soft bound.

    New submissions wait when it is full; replays never do, and go to the *front*,
    in their original order, so that a notification discarded after an error is
    written again before anything submitted later. Wake-ups cost nothing when no
    task is waiting, which matters at hundreds of thousands of puts a second.
    """

    def __init__(self, maxsize: int) -> None:
        self._jobs: deque[Job] = deque()
        self._maxsize = maxsize
        self._getters = trio.lowlevel.ParkingLot()
        self._putters = trio.lowlevel.ParkingLot()
        # Connection slots deciding whether to open one more connection.
        self._watchers = trio.lowlevel.ParkingLot()

    def __len__(self) -> int:
        return len(self._jobs)

    def room(self) -> int:
        return self._maxsize - len(self._jobs)

    async def wait_for_room(self) -> None:
        while len(self._jobs) >= self._maxsize:
            await self._putters.park()

    def put(self, job: Outcome) -> None:
        self._jobs.append(job)
        if self._getters:
            self._getters.unpark()
        if self._watchers:
            self._watchers.unpark_all()

    def put_many(self, jobs: Sequence[Job]) -> None:
        self._jobs.extend(jobs)
        if self._getters:
            self._getters.unpark_all()
        if self._watchers:
            self._watchers.unpark_all()

    def put_front(self, jobs: Iterable[Job]) -> None:
        self._jobs.extendleft(reversed(list(jobs)))
        if self._getters:
            self._getters.unpark_all()
        if self._watchers:
            self._watchers.unpark_all()

    async def wait(self) -> None:
        """Return at once if there are jobs, else after the next put or :meth:`wake_all`."""
        if self._jobs:
            await trio.lowlevel.checkpoint()
        else:
            await self._getters.park()

    def wake_all(self) -> None:
        """Wake every waiting writer (to notice a probe request or shutdown)."""
        self._getters.unpark_all()
        self._watchers.unpark_all()

    async def wait_for_more(self) -> None:
        """Wait for the next put (even if jobs are queued now), or :meth:`nudge`.

        For connection slots that chose not to connect while others were connecting:
        they look again when more work arrives or a connect finishes, instead of
        spinning on a queue that is not empty.
        """
        await self._watchers.park()

    def nudge(self) -> None:
        """Wake the tasks in :meth:`wait_for_more` (a connect finished)."""
        self._watchers.unpark_all()

    def take(self, max_count: int, max_bytes: int) -> list[Job]:
        """Up to ``max_count`` jobs, about ``max_bytes`` of frames (at least one job)."""
        jobs = self._jobs
        if not jobs:
            return []
        # Size the batch from the first payload: notifications in bulk are alike,
        # and an estimate is all a write size needs.
        each = len(job_notification(jobs[0]).payload) + _FRAME_OVERHEAD
        count = max(1, min(max_count, max_bytes // each, len(jobs)))
        taken = [jobs.popleft() for _ in range(count)]
        if self._putters and len(jobs) < self._maxsize:
            self._putters.unpark_all()
        return taken

    def take_all(self) -> list[Job]:
        taken = list(self._jobs)
        self._jobs.clear()
        if self._putters:
            self._putters.unpark_all()
        return taken
