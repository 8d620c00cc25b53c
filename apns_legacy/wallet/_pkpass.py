"""Building and signing a Wallet pass (``.pkpass``), without any network.

A ``.pkpass`` is a zip archive with, at its top level (Apple, "Building a Pass" /
"Pass Design and Creation"):

* ``pass.json`` and the images (``icon.png`` is required) and any localization
  folders (``en.lproj/pass.strings``, ``en.lproj/logo.png``, ...);
* ``manifest.json``: a JSON object mapping every other file's path (``/``-separated,
  relative to the top) to the SHA-1 hex digest of its bytes;
* ``signature``: a detached PKCS#7 (CMS) signature over the bytes of
  ``manifest.json``, DER-encoded, signed with the Pass Type ID certificate's key and
  carrying Apple's WWDR intermediate certificate, so that Wallet can build the chain
  to Apple's root.

The signature is made with ``cryptography``'s ``PKCS7SignatureBuilder`` (options
``Binary``: the manifest is signed byte for byte, no MIME canonicalisation; and
``DetachedSignature``: the manifest is not embedded). Its signed attributes include
the signing time, which Wallet requires. The digest is SHA-256.

Everything happens in memory: the key comes from :class:`~apns_legacy.tls.Credentials`
and is never written anywhere.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

from ..tls import PASS_TYPE_OID, Credentials, certificate_topic

#: The media type Wallet expects for a pass.
PKPASS_MEDIA_TYPE: Final = "application/vnd.apple.pkpass"
#: Files the builder writes itself; copies in a pass directory are ignored.
GENERATED_FILES: Final = frozenset({"manifest.json", "signature"})
#: Apple: "The authentication token must be 16 characters or longer."
MIN_AUTH_TOKEN_LENGTH: Final = 16
# Keys Apple lists as required at the top level of pass.json, with their JSON type.
_REQUIRED_STRINGS: Final = (
    "passTypeIdentifier",
    "serialNumber",
    "teamIdentifier",
    "organizationName",
    "description",
)
# A fixed timestamp for zip entries: the same pass directory gives the same archive
# (apart from the signature, whose signing time changes).
_ZIP_TIME: Final = (1980, 1, 1, 0, 0, 0)


class PassError(ValueError):
    """A pass directory, ``pass.json`` or a signing certificate cannot be used.

    The message is one line naming the file or field and what is wrong.
    """


@attrs.frozen(kw_only=True)
class PassSource:
    """The contents of a pass directory, checked: ``pass.json`` and every other file.

    Build one with :func:`read_pass_directory` (or :meth:`from_files` for files in
    memory). ``files`` maps each ``/``-separated relative path to its bytes, in
    sorted order, ``pass.json`` included.
    """

    files: Mapping[str, bytes] = attrs.field(repr=False)
    pass_json: Mapping[str, Any] = attrs.field(repr=False)

    @property
    def pass_type_id(self) -> str:
        return str(self.pass_json["passTypeIdentifier"])

    @property
    def serial_number(self) -> str:
        return str(self.pass_json["serialNumber"])

    @property
    def authentication_token(self) -> str:
        return str(self.pass_json["authenticationToken"])

    @property
    def team_id(self) -> str:
        return str(self.pass_json["teamIdentifier"])

    @property
    def web_service_url(self) -> str | None:
        value = self.pass_json.get("webServiceURL")
        return None if value is None else str(value)

    def manifest(self) -> bytes:
        """``manifest.json``: each file's path to the SHA-1 hex of its bytes."""
        return manifest_json(self.files)

    def content_digest(self) -> str:
        """SHA-256 hex of the manifest: changes whenever any file's content changes."""
        return hashlib.sha256(self.manifest()).hexdigest()

    @classmethod
    def from_files(cls, files: Mapping[str, bytes], *, label: str = "pass") -> PassSource:
        """Check files given in memory (path -> bytes) as a pass directory.

        Raises:
            PassError: no ``pass.json`` or ``icon.png``, bad JSON, a missing or
                invalid required field.
        """
        kept = {
            name: bytes(data)
            for name, data in sorted(files.items())
            if name not in GENERATED_FILES and not _hidden(name)
        }
        if "pass.json" not in kept:
            raise PassError(f"{label}: no pass.json")
        if "icon.png" not in kept:
            raise PassError(f"{label}: no icon.png (Wallet requires one)")
        pass_json = _parse_pass_json(kept["pass.json"], f"{label}/pass.json")
        return cls(files=kept, pass_json=pass_json)


