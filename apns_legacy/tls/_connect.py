"""open_tls_stream: TCP connect plus TLS handshake under one deadline, resuming sessions."""

from __future__ import annotations

import trio
from OpenSSL import SSL

from ._errors import TLSHandshakeError
from ._stream import TLSStream


class TLSSessionCache:
    """The latest resumable TLS session per server, offered on the next connection.

    One cache belongs with one client context (a session carries the verification
    done under that context's trust settings; offering it under another would skip
    that check), so entries are keyed by the context object as well as by host, port
    and server name. A handshake that fails after offering a session drops it.
    Holds one session per server; nothing is written anywhere.
    """

    def __init__(self) -> None:
        self._sessions: dict[tuple[SSL.Context, str, int, str | None], SSL.Session] = {}
        #: Handshakes that offered a session, and those the server resumed.
        self.offered = 0
        self.resumed = 0

    def get(
        self, context: SSL.Context, host: str, port: int, server_hostname: str | None
    ) -> SSL.Session | None:
        return self._sessions.get((context, host, port, server_hostname))

    def put(
        self,
        context: SSL.Context,
        host: str,
        port: int,
        server_hostname: str | None,
        session: SSL.Session,
    ) -> None:
        self._sessions[(context, host, port, server_hostname)] = session

    def forget(
        self, context: SSL.Context, host: str, port: int, server_hostname: str | None
    ) -> None:
        self._sessions.pop((context, host, port, server_hostname), None)


async def open_tls_stream(
    host: str,
    port: int,
    context: SSL.Context,
    *,
    server_hostname: str | None = None,
    handshake_timeout: float = 10.0,
    sessions: TLSSessionCache | None = None,
) -> TLSStream:
    """Connect over TCP and complete a TLS handshake as the client.

    Args:
        host: name or address to connect to.
        port: TCP port.
        context: from :func:`client_context`.
        server_hostname: name for SNI and the certificate check (default: ``host``).
        handshake_timeout: seconds allowed for connecting and the handshake together.
        sessions: offer the session this cache holds for the server (TLS session
            resumption: no certificate exchange, and one round trip less in TLS
            1.2), and keep the connection's new session in it for the next time.

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
    session = None
    on_session = None
    if sessions is not None:
        cache = sessions
        session = cache.get(context, host, port, server_hostname)

        def on_session(new: SSL.Session) -> None:
            cache.put(context, host, port, server_hostname, new)

    stream = TLSStream(
        transport,
        context,
        server_side=False,
        server_hostname=server_hostname,
        session=session,
        on_session=on_session,
    )
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
        if sessions is not None and session is not None:
            sessions.forget(context, host, port, server_hostname)
        raise TLSHandshakeError(f"{host}:{port}: {exc}", refused=exc.refused) from exc.__cause__
    except BaseException:
        await trio.aclose_forcefully(transport)
        raise
    if sessions is not None and session is not None:
        sessions.offered += 1
        sessions.resumed += stream.session_reused
    return stream
