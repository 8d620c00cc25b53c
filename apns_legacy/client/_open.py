"""``open_sender``: the sender as an async context manager that owns its nursery."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import OpenSSL.SSL
import sniffio
import trio

from ._config import PRODUCTION_GATEWAY, SenderConfig
from ._ledger import OutcomeCallback
from ._sender import Connector, Sender


@asynccontextmanager
async def open_sender(
    context: OpenSSL.SSL.Context | None = None,
    *,
    host: str = PRODUCTION_GATEWAY[0],
    port: int = PRODUCTION_GATEWAY[1],
    server_hostname: str | None = None,
    config: SenderConfig | None = None,
    on_outcome: OutcomeCallback | None = None,
    connect: Connector | None = None,
) -> AsyncIterator[Sender]:
    """Open a sender to a gateway; on exit, settle everything and close.

    Args:
        context: a client TLS context, from :func:`apns_legacy.client_context`.
        host, port: the gateway (default Apple's production gateway).
        server_hostname: the name to verify the server certificate against (default host).
        config: a :class:`SenderConfig`; the defaults suit Apple's gateway.
        on_outcome: called with each :class:`Outcome` as it happens; without it,
            iterate :meth:`Sender.outcomes` (and call :meth:`Sender.finish` when
            done submitting, so that the iteration ends).
        connect: open a connection yourself instead (for tests and relays); then
            ``context``, ``host`` and ``port`` are not used.

    Raises:
        TypeError: neither ``context`` nor ``connect`` was given.
        RuntimeError: not running under trio (use :func:`send_all` from other code,
            or run trio in a thread).

    Example::

        async with open_sender(ctx, host="127.0.0.1", port=2195) as sender:
            await sender.submit(Notification(token=token, payload=payload))
            await sender.flush()
        print(sender.stats)
    """
    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        library = "no async library"
    if library != "trio":
        raise RuntimeError(
            f"open_sender needs trio, but this is running under {library}; from other "
            "code use apns_legacy.send_all (synchronous), or run trio in a thread"
        )
    config = config or SenderConfig()
    if connect is None:
        if context is None:
            raise TypeError("open_sender needs a TLS context (or a connect function)")
        from ..tls import TLSSessionCache, open_tls_stream

        tls_context = context
        # Every connection after the first offers the session of an earlier one, so
        # reconnects (after each rejection, and spares) skip the certificate exchange.
        sessions = TLSSessionCache() if config.resume_tls_sessions else None

        async def connect() -> trio.abc.Stream:
            return await open_tls_stream(
                host,
                port,
                tls_context,
                server_hostname=server_hostname,
                handshake_timeout=config.connect_timeout,
                sessions=sessions,
            )

    # The caller's own exception (or Ctrl-C, or a cancellation) is re-raised as it is,
    # not wrapped in the nursery's ExceptionGroup.
    body_error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        sender = Sender(connect, config, on_outcome, f"{host}:{port}")
        await nursery.start(sender._run)
        try:
            yield sender
        except BaseException as exc:
            # Leaving by an error: do not wait on the gateway; whatever is unsettled
            # ends failed, so every notification still gets its outcome.
            body_error = exc
            with trio.CancelScope(shield=True):
                await sender.aclose(graceful=False)
        else:
            with trio.CancelScope(shield=True):
                await sender.aclose()
    if body_error is not None:
        raise body_error