def _hidden(name: str) -> bool:
    return any(part.startswith(".") for part in name.split("/"))


def _parse_pass_json(data: bytes, label: str) -> dict[str, Any]:
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise PassError(f"{label}: not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise PassError(
            f"{label}: not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})"
        ) from None
    if not isinstance(value, dict):
        raise PassError(f"{label}: must be a JSON object, not {type(value).__name__}")
    if value.get("formatVersion") != 1:
        raise PassError(f"{label}: formatVersion must be 1, not {value.get('formatVersion')!r}")
    for key in _REQUIRED_STRINGS:
        field = value.get(key)
        if field is None:
            raise PassError(f"{label}: {key} is missing")
        if not isinstance(field, str) or not field.strip():
            raise PassError(f"{label}: {key} must be a non-empty string, not {field!r}")
    token = value.get("authenticationToken")
    if token is None:
        raise PassError(
            f"{label}: authenticationToken is missing (needed for updates through the web service)"
        )
    if not isinstance(token, str) or len(token) < MIN_AUTH_TOKEN_LENGTH:
        raise PassError(
            f"{label}: authenticationToken must be a string of at least "
            f"{MIN_AUTH_TOKEN_LENGTH} characters"
        )
    url = value.get("webServiceURL")
    if url is not None and (
        not isinstance(url, str) or not url.startswith(("https://", "http://"))
    ):
        raise PassError(f"{label}: webServiceURL must be an https:// URL, not {url!r}")
    return value


def read_pass_directory(directory: str | os.PathLike[str]) -> PassSource:
    """Read and check a pass directory: ``pass.json``, ``icon.png`` and the other files.

    Every regular file below ``directory`` is part of the pass, except hidden ones
    (names starting with ``.``, such as ``.DS_Store``) and an old ``manifest.json``
    or ``signature``, which the builder writes itself.

    Raises:
        PassError: the directory is missing or unreadable, or its content is not a
            valid pass (see :meth:`PassSource.from_files`).
    """
    root = Path(directory)
    if not root.is_dir():
        raise PassError(f"{root}: not a directory")
    files: dict[str, bytes] = {}
    try:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                files[path.relative_to(root).as_posix()] = path.read_bytes()
    except OSError as exc:
        raise PassError(f"{exc.filename or root}: cannot read ({exc.strerror})") from None
    return PassSource.from_files(files, label=str(root))


def manifest_json(files: Mapping[str, bytes]) -> bytes:
    """The ``manifest.json`` bytes for ``files`` (path -> content), keys sorted."""
    digests = {
        name: hashlib.sha1(data, usedforsecurity=False).hexdigest()
        for name, data in sorted(files.items())
        if name not in GENERATED_FILES
    }
    return json.dumps(digests, indent=2, sort_keys=True).encode("ascii") + b"\n"


def _team_of(certificate: x509.Certificate) -> str | None:
    for attribute in certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME):
        value = attribute.value
        return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return None


