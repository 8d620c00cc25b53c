"""submit_many checks each notification against the sender's limits with a glance at
its sizes and calls check() in full only where the glance is not enough: what it
queues, and the error it raises, must be what check() one by one gives."""

from __future__ import annotations

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from apns_legacy import (
    DeviceToken,
    LocalProtocolError,
    Notification,
    Outcome,
    OutcomeKind,
    SenderConfig,
    open_sender,
)
from apns_legacy.client import Sender


async def never_connects() -> trio.abc.Stream:
    await trio.sleep_forever()
    raise AssertionError("unreachable")


def submit_all(
    config: SenderConfig, notifications: list[Notification], *, nowait: bool = False
) -> tuple[int, str | None, list[Outcome]]:
    """How many submit_many (``nowait``: submit_nowait_many, with each one's index as its
    tag) queued, its error message (None if none), the outcomes."""
    outcomes: list[Outcome] = []

    async def main() -> tuple[int, str | None]:
        error = None
        async with open_sender(
            connect=never_connects, config=config, on_outcome=outcomes.append
        ) as sender:
            try:
                if nowait:
                    pairs = [(n, i) for i, n in enumerate(notifications)]
                    assert sender.submit_nowait_many(pairs) == len(notifications)
                else:
                    await sender.submit_many(notifications)
            except LocalProtocolError as exc:
                error = str(exc)
            submitted = sender.stats.submitted
            await sender.aclose(graceful=False)
        return submitted, error

    submitted, error = trio.run(main)
    return submitted, error, outcomes


def expected(config: SenderConfig, notifications: list[Notification]) -> tuple[int, str | None]:
    for index, notification in enumerate(notifications):
        try:
            Sender.check_limits(config, notification)
        except LocalProtocolError as exc:
            return index, str(exc)
    return len(notifications), None


sizes = st.tuples(
    st.sampled_from([32, 33, 64, 100]), st.sampled_from([1, 2, 255, 256, 257, 2048, 2049, 5000])
)


@pytest.mark.parametrize("nowait", [False, True], ids=["submit_many", "submit_nowait_many"])
@settings(max_examples=60, deadline=None)
@given(
    shapes=st.lists(sizes, max_size=8),
    payload_limit=st.sampled_from([256, 2048, 4096]),
    allow_long=st.booleans(),
)
def test_bulk_submits_queue_and_refuse_as_check_does(nowait, shapes, payload_limit, allow_long):
    config = SenderConfig(
        payload_limit=payload_limit, allow_long_tokens=allow_long, spare_connection=False
    )
    notifications = [
        Notification(token=DeviceToken(bytes([i]) * t), payload=b"x" * p)
        for i, (t, p) in enumerate(shapes)
    ]
    submitted, error, outcomes = submit_all(config, notifications, nowait=nowait)
    assert (submitted, error) == expected(config, notifications)
    # What was queued is the prefix, each once, and nothing else.
    assert [o.notification for o in outcomes] == notifications[:submitted]
    assert all(o.kind is OutcomeKind.FAILED for o in outcomes)
    if nowait:  # each with its own tag
        assert [o.tag for o in outcomes] == list(range(submitted))


def test_the_messages_name_size_and_limit():
    config = SenderConfig(payload_limit=256, spare_connection=False)
    fine = Notification(token=DeviceToken(bytes(32)), payload=b"x" * 256)
    long_token = Notification(token=DeviceToken(bytes(40)), payload=b"{}")
    big = Notification(token=DeviceToken(bytes(32)), payload=b"x" * 257)
    assert submit_all(config, [fine, long_token])[:2] == (
        1,
        "device token is 40 bytes; it must be 32 bytes",
    )
    assert submit_all(config, [fine, fine, big])[:2] == (
        2,
        "payload is 257 bytes; the limit is 256",
    )
    long_ok = SenderConfig(allow_long_tokens=True, spare_connection=False)
    assert submit_all(long_ok, [fine, long_token])[:2] == (2, None)


async def test_submit_nowait_many_takes_what_the_queue_has_room_for():
    config = SenderConfig(queue_size=5, spare_connection=False)
    notes = [Notification(token=DeviceToken(bytes([i]) * 32), payload=b"{}") for i in range(8)]
    async with open_sender(connect=never_connects, config=config) as sender:
        assert sender.submit_nowait_many([(n, i) for i, n in enumerate(notes[:3])]) == 3
        assert sender.submit_nowait_many([(n, i) for i, n in enumerate(notes[3:])]) == 2
        assert sender.submit_nowait_many([(notes[7], 7)]) == 0  # full: nothing queued
        assert sender.stats.submitted == 5
        await sender.aclose(graceful=False)
