"""The in-flight window and the identifier allocator, against a plain-list model."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from apns_legacy import Status
from apns_legacy.client._window import IdentifierAllocator, InFlightWindow


def test_error_splits_window_at_named_identifier():
    window: InFlightWindow[str] = InFlightWindow()
    window.record(10, ["a", "b", "c"], now=1.0)
    window.record(13, ["d", "e"], now=2.0)
    resolution = window.on_error(Status.INVALID_TOKEN, 12)
    assert resolution.accepted == ["a", "b"]
    assert resolution.rejected == "c"
    assert resolution.resend == ["d", "e"]
    assert resolution.certain
    assert len(window) == 0


def test_shutdown_accepts_the_named_one():
    window: InFlightWindow[str] = InFlightWindow()
    window.record(1, ["a", "b", "c"], now=1.0)
    resolution = window.on_error(Status.SHUTDOWN, 2)
    assert (resolution.accepted, resolution.rejected, resolution.resend) == (
        ["a", "b"],
        None,
        ["c"],
    )


@pytest.mark.parametrize(
    ("status", "certain"), [(Status.SHUTDOWN, True), (Status.INVALID_TOKEN, False)]
)
def test_unknown_identifier_resends_everything(status, certain):
    window: InFlightWindow[str] = InFlightWindow()
    window.record(5, ["a", "b"], now=1.0)
    resolution = window.on_error(status, 99)
    assert resolution.resend == ["a", "b"]
    assert resolution.accepted == []
    assert resolution.certain is certain


def test_settle_takes_only_batches_old_enough():
    window: InFlightWindow[str] = InFlightWindow()
    window.record(1, ["a"], now=1.0)
    window.record(2, ["b"], now=2.0)
    assert window.settle_written_before(1.5) == ["a"]
    assert list(window) == ["b"]
    assert window.oldest_time == 2.0


def test_allocator_wraps_to_one_and_skips_zero():
    allocator = IdentifierAllocator(limit=10)
    assert allocator.take(5) == 1
    assert allocator.take(4) == 6
    allocator.release(1)
    assert allocator.take(2) == 1  # 10 is out of range, 0 is never used


def test_allocator_refuses_live_range_after_wrap():
    allocator = IdentifierAllocator(limit=10)
    assert allocator.take(9) == 1
    assert allocator.take(3) is None  # 1..3 are still handed out
    allocator.release(1)
    assert allocator.take(3) == 1


def test_window_releases_its_ranges_as_batches_leave():
    allocator = IdentifierAllocator(limit=10)
    window: InFlightWindow[str] = InFlightWindow(on_release=allocator.release)
    for items in (["a", "b"], ["c"], ["d", "e"]):
        first = allocator.take(len(items))
        assert first is not None
        window.record(first, items, now=1.0)
    assert allocator.is_live(1, 1)
    window.on_error(Status.INVALID_TOKEN, 3)  # every batch leaves
    assert not any(allocator.is_live(i, 1) for i in range(1, 10))


class WindowMachine(RuleBasedStateMachine):
    """A sender's bookkeeping over a tiny identifier space, checked against a model.

    The model is a plain list of (identifier, item) in write order. Identifiers come
    from an allocator over 1..15 so wrapping happens constantly; the window must never
    hold one identifier twice, and every item must leave it exactly once.
    """

    def __init__(self) -> None:
        super().__init__()
        self.allocator = IdentifierAllocator(limit=16)
        self.window: InFlightWindow[int] = InFlightWindow(on_release=self.allocator.release)
        self.model: list[tuple[int, int]] = []
        self.next_item = 0
        self.clock = 0.0
        self.settled: list[int] = []
        self.resent: list[int] = []

    @rule(count=st.integers(1, 5))
    def write_batch(self, count):
        first = self.allocator.take(count)
        if first is None:
            live = {i for i, _ in self.model}
            assert live, "refused although nothing is live"
            return
        items = list(range(self.next_item, self.next_item + count))
        self.next_item += count
        self.clock += 1
        self.window.record(first, items, self.clock)
        self.model += [(first + k, item) for k, item in enumerate(items)]

    @rule(age=st.floats(0, 5))
    def settle(self, age):
        cutoff = self.clock - age
        accepted = self.window.settle_written_before(cutoff)
        assert accepted == [item for _, item in self.model[: len(accepted)]]
        self.model = self.model[len(accepted) :]
        self.settled += accepted

    @precondition(lambda self: self.model)
    @rule(data=st.data(), shutdown=st.booleans())
    def error_for_live_identifier(self, data, shutdown):
        position = data.draw(st.integers(0, len(self.model) - 1))
        identifier, item = self.model[position]
        status = Status.SHUTDOWN if shutdown else Status.INVALID_TOKEN
        resolution = self.window.on_error(status, identifier)
        before = [i for _, i in self.model[:position]]
        after = [i for _, i in self.model[position + 1 :]]
        if shutdown:
            assert resolution.accepted == [*before, item]
            assert resolution.rejected is None
        else:
            assert resolution.accepted == before
            assert resolution.rejected == item
        assert resolution.resend == after
        assert resolution.certain
        self.model = []

    @rule()
    def connection_lost(self):
        assert self.window.take_all() == [item for _, item in self.model]
        self.model = []

    @invariant()
    def window_matches_model(self):
        assert list(self.window) == [item for _, item in self.model]
        assert len(self.window) == len(self.model)

    @invariant()
    def identifiers_unique_and_nonzero(self):
        ids = [i for i, _ in self.model]
        assert len(ids) == len(set(ids))
        assert all(1 <= i <= 15 for i in ids)


TestWindowMachine = WindowMachine.TestCase
TestWindowMachine.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
