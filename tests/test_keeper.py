"""StoreKeeper: the library's ``send --db``, against the simulator over real TLS and a
real SQLite store: deactivated tokens are not sent, new status-8 rejections are recorded,
and the next run skips what the previous one learnt."""

from __future__ import annotations

import collections

import pytest
import trio

from apns_legacy.client import StoreKeeper, TokenStore, open_sender
from apns_legacy.simulator import open_simulator
from apns_legacy.wire import DeviceToken, FeedbackItem, Notification


def token(i: int) -> bytes:
    return i.to_bytes(4, "big") * 8


N = 300
DEAD_BEFORE = {10: "invalid-token", 20: "feedback", 30: "uninstalled"}
BACK_AGAIN = 30  # deactivated, then registered again: sent
NEWLY_INVALID = (5, 150, 299)


def prepare(store: TokenStore) -> None:
    store.register_many([token(i) for i in range(N)], at=1_600_000_000)
    for i, reason in DEAD_BEFORE.items():
        if reason == "feedback":
            store.apply_feedback([FeedbackItem(timestamp=1_700_000_000, token=token(i))])
        else:
            store.deactivate([token(i)], reason=reason, at=1_650_000_000)
    store.register(token(BACK_AGAIN), at=1_700_000_000)


async def one_run(sim, store, seen):
    notifications = [
        Notification(token=DeviceToken(token(i)), payload=b'{"aps":{"alert":"%d"}}' % i)
        for i in range(N)
    ]
    host, port = sim.gateway_address
    with StoreKeeper(store, on_outcome=seen.append, batch=2) as keeper:
        send, skipped = keeper.split(notifications)
        async with open_sender(
            sim.client_context(), host=host, port=port, on_outcome=keeper.on_outcome
        ) as sender:
            await sender.submit_many(send)
    return keeper, send, skipped


async def test_dead_tokens_are_skipped_and_new_rejections_recorded(tmp_path):
    dead = {i for i in DEAD_BEFORE if i != BACK_AGAIN}
    with TokenStore(str(tmp_path / "devices.db")) as store:
        prepare(store)
        async with open_simulator(invalid_tokens=[token(i) for i in NEWLY_INVALID]) as sim:
            seen = []
            with trio.fail_after(60):
                keeper, send, skipped = await one_run(sim, store, seen)
            recorded = collections.Counter(bytes.fromhex(r.token) for r in sim.accepted)
            # Nothing dead reached the gateway; everything else arrived exactly once.
            assert set(recorded) == {token(i) for i in range(N)} - {
                token(i) for i in dead | set(NEWLY_INVALID)
            }
            assert max(recorded.values()) == 1
            assert [(n.token.value, d.deactivated_reason) for n, d in skipped] == [
                (token(i), DEAD_BEFORE[i]) for i in sorted(dead)
            ]
            assert len(send) == N - len(dead)
            assert len(seen) == len(send)  # your callback got every outcome
            assert (keeper.skipped, keeper.rejected, keeper.deactivated) == (2, 3, 3)
            for i in NEWLY_INVALID:
                device = store.get(token(i))
                assert device is not None
                assert not device.active
                assert device.deactivated_reason == "invalid-token"

            # The next run skips what the last one learnt, and nothing is rejected.
            seen = []
            with trio.fail_after(60):
                keeper, send, skipped = await one_run(sim, store, seen)
            assert keeper.skipped == len(dead) + len(NEWLY_INVALID)
            assert keeper.rejected == 0
            assert all(o.accepted for o in seen)


def test_rejections_are_written_in_batches_and_on_exit(tmp_path):
    from apns_legacy.client import Outcome
    from apns_legacy.wire import Status

    def rejected(i: int) -> Outcome:
        outcome = Outcome(Notification(token=DeviceToken(token(i)), payload=b"{}"))
        outcome.status = Status.INVALID_TOKEN
        return outcome

    with TokenStore(":memory:") as store:
        store.register_many([token(i) for i in range(5)])
        with StoreKeeper(store, batch=2, every=3600) as keeper:
            keeper.on_outcome(rejected(0))
            assert store.get(token(0)).active  # waiting for its batch
            keeper.on_outcome(rejected(1))
            assert not store.get(token(0)).active
            assert not store.get(token(1)).active
            keeper.on_outcome(rejected(2))
            assert store.get(token(2)).active
        assert not store.get(token(2)).active  # written when the block ended
        assert keeper.deactivated == 3
    with pytest.raises(ValueError, match="batch must be at least 1, not 0"):
        StoreKeeper(TokenStore(":memory:"), batch=0)


def _rejected(i: int):
    from apns_legacy.client import Outcome
    from apns_legacy.wire import Status

    outcome = Outcome(Notification(token=DeviceToken(token(i)), payload=b"{}"))
    outcome.status = Status.INVALID_TOKEN
    return outcome


def test_a_store_that_fails_mid_run_goes_to_on_error_and_writes_stop(tmp_path):
    import sqlite3

    path = str(tmp_path / "devices.db")
    errors: list[sqlite3.Error] = []
    with TokenStore(path, timeout=0.05) as store:
        store.register_many([token(i) for i in range(6)])
        # Another process holds the write lock longer than the store waits for it.
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        keeper = StoreKeeper(store, batch=2, every=3600, on_error=errors.append)
        with keeper:
            keeper.on_outcome(_rejected(0))
            assert errors == []
            keeper.on_outcome(_rejected(1))  # the batch is due: the write fails
            assert len(errors) == 1
            assert isinstance(errors[0], sqlite3.OperationalError)
            assert "locked" in str(errors[0])
            assert keeper.failure is errors[0]
            other.execute("ROLLBACK")
            # Counted, not written, and no second attempt (nor a second error).
            keeper.on_outcome(_rejected(2))
            keeper.on_outcome(_rejected(3))
        assert len(errors) == 1
        assert (keeper.rejected, keeper.deactivated, keeper.unsaved) == (4, 0, 4)
        assert all(store.get(token(i)).active for i in range(4))
        # An explicit save() tries again, and the lock is gone now.
        assert keeper.save() == 4
        assert keeper.unsaved == 0
        assert not any(store.get(token(i)).active for i in range(4))
        other.close()


def test_without_on_error_a_failed_write_is_raised_and_kept_for_the_next_try(tmp_path):
    import sqlite3

    path = str(tmp_path / "devices.db")
    with TokenStore(path, timeout=0.05) as store:
        store.register_many([token(i) for i in range(2)])
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        keeper = StoreKeeper(store, batch=1, every=3600)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            keeper.on_outcome(_rejected(0))
        assert keeper.failure is None
        assert keeper.unsaved == 1
        other.execute("ROLLBACK")
        other.close()
        keeper.on_outcome(_rejected(1))  # written with the one kept back
        assert keeper.unsaved == 0
        assert not store.get(token(0)).active
        assert not store.get(token(1)).active
