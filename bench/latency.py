"""The sender under round-trip latency and stale tokens: the scenario table of real-world speed.

Usage: python bench/latency.py [--n 20000] [--rates 0,0.005,0.02,0.1] [--rtts 0,20,100]
                               [--connections 1,4] [--deadline 120] [--spare yes|no|both]
                               [--gateway in-process|process|lean|both|all]

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

Gateways (``--gateway``): ``in-process`` is the simulator in this process, sharing the
sender's core; ``process`` is ``apns-legacy serve --latency`` in its own process; ``lean``
is ``bench/lean_gateway.py`` in its own process: the standard library only, frames parsed
just enough (token and identifier), the same one-way delay below TLS, the same answers
and closes, so that the row measures the sender rather than our simulator's Python
(``both``: in-process and process; ``all``: the three). ``rejections_recorded`` is the
gateway's own count of status-8 error frames (not known for ``process``: `serve` records
only acceptances); for ``lean`` the rejected tokens must also be exactly the invalid ones.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
from run import read_port

from apns_legacy import DeviceToken, Notification, SenderConfig, open_sender
from apns_legacy.simulator import Fault, open_simulator
from apns_legacy.tls import client_context, make_test_pki

HOST = "127.0.0.1"
HERE = Path(__file__).resolve().parent
GATEWAYS = {
    "in-process": ["in-process"],
    "process": ["process"],
    "lean": ["lean"],
    "both": ["in-process", "process"],
    "all": ["in-process", "process", "lean"],
}


def token_for(i: int) -> DeviceToken:
    return DeviceToken(i.to_bytes(4, "big") * 8)


def invalid_positions(n: int, rate: float) -> list[int]:
    count = round(n * rate)
    if not count:
        return []
    step = n / count
    return [int(step / 2 + k * step) for k in range(count)]


async def send_all(
    context: Any,
    address: tuple[str, int],
    items: list[Notification],
    connections: int,
    deadline: float,
    spare: bool,
) -> tuple[list[Any], Any, float, bool]:
    """Send ``items``; (outcomes, stats, seconds from connecting to the last answer, timed out)."""
    outcomes: list[Any] = []
    host, port = address
    started = time.perf_counter()
    with trio.move_on_after(deadline) as scope:
        async with open_sender(
            context,
            host=host,
            port=port,
            config=SenderConfig(connections=connections, spare_connection=spare),
            on_outcome=outcomes.append,
        ) as sender:
            await sender.submit_many(items)
            await sender.flush()
    seconds = time.perf_counter() - started
    return outcomes, sender.stats, seconds, scope.cancelled_caught  # fmt: skip


def run_row(
    pki: Any, n: int, rate: float, rtt_ms: float, connections: int, deadline: float, spare: bool,
    *, gateway: str = "in-process",
) -> dict[str, Any]:  # fmt: skip
    bad = invalid_positions(n, rate)
    items = [
        Notification(token=token_for(i), payload=b'{"aps":{"alert":"n%d"}}' % i) for i in range(n)
    ]
    invalid = [token_for(i) for i in bad]
    # The gateway's status-8 error frames: the refused tokens in hex where it names them
    # (lean), None each where it does not (the simulator's records carry the identifier).
    rejections: list[str | None] | None
    if gateway == "process":
        outcomes, stats, seconds, timed_out, recorded = _in_a_process(
            pki, items, invalid, rtt_ms, connections, deadline, spare
        )
        rejections = None
    elif gateway == "lean":
        outcomes, stats, seconds, timed_out, recorded, rejections = _with_lean_gateway(
            pki, items, invalid, rtt_ms, connections, deadline, spare
        )
    else:
        outcomes, stats, seconds, timed_out, recorded, rejections = trio.run(
            _in_this_process, pki, items, invalid, rtt_ms, connections, deadline, spare
        )
    counts = collections.Counter(recorded)
    bad_hex = {token.hex for token in invalid}
    rejected = {o.notification.token.hex for o in outcomes if o.kind.value == "rejected"}
    accepted = {o.notification.token.hex for o in outcomes if o.accepted}
    t = rtt_ms / 1000
    return {
        "n": n,
        "invalid": len(bad),
        "rtt_ms": rtt_ms,
        "connections": connections,
        "spare": spare,
        "gateway": gateway,
        "seconds": round(seconds, 2),
        "per_s": round(stats.accepted / seconds) if seconds else 0,
        "frames_per_notification": round(stats.written / n, 2),
        "reconnects": stats.reconnects,
        "spares_used": stats.spares_used,
        "tls_resumed": stats.tls_resumed,
        "missed": len(bad_hex - rejected) if not timed_out else None,
        "recorded_twice": sum(1 for c in counts.values() if c > 1),
        "nothing_lost": accepted <= set(counts),
        "accepted_recorded": len(counts),
        "rejections_recorded": None if rejections is None else len(rejections),
        # The lean gateway names the tokens it refused: exactly the invalid ones, once each.
        "rejected_as_expected": None
        if rejections is None or None in rejections
        else sorted(t for t in rejections if t) == sorted(bad_hex),
        "bound_s": round(len(bad) * 4 * t / connections, 2),
        "no_handshake_bound_s": round(len(bad) * t / connections, 2),
        "timed_out": timed_out,
    }


async def _in_this_process(
    pki: Any, items: list[Notification], invalid: list[DeviceToken], rtt_ms: float,
    connections: int, deadline: float, spare: bool,
) -> tuple[list[Any], Any, float, bool, list[str], list[str | None]]:  # fmt: skip
    faults = [Fault.latency(rtt_ms / 2000, times=None)] if rtt_ms else []
    async with open_simulator(
        pki=pki, invalid_tokens=[token.value for token in invalid], faults=faults
    ) as sim:
        outcomes, stats, seconds, timed_out = await send_all(
            sim.client_context(), sim.gateway_address, items, connections, deadline, spare
        )
        recorded = [record.token for record in sim.accepted]
        rejections: list[str | None] = [None for e in sim.errors_sent if e.status == 8]
    return outcomes, stats, seconds, timed_out, recorded, rejections


def _in_a_process(
    pki: Any, items: list[Notification], invalid: list[DeviceToken], rtt_ms: float,
    connections: int, deadline: float, spare: bool,
) -> tuple[list[Any], Any, float, bool, list[str]]:  # fmt: skip
    """The gateway as `apns-legacy serve` in its own process (its own core), as Apple's is."""
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        pki.write(folder / "pki", p12_passphrase=b"bench")
        record = folder / "record.jsonl"
        command = [
            sys.executable, "-m", "apns_legacy", "serve", "--host", HOST,
            "--gateway-port", "0", "--feedback-port", "0", "--cert-dir", str(folder / "pki"),
            "--record", str(record), "--for", str(deadline + 60),
        ]  # fmt: skip
        if rtt_ms:
            command += ["--latency", f"{rtt_ms / 2:g}"]
        for token in invalid:
            command += ["--invalid-token", token.hex]
        server = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=work
        )
        try:
            assert server.stdout is not None
            ready = json.loads(server.stdout.readline())
            host, _, port = ready["gateway"].rpartition(":")
            context = client_context(pki.client, ca=pki.ca_pem())
            outcomes, stats, seconds, timed_out = trio.run(
                send_all, context, (host, int(port)), items, connections, deadline, spare
            )
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
        with record.open(encoding="utf-8") as lines:
            recorded = [json.loads(line)["token"] for line in lines]
    return outcomes, stats, seconds, timed_out, recorded


