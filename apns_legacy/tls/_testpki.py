"""A throwaway PKI for tests, the simulator and the demo.

One CA issues a server certificate for the loopback names and client
certificates shaped like Apple's push certificates: subject UID = topic, a
"Apple ... Push Services: <topic>" common name, a team-id OU, the environment
extensions (1.2.840.113635.100.6.3.1 / .2), optionally the topics extension (.3.6)
and the Pass Type ID marker (.6.1.16). It can also issue one level of intermediate
CA (like Apple's WWDR certificate, which issues Pass Type ID certificates) and
client certificates under it. The CA is not Apple's and says so in its name. All
keys are EC P-256 (fast to make).

Why not ``trustme``: it makes a fine CA and server certificate, but its
``issue_cert`` takes identities and names only, with no way to add the extensions
that make a certificate a push certificate (the subject UID, the environment and
topics OIDs, the Pass Type ID marker) or to issue from an intermediate; those are
what the tests here exist for. Building all of them with ``cryptography`` in one
place keeps one code path (the project's test suite uses trustme as an independent
check of the TLS layer instead).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar, Final

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ._context import read_pem_certificates
from ._credentials import Credentials, PrivateKey
from ._environment import (
    ALL_ENVIRONMENTS,
    PASS_TYPE_OID,
    TOPICS_OID,
    UID_OID,
    Environment,
)

#: The file names :meth:`TestPKI.write` creates (and :meth:`TestPKI.load` reads).
PKI_FILES: Final = (
    "ca.pem",
    "server.pem",
    "server-key.pem",
    "client.pem",
    "client-key.pem",
    "client.p12",
)
_TEAM_ID: Final = "ABCDE12345"
_ORGANIZATION: Final = "Example Developer"
_DER_NULL: Final = b"\x05\x00"


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _der(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(body)) + body


def encode_topics_extension(topics: Iterable[tuple[str, Sequence[str]]]) -> bytes:
    """DER for the 1.2.840.113635.100.6.3.6 value, in the layout Apple uses:
    SEQUENCE { UTF8String topic, SEQUENCE { UTF8String kind... }, ... }.
    """
    body = b""
    for topic, kinds in topics:
        body += _der(0x0C, topic.encode("utf-8"))
        body += _der(0x30, b"".join(_der(0x0C, kind.encode("utf-8")) for kind in kinds))
    return _der(0x30, body)


def _common_name(topic: str, environments: frozenset[Environment], pass_type: bool) -> str:
    if pass_type:
        return f"Pass Type ID: {topic}"
    if environments == {Environment.SANDBOX}:
        return f"Apple Development IOS Push Services: {topic}"
    if environments == {Environment.PRODUCTION}:
        return f"Apple Production IOS Push Services: {topic}"
    return f"Apple Push Services: {topic}"


@attrs.frozen
class TestPKI:
    """A CA plus server and client credentials issued by it.

    ``ca_key`` is None for a PKI read back with :meth:`load` (the CA key is not
    written to disk), in which case :meth:`issue_client` is unavailable.
    """

    __test__: ClassVar[bool] = False  # not a pytest test class

    ca_certificate: x509.Certificate
    ca_key: PrivateKey | None = attrs.field(repr=False, eq=False)
    server: Credentials
    client: Credentials

    def ca_pem(self) -> bytes:
        """The CA certificate as PEM (trust anchor for both sides)."""
        return self.ca_certificate.public_bytes(serialization.Encoding.PEM)

    def issue_client(
        self,
        *,
        topic: str = "com.example.app",
        environments: Iterable[Environment] = ALL_ENVIRONMENTS,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        pass_type: bool = False,
        topics_extension: bool | None = None,
        issuer: Credentials | None = None,
        key: PrivateKey | None = None,
    ) -> Credentials:
        """Issue a client certificate that looks like an Apple push certificate.

        Args:
            topic: the bundle id, stored as subject UID and in the CN.
            environments: (any iterable) which of the .6.3.1 (sandbox) / .6.3.2 (production)
                extensions to include; both makes a universal certificate.
            not_before: start of validity (default: one hour ago).
            not_after: end of validity (default: one year from now).
            pass_type: a "Pass Type ID" certificate with the .6.1.16 marker.
            topics_extension: include the .6.3.6 topic list (``topic``,
                ``topic.voip``, ``topic.complication``); default: for universal
                certificates only, as Apple does.
            issuer: an intermediate CA from :meth:`issue_intermediate` to sign with
                instead of the root; it becomes the credentials' ``chain``.
            key: the certificate's private key (default: a new EC P-256 key; Apple's
                were RSA 2048, which clients that parse only RSA need).

        Returns:
            The credentials; expired or future ones load only with allow_expired.
        """
        if issuer is None and self.ca_key is None:
            raise ValueError("this TestPKI was loaded from files without the CA key")
        environments = frozenset(environments)
        now = datetime.now(UTC)
        not_before = now - timedelta(hours=1) if not_before is None else not_before
        not_after = now + timedelta(days=365) if not_after is None else not_after
        key = _new_key() if key is None else key
        subject = x509.Name(
            [
                x509.NameAttribute(UID_OID, topic),
                x509.NameAttribute(
                    NameOID.COMMON_NAME, _common_name(topic, environments, pass_type)
                ),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, _TEAM_ID),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANIZATION),
                x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            ]
        )
        issuer_certificate = self.ca_certificate if issuer is None else issuer.certificate
        builder = _leaf_builder(subject, key, issuer_certificate, not_before, not_after)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        for environment in sorted(environments, key=lambda env: env.value):
            builder = builder.add_extension(
                x509.UnrecognizedExtension(environment.oid, _DER_NULL), critical=False
            )
        if topics_extension is None:
            topics_extension = environments == ALL_ENVIRONMENTS and not pass_type
        if topics_extension:
            value = encode_topics_extension(
                [
                    (topic, ["app"]),
                    (f"{topic}.voip", ["voip"]),
                    (f"{topic}.complication", ["complication"]),
                ]
            )
            builder = builder.add_extension(
                x509.UnrecognizedExtension(TOPICS_OID, value), critical=False
            )
        if pass_type:
            builder = builder.add_extension(
                x509.UnrecognizedExtension(PASS_TYPE_OID, _DER_NULL), critical=False
            )
        if issuer is None:
            assert self.ca_key is not None
            return Credentials(builder.sign(self.ca_key, hashes.SHA256()), key)
        certificate = builder.sign(issuer.private_key, hashes.SHA256())
        return Credentials(certificate, key, (issuer.certificate,))

    def issue_intermediate(
        self,
        common_name: str = "Worldwide Developer Relations CA (apns-legacy test, not Apple)",
    ) -> Credentials:
        """Issue an intermediate CA under the root, shaped like Apple's WWDR certificate.

        Give it to :meth:`issue_client` as ``issuer``; its certificate is what a pass
        signature carries and what a TLS client sends as its chain.

        Returns:
            The intermediate's certificate and key (``chain`` empty).
        """
        if self.ca_key is None:
            raise ValueError("this TestPKI was loaded from files without the CA key")
        key = _new_key()
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "G4"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "apns-legacy"),
            ]
        )
        now = datetime.now(UTC)
        certificate = (
            _ca_builder(name, key, now - timedelta(days=1), now + timedelta(days=1825), 0)
            .issuer_name(self.ca_certificate.subject)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                    self.ca_certificate.extensions.get_extension_for_class(
                        x509.SubjectKeyIdentifier
                    ).value
                ),
                critical=False,
            )
            .sign(self.ca_key, hashes.SHA256())
        )
        return Credentials(certificate, key)

    def write(self, directory: str | os.PathLike[str], *, p12_passphrase: bytes) -> dict[str, Path]:
        """Write the PKI as the files in :data:`PKI_FILES` (keys unencrypted).

        These are throwaway test files; key files get mode 0600.

        Returns:
            File name (e.g. ``"client.p12"``) to its path.
        """
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        contents = {
            "ca.pem": self.ca_pem(),
            "server.pem": _chain_pem(self.server),
            "server-key.pem": _key_pem(self.server.private_key),
            "client.pem": _chain_pem(self.client),
            "client-key.pem": _key_pem(self.client.private_key),
            "client.p12": self.client.to_pkcs12(p12_passphrase),
        }
        paths: dict[str, Path] = {}
        for name, data in contents.items():
            path = folder / name
            secret = name.endswith(("-key.pem", ".p12"))
            # Create key files private from the start (no window at 0644).
            descriptor = os.open(
                path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644
            )
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
            if secret:
                path.chmod(0o600)
            paths[name] = path
        return paths

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> TestPKI:
        """Read a directory written by :meth:`write` (the CA key is not there).

        Raises:
            CredentialsError: a file is missing, unreadable or expired.
        """
        folder = Path(directory)
        server = Credentials.load(folder / "server.pem", folder / "server-key.pem")
        client = Credentials.load(folder / "client.pem", folder / "client-key.pem")
        authorities = read_pem_certificates(folder / "ca.pem", "CA certificate")
        return cls(authorities[0], None, server, client)


def _chain_pem(credentials: Credentials) -> bytes:
    pem = serialization.Encoding.PEM
    return b"".join(
        cert.public_bytes(pem) for cert in (credentials.certificate, *credentials.chain)
    )


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _leaf_builder(
    subject: x509.Name,
    key: PrivateKey,
    issuer: x509.Certificate,
    not_before: datetime,
    not_after: datetime,
) -> x509.CertificateBuilder:
    issuer_key_id = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
        issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    )
    return (
        _builder(subject, key, not_before, not_after, ca_path_length=None)
        .issuer_name(issuer.subject)
        .add_extension(issuer_key_id, critical=False)
    )


def _ca_builder(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    not_before: datetime,
    not_after: datetime,
    path_length: int,
) -> x509.CertificateBuilder:
    """A CA certificate builder without its issuer (set it, then sign)."""
    return _builder(subject, key, not_before, not_after, ca_path_length=path_length)


def _builder(
    subject: x509.Name,
    key: PrivateKey,
    not_before: datetime,
    not_after: datetime,
    *,
    ca_path_length: int | None,
) -> x509.CertificateBuilder:
    # What a CA and a leaf certificate share; a CA (ca_path_length given) may sign
    # certificates and CRLs, a leaf only signs (the TLS handshake).
    ca = ca_path_length is not None
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=ca_path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def make_test_pki(
    *,
    topic: str = "com.example.app",
    environments: Iterable[Environment] = ALL_ENVIRONMENTS,
    server_names: Sequence[str] = ("localhost", "127.0.0.1", "::1"),
) -> TestPKI:
    """Create a CA, a server certificate for ``server_names`` and one client certificate.

    Args:
        topic: the client certificate's topic (subject UID).
        environments: the client certificate's environments.
        server_names: host names and IP addresses for the server certificate's
            subject alternative names (the first is also its CN).

    Returns:
        The new PKI (everything in memory).
    """
    now = datetime.now(UTC)
    ca_key = _new_key()
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "apns-legacy"),
            # A unique name per PKI: two test CAs must not look like one to OpenSSL.
            x509.NameAttribute(
                NameOID.COMMON_NAME, f"apns-legacy test CA {os.urandom(4).hex()} (not Apple)"
            ),
        ]
    )
    # path_length 1: one level of intermediate (issue_intermediate) is allowed.
    ca_certificate = (
        _ca_builder(ca_name, ca_key, now - timedelta(days=1), now + timedelta(days=3650), 1)
        .issuer_name(ca_name)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = _new_key()
    alt_names: list[x509.GeneralName] = []
    for name in server_names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt_names.append(x509.DNSName(name))
    server_subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, server_names[0])])
    server_certificate = (
        _leaf_builder(
            server_subject,
            server_key,
            ca_certificate,
            now - timedelta(days=1),
            now + timedelta(days=825),
        )
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server = Credentials(server_certificate, server_key)
    partial = TestPKI(ca_certificate, ca_key, server, server)
    client = partial.issue_client(topic=topic, environments=environments)
    return attrs.evolve(partial, client=client)
