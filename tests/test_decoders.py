"""The three incremental decoders: every reader three ways, EOF, malformed input, and
hypothesis properties (any chunking gives the same events; arbitrary bytes give events
or RemoteProtocolError, nothing else).

Statuses and identifiers for malformed notifications follow PROTOCOL.md section 13 and
the docstrings in apns_legacy/wire/_decoders.py.
"""

from __future__ import annotations

import functools

import pytest
from helpers import bytewise, decode, drain, rejection, split_at, tr, tr_raises, unhex
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import chunkings, feedback_units, gateway_units

from apns_legacy.wire import (
    NEED_DATA,
    BadNotification,
    Command,
    ConnectionClosed,
    ErrorResponse,
    ErrorResponseDecoder,
    FeedbackDecoder,
    FeedbackItem,
    GatewayDecoder,
    Item,
    LocalProtocolError,
    ReceivedNotification,
    RemoteProtocolError,
    Status,
    encode_frame_items,
    encode_item,
)

TOKEN_HEX = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
PAYLOAD_HEX = "7b22617073223a7b22616c657274223a224869227d7d"  # {"aps":{"alert":"Hi"}}
TOKEN = bytes(range(32))
PAYLOAD = b'{"aps":{"alert":"Hi"}}'
SIMPLE = unhex(f"00 0020 {TOKEN_HEX} 0016 {PAYLOAD_HEX}")
ENHANCED = unhex(f"01 01020304 00000000 0020 {TOKEN_HEX} 0016 {PAYLOAD_HEX}")
FRAME = unhex(
    f"02 0000004e | 01 0020 {TOKEN_HEX} | 02 0016 {PAYLOAD_HEX} | 03 0004 01020304 "
    "| 04 0004 00000000 | 05 0001 0a"
)
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

# Item bytes, typed from the layout in PROTOCOL.md section 4.
I_TOKEN = unhex(f"01 0020 {TOKEN_HEX}")
I_PAYLOAD = unhex(f"02 0016 {PAYLOAD_HEX}")
I_ID = unhex("03 0004 01020304")
I_EXPIRY = unhex("04 0004 00000000")
I_PRIO = unhex("05 0001 0a")
ID = 0x01020304

# A header-only fragment of a next notification: decoders must leave it buffered.
GATEWAY_TRAILING = unhex("01 0000")
ERROR_TRAILING = unhex("08 08 00")
FEEDBACK_TRAILING = unhex("4d7c6d00 00")


def frame(*items: bytes) -> bytes:
    """A command-2 frame around already-typed items (the length is counted here)."""
    body = b"".join(items)
    return b"\x02" + len(body).to_bytes(4, "big") + body


def gateway(**kwargs: int) -> functools.partial[GatewayDecoder]:
    return functools.partial(GatewayDecoder, **kwargs)


# -- the three readers, three ways ---------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (SIMPLE, [EXPECTED_SIMPLE]),
        (ENHANCED, [EXPECTED_ENHANCED]),
        (FRAME, [EXPECTED_FRAME]),
        (SIMPLE + ENHANCED + FRAME, [EXPECTED_SIMPLE, EXPECTED_ENHANCED, EXPECTED_FRAME]),
        (b"", []),
    ],
)
def test_gateway_decoder_three_ways(data, expected):
    tr(GatewayDecoder, data, [*expected, ConnectionClosed()], trailing=GATEWAY_TRAILING)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (unhex("08 08 00000007"), [ErrorResponse(Status.INVALID_TOKEN, 7)]),
        (unhex("08 0a 01020304"), [ErrorResponse(Status.SHUTDOWN, ID)]),
        (unhex("08 01 ffffffff 08 80 00000000"), [
            ErrorResponse(Status.PROCESSING_ERROR, 0xFFFFFFFF),
            ErrorResponse(Status.PROTOCOL_ERROR, 0),
        ]),
        (b"", []),
    ],
)  # fmt: skip
def test_error_response_decoder_three_ways(data, expected):
    tr(ErrorResponseDecoder, data, [*expected, ConnectionClosed()], trailing=ERROR_TRAILING)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (unhex(f"4d7c6d00 0020 {TOKEN_HEX}"), [FeedbackItem(1300000000, TOKEN)]),
        (unhex(f"4d7c6d00 0020 {TOKEN_HEX} 00000001 0001 ff 7fffffff 0003 aabbcc"), [
            FeedbackItem(1300000000, TOKEN),
            FeedbackItem(1, b"\xff"),
            FeedbackItem(0x7FFFFFFF, b"\xaa\xbb\xcc"),
        ]),
        (unhex("ffffffff 0064") + b"\x5a" * 100, [FeedbackItem(0xFFFFFFFF, b"\x5a" * 100)]),
        (b"", []),
    ],
)  # fmt: skip
def test_feedback_decoder_three_ways(data, expected):
    tr(FeedbackDecoder, data, [*expected, ConnectionClosed()], trailing=FEEDBACK_TRAILING)


