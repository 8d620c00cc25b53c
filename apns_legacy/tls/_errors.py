"""Errors of the TLS layer.

Credential errors are raised at load time, before any connection is made. Their
messages name the file or the problem, never key material or a passphrase.
"""

from __future__ import annotations

import trio


class CredentialsError(Exception):
    """Base class: the certificate/key cannot be used."""


class UnreadableCredentialsError(CredentialsError):
    """A file is missing or its content is neither PEM nor PKCS#12 (or lacks a part)."""


class WrongPassphraseError(CredentialsError):
    """The key (or PKCS#12 file) is encrypted and the passphrase is missing or wrong."""


class KeyMismatchError(CredentialsError):
    """The private key does not belong to the certificate."""


class CertificateExpiredError(CredentialsError):
    """The certificate's notAfter is in the past."""


class CertificateNotYetValidError(CredentialsError):
    """The certificate's notBefore is in the future."""


class TLSHandshakeError(trio.BrokenResourceError):
    """The TLS handshake failed: untrusted or rejected certificate, host name mismatch,
    no common protocol version, the peer closed the connection, or a timeout.

    The message says which; ``__cause__`` holds the underlying OpenSSL error.
    ``refused`` says whether TLS itself refused the session (a certificate, a protocol
    version, a host name: trying again will not help) rather than the connection
    breaking or timing out on the way.
    """

    def __init__(self, *args: object, refused: bool = True) -> None:
        super().__init__(*args)
        self.refused = refused
