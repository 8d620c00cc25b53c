"""The stop rule shared by send and feedback: the first SIGINT/SIGTERM is handed to the
command, the second raises KeyboardInterrupt; run_trio hands that to main unwrapped.
Real signals to this process (pytest-trio runs the test on the main thread)."""

from __future__ import annotations

import os
import signal
import threading

import pytest
import trio

from apns_legacy.cli._signals import run_trio, watch_stop_signals

pytestmark = pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="signals: main thread only"
)


async def test_the_first_signal_goes_to_the_command_and_the_second_interrupts():
    first = trio.Event()
    seen: list[signal.Signals] = []

    def on_first(signum: signal.Signals) -> None:
        seen.append(signum)
        first.set()

    async def two_signals() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(watch_stop_signals, on_first)
            os.kill(os.getpid(), signal.SIGTERM)
            await first.wait()
            assert seen == [signal.SIGTERM]
            os.kill(os.getpid(), signal.SIGINT)
            await trio.sleep_forever()  # until the watcher's KeyboardInterrupt cancels us

    with trio.fail_after(10), pytest.raises(BaseExceptionGroup) as caught:
        await two_signals()
    assert caught.value.subgroup(KeyboardInterrupt) is not None
    assert seen == [signal.SIGTERM]


def test_run_trio_unwraps_a_keyboard_interrupt_from_a_task():
    async def interrupted() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(raise_interrupt)
            await trio.sleep_forever()

    async def raise_interrupt() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_trio(interrupted)


def test_run_trio_leaves_other_errors_in_their_group():
    async def failing() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(raise_value_error)

    async def raise_value_error() -> None:
        raise ValueError("x")

    with pytest.raises(BaseExceptionGroup):
        run_trio(failing)
