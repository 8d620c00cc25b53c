"""``apns-legacy bridge --config FILE``: legacy binary clients in, HTTP/2 APNs out.

Prints one JSON line on stdout once both ports listen::

    {"gateway": "HOST:PORT", "feedback": "HOST:PORT", "mode": "exact", "apps": [...], ...}

then serves until Ctrl-C or SIGTERM: the first stops as Apple's gateway did for
maintenance (stop reading, drain what is in flight upstream, status 10 to each client,
close), the second at once (exit 130). SIGHUP reads the file again and applies it to
new connections (open ones keep their settings; a bad file changes nothing and says
why on stderr). On a terminal (or with ``--progress``) one status line on stderr is
rewritten every second. ``--stats-every SECONDS`` writes one JSON line
of counters to stderr that often. Exit 0 after a clean stop, 2 for a bad
configuration (one line naming the field) or a port that cannot be opened.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
from typing import Any

import trio

from ..bridge import Bridge, BridgeConfig, BridgeConfigError, load_config, open_bridge
from ._exit import EXIT_OK, UsageError
from ._signals import run_trio, watch_stop_signals


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "bridge",
        help="let legacy binary clients (2195/2196) reach today's HTTP/2 APNs",
        description="Listen on a gateway and a feedback port with TLS, take binary "
        "notifications from legacy clients (client certificates name the app), forward "
        "them to APNs over HTTP/2 with each app's credentials, and map the answers back "
        "(error frames, feedback lists). See the README, Bridge.",
    )
    parser.add_argument(
        "--config", required=True, metavar="FILE", help="the bridge's TOML configuration"
    )
    parser.add_argument(
        "--stats-every",
        type=float,
        metavar="SECONDS",
        help="write one JSON line of counters to stderr every SECONDS",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="one live status line on stderr, rewritten every second (default: when stderr "
        "is a terminal)",
    )
    parser.add_argument(
        "--for", dest="duration", type=float, metavar="SECONDS", help="stop after SECONDS"
    )
    parser.set_defaults(handler=run)


def _address(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def ready_line(bridge: Bridge) -> dict[str, Any]:
    """What the ready line says."""
    config = bridge.config
    return {
        "gateway": _address(bridge.gateway_address),
        "feedback": _address(bridge.feedback_address),
        "mode": config.mode.value,
        "apps": [app.topic for app in config.apps],
        "store": str(config.store) if config.store is not None else None,
        "metrics": _address(bridge.metrics_address) if bridge.metrics_address else None,
    }


def stats_line(bridge: Bridge) -> dict[str, Any]:
    """The counters ``--stats-every`` writes."""
    gateway = bridge.gateway
    return {
        "connections": gateway.connections,
        "open": bridge.open_sessions,
        "notifications": gateway.notifications,
        "forwarded": gateway.forwarded,
        "replay_matched": gateway.replay_matched,
        "error_frames": gateway.error_frames,
        "by_status": {str(k): v for k, v in sorted(gateway.by_status.items())},
        "upstream": dict(sorted(bridge.stats.upstream.items())),
        "feedback_pending": bridge.feedback_sizes(),
        "ledger": bridge.ledger_size(),
        "alerts": bridge.stats.alerts,
    }


def run(args: argparse.Namespace) -> int:
    for flag, value in (("--stats-every", args.stats_every), ("--for", args.duration)):
        if value is not None and not value > 0:
            raise UsageError(f"{flag} must be > 0, not {value}")
    try:
        config = load_config(args.config)
    except BridgeConfigError as exc:
        raise UsageError(f"--config {args.config}: {exc}") from None
    try:
        progress = sys.stderr.isatty() if args.progress is None else args.progress
        return run_trio(_serve, config, args.stats_every, args.duration, args.config, progress)
    except OSError as exc:
        raise UsageError(str(exc)) from None
    except BaseExceptionGroup as group:
        # A port that cannot be opened, from inside the signal watcher's nursery.
        errors, _ = group.split(OSError)
        if errors is None:
            raise
        first: BaseException = errors
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise UsageError(str(first)) from None


async def _serve(
    config: BridgeConfig,
    stats_every: float | None,
    duration: float | None,
    path: str,
    progress: bool,
) -> int:
    async with trio.open_nursery() as nursery:
        stop = trio.Event()

        def on_signal(signum: signal.Signals) -> None:
            print(f"got {signum.name}: draining, then status 10 to each client", file=sys.stderr)
            stop.set()

        await nursery.start(watch_stop_signals, on_signal)
        async with open_bridge(config) as bridge:
            print(json.dumps(ready_line(bridge)), flush=True)
            print("bridge running; stop with Ctrl-C or SIGTERM", file=sys.stderr)
            if stats_every is not None:
                nursery.start_soon(_report, bridge, stats_every)
            if progress:
                nursery.start_soon(_progress, bridge)
            if threading.current_thread() is threading.main_thread():
                nursery.start_soon(_reload_on_sighup, bridge, path)
            with trio.move_on_after(duration if duration is not None else math.inf):
                await stop.wait()
            await bridge.stop()
            final = stats_line(bridge)
        nursery.cancel_scope.cancel()
    if progress:
        print(file=sys.stderr)  # end the live line
    print(json.dumps({"stopped": final}), file=sys.stderr)
    return EXIT_OK


async def _reload_on_sighup(bridge: Bridge, path: str) -> None:
    # SIGHUP: read the file again and apply it to new connections; a bad file changes
    # nothing (one line on stderr), as a typo must not take the bridge down.
    with trio.open_signal_receiver(signal.SIGHUP) as signals:
        async for _ in signals:
            try:
                config = load_config(path)
            except BridgeConfigError as exc:
                print(f"SIGHUP: not reloaded, --config {path}: {exc}", file=sys.stderr)
                continue
            notes = await bridge.reload(config)
            print(json.dumps({"reloaded": path, "changes": notes}), file=sys.stderr, flush=True)


def progress_line(bridge: Bridge, rate: float) -> str:
    """The live status line: connections, throughput, frames, feedback, health."""
    gateway = bridge.gateway
    frames = " ".join(f"{k}x{v}" for k, v in sorted(gateway.by_status.items())) or "none"
    health = "ok" if not bridge.failing else "FAILING " + ", ".join(sorted(bridge.failing))
    return (
        f"bridge: {bridge.open_sessions} open, {gateway.notifications} in ({rate:.0f}/s), "
        f"{gateway.forwarded} forwarded, {gateway.replay_matched} replays absorbed, "
        f"frames {frames}, feedback {sum(bridge.feedback_sizes().values())} waiting, "
        f"upstream {health}"
    )


async def _progress(bridge: Bridge) -> None:
    before = bridge.gateway.notifications
    while True:
        await trio.sleep(1)
        now = bridge.gateway.notifications
        # \r and erase-to-end: one line, rewritten in place.
        print(f"\r{progress_line(bridge, now - before)}\x1b[K", end="", file=sys.stderr, flush=True)
        before = now


async def _report(bridge: Bridge, every: float) -> None:
    while True:
        await trio.sleep(every)
        print(json.dumps(stats_line(bridge)), file=sys.stderr, flush=True)
