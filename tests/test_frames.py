"""Encoders against hand-typed vectors from PROTOCOL.md, both directions, and round-trips.

The hex strings below are typed from the spec's examples (sections 2-5 and 8), not
produced by our encoder: a round-trip alone cannot catch a bug that the encoder and the
decoder share.
"""

from __future__ import annotations

import pytest
from helpers import decode, unhex
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import gateway_units, identifiers, notifications

from apns_legacy.wire import (
    ERROR_RESPONSE_SIZE,
    PAYLOAD_LIMIT,
    Command,
    ConnectionClosed,
    DeviceToken,
    ErrorResponse,
    ErrorResponseDecoder,
    FeedbackDecoder,
    FeedbackItem,
    GatewayDecoder,
    Item,
    LocalProtocolError,
    Notification,
    ReceivedNotification,
    Status,
    encode_batch,
    encode_broadcast,
    encode_enhanced,
    encode_error_response,
    encode_feedback_item,
    encode_frame,
    encode_frame_items,
    encode_item,
    encode_notification,
    encode_probe,
    encode_simple,
    max_frame_length,
)

# PROTOCOL.md: token 00 01 ... 1f and the payload {"aps":{"alert":"Hi"}} (22 bytes).
TOKEN_HEX = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
PAYLOAD_HEX = "7b22617073223a7b22616c657274223a224869227d7d"
TOKEN = bytes(range(32))
PAYLOAD = b'{"aps":{"alert":"Hi"}}'

# Section 2: command 0, 59 bytes.
SIMPLE_HEX = f"00 0020 {TOKEN_HEX} 0016 {PAYLOAD_HEX}"
# Section 3: command 1, id 01020304, expiry 0, 67 bytes.
ENHANCED_HEX = f"01 01020304 00000000 0020 {TOKEN_HEX} 0016 {PAYLOAD_HEX}"
# Section 4: command 2 with all five items, 78 bytes of items, 83 in all.
FRAME_HEX = (
    f"02 0000004e | 01 0020 {TOKEN_HEX} | 02 0016 {PAYLOAD_HEX} | 03 0004 01020304 "
    "| 04 0004 00000000 | 05 0001 0a"
)
# Section 8: one feedback tuple, timestamp 1300000000.
FEEDBACK_HEX = f"4d7c6d00 0020 {TOKEN_HEX}"


def test_spec_constants_are_what_they_claim():
    assert unhex(TOKEN_HEX) == TOKEN
    assert unhex(PAYLOAD_HEX) == PAYLOAD
    assert len(PAYLOAD) == 0x16


# -- encode gives the bytes ---------------------------------------------------------------


def test_encode_simple_matches_spec_vector():
    data = encode_simple(TOKEN, PAYLOAD)
    assert type(data) is bytes
    assert len(data) == 59
    assert data == unhex(SIMPLE_HEX)


def test_encode_enhanced_matches_spec_vector():
    data = encode_enhanced(0x01020304, 0, TOKEN, PAYLOAD)
    assert len(data) == 67
    assert data == unhex(ENHANCED_HEX)


def test_encode_frame_matches_spec_vector():
    data = encode_frame(0x01020304, TOKEN, PAYLOAD, expiry=0, priority=10)
    assert len(data) == 83
    assert data.hex().startswith("020000004e")
    assert data == unhex(FRAME_HEX)


def test_encode_frame_from_items_matches_spec_vector():
    items = [
        encode_item(Item.TOKEN, TOKEN),
        encode_item(Item.PAYLOAD, PAYLOAD),
        encode_item(Item.IDENTIFIER, unhex("01020304")),
        encode_item(Item.EXPIRY, unhex("00000000")),
        encode_item(Item.PRIORITY, unhex("0a")),
    ]
    assert encode_frame_items(items) == unhex(FRAME_HEX)


def test_encode_frame_leaves_out_items_given_as_none():
    data = encode_frame(None, TOKEN, PAYLOAD, expiry=None, priority=None)
    assert data == unhex(f"02 0000003c | 01 0020 {TOKEN_HEX} | 02 0016 {PAYLOAD_HEX}")
    data = encode_frame(7, TOKEN, PAYLOAD, expiry=None, priority=5)
    assert data == unhex(
        f"02 00000047 | 01 0020 {TOKEN_HEX} | 02 0016 {PAYLOAD_HEX} | 03 0004 00000007 | 05 0001 05"
    )


