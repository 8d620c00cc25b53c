"""The latency fault: a delaying layer between the TCP socket and TLS.

On its own over trio memory streams with the autojump clock (exact times), then in the
simulator over real TCP and TLS (the handshake, answers and resets come late).
"""

from __future__ import annotations

import struct

import attrs
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from apns_legacy.simulator import Fault, Simulator, SimulatorService, open_simulator
from apns_legacy.simulator._latency import open_latency_stream
from apns_legacy.simulator._streams import CloseMode
from apns_legacy.tls import TLSStream, client_context, server_context

TOKEN = bytes(range(32))


def enhanced(identifier: int, token: bytes = TOKEN) -> bytes:
    payload = b'{"aps":{}}'
    return (
        struct.pack("!BIIH", 1, identifier, 0, len(token))
        + token
        + struct.pack("!H", len(payload))
        + payload
    )


def probe(identifier: int) -> bytes:
    return struct.pack("!BIIH", 1, identifier, 0, 0) + struct.pack("!H", 2) + b"{}"


@attrs.define(eq=False)
class MemoryTransport(trio.abc.Stream):
    """A transport over a memory stream that records how the latency layer ended it."""

    transport_stream: trio.abc.Stream
    close_mode: CloseMode = CloseMode.GRACEFUL
    ended: list[tuple[float, CloseMode]] = attrs.Factory(list)

    def pending_input(self) -> int:
        return 0

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.transport_stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport_stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.transport_stream.receive_some(max_bytes)

    async def aclose(self) -> None:
        self.ended.append((trio.current_time(), self.close_mode))
        await self.transport_stream.aclose()


async def read_timed(stream: trio.abc.ReceiveStream, start: float) -> list[tuple[float, bytes]]:
    got = []
    while data := await stream.receive_some(65536):
        got.append((round(trio.current_time() - start, 6), bytes(data)))
    got.append((round(trio.current_time() - start, 6), b""))
    return got


async def test_bytes_arrive_after_the_delay_in_order(autojump_clock):
    client, server_end = trio.testing.memory_stream_pair()
    transport = MemoryTransport(server_end)
    async with open_latency_stream(transport, 0.7) as delayed:
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            received: list[tuple[float, bytes]] = []

            async def reader() -> None:
                received.extend(await read_timed(client, start))

            nursery.start_soon(reader)
            await delayed.send_all(b"one")
            await trio.sleep(0.2)
            await delayed.send_all(b"two")
            await delayed.send_all(b"three")
            await trio.sleep(1.0)
            await delayed.send_all(b"four")
            await delayed.aclose()
    # Each write 0.7 s late, in order; writes at the same moment may join; the close
    # reaches the client 0.7 s after it was made, behind the data.
    assert received == [(0.7, b"one"), (0.9, b"twothree"), (1.9, b"four"), (1.9, b"")]
    assert transport.ended == [(pytest.approx(start + 1.9), CloseMode.GRACEFUL)]


async def test_client_bytes_and_eof_arrive_after_the_delay(autojump_clock):
    client, server_end = trio.testing.memory_stream_pair()
    async with open_latency_stream(MemoryTransport(server_end), 0.3) as delayed:
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            received: list[tuple[float, bytes]] = []

            async def reader() -> None:
                received.extend(await read_timed(delayed, start))

            nursery.start_soon(reader)
            await client.send_all(b"a")
            await trio.sleep(0.1)
            await client.send_all(b"bc")
            await trio.sleep(1)
            await client.send_eof()
    assert received == [(0.3, b"a"), (0.4, b"bc"), (1.4, b"")]


async def test_small_reads_split_a_chunk_and_keep_its_time(autojump_clock):
    client, server_end = trio.testing.memory_stream_pair()
    async with open_latency_stream(MemoryTransport(server_end), 2) as delayed:
        start = trio.current_time()
        await client.send_all(b"abcdef")
        assert await delayed.receive_some(4) == b"abcd"
        assert await delayed.receive_some(4) == b"ef"
        assert trio.current_time() - start == 2


