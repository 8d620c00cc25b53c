"""``apns-legacy cert inspect FILE``: what a push certificate is for, and until when.

Reads a PEM file (certificate, optionally with its key and chain), a PKCS#12
(.p12) file, or a DER certificate. When a key is present (in the file or via
``--key``) it is decrypted in memory and checked against the certificate.
Exit codes: 0 valid, 1 expired or not yet valid, 2 bad usage or unreadable file.
A certificate that ends within 30 days, and one that is not a push certificate at
all (no subject UID, none of Apple's push extensions), get a warning on stderr (exit 0).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from cryptography import x509

from ..tls import (
    Credentials,
    CredentialsError,
    inspect_certificate,
    read_pem_certificates,
)
from ._exit import EXIT_FAILED, EXIT_OK, UsageError
from ._text import os_error, plural


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "cert",
        help="inspect push certificates",
        description="Certificate tools.",
    )
    actions = parser.add_subparsers(dest="cert_action", metavar="ACTION")
    inspect = actions.add_parser(
        "inspect",
        help="show a certificate's topic, environments and validity",
        description="Show the topic (subject UID), the APNs environments (Apple extension "
        "OIDs), the topics extension, and the validity period of a push certificate. "
        "Exit 0 if valid, 1 if expired or not yet valid, 2 for bad usage or an "
        "unreadable file; warns on stderr when it expires within 30 days.",
    )
    inspect.add_argument(
        "file", metavar="FILE", help="PEM (certificate, optionally key and chain), .p12, or DER"
    )
    inspect.add_argument(
        "--key", metavar="KEYFILE", help="private key to check against the certificate"
    )
    inspect.add_argument(
        "--passphrase-env",
        metavar="VAR",
        help="environment variable holding the key or .p12 passphrase",
    )
    inspect.add_argument("--json", action="store_true", help="print one JSON object")
    inspect.set_defaults(handler=run_inspect)
    parser.set_defaults(handler=_no_action)


def _no_action(args: argparse.Namespace) -> int:
    raise UsageError("choose an action: inspect")


def run_inspect(args: argparse.Namespace) -> int:
    """Handler of ``cert inspect``."""
    passphrase = None
    if args.passphrase_env:
        value = os.environ.get(args.passphrase_env)
        if value is None:
            raise UsageError(
                f"--passphrase-env: the environment variable {args.passphrase_env} is not set"
            )
        passphrase = value.encode("utf-8")
    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({os_error(exc)})") from None
    try:
        certificate, credentials = _load(path, data, args.key, passphrase)
    except CredentialsError as exc:
        raise UsageError(str(exc)) from None
    info = inspect_certificate(certificate)
    key = "matches" if credentials is not None else None
    chain = len(credentials.chain) if credentials is not None else None
    if args.json:
        print(json.dumps({"file": str(path), **info.to_dict(), "key": key, "chain": chain}))
    else:
        print(info.to_text())
        if credentials is not None:
            print(f"{'Private key:':<14}matches the certificate")
            print(f"{'Chain:':<14}{plural(chain or 0, 'more certificate')}")
    when = f"{info.not_after:%Y-%m-%d %H:%M} UTC"
    if not info.is_push_certificate:
        print(
            f"warning: {path}: not a push certificate (no subject UID and none of Apple's push "
            "extensions): Apple's gateway and feedback service would refuse it",
            file=sys.stderr,
        )
    if info.expired:
        print(
            f"apns-legacy cert inspect: {path}: the certificate expired on {when}", file=sys.stderr
        )
        return EXIT_FAILED
    if info.not_yet_valid:
        print(
            f"apns-legacy cert inspect: {path}: the certificate is not valid before "
            f"{info.not_before:%Y-%m-%d %H:%M} UTC",
            file=sys.stderr,
        )
        return EXIT_FAILED
    if info.expires_soon:
        print(
            f"warning: {path}: the certificate expires in {info.days_left} days ({when})",
            file=sys.stderr,
        )
    return EXIT_OK


def _load(
    path: Path, data: bytes, key: str | None, passphrase: bytes | None
) -> tuple[x509.Certificate, Credentials | None]:
    """The certificate to inspect, and the credentials when a key was checked."""
    is_pem = b"-----BEGIN" in data
    if key is None and is_pem and b"PRIVATE KEY-----" not in data:
        return read_pem_certificates(data, str(path))[0], None
    if key is None and not is_pem:
        try:
            return x509.load_der_x509_certificate(data), None
        except ValueError:
            pass  # PKCS#12 or garbage: Credentials.load tells which
    credentials = Credentials.load(path, key, passphrase=passphrase, allow_expired=True)
    return credentials.certificate, credentials
