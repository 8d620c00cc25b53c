"""Reusable hypothesis strategies (the attrs pattern): tokens, payloads, notifications,
encoded wire units with the events they must decode to, and chunkings of a byte string.
"""

from __future__ import annotations

import itertools

from hypothesis import strategies as st

from apns_legacy.wire import (
    PAYLOAD_LIMIT,
    Command,
    DeviceToken,
    FeedbackItem,
    Item,
    Notification,
    ReceivedNotification,
    encode_enhanced,
    encode_feedback_item,
    encode_frame_items,
    encode_item,
    encode_simple,
)

UINT32_MAX = 0xFFFF_FFFF

identifiers = st.integers(0, UINT32_MAX)
expiries = st.integers(0, UINT32_MAX)
priorities = st.sampled_from([10, 5])


def token_bytes(*, max_length: int = 32) -> st.SearchStrategy[bytes]:
    """Raw token bytes of a legal length: 32, or 32 to ``max_length``."""
    return st.integers(32, max_length).flatmap(lambda n: st.binary(min_size=n, max_size=n))


def tokens(*, allow_long: bool = False) -> st.SearchStrategy[DeviceToken]:
    """Device tokens: 32 bytes, or 32 to 100 with ``allow_long``."""
    return token_bytes(max_length=100 if allow_long else 32).map(DeviceToken)


def payloads(*, max_size: int = PAYLOAD_LIMIT) -> st.SearchStrategy[bytes]:
    """Payload bytes, 1 to ``max_size`` of them. The wire layer does not look inside."""
    return st.binary(min_size=1, max_size=max_size)


def notifications(
    *, allow_long: bool = False, max_payload: int = PAYLOAD_LIMIT
) -> st.SearchStrategy[Notification]:
    """Valid :class:`Notification` values."""
    return st.builds(
        Notification,
        token=tokens(allow_long=allow_long),
        payload=payloads(max_size=max_payload),
        expiry=expiries,
        priority=priorities,
    )


def chunkings(data: bytes) -> st.SearchStrategy[list[bytes]]:
    """Every way of cutting ``data`` into consecutive chunks (empty chunks included)."""
    cuts = st.lists(st.integers(0, len(data)), max_size=min(len(data) + 2, 40))
    return cuts.map(lambda points: _split(data, points))


def _split(data: bytes, points: list[int]) -> list[bytes]:
    bounds = [0, *sorted(points), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@st.composite
def gateway_units(
    draw: st.DrawFn, *, max_token_length: int = 32, payload_limit: int = 256
) -> tuple[bytes, ReceivedNotification]:
    """One valid notification as bytes (any command; command 2 with its items in any
    order and items 3-5 possibly left out) and the event it must decode to."""
    command = draw(st.sampled_from([Command.SIMPLE, Command.ENHANCED, Command.FRAME]))
    token = draw(token_bytes(max_length=max_token_length))
    payload = draw(payloads(max_size=payload_limit))
    if command is Command.SIMPLE:
        event = ReceivedNotification(
            command=command,
            identifier=None,
            token=token,
            payload=payload,
            expiry=None,
            priority=None,
        )
        return encode_simple(token, payload), event
    identifier = draw(identifiers)
    expiry = draw(expiries)
    if command is Command.ENHANCED:
        event = ReceivedNotification(
            command=command,
            identifier=identifier,
            token=token,
            payload=payload,
            expiry=expiry,
            priority=None,
        )
        return encode_enhanced(identifier, expiry, token, payload), event
    optional = {
        Item.IDENTIFIER: draw(st.none() | st.just(identifier)),
        Item.EXPIRY: draw(st.none() | st.just(expiry)),
        Item.PRIORITY: draw(st.none() | priorities),
    }
    items = [encode_item(Item.TOKEN, token), encode_item(Item.PAYLOAD, payload)]
    for item_id, value in optional.items():
        if value is not None:
            size = 1 if item_id == Item.PRIORITY else 4
            items.append(encode_item(item_id, value.to_bytes(size, "big")))
    items = draw(st.permutations(items))
    event = ReceivedNotification(
        command=Command.FRAME,
        identifier=optional[Item.IDENTIFIER],
        token=token,
        payload=payload,
        expiry=optional[Item.EXPIRY],
        priority=optional[Item.PRIORITY],
    )
    return encode_frame_items(items), event


@st.composite
def feedback_units(draw: st.DrawFn) -> tuple[bytes, FeedbackItem]:
    """One feedback tuple (token length 1 to 100) and the item it must decode to."""
    timestamp = draw(st.integers(0, UINT32_MAX))
    token = draw(st.binary(min_size=1, max_size=100))
    return encode_feedback_item(timestamp, token), FeedbackItem(timestamp, token)
