"""``apns-legacy tokens``: the SQLite token store from the shell.

``tokens register --db PATH TOKEN... | --input FILE`` records registrations (hex,
one a line in FILE, ``-`` for stdin; blank lines and ``#`` comments skipped; a bad
line is reported with its number and skipped, as ``send`` does, or with ``--strict``
stops everything before anything is written). ``tokens export`` writes devices as
CSV or JSON lines (the JSON lines are valid ``send --input``); ``tokens stats``
counts them. ``tokens deactivate --from-report FILE`` applies a ``send --report``
(its status-8 lines) and ``tokens apply-feedback FILE`` a feedback list saved from
``apns-legacy feedback``'s output.

A damaged store is one line and exit 1; a missing, empty or non-SQLite ``--db`` is
refused (exit 2) by every action but ``register``, which creates a new store.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import json
import math
import os
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Final

from ..client import (
    BAD_TOKEN_REASONS,
    GONE_REASONS,
    INVALID_TOKEN_REASON,
    StoreError,
    TokenStore,
)
from ..wire import DeviceToken, FeedbackItem, ProtocolError, Status
from ._exit import EXIT_FAILED, EXIT_OK, Failed, UsageError
from ._text import os_error, plural

_UINT32_MAX: Final = 0xFFFF_FFFF


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "tokens",
        help="manage the device token store (SQLite)",
        description="Register, export and count device tokens in a SQLite token store "
        "(the store `apns-legacy feedback --db` cleans up), and apply a send report or a "
        "saved feedback list to it.",
    )
    actions = parser.add_subparsers(dest="tokens_action", metavar="ACTION")

    reg = actions.add_parser(
        "register",
        help="record registrations (creates the store if needed)",
        description="Record that devices registered now. A known token gets the later "
        "registration time and becomes active again unless it was deactivated by something "
        "later. A bad line of --input is reported and skipped (exit 1 at the end); with "
        "--strict it stops everything and nothing is written (exit 2).",
    )
    reg.add_argument("--db", required=True, metavar="PATH", help="the token store")
    reg.add_argument("tokens", nargs="*", metavar="TOKEN", help="device tokens in hex")
    reg.add_argument("--input", metavar="FILE", help="hex tokens, one a line ('-': stdin)")
    reg.add_argument("--topic", metavar="TOPIC", help="the app's topic (bundle id)")
    reg.add_argument("--long-tokens", action="store_true", help="accept 33 to 100-byte tokens")
    reg.add_argument(
        "--strict", action="store_true", help="a bad input line stops everything (exit 2)"
    )
    reg.set_defaults(handler=run_register)

    export = actions.add_parser(
        "export",
        help="write devices as CSV or JSON lines",
        description="Write the devices (all, or only --active / --deactivated ones) with "
        "their registration and deactivation times, ISO-8601 UTC. The JSON lines of "
        "--active are valid input for `send --input` (send ignores the store's columns).",
    )
    export.add_argument("--db", required=True, metavar="PATH", help="the token store")
    which = export.add_mutually_exclusive_group()
    which.add_argument(
        "--active",
        dest="kind",
        action="store_const",
        const="active",
        help="only active devices (the ones to send to)",
    )
    which.add_argument(
        "--deactivated",
        dest="kind",
        action="store_const",
        const="deactivated",
        help="only deactivated devices, with the reason and times",
    )
    export.add_argument(
        "--format",
        choices=["csv", "jsonl"],
        default="csv",
        help="csv (default; a header line) or jsonl (one JSON object a line)",
    )
    export.add_argument("--output", metavar="FILE", help="write here instead of stdout")
    export.set_defaults(handler=run_export, kind="all")

    stats = actions.add_parser("stats", help="count devices", description="Count devices.")
    stats.add_argument("--db", required=True, metavar="PATH", help="the token store")
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    stats.set_defaults(handler=run_stats)

    deactivate = actions.add_parser(
        "deactivate",
        help="deactivate the tokens a send report lists as invalid (status 8)",
        description="Read a `send --report` file (JSON lines) and deactivate, with the reason "
        f"{INVALID_TOKEN_REASON!r}, every device the gateway rejected with status 8 (invalid "
        "token), or APNs with 400 BadDeviceToken (`send --http2`). A 410 (Unregistered, "
        "ExpiredToken) is applied with its timestamp like a feedback entry: only a device "
        "that has not registered again since is deactivated. Other lines are left alone. A "
        "later registration reactivates the device.",
    )
    deactivate.add_argument("--db", required=True, metavar="PATH", help="the token store")
    deactivate.add_argument(
        "--from-report", required=True, metavar="FILE", help="the send report ('-': stdin)"
    )
    deactivate.add_argument(
        "--strict", action="store_true", help="a bad report line stops everything (exit 2)"
    )
    deactivate.set_defaults(handler=run_deactivate)

    apply = actions.add_parser(
        "apply-feedback",
        help="apply a saved feedback list (the output of `apns-legacy feedback`)",
        description="Apply a feedback list saved from `apns-legacy feedback` (JSON lines or "
        "CSV with token and timestamp) to the store, with the re-registration rule: the same "
        "as `feedback --db`, without connecting. Applying a list twice changes nothing.",
    )
    apply.add_argument("--db", required=True, metavar="PATH", help="the token store")
    apply.add_argument("file", metavar="FILE", help="the saved list ('-': stdin)")
    apply.set_defaults(handler=run_apply_feedback)
    parser.set_defaults(handler=_no_action)


def _no_action(args: argparse.Namespace) -> int:
    raise UsageError("give an action: register, export, stats, deactivate or apply-feedback")


def open_store(path: str, *, create: bool, allow_long_tokens: bool = False) -> TokenStore:
    """Open the token store at ``path`` for a command.

    Args:
        path: the ``--db`` value.
        create: make a new store if there is none; otherwise a missing or empty file,
            or one that is not a token store, is an error (a typo would otherwise give
            an empty store).
        allow_long_tokens: accept tokens of 33 to 100 bytes.

    Raises:
        UsageError: no store there (and ``create`` is false), or not a token store.
    """
    try:
        return TokenStore(path, allow_long_tokens=allow_long_tokens, create=create)
    except StoreError as exc:
        if not create and path != ":memory:" and not os.path.exists(path):
            raise UsageError(
                f"--db: no token store at {path} (create one with `tokens register`)"
            ) from None
        raise UsageError(f"--db {exc}") from None
    except sqlite3.Error as exc:
        raise UsageError(f"--db {path}: {exc}") from None


@contextlib.contextmanager
def damage_is_one_line(path: str) -> Iterator[None]:
    """Turn SQLite errors while using an open store into one line and exit 1."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        raise Failed(
            f"--db {path}: the token store is damaged ({exc}). Restore "
            "it from a backup, or try `sqlite3 FILE .recover`"
        ) from None
    except sqlite3.Error as exc:
        raise Failed(f"--db {path}: {exc}") from None


