"""``apns-legacy serve``: run the simulator (gateway and feedback service) until stopped.

When ready it prints one JSON line on stdout, ``{"gateway": "HOST:PORT", "feedback":
"HOST:PORT", "cert_dir": "DIR"}``, so scripts can start it with port 0 and read the
ports back; everything else goes to stderr. It stops cleanly (exit 0) on Ctrl-C,
SIGTERM, or after ``--for`` seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
from pathlib import Path
from typing import Final

import trio

from ..simulator import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    ErrorClose,
    Fault,
    FaultScope,
    ListenError,
    ServerCertificates,
    SimulatorConfig,
    open_simulator,
)
from ..tls import PKI_FILES, CredentialsError, Environment, make_test_pki
from ..wire import MAX_LONG_TOKEN_LENGTH, PAYLOAD_LIMIT, TOKEN_LENGTH, DeviceToken, ProtocolError
from ._exit import EXIT_OK, UsageError

#: The passphrase of the client.p12 written into a fresh --cert-dir (not a secret).
DEFAULT_P12_PASSPHRASE: Final = "apns-legacy-test"
#: What the simulator needs from --cert-dir; the client files are for the clients.
SERVER_FILES: Final = ("server.pem", "server-key.pem", "ca.pem")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the simulator: a gateway and feedback service that behave like Apple's",
        description="Run a gateway (legacy binary APNs) and a feedback service with TLS and "
        "scripted faults. Prints one JSON line with the addresses when ready. From the "
        "command line every fault applies to every connection, every time.",
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    add("--gateway-port", type=int, default=2195, metavar="PORT", help="0 picks a free port")
    add("--feedback-port", type=int, default=2196, metavar="PORT", help="0 picks a free port")
    add(
        "--environment",
        choices=["sandbox", "production"],
        default="sandbox",
        help="the Apple environment this server plays (default sandbox): a client "
        "certificate without its OID (1.2.840.113635.100.6.3.1 sandbox, .2 production) "
        "is dropped after the handshake with no error frame, as Apple did; also the "
        "environment of the client certificate written to a fresh --cert-dir",
    )
    add(
        "--cert-dir",
        required=True,
        metavar="DIR",
        help="certificates: server.pem, server-key.pem and ca.pem (the CA client "
        "certificates must chain to) are read from DIR; if DIR holds none of the test "
        "files, a throwaway CA, server and client certificate are written there "
        "(ca.pem, server.pem, server-key.pem, client.pem, client-key.pem, client.p12)",
    )
    add("--p12-passphrase", metavar="TEXT", help=f"default {DEFAULT_P12_PASSPHRASE!r}")
    add("--invalid-token", action="append", default=[], metavar="HEX", help="answer status 8")
    add(
        "--uninstalled-token",
        action="append",
        default=[],
        metavar="HEX",
        help="accept, then list in the feedback service",
    )
    add("--shutdown-after", type=int, metavar="N", help="status 10 after N per connection")
    add("--reset-after", type=int, metavar="N", help="TCP reset after N per connection")
    add(
        "--drop-after-bytes",
        type=int,
        metavar="N",
        help="close cleanly (no frame, no reset) after N bytes per connection",
    )
    add("--error-delay", type=float, metavar="SECONDS", help="delay every error frame")
    add(
        "--split-errors",
        metavar="SIZES",
        help="write every error frame in pieces, e.g. 1,5 or 3,3 (separate TLS records)",
    )
    add(
        "--split-gap",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="time between the pieces of --split-errors (default 0.5)",
    )
    add(
        "--error-close",
        choices=[mode.value for mode in ErrorClose],
        default=ErrorClose.RESET_IF_UNREAD.value,
        help="how a connection closes after an error frame: reset-if-unread (default: a "
        "TCP reset when the client's bytes wait unread, as Apple's gateway did), drain "
        "(always a clean close), reset (always a reset)",
    )
    add("--read-rate", type=float, metavar="BYTES_PER_S", help="read gateway connections slowly")
    add(
        "--stop-reading-after",
        type=int,
        metavar="BYTES",
        help="serve the first BYTES bytes of each gateway connection, then never read again "
        "(0: not even one), leaving the connection open",
    )
    add(
        "--latency",
        type=float,
        metavar="MS",
        help="one-way delay on every byte in both directions, the TLS handshake and the "
        "close included (a slow network path)",
    )
    add(
        "--idle-timeout",
        type=float,
        default=DEFAULT_IDLE_TIMEOUT,
        metavar="SECONDS",
        help=f"close gateway connections idle that long, no frame (default "
        f"{DEFAULT_IDLE_TIMEOUT:g}; 0: never)",
    )
    add(
        "--max-connections",
        type=int,
        default=DEFAULT_MAX_CONNECTIONS,
        metavar="N",
        help=f"most connections open at once, both ports; more are closed before TLS "
        f"(default {DEFAULT_MAX_CONNECTIONS}; 0: no limit)",
    )
    add("--payload-limit", type=int, default=PAYLOAD_LIMIT, metavar="N", help="default 2048")
    add("--long-tokens", action="store_true", help="accept tokens of 32 to 100 bytes")
    add(
        "--protocol-error-frames",
        action="store_true",
        help="answer unparsable input with status 128 instead of a silent close",
    )
    add("--tls13", action="store_true", help="also offer TLS 1.3 (Apple's gateway: 1.2 at most)")
    add("--record", metavar="FILE", help="append accepted notifications as JSON lines")
    add("--for", dest="duration", type=float, metavar="SECONDS", help="stop after SECONDS")
    add(
        "--http2",
        action="store_true",
        help="serve Apple's HTTP/2 provider API instead (one port, --http2-port; uses "
        "--host, --cert-dir, --invalid-token, --uninstalled-token, --record, --for)",
    )
    add("--http2-port", type=int, default=2197, metavar="PORT", help="default 2197; 0: free")
    add(
        "--provider-key",
        action="append",
        default=[],
        metavar="TEAM_ID:KEY_ID:FILE",
        help="with --http2: accept provider tokens signed by this key (.p8 or PEM public key)",
    )
    from ._serve_http2 import add_http2_arguments

    add_http2_arguments(parser)
    parser.set_defaults(handler=run)


def _check_port(flag: str, value: int) -> None:
    if not 0 <= value <= 0xFFFF:
        raise UsageError(f"{flag} must be 0 to 65535 (0 picks a free port), not {value}")


def _check_positive(flag: str, value: float | None, *, zero_ok: bool = False) -> None:
    if value is None:
        return
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        limit = "0 or more" if zero_ok else "more than 0"
        raise UsageError(f"{flag} must be {limit}, not {value}")


def _tokens(flag: str, texts: list[str], allow_long: bool) -> list[bytes]:
    tokens = []
    for text in texts:
        try:
            tokens.append(DeviceToken.from_hex(text, allow_long=allow_long).value)
        except ProtocolError as exc:
            raise UsageError(f"{flag} {text!r}: {exc}") from None
    return tokens


def _split_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        sizes = ()
    if len(sizes) < 2 or any(size < 1 for size in sizes) or sum(sizes) != 6:
        raise UsageError(
            f"--split-errors must be 2 or more sizes of at least 1 adding up to 6 "
            f"(e.g. 1,5 or 3,3), not {text!r}"
        )
    return sizes


def _config(args: argparse.Namespace) -> SimulatorConfig:
    """The simulator's settings, or UsageError naming the flag and its limit."""
    _check_port("--gateway-port", args.gateway_port)
    _check_port("--feedback-port", args.feedback_port)
    for flag, value in (
        ("--shutdown-after", args.shutdown_after),
        ("--reset-after", args.reset_after),
        ("--drop-after-bytes", args.drop_after_bytes),
    ):
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be at least 1, not {value}")
    if args.stop_reading_after is not None and args.stop_reading_after < 0:
        raise UsageError(f"--stop-reading-after must be 0 or more, not {args.stop_reading_after}")
    if args.max_connections < 0:
        raise UsageError(
            f"--max-connections must be 0 (no limit) or more, not {args.max_connections}"
        )
    _check_positive("--error-delay", args.error_delay, zero_ok=True)
    _check_positive("--split-gap", args.split_gap, zero_ok=True)
    _check_positive("--read-rate", args.read_rate)
    _check_positive("--latency", args.latency, zero_ok=True)
    _check_positive("--idle-timeout", args.idle_timeout, zero_ok=True)
    _check_positive("--for", args.duration)
    if not 1 <= args.payload_limit <= 0xFFFF:
        raise UsageError(f"--payload-limit must be 1 to 65535, not {args.payload_limit}")
    faults: list[Fault] = []
    # From the command line every fault applies to every connection, every time.
    if args.shutdown_after is not None:
        faults.append(
            Fault.shutdown_after(args.shutdown_after, per=FaultScope.CONNECTION, times=None)
        )
    if args.reset_after is not None:
        faults.append(Fault.reset_after(notifications=args.reset_after, times=None))
    if args.drop_after_bytes is not None:
        faults.append(Fault.drop_after(bytes=args.drop_after_bytes, times=None))
    if args.error_delay:
        faults.append(Fault.delay_errors(args.error_delay))
    if args.split_errors is not None:
        faults.append(Fault.split_errors(_split_sizes(args.split_errors), gap=args.split_gap))
    if args.read_rate is not None:
        faults.append(Fault.slow_reader(args.read_rate))
    if args.stop_reading_after is not None:
        faults.append(Fault.stop_reading(args.stop_reading_after))
    if args.latency:
        faults.append(Fault.latency(args.latency / 1000))
    return SimulatorConfig(
        host=args.host,
        gateway_port=args.gateway_port,
        feedback_port=args.feedback_port,
        environment=Environment(args.environment),
        invalid_tokens=_tokens("--invalid-token", args.invalid_token, args.long_tokens),
        uninstalled_tokens=_tokens("--uninstalled-token", args.uninstalled_token, args.long_tokens),
        payload_limit=args.payload_limit,
        max_token_length=MAX_LONG_TOKEN_LENGTH if args.long_tokens else TOKEN_LENGTH,
        protocol_error_frames=args.protocol_error_frames,
        error_close=ErrorClose(args.error_close),
        allow_tls13=args.tls13,
        faults=faults,
        record_path=args.record,
        # A long-running server must not grow without bound: the file is the record.
        keep_records=False,
        idle_timeout=args.idle_timeout or None,
        max_connections=args.max_connections or None,
    )


