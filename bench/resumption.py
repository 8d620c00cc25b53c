"""What TLS session resumption saves per connection: full against resumed handshakes.

Usage: python bench/resumption.py [--count 200] [--rtts 0,20] [--tls 1.2,1.3]

For each round trip and TLS version it opens ``--count`` connections to the simulator's
gateway one after another with ``open_tls_stream`` (TCP connect plus handshake, the
latency fault on every byte), first without a session cache (every handshake a full
one), then with one (every handshake after the first resumes), and prints the median
and 90th percentile of the connect time and the CPU time per connection (this process
runs both ends, so CPU is the sum of client and server). Each connection writes a
confirmation probe and reads the answer before closing, as the sender's connections
do (TLS 1.3 tickets arrive then). Bounded: ``--count`` connections per row.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import trio

from apns_legacy.simulator import Fault, open_simulator
from apns_legacy.tls import TestPKI, TLSSessionCache, make_test_pki, open_tls_stream
from apns_legacy.wire import Command, encode_probe


async def run_row(
    pki: TestPKI, count: int, rtt_ms: float, tls13: bool, resume: bool
) -> dict[str, Any]:
    faults = [Fault.latency(rtt_ms / 2000, times=None)] if rtt_ms else []
    times: list[float] = []
    resumed = 0
    async with open_simulator(pki=pki, faults=faults, allow_tls13=tls13) as sim:
        context = sim.client_context()
        host, port = sim.gateway_address
        sessions = TLSSessionCache() if resume else None
        cpu = time.process_time()
        for _ in range(count):
            started = trio.current_time()
            stream = await open_tls_stream(host, port, context, sessions=sessions)
            times.append(trio.current_time() - started)
            resumed += stream.session_reused
            await stream.send_all(encode_probe(Command.FRAME, 1))
            await stream.receive_some()
            await stream.aclose()
        cpu = time.process_time() - cpu
    times.sort()
    return {
        "rtt_ms": rtt_ms,
        "tls": "1.3" if tls13 else "1.2",
        "resume": resume,
        "resumed": resumed,
        "median_ms": round(statistics.median(times) * 1000, 2),
        "p90_ms": round(times[int(0.9 * (len(times) - 1))] * 1000, 2),
        "cpu_ms_per_connection": round(cpu / count * 1000, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--rtts", default="0,20", help="round trips in ms")
    parser.add_argument("--tls", default="1.2,1.3")
    args = parser.parse_args(argv)
    pki = make_test_pki()
    columns = ["rtt_ms", "tls", "resume", "resumed", "median_ms", "p90_ms",
               "cpu_ms_per_connection"]  # fmt: skip
    print("| " + " | ".join(columns) + " |")
    print("|---" * len(columns) + "|")
    for rtt in (float(r) for r in args.rtts.split(",")):
        for version in args.tls.split(","):
            for resume in (False, True):
                row = trio.run(run_row, pki, args.count, rtt, version == "1.3", resume)
                print("| " + " | ".join(str(row[k]) for k in columns) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
