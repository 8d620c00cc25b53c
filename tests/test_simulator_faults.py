"""Faults that need a real socket or the clock: resets, delays, slow reading, idle
timeouts, refused handshakes. Real TLS on 127.0.0.1, hand-written bytes."""

from __future__ import annotations

import struct

import pytest
import trio

from apns_legacy.simulator import ErrorClose, Fault, FaultScope, SimulatorService, open_simulator
from apns_legacy.tls import TLSHandshakeError, open_tls_stream

TOKEN = bytes(range(32))


def enhanced(identifier: int, payload: bytes = b'{"aps":{}}', token: bytes = TOKEN) -> bytes:
    return (
        struct.pack("!BIIH", 1, identifier, 0, len(token))
        + token
        + struct.pack("!H", len(payload))
        + payload
    )


def probe(identifier: int) -> bytes:
    return struct.pack("!BIIH", 1, identifier, 0, 0) + struct.pack("!H", 2) + b"{}"


async def test_reset_after_notifications(gateway_harness):
    async with gateway_harness("tls", faults=[Fault.reset_after(notifications=2)]) as g:
        stream = await g.connect()
        with trio.fail_after(10):
            await stream.send_all(enhanced(1) + enhanced(2) + enhanced(3))
            received = await g.read_until_closed(stream)
    assert received.reset
    assert received.data == b""
    assert [r.identifier for r in g.sim.accepted] == [1, 2]
    assert g.sim.stats.resets == 1
    assert g.sim.errors_sent == []


async def test_reset_after_bytes(gateway_harness):
    frame = enhanced(1)
    async with gateway_harness("tls", faults=[Fault.reset_after(bytes=len(frame) + 10)]) as g:
        stream = await g.connect()
        with trio.fail_after(10):
            # Two separate writes, so the first frame is surely read before the limit.
            await stream.send_all(frame)
            await g.sim.wait_for_accepted(1)
            await stream.send_all(enhanced(2) + enhanced(3))
            received = await g.read_until_closed(stream)
    assert received.reset
    assert [r.identifier for r in g.sim.accepted] == [1]
    assert g.sim.stats.bytes_received == len(frame) + 10


async def test_reset_after_bytes_across_the_server(gateway_harness):
    frame = enhanced(1)
    fault = Fault.reset_after(bytes=len(frame) * 3, per=FaultScope.SERVER)
    async with gateway_harness("tls", faults=[fault]) as g:
        with trio.fail_after(10):
            first = await g.connect()
            await first.send_all(frame + frame)
            await g.sim.wait_for_accepted(2)
            second = await g.connect()
            await second.send_all(frame + frame)
            assert (await g.read_until_closed(second)).reset
            await first.send_all(probe(7))  # not reset: the fault fired once
            assert (await g.read_until_closed(first)).data == bytes.fromhex("0802 00000007")
    assert g.sim.stats.accepted == 3


async def test_delayed_error_frame_discards_what_follows(gateway_harness):
    async with gateway_harness("tls", faults=[Fault.delay_errors(0.3)]) as g:
        stream = await g.connect()
        with trio.fail_after(10):
            start = trio.current_time()
            await stream.send_all(enhanced(1) + probe(2))
            await g.sim.wait_for_accepted(1)
            # Sent while the error frame is held back: read and dropped, never recorded.
            await stream.send_all(enhanced(3) + enhanced(4))
            received = await g.read_until_closed(stream)
            elapsed = trio.current_time() - start
    assert received.chunks == [bytes.fromhex("0802 00000002")]
    assert elapsed >= 0.3
    assert [r.identifier for r in g.sim.accepted] == [1]


async def test_slow_reader_limits_the_rate(gateway_harness):
    frames = b"".join(enhanced(i, payload=b"{" + b" " * 998 + b"}") for i in range(40))
    assert len(frames) == 40 * 1045
    # 100 kB/s in 10 kB reads: ~42 kB takes at least 3 pauses of 0.1 s before the last read.
    async with gateway_harness("tls", faults=[Fault.slow_reader(100_000)]) as g:
        stream = await g.connect()
        with trio.fail_after(10):
            start = trio.current_time()
            await stream.send_all(frames)
            await g.sim.wait_for_accepted(40)
            elapsed = trio.current_time() - start
            await stream.aclose()
    assert elapsed >= 0.3


