"""``apns-legacy serve --http2``: the HTTP/2 APNs simulator until stopped.

The ready line on stdout is ``{"http2": "HOST:PORT", "cert_dir": "DIR"}``; it stops
cleanly (exit 0) on Ctrl-C, SIGTERM or after ``--for`` seconds, like ``serve``.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import trio
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

from ..simulator import Http2SimulatorConfig, ServerCertificates, open_http2_simulator
from ..tls import Environment
from ..wire import DeviceToken, ProtocolError
from ._exit import EXIT_OK, UsageError


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
        print(
            f"stopped: {stats.connections} connections, {stats.accepted} accepted, "
            f"{stats.rejected} rejected",
            file=sys.stderr,
        )
        return EXIT_OK

    try:
        return trio.run(serve)
    except OSError as exc:
        raise UsageError(str(exc)) from None
