"""The in-flight window: which notifications are written but not yet settled. Pure logic.

Theory of operation
-------------------
The gateway never says "yes". It says "no" at most once per connection, naming one
notification by its 4-byte identifier, and then it closes; everything written after
that one on the same connection was discarded (PROTOCOL.md section 5). So a sender
must remember, per connection, what it wrote and in which order, until it knows
each one's fate. That memory is this window.

Writes happen in batches (one ``send_all`` of many frames), and a batch takes a
*contiguous* range of identifiers from the :class:`IdentifierAllocator`, so a batch
is stored as ``(first identifier, write time, items)``: one small object per batch,
not one per notification, and an identifier lookup walks the batches, not the items.

Fates, as :meth:`InFlightWindow.on_error` and friends report them:

* an error response with status 10 (shutdown) names the last notification that was
  *accepted*: it and everything before it are accepted; the rest is resent;
* any other status names the *bad* notification: everything before it is accepted,
  it is rejected, everything after it is resent (it was discarded, so resending
  cannot duplicate it);
* an identifier we cannot find (a gateway bug, or an error for one already settled
  by assumption) means we cannot tell: everything still
  in the window is resent and marked as a possible duplicate (for status 10 an
  unknown identifier is older than the window, so the resend is certain);
* a close with no error response means the same: resend all, possible duplicates;
* the answer to a confirmation probe (a deliberately bad notification written last)
  names the probe: everything before it is accepted, as for any other rejection;
* only where no answer can come (command 0) or the user opted in to assumptions, a
  quiet period after the kernel acknowledged the bytes settles batches by
  assumption (:meth:`settle_written_before`).

Identifiers are uint32, never 0 (the real gateway answers 0 where it could not read
one), and never reused while still in a window: the allocator wraps to 1, and after
the first wrap it checks each new range against the ranges it handed out that no
window has released yet (one small table for the whole sender, not a walk through
every connection's window).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Final, Generic, TypeVar

import attrs

from ..wire import Status

T = TypeVar("T")

ID_LIMIT: Final = 0x1_0000_0000  # identifiers are 1 .. 2**32 - 1

#: Items written one after another: the first one's identifier, and the items.
Run = tuple[int, list[T]]


def _flat(runs: list[Run[T]]) -> list[T]:
    return [item for _, items in runs for item in items]


@attrs.define(eq=False)
class Batch(Generic[T]):
    """One ``send_all``: items with identifiers ``first``, ``first + 1``, ... in order."""

    first: int
    time: float
    items: list[T]

    def index_of(self, identifier: int) -> int | None:
        offset = identifier - self.first
        return offset if 0 <= offset < len(self.items) else None


@attrs.frozen
class Resolution(Generic[T]):
    """What an error response (or a lost connection) means for a window's items."""

    accepted: list[T]
    rejected: T | None
    resend: list[T]
    #: True when ``resend`` certainly was not delivered (the gateway said it discarded
    #: it). False when the identifier was not found after an error other than 10:
    #: ``resend`` then holds the whole window, some of which may have been delivered.
    certain: bool


class IdentifierAllocator:
    """Hands out contiguous identifier ranges, wrapping from ``limit - 1`` back to 1.

    Args:
        limit: one past the largest identifier (2**32 on the wire; smaller in tests,
            so that wrapping can be exercised).
    """

    def __init__(self, limit: int = ID_LIMIT) -> None:
        if limit < 2:
            raise ValueError("limit must be at least 2")
        self.limit = limit
        self._next = 1
        self._wrapped = False
        # Ranges handed out and not released yet: first identifier -> count.
        self._live: dict[int, int] = {}

    def take(self, count: int) -> int | None:
        """The first identifier of a free range of ``count``, or None if it would collide.

        Before the counter has wrapped every identifier handed out is new; after that,
        a range that overlaps one not yet released gives None: "wait until some
        settle, then ask again".
        """
        if not 1 <= count < self.limit:
            raise ValueError(f"cannot take {count} identifiers from a space of {self.limit - 1}")
        first = self._next
        if first + count > self.limit:
            first = 1
            self._wrapped = True
        if self._wrapped and self.is_live(first, count):
            return None
        self._next = first + count
        self._live[first] = count
        return first

    def release(self, first: int) -> None:
        """The range that starts at ``first`` has left its window."""
        self._live.pop(first, None)

    def is_live(self, first: int, count: int) -> bool:
        """Whether any identifier in ``first .. first + count - 1`` is handed out."""
        end = first + count
        return any(start < end and first < start + n for start, n in self._live.items())


