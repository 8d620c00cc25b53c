"""What ``apns-legacy send`` shows on stderr: bad-line messages, progress, the summary.

The progress display (``rich.progress``) is only drawn when stderr is a terminal and
``--quiet`` is not given; it is refreshed from a trio task a few times a second from
the sender's running totals, never per notification.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Final

import trio
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from ..client import Sender, SenderStats
from ..wire import status_from_int, status_name

_REFRESH: Final = 0.2


def summary(stats: SenderStats, skipped: int, elapsed: float) -> str:
    """The one-line summary, e.g. ``sent 10: 9 accepted, 1 rejected (INVALID_TOKEN 1), ...``."""
    rejected = f"{stats.rejected} rejected"
    if stats.rejected_by_status:
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
    return (
        f"{text}; {stats.replayed} replayed, {stats.possible_duplicates} possible duplicates, "
        f"{stats.reconnects} reconnects in {elapsed:.1f}s"
    )


class Display:
    """Messages, the optional progress display and the summary, all on stderr."""

    def __init__(self, *, quiet: bool, progress: Progress | None, total: int | None) -> None:
        self.quiet = quiet
        self.progress = progress
        self._task: TaskID | None = None
        self._total = total

    @classmethod
    def create(cls, *, enabled: bool, total: int | None) -> Display:
        """A display; with progress only if ``enabled`` and stderr is a terminal."""
        progress = None
        if enabled and sys.stderr.isatty():
            # A bar only when the total is known (--token); input is streamed.
            bar = [] if total is None else [BarColumn()]
            progress = Progress(
                SpinnerColumn(),
                *bar,
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                auto_refresh=False,  # refreshed by follow(), in the trio thread
                transient=True,
            )
        return cls(quiet=not enabled, progress=progress, total=total)

    def message(self, text: str) -> None:
        """One line on stderr (above the progress display, if it is shown)."""
        if self.progress is not None and self._task is not None:
            self.progress.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            print(text, file=sys.stderr)

    async def follow(self, sender: Sender, skipped: Callable[[], int]) -> None:
        """Redraw the progress display from ``sender.stats`` until cancelled."""
        progress = self.progress
        if progress is None:
            return
        self._task = progress.add_task("connecting", total=self._total)
        progress.start()
        while True:
            stats = sender.stats
            description = (
                f"{stats.submitted} submitted, {stats.accepted} accepted, "
                f"{stats.rejected} rejected, {stats.failed} failed"
            )
            if skipped():
                description += f", {skipped()} skipped"
            progress.update(self._task, description=description, completed=stats.settled)
            progress.refresh()
            await trio.sleep(_REFRESH)

    def close(self) -> None:
        """Remove the progress display (before the summary is printed)."""
        if self.progress is not None and self._task is not None:
            self.progress.stop()
            self._task = None

    def summary(self, text: str) -> None:
        """Print the summary line, unless ``--quiet``."""
        if not self.quiet:
            print(text, file=sys.stderr)