async def test_graceful_close_with_unread_client_bytes_becomes_a_reset(autojump_clock):
    client, server_end = trio.testing.memory_stream_pair()
    transport = MemoryTransport(server_end)
    async with open_latency_stream(transport, 0.5) as delayed:
        start = trio.current_time()
        await client.send_all(b"never read")
        await trio.sleep(0.1)
        assert delayed.pending_input() == len(b"never read")
        await delayed.send_all(b"\x08\x08\x00\x00\x00\x01")
        await delayed.aclose()
        assert await client.receive_some() == b"\x08\x08\x00\x00\x00\x01"
    assert transport.ended == [(pytest.approx(start + 0.6), CloseMode.RESET)]


async def test_reset_is_passed_on_after_the_delay_behind_the_data(autojump_clock):
    client, server_end = trio.testing.memory_stream_pair()
    transport = MemoryTransport(server_end)
    async with open_latency_stream(transport, 1) as delayed:
        start = trio.current_time()
        await delayed.send_all(b"frame")
        delayed.close_mode = CloseMode.RESET
        await delayed.aclose()
        assert await client.receive_some() == b"frame"
        assert trio.current_time() - start == 1
    assert transport.ended == [(pytest.approx(start + 1), CloseMode.RESET)]


async def test_window_limits_what_is_in_flight(autojump_clock):
    client, server_end = trio.testing.memory_stream_pair()
    async with open_latency_stream(MemoryTransport(server_end), 5, window=10) as delayed:
        start = trio.current_time()
        await delayed.send_all(b"x" * 10)
        # The window is full: the next write waits until the first left (after 5 s).
        await delayed.send_all(b"y")
        assert trio.current_time() - start == 5
        assert await client.receive_some() == b"x" * 10


async def test_tls_handshake_is_delayed(pki, autojump_clock):
    client_end, server_end = trio.testing.memory_stream_pair()
    server_tls_context = server_context(pki.server, client_ca=pki.ca_certificate)
    async with open_latency_stream(MemoryTransport(server_end), 0.25) as delayed:
        server = TLSStream(delayed, server_tls_context, server_side=True)
        client = TLSStream(
            client_end, client_context(pki.client, ca=pki.ca_pem()), server_side=False
        )
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.do_handshake)
            await client.do_handshake()
            # TLS 1.2: two round trips, each 2 x 0.25 s one way.
            assert trio.current_time() - start == pytest.approx(1.0)
        await client.send_all(b"hello")
        assert await server.receive_some() == b"hello"
        assert trio.current_time() - start == pytest.approx(1.25)
        await server.aclose()
        await client.aclose()


# -- in the simulator, over real TCP and TLS ---------------------------------------------


async def test_simulator_latency_delays_handshake_answers_and_close(pki):
    async with open_simulator(pki=pki, faults=[Fault.latency(0.2)]) as sim:
        context = sim.client_context()
        with trio.fail_after(20):
            start = trio.current_time()
            tcp = await trio.open_tcp_stream(*sim.gateway_address)
            stream = TLSStream(tcp, context, server_side=False)
            await stream.do_handshake()
            handshake = trio.current_time() - start
            sent = trio.current_time()
            await stream.send_all(enhanced(1) + probe(2))
            answer = await stream.receive_some()
            answered = trio.current_time() - sent
            assert await stream.receive_some() == b""  # close_notify, then the close
            await stream.aclose()
    assert handshake >= 0.8  # two round trips of 0.4 s
    assert answer == bytes.fromhex("0802 00000002")
    assert answered >= 0.4
    assert [r.identifier for r in sim.accepted] == [1]


