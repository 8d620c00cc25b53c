"""Serving the web service: Hypercorn's trio worker in front of :class:`WalletService`.

Hypercorn speaks HTTP/1.1 and HTTP/2 and runs on trio natively, so the web service
shares the event loop, the structured concurrency and the cancellation rules of the
rest of the project; no HTTP parsing is written here.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import attrs
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from ._store import PassStore
from ._tls import WebTLS
from ._web import WalletService


@attrs.frozen
class WalletServer:
    """A running web service: where it listens, and the service behind it."""

    service: WalletService
    #: ``(host, port)`` it listens on (the real port when 0 was asked for).
    address: tuple[str, int]
    #: HTTPS (True) or plain HTTP.
    tls: bool = False

    @property
    def url(self) -> str:
        """The base URL to put in a pass's ``webServiceURL`` (without ``/v1``)."""
        host, port = self.address
        host = f"[{host}]" if ":" in host else host
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host}:{port}{self.service.base_path}/"


def _bound_socket(host: str, port: int) -> int:
    """Bind a TCP socket and hand over its file descriptor (Hypercorn's ``fd://`` bind).

    Binding here rather than in Hypercorn gives the caller a plain ``OSError`` for a
    port in use or an unknown address, and leaves no half-made socket behind.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock.detach()


@asynccontextmanager
async def open_wallet_server(
    store: PassStore,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    base_path: str = "",
    graceful_timeout: float = 5.0,
    tls: WebTLS | None = None,
) -> AsyncIterator[WalletServer]:
    """Serve the PassKit web service on ``host:port`` for the ``async with`` block.

    HTTPS with ``tls``, else plain HTTP: Apple requires HTTPS in production (Wallet
    accepts HTTP only with the developer setting "Allow HTTP Services"); ``tls`` or a
    TLS-terminating proxy in front provides it.

    Args:
        store: the passes and registrations.
        host: the address to listen on (default loopback).
        port: 0 picks a free port; read it from ``WalletServer.address``.
        base_path: the path part of the passes' ``webServiceURL``.
        graceful_timeout: seconds requests in progress get to finish on exit.
        tls: the certificate chain and key to serve HTTPS with.

    Raises:
        OSError: the address cannot be bound (port in use, unknown host).
    """
    config = Config()
    config.bind = [f"fd://{_bound_socket(host, port)}"]
    config.accesslog = logging.getLogger("apns_legacy.wallet.access")
    config.errorlog = logging.getLogger("apns_legacy.wallet.http")
    config.graceful_timeout = graceful_timeout
    config.include_server_header = False
    if tls is not None:
        config.certfile = str(tls.cert)
        config.keyfile = str(tls.key)
        config.keyfile_password = tls.passphrase
    service = WalletService(store, base_path=base_path)
    stop = trio.Event()
    try:
        async with trio.open_nursery() as nursery:
            # Starlette's and Hypercorn's ASGI type hints describe the same protocol with
            # different classes; the app is a valid ASGI 3 application.
            app: Any = service.app

            async def run(*, task_status: trio.TaskStatus[list[str]]) -> None:
                await serve(app, config, shutdown_trigger=stop.wait, task_status=task_status)

            binds: list[str] = await nursery.start(run)
            parts = urlsplit(binds[0])
            assert parts.hostname is not None
            assert parts.port is not None
            try:
                yield WalletServer(service, (parts.hostname, parts.port), tls is not None)
            finally:
                stop.set()
    except BaseExceptionGroup as group:
        # The server task ends quietly on stop, so a group holds what the body raised:
        # give it back unwrapped, as if no nursery were here.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
