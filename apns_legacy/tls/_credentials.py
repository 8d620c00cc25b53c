"""Client/server credentials (certificate, private key, chain), parsed in memory.

Everything is parsed with ``cryptography``. A decrypted key only ever lives in this
process's memory: nothing here writes a file, so there are no temporary files to
leak (stdlib ``ssl`` could only load a chain from a path, bpo-16487, which is one
reason the project uses pyOpenSSL). All checks happen here, at load time: a bad
file, a wrong passphrase, a key that belongs to another certificate or an expired
certificate is reported before any connection is attempted.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TypeAlias

import attrs
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from ._environment import Environment, certificate_environments, certificate_topic
from ._errors import (
    CertificateExpiredError,
    CertificateNotYetValidError,
    KeyMismatchError,
    UnreadableCredentialsError,
    WrongPassphraseError,
)

#: The private key types OpenSSL can use for a TLS certificate.
PrivateKey: TypeAlias = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
    | dsa.DSAPrivateKey
)
_KEY_TYPES = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
    dsa.DSAPrivateKey,
)


def _to_chain(certificates: Iterable[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    return tuple(certificates)


@attrs.frozen
class Credentials:
    """A certificate, its private key and the intermediate certificates to present.

    Build one with :meth:`load`, :meth:`from_pem` or :meth:`from_pkcs12`. The key
    is never shown by ``repr`` and never compared by ``==``.

    Raises:
        KeyMismatchError: if ``private_key`` does not belong to ``certificate``.
    """

    certificate: x509.Certificate
    private_key: PrivateKey = attrs.field(repr=False, eq=False)
    chain: tuple[x509.Certificate, ...] = attrs.field(default=(), converter=_to_chain)

    def __attrs_post_init__(self) -> None:
        if not _same_public_key(self.certificate, self.private_key):
            raise KeyMismatchError(
                f"the private key does not match the certificate {_describe(self.certificate)}"
            )

    @property
    def topic(self) -> str | None:
        """The certificate's subject UID (the app's bundle id), or None."""
        return certificate_topic(self.certificate)

    @property
    def environments(self) -> frozenset[Environment]:
        """The APNs environments the certificate's Apple extensions allow."""
        return certificate_environments(self.certificate)

    @classmethod
    def from_pem(
        cls,
        cert_pem: bytes,
        key_pem: bytes | None = None,
        *,
        passphrase: bytes | None = None,
        allow_expired: bool = False,
    ) -> Credentials:
        """Parse PEM data.

        Args:
            cert_pem: one or more PEM certificates. The one matching the key is the
                leaf; the others become the chain, in file order.
            key_pem: the PEM private key (plain, PKCS#8 encrypted or traditional
                OpenSSL encrypted). None: the key is in ``cert_pem`` (combined file).
            passphrase: for an encrypted key. Ignored for an unencrypted key.
            allow_expired: skip the validity-period check.

        Raises:
            UnreadableCredentialsError: no certificate or no key in the data.
            WrongPassphraseError: encrypted key and no or the wrong passphrase.
            KeyMismatchError: the key matches none of the certificates.
            CertificateExpiredError: notAfter has passed.
            CertificateNotYetValidError: notBefore is in the future.
        """
        return _from_pem(
            cert_pem,
            key_pem,
            passphrase=passphrase,
            allow_expired=allow_expired,
            cert_label="certificate data",
            key_label="key data",
        )

    @classmethod
    def from_pkcs12(
        cls, data: bytes, passphrase: bytes | None = None, *, allow_expired: bool = False
    ) -> Credentials:
        """Parse a PKCS#12 (.p12/.pfx) blob holding the key, certificate and chain.

        Args:
            data: the DER-encoded PKCS#12 file content.
            passphrase: its passphrase. None tries "no passphrase" and then the
                empty passphrase (Keychain exports often use an empty one).
            allow_expired: skip the validity-period check.

        Raises:
            UnreadableCredentialsError: not PKCS#12, or it lacks a key or certificate.
            WrongPassphraseError: no or the wrong passphrase.
            KeyMismatchError: the key does not belong to the certificate.
            CertificateExpiredError: notAfter has passed.
            CertificateNotYetValidError: notBefore is in the future.
        """
        return _from_pkcs12(data, passphrase, allow_expired=allow_expired, label="PKCS#12 data")

    @classmethod
    def load(
        cls,
        cert: str | os.PathLike[str] | bytes,
        key: str | os.PathLike[str] | bytes | None = None,
        *,
        passphrase: bytes | None = None,
        allow_expired: bool = False,
    ) -> Credentials:
        """Load credentials from files (``str``/path) or data (``bytes``).

        The format is detected from the content: PEM (certificate(s), optionally
        with the key), PKCS#12, or a DER certificate (Apple's ``aps.cer``) with a
        separate key.

        Args:
            cert: the certificate (or combined/PKCS#12) file or its content.
            key: the private key file or content, when it is not in ``cert``.
            passphrase: for an encrypted key or PKCS#12 file.
            allow_expired: skip the validity-period check.

        Raises:
            CredentialsError: one of its subclasses, see :meth:`from_pem`.
        """
        cert_data, cert_label = _read(cert, "certificate data")
        key_data, key_label = (None, "key data") if key is None else _read(key, "key data")
        if b"-----BEGIN" in cert_data:
            return _from_pem(
                cert_data,
                key_data,
                passphrase=passphrase,
                allow_expired=allow_expired,
                cert_label=cert_label,
                key_label=key_label,
            )
        if _looks_like_pkcs12(cert_data):
            if key_data is not None:
                raise UnreadableCredentialsError(
                    f"{cert_label} is a PKCS#12 file, which carries its own key; "
                    "do not give a separate key"
                )
            return _from_pkcs12(
                cert_data, passphrase, allow_expired=allow_expired, label=cert_label
            )
        try:
            certificate = x509.load_der_x509_certificate(cert_data)
        except ValueError:
            raise UnreadableCredentialsError(
                f"{cert_label} is neither PEM, PKCS#12 nor a DER certificate"
            ) from None
        if key_data is None:
            raise UnreadableCredentialsError(
                f"{cert_label} is a DER certificate without a key; give the key separately"
            )
        private_key = _parse_key(key_data, passphrase, key_label)
        return _checked(certificate, private_key, (), allow_expired=allow_expired)

    def to_pkcs12(self, passphrase: bytes) -> bytes:
        """Serialize to PKCS#12 in memory, encrypted with ``passphrase`` (b"": none).

        The encryption is cryptography's best available (AES-256, PBKDF2), which
        OpenSSL 1.1.1+ and Python read; very old tools may not.
        """
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase)
            if passphrase
            else serialization.NoEncryption()
        )
        name = (self.topic or "apns-legacy").encode("utf-8")
        return pkcs12.serialize_key_and_certificates(
            name, self.private_key, self.certificate, list(self.chain) or None, encryption
        )


