"""The simulator as a service: feedback, certificates and environments, TLS versions,
many clients at once, hostile clients, volume. Real TLS on 127.0.0.1."""

from __future__ import annotations

import struct
import time
from functools import partial

import pytest
import trio
import trio.testing

from apns_legacy.simulator import Simulator, open_simulator, serve_simulator
from apns_legacy.tls import Environment, TLSHandshakeError, client_context, open_tls_stream

TOKEN = bytes(range(32))


def enhanced(identifier: int, token: bytes = TOKEN, payload: bytes = b'{"aps":{}}') -> bytes:
    return (
        struct.pack("!BIIH", 1, identifier, 0, len(token))
        + token
        + struct.pack("!H", len(payload))
        + payload
    )


def probe(identifier: int) -> bytes:
    return struct.pack("!BIIH", 1, identifier, 0, 0) + struct.pack("!H", 2) + b"{}"


async def read_all(stream: trio.abc.Stream) -> list[bytes]:
    chunks = []
    while data := await stream.receive_some(65536):
        chunks.append(bytes(data))
    await stream.aclose()
    return chunks


# -- feedback ------------------------------------------------------------------------------


async def test_uninstalled_token_appears_in_feedback_once(pki):
    gone = b"\x42" * 32
    async with open_simulator(pki=pki, uninstalled_tokens=[gone]) as sim:
        context = sim.client_context()
        with trio.fail_after(10):
            before = int(time.time())
            gateway = await open_tls_stream(*sim.gateway_address, context)
            await gateway.send_all(enhanced(1, token=gone) + enhanced(2) + probe(3))
            assert b"".join(await read_all(gateway)) == bytes.fromhex("0802 00000003")
            after = int(time.time())
            assert [r.identifier for r in sim.accepted] == [1, 2]  # accepted, not refused
            feedback = await open_tls_stream(*sim.feedback_address, context)
            data = b"".join(await read_all(feedback))
            assert len(data) == 38
            timestamp, length = struct.unpack("!IH", data[:6])
            assert before <= timestamp <= after
            assert (length, data[6:]) == (32, gone)
            # Read once, cleared: the second reader gets nothing.
            feedback = await open_tls_stream(*sim.feedback_address, context)
            assert await read_all(feedback) == []
    assert sim.stats.feedback_items_sent == 1


async def test_feedback_only_for_the_certificates_topic(pki):
    other_token = b"\x07" * 32
    async with open_simulator(pki=pki) as sim:
        sim.add_feedback(other_token, 1_400_000_000, topic="com.example.other")
        sim.add_feedback(TOKEN, 1_300_000_000)  # pki.client's topic
        with trio.fail_after(10):
            feedback = await open_tls_stream(*sim.feedback_address, sim.client_context())
            data = b"".join(await read_all(feedback))
    # PROTOCOL.md section 8 example: ts 1300000000, 38 bytes.
    assert data == bytes.fromhex("4d7c6d00 0020") + TOKEN
    assert sim.feedback.pending("com.example.other") == [(1_400_000_000, other_token)]


async def test_feedback_written_in_small_pieces(pki):
    tokens = [bytes([i]) * 32 for i in range(1, 4)]
    expected = b"".join(
        struct.pack("!IH", 1_300_000_000 + i, 32) + token for i, token in enumerate(tokens)
    )
    # Over a memory stream that records each write of the server: pieces of 5 bytes.
    sim = Simulator(pki=pki, feedback_chunk_size=5)
    for i, token in enumerate(tokens):
        sim.add_feedback(token, 1_300_000_000 + i)
    writes: list[bytes] = []
    send = trio.testing.MemorySendStream()

    async def record_write() -> None:
        writes.append(bytes(send.get_data_nowait()))

    send.send_all_hook = record_write
    stream = trio.StapledStream(send, trio.testing.MemoryReceiveStream())
    with trio.fail_after(10):
        await sim.serve_feedback_stream(
            stream, topic=pki.client.topic, environments=[Environment.SANDBOX]
        )
    assert [len(w) for w in writes] == [5] * 22 + [4]
    assert b"".join(writes) == expected
    # And over TLS the client gets the same bytes (its reads may join records).
    async with open_simulator(pki=pki, feedback_chunk_size=5) as sim:
        for i, token in enumerate(tokens):
            sim.add_feedback(token, 1_300_000_000 + i)
        with trio.fail_after(10):
            feedback = await open_tls_stream(*sim.feedback_address, sim.client_context())
            assert b"".join(await read_all(feedback)) == expected


# -- certificates, environments, TLS versions ---------------------------------------------


