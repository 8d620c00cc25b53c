"""encode_batch's command-2 path looks its layout and tail up only when the token or
payload length, or the expiry or priority, changes from one notification to the next:
batches that repeat, alternate and change those must still equal frame after frame."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import notifications

from apns_legacy.wire import Command, encode_batch, encode_frame


def one_by_one(first: int, batch: list) -> bytes:  # type: ignore[type-arg]
    return b"".join(
        encode_frame(first + i, n.token.value, n.payload, n.expiry, n.priority)
        for i, n in enumerate(batch)
    )


@settings(deadline=None)
@given(
    pool=st.lists(notifications(allow_long=True, max_payload=300), min_size=1, max_size=4),
    picks=st.lists(st.integers(0, 3), max_size=30),
    first=st.integers(0, 2**32 - 31),
)
def test_batches_of_repeating_and_alternating_notifications(pool, picks, first):
    batch = [pool[i % len(pool)] for i in picks]
    assert encode_batch(Command.FRAME, first, batch) == one_by_one(first, batch)


def test_many_payload_lengths_in_one_batch():
    from apns_legacy.wire import DeviceToken, Notification

    batch = [
        Notification(
            token=DeviceToken(bytes([i % 256]) * (32 + i % 3)),
            payload=b"{" + b"x" * (i % 1500) + b"}",
            expiry=i % 2,
            priority=10 if i % 5 else 5,
        )
        for i in range(5000)
    ]
    assert encode_batch(Command.FRAME, 1, batch) == one_by_one(1, batch)


def test_token_length_changes_alone_and_expiry_or_priority_alone():
    from apns_legacy.wire import DeviceToken, Notification

    short, long = DeviceToken(b"\x01" * 32), DeviceToken(b"\x02" * 40)
    batch = [
        Notification(token=short, payload=b"{}"),
        Notification(token=long, payload=b"{}"),
        Notification(token=long, payload=b"{}", priority=5),
        Notification(token=long, payload=b"{}", priority=5, expiry=9),
        Notification(token=short, payload=b"{}", priority=5, expiry=9),
        Notification(token=short, payload=b"{}"),
    ]
    assert encode_batch(Command.FRAME, 1, batch) == one_by_one(1, batch)
