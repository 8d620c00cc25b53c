"""The bridge: binary in, HTTP/2 simulator out, against sending HTTP/2 directly.

Everything runs in this one process over real TLS on 127.0.0.1 (the load generator, the
bridge and the HTTP/2 simulator share one core), so the rates are lower bounds for the
bridge alone. Three measurements, each bounded by ``--n`` / ``--latency-n``:

* direct: the HTTP/2 sender into the simulator, ``--n`` notifications (the reference);
* bridged: pre-built command-2 frames over ``--clients`` TLS connections into the bridge
  (``--mode``), forwarded to the simulator, with ``--reject`` of them (a fraction)
  invalid upstream in ``exact`` mode (the client replays after each status 8, as a
  legacy client does); done when the simulator has recorded every valid one;
* latency: ``--latency-n`` pairs, one notification at a time direct and one through
  the bridge, alternating, each from the write (or ``submit``) until the simulator
  records it: the p50/p99 of each path, the median of the paired differences, and
  the difference of the two p99s.

    .venv/bin/python bench/bridge.py --n 10000 --clients 1 --latency-n 300
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import struct
import time
from pathlib import Path
from typing import Any

import trio
from cryptography.hazmat.primitives.asymmetric import ec

from apns_legacy.bridge import AppConfig, BridgeConfig, BridgeMode, UpstreamConfig, open_bridge
from apns_legacy.client import Http2SenderConfig, open_http2_sender
from apns_legacy.h2wire import AppSettings, ProviderKey
from apns_legacy.simulator import Http2Simulator, Http2SimulatorConfig, open_http2_simulator
from apns_legacy.tls import TestPKI, client_context, make_test_pki, open_tls_stream
from apns_legacy.wire import DeviceToken, Notification

TOPIC = "com.example.bench"
PAYLOAD = b'{"aps":{"alert":"Hello from the bridge bench"}}'


def frame(identifier: int, token: bytes, payload: bytes = PAYLOAD) -> bytes:
    items = (
        struct.pack("!BH", 1, len(token))
        + token
        + struct.pack("!BH", 2, len(payload))
        + payload
        + struct.pack("!BHI", 3, 4, identifier)
        + struct.pack("!BHB", 5, 1, 10)
    )
    return struct.pack("!BI", 2, len(items)) + items


def tokens(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(32) for _ in range(n)]


async def direct(sim: Http2Simulator, key: ProviderKey, n: int) -> float:
    assert sim.pki is not None
    config = Http2SenderConfig(
        host="localhost",
        port=sim.port,
        ca=sim.pki.ca_pem(),
        provider_key=key,
        settings=AppSettings(topic=TOPIC),
    )
    before = sim.stats.accepted
    start = time.perf_counter()
    # Outcomes go to a callback, as in the bridge: without one the sender keeps every
    # outcome for outcomes() to read, and RSS would measure that buffer.
    async with open_http2_sender(config, on_outcome=lambda outcome: None) as sender:
        for token in tokens(n, 1):
            await sender.submit(Notification(token=DeviceToken(token), payload=PAYLOAD))
    elapsed = time.perf_counter() - start
    assert sim.stats.accepted - before == n
    return n / elapsed


async def client(
    pki: TestPKI, address: tuple[str, int], items: list[bytes], bad: set[bytes]
) -> int:
    """Send ``items`` as a legacy client does: on status 8, reconnect and resend what
    followed the failed one (renumbered). Returns the error frames seen."""
    context = client_context(pki.client, ca=pki.ca_pem())
    pending = items
    errors = 0
    while pending:
        # Generous: a hundred clients handshake at once with everything in one process.
        stream = await open_tls_stream(
            *address, context, server_hostname="localhost", handshake_timeout=120
        )

        async def send(stream: trio.abc.Stream, pending: list[bytes]) -> None:
            # Built and written 1,000 frames at a time (not all at once: RSS would
            # grow with N for the client's buffer alone).
            for first in range(0, len(pending), 1000):
                chunk = pending[first : first + 1000]
                await stream.send_all(
                    b"".join(frame(i, token) for i, token in enumerate(chunk, first + 1))
                )
            # A final zero-length token: its status 2 proves everything before it resolved.
            await stream.send_all(frame(len(pending) + 1, b""))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send, stream, pending)
            answer = b""
            while len(answer) < 6:
                chunk = await stream.receive_some(6 - len(answer))
                if not chunk:
                    break
                answer += chunk
            nursery.cancel_scope.cancel()
        await trio.aclose_forcefully(stream)
        _, status, identifier = struct.unpack("!BBI", answer)
        if status == 2:
            return errors
        errors += 1
        assert status == 8
        assert pending[identifier - 1] in bad
        pending = pending[identifier:]
    return errors


async def bridged(
    sim: Http2Simulator,
    pki: TestPKI,
    address: tuple[str, int],
    n: int,
    clients: int,
    bad: set[bytes],
    all_tokens: list[bytes],
    recorded: int,
) -> tuple[float, int]:
    before = sim.stats.accepted
    share = [all_tokens[i::clients] for i in range(clients)]
    errors: list[int] = []
    start = time.perf_counter()

    async def one(items: list[bytes]) -> None:
        errors.append(await client(pki, address, items, bad))

    async with trio.open_nursery() as nursery:
        for items in share:
            nursery.start_soon(one, items)
    elapsed = time.perf_counter() - start
    assert sim.stats.accepted - before == recorded, (sim.stats.accepted - before, recorded)
    return n / elapsed, sum(errors)


async def latency(
    sim: Http2Simulator, key: ProviderKey, pki: TestPKI, address: tuple[str, int], count: int
) -> tuple[list[float], list[float]]:
    """Paired samples: one notification direct, one through the bridge, alternating
    which goes first, each timed from the write (or ``submit``) until the simulator
    records it. Measuring both paths side by side (not in two phases minutes apart)
    keeps the machine's load the same for both halves of each pair."""
    assert sim.pki is not None
    config = Http2SenderConfig(
        host="localhost",
        port=sim.port,
        ca=sim.pki.ca_pem(),
        provider_key=key,
        settings=AppSettings(topic=TOPIC),
    )
    context = client_context(pki.client, ca=pki.ca_pem())
    stream = await open_tls_stream(*address, context, server_hostname="localhost")
    direct_samples: list[float] = []
    bridged_samples: list[float] = []
    async with open_http2_sender(config) as sender:

        async def one_direct(token: bytes) -> None:
            target = sim.stats.accepted + 1
            start = time.perf_counter()
            await sender.submit(Notification(token=DeviceToken(token), payload=PAYLOAD))
            await sim.wait_for_accepted(target)
            direct_samples.append(time.perf_counter() - start)

        async def one_bridged(i: int, token: bytes) -> None:
            target = sim.stats.accepted + 1
            start = time.perf_counter()
            await stream.send_all(frame(i, token))
            await sim.wait_for_accepted(target)
            bridged_samples.append(time.perf_counter() - start)

        # One warm-up of each (connections, token signing), not counted.
        warm = tokens(2, 6)
        await one_direct(warm[0])
        await one_bridged(1, warm[1])
        direct_samples.clear()
        bridged_samples.clear()
        pairs = zip(tokens(count, 3), tokens(count, 4), strict=True)
        for i, (direct_token, bridged_token) in enumerate(pairs, 2):
            if i % 2:
                await one_direct(direct_token)
                await one_bridged(i, bridged_token)
            else:
                await one_bridged(i, bridged_token)
                await one_direct(direct_token)
    await stream.aclose()
    return direct_samples, bridged_samples


