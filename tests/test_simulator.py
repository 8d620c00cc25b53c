"""The simulator's gateway, driven with hand-written bytes (PROTOCOL.md sections 2-5).

Every test runs twice: over real TLS on 127.0.0.1, and over a trio memory stream that
records each write of the server (to check that an error frame is ONE write). No part
of our sender is used: the bytes are written out here, from the spec's examples.
"""

from __future__ import annotations

import json
import struct

import pytest
import trio

from apns_legacy.simulator import Fault, FaultScope
from apns_legacy.wire import Status

TOKEN = bytes(range(32))
TOK = TOKEN.hex()
PAY = "7b22617073223a7b22616c657274223a224869227d7d"  # {"aps":{"alert":"Hi"}}, 22 bytes


def unhex(text: str) -> bytes:
    return bytes.fromhex(text.replace("|", " "))


# The examples of PROTOCOL.md sections 2, 3 and 4, byte for byte.
SIMPLE = unhex(f"00 0020 {TOK} 0016 {PAY}")
ENHANCED = unhex(f"01 01020304 00000000 0020 {TOK} 0016 {PAY}")
FRAME = unhex(
    f"02 0000004e | 01 0020 {TOK} | 02 0016 {PAY} | 03 0004 01020304 | 04 0004 00000000 "
    "| 05 0001 0a"
)


def enhanced(identifier: int, token: bytes = TOKEN, payload: bytes = b'{"aps":{}}') -> bytes:
    """Command 1, packed here with struct (not with the library's encoders)."""
    return (
        struct.pack("!BIIH", 1, identifier, 0, len(token))
        + token
        + struct.pack("!H", len(payload))
        + payload
    )


def probe(identifier: int) -> bytes:
    """Command 1 with a zero-length token: always answered 08 02 <identifier>."""
    return struct.pack("!BIIH", 1, identifier, 0, 0) + struct.pack("!H", 2) + b"{}"


pytestmark = pytest.mark.parametrize("transport", ["tls", "memory"])


async def test_accepts_commands_0_1_2_and_answers_nothing(gateway_harness, transport):
    async with gateway_harness(transport) as g:
        stream = await g.connect()
        with trio.fail_after(10):
            await stream.send_all(SIMPLE + ENHANCED + FRAME)
            await g.sim.wait_for_accepted(3)
            # Nothing was answered: the first bytes back are the probe's error frame.
            await stream.send_all(probe(0x99))
            received = await g.read_until_closed(stream)
    assert received.data == unhex("08 02 00000099")
    simple, enhanced_, frame = g.sim.accepted
    assert (simple.command, simple.identifier, simple.expiry, simple.priority) == (
        0,
        None,
        None,
        None,
    )
    assert (enhanced_.command, enhanced_.identifier, enhanced_.expiry) == (1, 0x01020304, 0)
    assert (frame.command, frame.identifier, frame.expiry, frame.priority) == (2, 0x01020304, 0, 10)
    for record in g.sim.accepted:
        assert record.token == TOK
        assert record.payload == '{"aps":{"alert":"Hi"}}'
        assert record.topic == g.sim.pki.client.topic
    assert len({r.connection for r in g.sim.accepted}) == 1


async def test_frames_split_byte_by_byte(gateway_harness, transport):
    data = SIMPLE + ENHANCED + FRAME
    async with gateway_harness(transport) as g:
        stream = await g.connect()
        with trio.fail_after(10):
            for i in range(len(data)):
                await stream.send_all(data[i : i + 1])
            await g.sim.wait_for_accepted(3)
            await stream.aclose()
    assert [r.command for r in g.sim.accepted] == [0, 1, 2]


async def test_many_frames_in_one_write(gateway_harness, transport):
    data = b"".join(enhanced(i) for i in range(2000))
    async with gateway_harness(transport) as g:
        stream = await g.connect()
        with trio.fail_after(10):
            await stream.send_all(data)
            await g.sim.wait_for_accepted(2000)
            await stream.aclose()
    assert [r.identifier for r in g.sim.accepted] == list(range(2000))