# -- EOF ---------------------------------------------------------------------------------------

ALL_DECODERS = [GatewayDecoder, ErrorResponseDecoder, FeedbackDecoder]


@pytest.mark.parametrize("make", ALL_DECODERS)
def test_clean_eof_gives_connection_closed(make):
    decoder = make()
    assert decoder.next_event() is NEED_DATA
    decoder.receive_eof()
    decoder.receive_eof()  # idempotent
    assert decoder.next_event() == ConnectionClosed()


@pytest.mark.parametrize("make", ALL_DECODERS)
def test_receive_data_after_eof_is_a_local_error(make):
    decoder = make()
    decoder.receive_eof()
    with pytest.raises(LocalProtocolError, match="after receive_eof"):
        decoder.receive_data(b"\x08")
    with pytest.raises(LocalProtocolError):
        decoder.receive_data(b"")


@pytest.mark.parametrize(
    ("make", "unit"),
    [
        (GatewayDecoder, SIMPLE),
        (GatewayDecoder, ENHANCED),
        (GatewayDecoder, FRAME),
        (GatewayDecoder, frame(I_ID, I_PRIO, I_TOKEN, I_PAYLOAD)),
        (ErrorResponseDecoder, unhex("08 08 00000007")),
        (FeedbackDecoder, unhex(f"4d7c6d00 0020 {TOKEN_HEX}")),
    ],
)
def test_eof_inside_any_unit_is_a_remote_error(make, unit):
    # Every proper prefix of a unit, after a complete unit, then EOF.
    for cut in range(1, len(unit)):
        with pytest.raises(RemoteProtocolError, match="closed"):
            decode(make(), [unit, unit[:cut]])
        with pytest.raises(RemoteProtocolError, match="closed"):
            decode(make(), bytewise(unit[:cut]))


@pytest.mark.parametrize(
    "skipped",
    [unhex("02 0801") + b"p" * 2049, unhex("09 0010") + b"u" * 16, unhex("03 0008") + b"i" * 8],
)
def test_eof_while_an_item_is_being_skipped_is_a_remote_error(skipped):
    # Items the decoder skips (too large, unknown, wrong size) still belong to the frame:
    # EOF before the frame ends is EOF inside a unit, not a bad notification.
    data = frame(I_ID, I_TOKEN, skipped, I_PAYLOAD)
    for cut in (len(data) - len(I_PAYLOAD) - 1, len(data) - len(I_PAYLOAD) - len(skipped) + 4):
        tr_raises(GatewayDecoder, data[:cut], "middle of a command-2 frame")


def test_eof_arriving_with_the_last_bytes_still_gives_the_events():
    for make, data, event in [
        (GatewayDecoder, FRAME, EXPECTED_FRAME),
        (ErrorResponseDecoder, unhex("08 08 00000007"), ErrorResponse(Status.INVALID_TOKEN, 7)),
        (FeedbackDecoder, unhex(f"00000001 0020 {TOKEN_HEX}"), FeedbackItem(1, TOKEN)),
    ]:
        decoder = make()
        decoder.receive_data(data[:3])
        assert decoder.next_event() is NEED_DATA
        decoder.receive_data(data[3:])
        decoder.receive_eof()  # before asking for the event
        assert decoder.next_event() == event
        assert decoder.next_event() == ConnectionClosed()


@pytest.mark.parametrize("make", ALL_DECODERS)
def test_receive_data_takes_any_bytes_like(make):
    decoder = make()
    decoder.receive_data(bytearray(b"\x08"))
    decoder.receive_data(memoryview(b"\x08\x00"))
    assert decoder.buffered == 3


# -- GatewayDecoder: commands 0 and 1 ----------------------------------------------------------


@pytest.mark.parametrize("command", [0, 1])
def test_legacy_zero_token_length_is_missing_token(command):
    head = "00" if command == 0 else "01 01020304 00000000"
    bad = rejection(GatewayDecoder, unhex(f"{head} 0000 0016 {PAYLOAD_HEX}"))
    assert bad.command == command
    assert bad.status is Status.MISSING_DEVICE_TOKEN
    assert bad.identifier == (0 if command == 0 else ID)