def _with_lean_gateway(
    pki: Any, items: list[Notification], invalid: list[DeviceToken], rtt_ms: float,
    connections: int, deadline: float, spare: bool,
) -> tuple[list[Any], Any, float, bool, list[str], list[str | None]]:  # fmt: skip
    """The gateway as ``bench/lean_gateway.py`` in its own process (standard library only)."""
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        pki.write(folder / "pki", p12_passphrase=b"bench")
        (folder / "invalid.txt").write_text("".join(token.hex + "\n" for token in invalid))
        command = [
            sys.executable, str(HERE / "lean_gateway.py"), "--pki", str(folder / "pki"),
            "--delay", f"{rtt_ms / 2000:g}", "--invalid-file", str(folder / "invalid.txt"),
            "--for", str(deadline + 60),
        ]  # fmt: skip
        gateway = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            port = read_port(gateway, "the lean gateway")
            context = client_context(pki.client, ca=pki.ca_pem())
            outcomes, stats, seconds, timed_out = trio.run(
                send_all, context, (HOST, port), items, connections, deadline, spare
            )
            out, err = gateway.communicate(input=b"", timeout=30.0)
        finally:
            if gateway.poll() is None:
                gateway.kill()
                gateway.communicate()
    lines = out.decode().splitlines()
    if gateway.returncode or not lines:
        raise RuntimeError(f"the lean gateway failed ({gateway.returncode}): {err.decode()}")
    report = json.loads(lines[-1])
    if report["problems"] or report["still_open"]:
        print(f"lean gateway: {report['problems']}, {report['still_open']} still open",
              file=sys.stderr)  # fmt: skip
    recorded = [token for token, count in report["tokens"].items() for _ in range(count)]
    rejections: list[str | None] = [t for status, _, t in report["errors"] if status == 8]
    print(f"lean gateway: {report['cpu_seconds']} s CPU", file=sys.stderr)
    return outcomes, stats, seconds, timed_out, recorded, rejections


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--rates", default="0,0.005,0.02,0.1")
    parser.add_argument("--rtts", default="0,20,100", help="round trips in ms")
    parser.add_argument("--connections", default="1,4")
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds per row")
    parser.add_argument(
        "--spare",
        default="yes",
        help="spare connections: yes (the library's default), no, or both (a row for each)",
    )
    parser.add_argument(
        "--gateway", choices=tuple(GATEWAYS), default="in-process",
        help="the simulator in this process (sharing its core), as `apns-legacy serve` in "
        "its own process (as Apple's gateway is on other machines), bench/lean_gateway.py "
        "in its own process (the standard library only: measures the sender), or several",
    )  # fmt: skip
    args = parser.parse_args(argv)
    pki = make_test_pki()
    columns = ["n", "invalid", "rtt_ms", "connections", "spare", "gateway", "seconds", "per_s",
               "frames_per_notification", "reconnects", "spares_used", "tls_resumed",
               "missed", "recorded_twice",
               "nothing_lost", "rejections_recorded", "bound_s", "no_handshake_bound_s",
               "timed_out"]  # fmt: skip
    print("| " + " | ".join(columns) + " |")
    print("|---" * len(columns) + "|")
    ok = True
    for rate in (float(r) for r in args.rates.split(",")):
        for rtt in (float(r) for r in args.rtts.split(",")):
            for c in (int(x) for x in args.connections.split(",")):
                for spare, gateway in itertools.product(
                    {"no": [False], "yes": [True], "both": [False, True]}[args.spare],
                    GATEWAYS[args.gateway],
                ):
                    row = run_row(pki, args.n, rate, rtt, c, args.deadline, spare, gateway=gateway)
                    ok = ok and row["nothing_lost"] and not row["missed"]
                    ok = ok and row["rejected_as_expected"] is not False
                    if not row["timed_out"]:
                        ok = ok and row["accepted_recorded"] == row["n"] - row["invalid"]
                        ok = ok and row["rejections_recorded"] in (None, row["invalid"])
                    print("| " + " | ".join(str(row[k]) for k in columns) + " |", flush=True)
                    print(json.dumps(row), file=sys.stderr, flush=True)
    print("nothing lost, no rejection missed" if ok else "PROBLEM: see above")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
