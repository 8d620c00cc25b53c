"""The feedback client: connect to port 2196, read every tuple until the server closes.

docs/PROTOCOL.md section 8: the service starts writing as soon as the TLS handshake is
done (no command is sent), writes each ``timestamp | length | token`` tuple for the
certificate's topic, and closes. The list is cleared once read, so what this
returns is the only copy: callers should record it (print it, apply it to a store)
before anything else can go wrong.

End of stream: a TLS close_notify, or a plain TCP close on a tuple boundary (older
servers and middleboxes close without close_notify; the tuples already decrypted
are authentic, so they are kept, with a warning). A close in the middle of a tuple
is a broken stream: :class:`FeedbackError`, and nothing is returned, so that
nothing half-read is ever applied.
"""

from __future__ import annotations

import logging

import OpenSSL.SSL
import trio

from ..tls import RECEIVE_SIZE, open_tls_stream
from ..wire import NEED_DATA, ConnectionClosed, FeedbackDecoder, FeedbackItem, RemoteProtocolError
from ._config import PRODUCTION_FEEDBACK

logger = logging.getLogger("apns_legacy.feedback")


class FeedbackError(Exception):
    """Reading the feedback service failed; nothing that was read may be applied.

    ``__cause__`` is the underlying error (a :class:`RemoteProtocolError` for a
    truncated or malformed tuple, an ``OSError`` or TLS error for the connection,
    :class:`trio.TooSlowError` for the deadline).
    """


async def read_feedback_stream(stream: trio.abc.ReceiveStream) -> list[FeedbackItem]:
    """Read feedback tuples from an open stream until the peer closes it.

    Tuples may arrive split across reads in any way. Does not close ``stream`` and
    sets no deadline (wrap it in ``trio.fail_after`` for one).

    Args:
        stream: the decrypted connection (a :class:`~apns_legacy.tls.TLSStream`, or
            any trio stream in tests).

    Returns:
        The tuples in the order the server wrote them (possibly none).

    Raises:
        RemoteProtocolError: the stream ended inside a tuple, or a tuple's token
            length is 0 or over 100.
        trio.BrokenResourceError: the connection broke in the middle of a tuple.
    """
    decoder = FeedbackDecoder()
    items: list[FeedbackItem] = []
    while True:
        event = decoder.next_event()
        if isinstance(event, FeedbackItem):
            items.append(event)
            continue
        if isinstance(event, ConnectionClosed):
            return items
        assert event is NEED_DATA
        try:
            data = await stream.receive_some(RECEIVE_SIZE)
        except trio.BrokenResourceError:
            if decoder.buffered:
                raise
            # A close without close_notify, on a tuple boundary: see the module docstring.
            logger.warning(
                "feedback service closed without TLS close_notify after %d tuples; "
                "treating it as the end of the list",
                len(items),
            )
            return items
        if data:
            decoder.receive_data(data)
        else:
            decoder.receive_eof()


async def read_feedback(
    context: OpenSSL.SSL.Context,
    *,
    host: str = PRODUCTION_FEEDBACK[0],
    port: int = PRODUCTION_FEEDBACK[1],
    server_hostname: str | None = None,
    timeout: float = 60.0,  # noqa: ASYNC109 - the whole job has one deadline, like a CLI flag
) -> list[FeedbackItem]:
    """Connect to a feedback service and return every tuple it lists.

    Use the same client certificate as for the gateway (one list per topic). An
    empty list is a normal answer. Reading is destructive on Apple's side: record
    the result before doing anything that may fail.

    Args:
        context: a client TLS context, from :func:`apns_legacy.client_context`.
        host, port: the feedback service (default Apple's production one;
            :data:`SANDBOX_FEEDBACK` for the sandbox).
        server_hostname: the name to verify the server certificate against
            (default ``host``).
        timeout: seconds allowed for everything: connecting, the handshake and
            reading to the end.

    Returns:
        The tuples in server order; ``item.time`` is a timezone-aware UTC datetime.

    Raises:
        FeedbackError: could not connect, the handshake failed, the stream was
            truncated or malformed, or ``timeout`` passed. Nothing is returned
            then, not even the tuples read before the problem.

    Example::

        items = await read_feedback(client_context(creds), host="127.0.0.1", port=2196)
        for item in items:
            print(item.token.hex(), item.time.isoformat())
    """
    where = f"{host}:{port}"
    try:
        with trio.fail_after(timeout):
            stream = await open_tls_stream(
                host, port, context, server_hostname=server_hostname, handshake_timeout=timeout
            )
            try:
                items = await read_feedback_stream(stream)
            finally:
                await trio.aclose_forcefully(stream)
    except trio.TooSlowError as exc:
        raise FeedbackError(
            f"feedback service {where}: no end of the list within {timeout:g} s"
        ) from exc
    except RemoteProtocolError as exc:
        raise FeedbackError(
            f"feedback service {where}: {exc}; the list read so far is dropped"
        ) from exc
    except (OSError, trio.BrokenResourceError) as exc:
        raise FeedbackError(f"feedback service {where}: {_describe(exc)}") from exc
    logger.info("feedback service %s listed %d tokens", where, len(items))
    return items


def _connect_failure(exc: OSError) -> str | None:
    """``"connection refused"`` / ``"timed out"`` / the OS's words for a failed TCP
    connect (trio reports it as "all attempts to connect ... failed", with the reasons
    in a group in ``__cause__``); None if ``exc`` is not a connect failure."""
    errors: list[BaseException] = [exc]
    if isinstance(exc.__cause__, BaseExceptionGroup):
        errors = list(exc.__cause__.exceptions)
    elif not str(exc).startswith("all attempts to connect"):
        if isinstance(exc, ConnectionRefusedError | TimeoutError):
            errors = [exc]
        else:
            return None
    reasons: list[str] = []
    for error in errors:
        if isinstance(error, ConnectionRefusedError):
            reason = "connection refused (nothing listens on that port?)"
        elif isinstance(error, TimeoutError):
            reason = "connecting timed out"
        elif isinstance(error, OSError) and error.strerror:
            reason = f"cannot connect: {error.strerror}"
        else:
            reason = f"cannot connect: {error}"
        if reason not in reasons:
            reasons.append(reason)
    return "; ".join(reasons)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and (connect := _connect_failure(exc)) is not None:
        return connect
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text} ({cause})"
    return text
