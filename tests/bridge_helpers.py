"""Helpers for the bridge tests: a bridge in front of the HTTP/2 simulator, raw clients.

Frames are written by hand from PROTOCOL.md (§2-§4), with ``struct``, not with the
project's encoders, so that an encoder bug cannot hide a bridge bug.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from apns_legacy.bridge import (
    AppConfig,
    Bridge,
    BridgeConfig,
    BridgeMode,
    FeedbackStore,
    UpstreamConfig,
    open_bridge,
)
from apns_legacy.h2wire import ProviderKey
from apns_legacy.simulator import Http2Simulator, Http2SimulatorConfig, open_http2_simulator
from apns_legacy.tls import Credentials, TestPKI, TLSStream, client_context, open_tls_stream

TOPIC = "com.example.app"
GONE_MS = 1_454_402_113_123  # Apple's 410 timestamp, ms
PAYLOAD = b'{"aps":{"alert":"hi"}}'


def token(i: int) -> bytes:
    return i.to_bytes(32, "big")


def frame(
    identifier: int, tok: bytes, payload: bytes = PAYLOAD, expiry: int = 0, priority: int = 10
) -> bytes:
    """Command 2 with items 1, 2, 3, 4, 5, per PROTOCOL.md §4."""
    items = (
        struct.pack("!BH", 1, len(tok))
        + tok
        + struct.pack("!BH", 2, len(payload))
        + payload
        + struct.pack("!BHI", 3, 4, identifier)
        + struct.pack("!BHI", 4, 4, expiry)
        + struct.pack("!BHB", 5, 1, priority)
    )
    return struct.pack("!BI", 2, len(items)) + items


def enhanced(identifier: int, tok: bytes, payload: bytes = PAYLOAD, expiry: int = 0) -> bytes:
    """Command 1, per PROTOCOL.md §3."""
    return (
        struct.pack("!BIIH", 1, identifier, expiry, len(tok))
        + tok
        + struct.pack("!H", len(payload))
        + payload
    )


def simple(tok: bytes, payload: bytes = PAYLOAD) -> bytes:
    """Command 0, per PROTOCOL.md §2."""
    return struct.pack("!BH", 0, len(tok)) + tok + struct.pack("!H", len(payload)) + payload


def error_frame(status: int, identifier: int) -> bytes:
    return struct.pack("!BBI", 8, status, identifier)


def new_key() -> ProviderKey:
    return ProviderKey(
        key_id="KEY1234567",
        team_id="TEAM123456",
        private_key=ec.generate_private_key(ec.SECP256R1()),
    )


@attrs.define
class Rig:
    """A bridge in front of an HTTP/2 simulator, and a legacy client's credentials."""

    bridge: Bridge
    sim: Http2Simulator | None
    pki: TestPKI
    client: Credentials

    def context(self, client: Credentials | None = None) -> Any:
        return client_context(client or self.client, ca=self.pki.ca_pem())

    async def connect(self, client: Credentials | None = None) -> TLSStream:
        host, port = self.bridge.gateway_address
        return await open_tls_stream(host, port, self.context(client), server_hostname="localhost")

    async def feedback(self, client: Credentials | None = None) -> bytes:
        host, port = self.bridge.feedback_address
        stream = await open_tls_stream(
            host, port, self.context(client), server_hostname="localhost"
        )
        try:
            return await read_all(stream)
        finally:
            await stream.aclose()

    def recorded(self) -> list[str]:
        """Tokens (hex) the simulator accepted, in order."""
        return [record.token for record in self.sim.accepted]


async def read_all(stream: trio.abc.ReceiveStream) -> bytes:
    """Everything until the peer closes (a reset after the data counts as a close)."""
    data = bytearray()
    try:
        while chunk := await stream.receive_some(65536):
            data += chunk
    except trio.BrokenResourceError:
        pass
    return bytes(data)


def bridge_config(
    pki: TestPKI,
    sim: Http2Simulator | None,
    key: ProviderKey,
    *,
    mode: BridgeMode = BridgeMode.EXACT,
    apps: list[AppConfig] | None = None,
    **changes: Any,
) -> BridgeConfig:
    upstream = changes.pop("upstream", None)
    if upstream is None:
        assert sim is not None
        assert sim.pki is not None
        upstream = UpstreamConfig(
            host="localhost", port=sim.port, ca=sim.pki.ca_pem(), retry_delay=0.01
        )
    return BridgeConfig(
        gateway=("127.0.0.1", 0),
        feedback=("127.0.0.1", 0),
        server=pki.server,
        client_ca=[pki.ca_certificate],
        mode=mode,
        apps=apps if apps is not None else [AppConfig(topic=TOPIC, provider_key=key)],
        upstream=upstream,
        **changes,
    )


def sim_config(key: ProviderKey, **changes: Any) -> Http2SimulatorConfig:
    return Http2SimulatorConfig(
        provider_keys={(key.team_id, key.key_id): key.public_key},
        **changes,
    )


@asynccontextmanager
async def open_rig(
    pki: TestPKI,
    key: ProviderKey,
    *,
    sim: Http2SimulatorConfig | None = None,
    mode: BridgeMode = BridgeMode.EXACT,
    store: FeedbackStore | None = None,
    **changes: Any,
) -> AsyncIterator[Rig]:
    async with open_http2_simulator(sim or sim_config(key)) as simulator:
        config = bridge_config(pki, simulator, key, mode=mode, **changes)
        async with open_bridge(config, store=store) as bridge:
            yield Rig(bridge, simulator, pki, pki.client)


def write_credentials(directory: Path, pki: TestPKI, key: ProviderKey) -> None:
    """The files the README's example configuration names, in ``directory``."""
    (directory / "bridge.pem").write_bytes(
        pki.server.certificate.public_bytes(serialization.Encoding.PEM)
    )
    (directory / "bridge-key.pem").write_bytes(
        pki.server.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (directory / "legacy-clients-ca.pem").write_bytes(pki.ca_pem())
    (directory / "AuthKey_ABC123DEFG.p8").write_bytes(
        key.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def local_config(example: str, sim: Http2Simulator, ca_file: str = "extra-trust.pem") -> str:
    """The example with loopback ports and the simulator as upstream."""
    return (
        example.replace('"0.0.0.0:2195"', '"127.0.0.1:0"')
        .replace('"0.0.0.0:2196"', '"127.0.0.1:0"')
        .replace('"api.push.apple.com"', '"localhost"')
        .replace("port = 443", f"port = {sim.port}")
        .replace('"extra-trust.pem"', f'"{ca_file}"')
    )


README = Path(__file__).resolve().parent.parent / "README.md"


def readme_example() -> str:
    """The README's bridge configuration example (its first TOML block under "## Bridge")."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("\n## Bridge\n") :]
    start = section.index("```toml\n") + len("```toml\n")
    return section[start : section.index("```", start)]
