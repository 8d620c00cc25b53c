"""``apns-legacy tokens``: the SQLite token store from the shell.

``tokens register --db PATH TOKEN... | --input FILE`` records registrations (hex,
one a line in FILE, ``-`` for stdin; blank lines and ``#`` comments skipped);
``tokens export`` writes devices as CSV or JSON lines; ``tokens stats`` counts them.
A bad token anywhere in the input is reported with its line and nothing is written.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ..client import TokenStore
from ..wire import DeviceToken, ProtocolError
from ._exit import EXIT_OK, UsageError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "tokens",
        help="manage the device token store (SQLite)",
        description="Register, export and count device tokens in a SQLite token store "
        "(the store `apns-legacy feedback --db` cleans up).",
    )
    actions = parser.add_subparsers(dest="tokens_action", metavar="ACTION")

    reg = actions.add_parser(
        "register",
        help="record registrations (creates the store if needed)",
        description="Record that devices registered now (or at --at). A known token gets "
        "the later registration time and becomes active again unless it was deactivated "
        "by something later.",
    )
    reg.add_argument("--db", required=True, metavar="PATH", help="the token store")
    reg.add_argument("tokens", nargs="*", metavar="TOKEN", help="device tokens in hex")
    reg.add_argument("--input", metavar="FILE", help="hex tokens, one a line ('-': stdin)")
    reg.add_argument("--topic", metavar="TOPIC", help="the app's topic (bundle id)")
    reg.add_argument("--long-tokens", action="store_true", help="accept 33 to 100-byte tokens")
    reg.set_defaults(handler=run_register)

    export = actions.add_parser(
        "export",
        help="write devices as CSV or JSON lines",
        description="Write the devices (all, or only --active / --deactivated ones) with "
        "their registration and deactivation times, ISO-8601 UTC.",
    )
    export.add_argument("--db", required=True, metavar="PATH", help="the token store")
    which = export.add_mutually_exclusive_group()
    which.add_argument("--active", dest="kind", action="store_const", const="active")
    which.add_argument("--deactivated", dest="kind", action="store_const", const="deactivated")
    export.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    export.add_argument("--output", metavar="FILE", help="write here instead of stdout")
    export.set_defaults(handler=run_export, kind="all")

    stats = actions.add_parser("stats", help="count devices", description="Count devices.")
    stats.add_argument("--db", required=True, metavar="PATH", help="the token store")
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    stats.set_defaults(handler=run_stats)
    parser.set_defaults(handler=_no_action)


def _no_action(args: argparse.Namespace) -> int:
    raise UsageError("give an action: register, export or stats")


def open_store(path: str, *, create: bool, allow_long_tokens: bool = False) -> TokenStore:
    """Open the token store at ``path`` for a command.

    Args:
        path: the ``--db`` value.
        create: make a new store if there is none; otherwise a missing file is an
            error (a typo would otherwise give an empty store).
        allow_long_tokens: accept tokens of 33 to 100 bytes.

    Raises:
        UsageError: no store there (and ``create`` is false), or not a token store.
    """
    if not create and path != ":memory:" and not os.path.exists(path):
        raise UsageError(f"--db: no token store at {path} (create one with `tokens register`)")
    try:
        return TokenStore(path, allow_long_tokens=allow_long_tokens)
    except sqlite3.Error as exc:
        raise UsageError(f"--db {path}: {exc}") from None


def _lines(args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    """``(where, text)`` for every token given, ``where`` naming its place for errors."""
    for position, text in enumerate(args.tokens, start=1):
        yield f"TOKEN #{position}", text
    if args.input is None:
        return
    try:
        with contextlib.ExitStack() as stack:
            source: IO[str] = (
                sys.stdin
                if args.input == "-"
                else stack.enter_context(Path(args.input).open(encoding="utf-8"))
            )
            for number, line in enumerate(source, start=1):
                text = line.strip()
                if text and not text.startswith("#"):
                    yield f"--input {args.input} line {number}", text
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--input: {exc}") from None


def run_register(args: argparse.Namespace) -> int:
    if not args.tokens and args.input is None:
        raise UsageError("give device tokens as arguments or with --input FILE")
    tokens: list[DeviceToken] = []
    for where, text in _lines(args):
        try:
            tokens.append(DeviceToken.from_hex(text, allow_long=args.long_tokens))
        except ProtocolError as exc:
            raise UsageError(f"{where}: {exc}") from None
    with open_store(args.db, create=True, allow_long_tokens=args.long_tokens) as store:
        count = store.register_many(tokens, topic=args.topic)
        active = store.counts().active
    print(f"registered {count} tokens in {args.db} ({active} active devices)")
    return EXIT_OK


def run_export(args: argparse.Namespace) -> int:
    with open_store(args.db, create=False) as store, contextlib.ExitStack() as stack:
        try:
            out: IO[str] = (
                stack.enter_context(Path(args.output).open("w", encoding="utf-8", newline=""))
                if args.output
                else sys.stdout
            )
        except OSError as exc:
            raise UsageError(f"--output: {exc}") from None
        count = store.export(args.kind, out, format=args.format)
    print(f"exported {count} devices ({args.kind})", file=sys.stderr)
    return EXIT_OK


def run_stats(args: argparse.Namespace) -> int:
    with open_store(args.db, create=False) as store:
        counts = store.counts()
    if args.json:
        print(
            json.dumps(
                {
                    "total": counts.total,
                    "active": counts.active,
                    "deactivated": counts.deactivated,
                    "deactivated_by_reason": counts.by_reason,
                }
            )
        )
        return EXIT_OK
    print(f"devices      {counts.total}")
    print(f"active       {counts.active}")
    print(f"deactivated  {counts.deactivated}")
    for reason, n in counts.by_reason.items():
        print(f"  {reason}: {n}")
    return EXIT_OK