@contextlib.contextmanager
def open_text_input(flag: str, path: str) -> Iterator[IO[str]]:
    """A text file (``-``: stdin) with a UTF-8 BOM at its start skipped; errors as one line."""
    if path == "-":
        sys.stdin.reconfigure(encoding="utf-8-sig")  # type: ignore[union-attr]
        yield sys.stdin
        return
    try:
        file = Path(path).open(encoding="utf-8-sig")  # noqa: SIM115 - closed below
    except IsADirectoryError:
        raise UsageError(f"{flag} {path}: is a directory") from None
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot read ({os_error(exc)})") from None
    with file:
        yield file


class _Lines:
    """Numbered text lines of a file, with bad ones reported on stderr (or fatal)."""

    def __init__(self, flag: str, path: str, strict: bool) -> None:
        self.flag = flag
        self.path = path
        self.strict = strict
        self.skipped = 0

    def __iter__(self) -> Iterator[tuple[int, str]]:
        with open_text_input(self.flag, self.path) as source:
            try:
                for number, line in enumerate(source, start=1):
                    text = line.strip()
                    if text and not text.startswith("#"):
                        yield number, text
            except UnicodeDecodeError as exc:
                raise UsageError(f"{self.flag} {self.path}: not UTF-8 ({exc.reason})") from None

    def bad(self, number: int, message: str) -> None:
        where = f"{self.flag} {self.path} line {number}"
        if self.strict:
            raise UsageError(f"{where}: {message} (--strict: nothing was written)")
        self.skipped += 1
        print(f"{where}: {message}", file=sys.stderr)