async def test_wrong_environment_is_dropped_after_the_handshake(pki):
    # pki.client allows the sandbox only; this server plays production.
    async with open_simulator(pki=pki, environment=Environment.PRODUCTION) as sim:
        with trio.fail_after(10):
            stream = await open_tls_stream(*sim.gateway_address, sim.client_context())
            start = trio.current_time()
            await stream.send_all(enhanced(1))
            assert await read_all(stream) == []  # no frame, a clean close
            elapsed = trio.current_time() - start
            sim.add_feedback(TOKEN, 1_300_000_000)
            feedback = await open_tls_stream(*sim.feedback_address, sim.client_context())
            assert await read_all(feedback) == []
    assert elapsed >= 0.1
    assert sim.stats.accepted == 0
    assert sim.stats.wrong_environment == 2
    assert sim.feedback.pending(pki.client.topic) != []  # not taken by the refused reader


async def test_universal_certificate_works_in_production(pki):
    universal = pki.issue_client(environments=(Environment.SANDBOX, Environment.PRODUCTION))
    async with open_simulator(pki=pki, environment=Environment.PRODUCTION) as sim:
        context = client_context(universal, ca=pki.ca_pem())
        with trio.fail_after(10):
            stream = await open_tls_stream(*sim.gateway_address, context)
            await stream.send_all(enhanced(1) + probe(2))
            assert b"".join(await read_all(stream)) == bytes.fromhex("0802 00000002")
    assert sim.accepted[0].topic == universal.topic


async def test_topic_comes_from_the_certificate(pki):
    other = pki.issue_client(topic="com.example.second")
    async with open_simulator(pki=pki) as sim:
        with trio.fail_after(10):
            stream = await open_tls_stream(
                *sim.gateway_address, client_context(other, ca=pki.ca_pem())
            )
            await stream.send_all(enhanced(1) + probe(2))
            await read_all(stream)
    assert sim.accepted[0].topic == "com.example.second"


async def test_client_certificate_is_required(pki):
    async with open_simulator(pki=pki) as sim:
        with trio.fail_after(10):
            with pytest.raises(TLSHandshakeError):
                # TLS 1.2 (the default): the server refuses before its Finished.
                await open_tls_stream(*sim.gateway_address, client_context(None, ca=pki.ca_pem()))
            await sim.wait_until(lambda: sim.stats.handshake_failures == 1)
    assert sim.stats.gateway_connections == 0


@pytest.mark.parametrize(("allow_tls13", "expected"), [(False, "TLSv1.2"), (True, "TLSv1.3")])
async def test_tls_versions(pki, allow_tls13, expected):
    async with open_simulator(pki=pki, allow_tls13=allow_tls13) as sim:
        with trio.fail_after(10):
            stream = await open_tls_stream(*sim.gateway_address, sim.client_context())
            assert stream.tls_version == expected
            await stream.send_all(probe(1))
            assert b"".join(await read_all(stream)) == bytes.fromhex("0802 00000001")


# -- many clients, hostile clients, volume -------------------------------------------------


async def test_fifty_concurrent_clients(simulator):
    context = simulator.client_context()
    answers: dict[int, bytes] = {}

    async def client(n: int) -> None:
        stream = await open_tls_stream(*simulator.gateway_address, context)
        await stream.send_all(b"".join(enhanced(n * 1000 + i) for i in range(20)))
        await simulator.wait_for_accepted(50 * 20)  # all clients are connected and served
        await stream.send_all(probe(n))
        answers[n] = b"".join(await read_all(stream))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for n in range(50):
                nursery.start_soon(client, n)
    assert answers == {n: struct.pack("!BBI", 8, 2, n) for n in range(50)}
    by_connection: dict[int, list[int]] = {}
    for record in simulator.accepted:
        by_connection.setdefault(record.connection, []).append(record.identifier or 0)
    assert len(by_connection) == 50
    for identifiers in by_connection.values():
        base = identifiers[0] - identifiers[0] % 1000
        assert identifiers == [base + i for i in range(20)]


async def test_hostile_clients_do_not_disturb_others(simulator):
    sim = simulator
    context = sim.client_context()
    with trio.fail_after(20):
        good = await open_tls_stream(*sim.gateway_address, context)
        await good.send_all(enhanced(1))
        await sim.wait_for_accepted(1)

        # Garbage, a huge frame length, a client vanishing mid-frame.
        for data in (
            b"\xff" * 1000,
            bytes.fromhex("02 ffffffff") + b"\x01" * 100,
            enhanced(9)[:30],
        ):
            bad = await open_tls_stream(*sim.gateway_address, context)
            await bad.send_all(data)
            if data[0] == 1:
                await trio.aclose_forcefully(bad)  # vanish mid-frame
            else:
                assert await read_all(bad) == []
        # Plain TCP clients: gone mid-handshake, not TLS at all, silent then gone.
        for data in (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            b"GET / HTTP/1.0\r\n\r\n",
            b"",
        ):
            raw = await trio.open_tcp_stream(*sim.gateway_address)
            if data:
                await raw.send_all(data)
            await raw.aclose()
        raw = await trio.open_tcp_stream(*sim.gateway_address)
        await raw.send_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        await sim.wait_until(lambda: sim.stats.handshake_failures >= 2)
        await raw.aclose()

        await good.send_all(enhanced(2) + probe(3))
        assert b"".join(await read_all(good)) == bytes.fromhex("0802 00000003")
        await sim.wait_until(lambda: sim.stats.handshake_failures >= 4)
    assert [r.identifier for r in sim.accepted] == [1, 2]
    assert sim.stats.internal_errors == 0