@attrs.frozen
class PassSigner:
    """A Pass Type ID certificate with its key, and Apple's WWDR intermediate.

    Build it with :meth:`create`, which checks that the certificate is a Pass Type ID
    certificate (Apple's 1.2.840.113635.100.6.1.16 extension and a ``pass.``
    subject UID), that its key can sign PKCS#7 (RSA or EC), and that the WWDR
    certificate issued it.
    """

    credentials: Credentials
    wwdr: x509.Certificate

    @classmethod
    def create(cls, credentials: Credentials, wwdr: x509.Certificate) -> PassSigner:
        """Check and pair the pass certificate and the WWDR certificate.

        Raises:
            PassError: not a Pass Type ID certificate, a key type PKCS#7 cannot use,
                or a WWDR certificate that did not issue it.
        """
        certificate = credentials.certificate
        subject = certificate.subject.rfc4514_string()
        if not any(ext.oid == PASS_TYPE_OID for ext in certificate.extensions):
            raise PassError(
                f"the certificate {subject!r} is not a Pass Type ID certificate (no "
                f"{PASS_TYPE_OID.dotted_string} extension)"
            )
        if certificate_topic(certificate) is None:
            raise PassError(
                f"the certificate {subject!r} has no subject UID (the pass type identifier)"
            )
        if not isinstance(credentials.private_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise PassError(
                f"a {type(credentials.private_key).__name__} cannot sign a pass; "
                "PKCS#7 needs an RSA or EC key"
            )
        try:
            certificate.verify_directly_issued_by(wwdr)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise PassError(
                f"the WWDR certificate {wwdr.subject.rfc4514_string()!r} did not issue the "
                f"pass certificate (issuer {certificate.issuer.rfc4514_string()!r}): {exc}"
            ) from None
        return cls(credentials, wwdr)

    @property
    def pass_type_id(self) -> str:
        """The certificate's subject UID, e.g. ``pass.com.example.card``."""
        topic = certificate_topic(self.credentials.certificate)
        assert topic is not None  # checked by create()
        return topic

    @property
    def team_id(self) -> str | None:
        """The certificate's organizational unit (Apple's team identifier), if any."""
        return _team_of(self.credentials.certificate)

    def check(self, source: PassSource) -> None:
        """Check that ``source`` belongs to this certificate.

        Raises:
            PassError: ``passTypeIdentifier`` or ``teamIdentifier`` differs from the
                certificate's (Wallet would refuse the pass).
        """
        if source.pass_type_id != self.pass_type_id:
            raise PassError(
                f"pass.json: passTypeIdentifier {source.pass_type_id!r} does not match the "
                f"certificate's pass type ID {self.pass_type_id!r}"
            )
        team = self.team_id
        if team is not None and source.team_id != team:
            raise PassError(
                f"pass.json: teamIdentifier {source.team_id!r} does not match the "
                f"certificate's team (OU) {team!r}"
            )

    def sign(self, manifest: bytes) -> bytes:
        """The detached DER PKCS#7 signature over ``manifest``."""
        key = self.credentials.private_key
        assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
        builder = (
            pkcs7.PKCS7SignatureBuilder()
            .set_data(manifest)
            .add_signer(self.credentials.certificate, key, hashes.SHA256())
            .add_certificate(self.wwdr)
        )
        return builder.sign(
            serialization.Encoding.DER,
            [pkcs7.PKCS7Options.Binary, pkcs7.PKCS7Options.DetachedSignature],
        )


def load_wwdr(source: str | os.PathLike[str] | bytes) -> x509.Certificate:
    """Read the WWDR intermediate certificate: PEM, or DER as Apple ships it (``.cer``).

    Raises:
        PassError: unreadable, or neither a PEM nor a DER certificate.
    """
    if isinstance(source, bytes):
        data, label = source, "WWDR certificate data"
    else:
        label = os.fspath(source)
        try:
            data = Path(label).read_bytes()
        except OSError as exc:
            raise PassError(f"{label}: cannot read ({exc.strerror})") from None
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)[0]
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise PassError(f"{label}: not a PEM or DER certificate") from None


def build_pkpass(source: PassSource, signer: PassSigner) -> bytes:
    """The signed ``.pkpass`` archive for ``source``.

    Raises:
        PassError: the pass does not belong to the signer's certificate.
    """
    signer.check(source)
    manifest = source.manifest()
    signature = signer.sign(manifest)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        entries = [*source.files.items(), ("manifest.json", manifest), ("signature", signature)]
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()
