"""Faults that need a real socket or the clock: resets, delays, slow reading, idle
timeouts, refused handshakes. Real TLS on 127.0.0.1, hand-written bytes."""

from __future__ import annotations

import struct

import pytest
import trio

from apns_legacy.simulator import Fault, FaultScope, SimulatorService, open_simulator
from apns_legacy.tls import TLSHandshakeError, open_tls_stream

TOKEN = bytes(range(32))


def enhanced(identifier: int, payload: bytes = b'{"aps":{}}') -> bytes:
    return (
        struct.pack("!BIIH", 1, identifier, 0, 32)
        + TOKEN
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