async def test_ten_thousand_notifications_without_keeping_records(pki):
    batch = b"".join(enhanced(i) for i in range(1000))
    async with open_simulator(pki=pki, keep_records=False) as sim:
        with trio.fail_after(20):
            stream = await open_tls_stream(*sim.gateway_address, sim.client_context())
            await stream.send_all(batch * 10)  # ~530 kB: the server's reads split frames
            await sim.wait_for_accepted(10_000)
            await stream.send_all(probe(1))
            assert b"".join(await read_all(stream)) == bytes.fromhex("0802 00000001")
    assert sim.accepted == []
    assert sim.stats.accepted == 10_000
    # After each 64 KiB read, at most one unfinished frame stays buffered.
    assert 0 < sim.stats.max_buffered < len(enhanced(0))
    assert sim.stats.bytes_received == 10 * len(batch) + len(probe(1))


async def test_ten_thousand_notifications_recorded(simulator):
    batch = b"".join(enhanced(i) for i in range(10_000))
    with trio.fail_after(20):
        stream = await open_tls_stream(*simulator.gateway_address, simulator.client_context())
        await stream.send_all(batch)
        await simulator.wait_for_accepted(10_000)
        await stream.aclose()
    assert [r.identifier for r in simulator.accepted] == list(range(10_000))


async def test_missing_topic_is_status_3(pki):
    # A client certificate without a subject UID names no topic. The test PKI cannot
    # issue one, so this runs over a memory stream, straight into the gateway logic.
    sim = Simulator(pki=pki)
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            partial(
                sim.serve_gateway_stream, server, topic=None, environments=[Environment.SANDBOX]
            )
        )
        with trio.fail_after(10):
            await client.send_all(enhanced(5))
            assert b"".join(await read_all(client)) == bytes.fromhex("0803 00000005")
    assert sim.stats.accepted == 0


async def test_serve_simulator_in_a_nursery(pki):
    async with trio.open_nursery() as nursery:
        sim = await nursery.start(partial(serve_simulator, pki=pki, invalid_tokens=[TOKEN]))
        with trio.fail_after(10):
            stream = await open_tls_stream(*sim.gateway_address, sim.client_context())
            await stream.send_all(enhanced(4))
            assert b"".join(await read_all(stream)) == bytes.fromhex("0808 00000004")
        nursery.cancel_scope.cancel()


async def test_errors_in_the_body_come_out_unwrapped(pki):
    with pytest.raises(KeyError):
        async with open_simulator(pki=pki):
            raise KeyError("from the test body")


# -- limits, as Apple's gateway had ---------------------------------------------------------


async def test_idle_connections_are_closed_by_default(gateway_harness, autojump_clock):
    async with gateway_harness("memory") as g:
        stream = await g.connect()
        start = trio.current_time()
        await stream.send_all(enhanced(1))
        received = await g.read_until_closed(stream)
    assert trio.current_time() - start == 1800  # DEFAULT_IDLE_TIMEOUT
    assert received.data == b""
    assert g.sim.stats.idle_closes == 1
    assert g.sim.stats.accepted == 1


async def test_idle_timeout_can_be_turned_off(gateway_harness, autojump_clock):
    async with gateway_harness("memory", idle_timeout=None) as g:
        stream = await g.connect()
        await stream.send_all(enhanced(1))
        with trio.move_on_after(100_000):
            await stream.receive_some()
            pytest.fail("closed although idle_timeout=None")
    assert g.sim.stats.idle_closes == 0


async def test_connection_cap(pki):
    async with open_simulator(pki=pki, max_connections=2) as sim:
        context = sim.client_context()
        with trio.fail_after(10):
            first = await open_tls_stream(*sim.gateway_address, context)
            second = await open_tls_stream(*sim.feedback_address, context)  # both ports count
            await sim.wait_until(lambda: sim.stats.open_connections == 1)  # feedback closed
            third = await open_tls_stream(*sim.gateway_address, context)
            assert sim.stats.open_connections == 2
            with pytest.raises(TLSHandshakeError):
                await open_tls_stream(*sim.gateway_address, context)  # closed before TLS
            assert sim.stats.over_limit == 1
            await first.aclose()
            await sim.wait_until(lambda: sim.stats.open_connections == 1)
            fourth = await open_tls_stream(*sim.gateway_address, context)
            await fourth.send_all(probe(4))
            assert b"".join(await read_all(fourth)) == bytes.fromhex("0802 00000004")
            for stream in (second, third):
                await stream.aclose()
