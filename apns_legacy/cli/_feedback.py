"""``apns-legacy feedback``: read the feedback service, print it, optionally clean up a store.

Entries go to stdout as they are read (JSON lines, or CSV with ``--format csv``),
before anything else happens: reading is destructive on Apple's side, so the
printed list is the record. With ``--db PATH`` they are then applied to the token
store with the re-registration rule, and a summary goes to stderr.

``--every 24h`` polls on a schedule (for running as a service; ``--count N``
bounds it); Ctrl-C or SIGTERM lets a poll in progress finish, then stops (a second
Ctrl-C stops at once). Exit codes: 0 ok (an empty list too), 1 a read (or
applying it) failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import math
import re
import signal
import sqlite3
import sys
from collections.abc import Sequence
from typing import Final

import trio

from ..client import (
    PRODUCTION_FEEDBACK,
    SANDBOX_FEEDBACK,
    FeedbackError,
    TokenStore,
    read_feedback,
)
from ..wire import FeedbackItem
from ._common import Target, add_connection_arguments, load_client_context
from ._exit import EXIT_FAILED, EXIT_OK, UsageError
from ._signals import run_trio, watch_stop_signals
from ._tokens import open_store

_UNITS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_INTERVAL: Final = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "feedback",
        help="read the feedback service (tokens of uninstalled apps); clean up a store",
        description="Connect to the feedback service with the push certificate, print every "
        "entry (token, timestamp, time), and with --db deactivate the devices that have not "
        "registered again since. Apple clears the list once read: keep the output.",
    )
    add_connection_arguments(parser, production=PRODUCTION_FEEDBACK, sandbox=SANDBOX_FEEDBACK)
    add = parser.add_argument
    add("--format", choices=["jsonl", "csv"], default="jsonl", help="output (default jsonl)")
    add("--db", metavar="PATH", help="apply the entries to this token store")
    add(
        "--every",
        metavar="INTERVAL",
        help="poll on a schedule, e.g. 24h, 30m, 1d, 90s (Apple: query daily)",
    )
    add("--count", type=int, metavar="N", help="with --every: stop after N polls")
    add(
        "--timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="for one poll: connect, handshake and read to the end (default 60)",
    )
    parser.set_defaults(handler=run)


def parse_interval(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``30m``, ``24h`` or ``1d``.

    Raises:
        UsageError: anything else, or zero.
    """
    match = _INTERVAL.fullmatch(text.strip().lower())
    if match is None:
        raise UsageError(f"--every {text!r}: give a number with s, m, h or d (e.g. 24h)")
    seconds = float(match[1]) * _UNITS[match[2]]
    if seconds <= 0:
        raise UsageError(f"--every must be more than 0, not {text!r}")
    return seconds


def _iso(item: FeedbackItem) -> str:
    return item.time.isoformat().replace("+00:00", "Z")


class Printer:
    """Writes entries to stdout in the chosen format (the CSV header once)."""

    def __init__(self, format: str) -> None:
        self.format = format
        self._csv = csv.writer(sys.stdout, lineterminator="\n")
        self._header_done = False

    def write(self, items: Sequence[FeedbackItem]) -> None:
        if self.format == "csv":
            if not self._header_done:
                self._csv.writerow(["token", "timestamp", "time"])
                self._header_done = True
            for item in items:
                self._csv.writerow([item.token.hex(), item.timestamp, _iso(item)])
        else:
            for item in items:
                record = {
                    "token": item.token.hex(),
                    "timestamp": item.timestamp,
                    "time": _iso(item),
                }
                sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()


async def _poll(
    target: Target, poll_timeout: float, printer: Printer, store: TokenStore | None
) -> bool:
    """One read (and apply); True when it worked. Errors are reported on stderr."""
    where = f"{target.host}:{target.port}"
    try:
        items = await read_feedback(
            target.context, host=target.host, port=target.port, timeout=poll_timeout
        )
    except FeedbackError as exc:
        print(f"apns-legacy feedback: {exc}", file=sys.stderr)
        return False
    printer.write(items)
    if store is None:
        print(f"feedback {where}: {len(items)} tokens listed", file=sys.stderr)
        return True
    try:
        result = store.apply_feedback(items)
    except sqlite3.Error as exc:
        print(
            f"apns-legacy feedback: could not apply {len(items)} entries to {store.path}: {exc} "
            "(nothing was applied; the entries are printed above)",
            file=sys.stderr,
        )
        return False
    print(
        f"feedback {where}: {len(items)} tokens listed; {result.deactivated} deactivated, "
        f"{result.skipped_reregistered} skipped (re-registered since), {result.unknown} "
        f"unknown, {result.already_inactive} already inactive",
        file=sys.stderr,
    )
    return True


async def _run(
    target: Target,
    poll_timeout: float,
    printer: Printer,
    store: TokenStore | None,
    every: float | None,
    count: int | None,
) -> int:
    if every is None:
        return EXIT_OK if await _poll(target, poll_timeout, printer, store) else EXIT_FAILED
    failures = 0
    polls = 0
    stop = trio.Event()

    def first_signal(signum: signal.Signals) -> None:
        print(f"got {signum.name}: stopping after the current poll", file=sys.stderr)
        stop.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(watch_stop_signals, first_signal)
        next_poll = trio.current_time()
        while not stop.is_set():
            if not await _poll(target, poll_timeout, printer, store):
                failures += 1
            polls += 1
            if count is not None and polls >= count:
                break
            next_poll += every
            when = _dt.datetime.now(_dt.UTC) + _dt.timedelta(
                seconds=next_poll - trio.current_time()
            )
            print(f"next poll at {when.isoformat(timespec='seconds')}", file=sys.stderr)
            with trio.move_on_at(next_poll):
                await stop.wait()
        nursery.cancel_scope.cancel()
    print(f"stopped after {polls} polls ({failures} failed)", file=sys.stderr)
    return EXIT_FAILED if failures else EXIT_OK


def run(args: argparse.Namespace) -> int:
    every = parse_interval(args.every) if args.every is not None else None
    if args.count is not None:
        if every is None:
            raise UsageError("--count needs --every")
        if args.count < 1:
            raise UsageError(f"--count must be at least 1, not {args.count}")
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise UsageError(f"--timeout must be more than 0, not {args.timeout}")
    target = load_client_context(args)
    # Opened before connecting: a wrong --db must not cost the (destructive) read.
    store = open_store(args.db, create=False) if args.db is not None else None
    try:
        return run_trio(_run, target, args.timeout, Printer(args.format), store, every, args.count)
    finally:
        if store is not None:
            store.close()
