"""The sender's queue of notifications waiting to be written, shared by its connections."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

import trio

from ..wire import Notification


class Job:
    """A submitted notification on its way to an outcome (internal bookkeeping)."""

    __slots__ = ("identifier", "losses", "notification", "possible_duplicate", "tag", "writes")

    def __init__(self, notification: Notification, tag: Any) -> None:
        self.notification = notification
        self.tag = tag
        self.identifier: int | None = None
        self.writes = 0
        # Times it was in flight on a connection that died without saying what it took.
        self.losses = 0
        self.possible_duplicate = False


class JobQueue:
    """A FIFO with a soft bound: new submissions wait when it is full; replays never do.

    Replays go to the *front*, in their original order, so that a notification that
    was discarded after an error is written again before anything submitted later.
    """

    def __init__(self, maxsize: int) -> None:
        self._jobs: deque[Job] = deque()
        self._maxsize = maxsize
        self._getters = trio.lowlevel.ParkingLot()
        self._putters = trio.lowlevel.ParkingLot()

    def __len__(self) -> int:
        return len(self._jobs)

    def has_room(self) -> bool:
        return len(self._jobs) < self._maxsize

    async def wait_for_room(self) -> None:
        while len(self._jobs) >= self._maxsize:
            await self._putters.park()

    def put(self, job: Job) -> None:
        self._jobs.append(job)
        self._getters.unpark()

    def put_front(self, jobs: Iterable[Job]) -> None:
        self._jobs.extendleft(reversed(list(jobs)))
        self._getters.unpark_all()

    async def wait(self) -> None:
        """Return at once if there are jobs, else after the next put or :meth:`wake_all`."""
        if self._jobs:
            await trio.lowlevel.checkpoint()
        else:
            await self._getters.park()

    def wake_all(self) -> None:
        """Wake every waiting writer (to notice a probe request or shutdown)."""
        self._getters.unpark_all()

    def take(self, max_count: int, max_bytes: int) -> list[Job]:
        """Up to ``max_count`` jobs, stopping once their payloads pass ``max_bytes``."""
        jobs = self._jobs
        taken: list[Job] = []
        size = 0
        while jobs and len(taken) < max_count and size < max_bytes:
            job = jobs.popleft()
            taken.append(job)
            size += len(job.notification.payload) + 80
        if len(jobs) < self._maxsize:
            self._putters.unpark_all()
        return taken

    def take_all(self) -> list[Job]:
        taken = list(self._jobs)
        self._jobs.clear()
        self._putters.unpark_all()
        return taken
