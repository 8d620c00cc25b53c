"""The bridge: binary in, HTTP/2 simulator out, against sending HTTP/2 directly.

Everything runs in this one process over real TLS on 127.0.0.1 (the load generator, the
bridge and the HTTP/2 simulator share one core), so the rates are lower bounds for the
bridge alone. Three measurements, each bounded by ``--n`` / ``--latency-n``:

* direct: the HTTP/2 sender into the simulator, ``--n`` notifications (the reference);
* bridged: pre-built command-2 frames over ``--clients`` TLS connections into the bridge
  (``--mode``), forwarded to the simulator, with ``--reject`` of them (a fraction)
  invalid upstream in ``exact`` mode (the client replays after each status 8, as a
  legacy client does); done when the simulator has recorded every valid one;
* latency: one notification at a time, from the write (or ``submit``) until the
  simulator records it, direct and through the bridge: the median and p99 difference
  is what the bridge adds.

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
    async with open_http2_sender(config) as sender:
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
        data = b"".join(frame(i, token) for i, token in enumerate(pending, 1))
        # A final zero-length token: its status 2 proves everything before it resolved.
        data += frame(len(pending) + 1, b"")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.send_all, data)
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


async def latency_direct(sim: Http2Simulator, key: ProviderKey, count: int) -> list[float]:
    assert sim.pki is not None
    config = Http2SenderConfig(
        host="localhost",
        port=sim.port,
        ca=sim.pki.ca_pem(),
        provider_key=key,
        settings=AppSettings(topic=TOPIC),
    )
    samples: list[float] = []
    async with open_http2_sender(config) as sender:
        for token in tokens(count, 3):
            target = sim.stats.accepted + 1
            start = time.perf_counter()
            await sender.submit(Notification(token=DeviceToken(token), payload=PAYLOAD))
            await sim.wait_for_accepted(target)
            samples.append(time.perf_counter() - start)
    return samples


async def latency_bridged(
    sim: Http2Simulator, pki: TestPKI, address: tuple[str, int], count: int
) -> list[float]:
    context = client_context(pki.client, ca=pki.ca_pem())
    stream = await open_tls_stream(*address, context, server_hostname="localhost")
    samples: list[float] = []
    for i, token in enumerate(tokens(count, 4), 1):
        target = sim.stats.accepted + 1
        start = time.perf_counter()
        await stream.send_all(frame(i, token))
        await sim.wait_for_accepted(target)
        samples.append(time.perf_counter() - start)
    await stream.aclose()
    return samples


async def _trim(sim: Http2Simulator) -> None:
    while True:
        await trio.sleep(0.5)
        sim.accepted.clear()


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
        )
        direct_rate = await direct(sim, key, args.n)
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
            lat_bridge = await latency_bridged(sim, pki, bridge.gateway_address, args.latency_n)
            matched = bridge.gateway.replay_matched
        lat_direct = await latency_direct(sim, key, args.latency_n)
        trimmer.cancel_scope.cancel()
    median_added = statistics.median(lat_bridge) - statistics.median(lat_direct)
    p99_added = percentile(lat_bridge, 0.99) - percentile(lat_direct, 0.99)
    return {
        "n": args.n,
        "mode": mode.value,
        "clients": args.clients,
        "rejected_upstream": len(bad),
        "direct_per_second": round(direct_rate),
        "bridged_per_second": round(rate),
        "ratio": round(rate / direct_rate, 2),
        "error_frames": errors,
        "replays_matched": matched,
        "latency_direct_median_ms": round(statistics.median(lat_direct) * 1000, 3),
        "latency_bridged_median_ms": round(statistics.median(lat_bridge) * 1000, 3),
        "added_median_ms": round(median_added * 1000, 3),
        "added_p99_ms": round(p99_added * 1000, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--mode", choices=[m.value for m in BridgeMode], default="exact")
    parser.add_argument("--reject", type=float, default=0.005, help="fraction invalid upstream")
    parser.add_argument("--latency-n", type=int, default=200)
    args = parser.parse_args()
    print(json.dumps(trio.run(run, args)))


if __name__ == "__main__":
    main()
