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

from ..simulator import Fault, FaultScope, SimulatorConfig, open_simulator
from ..tls import Environment, TestPKI, make_test_pki
from ..wire import MAX_LONG_TOKEN_LENGTH, PAYLOAD_LIMIT, TOKEN_LENGTH, DeviceToken, ProtocolError
from ._main import EXIT_OK, UsageError

#: The passphrase of the client.p12 written into a fresh --cert-dir (not a secret).
DEFAULT_P12_PASSPHRASE: Final = "apns-legacy-test"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the simulator: a gateway and feedback service that behave like Apple's",
        description="Run a gateway (legacy binary APNs) and a feedback service with TLS and "
        "scripted faults. Prints one JSON line with the addresses when ready.",
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    add("--gateway-port", type=int, default=2195, metavar="PORT", help="0 picks a free port")
    add("--feedback-port", type=int, default=2196, metavar="PORT", help="0 picks a free port")
    add("--environment", choices=["sandbox", "production"], default="sandbox")
    add(
        "--cert-dir",
        required=True,
        metavar="DIR",
        help="test certificates (ca.pem, server.pem, client.pem, client.p12, ...); "
        "written there if DIR holds none",
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
    add("--error-delay", type=float, metavar="SECONDS", help="delay every error frame")
    add("--read-rate", type=float, metavar="BYTES_PER_S", help="read gateway connections slowly")
    add("--idle-timeout", type=float, metavar="SECONDS", help="drop idle gateway connections")
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


def _config(args: argparse.Namespace) -> SimulatorConfig:
    """The simulator's settings, or UsageError naming the flag and its limit."""
    _check_port("--gateway-port", args.gateway_port)
    _check_port("--feedback-port", args.feedback_port)
    for flag, value in (
        ("--shutdown-after", args.shutdown_after),
        ("--reset-after", args.reset_after),
    ):
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be at least 1, not {value}")
    _check_positive("--error-delay", args.error_delay, zero_ok=True)
    _check_positive("--read-rate", args.read_rate)
    _check_positive("--idle-timeout", args.idle_timeout)
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
    if args.error_delay:
        faults.append(Fault.delay_errors(args.error_delay))
    if args.read_rate is not None:
        faults.append(Fault.slow_reader(args.read_rate))
    if args.idle_timeout is not None:
        faults.append(Fault.idle_timeout(args.idle_timeout))
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
        allow_tls13=args.tls13,
        faults=faults,
        record_path=args.record,
        # A long-running server must not grow without bound: the file is the record.
        keep_records=False,
    )


def _load_or_write_pki(directory: Path, environment: Environment, passphrase: str) -> TestPKI:
    if (directory / "server.pem").exists():
        print(f"using the certificates in {directory}", file=sys.stderr)
        return TestPKI.load(directory)
    directory.mkdir(parents=True, exist_ok=True)
    pki = make_test_pki(environments=(environment,))
    pki.write(directory, p12_passphrase=passphrase.encode())
    print(
        f"wrote throwaway certificates to {directory} (client.p12 passphrase: {passphrase!r})",
        file=sys.stderr,
    )
    return pki


def _host_port(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _serve(
    config: SimulatorConfig, cert_dir: Path, passphrase: str, duration: float | None
) -> int:
    pki = _load_or_write_pki(cert_dir, config.environment, passphrase)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_simulator(config, pki=pki) as sim:
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
    config = _config(args)
    passphrase = args.p12_passphrase if args.p12_passphrase is not None else DEFAULT_P12_PASSPHRASE
    try:
        return trio.run(_serve, config, Path(args.cert_dir), passphrase, args.duration)
    except OSError as exc:
        # Port in use, unwritable certificate directory, ...: one line, not a traceback.
        raise UsageError(str(exc)) from None