@pytest.mark.parametrize("command", [0, 1])
@pytest.mark.parametrize("length", [1, 31, 33, 100, 0xFFFF])
def test_legacy_wrong_token_length_is_invalid_token_size(command, length):
    head = "00" if command == 0 else "01 01020304 00000000"
    # Only the header: the size is decided from the length field, before the token.
    bad = rejection(GatewayDecoder, unhex(f"{head} {length:04x}"))
    assert (bad.status, bad.identifier) == (
        Status.INVALID_TOKEN_SIZE,
        0 if command == 0 else ID,
    )


@pytest.mark.parametrize("command", [0, 1])
def test_legacy_long_tokens_up_to_max_token_length(command):
    head = "00" if command == 0 else "01 01020304 00000000"
    long_token = bytes(range(100))
    data = unhex(f"{head} 0064") + long_token + unhex(f"0016 {PAYLOAD_HEX}")
    (event, _) = decode(GatewayDecoder(max_token_length=100), [data])
    assert isinstance(event, ReceivedNotification)
    assert event.token == long_token
    bad = rejection(gateway(max_token_length=100), unhex(f"{head} 0065"))
    assert bad.status is Status.INVALID_TOKEN_SIZE
    bad = rejection(gateway(max_token_length=64), unhex(f"{head} 0041"))
    assert bad.status is Status.INVALID_TOKEN_SIZE


@pytest.mark.parametrize("command", [0, 1])
def test_legacy_zero_payload_is_missing_payload(command):
    head = "00" if command == 0 else "01 01020304 00000000"
    bad = rejection(GatewayDecoder, unhex(f"{head} 0020 {TOKEN_HEX} 0000"))
    assert (bad.status, bad.identifier) == (Status.MISSING_PAYLOAD, 0 if command == 0 else ID)


@pytest.mark.parametrize("command", [0, 1])
@pytest.mark.parametrize(("limit", "length"), [(2048, 2049), (256, 257), (2048, 0xFFFF)])
def test_legacy_payload_over_limit_is_decided_from_the_length_field(command, limit, length):
    head = "00" if command == 0 else "01 01020304 00000000"
    # Only the header: the decoder must not wait for (or buffer) the payload bytes.
    data = unhex(f"{head} 0020 {TOKEN_HEX} {length:04x}")
    decoder = GatewayDecoder(payload_limit=limit)
    decoder.receive_data(data)
    bad = decoder.next_event()
    assert isinstance(bad, BadNotification)
    assert (bad.status, bad.identifier) == (
        Status.INVALID_PAYLOAD_SIZE,
        0 if command == 0 else ID,
    )
    assert bad == rejection(gateway(payload_limit=limit), data)


@pytest.mark.parametrize("command", [0, 1])
def test_legacy_payload_at_the_limit_is_accepted(command):
    head = "00" if command == 0 else "01 01020304 00000000"
    data = unhex(f"{head} 0020 {TOKEN_HEX} 0100") + b"p" * 256
    (event, closed) = decode(GatewayDecoder(payload_limit=256), [data])
    assert isinstance(event, ReceivedNotification)
    assert event.payload == b"p" * 256
    assert closed == ConnectionClosed()


@pytest.mark.parametrize("byte", [3, 7, 8, 0x80, 0xFF])
def test_unknown_command_byte_is_protocol_error_with_identifier_0(byte):
    bad = rejection(GatewayDecoder, bytes([byte]))
    assert (bad.command, bad.status, bad.identifier) == (byte, Status.PROTOCOL_ERROR, 0)


def test_good_notifications_before_a_bad_one_are_reported_first():
    data = SIMPLE + FRAME + b"\x09" + FRAME
    events = decode(GatewayDecoder(), [data])
    assert events[:2] == [EXPECTED_SIMPLE, EXPECTED_FRAME]
    assert isinstance(events[2], BadNotification)
    assert len(events) == 3
    tr(GatewayDecoder, data, events, trailing=GATEWAY_TRAILING)


def test_after_a_bad_notification_next_event_raises():
    decoder = GatewayDecoder()
    decoder.receive_data(b"\x09" + FRAME)
    assert isinstance(decoder.next_event(), BadNotification)
    with pytest.raises(LocalProtocolError, match="bad notification"):
        decoder.next_event()
    decoder.receive_eof()
    with pytest.raises(LocalProtocolError):
        decoder.next_event()


