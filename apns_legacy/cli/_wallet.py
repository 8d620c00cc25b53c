"""``apns-legacy wallet``: build and sign passes, run the PassKit web service, push updates.

Subcommands:

* ``wallet build PASS_DIR --cert ... --wwdr ... --output FILE.pkpass``: one signed pass.
* ``wallet serve --config FILE``: the PassKit web service; one JSON line on stdout when
  ready (``{"url": ..., "listen": ..., "store": ..., "pass_type_id": ...}``), then
  serves until Ctrl-C, SIGTERM or ``--for SECONDS``.
* ``wallet update --config FILE [SERIAL ...]``: rebuild, sign and store the named passes
  (default: every pass folder that is new or changed), then push to their devices by
  the configured route (binary gateway, HTTP/2 or the bridge); one JSON line per pass
  on stdout; exit 1 if a push was not accepted.
* ``wallet feedback --config FILE``: read the feedback service with the pass
  certificate, print the entries (JSON lines), forget the devices it lists unless
  they registered again since.
* ``wallet passes --config FILE`` / ``wallet devices --config FILE [SERIAL]``: what the
  store holds, as JSON lines.

Every problem found before any work (unreadable credentials, a pass directory that is
not a valid pass, a certificate that is not a Pass Type ID certificate) is one line
on stderr naming the file or field, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sqlite3
import sys
from functools import partial
from pathlib import Path

import trio

from ..client import FeedbackError
from ..tls import Credentials, CredentialsError, WrongPassphraseError
from ..wallet import (
    BinaryGateway,
    ConfigError,
    Http2Gateway,
    PassError,
    PassSigner,
    PassSource,
    PassStore,
    WalletConfig,
    WebTLS,
    build_pkpass,
    changed_passes,
    load_wwdr,
    pass_directories,
    read_pass_directory,
    read_pass_feedback,
    read_pass_folder,
    update_pass,
)
from ..wire import LocalProtocolError
from ._common import read_passphrase
from ._exit import EXIT_FAILED, EXIT_OK, UsageError


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

    serve = commands.add_parser(
        "serve",
        help="run the PassKit web service",
        description="Serve the five /v1 endpoints Wallet calls (register, serial numbers "
        "since a tag, latest pass, unregister, log). Prints one JSON line when ready.",
    )
    _add_config_argument(serve)
    serve.add_argument(
        "--for", dest="duration", type=float, metavar="SECONDS", help="stop after SECONDS"
    )
    serve.set_defaults(handler=_run_serve)

    update = commands.add_parser(
        "update",
        help="rebuild, sign and store passes, and push the update to their devices",
        description="Give each pass a new tag, rebuild and sign it from its folder, and "
        "push an empty notification to every device registered for it. Without SERIAL, "
        "every pass folder that is new or whose files changed.",
    )
    _add_config_argument(update)
    update.add_argument(
        "serials", nargs="*", metavar="SERIAL", help="serial numbers (folder names)"
    )
    update.add_argument("--no-push", action="store_true", help="store the new versions only")
    update.set_defaults(handler=_run_update)

    feedback = commands.add_parser(
        "feedback",
        help="read the feedback service and forget the devices it lists",
        description="Read the feedback service (Apple's, or the bridge's) with the pass "
        "certificate (or push.cert for the bridge), print every entry (JSON lines) and forget "
        "the listed devices that did not register again since. Not for route http2, which has "
        "no feedback service (wallet update applies its 410 answers).",
    )
    _add_config_argument(feedback)
    feedback.set_defaults(handler=_run_feedback)

    passes = commands.add_parser("passes", help="list the stored passes (JSON lines)")
    _add_config_argument(passes)
    passes.set_defaults(handler=_run_passes)

    devices = commands.add_parser("devices", help="list the registered devices (JSON lines)")
    _add_config_argument(devices)
    devices.add_argument("serial", nargs="?", metavar="SERIAL", help="only this pass")
    devices.set_defaults(handler=_run_devices)


def _add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", required=True, metavar="FILE", help="the wallet configuration (TOML)"
    )


def _load_config(args: argparse.Namespace) -> WalletConfig:
    try:
        return WalletConfig.load(args.config)
    except ConfigError as exc:
        raise UsageError(f"--config: {exc}") from None


def _open_store(config: WalletConfig, *, create: bool = False) -> PassStore:
    if not create and not config.store.exists():
        raise UsageError(
            f"--config: store {config.store} does not exist (wallet update or serve makes it)"
        )
    try:
        return PassStore(config.store)
    except sqlite3.Error as exc:
        raise UsageError(f"--config: store {config.store}: {exc}") from None


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    raise UsageError("give a wallet command: build, serve, update, feedback, passes or devices")


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
    # Written beside the target and renamed: a reader never sees half a pass.
    temporary = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(data)
        temporary.replace(output)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise UsageError(f"--output: {output}: {exc.strerror}") from None
    print(
        f"wrote {output} ({len(data)} bytes): {source.pass_type_id} serial "
        f"{source.serial_number}, {len(source.files)} files signed",
        file=sys.stderr,
    )
    return EXIT_OK


def _host_port(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _serve(
    config: WalletConfig, store: PassStore, duration: float | None, tls: WebTLS | None
) -> None:
    try:
        from ..wallet import open_wallet_server
    except ImportError as exc:
        raise UsageError(str(exc)) from None
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_wallet_server(
            store, host=config.host, port=config.port, base_path=config.base_path, tls=tls
        ) as server:
            ready = {
                "url": server.url,
                "listen": _host_port(server.address),
                "store": str(config.store),
                "pass_type_id": config.pass_type_id,
            }
            print(json.dumps(ready), flush=True)
            print("serving; stop with Ctrl-C or SIGTERM", file=sys.stderr)
            with trio.move_on_after(duration if duration is not None else math.inf):
                async for signum in signals:
                    print(f"got {signal.Signals(signum).name}, stopping", file=sys.stderr)
                    break


def _run_serve(args: argparse.Namespace) -> int:
    if args.duration is not None and not (math.isfinite(args.duration) and args.duration > 0):
        raise UsageError(f"--for must be more than 0, not {args.duration}")
    config = _load_config(args)
    try:
        tls = config.web_tls()
    except ConfigError as exc:
        raise UsageError(f"--config: {exc}") from None
    with _open_store(config, create=True) as store:
        try:
            trio.run(_serve, config, store, args.duration, tls)
        except OSError as exc:
            # Port in use, unknown address: one line, not a traceback.
            raise UsageError(
                f"--config: listen {config.host}:{config.port}: {exc.strerror or exc}"
            ) from None
    return EXIT_OK


def _sources(config: WalletConfig, store: PassStore, serials: list[str]) -> list[PassSource]:
    try:
        if serials:
            return [read_pass_folder(config.passes, serial) for serial in serials]
        if not config.passes.is_dir():
            raise UsageError(f"--config: passes {config.passes}: not a directory")
        folders = pass_directories(config.passes).values()
        return changed_passes(store, config.pass_type_id, folders)
    except PassError as exc:
        raise UsageError(str(exc)) from None


async def _update(
    store: PassStore,
    signer: PassSigner,
    sources: list[PassSource],
    route: BinaryGateway | Http2Gateway | None,
) -> int:
    # One TLS context for every pass on the binary route (the HTTP/2 sender makes its own).
    context = route.context(signer) if isinstance(route, BinaryGateway) else None
    code = EXIT_OK
    for source in sources:
        result = await update_pass(store, signer, source, route, context=context)
        line: dict[str, object] = {
            "serial_number": result.serial_number,
            "tag": str(result.tag),
        }
        if result.push is not None:
            report = result.push
            line.update(
                devices=report.tokens,
                accepted=report.accepted,
                rejected=report.rejected,
                failed=report.failed,
                removed_registrations=report.removed_registrations,
                kept_reregistered=report.kept_reregistered,
                problems=[{"token": token, "problem": what} for token, what in report.problems],
            )
            if report.accepted != report.tokens:
                code = EXIT_FAILED
        print(json.dumps(line), flush=True)
    return code


def _run_update(args: argparse.Namespace) -> int:
    config = _load_config(args)
    try:
        signer = config.signer()
        route = None if args.no_push else config.route_for_push()
    except ConfigError as exc:
        raise UsageError(f"--config: {exc}") from None
    try:
        if isinstance(route, Http2Gateway):
            route.check(signer, config.pass_type_id)
        elif route is not None:
            route.context(signer)
    except LocalProtocolError as exc:
        raise UsageError(f"--config: push: {exc}") from None
    except CredentialsError as exc:  # an unreadable push.ca
        raise UsageError(f"--config: push.ca: {exc}") from None
    with _open_store(config, create=True) as store:
        sources = _sources(config, store, args.serials)
        for source in sources:
            try:
                signer.check(source)  # every pass is checked before any is changed
            except PassError as exc:
                raise UsageError(f"{source.serial_number}/{exc}") from None
        if not sources:
            print("no pass is new or changed", file=sys.stderr)
            return EXIT_OK
        code = trio.run(_update, store, signer, sources, route)
    print(f"updated {len(sources)} pass(es)", file=sys.stderr)
    return code


def _run_feedback(args: argparse.Namespace) -> int:
    config = _load_config(args)
    if config.route == "http2":
        raise UsageError(
            "--config: push.route 'http2' has no feedback service (HTTP/2 answers 410 at push "
            "time, and wallet update removes those registrations then)"
        )
    try:
        signer = config.signer()
        route = config.route_for_push()
    except ConfigError as exc:
        raise UsageError(f"--config: {exc}") from None
    assert isinstance(route, BinaryGateway)
    try:
        context = route.context(signer)
    except CredentialsError as exc:
        raise UsageError(f"--config: push.ca: {exc}") from None
    with _open_store(config) as store:
        try:
            items = trio.run(partial(read_pass_feedback, signer, route, context=context))
        except FeedbackError as exc:
            print(f"apns-legacy wallet feedback: {exc}", file=sys.stderr)
            return EXIT_FAILED
        # The list is cleared once read: print it before anything else can fail.
        for item in items:
            print(
                json.dumps(
                    {
                        "token": item.token.hex(),
                        "timestamp": item.timestamp,
                        "time": item.time.isoformat().replace("+00:00", "Z"),
                    }
                ),
                flush=True,
            )
        result = store.apply_feedback(items)
    print(
        f"feedback {route.feedback_host}:{route.feedback_port}: {len(items)} tokens listed; "
        f"{result.removed_devices} devices forgotten ({result.removed_registrations} "
        f"registrations), {result.kept_reregistered} kept (registered again since), "
        f"{result.unknown} unknown",
        file=sys.stderr,
    )
    return EXIT_OK


def _run_passes(args: argparse.Namespace) -> int:
    config = _load_config(args)
    with _open_store(config) as store:
        for stored in store.passes():
            print(
                json.dumps(
                    {
                        "pass_type_id": stored.pass_type_id,
                        "serial_number": stored.serial_number,
                        "tag": str(stored.tag),
                        "last_modified": stored.last_modified.isoformat().replace("+00:00", "Z"),
                        "devices": stored.devices,
                        "content_digest": stored.content_digest,
                    }
                )
            )
    return EXIT_OK


def _run_devices(args: argparse.Namespace) -> int:
    config = _load_config(args)
    with _open_store(config) as store:
        for registration in store.registrations(serial_number=args.serial):
            print(
                json.dumps(
                    {
                        "device_library_id": registration.device_library_id,
                        "push_token": registration.push_token,
                        "pass_type_id": registration.pass_type_id,
                        "serial_number": registration.serial_number,
                        "registered_at": registration.registered_at.isoformat().replace(
                            "+00:00", "Z"
                        ),
                    }
                )
            )
    return EXIT_OK
