"""HTTP/2 benchmarks: the sender into the simulator, and side by side with aioapns.

Two modes.

Default: the HTTP/2 sender and the HTTP/2 simulator in ONE process over real TLS on
127.0.0.1 (token auth, 3 BadDeviceToken and 5 Unregistered tokens, optional GOAWAY
after N answers): outcomes, whether every accepted notification was recorded exactly
once, notifications/s (a lower bound for the sender alone: both ends share a core).

    .venv/bin/python bench/http2.py --n 10000 --connections 1 --goaway-after 3000

``--compare``: each client in its own process against ``bench/h2_receiver.py`` (a
lean receiver in other processes that answers 200 without being the bottleneck; its
CPU time is printed), with the same payload, token auth (ES256 JWT) and number of
connections, one fresh receiver per run: notifications/s per process and per
connection, the client's CPU seconds, peak RSS. aioapns (``pip install -e
'.[bench]'``) connects only to Apple's host name and port: its worker runs on an
asyncio event loop whose ``getaddrinfo`` resolves api.push.apple.com:443 to the
receiver on 127.0.0.1 and refuses every other name (nothing can leave the machine);
it trusts the test CA through aioapns' own ``ssl_context`` argument (the test server
certificate also names api.push.apple.com). Nothing of aioapns is patched. (Its
``proxy_host`` route was tried first: on Python 3.11 it fails inside aioapns with
"'TransportSocket' object has no attribute 'send'".)

    .venv/bin/python bench/http2.py --compare --n 100000,400000 --connections 1
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import resource
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from apns_legacy.client import Http2SenderConfig, Outcome, open_http2_sender
from apns_legacy.h2wire import AppSettings, ProviderKey
from apns_legacy.simulator import Http2Faults, Http2SimulatorConfig, open_http2_simulator
from apns_legacy.tls import make_test_pki
from apns_legacy.wire import DeviceToken, Notification

HERE = Path(__file__).resolve().parent
TOPIC = "com.example.bench"

PAYLOAD = b'{"aps":{"alert":"Hello from the HTTP/2 bench"}}'
BAD = (11, 2_222, 7_777)
GONE = (5, 1_000, 3_001, 6_000, 9_999)


def token(i: int) -> DeviceToken:
    return DeviceToken.from_bytes(i.to_bytes(32, "big"))


async def run(n: int, connections: int, goaway_after: int | None) -> dict[str, object]:
    key = ProviderKey(
        key_id="BENCHKEY01",
        team_id="BENCHTEAM1",
        private_key=ec.generate_private_key(ec.SECP256R1()),
    )
    sim_config = Http2SimulatorConfig(
        provider_keys={(key.team_id, key.key_id): key.public_key},
        invalid_tokens=[token(i).value for i in BAD if i < n],
        uninstalled_tokens={token(i).value.hex(): None for i in GONE if i < n},
        faults=Http2Faults(goaway_after=goaway_after),
    )
    async with open_http2_simulator(sim_config) as sim:
        assert sim.pki is not None
        config = Http2SenderConfig(
            host="localhost",
            port=sim.port,
            ca=sim.pki.ca_pem(),
            provider_key=key,
            settings=AppSettings(topic="com.example.bench"),
            connections=connections,
        )
        kinds: collections.Counter[str] = collections.Counter()
        start = time.perf_counter()
        async with open_http2_sender(config) as sender:
            for i in range(n):
                await sender.submit(Notification(token=token(i), payload=PAYLOAD))
            async for outcome in sender.outcomes():
                kinds[f"{outcome.kind.value} {outcome.reason or ''}".strip()] += 1
                if sum(kinds.values()) == n:
                    break
        seconds = time.perf_counter() - start
        recorded = collections.Counter(record.token for record in sim.accepted)
    return {
        "n": n,
        "connections": connections,
        "goaway_after": goaway_after,
        "seconds": round(seconds, 3),
        "per_second": round(n / seconds),
        "outcomes": dict(kinds),
        "recorded": len(recorded),
        "recorded_twice": sum(1 for count in recorded.values() if count > 1),
        "possible_duplicates": sender.stats.possible_duplicates,
        "goaways": sim.stats.goaways,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


# -- --compare: one client per process against bench/h2_receiver.py -----------------


def _usage() -> dict[str, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
    }


def _key(pki_dir: Path) -> ProviderKey:
    return ProviderKey.from_p8(
        (pki_dir / "AuthKey.p8").read_bytes(), key_id="BENCHKEY01", team_id="BENCHTEAM1"
    )


async def run_ours(
    port: int, pki_dir: Path, n: int, connections: int, deadline: float
) -> dict[str, object]:
    config = Http2SenderConfig(
        host="localhost",
        port=port,
        ca=(pki_dir / "ca.pem").read_bytes(),
        provider_key=_key(pki_dir),
        settings=AppSettings(topic=TOPIC),
        connections=connections,
    )
    kinds: collections.Counter[str] = collections.Counter()

    def settled(outcome: Outcome) -> None:
        kinds[outcome.kind.value] += 1

    done = 0
    start = time.perf_counter()
    with trio.move_on_after(deadline) as scope:
        async with open_http2_sender(config, on_outcome=settled) as sender:
            for i in range(n):
                await sender.submit(Notification(token=token(i), payload=PAYLOAD))
                done += 1
    seconds = time.perf_counter() - start
    return {
        "client": "apns_legacy",
        "n": n,
        "seconds": round(seconds, 3),
        "timed_out": scope.cancelled_caught,
        "outcomes": dict(kinds),
        "per_second": round(kinds["accepted"] / seconds),
        "connections_opened": sender.stats.connections_opened,
        **_usage(),
    }


async def run_aioapns(
    port: int, pki_dir: Path, n: int, connections: int, deadline: float
) -> dict[str, object]:
    from aioapns import APNs, NotificationRequest

    context = ssl.create_default_context(cafile=str(pki_dir / "ca.pem"))
    context.set_alpn_protocols(["h2"])
    client = APNs(
        key=(pki_dir / "AuthKey.p8").read_text(),
        key_id="BENCHKEY01",
        team_id="BENCHTEAM1",
        topic=TOPIC,
        max_connections=connections,
        ssl_context=context,
    )
    message = json.loads(PAYLOAD)
    kinds: collections.Counter[str] = collections.Counter()
    next_index = 0

    async def worker() -> None:
        # Each worker sends one notification at a time, as aioapns is used; together
        # they keep up to 1,000 streams in flight per connection (its stream limit).
        nonlocal next_index
        while next_index < n:
            i = next_index
            next_index += 1
            request = NotificationRequest(device_token=token(i).value.hex(), message=message)
            result = await client.send_notification(request)
            kinds["accepted" if result.is_successful else f"status {result.status}"] += 1

    start = time.perf_counter()
    timed_out = False
    try:
        await asyncio.wait_for(
            asyncio.gather(*(worker() for _ in range(1000 * connections))), deadline
        )
    except TimeoutError:
        timed_out = True
    seconds = time.perf_counter() - start
    return {
        "client": "aioapns",
        "n": n,
        "seconds": round(seconds, 3),
        "timed_out": timed_out,
        "outcomes": dict(kinds),
        "per_second": round(kinds["accepted"] / seconds),
        **_usage(),
    }


class LoopbackLoop(asyncio.SelectorEventLoop):
    """An event loop on which Apple's production host is the bench receiver.

    ``api.push.apple.com:443`` resolves to ``127.0.0.1:<receiver port>``; any other
    name fails, so a client under test can reach nothing else."""

    receiver_port = 0

    async def getaddrinfo(  # type: ignore[override]
        self, host: object, port: object, **_: object
    ) -> list[tuple[int, int, int, str, tuple[str, int]]]:
        if host == "api.push.apple.com" and port == 443:
            return [
                (
                    socket.AF_INET,
                    socket.SOCK_STREAM,
                    socket.IPPROTO_TCP,
                    "",
                    ("127.0.0.1", self.receiver_port),
                )
            ]
        raise OSError(f"bench: {host}:{port} is not the receiver")


def worker_main(args: argparse.Namespace) -> None:
    pki_dir = Path(args.pki)
    if args.worker == "apns_legacy":
        result = trio.run(run_ours, args.port, pki_dir, args.n, args.connections, args.deadline)
    else:
        LoopbackLoop.receiver_port = args.port
        with asyncio.Runner(loop_factory=LoopbackLoop) as runner:
            result = runner.run(
                run_aioapns(args.port, pki_dir, args.n, args.connections, args.deadline)
            )
    print(json.dumps(result), flush=True)


def one_run(
    client: str, pki_dir: Path, n: int, connections: int, deadline: float
) -> dict[str, object]:
    receiver = subprocess.Popen(
        [sys.executable, str(HERE / "h2_receiver.py"), "--pki", str(pki_dir), "--echo-apns-id"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert receiver.stdout is not None
        assert receiver.stdin is not None
        port = json.loads(receiver.stdout.readline())["port"]
        command = [
            sys.executable, __file__, "--worker", client, "--port", str(port),
            "--pki", str(pki_dir), "--n", str(n), "--connections", str(connections),
            "--deadline", str(deadline),
        ]  # fmt: skip
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=deadline + 60, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{client} worker failed: {done.stderr[-2000:]}")
        result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
        receiver.stdin.close()
        seen = json.loads(receiver.stdout.readline())
        receiver.wait(timeout=60)
    finally:
        if receiver.poll() is None:
            receiver.kill()
    result["receiver"] = seen
    opened = int(seen["connections"]) or 1
    result["connections"] = opened
    result["per_connection"] = round(int(str(result["per_second"])) / opened)
    return result


def compare(args: argparse.Namespace) -> None:
    clients = args.clients.split(",")
    sizes = [int(x) for x in str(args.n).split(",")]
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as folder:
        pki_dir = Path(folder)
        pki = make_test_pki(server_names=("localhost", "127.0.0.1", "api.push.apple.com"))
        pki.write(pki_dir, p12_passphrase=b"bench")
        key = ec.generate_private_key(ec.SECP256R1())
        (pki_dir / "AuthKey.p8").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        os.chmod(pki_dir / "AuthKey.p8", 0o600)
        for n in sizes:
            for client in clients:
                for _ in range(args.runs):
                    row = one_run(client, pki_dir, n, args.connections, args.deadline)
                    print(json.dumps(row), file=sys.stderr, flush=True)
                    rows.append(row)
    header = (
        "| client | n | connections | notifications/s | per connection | client CPU s "
        "| per client CPU s | receiver CPU s | peak RSS MiB | outcomes |"
    )
    print(header)
    print("|" + "---|" * 10)
    for row in rows:
        receiver = row["receiver"]
        assert isinstance(receiver, dict)
        print(
            f"| {row['client']} | {row['n']:,} | {row['connections']} | {row['per_second']:,} "
            f"| {row['per_connection']:,} | {row['cpu_seconds']} "
            f"| {round(int(str(row['n'])) / float(str(row['cpu_seconds']))):,} "
            f"| {receiver['cpu_seconds']} "
            f"| {row['peak_rss_mib']} | {row['outcomes']}"
            + (" (timed out)" if row["timed_out"] else "")
            + " |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", default="10000", help="notifications (--compare: a comma list)")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--goaway-after", type=int, default=None)
    parser.add_argument("--compare", action="store_true", help="side by side with aioapns")
    parser.add_argument("--clients", default="apns_legacy,aioapns")
    parser.add_argument("--runs", type=int, default=1, help="--compare: runs of each case")
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds per run")
    parser.add_argument("--worker", choices=["apns_legacy", "aioapns"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--pki", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.n = int(args.n)
        worker_main(args)
    elif args.compare:
        compare(args)
    else:
        print(json.dumps(trio.run(run, int(args.n), args.connections, args.goaway_after)))


if __name__ == "__main__":
    main()