async def test_idle_timeout_closes_without_a_frame(gateway_harness):
    async with gateway_harness("tls", faults=[Fault.idle_timeout(0.2)]) as g:
        stream = await g.connect()
        with trio.fail_after(10):
            start = trio.current_time()
            await stream.send_all(enhanced(1))
            received = await g.read_until_closed(stream)
            elapsed = trio.current_time() - start
    assert received.data == b""
    assert not received.reset
    assert elapsed >= 0.2
    assert g.sim.stats.idle_closes == 1
    assert g.sim.stats.accepted == 1


async def test_refuse_handshake_once(gateway_harness):
    async with gateway_harness("tls", faults=[Fault.refuse_handshake()]) as g:
        with trio.fail_after(10):
            with pytest.raises(TLSHandshakeError):
                await g.connect()
            stream = await g.connect()  # fired once: the next handshake works
            await stream.send_all(probe(1))
            received = await g.read_until_closed(stream)
    assert received.data == bytes.fromhex("0802 00000001")
    assert g.sim.stats.refused_handshakes == 1


async def test_refuse_feedback_handshake(pki):
    fault = Fault.refuse_handshake(times=None, service=SimulatorService.FEEDBACK)
    async with open_simulator(pki=pki, faults=[fault]) as sim:
        with trio.fail_after(10):
            with pytest.raises(TLSHandshakeError):
                await open_tls_stream(*sim.feedback_address, sim.client_context())
            stream = await open_tls_stream(*sim.gateway_address, sim.client_context())
            await stream.aclose()


async def test_faults_added_while_running(gateway_harness):
    async with gateway_harness("tls") as g:
        stream = await g.connect()
        with trio.fail_after(10):
            await stream.send_all(enhanced(1))
            await g.sim.wait_for_accepted(1)
            g.sim.add_fault(Fault.reject(nth=3, status=1))  # counts this connection's 3rd
            g.sim.add_invalid_token(b"\x05" * 32)
            await stream.send_all(enhanced(2) + enhanced(3))
            assert (await g.read_until_closed(stream)).data == bytes.fromhex("0801 00000003")
            stream = await g.connect()
            await stream.send_all(
                struct.pack("!BIIH", 1, 9, 0, 32) + b"\x05" * 32 + struct.pack("!H", 2) + b"{}"
            )
            assert (await g.read_until_closed(stream)).data == bytes.fromhex("0808 00000009")


def test_fault_values_are_checked():
    with pytest.raises(ValueError, match="exactly one"):
        Fault.reset_after()
    with pytest.raises(ValueError, match="exactly one"):
        Fault.reject(nth=1, token=TOKEN)
    with pytest.raises(ValueError, match="at least 1"):
        Fault.shutdown_after(0)
    with pytest.raises(ValueError, match="one byte"):
        Fault.reject(nth=1, status=256)
    with pytest.raises(ValueError, match="more than 0"):
        Fault.slow_reader(0)
    assert Fault.shutdown_after(5) == Fault.shutdown_after(5)  # frozen values
    assert Fault.delay_errors(1).times is None
    assert Fault.refuse_handshake().times == 1


# -- faults for the evidence tests (issue 14) ----------------------------------------------

ERROR_2 = bytes.fromhex("0802 00000002")


async def test_split_error_frame_over_memory(gateway_harness, autojump_clock):
    async with gateway_harness("memory", faults=[Fault.split_errors((1, 5), gap=1.5)]) as g:
        stream = await g.connect()
        with trio.fail_after(10):
            await stream.send_all(enhanced(1) + probe(2))
            received = await g.read_until_closed(stream)
    # Two writes of the server, so two TLS records in service.
    assert g.writes == [ERROR_2[:1], ERROR_2[1:]]
    assert received.data == ERROR_2
    assert g.sim.stats.error_frames == 1


async def test_split_error_pieces_arrive_apart(gateway_harness, autojump_clock):
    async with gateway_harness("memory", faults=[Fault.split_errors((2, 2, 2), gap=3)]) as g:
        stream = await g.connect()
        times = []
        with trio.fail_after(100):
            await stream.send_all(probe(2))
            start = trio.current_time()
            while data := await stream.receive_some(65536):
                times.append((trio.current_time() - start, bytes(data)))
    assert times == [(0, ERROR_2[:2]), (3, ERROR_2[2:4]), (6, ERROR_2[4:])]