def test_after_a_bad_notification_the_rest_is_discarded_not_buffered():
    # The gateway drops everything after the bad notification; a server still reading
    # while it writes the error response must not pile up what the client keeps sending.
    decoder = GatewayDecoder()
    decoder.receive_data(b"\x09" + FRAME)
    assert isinstance(decoder.next_event(), BadNotification)
    for _ in range(100):
        decoder.receive_data(FRAME)
    assert decoder.buffered == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"payload_limit": 0},
        {"payload_limit": 0x10000},
        {"max_token_length": 31},
        {"max_token_length": 101},
    ],
)
def test_gateway_decoder_refuses_impossible_limits(kwargs):
    with pytest.raises(LocalProtocolError):
        GatewayDecoder(**kwargs)


# -- GatewayDecoder: command 2 ----------------------------------------------------------------


@pytest.mark.parametrize(
    "items",
    [
        (I_PAYLOAD, I_ID, I_EXPIRY, I_PRIO),
        (I_ID, I_PAYLOAD, I_EXPIRY, I_PRIO),
        (I_PAYLOAD, I_EXPIRY, I_PRIO, I_ID),
        (I_PAYLOAD,),
    ],
)
def test_frame_without_token_is_missing_token_with_identifier_0(items):
    bad = rejection(GatewayDecoder, frame(*items))
    assert (bad.command, bad.status, bad.identifier) == (
        Command.FRAME,
        Status.MISSING_DEVICE_TOKEN,
        0,
    )


@pytest.mark.parametrize(
    "items",
    [
        (unhex("01 0000"), I_PAYLOAD, I_ID, I_EXPIRY, I_PRIO),  # node-apn #149: token first
        (I_ID, unhex("01 0000"), I_PAYLOAD, I_EXPIRY, I_PRIO),  # pushy 0.4: identifier first
        (I_ID, I_PAYLOAD, unhex("01 0000")),
    ],
)
def test_frame_zero_length_token_is_missing_token_with_identifier_0(items):
    bad = rejection(GatewayDecoder, frame(*items))
    assert (bad.status, bad.identifier) == (Status.MISSING_DEVICE_TOKEN, 0)


@pytest.mark.parametrize("size", [1, 31, 33, 100, 0xFFFF - 100])
@pytest.mark.parametrize("id_first", [True, False])
def test_frame_token_of_wrong_size_is_invalid_token_size_with_sent_id(size, id_first):
    token = unhex(f"01 {size:04x}") + b"t" * size
    items = (I_ID, token, I_PAYLOAD) if id_first else (token, I_PAYLOAD, I_ID)
    bad = rejection(GatewayDecoder, frame(*items))
    assert (bad.status, bad.identifier) == (Status.INVALID_TOKEN_SIZE, ID)


def test_frame_long_tokens_up_to_max_token_length():
    long_token = bytes(range(100))
    data = frame(I_ID, unhex("01 0064") + long_token, I_PAYLOAD)
    (event, _) = decode(GatewayDecoder(max_token_length=100), [data])
    assert isinstance(event, ReceivedNotification)
    assert event.token == long_token
    data = frame(I_ID, unhex("01 0065") + long_token + b"!", I_PAYLOAD)
    bad = rejection(gateway(max_token_length=100), data)
    assert (bad.status, bad.identifier) == (Status.INVALID_TOKEN_SIZE, ID)


@pytest.mark.parametrize(
    "items",
    [
        (I_TOKEN, I_ID, I_EXPIRY, I_PRIO),
        (I_ID, I_TOKEN),
        (I_TOKEN, unhex("02 0000"), I_ID),
        (I_ID, unhex("02 0000"), I_TOKEN, I_PRIO),
    ],
)
def test_frame_missing_or_empty_payload_is_missing_payload(items):
    bad = rejection(GatewayDecoder, frame(*items))
    assert (bad.status, bad.identifier) == (Status.MISSING_PAYLOAD, ID)


@pytest.mark.parametrize("id_position", ["first", "after_payload", "last"])
def test_frame_oversized_payload_is_invalid_payload_size_with_sent_id(id_position):
    payload = unhex("02 0801") + b"p" * 2049
    items = {
        "first": (I_ID, I_TOKEN, payload, I_EXPIRY, I_PRIO),
        "after_payload": (I_TOKEN, payload, I_ID, I_EXPIRY, I_PRIO),  # node-apn, PyAPNs order
        "last": (I_TOKEN, payload, I_EXPIRY, I_PRIO, I_ID),
    }[id_position]
    bad = rejection(GatewayDecoder, frame(*items))
    assert (bad.status, bad.identifier) == (Status.INVALID_PAYLOAD_SIZE, ID)