# (what, bytes sent, simulator options, error frame expected). Identifiers "deadbeef"
# show that the identifier is echoed verbatim.
STATUS_CASES = [
    (
        "zero-length token in a frame: status 2 with identifier 0, as Apple did",
        f"02 0000002a | 01 0000 | 02 0016 {PAY} | 03 0004 deadbeef | 04 0004 00000000",
        {},
        "08 02 00000000",
    ),
    ("zero-length token, command 1", f"01 deadbeef 00000000 0000 0016 {PAY}", {}, "08 02 deadbeef"),
    ("missing payload", f"01 deadbeef 00000000 0020 {TOK} 0000", {}, "08 04 deadbeef"),
    (
        "frame without a payload item",
        f"02 00000031 | 01 0020 {TOK} | 03 0004 deadbeef | 04 0004 00000000",
        {},
        "08 04 deadbeef",
    ),
    ("31-byte token", f"01 deadbeef 00000000 001f {TOK[:62]} 0016 {PAY}", {}, "08 05 deadbeef"),
    (
        "33-byte token in a frame",
        f"02 00000044 | 01 0021 {TOK}ff | 02 0016 {PAY} | 03 0004 deadbeef",
        {},
        "08 05 deadbeef",
    ),
    (
        "payload of 2049 bytes",
        f"01 deadbeef 00000000 0020 {TOK} 0801 " + "20" * 2049,
        {},
        "08 07 deadbeef",
    ),
    (
        "payload of 257 bytes under the old 256 limit",
        f"02 0000012e | 01 0020 {TOK} | 02 0101 " + "20" * 257 + " | 03 0004 deadbeef",
        {"payload_limit": 256},
        "08 07 deadbeef",
    ),
    (
        "invalid token",
        f"01 deadbeef 00000000 0020 {TOK} 0016 {PAY}",
        {"invalid_tokens": [TOKEN]},
        "08 08 deadbeef",
    ),
    (
        "processing error by fault",
        f"01 deadbeef 00000000 0020 {TOK} 0016 {PAY}",
        {"faults": [Fault.reject(nth=1, status=Status.PROCESSING_ERROR)]},
        "08 01 deadbeef",
    ),
    (
        "status 255 by fault, for a token",
        f"01 deadbeef 00000000 0020 {TOK} 0016 {PAY}",
        {"faults": [Fault.reject(token=TOKEN, status=255)]},
        "08 ff deadbeef",
    ),
    (
        "shutdown names the accepted notification",
        f"01 deadbeef 00000000 0020 {TOK} 0016 {PAY}",
        {"faults": [Fault.shutdown_after(1)]},
        "08 0a deadbeef",
    ),
    (
        "unknown command byte with protocol_error_frames",
        "07 0000",
        {"protocol_error_frames": True},
        "08 80 00000000",
    ),
    (
        "priority 7 with protocol_error_frames",
        f"02 00000047 | 01 0020 {TOK} | 02 0016 {PAY} | 03 0004 deadbeef | 05 0001 07",
        {"protocol_error_frames": True},
        "08 80 deadbeef",
    ),
]


@pytest.mark.parametrize(
    ("sent", "options", "expected"),
    [
        pytest.param(sent, options, expected, id=what)
        for what, sent, options, expected in STATUS_CASES
    ],
)
async def test_status_codes(gateway_harness, transport, sent, options, expected):
    async with gateway_harness(transport, **options) as g:
        stream = await g.connect()
        with trio.fail_after(10):
            await stream.send_all(unhex(sent))
            received = await g.read_until_closed(stream)
    frame = unhex(expected)
    assert received.data == frame
    assert not received.reset
    if transport == "tls":
        assert received.chunks == [frame]  # in one piece, before the close
    else:
        assert g.writes == [frame]  # exactly one write of the server
    (error,) = g.sim.errors_sent
    assert (error.status, error.identifier) == (frame[1], int.from_bytes(frame[2:], "big"))
    expected_accepted = 1 if frame[1] == Status.SHUTDOWN else 0
    assert g.sim.stats.accepted == expected_accepted


SILENT_CASES = [
    ("command 0 with a 31-byte token", f"00 001f {TOK[:62]} 0016 {PAY}", {}),
    ("command 0 to an invalid token", f"00 0020 {TOK} 0016 {PAY}", {"invalid_tokens": [TOKEN]}),
    ("unknown command byte", "07 00000000 0020", {}),
    ("frame length no frame can have", "02 ffffffff 01", {}),
    (
        "priority 7",
        f"02 00000047 | 01 0020 {TOK} | 02 0016 {PAY} | 03 0004 deadbeef | 05 0001 07",
        {},
    ),
    ("unknown item", f"02 00000040 | 01 0020 {TOK} | 02 0016 {PAY} | 09 0001 00", {}),
]


@pytest.mark.parametrize(
    ("sent", "options"),
    [pytest.param(sent, options, id=what) for what, sent, options in SILENT_CASES],
)
async def test_closes_without_a_frame(gateway_harness, transport, sent, options):
    async with gateway_harness(transport, **options) as g:
        stream = await g.connect()
        with trio.fail_after(10):
            await stream.send_all(unhex(sent))
            received = await g.read_until_closed(stream)
    assert received.data == b""
    assert not received.reset
    assert g.sim.errors_sent == []
    assert g.sim.stats.silent_closes == 1


async def test_nothing_after_the_bad_notification_is_recorded(gateway_harness, transport):
    data = enhanced(1) + enhanced(2, token=b"\x01" * 31) + enhanced(3) + SIMPLE + FRAME
    async with gateway_harness(transport) as g:
        stream = await g.connect()
        with trio.fail_after(10):
            await stream.send_all(data)
            received = await g.read_until_closed(stream)
    assert received.data == unhex("08 05 00000002")
    assert [r.identifier for r in g.sim.accepted] == [1]


