"""Reading connection errors: what went wrong, in words, and whether to retry."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import OpenSSL.SSL
import trio

from ..tls import TLSHandshakeError
from ..wire import DeviceToken


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what caused it (``__cause__``, else ``__context__``), and so on."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_tls_refusal(exc: BaseException) -> bool:
    """Whether a connection error came from the TLS layer itself (an alert, a bad
    certificate, a failed verification) rather than from the network."""
    for cause in causes(exc):
        if isinstance(cause, TLSHandshakeError):
            return cause.refused  # the TLS layer has classified it
        if isinstance(cause, OpenSSL.SSL.Error) and not isinstance(
            cause, OpenSSL.SSL.SysCallError | OpenSSL.SSL.ZeroReturnError
        ):
            return True  # a TLS alert after the handshake (TLS 1.3 late refusals)
    return False


def token_bytes(token: object) -> bytes:
    # Tokens that are not plain bytes: DeviceToken, bytearray, memoryview, a bytes
    # subclass. Anything else is a caller's mistake worth a clear message.
    if isinstance(token, DeviceToken):
        return token.value
    if isinstance(token, bytes | bytearray | memoryview):
        return bytes(token)
    raise TypeError(f"a token must be DeviceToken or bytes, not {type(token).__name__}")


def describe_connect_error(exc: BaseException, timeout: float) -> str:
    """Why a connection attempt failed, in a few plain words: refused, timed out, the
    name did not resolve, the TLS handshake was refused (and why), or the OS's words."""
    for cause in causes(exc):
        if isinstance(cause, trio.TooSlowError):
            return f"no answer within {timeout:g} s (connect and TLS handshake)"
        if isinstance(cause, TLSHandshakeError):
            return str(cause)
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return f"the host name did not resolve ({cause.strerror})"
        if isinstance(cause, BaseExceptionGroup):
            inner = [describe_connect_error(e, timeout) for e in cause.exceptions]
            return inner[0] if len(set(inner)) == 1 else "; ".join(inner)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return describe_error(exc)


def describe_error(exc: BaseException) -> str:
    """The error's own words, plus its cause's where they add something."""
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__
    if cause is None:
        return text
    if isinstance(cause, BaseExceptionGroup):
        cause_text = "; ".join(str(inner) for inner in cause.exceptions)
    else:
        cause_text = str(cause)
    if cause_text and cause_text not in text and text not in cause_text:
        text = f"{text} ({cause_text})"
    return text
