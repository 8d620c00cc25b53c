"""The HTTP/2 sender into the HTTP/2 simulator, one process, over real TLS on 127.0.0.1.

A first figure for the HTTP/2 path (not yet the side-by-side run with aioapns that
issue 12 asks for): notifications/s, outcomes, whether every accepted notification
was recorded exactly once, and peak RSS. Both ends run in this process, so the rate
is a lower bound for the sender alone.

    .venv/bin/python bench/http2.py --n 10000 --connections 1 --goaway-after 3000
"""

from __future__ import annotations

import argparse
import collections
import json
import resource
import time

import trio
from cryptography.hazmat.primitives.asymmetric import ec

from apns_legacy.client import Http2SenderConfig, open_http2_sender
from apns_legacy.h2wire import AppSettings, ProviderKey
from apns_legacy.simulator import Http2Faults, Http2SimulatorConfig, open_http2_simulator
from apns_legacy.wire import DeviceToken, Notification

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--goaway-after", type=int, default=None)
    args = parser.parse_args()
    print(json.dumps(trio.run(run, args.n, args.connections, args.goaway_after)))


if __name__ == "__main__":
    main()