def test_frame_oversized_payload_streams_through_without_being_buffered():
    # A 60000-byte payload in 512-byte reads: the decoder skips it as it arrives.
    size = 60000
    data = frame(I_TOKEN, unhex(f"02 {size:04x}") + b"p" * size, I_ID, I_EXPIRY, I_PRIO)
    decoder = GatewayDecoder()
    most = 0
    events: list[object] = []
    for chunk in split_at(data, range(0, len(data), 512)):
        decoder.receive_data(chunk)
        events += drain(decoder)
        most = max(most, decoder.buffered)
    assert most <= 64
    assert events == [
        BadNotification(
            command=Command.FRAME,
            status=Status.INVALID_PAYLOAD_SIZE,
            identifier=ID,
            reason="payload is 60000 bytes, over the limit of 2048",
        )
    ]


def test_frame_payload_limit_is_configurable():
    payload = unhex("02 0101") + b"p" * 257
    bad = rejection(gateway(payload_limit=256), frame(I_TOKEN, payload, I_ID))
    assert (bad.status, bad.identifier) == (Status.INVALID_PAYLOAD_SIZE, ID)
    data = frame(I_TOKEN, unhex("02 0100") + b"p" * 256, I_ID)
    (event, _) = decode(GatewayDecoder(payload_limit=256), [data])
    assert isinstance(event, ReceivedNotification)


@pytest.mark.parametrize(
    ("items", "identifier"),
    [
        ((I_TOKEN, I_TOKEN, I_PAYLOAD, I_ID), ID),
        ((I_TOKEN, I_PAYLOAD, I_PAYLOAD, I_ID), ID),
        ((I_TOKEN, I_PAYLOAD, I_ID, I_ID), ID),
        ((I_TOKEN, I_PAYLOAD, I_ID, I_PRIO, I_PRIO), ID),
        ((I_TOKEN, I_PAYLOAD, I_ID, I_EXPIRY, I_EXPIRY), ID),
    ],
)
def test_frame_duplicate_items_are_protocol_error(items, identifier):
    bad = rejection(GatewayDecoder, frame(*items))
    assert (bad.status, bad.identifier) == (Status.PROTOCOL_ERROR, identifier)
    assert "twice" in bad.reason


@pytest.mark.parametrize("item_id", [0, 6, 7, 0x80, 0xFF])
def test_frame_unknown_item_is_protocol_error(item_id):
    unknown = bytes([item_id]) + unhex("0003 010203")
    bad = rejection(GatewayDecoder, frame(I_TOKEN, unknown, I_PAYLOAD, I_ID))
    assert (bad.status, bad.identifier) == (Status.PROTOCOL_ERROR, ID)
    assert f"unknown item id {item_id}" in bad.reason


@pytest.mark.parametrize(
    ("item", "identifier"),
    [
        (unhex("03 0003 010203"), 0),  # the identifier itself is unreadable
        (unhex("03 0005 0102030405"), 0),
        (unhex("03 0000"), 0),
        (unhex("04 0003 000000"), ID),
        (unhex("04 0008 0000000000000000"), ID),
        (unhex("05 0000"), ID),
        (unhex("05 0002 000a"), ID),
    ],
)
def test_frame_fixed_size_item_of_wrong_length_is_protocol_error(item, identifier):
    items = (I_TOKEN, I_PAYLOAD, item) if item[0] == 3 else (I_TOKEN, I_PAYLOAD, I_ID, item)
    bad = rejection(GatewayDecoder, frame(*items))
    assert (bad.status, bad.identifier) == (Status.PROTOCOL_ERROR, identifier)


@pytest.mark.parametrize("priority", [0, 1, 4, 6, 9, 11, 0xFF])
def test_frame_priority_other_than_5_or_10_is_protocol_error(priority):
    bad = rejection(GatewayDecoder, frame(I_TOKEN, I_PAYLOAD, I_ID, bytes([5, 0, 1, priority])))
    assert (bad.status, bad.identifier) == (Status.PROTOCOL_ERROR, ID)
    assert "priority" in bad.reason


@pytest.mark.parametrize("priority", [5, 10])
def test_frame_priority_5_and_10_are_accepted(priority):
    (event, _) = decode(
        GatewayDecoder(), [frame(I_TOKEN, I_PAYLOAD, I_ID, bytes([5, 0, 1, priority]))]
    )
    assert isinstance(event, ReceivedNotification)
    assert event.priority == priority


