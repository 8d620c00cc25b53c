"""Loss and duplicate figures of the sender under each fault, against the simulator.

Usage: python bench/scenarios.py [--n 10000] [--only TEXT]

For each scenario it sends N notifications over real TLS on 127.0.0.1 and compares the
sender's outcomes with what the simulator recorded:

* lost: accepted by the sender but never recorded by the simulator (must be 0);
* duplicated: recorded more than once (only allowed where the sender flagged the
  notification as a possible duplicate);
* unflagged duplicates: duplicated but not flagged (must be 0);
* unconfirmed: failed because the gateway never answered the confirmation probe (the
  sender does not claim to know their fate).

Every scenario is bounded: N notifications (fewer where it says so) and a 300 s deadline.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from typing import Any

import trio

from apns_legacy import Command, DeviceToken, Notification, SenderConfig, open_sender
from apns_legacy.simulator import ErrorClose, Fault, FaultScope, open_simulator
from apns_legacy.tls import make_test_pki


def token_for(i: int) -> DeviceToken:
    return DeviceToken(i.to_bytes(4, "big") * 8)


Scenario = tuple[str, dict[str, Any], SenderConfig, int]


def scenarios(n: int) -> list[Scenario]:
    def fast(**overrides: Any) -> SenderConfig:
        return SenderConfig(backoff_initial=0.01, **overrides)

    invalid = [token_for(i).value for i in (n // 5, n // 2, 3 * n // 4)]
    delayed: list[Scenario] = [
        (
            f"error frames delayed {delay} s, {c} connection{'s' if c > 1 else ''}",
            {"invalid_tokens": invalid, "faults": [Fault.delay_errors(delay)]},
            fast(connections=c),
            n,
        )
        for delay in (0.5, 1.5, 3.0, 5.0)
        for c in (1, 4)
    ]
    base: list[tuple[str, dict[str, Any], SenderConfig]] = [
        ("3 invalid tokens, 1 connection", {"invalid_tokens": invalid}, fast()),
        (
            "3 invalid tokens, 4 connections",
            {"invalid_tokens": invalid},
            fast(connections=4),
        ),
        (
            "3 invalid tokens, command 1",
            {"invalid_tokens": invalid},
            fast(command=Command.ENHANCED),
        ),
        (
            "shutdown (10) after n/3",
            {"faults": [Fault.shutdown_after(n // 3, per=FaultScope.SERVER)]},
            fast(),
        ),
        (
            "reset (RST) after 2n/5",
            {"faults": [Fault.reset_after(notifications=2 * n // 5)]},
            fast(),
        ),
        (
            "reset (RST) after 2n/5, 4 connections",
            {"faults": [Fault.reset_after(notifications=2 * n // 5, per=FaultScope.SERVER)]},
            fast(connections=4),
        ),
        (
            "slow reader (2 MB/s)",
            {"faults": [Fault.slow_reader(2_000_000)]},
            fast(window_size=2_000),
        ),
        (
            "slow reader (100 KB/s), 2 invalid tokens",
            {"invalid_tokens": invalid[1:], "faults": [Fault.slow_reader(100_000)]},
            fast(),
        ),
        (
            "handshake refused twice",
            {"faults": [Fault.refuse_handshake(times=2)]},
            fast(),
        ),
        (
            "command 0, 1 invalid token",
            {"invalid_tokens": invalid[:1]},
            fast(command=Command.SIMPLE),
        ),
    ]
    found: list[Scenario] = [(name, options, config, n) for name, options, config in base]
    faults: list[tuple[str, dict[str, Any], int]] = [
        (
            "error frames split 1+5, 1.5 s apart",
            {"invalid_tokens": invalid, "faults": [Fault.split_errors((1, 5), gap=1.5)]},
            n,
        ),
        (
            "error frames then RST (always)",
            {"invalid_tokens": invalid, "error_close": ErrorClose.RESET},
            n,
        ),
        (
            "gateway drops after 10,000 bytes",
            {"faults": [Fault.drop_after(bytes=10_000, times=None)]},
            n,
        ),
        (
            "slow reader (1 B/s), 50 notifications",
            {"faults": [Fault.slow_reader(1)]},
            50,
        ),
        (
            "gateway never reads",
            {"faults": [Fault.stop_reading(0)]},
            n,
        ),
        (
            "700 ms one-way latency, 10 invalid of 5,000",
            {
                "invalid_tokens": [token_for(i).value for i in range(250, 5000, 500)],
                "faults": [Fault.latency(0.7)],
            },
            5000,
        ),
    ]
    evidence: list[Scenario] = [
        (f"{name}, {c} connection{'s' if c > 1 else ''}", options, fast(connections=c), count)
        for name, options, count in faults
        for c in (1, 4)
    ]
    return found + delayed + evidence


async def run_one(
    pki: Any, n: int, options: dict[str, Any], config: SenderConfig
) -> dict[str, Any]:
    items = [
        Notification(token=token_for(i), payload=b'{"aps":{"alert":"n%d"}}' % i) for i in range(n)
    ]
    outcomes: list[Any] = []
    started = time.perf_counter()
    with trio.fail_after(300):
        async with open_simulator(pki=pki, **options) as sim:
            host, port = sim.gateway_address
            async with open_sender(
                sim.client_context(), host=host, port=port, config=config,
                on_outcome=outcomes.append,
            ) as sender:  # fmt: skip
                await sender.submit_many(items)
                await sender.flush()
            counts = collections.Counter(record.token for record in sim.accepted)
    seconds = time.perf_counter() - started
    stats = sender.stats
    accepted = {o.notification.token.hex for o in outcomes if o.accepted}
    flagged = {o.notification.token.hex for o in outcomes if o.possible_duplicate}
    duplicated = {token for token, count in counts.items() if count > 1}
    return {
        "submitted": stats.submitted,
        "accepted": stats.accepted,
        "rejected": stats.rejected,
        "failed": stats.failed,
        "unconfirmed": stats.unconfirmed,
        "assumed": stats.assumed,
        "invariant": stats.submitted == stats.accepted + stats.rejected + stats.failed == n,
        "lost": len(accepted - set(counts)),
        "duplicated": len(duplicated),
        "unflagged_duplicates": len(duplicated - flagged),
        "possible_duplicates": stats.possible_duplicates,
        "replayed": stats.replayed,
        "seconds": round(seconds, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="notifications per scenario")
    parser.add_argument("--only", default="", help="run the scenarios whose name contains TEXT")
    args = parser.parse_args(argv)
    pki = make_test_pki()
    columns = ["submitted", "accepted", "assumed", "rejected", "failed", "unconfirmed", "lost",
               "duplicated", "unflagged_duplicates", "possible_duplicates", "replayed",
               "seconds"]  # fmt: skip
    print("| scenario | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    ok = True
    for name, options, config, n in scenarios(args.n):
        if args.only not in name:
            continue
        result = trio.run(run_one, pki, n, options, config)
        ok = ok and result["invariant"] and not result["lost"]
        ok = ok and not result["unflagged_duplicates"]
        print(f"| {name} | " + " | ".join(str(result[c]) for c in columns) + " |", flush=True)
    print("invariant held, nothing lost, no unflagged duplicate" if ok else "PROBLEM: see above")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