async def test_simulator_latency_reset_after_unread_bytes(pki):
    bad_then_more = enhanced(1) + enhanced(2, token=b"\x01" * 31) + enhanced(3) * 3000
    async with open_simulator(pki=pki, faults=[Fault.latency(0.1)]) as sim:
        with trio.fail_after(20):
            tcp = await trio.open_tcp_stream(*sim.gateway_address)
            stream = TLSStream(tcp, sim.client_context(), server_side=False)
            await stream.send_all(bad_then_more)
            sent = trio.current_time()
            assert await stream.receive_some() == bytes.fromhex("0805 00000002")
            assert trio.current_time() - sent >= 0.2
            with pytest.raises(trio.BrokenResourceError) as caught:
                await stream.receive_some()
            await trio.aclose_forcefully(stream)
    assert isinstance(caught.value.__cause__, ConnectionResetError)
    assert sim.stats.unread_resets == 1


async def test_latency_only_for_one_service(pki):
    fault = Fault.latency(0.5)
    assert fault.service is None  # both services
    assert fault.times is None  # every connection
    feedback_only = Fault.latency(0.5, service=SimulatorService.FEEDBACK)
    async with open_simulator(pki=pki, faults=[feedback_only]) as sim:
        handshakes = {}
        with trio.fail_after(20):
            for name, address in (
                ("gateway", sim.gateway_address),
                ("feedback", sim.feedback_address),
            ):
                start = trio.current_time()
                tcp = await trio.open_tcp_stream(*address)
                stream = TLSStream(tcp, sim.client_context(), server_side=False)
                await stream.do_handshake()
                handshakes[name] = trio.current_time() - start
                await trio.aclose_forcefully(stream)
    assert handshakes["gateway"] < 2.0
    assert handshakes["feedback"] >= 2.0  # two round trips of 1 s


@given(
    delay=st.sampled_from([0.0, 0.02, 0.7, 3.0]),
    writes=st.lists(
        st.tuples(st.sampled_from([0.0, 0.0, 0.01, 0.5, 2.0]), st.integers(1, 3000)),
        min_size=1,
        max_size=20,
    ),
    window=st.sampled_from([1, 1000, 1 << 20]),
)
@settings(max_examples=60)
def test_every_byte_arrives_exactly_delay_late_in_order(delay, writes, window):
    async def run() -> None:
        client, server_end = trio.testing.memory_stream_pair()
        sent_at: list[float] = []  # the time each byte was handed to the layer
        arrived_at: list[float] = []
        payload = bytearray()
        transport = MemoryTransport(server_end)
        async with (
            open_latency_stream(transport, delay, window=window) as d,
            trio.open_nursery() as nursery,
        ):

            async def reader() -> None:
                while data := await client.receive_some(65536):
                    payload.extend(data)
                    arrived_at.extend([trio.current_time()] * len(data))

            nursery.start_soon(reader)
            counter = 0
            for gap, size in writes:
                await trio.sleep(gap)
                chunk = bytes((counter + i) % 251 for i in range(size))
                counter += size
                await d.send_all(chunk)
                # send_all returns once the bytes are queued: stamp them now (with
                # a full window it waited, and the bytes were queued at its end).
                sent_at.extend([trio.current_time()] * size)
            await d.aclose()
        assert bytes(payload) == bytes(i % 251 for i in range(counter))
        assert arrived_at == pytest.approx([t + delay for t in sent_at])

    trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))


async def test_gateway_over_a_delayed_memory_stream(pki, autojump_clock):
    # What a sender test under the autojump clock can do: the simulator's gateway behind
    # a 350 ms path, over memory streams, with exact times.
    sim = Simulator(pki=pki, invalid_tokens=[b"\x08" * 32])
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:

        async def serve() -> None:
            async with open_latency_stream(server, 0.35) as delayed:
                await sim.serve_gateway_stream(
                    delayed, topic=pki.client.topic, environments=pki.client.environments
                )

        nursery.start_soon(serve)
        start = trio.current_time()
        await client.send_all(enhanced(1) + enhanced(2, token=b"\x08" * 32))
        assert await client.receive_some() == bytes.fromhex("0808 00000002")
        assert trio.current_time() - start == pytest.approx(0.7)
        assert await client.receive_some() == b""
    assert [r.identifier for r in sim.accepted] == [1]
