"""open_tls_stream: TCP connect plus TLS handshake under one deadline."""

from __future__ import annotations

import trio
from OpenSSL import SSL

from ._errors import TLSHandshakeError
from ._stream import TLSStream


async def open_tls_stream(
    host: str,
    port: int,
    context: SSL.Context,
    *,
    server_hostname: str | None = None,
    handshake_timeout: float = 10.0,
) -> TLSStream:
    """Connect over TCP and complete a TLS handshake as the client.

    Args:
        host: name or address to connect to.
        port: TCP port.
        context: from :func:`client_context`.
        server_hostname: name for SNI and the certificate check (default: ``host``).
        handshake_timeout: seconds allowed for connecting and the handshake together.

    Returns:
        A stream whose handshake has completed.

    Raises:
        OSError: the TCP connection failed (``TimeoutError`` when it took too long).
        TLSHandshakeError: the handshake failed or timed out; the message names
            ``host:port`` and the reason.
    """
    if server_hostname is None:
        server_hostname = host
    deadline = trio.current_time() + handshake_timeout
    with trio.move_on_at(deadline) as connect_scope:
        transport = await trio.open_tcp_stream(host, port)
    if connect_scope.cancelled_caught:
        raise TimeoutError(f"connecting to {host}:{port} took longer than {handshake_timeout} s")
    stream = TLSStream(transport, context, server_side=False, server_hostname=server_hostname)
    try:
        with trio.fail_at(deadline):
            await stream.do_handshake()
    except trio.TooSlowError:
        await trio.aclose_forcefully(transport)
        raise TLSHandshakeError(
            f"{host}:{port}: TLS handshake timed out after {handshake_timeout} s", refused=False
        ) from None
    except TLSHandshakeError as exc:
        await trio.aclose_forcefully(transport)
        raise TLSHandshakeError(f"{host}:{port}: {exc}", refused=exc.refused) from exc.__cause__
    except BaseException:
        await trio.aclose_forcefully(transport)
        raise
    return stream
