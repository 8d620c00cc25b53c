"""HTTPS settings for the web service (no Hypercorn import: the configuration checks them)."""

from __future__ import annotations

import ssl
from pathlib import Path

import attrs


@attrs.frozen(kw_only=True)
class WebTLS:
    """HTTPS for the web service: a PEM certificate chain and key, read where they are.

    Hypercorn's TLS is the standard library's ``ssl``, which loads keys from files: the
    issuer's own files are given as they are (an encrypted key stays encrypted on disk,
    ``passphrase`` unlocks it in memory); nothing is written.
    """

    cert: Path
    key: Path
    passphrase: str | None = attrs.field(default=None, repr=False)

    def context(self) -> ssl.SSLContext:
        """A server context with these files (what Hypercorn will build), to check them.

        Raises:
            OSError, ssl.SSLError: unreadable files, not PEM, or a key that does not
                match the certificate or its passphrase.
        """
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key, password=self.passphrase or None)
        return context