def run_register(args: argparse.Namespace) -> int:
    if not args.tokens and args.input is None:
        raise UsageError("give device tokens as arguments or with --input FILE")
    tokens: list[DeviceToken] = []
    for position, text in enumerate(args.tokens, start=1):
        try:
            tokens.append(DeviceToken.from_hex(text, allow_long=args.long_tokens))
        except ProtocolError as exc:
            raise UsageError(f"TOKEN #{position}: {exc}") from None
    lines = None
    if args.input is not None:
        lines = _Lines("--input", args.input, args.strict)
        for number, text in lines:
            try:
                tokens.append(DeviceToken.from_hex(text, allow_long=args.long_tokens))
            except ProtocolError as exc:
                lines.bad(number, str(exc))
    with (
        open_store(args.db, create=True, allow_long_tokens=args.long_tokens) as store,
        damage_is_one_line(args.db),
    ):
        count = store.register_many(tokens, topic=args.topic)
        active = store.counts().active
    text = f"registered {plural(count, 'token')} in {args.db} ({plural(active, 'active device')})"
    if lines is not None and lines.skipped:
        text += f"; skipped {plural(lines.skipped, 'bad line')}"
    print(text)
    return EXIT_FAILED if lines is not None and lines.skipped else EXIT_OK


def _open_output(path: str) -> IO[str]:
    try:
        return Path(path).open("w", encoding="utf-8", newline="")
    except IsADirectoryError:
        raise UsageError(f"--output {path}: is a directory") from None
    except OSError as exc:
        raise UsageError(f"--output {path}: cannot write ({os_error(exc)})") from None


def run_export(args: argparse.Namespace) -> int:
    with open_store(args.db, create=False) as store, damage_is_one_line(args.db):
        file = _open_output(args.output) if args.output else None
        out = file if file is not None else sys.stdout
        try:
            count = store.export(args.kind, out, format=args.format)
            out.flush()
            if file is not None:
                file.close()
        except OSError as exc:
            if file is None and isinstance(exc, BrokenPipeError):
                raise  # `tokens export | head`: main() ends quietly
            if file is not None:
                with contextlib.suppress(OSError):
                    file.close()  # flushing again fails the same way
            where = args.output or "standard output"
            raise Failed(f"--output {where}: cannot write ({os_error(exc)})") from None
        finally:
            if file is not None and not file.closed:
                file.close()
    print(f"exported {plural(count, 'device')} ({args.kind})", file=sys.stderr)
    return EXIT_OK


def run_stats(args: argparse.Namespace) -> int:
    with open_store(args.db, create=False) as store, damage_is_one_line(args.db):
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


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    except RecursionError:
        raise ValueError("not JSON this program reads: nested too deeply") from None
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object")
    return value


