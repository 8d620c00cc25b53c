"""``apns-legacy demo``: the whole product on this machine, with no setup.

In one process: the simulator on free loopback ports with throwaway certificates;
a token store of demo devices in a temporary directory; the sender pushing to all of
them while the simulator rejects some tokens (status 8) and shuts one connection
down (status 10), so the sender replays what followed; then the feedback service,
whose list the store applies with the re-registration rule. It ends with a check of
the delivery invariant against the simulator's own record, and a summary table.
Exit 0 when the invariant held, 1 when it did not.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs
import trio
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..client import (
    FeedbackResult,
    Outcome,
    SenderConfig,
    SenderStats,
    TokenStore,
    open_sender,
    read_feedback,
)
from ..simulator import Fault, FaultScope, Simulator, open_simulator
from ..wire import DeviceToken, Notification, Status, build_payload, status_from_int
from ._demo_plan import INVALID, REINSTALLED, SHUTDOWN_AFTER, UNINSTALLED, Plan
from ._exit import EXIT_FAILED, EXIT_OK, UsageError
from ._text import os_error, plural


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole loop on this machine: simulator, sender, feedback cleanup",
        description="Start the simulator in-process, register demo devices in a temporary "
        "token store, send to all of them through rejections, a gateway shutdown and "
        "replays, then read the feedback service and clean up the store. Exit 0 when "
        "every notification got exactly one outcome and the simulator recorded each "
        "accepted one exactly once.",
    )
    parser.add_argument(
        "--devices",
        type=int,
        default=3000,
        metavar="N",
        help=f"demo devices, {INVALID + UNINSTALLED + 1} to 1000000 (default 3000; the "
        f"{INVALID} invalid and {UNINSTALLED} uninstalled ones come first)",
    )
    parser.add_argument(
        "--keep", metavar="DIR", help="keep the token store and the simulator's record in DIR"
    )
    parser.add_argument(
        "--http2",
        action="store_true",
        help="today's APNs instead: the HTTP/2 simulator, and `send --http2` with token auth "
        "and --db run against it (400 BadDeviceToken, 410 Unregistered, GOAWAYs, 503s)",
    )
    parser.add_argument(
        "--bridge",
        action="store_true",
        help="show the bridge instead: the binary sender through the bridge into the HTTP/2 "
        "simulator, invalid tokens (status 8), uninstalled apps (feedback port)",
    )
    parser.set_defaults(handler=run)


@attrs.define
class Tally:
    """Outcomes as they arrive (the sender's callback), for progress and the check."""

    accepted: set[bytes] = attrs.Factory(set)
    rejected: collections.Counter[int] = attrs.Factory(collections.Counter)
    rejected_tokens: list[DeviceToken] = attrs.Factory(list)
    failed: int = 0
    outcomes: int = 0
    on_change: Callable[[int], None] | None = None

    def __call__(self, outcome: Outcome) -> None:
        self.outcomes += 1
        if outcome.accepted:
            self.accepted.add(outcome.notification.token.value)
        elif outcome.status is not None:
            self.rejected[int(outcome.status)] += 1
            self.rejected_tokens.append(outcome.notification.token)
        else:
            self.failed += 1
        if self.on_change is not None:
            self.on_change(self.outcomes)


@attrs.frozen
class Check:
    """The invariant: one outcome each, and each accepted notification recorded once."""

    submitted: int
    settled: int
    recorded: int
    duplicates: int
    missing: int
    unexpected: int

    @property
    def held(self) -> bool:
        return (
            self.submitted == self.settled
            and self.duplicates == 0
            and self.missing == 0
            and self.unexpected == 0
        )


def check_invariant(submitted: int, tally: Tally, sim: Simulator) -> Check:
    """Compare the sender's outcomes with what the simulator recorded."""
    recorded = collections.Counter(bytes.fromhex(record.token) for record in sim.accepted)
    return Check(
        submitted=submitted,
        settled=len(tally.accepted) + sum(tally.rejected.values()) + tally.failed,
        recorded=sum(recorded.values()),
        duplicates=sum(n - 1 for n in recorded.values() if n > 1),
        missing=len(tally.accepted - recorded.keys()),
        unexpected=len(recorded.keys() - tally.accepted),
    )


class Reporter:
    """Progress: a rich bar on a terminal, a plain line per quarter otherwise."""

    def __init__(self, console: Console, total: int) -> None:
        self.console = console
        self.total = total
        self._next_quarter = 1
        self._progress: Progress | None = None
        if console.is_terminal:
            self._progress = Progress(
                TextColumn("   sending"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            )
            self._task = self._progress.add_task("sending", total=total)

    def __enter__(self) -> Reporter:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, settled: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=settled)
            return
        while self._next_quarter <= 4 and settled * 4 >= self._next_quarter * self.total:
            self.console.print(f"   {settled}/{self.total} notifications have an outcome")
            self._next_quarter += 1


async def _demo(console: Console, devices: int, workdir: Path) -> bool:
    started = time.monotonic()
    say = console.print
    plan = Plan.make(devices)
    db_path = workdir / "devices.db"
    record_path = workdir / "accepted.jsonl"

    faults = [Fault.shutdown_after(SHUTDOWN_AFTER, per=FaultScope.SERVER)]
    async with open_simulator(
        invalid_tokens=[t.value for t in plan.invalid],
        uninstalled_tokens=[t.value for t in plan.uninstalled],
        faults=faults,
        record_path=record_path,
    ) as sim:
        gateway, feedback = sim.gateway_address, sim.feedback_address
        say(
            f"1. simulator: gateway {gateway[0]}:{gateway[1]}, feedback {feedback[0]}:"
            f"{feedback[1]} (throwaway certificates, {sim.environment.value})"
        )
        say(
            f"   scripted: {INVALID} invalid tokens (status 8), {UNINSTALLED} uninstalled "
            f"apps (accepted, then listed by feedback), a shutdown (status 10) after "
            f"{SHUTDOWN_AFTER} notifications"
        )

        store = TokenStore(db_path)
        try:
            yesterday = time.time() - 86_400
            topic = sim.pki.client.topic if sim.pki is not None else None
            store.register_many(plan.tokens, topic=topic, at=yesterday)
            say(f"2. token store: {devices} devices registered yesterday, in {db_path}")

            say(f"3. sending {devices} notifications over TLS ...")
            tally = Tally()
            config = SenderConfig(settle_after=0.2)
            send_started = time.monotonic()
            with Reporter(console, devices) as reporter:
                tally.on_change = reporter.update
                async with open_sender(
                    sim.client_context(),
                    host=gateway[0],
                    port=gateway[1],
                    config=config,
                    on_outcome=tally,
                ) as sender:
                    await sender.submit_many(
                        Notification(
                            token=token,
                            payload=build_payload(alert=f"Hello device {n}", badge=1),
                        )
                        for n, token in enumerate(plan.tokens)
                    )
                    await sender.flush(confirm=True)
            send_time = time.monotonic() - send_started
            stats = sender.stats
            rejected = ", ".join(
                f"{_status_text(status)}: {n}" for status, n in sorted(tally.rejected.items())
            )
            frames = collections.Counter(record.status for record in sim.errors_sent)
            say(
                f"   {stats.submitted} submitted in {send_time:.1f} s: accepted {stats.accepted}, "
                f"rejected {stats.rejected} ({rejected or 'none'}), failed {stats.failed}"
            )
            # flush(confirm=True) ends with a zero-length token; its answer is status 2.
            probes = frames.pop(Status.MISSING_DEVICE_TOKEN, 0)
            say(
                "   error frames from the gateway: "
                + ", ".join(f"{_status_text(code)} x{n}" for code, n in sorted(frames.items()))
                + f", and {plural(probes, 'answer')} to the confirmation probe (status 2)"
            )
            say(
                f"   replayed {stats.replayed} after rejections and the shutdown, "
                f"{stats.reconnects} reconnects, {stats.connections_opened} connections"
            )
            invalid = store.deactivate(tally.rejected_tokens, reason="invalid-token")
            say(f"   store: {invalid} devices deactivated for status 8 (invalid token)")

            # Some users reinstall the app after the push and before the cleanup:
            # their registration is newer than the feedback entry.
            store.register_many(plan.uninstalled[:REINSTALLED])
            say(f"4. {REINSTALLED} of the uninstalled apps are reinstalled (registered again)")

            items = await read_feedback(
                sim.client_context(), host=feedback[0], port=feedback[1], timeout=30
            )
            result = store.apply_feedback(items)
            say(
                f"5. feedback service listed {len(items)} tokens: {result.deactivated} "
                f"deactivated, {result.skipped_reregistered} kept (re-registered since), "
                f"{result.unknown} unknown"
            )
            check = check_invariant(stats.submitted, tally, sim)
            counts = store.counts()
        finally:
            store.close()

    verdict = "held" if check.held else "BROKEN"
    say(
        f"6. check: submitted {check.submitted} = accepted {len(tally.accepted)} + rejected "
        f"{sum(tally.rejected.values())} + failed {tally.failed}: "
        f"{'yes' if check.submitted == check.settled else 'NO'}; the simulator recorded "
        f"{check.recorded} notifications, {check.duplicates} twice, {check.missing} accepted "
        f"ones missing, {check.unexpected} unexpected: invariant {verdict}"
    )
    elapsed = time.monotonic() - started
    console.print(
        _summary(
            devices,
            stats,
            tally,
            result,
            invalid,
            counts.active,
            verdict,
            elapsed,
            frames[Status.SHUTDOWN],
        )
    )
    return check.held


def _summary(
    devices: int,
    stats: SenderStats,
    tally: Tally,
    result: FeedbackResult,
    invalid: int,
    active: int,
    verdict: str,
    seconds: float,
    shutdowns: int,
) -> Table:
    table = Table(title="apns-legacy demo", show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("count", justify="right")
    rows = [
        ("devices registered", devices),
        ("notifications accepted", len(tally.accepted)),
        *((f"rejected: {_status_text(status)}", n) for status, n in sorted(tally.rejected.items())),
        ("failed", tally.failed),
        ("replayed after errors", stats.replayed),
        ("gateway shutdowns (status 10)", shutdowns),
        ("reconnects", stats.reconnects),
        ("deactivated: feedback", result.deactivated),
        ("kept: re-registered since", result.skipped_reregistered),
        ("deactivated: invalid token", invalid),
        ("active devices now", active),
    ]
    for what, count in rows:
        table.add_row(what, str(count))
    table.add_row("invariant", verdict)
    table.add_row("wall time", f"{seconds:.1f} s")
    return table


def _status_text(code: int) -> str:
    status = status_from_int(code)
    if isinstance(status, Status):
        return f"{status.description.lower()} ({code})"
    return f"status {code}"


def _run_bridge(console: Console, devices: int) -> int:
    from ._demo_bridge import demo_bridge

    console.print("apns-legacy demo --bridge: legacy binary sender -> bridge -> HTTP/2 APNs")
    with tempfile.TemporaryDirectory(prefix="apns-legacy-demo-bridge-") as tmp:
        held = trio.run(demo_bridge, console, devices, Path(tmp))
    if not held:
        print("apns-legacy demo --bridge: a check did not hold", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    devices: int = args.devices
    if not INVALID + UNINSTALLED < devices <= 1_000_000:
        raise UsageError(f"--devices must be {INVALID + UNINSTALLED + 1} to 1000000, not {devices}")
    console = Console(highlight=False, soft_wrap=True)
    if args.bridge:
        if args.http2 or args.keep is not None:
            raise UsageError("--bridge runs on its own: not with --http2 or --keep")
        return _run_bridge(console, devices)
    demo: Callable[[Console, int, Path], Awaitable[bool]] = _demo
    if args.http2:
        from ._demo_http2 import demo_http2

        demo = demo_http2
        console.print("apns-legacy demo --http2: HTTP/2 simulator, send --http2 and its --db")
    else:
        console.print("apns-legacy demo: simulator, sender and feedback cleanup on this machine")
    if args.keep is not None:
        workdir = Path(args.keep)
        try:
            workdir.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise UsageError(f"--keep {workdir}: is a file, not a directory") from None
        except OSError as exc:
            raise UsageError(f"--keep {workdir}: cannot create ({os_error(exc)})") from None
        for name in ("devices.db", "accepted.jsonl"):
            (workdir / name).unlink(missing_ok=True)
        held = trio.run(demo, console, devices, workdir)
        console.print(f"kept the token store and the simulator's record in {workdir}")
    else:
        with tempfile.TemporaryDirectory(prefix="apns-legacy-demo-") as tmp:
            held = trio.run(demo, console, devices, Path(tmp))
    if not held:
        what = "a check" if args.http2 else "the delivery invariant"
        print(f"apns-legacy demo: {what} did not hold", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