async def test_split_error_frame_over_tls(gateway_harness):
    async with gateway_harness("tls", faults=[Fault.split_errors((3, 3), gap=0.2)]) as g:
        stream = await g.connect()
        with trio.fail_after(10):
            start = trio.current_time()
            await stream.send_all(enhanced(1) + probe(2))
            received = await g.read_until_closed(stream)
            elapsed = trio.current_time() - start
    # Each piece is its own TLS record, read as it came.
    assert received.chunks == [ERROR_2[:3], ERROR_2[3:]]
    assert elapsed >= 0.2
    assert [r.identifier for r in g.sim.accepted] == [1]


def test_split_pieces_are_checked():
    for pieces in [(6,), (1, 4), (0, 6), (2, 2, 3)]:
        with pytest.raises(ValueError, match="adding up to 6"):
            Fault.split_errors(pieces)
    with pytest.raises(ValueError, match="gap must be 0 or more"):
        Fault.split_errors(gap=-1)
    assert Fault.split_errors([1, 5]).pieces == (1, 5)


async def test_stop_reading_never_reads_again(gateway_harness, autojump_clock):
    frame = enhanced(1)
    async with gateway_harness("memory", faults=[Fault.stop_reading(len(frame))]) as g:
        stream = await g.connect()
        await stream.send_all(frame + enhanced(2) + probe(3))
        await g.sim.wait_for_accepted(1)
        # An hour later (past the default idle timeout): nothing more read, nothing
        # answered, nothing closed.
        with trio.move_on_after(3600):
            await stream.receive_some(65536)
            pytest.fail("the gateway answered or closed")
    assert g.sim.stats.bytes_received == len(frame)
    assert g.sim.stats.accepted == 1
    assert g.sim.stats.stalls == 1
    assert g.sim.stats.idle_closes == 0


async def test_stop_reading_blocks_the_writer_over_tls(gateway_harness):
    async with gateway_harness("tls", faults=[Fault.stop_reading(0, times=1)]) as g:
        stream = await g.connect()
        # Far more than the socket buffers hold: the write cannot finish.
        with trio.move_on_after(1) as scope:
            await stream.send_all(enhanced(1) * 400_000)
        assert scope.cancelled_caught
        await trio.aclose_forcefully(stream)
        assert g.sim.stats.bytes_received == 0
        assert g.sim.stats.stalls == 1
        # times=1: the next connection is served normally.
        second = await g.connect()
        with trio.fail_after(10):
            await second.send_all(probe(5))
            assert (await g.read_until_closed(second)).data == bytes.fromhex("0802 00000005")


async def _write_while_reading(g, stream, first: bytes, more: bytes) -> str:
    """Write ``first``, then ``more`` in the background while reading until closed.

    Returns ``"clean"`` (TLS close_notify, then EOF) or ``"broken"`` (a reset; the
    writer may have taken the ECONNRESET, and then the reader sees a bare EOF).
    """
    async with trio.open_nursery() as nursery:

        async def keep_writing() -> None:
            try:
                await stream.send_all(more)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # reset, or closed by the reader below

        await stream.send_all(first)
        await g.sim.wait_for_accepted(1)
        nursery.start_soon(keep_writing)
        try:
            received = await g.read_until_closed(stream)
        except trio.BrokenResourceError:
            ending = "broken"
        else:
            ending = "broken" if received.reset else "clean"
        nursery.cancel_scope.cancel()
    return ending


@pytest.mark.parametrize(
    ("fault", "reset"),
    [
        (Fault.drop_after(bytes=len(enhanced(1)) + 10), False),
        (Fault.reset_after(bytes=len(enhanced(1)) + 10), True),
    ],
)
async def test_drop_after_bytes_is_a_clean_close_unlike_reset(gateway_harness, fault, reset):
    async with gateway_harness("tls", faults=[fault]) as g:
        stream = await g.connect()
        with trio.fail_after(20):
            ending = await _write_while_reading(
                g, stream, enhanced(1), b"".join(enhanced(i) for i in range(2, 5000))
            )
    assert ending == ("broken" if reset else "clean")
    assert g.sim.errors_sent == []
    assert [r.identifier for r in g.sim.accepted] == [1]
    assert g.sim.stats.bytes_received == len(enhanced(1)) + 10
    assert (g.sim.stats.drops, g.sim.stats.resets) == ((0, 1) if reset else (1, 0))


