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
import logging
import math
import os
import re
import shlex
import signal
import sqlite3
import sys
import tempfile
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
from ._logging import CLI_LOGGER, say
from ._signals import run_trio, watch_stop_signals
from ._text import plural
from ._tokens import open_store

log = logging.getLogger(f"{CLI_LOGGER}.feedback")

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
                sys.stdout.write(json.dumps(_record(item)) + "\n")
        sys.stdout.flush()


class Poller:
    """One poll: check the store, read the service, print, apply (or save what was read)."""

    def __init__(
        self, target: Target, poll_timeout: float, printer: Printer, store: TokenStore | None
    ) -> None:
        self.target = target
        self.poll_timeout = poll_timeout
        self.printer = printer
        self.store = store
        self._noted_empty = False

    @property
    def where(self) -> str:
        return f"{self.target.host}:{self.target.port}"

    async def poll(self) -> bool:
        """One read (and apply); True when it worked. Errors are reported on stderr."""
        store = self.store
        if store is not None:
            # Reading clears the list on the server: never read into a store that
            # cannot take it.
            problems = store.check()
            if problems:
                say(
                    log,
                    logging.ERROR,
                    f"apns-legacy feedback: --db {store.path}: the token store is damaged "
                    f"({problems[0]}); not reading the feedback service, which clears its list "
                    "when read. Restore the store from a backup, or try `sqlite3 FILE .recover`",
                    event="store-damaged",
                    db=store.path,
                    problem=problems[0],
                )
                return False
        target = self.target
        try:
            items = await read_feedback(
                target.context, host=target.host, port=target.port, timeout=self.poll_timeout
            )
        except FeedbackError as exc:
            say(log, logging.ERROR, f"apns-legacy feedback: {exc}", event="read-failed")
            return False
        self.printer.write(items)
        listed = f"feedback {self.where}: {plural(len(items), 'token')} listed"
        if store is None:
            say(log, logging.INFO, listed, event="listed", server=self.where, tokens=len(items))
            self._note_empty(items)
            return True
        try:
            result = store.apply_feedback(items)
        except sqlite3.Error as exc:
            self._keep(items, store.path, exc)
            return False
        say(
            log,
            logging.INFO,
            f"{listed}; {result.deactivated} deactivated, {result.skipped_reregistered} skipped "
            f"(re-registered since), {result.unknown} unknown, {result.already_inactive} "
            "already inactive",
            event="applied",
            server=self.where,
            tokens=len(items),
            deactivated=result.deactivated,
            skipped_reregistered=result.skipped_reregistered,
            unknown=result.unknown,
            already_inactive=result.already_inactive,
        )
        self._note_empty(items)
        return True

    def _note_empty(self, items: Sequence[FeedbackItem]) -> None:
        # Apple accepted a certificate for the other environment in the handshake and
        # then closed without a word: from here that is exactly an empty list. Say so
        # once when the certificate allows only one environment (for Apple's own hosts
        # a mismatch is refused before connecting, see run()).
        allowed = self.target.credentials.environments
        if items or self._noted_empty or len(allowed) != 1:
            return
        self._noted_empty = True
        (only,) = allowed
        say(
            log,
            logging.WARNING,
            f"note: the service closed without listing anything. A certificate for the other "
            f"environment gets the same answer (accepted, then closed without data); this one "
            f"allows {only.value} only",
            event="empty-list-note",
        )

    def _keep(self, items: Sequence[FeedbackItem], db: str, exc: Exception) -> None:
        """Save a list that could not be applied, and say how to apply it later."""
        stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        name = f"feedback-{stamp}.jsonl"
        text = "".join(json.dumps(_record(item)) + "\n" for item in items)
        saved = None
        for folder in (os.path.dirname(os.path.abspath(db)), tempfile.gettempdir()):
            path = os.path.join(folder, name)
            try:
                with open(path, "x", encoding="utf-8") as file:
                    file.write(text)
            except OSError:
                continue
            saved = path
            break
        where = (
            f"saved to {saved}; apply it later with: apns-legacy tokens apply-feedback "
            f"--db {shlex.quote(db)} {shlex.quote(saved)}"
            if saved is not None
            else "it could not be saved to a file either: keep the output above"
        )
        say(
            log,
            logging.ERROR,
            f"apns-legacy feedback: could not apply {plural(len(items), 'entry', 'entries')} to "
            f"{db} ({exc}); nothing was applied. The list (cleared on the server) is {where}",
            event="apply-failed",
            db=db,
            saved=saved,
        )


def _record(item: FeedbackItem) -> dict[str, object]:
    return {"token": item.token.hex(), "timestamp": item.timestamp, "time": _iso(item)}


async def _run(poller: Poller, every: float | None, count: int | None) -> int:
    if every is None:
        return EXIT_OK if await poller.poll() else EXIT_FAILED
    failures = 0
    polls = 0
    stop = trio.Event()

    def first_signal(signum: signal.Signals) -> None:
        say(
            log,
            logging.INFO,
            f"got {signum.name}: stopping after the current poll",
            event="stopping",
            signal=signum.name,
        )
        stop.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(watch_stop_signals, first_signal)
        next_poll = trio.current_time()
        while not stop.is_set():
            if not await poller.poll():
                failures += 1
            polls += 1
            if count is not None and polls >= count:
                break
            next_poll += every
            when = _dt.datetime.now(_dt.UTC) + _dt.timedelta(
                seconds=next_poll - trio.current_time()
            )
            at = when.isoformat(timespec="seconds")
            say(log, logging.INFO, f"next poll at {at}", event="next-poll", at=at)
            with trio.move_on_at(next_poll):
                await stop.wait()
        nursery.cancel_scope.cancel()
    say(
        log,
        logging.INFO,
        f"stopped after {plural(polls, 'poll')} ({failures} failed)",
        event="stopped",
        polls=polls,
        failed=failures,
    )
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
    target = load_client_context(args, mismatch_is_error=True)
    # Opened before connecting: a wrong --db must not cost the (destructive) read.
    store = open_store(args.db, create=False) if args.db is not None else None
    try:
        poller = Poller(target, args.timeout, Printer(args.format), store)
        return run_trio(_run, poller, every, args.count)
    finally:
        if store is not None:
            store.close()
