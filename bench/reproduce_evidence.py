"""The evidence issue's reproductions, through the command line: ``apns-legacy serve`` with a
fault, ``apns-legacy send`` against it, and the simulator's record compared with what
``send`` reported.

Usage: python bench/reproduce_evidence.py [--only NAME]

Each case prints what ``send`` said (its summary line and exit code) and what the
simulator recorded: "claimed but not recorded" must be 0 in every case. Every case is
bounded: the input is finite and each ``send`` has a 600 s deadline.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CASES: list[tuple[str, list[str], int, list[int], list[str]]] = [
    # name, serve flags, notifications, invalid line numbers (0-based), send flags
    ("errors 1.5 s late, 3 invalid of 20,000", ["--error-delay", "1.5"], 20_000,
     [4_000, 10_000, 15_000], []),
    ("errors 2.0 s late, 3 invalid of 20,000", ["--error-delay", "2.0"], 20_000,
     [4_000, 10_000, 15_000], []),
    ("errors split 1+5, 1.5 s apart", ["--split-errors", "1,5", "--split-gap", "1.5"], 20_000,
     [4_000, 10_000, 15_000], []),
    ("reading at 100,000 B/s, 2 invalid", ["--read-rate", "100000"], 20_000,
     [15_000, 19_000], []),
    ("reading 1 B/s, 50 notifications", ["--read-rate", "1"], 50, [], []),
    ("never reads, 100,000 notifications", ["--stop-reading-after", "0"], 100_000, [], []),
    ("700 ms one way, 10 invalid of 5,000", ["--latency", "700"], 5_000,
     list(range(250, 5_000, 500)), []),
    ("20 ms round trip, 101 invalid of 20,000", ["--latency", "10"], 20_000,
     list(range(100, 20_000, 198))[:101], []),
    ("drops after 10,000 bytes", ["--drop-after-bytes", "10000"], 20_000, [], []),
]  # fmt: skip


def token(i: int) -> str:
    return i.to_bytes(4, "big").hex() * 8


def run_case(
    name: str,
    serve_flags: list[str],
    n: int,
    invalid: list[int],
    send_flags: list[str],
    workdir: Path,
) -> dict[str, object]:
    certs = workdir / "certs"
    record = workdir / f"record-{abs(hash(name))}.jsonl"
    serve = subprocess.Popen(
        [sys.executable, "-m", "apns_legacy", "serve", "--cert-dir", str(certs),
         "--record", str(record), *serve_flags,
         *[arg for i in invalid for arg in ("--invalid-token", token(i))]],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert serve.stdout is not None
        ready = json.loads(serve.stdout.readline())
        host, port = ready["gateway"].rsplit(":", 1)
        input_file = workdir / "input.jsonl"
        with input_file.open("w") as out:
            for i in range(n):
                out.write(json.dumps({"token": token(i), "payload": {"aps": {"alert": str(i)}}}))
                out.write("\n")
        report = workdir / "report.jsonl"
        done = subprocess.run(
            [sys.executable, "-m", "apns_legacy", "send", "--host", host, "--port", port,
             "--cert", str(certs / "client.pem"), "--key", str(certs / "client-key.pem"),
             "--ca", str(certs / "ca.pem"), "--input", str(input_file), "--report", str(report),
             *send_flags],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    finally:
        serve.terminate()
        serve.wait(timeout=30)
    recorded: dict[str, int] = {}
    if record.exists():
        for line in record.read_text().splitlines():
            t = json.loads(line)["token"]
            recorded[t] = recorded.get(t, 0) + 1
    outcomes = [json.loads(line) for line in report.read_text().splitlines()]
    accepted = {o["token"] for o in outcomes if o["outcome"] == "accepted"}
    rejected = {o["token"] for o in outcomes if o["outcome"] == "rejected"}
    bad = {token(i) for i in invalid}
    return {
        "case": name,
        "exit": done.returncode,
        "summary": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "",
        "recorded": len(recorded),
        "claimed_not_recorded": len(accepted - set(recorded)),
        "recorded_not_claimed": len(set(recorded) - accepted),
        "invalid_rejected": len(rejected & bad),
        "invalid_total": len(bad),
        "recorded_twice": sum(1 for c in recorded.values() if c > 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run the cases whose name contains this")
    args = parser.parse_args(argv)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for name, serve_flags, n, invalid, send_flags in CASES:
            if args.only and args.only not in name:
                continue
            result = run_case(name, serve_flags, n, invalid, send_flags, Path(tmp))
            ok = ok and result["claimed_not_recorded"] == 0
            print(json.dumps(result), flush=True)
    print("nothing claimed that was not recorded" if ok else "PROBLEM: see above")
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