@pytest.mark.parametrize("transport", ["tls", "memory"])
async def test_drop_after_notifications(gateway_harness, transport):
    async with gateway_harness(transport, faults=[Fault.drop_after(notifications=2)]) as g:
        stream = await g.connect()
        with trio.fail_after(10):
            await stream.send_all(enhanced(1) + enhanced(2) + enhanced(3))
            received = await g.read_until_closed(stream)
    assert received.data == b""
    assert not received.reset
    assert [r.identifier for r in g.sim.accepted] == [1, 2]
    assert g.sim.errors_sent == []


BAD_THEN_MORE = enhanced(1) + enhanced(2, token=b"\x01" * 31) + enhanced(3) * 5000  # ~260 kB
ERROR_5 = bytes.fromhex("0805 00000002")


@pytest.mark.parametrize(
    ("error_close", "reset", "unread_resets"),
    [
        (ErrorClose.RESET_IF_UNREAD, True, 1),  # the default: the client kept writing
        (ErrorClose.DRAIN, False, 0),
        (ErrorClose.RESET, True, 0),
    ],
)
async def test_error_close_when_the_client_kept_writing(
    gateway_harness, error_close, reset, unread_resets
):
    # A 50 ms path (the latency fault) takes the whole write at once, so the client is
    # done writing before it reads, and the server has unread bytes when it answers.
    faults = [Fault.latency(0.05)]
    async with gateway_harness("tls", faults=faults, error_close=error_close) as g:
        stream = await g.connect()
        with trio.fail_after(10):
            await stream.send_all(BAD_THEN_MORE)
            received = await g.read_until_closed(stream)
    # The frame always comes first; then a reset or a clean end.
    assert received.data == ERROR_5
    assert received.reset is reset
    assert g.sim.stats.unread_resets == unread_resets
    assert [r.identifier for r in g.sim.accepted] == [1]


async def test_unread_bytes_turn_the_close_into_a_reset(gateway_harness):
    # No latency: the client writes from another task while it reads. Whichever of
    # its two tasks meets the reset first, the connection ends broken, and the
    # simulator counted a reset for unread bytes.
    async with gateway_harness("tls") as g:
        stream = await g.connect()
        with trio.fail_after(20):
            ending = await _write_while_reading(g, stream, enhanced(1), BAD_THEN_MORE * 4)
            await g.sim.wait_until(lambda: g.sim.stats.error_frames == 1)
    assert ending == "broken"
    assert g.sim.stats.unread_resets == 1
    assert [(e.status, e.identifier) for e in g.sim.errors_sent] == [(5, 2)]


@pytest.mark.parametrize(
    ("error_close", "reset"),
    [(ErrorClose.RESET_IF_UNREAD, False), (ErrorClose.DRAIN, False), (ErrorClose.RESET, True)],
)
async def test_error_close_when_nothing_is_unread(gateway_harness, error_close, reset):
    async with gateway_harness("tls", error_close=error_close) as g:
        stream = await g.connect()
        with trio.fail_after(10):
            await stream.send_all(enhanced(1) + probe(2))
            received = await g.read_until_closed(stream)
    assert received.data == ERROR_2
    assert received.reset is reset
    assert g.sim.stats.unread_resets == 0


async def test_slow_reader_at_one_byte_per_second(gateway_harness, autojump_clock):
    simple = bytes.fromhex("00 0020") + TOKEN + bytes.fromhex("0002") + b"{}"  # 39 bytes
    assert Fault.slow_reader(1).chunk == 1
    async with gateway_harness("memory", faults=[Fault.slow_reader(1)]) as g:
        stream = await g.connect()
        with trio.fail_after(1000):
            start = trio.current_time()
            await stream.send_all(simple + probe(9))
            await g.sim.wait_for_accepted(1)
            accepted_at = trio.current_time() - start
            received = await g.read_until_closed(stream)
            answered_at = trio.current_time() - start
    # One byte a second: the 39th byte is read at t=38; the probe's zero-length token
    # is refused from its 11-byte header, whose last byte is read at t=49.
    assert accepted_at == 38
    assert answered_at == 38 + 11
    assert received.data == bytes.fromhex("0802 00000009")
    assert g.sim.stats.bytes_received == 39 + 11


def test_slow_reader_chunks_at_tiny_and_large_rates():
    assert Fault.slow_reader(0.1).chunk == 1
    assert Fault.slow_reader(15).chunk == 1
    assert Fault.slow_reader(100_000).chunk == 10_000
    assert Fault.slow_reader(10**9).chunk == 65536
    assert Fault.slow_reader(1, read_size=4).chunk == 4