@pytest.mark.parametrize(
    ("status", "identifier", "hex_"),
    [
        (Status.INVALID_TOKEN, 7, "08 08 00000007"),
        (Status.SHUTDOWN, 0x01020304, "08 0a 01020304"),
        (Status.PROTOCOL_ERROR, 0, "08 80 00000000"),
        (Status.UNKNOWN, 0xFFFFFFFF, "08 ff ffffffff"),
        (42, 1, "08 2a 00000001"),
    ],
)
def test_encode_error_response_matches_spec_layout(status, identifier, hex_):
    data = encode_error_response(status, identifier)
    assert len(data) == ERROR_RESPONSE_SIZE == 6
    assert data == unhex(hex_)


def test_encode_feedback_item_matches_spec_vector():
    data = encode_feedback_item(1300000000, TOKEN)
    assert len(data) == 38
    assert data == unhex(FEEDBACK_HEX)


def test_encode_notification_for_each_command():
    n = Notification(token=DeviceToken(TOKEN), payload=PAYLOAD, expiry=0, priority=10)
    assert encode_notification(Command.SIMPLE, n, 0x01020304) == unhex(SIMPLE_HEX)
    assert encode_notification(Command.ENHANCED, n, 0x01020304) == unhex(ENHANCED_HEX)
    assert encode_notification(Command.FRAME, n, 0x01020304) == unhex(FRAME_HEX)
    with pytest.raises(LocalProtocolError, match="does not carry notifications"):
        encode_notification(Command.ERROR_RESPONSE, n, 1)


def test_encode_probe_sends_an_empty_token():
    assert encode_probe(Command.FRAME, 7) == unhex(
        "02 0000001a | 01 0000 | 02 0002 7b7d | 03 0004 00000007 | 04 0004 00000000 | 05 0001 0a"
    )
    assert encode_probe(Command.ENHANCED, 7) == unhex("01 00000007 00000000 0000 0002 7b7d")
    with pytest.raises(LocalProtocolError, match="command 0"):
        encode_probe(Command.SIMPLE, 7)


def test_max_frame_length():
    # Five item headers, a 32-byte token, a 2048-byte payload, 4 + 4 + 1 bytes.
    assert max_frame_length(payload_limit=2048, max_token_length=32) == 15 + 32 + 2048 + 9
    assert max_frame_length(payload_limit=256, max_token_length=100) == 15 + 100 + 256 + 9


# -- decode gives the values ----------------------------------------------------------------

EXPECTED_SIMPLE = ReceivedNotification(
    command=Command.SIMPLE, identifier=None, token=TOKEN, payload=PAYLOAD, expiry=None,
    priority=None,
)  # fmt: skip
EXPECTED_ENHANCED = ReceivedNotification(
    command=Command.ENHANCED, identifier=0x01020304, token=TOKEN, payload=PAYLOAD, expiry=0,
    priority=None,
)  # fmt: skip
EXPECTED_FRAME = ReceivedNotification(
    command=Command.FRAME, identifier=0x01020304, token=TOKEN, payload=PAYLOAD, expiry=0,
    priority=10,
)  # fmt: skip


@pytest.mark.parametrize(
    ("hex_", "expected"),
    [
        (SIMPLE_HEX, EXPECTED_SIMPLE),
        (ENHANCED_HEX, EXPECTED_ENHANCED),
        (FRAME_HEX, EXPECTED_FRAME),
    ],
)
def test_gateway_decoder_reads_spec_vectors(hex_, expected):
    events = decode(GatewayDecoder(), [unhex(hex_)])
    assert events == [expected, ConnectionClosed()]
    (event, _) = events
    assert type(event.token) is bytes
    assert type(event.payload) is bytes


def test_gateway_decoder_reads_spec_vectors_back_to_back():
    data = unhex(SIMPLE_HEX + ENHANCED_HEX + FRAME_HEX)
    assert decode(GatewayDecoder(), [data]) == [
        EXPECTED_SIMPLE,
        EXPECTED_ENHANCED,
        EXPECTED_FRAME,
        ConnectionClosed(),
    ]


def test_error_response_decoder_reads_spec_layout():
    events = decode(ErrorResponseDecoder(), [unhex("08 08 00000007")])
    assert events == [ErrorResponse(Status.INVALID_TOKEN, 7), ConnectionClosed()]
    assert events[0].status is Status.INVALID_TOKEN


def test_feedback_decoder_reads_spec_vector():
    events = decode(FeedbackDecoder(), [unhex(FEEDBACK_HEX)])
    assert events == [FeedbackItem(1300000000, TOKEN), ConnectionClosed()]
    assert type(events[0].token) is bytes
    assert events[0].time.isoformat() == "2011-03-13T07:06:40+00:00"