def _read(source: str | os.PathLike[str] | bytes, label: str) -> tuple[bytes, str]:
    """The content and a label for messages (the path, or a generic label)."""
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source), label
    path = os.fspath(source)
    try:
        with open(path, "rb") as file:
            return file.read(), path
    except FileNotFoundError:
        raise UnreadableCredentialsError(f"{path}: no such file") from None
    except OSError as exc:
        raise UnreadableCredentialsError(f"{path}: cannot read ({exc.strerror})") from None


def _looks_like_pkcs12(data: bytes) -> bool:
    """True when ``data`` starts like a DER PFX: SEQUENCE { INTEGER 3, ... } (RFC 7292)."""
    if len(data) < 5 or data[0] != 0x30:
        return False
    first = data[1]
    offset = 2 if first < 0x80 else 2 + (first & 0x7F)
    return data[offset : offset + 3] == b"\x02\x01\x03"


def _from_pem(
    cert_pem: bytes,
    key_pem: bytes | None,
    *,
    passphrase: bytes | None,
    allow_expired: bool,
    cert_label: str,
    key_label: str,
) -> Credentials:
    try:
        certificates = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise UnreadableCredentialsError(f"{cert_label}: no PEM certificate found") from None
    if key_pem is None:
        if b"PRIVATE KEY-----" not in cert_pem:
            raise UnreadableCredentialsError(
                f"{cert_label}: no private key in the file; give the key file separately"
            )
        private_key = _parse_key(cert_pem, passphrase, cert_label)
    else:
        private_key = _parse_key(key_pem, passphrase, key_label)
    for index, certificate in enumerate(certificates):
        if _same_public_key(certificate, private_key):
            chain = tuple(certificates[:index] + certificates[index + 1 :])
            return _checked(certificate, private_key, chain, allow_expired=allow_expired)
    if len(certificates) == 1:
        what = f"the certificate {_describe(certificates[0])}"
    else:
        what = f"any of the {len(certificates)} certificates in {cert_label}"
    raise KeyMismatchError(f"the private key in {key_label} does not match {what}")


