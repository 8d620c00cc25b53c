"""``apns-legacy wallet``: build and sign passes, run the PassKit web service, push updates.

Subcommands:

* ``wallet build PASS_DIR --cert ... --wwdr ... --output FILE.pkpass``: one signed pass.

Every problem found before any work (unreadable credentials, a pass directory that is
not a valid pass, a certificate that is not a Pass Type ID certificate) is one line
on stderr naming the file or field, exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..tls import Credentials, CredentialsError, WrongPassphraseError
from ..wallet import PassError, PassSigner, build_pkpass, load_wwdr, read_pass_directory
from ._common import read_passphrase
from ._main import EXIT_OK, UsageError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "wallet",
        help="Wallet passes: build and sign, serve the PassKit web service, push updates",
        description="Wallet (PassKit) passes: build and sign .pkpass files, run the web "
        "service devices register with, and push updates.",
    )
    commands = parser.add_subparsers(dest="wallet_command", metavar="WALLET_COMMAND")
    parser.set_defaults(handler=lambda _args: _usage(parser))

    build = commands.add_parser(
        "build",
        help="build and sign one pass",
        description="Build a signed .pkpass from a pass directory (pass.json, icon.png, "
        "other images, localization folders).",
    )
    build.add_argument("pass_dir", metavar="PASS_DIR", help="the pass directory")
    _add_signing_arguments(build)
    build.add_argument("--output", "-o", required=True, metavar="FILE", help="the .pkpass to write")
    build.set_defaults(handler=_run_build)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    raise UsageError("give a wallet command: build")


def _add_signing_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add(
        "--cert",
        required=True,
        metavar="FILE",
        help="Pass Type ID certificate: PKCS#12 (.p12), or PEM (with the key, or --key)",
    )
    add("--key", metavar="FILE", help="the private key, when it is not in --cert")
    add(
        "--passphrase-env",
        metavar="VAR",
        help="environment variable holding the key or .p12 passphrase",
    )
    add(
        "--wwdr",
        required=True,
        metavar="FILE",
        help="Apple's WWDR intermediate certificate (PEM or DER .cer)",
    )


def load_signer(cert: str, key: str | None, passphrase_env: str | None, wwdr: str) -> PassSigner:
    """The checked signer from the signing flags, or UsageError naming the flag."""
    passphrase = read_passphrase(passphrase_env)
    try:
        credentials = Credentials.load(cert, key, passphrase=passphrase)
    except WrongPassphraseError as exc:
        hint = "" if passphrase is not None else " (give it with --passphrase-env VAR)"
        raise UsageError(f"--cert: {exc}{hint}") from None
    except CredentialsError as exc:
        raise UsageError(f"--cert: {exc}") from None
    try:
        certificate = load_wwdr(wwdr)
    except PassError as exc:
        raise UsageError(f"--wwdr: {exc}") from None
    try:
        return PassSigner.create(credentials, certificate)
    except PassError as exc:
        raise UsageError(f"--cert: {exc}") from None


def _run_build(args: argparse.Namespace) -> int:
    signer = load_signer(args.cert, args.key, args.passphrase_env, args.wwdr)
    try:
        source = read_pass_directory(args.pass_dir)
        data = build_pkpass(source, signer)
    except PassError as exc:
        raise UsageError(str(exc)) from None
    output = Path(args.output)
    try:
        temporary = output.with_name(f".{output.name}.{os.getpid()}.tmp")
        temporary.write_bytes(data)
        temporary.replace(output)
    except OSError as exc:
        raise UsageError(f"--output: {exc.filename}: {exc.strerror}") from None
    print(
        f"wrote {output} ({len(data)} bytes): {source.pass_type_id} serial "
        f"{source.serial_number}, {len(source.files)} files signed",
        file=sys.stderr,
    )
    return EXIT_OK
