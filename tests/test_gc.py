"""``bulk_gc``: the collector tuning a bulk sender opts into, and undoes."""

from __future__ import annotations

import gc

import pytest

from apns_legacy.client import BULK_GC_THRESHOLDS, bulk_gc


def test_bulk_gc_sets_and_restores_the_thresholds():
    before = gc.get_threshold()
    with bulk_gc():
        assert gc.get_threshold() == BULK_GC_THRESHOLDS
    assert gc.get_threshold() == before


def test_bulk_gc_restores_the_thresholds_after_an_error():
    before = gc.get_threshold()
    seen = []

    def fail_inside() -> None:
        with bulk_gc((1234, 5, 6)):
            seen.append(gc.get_threshold())
            raise RuntimeError

    with pytest.raises(RuntimeError):
        fail_inside()
    assert seen == [(1234, 5, 6)]
    assert gc.get_threshold() == before