def _load_or_write_certificates(
    directory: Path, environment: Environment, passphrase: str
) -> ServerCertificates:
    """Read the server's certificates from ``directory``, or write throwaway ones there."""
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"--cert-dir {directory} is a file, not a directory")
    present = [name for name in PKI_FILES if (directory / name).exists()]
    if any(name in present for name in SERVER_FILES):
        for name in SERVER_FILES:
            if name not in present:
                raise UsageError(
                    f"--cert-dir: {directory / name} is missing (the simulator needs "
                    f"{', '.join(SERVER_FILES)}; client files are optional)"
                )
        try:
            certificates = ServerCertificates.load(directory)
        except CredentialsError as exc:
            raise UsageError(f"--cert-dir: {exc}") from None
        print(f"using the certificates in {directory}", file=sys.stderr)
        return certificates
    if present:
        raise UsageError(
            f"--cert-dir {directory} holds {present[0]} but no server.pem: give a directory "
            f"with {', '.join(SERVER_FILES)}, or one without certificates to get throwaway ones"
        )
    pki = make_test_pki(environments=(environment,))
    try:
        directory.mkdir(parents=True, exist_ok=True)
        pki.write(directory, p12_passphrase=passphrase.encode())
    except OSError as exc:
        raise UsageError(
            f"--cert-dir {directory}: cannot write certificates there ({exc.strerror or exc})"
        ) from None
    print(
        f"wrote throwaway certificates to {directory} (client.p12 passphrase: {passphrase!r})",
        file=sys.stderr,
    )
    return ServerCertificates.from_pki(pki)