async def test_shutdown_names_the_last_accepted_and_drops_the_rest(gateway_harness, transport):
    async with gateway_harness(transport, faults=[Fault.shutdown_after(3)]) as g:
        stream = await g.connect()
        with trio.fail_after(10):
            await stream.send_all(b"".join(enhanced(i) for i in range(11, 16)))
            received = await g.read_until_closed(stream)
            assert received.data == unhex("08 0a 0000000d")
            assert [r.identifier for r in g.sim.accepted] == [11, 12, 13]
            # It fired once (times=1): the next connection is served normally.
            stream = await g.connect()
            await stream.send_all(enhanced(16) + probe(17))
            received = await g.read_until_closed(stream)
    assert received.data == unhex("08 02 00000011")
    assert [r.identifier for r in g.sim.accepted] == [11, 12, 13, 16]


async def test_shutdown_counted_across_the_server(gateway_harness, transport):
    fault = Fault.shutdown_after(3, per=FaultScope.SERVER)
    async with gateway_harness(transport, faults=[fault]) as g:
        first = await g.connect()
        second = await g.connect()
        with trio.fail_after(10):
            await first.send_all(enhanced(1) + enhanced(2))
            await g.sim.wait_for_accepted(2)
            await second.send_all(enhanced(21) + enhanced(22))
            received = await g.read_until_closed(second)
            assert received.data == unhex("08 0a 00000015")  # the server's 3rd
            await first.send_all(enhanced(3) + probe(4))  # the first goes on
            received = await g.read_until_closed(first)
    assert received.data == unhex("08 02 00000004")
    assert sorted(r.identifier for r in g.sim.accepted) == [1, 2, 3, 21]


async def test_shutdown_every_time(gateway_harness, transport):
    async with gateway_harness(transport, faults=[Fault.shutdown_after(2, times=None)]) as g:
        with trio.fail_after(10):
            for base in (100, 200, 300):
                stream = await g.connect()
                await stream.send_all(b"".join(enhanced(base + i) for i in range(5)))
                received = await g.read_until_closed(stream)
                assert received.data == struct.pack("!BBI", 8, 10, base + 1)
    assert g.sim.stats.accepted == 6


async def test_shutdown_after_command_0_closes_silently(gateway_harness, transport):
    async with gateway_harness(transport, faults=[Fault.shutdown_after(1)]) as g:
        stream = await g.connect()
        with trio.fail_after(10):
            await stream.send_all(SIMPLE)
            received = await g.read_until_closed(stream)
    assert received.data == b""
    assert g.sim.stats.accepted == 1


async def test_reject_nth_and_by_token(gateway_harness, transport):
    other = b"\xee" * 32
    faults = [Fault.reject(nth=3, status=1), Fault.reject(token=other, status=255, times=None)]
    async with gateway_harness(transport, faults=faults) as g:
        with trio.fail_after(10):
            stream = await g.connect()
            await stream.send_all(b"".join(enhanced(i) for i in range(1, 6)))
            assert (await g.read_until_closed(stream)).data == unhex("08 01 00000003")
            for identifier in (7, 8):  # the token fault fires every time
                stream = await g.connect()
                await stream.send_all(enhanced(6) + enhanced(identifier, token=other))
                received = await g.read_until_closed(stream)
                assert received.data == struct.pack("!BBI", 8, 255, identifier)
    assert [r.identifier for r in g.sim.accepted] == [1, 2, 6, 6]


async def test_long_tokens_when_allowed(gateway_harness, transport):
    long_token = bytes(range(100))
    async with gateway_harness(transport, max_token_length=100) as g:
        stream = await g.connect()
        with trio.fail_after(10):
            await stream.send_all(enhanced(1, token=long_token) + enhanced(2, token=b"\x01" * 101))
            received = await g.read_until_closed(stream)
    assert received.data == unhex("08 05 00000002")
    assert [r.token for r in g.sim.accepted] == [long_token.hex()]


async def test_oversized_payload_answered_from_its_header(gateway_harness, transport):
    # The payload bytes never come: the length alone is enough, nothing is buffered.
    async with gateway_harness(transport) as g:
        stream = await g.connect()
        with trio.fail_after(10):
            await stream.send_all(unhex(f"01 0000002a 00000000 0020 {TOK} ffff 7b"))
            received = await g.read_until_closed(stream)
    assert received.data == unhex("08 07 0000002a")


async def test_keep_records_limit_and_record_file(gateway_harness, transport, tmp_path):
    path = tmp_path / "records.jsonl"
    async with gateway_harness(transport, keep_records=2, record_path=path) as g:
        stream = await g.connect()
        with trio.fail_after(10):
            await stream.send_all(SIMPLE + ENHANCED + FRAME + probe(9))
            await g.read_until_closed(stream)
            await g.sim.wait_until(lambda: g.sim.stats.error_frames == 1)
    assert [r.command for r in g.sim.accepted] == [0, 1]
    assert g.sim.stats.accepted == 3
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["command"] for line in lines] == [0, 1, 2]
    assert lines[2] == {
        "connection": 1,
        "command": 2,
        "identifier": 0x01020304,
        "token": TOK,
        "payload": '{"aps":{"alert":"Hi"}}',
        "expiry": 0,
        "priority": 10,
        "time": lines[2]["time"],
        "topic": g.sim.pki.client.topic,
    }