def test_frame_item_overrunning_the_frame_is_protocol_error_at_once():
    # The payload item claims 0x16 bytes but only 0x10 of the frame remain. The decoder
    # knows from the item header alone: it must not wait for the bytes.
    body = I_ID + I_TOKEN + unhex("02 0016") + b"x" * 0x10
    data = b"\x02" + len(body).to_bytes(4, "big") + body
    decoder = GatewayDecoder()
    decoder.receive_data(data[: 5 + len(I_ID) + len(I_TOKEN) + 3])
    bad = decoder.next_event()
    assert isinstance(bad, BadNotification)
    assert (bad.status, bad.identifier) == (Status.PROTOCOL_ERROR, ID)
    assert "overruns" in bad.reason
    assert bad == rejection(GatewayDecoder, data)


def test_frame_item_overrun_before_the_identifier_gives_identifier_0():
    body = I_TOKEN + unhex("02 ffff") + I_ID
    bad = rejection(GatewayDecoder, b"\x02" + len(body).to_bytes(4, "big") + body)
    assert (bad.status, bad.identifier) == (Status.PROTOCOL_ERROR, 0)


@pytest.mark.parametrize("tail", [b"\x07", b"\x07\x00"])
def test_frame_ending_inside_an_item_header_is_protocol_error(tail):
    bad = rejection(GatewayDecoder, frame(I_TOKEN, I_PAYLOAD, I_ID, tail))
    assert (bad.status, bad.identifier) == (Status.PROTOCOL_ERROR, ID)


@pytest.mark.parametrize("length", [5 * (3 + 0xFFFF) + 1, 0x7FFFFFFF, 0xFFFFFFFF])
def test_frame_length_over_the_absolute_maximum_is_refused_from_the_header(length):
    decoder = GatewayDecoder()
    decoder.receive_data(b"\x02" + length.to_bytes(4, "big"))
    bad = decoder.next_event()
    assert isinstance(bad, BadNotification)
    assert (bad.command, bad.status, bad.identifier) == (Command.FRAME, Status.PROTOCOL_ERROR, 0)


def test_frame_length_at_the_absolute_maximum_is_read_item_by_item():
    # Five items of 65535 bytes each: legal framing, refused for its content only.
    decoder = GatewayDecoder()
    decoder.receive_data(b"\x02" + (5 * (3 + 0xFFFF)).to_bytes(4, "big"))
    assert decoder.next_event() is NEED_DATA


def test_frame_of_length_0_is_missing_token():
    bad = rejection(GatewayDecoder, unhex("02 00000000"))
    assert (bad.status, bad.identifier) == (Status.MISSING_DEVICE_TOKEN, 0)


@pytest.mark.parametrize(
    "items",
    [
        (I_TOKEN, I_PAYLOAD, I_ID, I_EXPIRY, I_PRIO),
        (I_ID, I_TOKEN, I_PAYLOAD, I_EXPIRY, I_PRIO),  # pushy 0.4 writes item 3 first
        (I_PRIO, I_EXPIRY, I_ID, I_PAYLOAD, I_TOKEN),
        (I_PAYLOAD, I_PRIO, I_TOKEN, I_ID, I_EXPIRY),
    ],
)
def test_frame_items_in_any_order(items):
    tr(GatewayDecoder, frame(*items), [EXPECTED_FRAME, ConnectionClosed()], trailing=b"\x02")


@pytest.mark.parametrize(
    ("items", "identifier", "expiry", "priority"),
    [
        ((I_TOKEN, I_PAYLOAD), None, None, None),  # houston with nil fields
        ((I_TOKEN, I_PAYLOAD, I_ID), ID, None, None),  # node-apn: expiry 0, priority 10
        ((I_TOKEN, I_PAYLOAD, I_EXPIRY), None, 0, None),
        ((I_PRIO, I_PAYLOAD, I_TOKEN), None, None, 10),
    ],
)
def test_frame_items_3_4_5_may_be_left_out(items, identifier, expiry, priority):
    expected = ReceivedNotification(
        command=Command.FRAME,
        identifier=identifier,
        token=TOKEN,
        payload=PAYLOAD,
        expiry=expiry,
        priority=priority,
    )
    tr(GatewayDecoder, frame(*items), [expected, ConnectionClosed()], trailing=b"\x02\x00")


def test_checks_are_made_in_a_fixed_order():
    # Missing token outranks a bad priority, a bad token size outranks a missing payload.
    assert rejection(GatewayDecoder, frame(I_ID, I_PAYLOAD, unhex("05 0001 07"))).status is (
        Status.MISSING_DEVICE_TOKEN
    )
    short = unhex("01 0001 aa")
    assert rejection(GatewayDecoder, frame(I_ID, short)).status is Status.INVALID_TOKEN_SIZE


