"""Certificates for a conformance run: one client identity, three server certificates.

``main`` issues the client certificate and the ordinary server certificate;
``wrong_name`` is a second CA (also in the client's trust bundle) whose server
certificate names only ``wrong.invalid``; ``stranger`` is a CA the client is never
given (``tls.untrusted-server``). Every server requires the client certificate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import attrs
from cryptography.hazmat.primitives.asymmetric import rsa
from OpenSSL import SSL

from ..tls import TestPKI, client_context, make_test_pki, server_context
from ._catalogue import CLIENT_TOPIC
from ._model import ServerCert

#: Passphrase of ``client.p12`` in the certificate folder (also in
#: ``APNS_CONFORM_P12_PASSPHRASE`` for the client's command).
P12_PASSPHRASE: Final = b"apns-legacy-test"
#: Files of the certificate folder handed to the client.
CERT_FILES: Final = ("ca.pem", "client.pem", "client-key.pem", "client.p12")


@attrs.frozen
class ConformPKI:
    main: TestPKI
    wrong_name: TestPKI
    stranger: TestPKI

    def trust_pem(self) -> bytes:
        """The client's trust bundle: the main CA and the wrong-name CA."""
        return self.main.ca_pem() + self.wrong_name.ca_pem()

    def server_contexts(self) -> dict[ServerCert, SSL.Context]:
        ca = self.main.ca_certificate
        return {
            ServerCert.TRUSTED: server_context(self.main.server, client_ca=ca),
            ServerCert.UNTRUSTED: server_context(self.stranger.server, client_ca=ca),
            ServerCert.WRONG_NAME: server_context(self.wrong_name.server, client_ca=ca),
        }

    def client_context(self) -> SSL.Context:
        """A correct client's context: our certificate, the trust bundle."""
        return client_context(self.main.client, ca=self.trust_pem())

    def write_certs(self, folder: Path) -> Path:
        """Write ``ca.pem``, ``client.pem``, ``client-key.pem``, ``client.p12`` to ``folder``."""
        written = self.main.write(folder, p12_passphrase=P12_PASSPHRASE)
        written["ca.pem"].write_bytes(self.trust_pem())
        for name, path in written.items():
            if name.startswith("server"):
                path.unlink()
        return folder


def make_conform_pki() -> ConformPKI:
    main = make_test_pki(topic=CLIENT_TOPIC)
    # Apple's push certificates had RSA 2048 keys, and some clients parse nothing else
    # (node-apn 1.x reads the key with node-forge, which knows only RSA).
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    main = attrs.evolve(main, client=main.issue_client(topic=CLIENT_TOPIC, key=rsa_key))
    return ConformPKI(
        main=main,
        wrong_name=make_test_pki(topic=CLIENT_TOPIC, server_names=("wrong.invalid",)),
        stranger=make_test_pki(topic=CLIENT_TOPIC),
    )
