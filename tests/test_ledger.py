"""The ledger: every notification gets exactly one outcome, and the stream of outcomes ends."""

from __future__ import annotations

import trio
import trio.testing

from apns_legacy import DeviceToken, Evidence, Notification, OutcomeKind, Status
from apns_legacy.client import Outcome
from apns_legacy.client._ledger import Ledger


def job(n: int) -> Outcome:
    return Outcome(Notification(token=DeviceToken(bytes([n]) * 32), payload=b"{}"), tag=n)


def test_every_settling_keeps_the_invariant():
    ledger = Ledger(queue_size=10, max_losses=2, on_outcome=None)
    jobs = [job(n) for n in range(6)]
    ledger.add_many(jobs)
    taken = ledger.queue.take(6, 1 << 20)
    ledger.accept(taken[:2], Evidence.CONFIRMED)
    ledger.reject(taken[2], Status.INVALID_TOKEN)
    ledger.requeue(taken[3:], certain=True, reason="")
    stats = ledger.stats
    assert (stats.submitted, stats.accepted, stats.rejected, stats.pending) == (6, 2, 1, 3)
    assert stats.replayed == 3
    assert stats.possible_duplicates == 0
    assert [j.kind for j in jobs[:3]] == [
        OutcomeKind.ACCEPTED,
        OutcomeKind.ACCEPTED,
        OutcomeKind.REJECTED,
    ]


def test_uncertain_requeues_count_losses_and_fail_at_the_limit():
    ledger = Ledger(queue_size=10, max_losses=2, on_outcome=None)
    one = job(1)
    ledger.add(one)
    ledger.requeue(ledger.queue.take(1, 1 << 20), certain=False, reason="reset")
    assert one.losses == 1
    assert len(ledger.queue) == 1
    ledger.requeue(ledger.queue.take(1, 1 << 20), certain=False, reason="reset")
    assert one.kind is OutcomeKind.FAILED
    assert one.reason == "in flight on 2 connections that died: reset"
    assert one.possible_duplicate
    assert ledger.stats.pending == 0


def test_silent_losses_count_the_windows_put_back_uncertain_only():
    # Connections compare it with the count at their start: a change means another
    # connection died without a word, and they stop taking from the queue.
    ledger = Ledger(queue_size=10, max_losses=3, on_outcome=None)
    ledger.add_many([job(n) for n in range(4)])
    ledger.requeue(ledger.queue.take(2, 1 << 20), certain=True, reason="after a rejection")
    assert ledger.silent_losses == 0
    ledger.requeue(ledger.queue.take(2, 1 << 20), certain=False, reason="reset")
    ledger.requeue(ledger.queue.take(2, 1 << 20), certain=False, reason="reset")
    assert ledger.silent_losses == 2


def test_fatal_fails_the_queue_and_later_submissions():
    seen = []
    ledger = Ledger(queue_size=10, max_losses=3, on_outcome=seen.append)
    ledger.add(job(1))
    ledger.set_fatal("certificate refused")
    ledger.add(job(2))
    assert [(o.tag, o.kind, o.reason) for o in seen] == [
        (1, OutcomeKind.FAILED, "certificate refused"),
        (2, OutcomeKind.FAILED, "certificate refused"),
    ]


async def test_outcome_stream_ends_after_finish_and_the_last_outcome():
    ledger = Ledger(queue_size=10, max_losses=3, on_outcome=None)
    jobs = [job(n) for n in range(3)]
    ledger.add_many(jobs)
    seen = []
    async with trio.open_nursery() as nursery:

        async def read():
            async for outcome in ledger.outcomes():
                seen.append(outcome.tag)

        nursery.start_soon(read)
        ledger.finish()  # two are still pending: the stream goes on
        ledger.accept(ledger.queue.take(2, 1 << 20), Evidence.CONFIRMED)
        await trio.testing.wait_all_tasks_blocked()
        assert seen == [0, 1]
        ledger.fail(ledger.queue.take(1, 1 << 20)[0], "closed")
    assert seen == [0, 1, 2]  # the reader ended by itself