# -- ErrorResponseDecoder ---------------------------------------------------------------------


def test_error_response_in_pieces():
    decoder = ErrorResponseDecoder()
    for piece in (b"\x08", b"\x08\x00", b"\x00\x00"):
        decoder.receive_data(piece)
        assert decoder.next_event() is NEED_DATA
    decoder.receive_data(b"\x07")
    assert decoder.next_event() == ErrorResponse(Status.INVALID_TOKEN, 7)
    assert decoder.next_event() is NEED_DATA
    assert decoder.buffered == 0


def test_error_response_together_with_eof():
    decoder = ErrorResponseDecoder()
    decoder.receive_data(unhex("08 0a 00000009"))
    decoder.receive_eof()
    assert decoder.next_event() == ErrorResponse(Status.SHUTDOWN, 9)
    assert decoder.next_event() == ConnectionClosed()


@pytest.mark.parametrize("code", [9, 11, 42, 127, 129, 254])
def test_error_response_keeps_unknown_status_as_int(code):
    (event, _) = decode(ErrorResponseDecoder(), [bytes([8, code, 0, 0, 0, 1])])
    assert event == ErrorResponse(code, 1)
    assert type(event.status) is int


@pytest.mark.parametrize("first", [0, 1, 2, 7, 9, 0x80, 0xFF])
def test_error_response_with_wrong_command_byte_is_remote_error(first):
    # Refused from the first byte alone, without waiting for six.
    decoder = ErrorResponseDecoder()
    decoder.receive_data(bytes([first]))
    with pytest.raises(RemoteProtocolError, match="command byte"):
        decoder.next_event()
    tr_raises(ErrorResponseDecoder, bytes([first, 8, 0, 0, 0, 1]), "command byte")
    tr_raises(ErrorResponseDecoder, unhex("08 08 00000001") + bytes([first]), "command byte")


# -- FeedbackDecoder ---------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 16, 32, 64, 100])
def test_feedback_token_lengths_1_to_100(length):
    token = bytes(range(length))
    data = unhex(f"4d7c6d00 {length:04x}") + token
    tr(
        FeedbackDecoder,
        data * 2,
        [FeedbackItem(1300000000, token)] * 2 + [ConnectionClosed()],
        trailing=FEEDBACK_TRAILING,
    )


@pytest.mark.parametrize("length", [0, 101, 0xFFFF])
def test_feedback_bad_token_length_is_remote_error_from_the_header(length):
    decoder = FeedbackDecoder()
    decoder.receive_data(unhex(f"4d7c6d00 {length:04x}"))
    with pytest.raises(RemoteProtocolError, match="token length"):
        decoder.next_event()
    tr_raises(FeedbackDecoder, unhex(f"4d7c6d00 0020 {TOKEN_HEX} 4d7c6d00 {length:04x}"), "length")


def test_feedback_truncated_tuple_at_eof_is_remote_error():
    data = unhex(f"4d7c6d00 0020 {TOKEN_HEX}")
    tr_raises(FeedbackDecoder, data + data[:-1], "incomplete feedback tuple")
    tr_raises(FeedbackDecoder, data[:5], "incomplete feedback tuple")


# -- hypothesis: chunking never matters -------------------------------------------------------


@settings(deadline=None)
@given(data=st.data(), units=st.lists(gateway_units(max_token_length=100), max_size=6))
def test_any_chunking_of_a_gateway_stream_gives_the_same_events(data, units):
    stream = b"".join(unit for unit, _ in units)
    expected = [event for _, event in units] + [ConnectionClosed()]
    chunks = data.draw(chunkings(stream))
    make = gateway(payload_limit=256, max_token_length=100)
    assert decode(make(), chunks) == expected


@settings(deadline=None)
@given(data=st.data(), units=st.lists(feedback_units(), max_size=8))
def test_any_chunking_of_a_feedback_stream_gives_the_same_events(data, units):
    stream = b"".join(unit for unit, _ in units)
    chunks = data.draw(chunkings(stream))
    assert decode(FeedbackDecoder(), chunks) == [item for _, item in units] + [ConnectionClosed()]


@settings(deadline=None)
@given(
    data=st.data(),
    responses=st.lists(st.tuples(st.integers(0, 255), st.integers(0, 2**32 - 1)), max_size=5),
)
def test_any_chunking_of_error_responses_gives_the_same_events(data, responses):
    stream = b"".join(bytes([8, s]) + i.to_bytes(4, "big") for s, i in responses)
    chunks = data.draw(chunkings(stream))
    events = decode(ErrorResponseDecoder(), chunks)
    assert events == [ErrorResponse(s, i) for s, i in responses] + [ConnectionClosed()]


