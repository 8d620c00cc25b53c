"""The command line's own share of ``send --input FILE --report FILE``, in process.

``python bench/cli_parts.py [--n 200000] [--repeat 3]``; with ``PYTHONPATH`` pointing at
another checkout's ``apns_legacy`` it times that one (before ``parse_lines``, line by
line as ``send`` did then).

Times, in CPU seconds of this process (``time.process_time``, so that other load on
the machine moves it less than wall time), the two things ``apns-legacy send`` does
per line besides sending: splitting and parsing the input (``LineSplitter`` and
``parse_lines``, 64 KiB chunks of the same input ``bench/run.py`` writes), and
writing the report (``report_line`` of an accepted, confirmed outcome per line,
joined 64 at a time as ``send`` writes them). Prints one JSON line with the
microseconds per line of each part and the best of ``--repeat`` runs. The sender's
own share is what ``bench/run.py --cases sender-1`` measures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cases import write_input

from apns_legacy.cli import _send_input
from apns_legacy.cli._send_display import report_line
from apns_legacy.cli._send_input import READ_SIZE, LineSplitter, Plan, parse_line
from apns_legacy.client import Evidence, Outcome, OutcomeKind, SenderConfig, bulk_gc
from apns_legacy.wire import Notification

#: Report lines joined into one write (``_send.REPORT_BATCH``).
REPORT_BATCH = 64


def parse_lines_of(
    lines: list[tuple[int, bytes | None]], plan: Plan
) -> list[tuple[int, Notification | str | None]]:
    """``parse_lines`` where there is one; otherwise what ``send`` did line by line."""
    parse_lines = getattr(_send_input, "parse_lines", None)
    if parse_lines is not None:
        return parse_lines(lines, plan)  # type: ignore[no-any-return]
    return [(number, parse_line(raw, plan)) for number, raw in lines if raw and raw.strip()]


def best_of(repeat: int, run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="input lines (default 200,000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each part (default 3)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="apns-cli-parts-") as temp:
        path = Path(temp) / "input.jsonl"
        write_input(path, args.n)
        data = path.read_bytes()
    notifications: list[Notification] = []

    def parse() -> None:
        plan = Plan(
            config=SenderConfig(), payload=None, expiry=0, priority=10, tokens=(), strict=False
        )
        splitter = LineSplitter()
        notifications.clear()
        for start in range(0, len(data) + 1, READ_SIZE):
            chunk = data[start : start + READ_SIZE]
            lines = splitter.feed(chunk) if chunk else splitter.finish()
            for _, item in parse_lines_of(lines, plan):
                assert isinstance(item, Notification)
                notifications.append(item)

    with bulk_gc():
        parse_seconds = best_of(args.repeat, parse)
        if len(notifications) != args.n:
            print(f"parsed {len(notifications)} of {args.n} lines", file=sys.stderr)
            return 1
        outcomes = []
        for number, notification in enumerate(notifications, start=1):
            outcome = Outcome(notification, tag=number)
            outcome.kind = OutcomeKind.ACCEPTED
            outcome.evidence = Evidence.CONFIRMED
            outcome.identifier = number
            outcomes.append(outcome)

        def report() -> None:
            pending: list[bytes] = []
            written = 0
            for outcome in outcomes:
                pending.append(report_line(outcome))
                if len(pending) >= REPORT_BATCH:
                    written += len(b"".join(pending))
                    pending.clear()

        report_seconds = best_of(args.repeat, report)
    result = {
        "n": args.n,
        "parse_us_per_line": round(parse_seconds / args.n * 1e6, 3),
        "report_us_per_line": round(report_seconds / args.n * 1e6, 3),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
