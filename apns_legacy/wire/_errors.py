"""Errors, named after who broke the protocol (the h11 convention).

* :class:`LocalProtocolError`: *we* tried something the protocol does not allow
  (a token of the wrong size, a payload over the limit, a value that does not fit
  its field). Raised before any byte is produced.
* :class:`RemoteProtocolError`: the *peer* sent bytes that cannot be parsed
  (an unknown command byte from the gateway, a truncated feedback tuple at EOF).

Any other exception escaping the wire layer is a bug; the fuzz harnesses in
``fuzz/`` check exactly that.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base class; never raised itself. Catch this to catch both kinds."""

    def __init__(self, message: str) -> None:
        if type(self) is ProtocolError:
            raise TypeError(
                "ProtocolError is abstract: raise LocalProtocolError or RemoteProtocolError"
            )
        super().__init__(message)


class LocalProtocolError(ProtocolError, ValueError):
    """What we were asked to send (or do) breaks the protocol or a configured limit."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that break the protocol."""
