"""TCP listeners and TLS in front of :class:`Simulator`: ``open_simulator``, ``serve_simulator``.

Each accepted TCP connection runs in its own task: the connection cap
(``max_connections``), an optional refuse-handshake fault, the transport (a
:class:`SocketTransport`, or a latency layer when a latency fault applies), the TLS
handshake (client certificate required, verified against the CA, within
``handshake_timeout``), then the topic (subject UID) and environments (Apple's
extension OIDs) are read from the client certificate and the stream is handed to the
simulator. Every error of one connection is caught there: it is logged at DEBUG (the
client went away, sent garbage, failed the handshake) or, if it is a bug, at ERROR
with ``stats.internal_errors`` counted; it never reaches the listener or another
connection.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from functools import partial
from typing import Unpack

import attrs
import trio
from cryptography import x509
from OpenSSL import SSL

from ..tls import (
    Credentials,
    TestPKI,
    TLSStream,
    certificate_environments,
    certificate_topic,
    make_test_pki,
    read_pem_certificates,
    server_context,
)
from . import _streams
from ._config import SimulatorConfig, SimulatorOptions, make_config
from ._faults import SimulatorService
from ._latency import open_latency_stream
from ._simulator import Simulator

logger = logging.getLogger("apns_legacy.simulator")


def _certificates(values: Iterable[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    certificates = tuple(values)
    if not certificates:
        raise ValueError("client_ca needs at least one CA certificate")
    return certificates


@attrs.frozen
class ServerCertificates:
    """What the TLS listeners need: the server's credentials and the CA(s) client
    certificates must chain to. Without a client certificate, unlike :class:`TestPKI`."""

    server: Credentials
    client_ca: tuple[x509.Certificate, ...] = attrs.field(converter=_certificates)

    @classmethod
    def from_pki(cls, pki: TestPKI) -> ServerCertificates:
        """The server side of a test PKI."""
        return cls(pki.server, (pki.ca_certificate,))

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> ServerCertificates:
        """Read ``server.pem``, ``server-key.pem`` and ``ca.pem`` from ``directory``.

        Raises:
            CredentialsError: a file is missing, unreadable or not what it should be
                (the message names the file).
        """
        folder = os.fspath(directory)
        server = Credentials.load(
            os.path.join(folder, "server.pem"), os.path.join(folder, "server-key.pem")
        )
        authorities = read_pem_certificates(os.path.join(folder, "ca.pem"), "CA certificate")
        return cls(server, tuple(authorities))


class ListenError(OSError):
    """A listener could not be opened; the message names the service, address and port."""


async def _handle_connection(
    sim: Simulator, context: SSL.Context, service: SimulatorService, tcp: trio.SocketStream
) -> None:
    stats = sim.stats
    stats.open_connections += 1
    try:
        limit = sim.config.max_connections
        if limit is not None and stats.open_connections > limit:
            stats.over_limit += 1
            logger.debug("%s: %d connections open, closing a new one", service.value, limit)
            return
        if sim.faults.refuse_handshake(service):
            stats.refused_handshakes += 1
            logger.debug("%s: refusing the handshake (fault)", service.value)
            return
        latency = sim.faults.take_latency(service)
        transport = _streams.SocketTransport(tcp)
        if latency is None:
            await _serve_transport(sim, context, service, transport)
        else:
            async with open_latency_stream(
                transport, latency.seconds, window=latency.window
            ) as delayed:
                await _serve_transport(sim, context, service, delayed)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
        # The client vanished or broke the stream: its own problem, nobody else's.
        logger.debug("%s: connection ended: %r", service.value, exc)
    except Exception:
        stats.internal_errors += 1
        logger.exception("%s: unexpected error in a connection handler", service.value)
    finally:
        stats.open_connections -= 1
        # Idempotent; a reset or a graceful close may already have closed it.
        await trio.aclose_forcefully(tcp)
        sim.changed()


async def _serve_transport(
    sim: Simulator, context: SSL.Context, service: SimulatorService, transport: trio.abc.Stream
) -> None:
    tls = TLSStream(transport, context, server_side=True)
    try:
        try:
            with trio.fail_after(sim.config.handshake_timeout):
                await tls.do_handshake()
        except (trio.TooSlowError, trio.BrokenResourceError, OSError) as exc:
            sim.stats.handshake_failures += 1
            logger.debug("%s: handshake failed: %s", service.value, exc)
            return
        certificate = tls.peer_certificate
        topic = certificate_topic(certificate) if certificate is not None else None
        environments = (
            certificate_environments(certificate) if certificate is not None else frozenset()
        )
        serve = (
            sim.serve_gateway_stream
            if service is SimulatorService.GATEWAY
            else sim.serve_feedback_stream
        )
        await serve(tls, topic=topic, environments=environments)
    finally:
        # Ends the transport if the service did not (a failed handshake, an error).
        await trio.aclose_forcefully(transport)


async def open_listeners(
    host: str, port: int, what: str, error_type: type[OSError] = ListenError
) -> list[trio.SocketListener]:
    """trio's TCP listeners on ``host:port``; a failure is one ``error_type`` naming the
    address and ``what`` listens there (shared with the bridge's listeners)."""
    try:
        return await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            reason = "address already in use (another server is listening there)"
        error = error_type(f"cannot listen on {shown} for the {what}: {reason}")
        error.errno = exc.errno
        raise error from exc


async def _listen(
    sim: Simulator,
    certificates: ServerCertificates,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    config = sim.config
    # One context for both ports, built once and never changed afterwards.
    context = server_context(
        certificates.server, client_ca=certificates.client_ca, allow_tls13=config.allow_tls13
    )
    gateway = await open_listeners(config.host, config.gateway_port, SimulatorService.GATEWAY.value)
    try:
        feedback = await open_listeners(
            config.host, config.feedback_port, SimulatorService.FEEDBACK.value
        )
    except BaseException:
        for listener in gateway:
            await trio.aclose_forcefully(listener)
        raise
    sim.listening_on(listener_address(gateway), listener_address(feedback))
    async with trio.open_nursery() as nursery:
        for listeners, service in (
            (gateway, SimulatorService.GATEWAY),
            (feedback, SimulatorService.FEEDBACK),
        ):
            handler = partial(_handle_connection, sim, context, service)
            await nursery.start(trio.serve_listeners, handler, listeners)
        logger.info(
            "simulator: gateway %s:%d, feedback %s:%d (%s)",
            *sim.gateway_address,
            *sim.feedback_address,
            sim.environment.value,
        )
        task_status.started()


def listener_address(listeners: list[trio.SocketListener]) -> tuple[str, int]:
    host, port, *_ = listeners[0].socket.getsockname()
    return str(host), int(port)


@asynccontextmanager
async def open_simulator(
    config: SimulatorConfig | None = None,
    *,
    pki: TestPKI | None = None,
    certificates: ServerCertificates | None = None,
    **changes: Unpack[SimulatorOptions],
) -> AsyncIterator[Simulator]:
    """Run a gateway and a feedback service with TLS for the ``async with`` block.

    Port 0 (the default) picks a free port; read the real ones from
    ``gateway_address`` and ``feedback_address``.

    Args:
        config: the settings (see :class:`SimulatorConfig`); default: all defaults.
        pki: the test certificates (server, client, CA). Without ``pki`` and
            ``certificates``, a throwaway CA, server and client certificate are made
            (the client certificate allows ``config.environment``).
        certificates: the server's own certificate and the client CA, for a server
            certificate that is not part of a :class:`TestPKI`; then
            :meth:`Simulator.client_context` needs ``pki`` too.
        **changes: fields of :class:`SimulatorConfig` to change (keyword shortcuts:
            ``open_simulator(invalid_tokens=[token])``).

    Raises:
        ListenError: a port cannot be opened (in use, no permission, ...).

    Example::

        async with open_simulator(invalid_tokens=[bad]) as sim:
            stream = await open_tls_stream(*sim.gateway_address, sim.client_context())
            ...
            await sim.wait_for_accepted(10)
    """
    config = make_config(config, changes)
    if pki is None and certificates is None:
        pki = make_test_pki(environments=(config.environment,))
    if certificates is None:
        assert pki is not None
        certificates = ServerCertificates.from_pki(pki)
    sim = Simulator(config, pki=pki)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(_listen, sim, certificates)
            try:
                yield sim
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # Connection handlers never raise, so a group holds what the body raised:
        # give it back unwrapped, as if no nursery were here.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    finally:
        sim.close()


async def serve_simulator(
    config: SimulatorConfig | None = None,
    *,
    pki: TestPKI | None = None,
    certificates: ServerCertificates | None = None,
    task_status: trio.TaskStatus[Simulator] = trio.TASK_STATUS_IGNORED,
    **changes: Unpack[SimulatorOptions],
) -> None:
    """Run the simulator until cancelled; ``nursery.start`` returns the :class:`Simulator`.

    Takes the arguments of :func:`open_simulator`.
    """
    async with open_simulator(config, pki=pki, certificates=certificates, **changes) as sim:
        task_status.started(sim)
        await trio.sleep_forever()