def _host_port(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _serve(
    config: SimulatorConfig, cert_dir: Path, passphrase: str, duration: float | None
) -> int:
    certificates = _load_or_write_certificates(cert_dir, config.environment, passphrase)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_simulator(config, certificates=certificates) as sim:
            ready = {
                "gateway": _host_port(sim.gateway_address),
                "feedback": _host_port(sim.feedback_address),
                "cert_dir": str(cert_dir),
            }
            print(json.dumps(ready), flush=True)
            print(
                f"serving ({sim.environment.value}); stop with Ctrl-C or SIGTERM", file=sys.stderr
            )
            with trio.move_on_after(duration if duration is not None else math.inf):
                async for signum in signals:
                    print(f"got {signal.Signals(signum).name}, stopping", file=sys.stderr)
                    break
            stats = sim.stats
    print(
        f"stopped: {stats.gateway_connections} gateway connections, {stats.accepted} accepted, "
        f"{stats.rejected} rejected, {stats.feedback_items_sent} feedback tuples sent",
        file=sys.stderr,
    )
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    from ._serve_http2 import check_protocol_flags, run_http2

    check_protocol_flags(args)
    if args.http2:
        passphrase = args.p12_passphrase or DEFAULT_P12_PASSPHRASE
        return run_http2(args, passphrase=passphrase, load_certificates=_load_or_write_certificates)
    config = _config(args)
    passphrase = args.p12_passphrase if args.p12_passphrase is not None else DEFAULT_P12_PASSPHRASE
    try:
        return trio.run(_serve, config, Path(args.cert_dir), passphrase, args.duration)
    except ListenError as exc:
        # "cannot listen on 127.0.0.1:2195 for the gateway: address already in use ..."
        raise UsageError(str(exc)) from None
    except OSError as exc:
        # Anything else of the system's: one line, not a traceback.
        raise UsageError(str(exc)) from None