def run_deactivate(args: argparse.Namespace) -> int:
    lines = _Lines("--from-report", args.from_report, args.strict)
    invalid: list[DeviceToken] = []
    gone: list[FeedbackItem] = []
    for number, text in lines:
        try:
            entry = _json_object(text)
            status, reason = entry.get("status"), entry.get("reason")
            http2_invalid = status == 400 and reason in BAD_TOKEN_REASONS
            http2_gone = status == 410 and reason in GONE_REASONS
            if status != Status.INVALID_TOKEN and not http2_invalid and not http2_gone:
                continue
            token = entry.get("token")
            if not isinstance(token, str):
                raise ValueError("token: missing or not a hex string")
            device = DeviceToken.from_hex(token, allow_long=True)
            if http2_gone:
                gone.append(FeedbackItem(timestamp=_gone_time(entry), token=device.value))
            else:
                invalid.append(device)
        except (ValueError, ProtocolError) as exc:
            lines.bad(number, str(exc))
    with (
        open_store(args.db, create=False, allow_long_tokens=True) as store,
        damage_is_one_line(args.db),
    ):
        changed = store.deactivate(invalid, reason=INVALID_TOKEN_REASON)
        result = store.apply_feedback(gone) if gone else None
    print(
        f"{plural(len(invalid), 'token')} rejected as invalid (status 8) in the report: "
        f"{changed} deactivated, {len(invalid) - changed} unknown or already inactive"
    )
    if result is not None:
        print(
            f"{plural(len(gone), 'token')} gone (410) in the report: {result.deactivated} "
            f"deactivated, {result.skipped_reregistered} registered again since, "
            f"{result.unknown + result.already_inactive} unknown or already inactive"
        )
    if lines.skipped:
        print(f"skipped {plural(lines.skipped, 'bad line')}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def read_feedback_list(flag: str, path: str) -> list[FeedbackItem]:
    """A feedback list as ``apns-legacy feedback`` prints it (JSON lines or CSV).

    Raises:
        UsageError: any bad line (a partial list is never applied), naming it.
    """
    items: list[FeedbackItem] = []
    header: list[str] | None = None
    for number, text in _Lines(flag, path, strict=True):
        try:
            if text.startswith("{"):
                entry = _json_object(text)
                token, timestamp = entry.get("token"), entry.get("timestamp")
            else:
                row = next(csv.reader([text]))
                if header is None and "token" in row:
                    header = row
                    continue
                fields = dict(zip(header or ["token", "timestamp", "time"], row, strict=False))
                token, stamp = fields.get("token"), fields.get("timestamp", "")
                timestamp = int(stamp) if stamp and stamp.isdigit() else None
            if not isinstance(token, str):
                raise ValueError("token: missing or not a hex string")
            if type(timestamp) is not int or not 0 <= timestamp <= _UINT32_MAX:
                raise ValueError("timestamp: missing, or not UNIX seconds (0 to 2**32 - 1)")
            device = DeviceToken.from_hex(token, allow_long=True)
        except (ValueError, ProtocolError) as exc:
            raise UsageError(f"{flag} {path} line {number}: {exc} (nothing was applied)") from None
        items.append(FeedbackItem(timestamp, device.value))
    return items


def run_apply_feedback(args: argparse.Namespace) -> int:
    items = read_feedback_list("FILE", args.file)
    with (
        open_store(args.db, create=False, allow_long_tokens=True) as store,
        damage_is_one_line(args.db),
    ):
        result = store.apply_feedback(items)
    print(
        f"{plural(len(items), 'token')} in the list; {result.deactivated} deactivated, "
        f"{result.skipped_reregistered} skipped (re-registered since), {result.unknown} "
        f"unknown, {result.already_inactive} already inactive"
    )
    return EXIT_OK


def _gone_time(entry: dict[str, Any]) -> int:
    """The whole UNIX seconds of a 410 report line's ``timestamp`` (ISO 8601)."""
    text = entry.get("timestamp")
    if not isinstance(text, str):
        raise ValueError("timestamp: missing on a 410 line (the re-registration rule needs it)")
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"timestamp: not an ISO 8601 time: {text!r}") from None
    if moment.tzinfo is None:
        raise ValueError(f"timestamp: has no time zone: {text!r}")
    return math.floor(moment.timestamp())