# -- encoders refuse what does not fit ------------------------------------------------------

TOO_LONG = b"x" * 0x10000


@pytest.mark.parametrize(
    "call",
    [
        lambda: encode_simple(TOO_LONG, PAYLOAD),
        lambda: encode_simple(TOKEN, TOO_LONG),
        lambda: encode_enhanced(-1, 0, TOKEN, PAYLOAD),
        lambda: encode_enhanced(2**32, 0, TOKEN, PAYLOAD),
        lambda: encode_enhanced(0, -1, TOKEN, PAYLOAD),
        lambda: encode_enhanced(0, 2**32, TOKEN, PAYLOAD),
        lambda: encode_enhanced(0, 0, TOO_LONG, PAYLOAD),
        lambda: encode_enhanced(0, 0, TOKEN, TOO_LONG),
        lambda: encode_frame(2**32, TOKEN, PAYLOAD),
        lambda: encode_frame(-1, TOKEN, PAYLOAD),
        lambda: encode_frame(0, TOKEN, PAYLOAD, expiry=2**32),
        lambda: encode_frame(0, TOKEN, PAYLOAD, priority=256),
        lambda: encode_frame(0, TOKEN, PAYLOAD, priority=-1),
        lambda: encode_frame(None, TOKEN, PAYLOAD, priority=256),
        lambda: encode_frame(2**32, TOKEN, PAYLOAD, expiry=None),
        lambda: encode_frame(None, TOKEN, PAYLOAD, expiry=-1),
        lambda: encode_frame(0, TOO_LONG, PAYLOAD),
        lambda: encode_frame(0, TOKEN, TOO_LONG),
        lambda: encode_item(Item.PAYLOAD, TOO_LONG),
        lambda: encode_error_response(256, 0),
        lambda: encode_error_response(-1, 0),
        lambda: encode_error_response(Status.INVALID_TOKEN, 2**32),
        lambda: encode_feedback_item(2**32, TOKEN),
        lambda: encode_feedback_item(-1, TOKEN),
        lambda: encode_feedback_item(0, TOO_LONG),
    ],
)
def test_encoders_refuse_values_that_do_not_fit_their_field(call):
    with pytest.raises(LocalProtocolError):
        call()


def test_encoders_accept_the_largest_values_that_fit():
    assert len(encode_simple(b"t" * 0xFFFF, b"p" * 0xFFFF)) == 1 + 2 + 0xFFFF + 2 + 0xFFFF
    assert encode_enhanced(2**32 - 1, 2**32 - 1, TOKEN, PAYLOAD)[1:9] == b"\xff" * 8
    assert encode_feedback_item(2**32 - 1, TOKEN)[:4] == b"\xff" * 4


# -- round trips ------------------------------------------------------------------------------


@settings(deadline=None)
@given(notification=notifications(allow_long=True, max_payload=600), identifier=identifiers)
def test_encode_then_decode_is_identity_for_every_command(notification, identifier):
    token = notification.token.value
    for command in (Command.SIMPLE, Command.ENHANCED, Command.FRAME):
        data = encode_notification(command, notification, identifier)
        decoder = GatewayDecoder(payload_limit=600, max_token_length=100)
        (event, closed) = decode(decoder, [data])
        assert closed == ConnectionClosed()
        assert event == ReceivedNotification(
            command=command,
            identifier=None if command is Command.SIMPLE else identifier,
            token=token,
            payload=notification.payload,
            expiry=None if command is Command.SIMPLE else notification.expiry,
            priority=notification.priority if command is Command.FRAME else None,
        )


@settings(deadline=None)
@given(unit=gateway_units(max_token_length=100, payload_limit=300))
def test_decode_gives_what_was_encoded_with_items_in_any_order(unit):
    data, expected = unit
    decoder = GatewayDecoder(payload_limit=300, max_token_length=100)
    assert decode(decoder, [data]) == [expected, ConnectionClosed()]


