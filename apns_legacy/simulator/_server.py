"""TCP listeners and TLS in front of :class:`Simulator`: ``open_simulator``, ``serve_simulator``.

Each accepted TCP connection runs in its own task: an optional refuse-handshake fault,
the TLS handshake (client certificate required, verified against the test CA, within
``handshake_timeout``), then the topic (subject UID) and environments (Apple's
extension OIDs) are read from the client certificate and the stream is handed to the
simulator. Every error of one connection is caught there: it is logged at DEBUG (the
client went away, sent garbage, failed the handshake) or, if it is a bug, at ERROR
with ``stats.internal_errors`` counted; it never reaches the listener or another
connection.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import trio
from OpenSSL import SSL

from ..tls import (
    Environment,
    TestPKI,
    TLSStream,
    certificate_environments,
    certificate_topic,
    make_test_pki,
    server_context,
)
from ..wire import PAYLOAD_LIMIT, TOKEN_LENGTH
from ._faults import Fault, SimulatorService
from ._simulator import Simulator

logger = logging.getLogger("apns_legacy.simulator")

_Serve = Callable[..., Awaitable[None]]


async def _handle_connection(
    sim: Simulator, context: SSL.Context, service: SimulatorService, tcp: trio.SocketStream
) -> None:
    try:
        if sim.faults.refuse_handshake(service):
            sim.stats.refused_handshakes += 1
            logger.debug("%s: refusing the handshake (fault)", service.value)
            return
        tls = TLSStream(tcp, context, server_side=True)
        try:
            with trio.fail_after(sim.handshake_timeout):
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
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
        # The client vanished or broke the stream: its own problem, nobody else's.
        logger.debug("%s: connection ended: %r", service.value, exc)
    except Exception:
        sim.stats.internal_errors += 1
        logger.exception("%s: unexpected error in a connection handler", service.value)
    finally:
        # Idempotent; a reset or a graceful close may already have closed it.
        await trio.aclose_forcefully(tcp)
        sim.changed()


async def _listen(
    sim: Simulator,
    host: str,
    gateway_port: int,
    feedback_port: int,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    pki = sim.pki
    if pki is None:  # pragma: no cover - open_simulator always sets it
        raise RuntimeError("the simulator needs a pki to listen with TLS")
    # One context for both ports, built once and never changed afterwards.
    context = server_context(pki.server, client_ca=pki.ca_certificate, allow_tls13=sim.allow_tls13)
    gateway = await trio.open_tcp_listeners(gateway_port, host=host)
    feedback = await trio.open_tcp_listeners(feedback_port, host=host)
    sim.listening_on(_address(gateway), _address(feedback))
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


def _address(listeners: list[trio.SocketListener]) -> tuple[str, int]:
    host, port, *_ = listeners[0].socket.getsockname()
    return str(host), int(port)


def _make_simulator(pki: TestPKI | None, environment: Environment, **options: Any) -> Simulator:
    if pki is None:
        pki = make_test_pki(environments=(environment,))
    return Simulator(pki=pki, environment=environment, **options)


@asynccontextmanager
async def open_simulator(
    *,
    pki: TestPKI | None = None,
    host: str = "127.0.0.1",
    gateway_port: int = 0,
    feedback_port: int = 0,
    environment: Environment = Environment.SANDBOX,
    invalid_tokens: Iterable[bytes] = (),
    uninstalled_tokens: Iterable[bytes] = (),
    payload_limit: int = PAYLOAD_LIMIT,
    max_token_length: int = TOKEN_LENGTH,
    protocol_error_frames: bool = False,
    allow_tls13: bool = False,
    wrong_environment_delay: float = 0.1,
    faults: Iterable[Fault] = (),
    record_path: str | Path | None = None,
    keep_records: bool | int = True,
    feedback_chunk_size: int | None = None,
    handshake_timeout: float = 10.0,
) -> AsyncIterator[Simulator]:
    """Run a gateway and a feedback service with TLS on ``host`` for the ``async with`` block.

    Port 0 picks a free port; read the real ones from ``gateway_address`` and
    ``feedback_address``. Without ``pki`` a throwaway CA, server and client
    certificate are made (the client certificate allows ``environment``). The other
    arguments are those of :class:`Simulator`.

    Example::

        async with open_simulator(invalid_tokens=[bad]) as sim:
            stream = await open_tls_stream(*sim.gateway_address, sim.client_context())
            ...
            await sim.wait_for_accepted(10)
    """
    sim = _make_simulator(
        pki,
        environment,
        invalid_tokens=invalid_tokens,
        uninstalled_tokens=uninstalled_tokens,
        payload_limit=payload_limit,
        max_token_length=max_token_length,
        protocol_error_frames=protocol_error_frames,
        allow_tls13=allow_tls13,
        wrong_environment_delay=wrong_environment_delay,
        faults=faults,
        record_path=record_path,
        keep_records=keep_records,
        feedback_chunk_size=feedback_chunk_size,
        handshake_timeout=handshake_timeout,
    )
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(_listen, sim, host, gateway_port, feedback_port)
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
    *,
    task_status: trio.TaskStatus[Simulator] = trio.TASK_STATUS_IGNORED,
    **options: Any,
) -> None:
    """Run the simulator until cancelled; ``nursery.start`` returns the :class:`Simulator`.

    Takes the keyword arguments of :func:`open_simulator`.
    """
    async with open_simulator(**options) as sim:
        task_status.started(sim)
        await trio.sleep_forever()
