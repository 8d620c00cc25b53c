"""The sender under round-trip latency and stale tokens: the scenario table of real-world speed.

Usage: python bench/latency.py [--n 20000] [--rates 0,0.005,0.02,0.1] [--rtts 0,20,100]
                               [--connections 1,4] [--deadline 120] [--spare no|yes|both]

For each row it sends N notifications over real TLS to the simulator with a latency fault
(``rtt / 2`` one way, on every byte and the handshake) and a share of invalid tokens spread
evenly through the input, and reports, from the simulator's record rather than the sender's
word: wall time, notifications/s, frames written per notification, reconnects, rejections
not reported as such ("missed": an error response that had to be inferred), notifications
recorded twice, and whether nothing accepted was missing from the record.

The bound column is physics for a sender that reconnects after each rejection: with c
connections, r rejections and round trip t, each rejection costs at least one round trip
for the error response to arrive, one for TCP and two for a TLS 1.2 handshake, so
``r * 4t / c``. The "no-handshake bound" (``r * t / c``) is what a sender with a warm spare
connection could reach. Every row is bounded: N notifications and ``--deadline`` seconds
(a row that runs out is reported as such, with what it had).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from typing import Any

import trio

from apns_legacy import DeviceToken, Notification, SenderConfig, open_sender
from apns_legacy.simulator import Fault, open_simulator
from apns_legacy.tls import make_test_pki


def token_for(i: int) -> DeviceToken:
    return DeviceToken(i.to_bytes(4, "big") * 8)


def invalid_positions(n: int, rate: float) -> list[int]:
    count = round(n * rate)
    if not count:
        return []
    step = n / count
    return [int(step / 2 + k * step) for k in range(count)]


async def run_row(
    pki: Any, n: int, rate: float, rtt_ms: float, connections: int, deadline: float, spare: bool
) -> dict[str, Any]:
    bad = invalid_positions(n, rate)
    faults = [Fault.latency(rtt_ms / 2000, times=None)] if rtt_ms else []
    items = [
        Notification(token=token_for(i), payload=b'{"aps":{"alert":"n%d"}}' % i) for i in range(n)
    ]
    outcomes: list[Any] = []
    started = time.perf_counter()
    timed_out = False
    async with open_simulator(
        pki=pki, invalid_tokens=[token_for(i).value for i in bad], faults=faults
    ) as sim:
        host, port = sim.gateway_address
        with trio.move_on_after(deadline) as scope:
            async with open_sender(
                sim.client_context(), host=host, port=port,
                config=SenderConfig(connections=connections, spare_connection=spare),
                on_outcome=outcomes.append,
            ) as sender:  # fmt: skip
                await sender.submit_many(items)
                await sender.flush()
        timed_out = scope.cancelled_caught
        seconds = time.perf_counter() - started
        counts = collections.Counter(record.token for record in sim.accepted)
    stats = sender.stats
    bad_hex = {token_for(i).hex for i in bad}
    rejected = {o.notification.token.hex for o in outcomes if o.kind.value == "rejected"}
    accepted = {o.notification.token.hex for o in outcomes if o.accepted}
    t = rtt_ms / 1000
    return {
        "n": n,
        "invalid": len(bad),
        "rtt_ms": rtt_ms,
        "connections": connections,
        "spare": spare,
        "seconds": round(seconds, 2),
        "per_s": round(stats.accepted / seconds) if seconds else 0,
        "frames_per_notification": round(stats.written / n, 2),
        "reconnects": stats.reconnects,
        "spares_used": stats.spares_used,
        "tls_resumed": stats.tls_resumed,
        "missed": len(bad_hex - rejected) if not timed_out else None,
        "recorded_twice": sum(1 for c in counts.values() if c > 1),
        "nothing_lost": accepted <= set(counts),
        "bound_s": round(len(bad) * 4 * t / connections, 2),
        "no_handshake_bound_s": round(len(bad) * t / connections, 2),
        "timed_out": timed_out,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--rates", default="0,0.005,0.02,0.1")
    parser.add_argument("--rtts", default="0,20,100", help="round trips in ms")
    parser.add_argument("--connections", default="1,4")
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds per row")
    parser.add_argument(
        "--spare", default="no", help="spare connections: no, yes, or both (a row for each)"
    )
    args = parser.parse_args(argv)
    pki = make_test_pki()
    columns = ["n", "invalid", "rtt_ms", "connections", "spare", "seconds", "per_s",
               "frames_per_notification", "reconnects", "spares_used", "tls_resumed",
               "missed", "recorded_twice",
               "nothing_lost", "bound_s", "no_handshake_bound_s", "timed_out"]  # fmt: skip
    print("| " + " | ".join(columns) + " |")
    print("|---" * len(columns) + "|")
    ok = True
    for rate in (float(r) for r in args.rates.split(",")):
        for rtt in (float(r) for r in args.rtts.split(",")):
            for c in (int(x) for x in args.connections.split(",")):
                for spare in {"no": [False], "yes": [True], "both": [False, True]}[args.spare]:
                    row = trio.run(run_row, pki, args.n, rate, rtt, c, args.deadline, spare)
                    ok = ok and row["nothing_lost"] and not row["missed"]
                    print("| " + " | ".join(str(row[k]) for k in columns) + " |", flush=True)
                    print(json.dumps(row), file=sys.stderr, flush=True)
    print("nothing lost, no rejection missed" if ok else "PROBLEM: see above")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
