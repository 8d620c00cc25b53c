"""The stop rule of the long-running commands: the first Ctrl-C or SIGTERM stops
gracefully, the second stops at once.

Without a handler, trio turns Ctrl-C into a ``KeyboardInterrupt`` raised wherever the
code happens to be, including inside the sender's tasks. :func:`watch_stop_signals`
catches the first SIGINT or SIGTERM and hands it to the command (which stops reading
input, or stops after the current poll); the second raises ``KeyboardInterrupt``,
which :func:`run_trio` hands to ``main`` as one ``KeyboardInterrupt`` (exit 130).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar, TypeVarTuple

import trio

_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")


async def watch_stop_signals(
    on_first: Callable[[signal.Signals], None],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Call ``on_first`` on the first SIGINT/SIGTERM; raise KeyboardInterrupt on the second.

    Start it with ``await nursery.start(watch_stop_signals, on_first)``, so that the
    handlers are in place before the command does anything. Signals can only be
    caught on the main thread; elsewhere (tests running ``main`` in a thread) this
    returns at once and the default behaviour stays.
    """
    if threading.current_thread() is not threading.main_thread():
        task_status.started()
        return
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        first = True
        async for signum in signals:
            if not first:
                raise KeyboardInterrupt
            first = False
            on_first(signal.Signals(signum))


def run_trio(function: Callable[[*_Ts], Awaitable[_T]], *args: *_Ts) -> _T:
    """``trio.run``, with a ``KeyboardInterrupt`` from any task raised plainly for ``main``."""
    try:
        return trio.run(function, *args)
    except BaseExceptionGroup as group:
        # trio hands back an interrupt raised in a task inside a group: unwrap it.
        interrupts, rest = group.split(KeyboardInterrupt)
        if interrupts is not None and rest is None:
            raise KeyboardInterrupt from None
        raise
