"""Shared fixtures. Grouped by layer; add yours under a heading of your own.

Simulator fixtures:

* ``pki``: one throwaway CA, server and client certificate (sandbox) for the session.
* ``simulator``: an :func:`open_simulator` on 127.0.0.1, free ports, defaults.
* ``key``: an HTTP/2 provider key (ES256, team ``TEAM123456``, key ``KEY1234567``).
* ``gateway_harness``: ``async with gateway_harness("tls" | "memory", config, **changes) as g``
  runs a simulator with that :class:`SimulatorConfig` (and keyword shortcuts, typed as
  ``open_simulator``'s) and gives ``g.connect()`` (a client stream to its gateway: real
  TLS over TCP, or a trio memory stream that records each write of the server) and
  ``g.read_until_closed(stream)``.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any, Unpack

import attrs
import pytest
import trio
import trio.testing
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import settings

from apns_legacy.h2wire import ProviderKey
from apns_legacy.simulator import Simulator, SimulatorConfig, SimulatorOptions, open_simulator
from apns_legacy.tls import Credentials, Environment, TestPKI, make_test_pki, open_tls_stream

# -- hypothesis --------------------------------------------------------------------------

# No per-example deadline: CI machines are shared and slow at times, and a property
# test should fail on a wrong answer, never on a slow one. The "dev" profile is the
# same with more examples, for a deeper run: pytest --hypothesis-profile=dev
settings.register_profile("default", deadline=None)
settings.register_profile("dev", deadline=None, max_examples=1000)
settings.load_profile("default")


# -- simulator ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pki() -> TestPKI:
    # Sandbox only, so that a production simulator refuses it (wrong environment).
    return make_test_pki(environments=[Environment.SANDBOX])


@pytest.fixture(scope="session")
def key() -> ProviderKey:
    return ProviderKey(
        key_id="KEY1234567",
        team_id="TEAM123456",
        private_key=ec.generate_private_key(ec.SECP256R1()),
    )


@pytest.fixture
async def simulator(pki) -> AsyncIterator[Simulator]:
    async with open_simulator(pki=pki) as sim:
        yield sim


@attrs.frozen
class Received:
    """What a client read until the server closed: the chunks, and whether it was a reset."""

    chunks: list[bytes]
    reset: bool

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


def _is_reset(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionResetError) or (
            isinstance(seen, OSError) and seen.errno == errno.ECONNRESET
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@attrs.define
class GatewayHarness:
    """A running simulator and a way to connect to its gateway."""

    sim: Simulator
    transport: str
    _connect: Callable[[], Any]
    #: Memory transport only: every ``send_all`` the server made, one entry each.
    writes: list[bytes] = attrs.Factory(list)

    async def connect(self) -> trio.abc.Stream:
        stream: trio.abc.Stream = await self._connect()
        return stream

    @staticmethod
    async def read_until_closed(stream: trio.abc.Stream) -> Received:
        """Read until EOF (or a TCP reset), keeping each chunk as it came."""
        chunks: list[bytes] = []
        try:
            while data := await stream.receive_some(65536):
                chunks.append(bytes(data))
        except trio.BrokenResourceError as exc:
            if not _is_reset(exc):
                raise
            return Received(chunks, reset=True)
        finally:
            await trio.aclose_forcefully(stream)
        return Received(chunks, reset=False)


def _recording_memory_pair(
    writes: list[bytes],
) -> tuple[trio.StapledStream[Any, Any], trio.StapledStream[Any, Any]]:
    """Like ``memory_stream_pair``, but each server ``send_all`` is recorded separately."""
    client_send, server_receive = trio.testing.memory_stream_one_way_pair()
    server_send = trio.testing.MemorySendStream()
    client_receive = trio.testing.MemoryReceiveStream()

    async def pump() -> None:
        data = server_send.get_data_nowait()
        if data:
            writes.append(bytes(data))
            client_receive.put_data(data)

    server_send.send_all_hook = pump
    server_send.close_hook = client_receive.put_eof
    client = trio.StapledStream(client_send, client_receive)
    server = trio.StapledStream(server_send, server_receive)
    return client, server


@pytest.fixture
def gateway_harness(pki) -> Callable[..., contextlib.AbstractAsyncContextManager[GatewayHarness]]:
    @contextlib.asynccontextmanager
    async def harness(
        transport: str,
        config: SimulatorConfig | None = None,
        **changes: Unpack[SimulatorOptions],
    ) -> AsyncIterator[GatewayHarness]:
        if transport == "tls":
            async with open_simulator(config, pki=pki, **changes) as sim:
                context = sim.client_context()
                connect = partial(open_tls_stream, *sim.gateway_address, context)
                yield GatewayHarness(sim, transport, connect)
            return
        assert transport == "memory", transport
        sim = Simulator(config, pki=pki, **changes)
        try:
            async with trio.open_nursery() as nursery:
                writes: list[bytes] = []

                async def connect_memory() -> trio.abc.Stream:
                    client, server = _recording_memory_pair(writes)
                    nursery.start_soon(
                        partial(
                            sim.serve_gateway_stream,
                            server,
                            topic=pki.client.topic,
                            environments=pki.client.environments,
                        )
                    )
                    return client

                yield GatewayHarness(sim, transport, connect_memory, writes)
                nursery.cancel_scope.cancel()
        finally:
            sim.close()

    return harness


# -- wallet ------------------------------------------------------------------------------

PASS_TYPE_ID = "pass.com.example.card"


@attrs.frozen
class WalletPKI:
    """A production test PKI with a WWDR-like intermediate and a Pass Type ID certificate
    issued by it (chain: pass certificate <- WWDR <- root)."""

    pki: TestPKI
    wwdr: Credentials
    pass_credentials: Credentials

    @property
    def pass_type_id(self) -> str:
        return PASS_TYPE_ID

    def signer(self) -> Any:
        from apns_legacy.wallet import PassSigner

        return PassSigner.create(self.pass_credentials, self.wwdr.certificate)


@pytest.fixture(scope="session")
def wallet_pki() -> WalletPKI:
    pki = make_test_pki(environments=[Environment.PRODUCTION])
    wwdr = pki.issue_intermediate()
    credentials = pki.issue_client(
        topic=PASS_TYPE_ID, pass_type=True, environments=[Environment.PRODUCTION], issuer=wwdr
    )
    return WalletPKI(pki, wwdr, credentials)