class InFlightWindow(Generic[T]):
    """The written, unsettled items of one connection, in write order.

    Args:
        on_release: called with a batch's first identifier when the batch leaves the
            window (settled, resent or taken), e.g. ``IdentifierAllocator.release``.
    """

    def __init__(self, on_release: Callable[[int], None] | None = None) -> None:
        self._batches: deque[Batch[T]] = deque()
        self._count = 0
        self._on_release = on_release

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[T]:
        for batch in self._batches:
            yield from batch.items

    @property
    def oldest_time(self) -> float | None:
        """Write time of the oldest unsettled batch, or None when empty."""
        return self._batches[0].time if self._batches else None

    def record(self, first: int, items: list[T], now: float) -> None:
        """Remember a batch just written: ``items[i]`` carries identifier ``first + i``."""
        if items:
            self._batches.append(Batch(first, now, items))
            self._count += len(items)

    def set_last_time(self, now: float) -> None:
        """Set the write time of the newest batch (recorded before its write finished)."""
        if self._batches:
            self._batches[-1].time = now

    def settle_written_before(self, cutoff: float) -> list[T]:
        """Take every item of the batches written at or before ``cutoff``: accepted."""
        return _flat(self.settle_runs_written_before(cutoff))

    def settle_runs_written_before(self, cutoff: float) -> list[Run[T]]:
        """:meth:`settle_written_before` as runs (first identifier, items)."""
        accepted: list[Run[T]] = []
        while self._batches and self._batches[0].time <= cutoff:
            batch = self._pop()
            accepted.append((batch.first, batch.items))
        return accepted

    def take_all(self) -> list[T]:
        """Empty the window, returning its items in write order."""
        return _flat(self.take_all_runs())

    def take_all_runs(self) -> list[Run[T]]:
        """:meth:`take_all` as runs (first identifier, items)."""
        runs = [(batch.first, batch.items) for batch in self._batches]
        if self._on_release is not None:
            for batch in self._batches:
                self._on_release(batch.first)
        self._batches.clear()
        self._count = 0
        return runs

    def on_error(self, status: Status | int, identifier: int) -> Resolution[T]:
        """Settle the window from an error response. The window is empty afterwards.

        The connection is over either way (the gateway closes after any error
        response), so whatever is not accepted or rejected must be resent.
        """
        runs = self.on_error_runs(status, identifier)
        return Resolution(
            _flat(runs.accepted),
            None if runs.rejected is None else runs.rejected[1][0],
            _flat(runs.resend),
            certain=runs.certain,
        )

    def on_error_runs(self, status: Status | int, identifier: int) -> Resolution[Run[T]]:
        """:meth:`on_error` with each list as runs (first identifier, items), in order.

        ``rejected`` is a run of one. The sender settles run by run, so that it never
        holds a whole window's outcomes at once.
        """
        for position, batch in enumerate(self._batches):
            index = batch.index_of(identifier)
            if index is None:
                continue
            accepted: list[Run[T]] = []
            for _ in range(position):
                popped = self._pop()
                accepted.append((popped.first, popped.items))
            batch = self._pop()
            rejected: Run[T] | None
            if status == Status.SHUTDOWN:
                # 10 names the last notification that *was* accepted.
                accepted.append((batch.first, batch.items[: index + 1]))
                rejected = None
            else:
                accepted.append((batch.first, batch.items[:index]))
                rejected = (batch.first + index, [batch.items[index]])
            resend = [(batch.first + index + 1, batch.items[index + 1 :]), *self.take_all_runs()]
            return Resolution(accepted, rejected, resend, certain=True)
        # Not found. For 10 the named notification is older than the window (or 0:
        # none was accepted), so everything in the window came after it and was
        # discarded. For other codes we cannot tell a late error from a bogus one.
        return Resolution([], None, self.take_all_runs(), certain=status == Status.SHUTDOWN)

    def _pop(self) -> Batch[T]:
        batch = self._batches.popleft()
        self._count -= len(batch.items)
        if self._on_release is not None:
            self._on_release(batch.first)
        return batch