async def _trim(sim: Http2Simulator) -> None:
    while True:
        await trio.sleep(0.5)
        sim.accepted.clear()


def peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    key = ProviderKey(
        key_id="BENCHKEY01",
        team_id="BENCHTEAM1",
        private_key=ec.generate_private_key(ec.SECP256R1()),
    )
    mode = BridgeMode(args.mode)
    all_tokens = tokens(args.n, 2)
    bad = set(random.Random(5).sample(all_tokens, int(args.n * args.reject)))
    pki = make_test_pki(topic=TOPIC)
    sim_config = Http2SimulatorConfig(
        provider_keys={(key.team_id, key.key_id): key.public_key}, invalid_tokens=bad
    )
    async with open_http2_simulator(sim_config) as sim, trio.open_nursery() as trimmer:
        assert sim.pki is not None
        # The simulator keeps a record of every accepted notification (about 1 KiB
        # each); empty it as we go, so that peak RSS measures the bridge and the sender,
        # not the record. (Counts come from sim.stats, which stays.)
        trimmer.start_soon(_trim, sim)
        config = BridgeConfig(
            gateway=("127.0.0.1", 0),
            feedback=("127.0.0.1", 0),
            server=pki.server,
            client_ca=[pki.ca_certificate],
            mode=mode,
            apps=[AppConfig(topic=TOPIC, provider_key=key)],
            upstream=UpstreamConfig(host="localhost", port=sim.port, ca=sim.pki.ca_pem()),
            store=args.store,
        )
        direct_rate = await direct(sim, key, args.n)
        rss_after_direct = peak_rss_mib()
        async with open_bridge(config) as bridge:
            # feedback-only: no frames for upstream rejections, so the client never replays.
            expect = set() if mode is BridgeMode.FEEDBACK_ONLY else bad
            rate, errors = await bridged(
                sim,
                pki,
                bridge.gateway_address,
                args.n,
                args.clients,
                expect,
                all_tokens,
                args.n - len(bad),
            )
            matched = bridge.gateway.replay_matched
            lat_direct, lat_bridge = await latency(
                sim, key, pki, bridge.gateway_address, args.latency_n
            )
        trimmer.cancel_scope.cancel()
    paired = [b - d for d, b in zip(lat_direct, lat_bridge, strict=True)]
    return {
        "n": args.n,
        "mode": mode.value,
        "clients": args.clients,
        "store": None if args.store is None else str(args.store),
        "rejected_upstream": len(bad),
        "direct_per_second": round(direct_rate),
        "bridged_per_second": round(rate),
        "ratio": round(rate / direct_rate, 2),
        "error_frames": errors,
        "replays_matched": matched,
        "latency_samples": len(paired),
        "latency_direct_median_ms": ms(statistics.median(lat_direct)),
        "latency_direct_p99_ms": ms(percentile(lat_direct, 0.99)),
        "latency_bridged_median_ms": ms(statistics.median(lat_bridge)),
        "latency_bridged_p99_ms": ms(percentile(lat_bridge, 0.99)),
        # Of the pairs: the bridge's cost per notification under the same load.
        "added_median_ms": ms(statistics.median(paired)),
        # p99 of each path, then the difference (never a difference of medians of
        # unpaired runs: that is what once gave a negative figure).
        "added_p99_ms": ms(percentile(lat_bridge, 0.99) - percentile(lat_direct, 0.99)),
        "paired_added_p90_ms": ms(percentile(paired, 0.90)),
        "paired_added_p99_ms": ms(percentile(paired, 0.99)),
        # Peak RSS after the direct phase (sender and simulator only), and at the end.
        "peak_rss_after_direct_mib": rss_after_direct,
        "peak_rss_mib": peak_rss_mib(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--mode", choices=[m.value for m in BridgeMode], default="exact")
    parser.add_argument("--reject", type=float, default=0.005, help="fraction invalid upstream")
    parser.add_argument("--latency-n", type=int, default=200)
    parser.add_argument(
        "--store",
        type=Path,
        help="SQLite file for feedback and the replay ledger (default: memory only)",
    )
    args = parser.parse_args()
    print(json.dumps(trio.run(run, args)))


if __name__ == "__main__":
    main()