# -- hypothesis: arbitrary bytes give events or RemoteProtocolError, nothing else ------------


def outcome(make, chunks, *, bound: int | None = None) -> tuple[list[object], bool]:
    """The events, and whether a RemoteProtocolError ended them; checks the buffer bound.

    Anything other than an event or RemoteProtocolError propagates and fails the test.
    """
    decoder = make()
    events: list[object] = []

    def pump() -> bool:
        while (event := decoder.next_event()) is not NEED_DATA:
            events.append(event)
            if isinstance(event, BadNotification | ConnectionClosed):
                return True
        return False

    try:
        for chunk in chunks:
            decoder.receive_data(chunk)
            if pump():
                return events, False
            if bound is not None:
                assert decoder.buffered <= bound
        decoder.receive_eof()
        pump()
    except RemoteProtocolError:
        return events, True
    return events, False


@st.composite
def messy_gateway_streams(draw: st.DrawFn) -> bytes:
    """Valid frames, frames of random items, and random bytes, mixed."""
    parts = draw(
        st.lists(
            st.one_of(
                gateway_units(max_token_length=100, payload_limit=64).map(lambda u: u[0]),
                st.lists(
                    st.builds(
                        encode_item,
                        st.sampled_from([*range(7), 0xFF]),
                        st.binary(max_size=80),
                    ),
                    max_size=6,
                ).map(encode_frame_items),
                st.binary(max_size=20),
            ),
            max_size=5,
        )
    )
    return b"".join(parts)


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    stream=st.binary(max_size=300) | messy_gateway_streams(),
    limits=st.sampled_from([(64, 32), (64, 100), (2048, 32)]),
)
def test_arbitrary_bytes_to_gateway_decoder(data, stream, limits):
    payload_limit, max_token_length = limits
    make = gateway(payload_limit=payload_limit, max_token_length=max_token_length)
    # The largest unit it ever has to hold: a command-1 header, token, length, payload.
    bound = 11 + max_token_length + 2 + payload_limit
    whole = outcome(make, [stream], bound=bound)
    chunked = outcome(make, data.draw(chunkings(stream)), bound=bound)
    assert whole == chunked
    # Good notifications, then at most one final event (BadNotification, ConnectionClosed).
    events, _ = whole
    assert all(isinstance(e, ReceivedNotification) for e in events[:-1])


@settings(max_examples=200, deadline=None)
@given(data=st.data(), stream=st.binary(max_size=60))
def test_arbitrary_bytes_to_error_response_decoder(data, stream):
    whole = outcome(ErrorResponseDecoder, [stream])
    assert whole == outcome(ErrorResponseDecoder, data.draw(chunkings(stream)))
    assert whole == outcome(ErrorResponseDecoder, bytewise(stream))


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    stream=st.binary(max_size=300)
    | st.lists(feedback_units())
    .map(lambda us: b"".join(u for u, _ in us))
    .flatmap(lambda s: st.binary(max_size=10).map(lambda junk: s + junk)),
)
def test_arbitrary_bytes_to_feedback_decoder(data, stream):
    # At most one token (100 bytes) and its 6-byte header are ever held.
    whole = outcome(FeedbackDecoder, [stream], bound=None)
    chunked = outcome(FeedbackDecoder, data.draw(chunkings(stream)), bound=6 + 100)
    assert whole == chunked


@settings(deadline=None)
@given(units=st.lists(gateway_units(), min_size=1, max_size=3), cut=st.integers(0, 2000))
def test_trailing_bytes_after_valid_units_stay_buffered(units, cut):
    stream = b"".join(unit for unit, _ in units)
    last = units[-1][0]
    partial = last[: min(cut, len(last) - 1)]
    decoder = GatewayDecoder(payload_limit=256)
    decoder.receive_data(stream + partial)
    assert drain(decoder) == [event for _, event in units]
    decoder.receive_eof()
    if partial:
        with pytest.raises(RemoteProtocolError):
            decoder.next_event()
    else:
        assert decoder.next_event() == ConnectionClosed()


def test_item_ids_match_the_spec():
    assert (Item.TOKEN, Item.PAYLOAD, Item.IDENTIFIER, Item.EXPIRY, Item.PRIORITY) == (
        1,
        2,
        3,
        4,
        5,
    )
