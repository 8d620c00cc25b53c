"""What ``apns-legacy send`` shows on stderr: bad-line messages, progress, the summary.

The progress display (``rich.progress``) is only drawn when stderr is a terminal and
``--quiet`` is not given; it is refreshed from a trio task a few times a second from
the sender's running totals, never per notification. When stderr is not a terminal
a plain progress line is printed every few seconds instead.

The ``--report`` lines are written here too (:func:`report_line`), the same bytes as
the standard library's ``json.dumps(..., separators=(",", ":"))`` writes: the usual
line (no reason) by formatting its line number, token and identifier into bytes
before a fixed tail; the others by msgspec, or by ``json`` for a line msgspec would
write differently (anything not plain ASCII, or with an escape).
"""

from __future__ import annotations

import json
import sys
import time
from binascii import hexlify
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs
import msgspec
import trio
from rich.console import Console
from rich.progress import (
    BarColumn,
    SpinnerColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress

from ..client import Evidence, Outcome, OutcomeKind, SenderStats
from ..wire import status_from_int, status_name
from ._text import plural

_REFRESH: Final = 0.2
#: Seconds between plain progress lines when stderr is not a terminal.
PLAIN_EVERY: Final = 10.0


_ENCODE: Final = msgspec.json.Encoder().encode


def _plain_ascii(data: bytes) -> bool:
    """Whether json.dumps (ensure_ascii) would write ``data`` as msgspec did: printable
    ASCII only (it escapes DEL and everything outside ASCII) and no escape at all."""
    return data.isascii() and b"\\" not in data and b"\x7f" not in data


def json_line(entry: dict[str, Any]) -> bytes:
    """``entry`` as ``json.dumps(entry, separators=(",", ":"))`` writes it, and a newline."""
    data = _ENCODE(entry)
    # json.dumps escapes DEL and non-ASCII (ensure_ascii), and may write an escape
    # differently.
    if not _plain_ascii(data):
        data = json.dumps(entry, separators=(",", ":")).encode()
    return data + b"\n"


def report_line(outcome: Outcome) -> bytes:
    """The ``--report`` line of an outcome: its input line number, then ``to_json()``.

    The usual outcome (an integer line number and identifier, no reason) is written by
    formatting its three varying fields into bytes, around the fixed rest of the line
    that :func:`_report_tail` wrote once for its kind, status and evidence; anything
    else by :func:`_report_line_entry`. The tests compare both with ``json.dumps`` on
    arbitrary outcomes.
    """
    tag = outcome.tag
    identifier = outcome.identifier
    if type(tag) is int and type(identifier) is int and outcome.reason is None:
        status = outcome.status
        evidence = outcome.evidence
        if (
            evidence is _CONFIRMED
            and status is None
            and not outcome.losses
            and outcome.kind is _ACCEPTED
        ):
            tail = _CONFIRMED_TAIL  # by far the most common line
        else:
            key = (outcome.kind, status, evidence, outcome.losses > 0)
            tail = _REPORT_TAILS.get(key) or _report_tail(key)
        return _REPORT_HEAD % (tag, hexlify(outcome.notification.token.value), identifier, tail)
    return _report_line_entry(outcome)


#: The start of a report line: line number, token, identifier (then a tail).
_REPORT_HEAD: Final = b'{"line":%d,"token":"%b","identifier":%d,%b'
#: The rest of a report line after the identifier, by (kind, status, evidence,
#: possible duplicate); bounded (a status is one byte, so there are few anyway).
_REPORT_TAILS: Final[dict[tuple[object, ...], bytes]] = {}


def _report_tail(key: tuple[Any, ...]) -> bytes:
    kind, status, evidence, duplicate = key
    entry = {
        "outcome": kind.value,
        "status": None if status is None else int(status),
        "status_name": None if status is None else status_name(status),
        "reason": None,
        "evidence": None if evidence is None else evidence.value,
        "possible_duplicate": duplicate,
    }
    # json.dumps of the whole line joins its fields with ",": this is its end.
    tail = json.dumps(entry, separators=(",", ":")).encode()[1:] + b"\n"
    if len(_REPORT_TAILS) >= 4096:
        _REPORT_TAILS.clear()
    _REPORT_TAILS[key] = tail
    return tail


_CONFIRMED: Final = Evidence.CONFIRMED
_ACCEPTED: Final = OutcomeKind.ACCEPTED
#: The tail of an outcome accepted on a confirmation, not a possible duplicate.
_CONFIRMED_TAIL: Final = _report_tail((_ACCEPTED, None, _CONFIRMED, False))


def _report_line_entry(outcome: Outcome) -> bytes:
    """:func:`report_line` through a dict written by msgspec (or ``json``)."""
    status = outcome.status
    evidence = outcome.evidence
    entry = {
        "line": outcome.tag,
        "token": outcome.notification.token.value.hex(),
        "identifier": outcome.identifier,
        "outcome": outcome.kind.value,
        "status": None if status is None else int(status),
        "status_name": None if status is None else status_name(status),
        "reason": outcome.reason,
        "evidence": None if evidence is None else evidence.value,
        "possible_duplicate": outcome.losses > 0,
    }
    data = _ENCODE(entry)
    if not _plain_ascii(data):
        data = json.dumps(entry, separators=(",", ":")).encode()
    return data + b"\n"


def http2_report_line(outcome: Outcome) -> bytes:
    """The ``send --http2 --report`` line of an outcome: its input line number, then
    ``Http2Outcome.to_json()`` (HTTP status, Apple's reason, ``apns_id``, and the
    410 ``timestamp``)."""
    return json_line({"line": outcome.tag, **outcome.to_json()})


def skipped_entry(line: int, token: str, reason: str, *, http2: bool) -> dict[str, Any]:
    """The report entry of a notification not sent (``--db``: a deactivated token), with
    the fields of the protocol's other report lines."""
    if http2:
        return {
            "line": line,
            "token": token,
            "outcome": "skipped",
            "status": None,
            "reason": reason,
            "apns_id": None,
            "timestamp": None,
            "possible_duplicate": False,
        }
    return {
        "line": line,
        "token": token,
        "identifier": None,
        "outcome": "skipped",
        "status": None,
        "status_name": None,
        "reason": reason,
        "evidence": None,
        "possible_duplicate": False,
    }


def summary(
    stats: SenderStats,
    skipped: int,
    elapsed: float,
    *,
    deactivated: int = 0,
    by_reason: Mapping[str, int] | None = None,
) -> str:
    """The one-line summary, e.g. ``sent 10: 9 accepted, 1 rejected (INVALID_TOKEN 1), ...``.

    ``skipped`` counts bad input lines, ``deactivated`` the notifications not sent
    because ``--db``'s token store has their token deactivated. ``by_reason`` (HTTP/2)
    names rejections by Apple's reason instead of by binary status, e.g.
    ``2 rejected (BadDeviceToken 1, Unregistered 1)``.
    """
    rejected = f"{stats.rejected} rejected"
    if by_reason is not None:
        view = stats.to_http2_json(by_reason)["rejected_by_reason"]
        if view:
            rejected += " (" + ", ".join(f"{name} {count}" for name, count in view.items()) + ")"
    elif stats.rejected_by_status:
        counts = ", ".join(
            f"{status_name(status_from_int(status))} {count}"
            for status, count in sorted(stats.rejected_by_status.items())
        )
        rejected += f" ({counts})"
    accepted = f"{stats.accepted} accepted"
    if stats.assumed:
        accepted += f" ({stats.assumed} assumed, not confirmed)"
    failed = f"{stats.failed} failed"
    if stats.unconfirmed:
        failed += f" ({stats.unconfirmed} unconfirmed)"
    text = f"sent {stats.submitted}: {accepted}, {rejected}, {failed}"
    if stats.pending:  # only if the sender broke its promise; never hide it
        text += f", {stats.pending} without outcome"
    if skipped:
        text += f", {skipped} skipped (bad input)"
    if deactivated:
        text += f", {deactivated} skipped (deactivated in the token store)"
    return (
        f"{text}; {stats.replayed} replayed, "
        f"{plural(stats.possible_duplicates, 'possible duplicate')}, "
        f"{plural(stats.reconnects, 'reconnect')} in {elapsed:.1f}s"
    )


@attrs.frozen
class Progress:
    """What the progress display shows, read from the run a few times a second."""

    stats: SenderStats
    skipped: int
    #: Bytes of the input read so far (with ``--input``), for the percentage.
    bytes_read: int


class Display:
    """Messages, the optional progress display and the summary, all on stderr.

    On a terminal the progress is a rich bar (with percentage and time left when the
    size of the work is known: the ``--token`` count, or the size of an ``--input``
    file); otherwise, unless ``--quiet``, a plain line every ``every`` seconds, so that
    a long run under cron or systemd shows it is alive.
    """

    def __init__(
        self,
        *,
        quiet: bool,
        bar: RichProgress | None,
        total: int | None,
        total_bytes: int | None = None,
        every: float = PLAIN_EVERY,
    ) -> None:
        self.quiet = quiet
        self.bar = bar
        self._task: TaskID | None = None
        self._total = total
        self._total_bytes = total_bytes
        self._every = every
        self._started = time.monotonic()

    @classmethod
    def create(
        cls,
        *,
        enabled: bool,
        total: int | None,
        total_bytes: int | None = None,
        every: float = PLAIN_EVERY,
        terminal: bool | None = None,
    ) -> Display:
        """A display; a bar only if ``enabled`` and stderr is a terminal.

        Args:
            enabled: False for ``--quiet``: no progress and no summary.
            total: the number of notifications, when known (``--token``).
            total_bytes: the size of the input file, when known.
            every: seconds between plain progress lines (not on a terminal).
            terminal: whether stderr is a terminal (default: ask it).
        """
        if terminal is None:
            terminal = sys.stderr.isatty()
        bar = None
        if enabled and terminal:
            known = total is not None or total_bytes is not None
            columns = (
                [BarColumn(), TaskProgressColumn(), TimeRemainingColumn(compact=True)]
                if known
                else []
            )
            bar = RichProgress(
                SpinnerColumn(),
                *columns,
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                auto_refresh=False,  # refreshed by follow(), in the trio thread
                transient=True,
            )
        return cls(quiet=not enabled, bar=bar, total=total, total_bytes=total_bytes, every=every)

    def message(self, text: str) -> None:
        """One line on stderr (above the progress display, if it is shown)."""
        if self.bar is not None and self._task is not None:
            self.bar.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            print(text, file=sys.stderr)

    def _fraction(self, progress: Progress) -> float | None:
        if self._total is not None:
            return progress.stats.settled / max(self._total, 1)
        if self._total_bytes is not None:
            return progress.bytes_read / max(self._total_bytes, 1)
        return None

    def _counts(self, progress: Progress) -> str:
        stats = progress.stats
        text = (
            f"{stats.submitted} submitted, {stats.accepted} accepted, "
            f"{stats.rejected} rejected, {stats.failed} failed"
        )
        if progress.skipped:
            text += f", {progress.skipped} skipped"
        return text

    def plain_line(self, progress: Progress) -> str:
        """The line printed every few seconds when stderr is not a terminal."""
        text = f"progress: {self._counts(progress)}"
        fraction = self._fraction(progress)
        if fraction is not None:
            text += f", {min(fraction, 1.0):.0%} of the input"
        return f"{text} after {time.monotonic() - self._started:.0f}s"

    async def follow(self, read: Callable[[], Progress]) -> None:
        """Redraw the bar (or print a plain line every few seconds) until cancelled."""
        if self.quiet:
            return
        bar = self.bar
        if bar is None:
            while True:
                await trio.sleep(self._every)
                print(self.plain_line(read()), file=sys.stderr, flush=True)
        total = self._total if self._total is not None else self._total_bytes
        self._task = bar.add_task("connecting", total=total)
        bar.start()
        while True:
            progress = read()
            completed = progress.stats.settled if self._total is not None else progress.bytes_read
            bar.update(self._task, description=self._counts(progress), completed=completed)
            bar.refresh()
            await trio.sleep(_REFRESH)

    def close(self) -> None:
        """Remove the progress display (before the summary is printed)."""
        if self.bar is not None and self._task is not None:
            self.bar.stop()
            self._task = None

    def summary(self, text: str) -> None:
        """Print the summary line, unless ``--quiet``."""
        if not self.quiet:
            print(text, file=sys.stderr)