@settings(deadline=None)
@given(
    identifier=st.none() | identifiers,
    expiry=st.none() | st.integers(0, 2**32 - 1),
    priority=st.none() | st.integers(0, 255),
    token=st.binary(max_size=40),
    payload=st.binary(max_size=40),
)
def test_encode_frame_equals_its_items_in_order(identifier, expiry, priority, token, payload):
    # encode_frame has a one-pack fast path for all five items; it must agree with the
    # item-by-item layout.
    items = [encode_item(Item.TOKEN, token), encode_item(Item.PAYLOAD, payload)]
    if identifier is not None:
        items.append(encode_item(Item.IDENTIFIER, identifier.to_bytes(4, "big")))
    if expiry is not None:
        items.append(encode_item(Item.EXPIRY, expiry.to_bytes(4, "big")))
    if priority is not None:
        items.append(encode_item(Item.PRIORITY, bytes([priority])))
    assert encode_frame(identifier, token, payload, expiry, priority) == encode_frame_items(items)


@settings(deadline=None)
@given(
    command=st.sampled_from([Command.SIMPLE, Command.ENHANCED, Command.FRAME]),
    batch=st.lists(notifications(allow_long=True, max_payload=100), max_size=5),
    first=identifiers,
)
def test_encode_batch_equals_one_notification_after_another(command, batch, first):
    if first + len(batch) - 1 > 0xFFFFFFFF:
        with pytest.raises(LocalProtocolError, match="identifier"):
            encode_batch(command, first, batch)
        return
    expected = b"".join(encode_notification(command, n, first + i) for i, n in enumerate(batch))
    assert encode_batch(command, first, batch) == expected


def test_encode_batch_matches_spec_vector_and_checks_the_identifier_range():
    n = Notification(token=DeviceToken(TOKEN), payload=PAYLOAD, expiry=0, priority=10)
    assert encode_batch(Command.FRAME, 0x01020304, [n]) == unhex(FRAME_HEX)
    assert encode_batch(Command.FRAME, 0, []) == b""
    assert encode_batch(Command.ENHANCED, 2**32 - 2, [n, n])[1:5] == b"\xff\xff\xff\xfe"
    with pytest.raises(LocalProtocolError):
        encode_batch(Command.FRAME, 2**32 - 1, [n, n])
    with pytest.raises(LocalProtocolError):
        encode_batch(Command.ENHANCED, -1, [n])


def test_payload_limit_constant_is_2048():
    assert PAYLOAD_LIMIT == 2048


@given(
    count=st.integers(1, 50),
    first=st.integers(1, 0xFFFF_FFFF - 50),
    payload=st.binary(min_size=1, max_size=300),
    expiry=st.integers(0, 0xFFFF_FFFF),
    priority=st.sampled_from([5, 10]),
    token_length=st.sampled_from([32, 64, 100]),
)
def test_encode_batch_broadcast_path_equals_frame_by_frame(
    count, first, payload, expiry, priority, token_length
):
    # One payload object shared by every notification: the uniform fast path.
    notes = [
        Notification(
            token=DeviceToken((i % 256).to_bytes(1, "big") * token_length),
            payload=payload,
            expiry=expiry,
            priority=priority,
        )
        for i in range(count)
    ]
    expected = b"".join(
        encode_frame(first + i, n.token.value, payload, expiry, priority)
        for i, n in enumerate(notes)
    )
    assert encode_batch(Command.FRAME, first, notes) == expected


def test_encode_batch_mixed_token_lengths_fall_back_to_frame_by_frame():
    payload = b'{"aps":{}}'
    notes = [
        Notification(token=DeviceToken(bytes(32)), payload=payload),
        Notification(token=DeviceToken(bytes(40)), payload=payload),
    ]
    expected = encode_frame(1, bytes(32), payload) + encode_frame(2, bytes(40), payload)
    assert encode_batch(Command.FRAME, 1, notes) == expected


@given(
    count=st.integers(1, 40),
    first=st.integers(1, 0xFFFF_FFFF - 40),
    payload=st.binary(min_size=1, max_size=200),
    token_length=st.sampled_from([32, 100]),
)
def test_encode_broadcast_equals_frame_by_frame(count, first, payload, token_length):
    tokens = [bytes([i % 256]) * token_length for i in range(count)]
    assert encode_broadcast(first, tokens, payload, 5, 10) == b"".join(
        encode_frame(first + i, t, payload, 5, 10) for i, t in enumerate(tokens)
    )


def test_encode_broadcast_refuses_mixed_token_lengths_and_big_identifiers():
    with pytest.raises(LocalProtocolError, match="one length"):
        encode_broadcast(1, [bytes(32), bytes(33)], b"{}")
    with pytest.raises(LocalProtocolError, match="identifier"):
        encode_broadcast(0xFFFF_FFFF, [bytes(32), bytes(32)], b"{}")
    assert encode_broadcast(1, [], b"{}") == b""
