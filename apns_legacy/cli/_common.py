"""What the client commands (``send``, ``feedback``) share: connection flags and credentials.

``add_connection_arguments`` adds ``--host/--port/--sandbox/--cert/--key/
--passphrase-env/--ca``; ``load_client_context`` turns them into a finished TLS
context and an address, or raises :class:`UsageError` with one line naming the flag.
Everything here happens before any connection is made, so a bad certificate or a
wrong passphrase never costs a connection attempt.
"""

from __future__ import annotations

import argparse
import os
import sys

import attrs
from OpenSSL import SSL

from ..tls import Credentials, CredentialsError, Environment, WrongPassphraseError, client_context
from ._exit import UsageError


@attrs.frozen
class Target:
    """Where to connect and with what: the result of :func:`load_client_context`."""

    context: SSL.Context
    host: str
    port: int
    credentials: Credentials = attrs.field(repr=False)


def add_connection_arguments(
    parser: argparse.ArgumentParser,
    *,
    production: tuple[str, int],
    sandbox: tuple[str, int],
    cert_required: bool = True,
) -> None:
    """Add the connection and credential flags to a client command's parser.

    Args:
        parser: the command's parser.
        production: the default ``(host, port)``, e.g. ``PRODUCTION_GATEWAY``.
        sandbox: what ``--sandbox`` selects, e.g. ``SANDBOX_GATEWAY``.
        cert_required: whether argparse insists on ``--cert`` (``send`` checks it
            itself: ``send --http2`` may use a provider key instead).
    """
    group = parser.add_argument_group("connection")
    add = group.add_argument
    add("--host", metavar="HOST", help=f"server to connect to (default {production[0]})")
    add("--port", type=int, metavar="PORT", help=f"its port (default {production[1]})")
    add("--sandbox", action="store_true", help=f"connect to {sandbox[0]} instead")
    add(
        "--cert",
        required=cert_required,
        metavar="FILE",
        help="client certificate: PEM (optionally with the key) or PKCS#12 (.p12)",
    )
    add("--key", metavar="FILE", help="private key file, when it is not in --cert")
    add(
        "--passphrase-env",
        metavar="VAR",
        help="environment variable holding the key or .p12 passphrase "
        "(never give a passphrase on the command line)",
    )
    add("--ca", metavar="FILE", help="PEM trust anchors for the server (default: system store)")
    parser.set_defaults(production_address=production, sandbox_address=sandbox)


def read_passphrase(variable: str | None) -> bytes | None:
    """The passphrase from the environment variable named by ``--passphrase-env``.

    Raises:
        UsageError: the variable is not set.
    """
    if variable is None:
        return None
    value = os.environ.get(variable)
    if value is None:
        raise UsageError(f"--passphrase-env: the environment variable {variable} is not set")
    return value.encode("utf-8")


def resolve_address(args: argparse.Namespace) -> tuple[str, int]:
    """``(host, port)`` from ``--host``, ``--port`` and ``--sandbox``.

    Raises:
        UsageError: ``--host`` together with ``--sandbox``, or a port out of range.
    """
    production: tuple[str, int] = args.production_address
    sandbox: tuple[str, int] = args.sandbox_address
    if args.host is not None and args.sandbox:
        raise UsageError("--sandbox selects the host; give either --sandbox or --host")
    default = sandbox if args.sandbox else production
    host = args.host if args.host is not None else default[0]
    port = args.port if args.port is not None else default[1]
    if not 1 <= port <= 0xFFFF:
        raise UsageError(f"--port must be 1 to 65535, not {port}")
    return host, port


def load_client_context(args: argparse.Namespace, *, mismatch_is_error: bool = False) -> Target:
    """Load the credentials and build the client TLS context, before any connection.

    Warns on stderr when the certificate is for the other Apple environment than
    the one selected (only when talking to Apple's own host names); with
    ``mismatch_is_error`` that is a :class:`UsageError` instead (``feedback``: the
    service would answer with what looks like an empty list).

    Raises:
        UsageError: unreadable files, wrong or missing passphrase, a key that does
            not match, an expired certificate, an unreadable ``--ca``, bad address.
    """
    host, port = resolve_address(args)
    credentials = load_credentials(args)
    try:
        context = client_context(credentials, ca=args.ca)
    except CredentialsError as exc:
        raise UsageError(f"--ca: {exc}") from None
    warn_environment_mismatch(args, host, credentials, mismatch_is_error=mismatch_is_error)
    return Target(context, host, port, credentials)


def load_credentials(args: argparse.Namespace) -> Credentials:
    """The client certificate and key of ``--cert/--key/--passphrase-env``.

    Raises:
        UsageError: unreadable files, wrong or missing passphrase, a key that does
            not match, an expired certificate.
    """
    passphrase = read_passphrase(args.passphrase_env)
    try:
        return Credentials.load(args.cert, args.key, passphrase=passphrase)
    except WrongPassphraseError as exc:
        hint = "" if passphrase is not None else " (give it with --passphrase-env VAR)"
        raise UsageError(f"cannot use the credentials: {exc}{hint}") from None
    except CredentialsError as exc:
        raise UsageError(f"cannot use the credentials: {exc}") from None


def warn_environment_mismatch(
    args: argparse.Namespace, host: str, credentials: Credentials, *, mismatch_is_error: bool
) -> None:
    """Warn (or, with ``mismatch_is_error``, refuse) when the certificate is for the
    other Apple environment than ``host`` (only Apple's own host names are known)."""
    mismatch = _environment_mismatch(args, host, credentials)
    if mismatch is not None:
        if mismatch_is_error:
            raise UsageError(
                f"{mismatch}: Apple accepts it in the handshake and then closes without data"
            )
        print(f"warning: {mismatch}", file=sys.stderr)


def _environment_mismatch(
    args: argparse.Namespace, host: str, credentials: Credentials
) -> str | None:
    # Apple's servers took a certificate for the other environment in the handshake
    # and then closed without a word; say so up front when we can tell.
    production: tuple[str, int] = args.production_address
    sandbox: tuple[str, int] = args.sandbox_address
    wanted = {production[0]: Environment.PRODUCTION, sandbox[0]: Environment.SANDBOX}.get(host)
    allowed = credentials.environments
    if wanted is not None and allowed and wanted not in allowed:
        other = " (use --sandbox)" if wanted is Environment.PRODUCTION else ""
        return (
            f"the certificate is for {', '.join(sorted(e.value for e in allowed))} "
            f"only, but {host} is the {wanted.value} server{other}"
        )
    return None