def _parse_key(data: bytes, passphrase: bytes | None, label: str) -> PrivateKey:
    is_pem = b"-----BEGIN" in data
    encrypted = is_pem and (
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data or b"Proc-Type: 4,ENCRYPTED" in data
    )
    loader = serialization.load_pem_private_key if is_pem else serialization.load_der_private_key
    try:
        try:
            key = loader(data, passphrase if encrypted or not is_pem else None)
        except TypeError:
            # cryptography raises TypeError for "encrypted but no password" and
            # "password but not encrypted" (the DER case, where we cannot tell).
            if passphrase is None:
                raise WrongPassphraseError(
                    f"{label}: the private key is encrypted and no passphrase was given"
                ) from None
            key = loader(data, None)
    except ValueError:
        if encrypted or (not is_pem and passphrase is not None):
            raise WrongPassphraseError(
                f"{label}: wrong passphrase for the encrypted private key"
            ) from None
        raise UnreadableCredentialsError(f"{label}: no readable private key found") from None
    except UnsupportedAlgorithm as exc:
        raise UnreadableCredentialsError(
            f"{label}: the private key uses an unsupported algorithm ({exc})"
        ) from None
    if not isinstance(key, _KEY_TYPES):
        raise UnreadableCredentialsError(
            f"{label}: a {type(key).__name__} cannot sign; TLS needs an RSA, EC, "
            "Ed25519, Ed448 or DSA key"
        )
    return key


def _from_pkcs12(
    data: bytes, passphrase: bytes | None, *, allow_expired: bool, label: str
) -> Credentials:
    if not _looks_like_pkcs12(data):
        raise UnreadableCredentialsError(f"{label} is not a PKCS#12 file")
    attempts = [passphrase] if passphrase is not None else [None, b""]
    for attempt in attempts:
        try:
            key, certificate, extra = pkcs12.load_key_and_certificates(data, attempt)
            break
        except ValueError:
            continue
        except UnsupportedAlgorithm as exc:
            raise UnreadableCredentialsError(
                f"{label} uses an encryption algorithm this OpenSSL cannot read ({exc})"
            ) from None
    else:
        if passphrase is None:
            raise WrongPassphraseError(f"{label} is encrypted and no passphrase was given")
        raise WrongPassphraseError(f"{label}: wrong passphrase (or the file is damaged)")
    if key is None:
        count = len(extra) + (certificate is not None)
        raise UnreadableCredentialsError(
            f"{label} holds no private key (only {count} certificate(s))"
        )
    if not isinstance(key, _KEY_TYPES):
        raise UnreadableCredentialsError(f"{label}: unsupported key type {type(key).__name__}")
    chain = list(extra)
    if certificate is None:
        # Some exporters do not link the certificate to the key; find it by key.
        matching = [cert for cert in chain if _same_public_key(cert, key)]
        if not matching:
            raise UnreadableCredentialsError(f"{label} holds no certificate for its key")
        certificate = matching[0]
        chain.remove(certificate)
    return _checked(certificate, key, tuple(chain), allow_expired=allow_expired)


def _checked(
    certificate: x509.Certificate,
    private_key: PrivateKey,
    chain: tuple[x509.Certificate, ...],
    *,
    allow_expired: bool,
) -> Credentials:
    credentials = Credentials(certificate, private_key, chain)  # checks the key match
    if not allow_expired:
        check_validity(certificate)
    return credentials


def check_validity(certificate: x509.Certificate, now: datetime | None = None) -> None:
    """Raise if ``certificate`` is outside its validity period at ``now`` (default: now).

    Raises:
        CertificateExpiredError: notAfter has passed.
        CertificateNotYetValidError: notBefore is in the future.
    """
    now = datetime.now(UTC) if now is None else now
    if now > certificate.not_valid_after_utc:
        raise CertificateExpiredError(
            f"the certificate {_describe(certificate)} expired on "
            f"{certificate.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC"
        )
    if now < certificate.not_valid_before_utc:
        raise CertificateNotYetValidError(
            f"the certificate {_describe(certificate)} is not valid before "
            f"{certificate.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC"
        )


def _same_public_key(certificate: x509.Certificate, private_key: PrivateKey) -> bool:
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    try:
        cert_key = certificate.public_key().public_bytes(der, spki)
    except (ValueError, UnsupportedAlgorithm):
        return False
    return cert_key == private_key.public_key().public_bytes(der, spki)


def _describe(certificate: x509.Certificate) -> str:
    """A short name for messages: the quoted subject."""
    return repr(certificate.subject.rfc4514_string())
