"""Helpers for the bridge tests: a bridge in front of the HTTP/2 simulator, raw clients.

Frames are written by hand from PROTOCOL.md (§2-§4), with ``struct``, not with the
project's encoders, so that an encoder bug cannot hide a bridge bug.
"""

from __future__ import annotations

import json
import signal
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from helpers import read_ready_line, reaped

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


@attrs.define
class ServedSimulator:
    """``apns-legacy serve --http2`` running in a process of its own (see
    :func:`serve_http2_process`)."""

    port: int
    #: The CA of its server certificate (PEM), for the bridge's ``UpstreamConfig.ca``.
    ca: bytes
    #: Its ``--record`` file: one JSON line per notification it answered 200.
    record: Path

    def recorded(self) -> list[str]:
        """Tokens (hex) it accepted, in order; complete once the process has exited."""
        with self.record.open(encoding="utf-8") as lines:
            return [json.loads(line)["token"] for line in lines]


@asynccontextmanager
async def serve_http2_process(
    directory: Path,
    key: ProviderKey,
    *,
    invalid: Iterable[bytes] = (),
    uninstalled: Iterable[bytes] = (),
) -> AsyncIterator[ServedSimulator]:
    """The HTTP/2 simulator as users run it, in its own process (so that it has a core of
    its own), until the block ends: then SIGTERM, and it must exit 0. ``uninstalled``
    tokens are answered 410 Unregistered with the time of the request."""
    p8 = directory / "AuthKey.p8"
    p8.write_bytes(
        key.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    record = directory / "accepted.jsonl"
    command = [sys.executable, "-m", "apns_legacy", "serve", "--http2", "--http2-port", "0",
               "--cert-dir", str(directory / "upstream-certs"), "--record", str(record),
               "--provider-key", f"{key.team_id}:{key.key_id}:{p8}"]  # fmt: skip
    command += [f"--invalid-token={t.hex()}" for t in invalid]
    command += [f"--uninstalled-token={t.hex()}" for t in uninstalled]
    # stderr to a file: nobody reads it while the notifications run.
    with (directory / "serve.log").open("wb") as log:
        process = await trio.lowlevel.open_process(command, stdout=subprocess.PIPE, stderr=log)
    assert process.stdout is not None
    async with reaped(process):
        with trio.fail_after(30):
            line = await read_ready_line(process.stdout, "serve --http2")
        ready = json.loads(line)
        port = int(ready["http2"].rpartition(":")[2])
        ca = (Path(ready["cert_dir"]) / "ca.pem").read_bytes()
        yield ServedSimulator(port, ca, record)
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            code = await process.wait()
        assert code == 0, (directory / "serve.log").read_text()


@attrs.define
class BridgeProcess:
    """``apns-legacy bridge --config FILE`` running in a process of its own (see
    :func:`bridge_process`)."""

    gateway: tuple[str, int]
    feedback: tuple[str, int]
    #: Its ``{"stopped": ...}`` line (the final counters), once the block has ended.
    stopped: dict[str, Any] = attrs.field(factory=dict)


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


@asynccontextmanager
async def bridge_process(
    directory: Path, pki: TestPKI, key: ProviderKey, upstream: ServedSimulator, mode: BridgeMode
) -> AsyncIterator[BridgeProcess]:
    """The bridge as operators run it, in its own process, in front of ``upstream``,
    until the block ends: then SIGTERM; it must exit 0 and say what it did."""
    write_credentials(directory, pki, key)
    (directory / "upstream-ca.pem").write_bytes(upstream.ca)
    config = directory / "bridge.toml"
    config.write_text(
        f"""\
[bridge]
gateway = "127.0.0.1:0"
feedback = "127.0.0.1:0"
server_cert = "bridge.pem"
server_key = "bridge-key.pem"
client_ca = "legacy-clients-ca.pem"
mode = "{mode.value}"

[upstream]
host = "localhost"
port = {upstream.port}
ca = "upstream-ca.pem"
retry_delay = 0.01

[[app]]
topic = "{TOPIC}"
auth_key = "AuthKey_ABC123DEFG.p8"
key_id = "{key.key_id}"
team_id = "{key.team_id}"
""",
        encoding="utf-8",
    )
    errors = directory / "bridge.log"
    command = [sys.executable, "-m", "apns_legacy", "bridge", "--config", str(config)]
    with errors.open("wb") as log:
        process = await trio.lowlevel.open_process(command, stdout=subprocess.PIPE, stderr=log)
    assert process.stdout is not None
    async with reaped(process):
        with trio.fail_after(30):
            line = await read_ready_line(process.stdout, "the bridge", errors)
        ready = json.loads(line)
        running = BridgeProcess(_host_port(ready["gateway"]), _host_port(ready["feedback"]))
        yield running
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(60):
            code = await process.wait()
        text = errors.read_text(encoding="utf-8")
        assert code == 0, text
        (stopped,) = [line for line in text.splitlines() if line.startswith('{"stopped"')]
        running.stopped = json.loads(stopped)["stopped"]
