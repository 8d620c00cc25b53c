"""The window's runs (first identifier, items), which the sender settles run by run: each
run's items carry consecutive identifiers from its first, and flattened the runs are
the lists of on_error, take_all and settle_written_before."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from apns_legacy.client._window import InFlightWindow
from apns_legacy.wire import Status


def filled(sizes: list[int]) -> tuple[InFlightWindow[int], list[int]]:
    """A window whose items are their own identifiers, batches with gaps between them."""
    window: InFlightWindow[int] = InFlightWindow()
    identifiers: list[int] = []
    first = 1
    for time, size in enumerate(sizes):
        items = list(range(first, first + size))
        window.record(first, items, float(time))
        identifiers += items
        first += size + 3  # a gap, as a probe or another connection's range leaves
    return window, identifiers


def consistent(runs: list[tuple[int, list[int]]]) -> bool:
    return all(items == list(range(first, first + len(items))) for first, items in runs)


sizes = st.lists(st.integers(1, 6), max_size=6)


@given(sizes=sizes, pick=st.integers(0, 40), status=st.sampled_from([8, Status.SHUTDOWN]))
def test_on_error_runs(sizes, pick, status):
    window, identifiers = filled(sizes)
    twin, _ = filled(sizes)
    runs = window.on_error_runs(status, pick)
    flat = twin.on_error(status, pick)
    assert consistent(runs.accepted)
    assert consistent(runs.resend)
    assert [i for _, items in runs.accepted for i in items] == flat.accepted
    assert [i for _, items in runs.resend for i in items] == flat.resend
    assert runs.certain == flat.certain
    if runs.rejected is None:
        assert flat.rejected is None
    else:
        assert runs.rejected == (pick, [pick]) == (flat.rejected, [flat.rejected])
    seen = flat.accepted + flat.resend + ([flat.rejected] if flat.rejected else [])
    assert sorted(seen) == identifiers
    assert len(window) == 0


@given(sizes=sizes, cutoff=st.floats(-1, 7))
def test_take_all_and_settle_runs(sizes, cutoff):
    window, identifiers = filled(sizes)
    settled = window.settle_runs_written_before(cutoff)
    rest = window.take_all_runs()
    assert consistent(settled)
    assert consistent(rest)
    assert [i for _, items in settled + rest for i in items] == identifiers
    assert [len(items) for _, items in settled] == sizes[: len(settled)]
