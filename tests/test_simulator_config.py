"""``SimulatorConfig``: validated settings shared by the library, the fixtures and ``serve``;
and the gateway server side used on its own, with a sink of our own (as a bridge will)."""

from __future__ import annotations

import struct
import typing

import attrs
import pytest
import trio
import trio.testing

from apns_legacy.simulator import (
    ErrorClose,
    ErrorRecord,
    Fault,
    SimulatorConfig,
    SimulatorOptions,
    SimulatorStats,
    open_simulator,
)
from apns_legacy.simulator._fault_book import FaultBook
from apns_legacy.simulator._gateway import GatewayConnection
from apns_legacy.tls import Environment, open_tls_stream
from apns_legacy.wire import ReceivedNotification, Status

TOKEN = bytes(range(32))


def enhanced(identifier: int, token: bytes = TOKEN, payload: bytes = b'{"aps":{}}') -> bytes:
    return (
        struct.pack("!BIIH", 1, identifier, 0, len(token))
        + token
        + struct.pack("!H", len(payload))
        + payload
    )


def test_keyword_shortcuts_name_every_field():
    # SimulatorOptions types open_simulator's keyword shortcuts; mypy checks their
    # types against SimulatorConfig, this checks that none is missing.
    assert set(typing.get_type_hints(SimulatorOptions)) == {
        field.name for field in attrs.fields(SimulatorConfig)
    }


def test_defaults_and_conversions():
    config = SimulatorConfig(
        invalid_tokens=[bytearray(TOKEN)],
        faults=[Fault.shutdown_after(3)],
        environment="production",
        error_close="drain",
        record_path="x.jsonl",
    )
    assert config.invalid_tokens == frozenset({TOKEN})
    assert config.faults == (Fault.shutdown_after(3),)
    assert config.environment is Environment.PRODUCTION
    assert config.error_close is ErrorClose.DRAIN
    assert str(config.record_path) == "x.jsonl"
    defaults = SimulatorConfig()
    assert (defaults.host, defaults.gateway_port, defaults.feedback_port) == ("127.0.0.1", 0, 0)
    assert defaults.idle_timeout == 1800.0
    assert defaults.max_connections == 1000
    assert defaults.error_close is ErrorClose.RESET_IF_UNREAD
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        defaults.payload_limit = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"gateway_port": 70000}, ValueError, "gateway_port must be 0..65535, not 70000"),
        ({"payload_limit": 0}, ValueError, "payload_limit must be 1..65535"),
        ({"max_token_length": 31}, ValueError, "max_token_length must be 32..100"),
        ({"wrong_environment_delay": -1}, ValueError, "wrong_environment_delay must be 0 or more"),
        ({"feedback_chunk_size": 0}, ValueError, "feedback_chunk_size must be at least 1"),
        ({"keep_records": -1}, ValueError, "keep_records must be True, False or a count"),
        ({"handshake_timeout": 0}, ValueError, "handshake_timeout must be more than 0"),
        ({"idle_timeout": 0}, ValueError, "idle_timeout must be more than 0"),
        ({"max_connections": 0}, ValueError, "max_connections must be at least 1"),
        ({"faults": ["reset"]}, TypeError, "faults: not a fault: 'reset'"),
        ({"invalid_tokens": TOKEN}, TypeError, "an iterable of bytes, not one bytes value"),
        ({"environment": "staging"}, ValueError, "staging"),
        ({"error_close": "never"}, ValueError, "never"),
    ],
)
def test_bad_settings_name_the_field(changes, error, message):
    with pytest.raises(error, match=message):
        SimulatorConfig(**changes)


async def test_config_and_keyword_shortcuts_combine(pki):
    base = SimulatorConfig(invalid_tokens=[TOKEN], payload_limit=256)
    async with open_simulator(base, pki=pki, keep_records=False) as sim:
        assert sim.config == attrs.evolve(base, keep_records=False)
        assert sim.invalid_tokens == {TOKEN}
        with trio.fail_after(10):
            stream = await open_tls_stream(*sim.gateway_address, sim.client_context())
            await stream.send_all(enhanced(3))
            assert await stream.receive_some() == bytes.fromhex("0808 00000003")
            await stream.aclose()
    with pytest.raises(TypeError, match="config must be a SimulatorConfig"):
        async with open_simulator({"payload_limit": 5}):  # type: ignore[arg-type]
            pass


# -- the gateway server side without the Simulator -------------------------------------


@attrs.define
class CollectingSink:
    """A sink of our own: refuses tokens starting with 0xff (status 8), keeps the rest."""

    accepted: list[tuple[int, int | None, str]] = attrs.Factory(list)
    errors: list[ErrorRecord] = attrs.Factory(list)
    reads: int = 0

    def refusal(self, notification: ReceivedNotification) -> int | None:
        return Status.INVALID_TOKEN if notification.token[0] == 0xFF else None

    def accept(
        self, notification: ReceivedNotification, connection: int, topic: str, now: float, /
    ) -> None:
        self.accepted.append((connection, notification.identifier, topic))

    def error_sent(self, record: ErrorRecord) -> None:
        self.errors.append(record)

    def after_read(self) -> None:
        self.reads += 1


async def test_gateway_connection_with_a_custom_sink_over_memory_streams():
    client, server = trio.testing.memory_stream_pair()
    sink = CollectingSink()
    stats = SimulatorStats()
    connection = GatewayConnection(
        server,
        config=SimulatorConfig(),
        faults=FaultBook(),
        sink=sink,
        stats=stats,
        number=7,
        topic="com.example.bridge",
    )
    answer = b""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(connection.run)
        with trio.fail_after(10):
            await client.send_all(enhanced(1) + enhanced(2))
            await client.send_all(enhanced(3, token=b"\xff" * 32) + enhanced(4))
            while data := await client.receive_some():
                answer += data
    assert answer == bytes.fromhex("0808 00000003")
    assert sink.accepted == [(7, 1, "com.example.bridge"), (7, 2, "com.example.bridge")]
    assert [(e.connection, e.status, e.identifier) for e in sink.errors] == [(7, 8, 3)]
    assert sink.reads >= 1
    assert (stats.accepted, stats.rejected, stats.error_frames) == (2, 1, 1)


async def test_gateway_connection_applies_its_faults_and_limits():
    client, server = trio.testing.memory_stream_pair()
    faults = FaultBook()
    faults.add(Fault.shutdown_after(2))
    sink = CollectingSink()
    connection = GatewayConnection(
        server,
        config=SimulatorConfig(payload_limit=256),
        faults=faults,
        sink=sink,
        stats=SimulatorStats(),
        number=1,
        topic="t",
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(connection.run)
        with trio.fail_after(10):
            await client.send_all(enhanced(1, payload=b"{" + b" " * 255 + b"}") + enhanced(2))
            assert await client.receive_some() == bytes.fromhex("0807 00000001")
    client, server = trio.testing.memory_stream_pair()
    connection = GatewayConnection(
        server, config=SimulatorConfig(), faults=faults, sink=sink,
        stats=SimulatorStats(), number=2, topic="t",
    )  # fmt: skip
    async with trio.open_nursery() as nursery:
        nursery.start_soon(connection.run)
        with trio.fail_after(10):
            await client.send_all(enhanced(5) + enhanced(6) + enhanced(7))
            assert await client.receive_some() == bytes.fromhex("080a 00000006")
    assert [identifier for _, identifier, _ in sink.accepted] == [5, 6]
