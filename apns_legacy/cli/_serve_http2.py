"""``apns-legacy serve --http2``: the HTTP/2 APNs simulator until stopped.

The ready line on stdout is ``{"http2": "HOST:PORT", "cert_dir": "DIR"}``; it stops
cleanly (exit 0) on Ctrl-C, SIGTERM or after ``--for`` seconds, like ``serve``, with a
line of what it did (answers by reason, GOAWAYs, refused streams, drops) on stderr.

The HTTP/2 faults of :class:`Http2Faults` and the stream settings of
:class:`Http2SimulatorConfig` are flags here, in the style of ``serve``'s binary ones
(every fault applies for the whole run); the binary gateway's fault flags are refused
with ``--http2``, and the HTTP/2 ones without it, naming the flag.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final

import trio
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

from ..simulator import (
    DEFAULT_MAX_CONCURRENT_STREAMS,
    Http2Faults,
    Http2SimulatorConfig,
    Http2Stats,
    ServerCertificates,
    open_http2_simulator,
)
from ..tls import Environment
from ..wire import DeviceToken, ProtocolError
from ._exit import EXIT_OK, UsageError
from ._text import plural

#: The binary gateway's fault flags (argparse destination: flag), refused with --http2.
BINARY_FAULTS: Final = {
    "shutdown_after": "--shutdown-after",
    "reset_after": "--reset-after",
    "drop_after_bytes": "--drop-after-bytes",
    "error_delay": "--error-delay",
    "split_errors": "--split-errors",
    "read_rate": "--read-rate",
    "stop_reading_after": "--stop-reading-after",
    "latency": "--latency",
}
#: The HTTP/2 flags (destination: flag), refused without --http2.
HTTP2_FLAGS: Final = {
    "goaway_after": "--goaway-after",
    "goaway_reason": "--goaway-reason",
    "status_every": "--status-every",
    "fault_status": "--fault-status",
    "refuse_every": "--refuse-every",
    "drop_after": "--drop-after",
    "lower_after_rejection": "--lower-after-rejection",
    "max_concurrent_streams": "--max-concurrent-streams",
}
#: SETTINGS_MAX_CONCURRENT_STREAMS is a 31-bit value in practice (RFC 9113 6.5.2).
_MAX_STREAMS: Final = 2**31 - 1


def add_http2_arguments(parser: argparse.ArgumentParser) -> None:
    """``serve``'s flags for the HTTP/2 simulator's faults and stream settings."""
    group = parser.add_argument_group(
        "HTTP/2 faults and settings (with --http2; each applies for the whole run)"
    )
    add = group.add_argument
    add("--goaway-after", type=int, metavar="N",
        help="after answering N requests on a connection, GOAWAY (last stream id: the last "
        "answered) and close it")  # fmt: skip
    add("--goaway-reason", metavar="REASON",
        help="the GOAWAY's JSON reason (default Shutdown)")  # fmt: skip
    add("--status-every", type=int, metavar="N",
        help="answer every Nth request (over the run) with --fault-status instead")  # fmt: skip
    add("--fault-status", type=int, choices=[429, 500, 503], metavar="429|500|503",
        help="the status of --status-every: 429 TooManyRequests, 500 InternalServerError, "
        "503 ServiceUnavailable (default 503)")  # fmt: skip
    add("--refuse-every", type=int, metavar="N",
        help="reset every Nth request with RST_STREAM REFUSED_STREAM")  # fmt: skip
    add("--drop-after", type=int, metavar="N",
        help="close the connection carrying the Nth request (TCP, no answer), once")  # fmt: skip
    add("--lower-after-rejection", action="store_true", default=None,
        help="lower SETTINGS_MAX_CONCURRENT_STREAMS to 1 after each rejection until the "
        "next success, as APNs does")  # fmt: skip
    add("--max-concurrent-streams", type=int, metavar="N",
        help=f"SETTINGS_MAX_CONCURRENT_STREAMS once authenticated (default "
        f"{DEFAULT_MAX_CONCURRENT_STREAMS}; 1 on a token connection until a valid "
        "token)")  # fmt: skip


def check_protocol_flags(args: argparse.Namespace) -> None:
    """Refuse binary fault flags with ``--http2`` and HTTP/2 flags without it.

    Raises:
        UsageError: naming the flag.
    """
    if args.http2:
        for dest, flag in BINARY_FAULTS.items():
            if getattr(args, dest) is not None:
                raise UsageError(f"{flag} is a fault of the binary gateway; not with --http2")
        return
    for dest, flag in HTTP2_FLAGS.items():
        if getattr(args, dest) is not None:
            raise UsageError(f"{flag} is for the HTTP/2 simulator; add --http2")
    if args.provider_key:
        raise UsageError("--provider-key is for the HTTP/2 simulator; add --http2")


def _faults(args: argparse.Namespace) -> Http2Faults:
    for flag, value in (
        ("--goaway-after", args.goaway_after),
        ("--status-every", args.status_every),
        ("--refuse-every", args.refuse_every),
        ("--drop-after", args.drop_after),
    ):
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be at least 1, not {value}")
    if args.fault_status is not None and args.status_every is None:
        raise UsageError("--fault-status needs --status-every N (which requests get it)")
    if args.goaway_reason is not None:
        if args.goaway_after is None:
            raise UsageError("--goaway-reason needs --goaway-after N (when to send the GOAWAY)")
        if not args.goaway_reason or not args.goaway_reason.isprintable():
            raise UsageError(f"--goaway-reason must be printable text, not {args.goaway_reason!r}")
    return Http2Faults(
        goaway_after=args.goaway_after,
        goaway_reason=args.goaway_reason or "Shutdown",
        status_every=args.status_every,
        fault_status=args.fault_status or 503,
        refuse_every=args.refuse_every,
        drop_after=args.drop_after,
    )


def _max_streams(value: int | None) -> int:
    if value is None:
        return DEFAULT_MAX_CONCURRENT_STREAMS
    if not 1 <= value <= _MAX_STREAMS:
        raise UsageError(f"--max-concurrent-streams must be 1 to {_MAX_STREAMS}, not {value}")
    return value


def _provider_keys(texts: list[str]) -> dict[tuple[str, str], ec.EllipticCurvePublicKey]:
    keys: dict[tuple[str, str], ec.EllipticCurvePublicKey] = {}
    for text in texts:
        team, _, rest = text.partition(":")
        key_id, _, path = rest.partition(":")
        if not (team and key_id and path):
            raise UsageError(f"--provider-key {text!r}: expected TEAM_ID:KEY_ID:FILE")
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise UsageError(f"--provider-key {path}: cannot read ({exc.strerror})") from None
        key: object
        try:
            key = load_pem_private_key(data, password=None).public_key()
        except (ValueError, TypeError):
            try:
                key = load_pem_public_key(data)
            except ValueError:
                raise UsageError(
                    f"--provider-key {path}: not a PEM .p8 private key or PEM public key"
                ) from None
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(
            key.curve, ec.SECP256R1
        ):
            raise UsageError(f"--provider-key {path}: must be a P-256 (ES256) key")
        keys[(team, key_id)] = key
    return keys


def _hex_tokens(flag: str, texts: list[str]) -> list[str]:
    try:
        return [DeviceToken.from_hex(text, allow_long=True).value.hex() for text in texts]
    except ProtocolError as exc:
        raise UsageError(f"{flag}: {exc}") from None


def _stopped_line(stats: Http2Stats) -> str:
    """What the simulator did, e.g. ``stopped: 3 connections, 10 accepted, 2 rejected
    (TooManyRequests 2), 2 GOAWAYs, 1 refused stream, 1 dropped``."""
    rejected = f"{stats.rejected} rejected"
    if stats.by_reason:
        rejected += " (" + ", ".join(f"{k} {v}" for k, v in sorted(stats.by_reason.items())) + ")"
    return (
        f"stopped: {plural(stats.connections, 'connection')}, {stats.accepted} accepted, "
        f"{rejected}, {plural(stats.goaways, 'GOAWAY')}, "
        f"{plural(stats.refused_streams, 'refused stream')}, {stats.drops} dropped"
    )


def run_http2(
    args: argparse.Namespace,
    *,
    passphrase: str,
    load_certificates: Callable[[Path, Environment, str], ServerCertificates],
) -> int:
    """Run the HTTP/2 simulator from ``serve``'s parsed arguments (``--http2``).

    ``serve`` passes its own certificate-directory loader, so both read and write
    ``--cert-dir`` the same way.
    """
    if not 0 <= args.http2_port <= 65535:
        raise UsageError(f"--http2-port must be 0..65535, not {args.http2_port}")
    config = Http2SimulatorConfig(
        host=args.host,
        port=args.http2_port,
        provider_keys=_provider_keys(args.provider_key),
        invalid_tokens=_hex_tokens("--invalid-token", args.invalid_token),
        uninstalled_tokens=dict.fromkeys(
            _hex_tokens("--uninstalled-token", args.uninstalled_token)
        ),
        record_path=Path(args.record) if args.record else None,
        keep_records=False,
        faults=_faults(args),
        lower_after_rejection=bool(args.lower_after_rejection),
        max_concurrent_streams=_max_streams(args.max_concurrent_streams),
    )
    cert_dir = Path(args.cert_dir)
    certificates = load_certificates(cert_dir, Environment(args.environment), passphrase)

    async def serve() -> int:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with open_http2_simulator(config, certificates=certificates) as sim:
                print(
                    json.dumps(
                        {"http2": f"{sim.address[0]}:{sim.address[1]}", "cert_dir": str(cert_dir)}
                    ),
                    flush=True,
                )
                print("serving HTTP/2; stop with Ctrl-C or SIGTERM", file=sys.stderr)
                duration = args.duration if args.duration is not None else math.inf
                with trio.move_on_after(duration):
                    async for signum in signals:
                        print(f"got {signal.Signals(signum).name}, stopping", file=sys.stderr)
                        break
                stats = sim.stats
        print(_stopped_line(stats), file=sys.stderr)
        return EXIT_OK

    try:
        return trio.run(serve)
    except OSError as exc:
        raise UsageError(str(exc)) from None
