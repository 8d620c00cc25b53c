"""``apns-legacy send``: send notifications from flags or a JSON-lines file, report outcomes.

Everything that can be checked before connecting is checked first (flags, ``--token``
values, the ``--payload`` size, the credentials, the files), and a problem there is
one line on stderr and exit code 2 with nothing sent. The input file is streamed:
read in 64 KiB pieces (in a worker thread, so a slow pipe never stalls the event
loop), split into lines, checked and submitted one by one; the sender's queue applies
back-pressure, and outcomes go to the ``--report`` file as they arrive (written 64
lines at a time, and the rest when the run ends, however it ends), so memory stays
bounded however long the input is.

With ``--db PATH`` (see ``_send_store``) tokens the token store has deactivated are
skipped (reported ``"outcome":"skipped"``) and new status-8 rejections are recorded
in the store.

With ``--http2`` (see ``_send_http2``) the same input, report, display and store go
through Apple's HTTP/2 provider API instead: report lines carry the HTTP status,
Apple's reason, ``apns_id`` and the 410 ``timestamp``; the summary names rejections by
Apple's reason; ``--db`` also applies BadDeviceToken and 410s as they come in.

Exit codes: 0 all accepted on the gateway's evidence; 1 some rejected or failed, some
accepted only by assumption (``--assume-accepted``, command 0), bad input lines or
deactivated tokens skipped; 2 bad usage or input (with ``--strict``: a bad input line
stopped the run).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import signal
import stat
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import IO, Any, Final, Protocol, cast

import attrs
import trio

from ..client import (
    PRODUCTION_GATEWAY,
    SANDBOX_GATEWAY,
    Device,
    Http2SenderConfig,
    Outcome,
    OutcomeKind,
    SenderConfig,
    SenderStats,
    bulk_gc,
    open_http2_sender,
    open_sender,
)
from ..wire import (
    PAYLOAD_LIMIT,
    PRIORITY_IMMEDIATE,
    Command,
    DeviceToken,
    LocalProtocolError,
    Notification,
    PayloadTooLargeError,
    build_payload,
    raw_payload,
)
from ._common import add_connection_arguments, load_client_context
from ._exit import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError
from ._send_display import (
    PLAIN_EVERY,
    Display,
    Progress,
    http2_report_line,
    json_line,
    report_line,
    skipped_entry,
    summary,
)
from ._send_http2 import (
    PayloadCheck,
    add_http2_arguments,
    check_protocol_flags,
    check_request,
    http2_config,
    http2_payload_limit,
    http2_settings,
    limit_hint,
)
from ._send_input import (
    READ_SIZE,
    UINT32_MAX,
    InputFailed,
    LineSplitter,
    ParsedChunk,
    Plan,
    cannot_read,
    parse_lines,
)
from ._send_store import StoreGuard, skip_reason
from ._send_worker import worker_chunks
from ._signals import run_trio, watch_stop_signals
from ._text import os_error

#: Most parallel connections one send may open (each costs a TLS session and memory).
MAX_CONNECTIONS: Final = 100
#: Report lines written to the file in one call (about 56 KiB): a fast run makes few
#: write calls; a slow one's report grows in steps of this many lines, and whatever
#: is waiting is written when the run ends, however it ends.
REPORT_BATCH: Final = 256
_ACCEPTED: Final = OutcomeKind.ACCEPTED
#: The collector's thresholds while sending: bulk_gc's idea (client/_gc.py), further.
#: The window holds up to 200,000 notifications, each with its token and outcome, and
#: none in a cycle: a young collection every 200,000 allocations instead of 50,000
#: walks them a quarter as often (about 6% of send --input --report's time).
SEND_GC_THRESHOLDS: Final = (200_000, 50, 50)
#: ``--parse auto`` parses an input file at least this large in a second process.
PARSE_PROCESS_FROM: Final = 8 << 20
_FORMATS: Final = {"simple": Command.SIMPLE, "enhanced": Command.ENHANCED, "frame": Command.FRAME}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "send",
        help="send notifications to a gateway (or, with --http2, to Apple's HTTP/2 API)",
        description="Send notifications over the legacy binary protocol (or, with --http2, "
        "Apple's HTTP/2 provider API) and report what became of each one. Exit 0 when the "
        "server confirmed all of them, 1 when some were rejected, failed, or accepted only "
        "by assumption (or bad input lines were skipped), 2 for bad usage or input.",
    )
    add_connection_arguments(
        parser, production=PRODUCTION_GATEWAY, sandbox=SANDBOX_GATEWAY, cert_required=False
    )
    add_http2_arguments(parser)
    what = parser.add_argument_group("what to send (--token ... or --input)")
    add = what.add_argument
    add("--token", action="append", default=[], metavar="HEX", help="device token (repeatable)")
    add(
        "--input",
        metavar="FILE",
        help="JSON lines: token, payload, optional expiry, priority ('-': standard input; "
        "the JSON lines of `tokens export --active` are valid input)",
    )
    add("--payload", metavar="JSON", help="the payload as JSON text")
    add("--alert", metavar="TEXT", help="build the payload: alert text")
    add("--badge", type=int, metavar="N", help="build the payload: badge number")
    add("--sound", metavar="NAME", help="build the payload: sound name")
    add("--expiry", type=int, default=0, metavar="UNIX_TIME", help="default 0: do not store")
    add("--priority", type=int, choices=[10, 5], default=PRIORITY_IMMEDIATE, help="default 10")
    how = parser.add_argument_group("how")
    add = how.add_argument
    # The binary-only flags default to None, so that --http2 can refuse them when given
    # (_send_http2.check_protocol_flags fills in their defaults otherwise).
    add("--format", choices=list(_FORMATS), help="command 0, 1 or 2 (default)")
    add("--connections", type=int, default=1, metavar="N", help="parallel connections (default 1)")
    add("--connect-timeout", type=float, default=10.0, metavar="SECONDS",
        help="TCP connect plus TLS handshake, per attempt (default 10)")  # fmt: skip
    add("--connect-attempts", type=int, default=5, metavar="N",
        help="failed connects in a row before the queue fails (default 5)")  # fmt: skip
    add("--payload-limit", type=int, metavar="N",
        help=f"default {PAYLOAD_LIMIT} (--http2: 4096, 5120 for VoIP)")  # fmt: skip
    add("--probe-timeout", type=float, metavar="SECONDS",
        help="wait this long for the answer to a confirmation probe; without one the "
        "notifications it was to confirm fail as unconfirmed (default 20)")  # fmt: skip
    add("--write-timeout", type=float, metavar="SECONDS",
        help="end a connection whose write makes no progress this long (default 15)")  # fmt: skip
    add("--assume-accepted", action="store_true", default=None,
        help="for servers that never answer probes: count a notification accepted once the "
        "server's TCP stack acknowledged it and --settle seconds passed without an error "
        "(an assumption: reported, and exit code 1)")  # fmt: skip
    add("--no-spare", action="store_true", default=None,
        help="no spare connections (by default each connection keeps one, handshake done, "
        "so the replay after a rejection starts at once): for a gateway that counts or "
        "limits connections")  # fmt: skip
    add("--settle", type=float, metavar="SECONDS",
        help="quiet period of --assume-accepted and --format simple (default 1)")  # fmt: skip
    add("--long-tokens", action="store_true", help="allow tokens of 32 to 100 bytes")
    add("--report", metavar="FILE", help="write one JSON outcome a line ('-': stdout)")
    add("--db", metavar="PATH",
        help="token store: skip the tokens it has deactivated (reported as skipped), "
        "and deactivate the ones the gateway rejects as invalid (status 8; --http2: "
        "BadDeviceToken, and 410 Unregistered with its time)")  # fmt: skip
    add("--append", action="store_true", help="add to the --report file instead of replacing it")
    add("--strict", action="store_true", help="stop at the first bad input line (exit 2)")
    add("--parse", choices=("auto", "process", "inline"), default="auto",
        help="where --input lines are parsed: in a second process beside the sending one "
        "(a second core's work), or inline; auto: a second process for an input file of "
        f"{PARSE_PROCESS_FROM >> 20} MiB or more, or a pipe, when two or more cores are "
        "free for this program (POSIX), and never with --http2")  # fmt: skip
    add("--quiet", "-q", action="store_true", help="no progress display and no summary")
    add(
        "--progress-every",
        type=float,
        default=PLAIN_EVERY,
        metavar="SECONDS",
        help=f"when stderr is not a terminal: a progress line this often (default {PLAIN_EVERY:g})",
    )
    parser.set_defaults(handler=run)


def make_plan(args: argparse.Namespace) -> Plan:
    """Check every flag and ``--token``; build the command-line payload.

    Raises:
        UsageError: one line naming the flag and its limit.
    """
    check_protocol_flags(args)
    if bool(args.token) == (args.input is not None):
        raise UsageError("give either --token HEX (repeatable) or --input FILE|-")
    if not 1 <= args.connections <= MAX_CONNECTIONS:
        raise UsageError(
            f"--connections must be 1 to {MAX_CONNECTIONS}, not {args.connections} "
            "(one process is the limit long before that; run several for more)"
        )
    if args.connect_attempts < 1:
        raise UsageError(f"--connect-attempts must be at least 1, not {args.connect_attempts}")
    timeouts = [("--connect-timeout", args.connect_timeout)]
    if not args.http2:
        if not 1 <= args.payload_limit <= 0xFFFF:
            raise UsageError(f"--payload-limit must be 1 to 65535, not {args.payload_limit}")
        timeouts += [
            ("--settle", args.settle),
            ("--probe-timeout", args.probe_timeout),
            ("--write-timeout", args.write_timeout),
        ]
    for flag, value in timeouts:
        if not (math.isfinite(value) and value > 0):
            raise UsageError(f"{flag} must be more than 0 seconds, not {value}")
    if not 0 <= args.expiry <= UINT32_MAX:
        raise UsageError(f"--expiry must be 0 to {UINT32_MAX} (UNIX seconds), not {args.expiry}")
    if args.append and args.report in (None, "-"):
        raise UsageError("--append needs --report FILE")
    if args.parse != "auto" and args.input is None:
        raise UsageError(f"--parse {args.parse} applies to --input only")
    if not (math.isfinite(args.progress_every) and args.progress_every > 0):
        raise UsageError(f"--progress-every must be more than 0 seconds, not {args.progress_every}")
    tokens = []
    for text in args.token:
        try:
            tokens.append(DeviceToken.from_hex(text, allow_long=args.long_tokens))
        except LocalProtocolError as exc:
            raise UsageError(f"--token {text!r}: {exc}") from None
    if args.http2:
        return _http2_plan(args, tuple(tokens))
    if args.cert is None:
        raise UsageError("--cert FILE is required (the client certificate; or use --http2)")
    payload = _command_line_payload(args, args.payload_limit, "(--payload-limit)")
    if args.token and payload is None:
        raise UsageError("--token needs a payload: --payload JSON, or --alert/--badge/--sound")
    command = _FORMATS[args.format]
    config = SenderConfig(
        connections=args.connections,
        command=command,
        payload_limit=args.payload_limit,
        allow_long_tokens=args.long_tokens,
        settle_after=args.settle,
        probe_timeout=args.probe_timeout,
        connect_timeout=args.connect_timeout,
        max_connect_attempts=args.connect_attempts,
        write_timeout=args.write_timeout,
        assume_accepted=args.assume_accepted,
        spare_connection=not args.no_spare,
    )
    return Plan(
        config=config,
        payload=payload,
        expiry=args.expiry,
        priority=args.priority,
        tokens=tuple(tokens),
        strict=args.strict,
    )


def _http2_plan(args: argparse.Namespace, tokens: tuple[DeviceToken, ...]) -> Plan:
    """The plan of ``send --http2``: the settings, the key or certificate, the payload."""
    settings = http2_settings(args)
    limit = http2_payload_limit(settings)
    payload = _command_line_payload(args, limit, limit_hint(settings))
    if tokens and payload is None:
        raise UsageError("--token needs a payload: --payload JSON, or --alert/--badge/--sound")
    if payload is not None:
        # The request it would be (push type, empty aps, VoIP limit...), refused now
        # rather than failed later, once per run (the token does not change the rules).
        flag = "--payload" if args.payload is not None else "--alert/--badge/--sound"
        probe_token = tokens[0] if tokens else DeviceToken(bytes(32))
        notification = Notification(
            token=probe_token, payload=payload, expiry=args.expiry, priority=args.priority
        )
        check_request(flag, notification, settings)
    return Plan(
        config=http2_config(args, settings),
        payload=payload,
        expiry=args.expiry,
        priority=args.priority,
        tokens=tokens,
        strict=args.strict,
        payload_limit=limit,
        allow_long_tokens=args.long_tokens,
    )


def _command_line_payload(args: argparse.Namespace, limit: int, hint: str) -> bytes | None:
    built = args.alert is not None or args.badge is not None or args.sound is not None
    if args.payload is not None and built:
        raise UsageError("--payload cannot be combined with --alert, --badge or --sound")
    if args.badge is not None and args.badge < 0:
        raise UsageError(f"--badge must be 0 or more, not {args.badge}")
    flag = "--payload" if args.payload is not None else "--alert/--badge/--sound"
    try:
        if args.payload is not None:
            return raw_payload(args.payload, limit=limit)
        if built:
            return build_payload(alert=args.alert, badge=args.badge, sound=args.sound, limit=limit)
    except PayloadTooLargeError as exc:
        raise UsageError(f"{flag}: {exc} {hint}") from None
    except LocalProtocolError as exc:
        raise UsageError(f"{flag}: {exc}") from None
    return None


@attrs.define
class _Run:
    """One send's state between the outcome callback, the input loop and the summary."""

    report: IO[bytes] | None
    display: Display
    skipped: int = 0
    stopped_at: int | None = None
    first_failure: str | None = None
    #: The signal that stopped the input (SIGINT or SIGTERM), if one did.
    interrupted: int | None = None
    #: Whether the input is parsed in a second process (``--parse``).
    parse_in_process: bool = False
    #: Why the input stopped before its end, if it could not be read to it.
    input_failure: str | None = None
    #: The last input line read and dealt with (submitted, skipped or blank).
    last_line: int = 0
    #: Bytes of the input read so far.
    bytes_read: int = 0
    #: The token store of --db.
    guard: StoreGuard | None = None
    #: Sending over HTTP/2 (report lines and store updates of that protocol).
    http2: bool = False
    #: What else an input line must pass (HTTP/2: the request rules), a reason if not.
    check: Callable[[Notification], str | None] | None = None

    @property
    def skipped_dead(self) -> int:
        """Notifications not sent because the store has their token deactivated."""
        return 0 if self.guard is None else self.guard.skipped

    #: Outcomes whose report lines are not written yet, and the lines of skipped
    #: notifications: they go to the file in batches of REPORT_BATCH (one write call
    #: instead of one a line), and the rest when the run ends (:meth:`flush_report`,
    #: however it ends).
    pending_outcomes: list[Outcome] = attrs.Factory(list)
    pending_lines: list[bytes] = attrs.Factory(list)
    #: The report line of an outcome (the protocol's).
    _line_of: Callable[[Outcome], bytes] = attrs.field(
        init=False,
        default=attrs.Factory(
            lambda run: http2_report_line if run.http2 else report_line, takes_self=True
        ),
    )

    def on_outcome(self, outcome: Outcome) -> None:
        if self.report is not None:
            pending = self.pending_outcomes
            pending.append(outcome)  # settled: it does not change any more
            if len(pending) >= REPORT_BATCH:
                self.flush_report()
        kind = outcome.kind
        if kind is _ACCEPTED:
            return
        if kind is OutcomeKind.REJECTED and self.guard is not None:
            self.guard.keeper.on_outcome(outcome)
        elif kind is OutcomeKind.FAILED and self.first_failure is None:
            self.first_failure = outcome.reason

    def skip_dead(self, tag: int, token: DeviceToken, device: Device) -> None:
        """Report a notification not sent: the store has its token deactivated."""
        assert self.guard is not None
        self.guard.skipped += 1
        if self.report is not None:
            entry = skipped_entry(tag, token.hex, skip_reason(device), http2=self.http2)
            self.pending_lines.append(json_line(entry))
            if len(self.pending_lines) >= REPORT_BATCH:
                self.flush_report()

    def flush_report(self) -> None:
        """Write the report lines not written yet (in one call)."""
        outcomes, lines = self.pending_outcomes, self.pending_lines
        if self.report is not None and (outcomes or lines):
            line_of = self._line_of
            self.report.write(b"".join([line_of(outcome) for outcome in outcomes] + lines))
        outcomes.clear()
        lines.clear()

    def bad_line(self, number: int, message: str, strict: bool) -> None:
        self.skipped += 1
        self.display.message(f"line {number}: {message}")
        if strict:
            self.stopped_at = number
            self.display.message(f"stopped at line {number} (--strict): nothing after it was sent")

    def stop_input(self, scope: trio.CancelScope) -> Callable[[signal.Signals], None]:
        """What the first SIGINT or SIGTERM does: stop the input, let the rest settle."""

        def first(signum: signal.Signals) -> None:
            self.interrupted = signum
            self.display.message(
                f"{signum.name}: no more input; waiting for the outcomes of what "
                "was submitted (again to stop at once)"
            )
            scope.cancel()

        return first


class _Submitter(Protocol):
    """What the input loop needs of a sender: the binary one or the HTTP/2 one."""

    @property
    def stats(self) -> SenderStats: ...

    @property
    def fatal_error(self) -> str | None: ...

    async def submit(self, notification: Notification, tag: Any = None) -> Outcome: ...

    def submit_nowait_many(self, items: Sequence[tuple[Notification, Any]]) -> int: ...


#: Opens a sender for ``send``, given the outcome callback.
Opener = Callable[[Callable[[Outcome], None]], AbstractAsyncContextManager[_Submitter]]


async def send(plan: Plan, opener: Opener, source: int | None, run: _Run) -> int:
    """Connect, submit everything, settle every outcome, print the summary; the exit code."""
    started = trio.current_time()
    stop_input = trio.CancelScope()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(watch_stop_signals, run.stop_input(stop_input))
            if run.guard is not None:
                nursery.start_soon(run.guard.keep_recording)
            async with opener(run.on_outcome) as sender:
                nursery.start_soon(
                    run.display.follow,
                    lambda: Progress(sender.stats, run.skipped + run.skipped_dead, run.bytes_read),
                )
                with stop_input:
                    if source is None:
                        await _submit_tokens(plan, sender, run)
                    else:
                        await _submit_lines(plan, source, sender, run)
                # Leaving the block settles everything: a confirmation probe per
                # connection (the quiet period for command 0); whatever is still
                # unsettled after SenderConfig.close_timeout fails.
            nursery.cancel_scope.cancel()
    finally:
        run.display.close()
    stats = sender.stats
    fatal_error = sender.fatal_error
    # HTTP/2: Apple's reasons (Http2Sender.rejected_by_reason); binary: None.
    by_reason: Mapping[str, int] | None = getattr(sender, "rejected_by_reason", None)
    if fatal_error is not None:
        print(f"apns-legacy send: gave up: {fatal_error}", file=sys.stderr)
    elif run.first_failure is not None:
        print(f"apns-legacy send: {stats.failed} failed; the first: {run.first_failure}",
              file=sys.stderr)  # fmt: skip
    if stats.assumed:
        print(
            f"apns-legacy send: {stats.assumed} accepted without confirmation from the "
            "gateway (assumed after a quiet period)",
            file=sys.stderr,
        )
    if run.guard is not None:
        print(f"apns-legacy send: {run.guard.close()}", file=sys.stderr)
    elapsed = trio.current_time() - started
    run.display.summary(
        summary(stats, run.skipped, elapsed, deactivated=run.skipped_dead, by_reason=by_reason)
    )
    if run.input_failure is not None:
        print(f"apns-legacy send: --input: {run.input_failure}", file=sys.stderr)
    if (run.interrupted is not None or run.input_failure is not None) and source is not None:
        # Every line up to last_line has its outcome in the report (or was skipped).
        print(
            f"apns-legacy send: stopped after input line {run.last_line}: resume from line "
            f"{run.last_line + 1} (e.g. tail -n +{run.last_line + 1} FILE | apns-legacy send "
            "--input - ...)",
            file=sys.stderr,
        )
    if run.interrupted is not None:
        return 128 + run.interrupted  # the shell's convention for "killed by signal N"
    if run.stopped_at is not None:
        return EXIT_USAGE
    if stats.rejected or stats.failed or run.skipped or stats.pending or stats.assumed:
        return EXIT_FAILED
    if run.skipped_dead or (run.guard is not None and run.guard.failure is not None):
        return EXIT_FAILED
    if run.input_failure is not None:
        return EXIT_FAILED
    return EXIT_OK


async def _submit_tokens(plan: Plan, sender: _Submitter, run: _Run) -> None:
    assert plan.payload is not None  # make_plan insists on one with --token
    dead = {} if run.guard is None else run.guard.dead(plan.tokens)
    for position, token in enumerate(plan.tokens, start=1):
        device = dead.get(token)
        if device is not None:
            run.skip_dead(position, token, device)
            continue
        notification = Notification(
            token=token, payload=plan.payload, expiry=plan.expiry, priority=plan.priority
        )
        await sender.submit(notification, tag=position)


async def _inline_chunks(source: int, plan: Plan) -> AsyncGenerator[ParsedChunk, None]:
    """The parsed input of ``source``, chunk by chunk, parsed here."""
    splitter = LineSplitter()
    bytes_read = 0
    while True:
        try:
            chunk = await trio.to_thread.run_sync(
                os.read, source, READ_SIZE, abandon_on_cancel=True
            )
        except OSError as exc:
            raise InputFailed(cannot_read(exc)) from None
        bytes_read += len(chunk)
        lines = splitter.feed(chunk) if chunk else splitter.finish()
        # Each line of the chunk: a notification, an error message, or None (blank).
        yield bytes_read, parse_lines(lines, plan)
        if not chunk:
            return


async def _submit_lines(plan: Plan, source: int, sender: _Submitter, run: _Run) -> None:
    chunks = worker_chunks(source, plan) if run.parse_in_process else _inline_chunks(source, plan)
    try:
        async with contextlib.aclosing(chunks):
            await _submit_chunks(plan, chunks, sender, run)
    except InputFailed as exc:
        run.input_failure = str(exc)


async def _submit_chunks(
    plan: Plan, chunks: AsyncIterator[ParsedChunk], sender: _Submitter, run: _Run
) -> None:
    async for bytes_read, items in chunks:
        run.bytes_read = bytes_read
        check = run.check
        if check is not None:  # HTTP/2: the request rules, a reason if not met
            items = [
                (number, item)
                if not isinstance(item, Notification) or (problem := check(item)) is None
                else (number, problem)
                for number, item in items
            ]
        dead = {}
        if run.guard is not None:  # one lookup for the chunk's tokens
            dead = run.guard.dead(item.token for _, item in items if isinstance(item, Notification))
        # Runs of notifications go to the sender together; a line skipped (dead token,
        # bad line) waits until the run before it is submitted, so that lines are
        # dealt with in their order. run.last_line is the last line dealt with at every
        # await (where a signal can stop the input), not set for each line.
        batch: list[tuple[Notification, Any]] = []
        for number, item in items:
            if isinstance(item, Notification):
                device = dead.get(item.token) if dead else None
                if device is None:
                    batch.append((item, number))
                    continue
                await _submit_batch(batch, sender, run)
                run.skip_dead(number, item.token, device)
            elif item is not None:
                await _submit_batch(batch, sender, run)
                run.bad_line(number, item, plan.strict)
                if run.stopped_at is not None:
                    run.last_line = number - 1
                    return
        await _submit_batch(batch, sender, run)
        if items:
            run.last_line = items[-1][0]
        await trio.lowlevel.checkpoint()  # let the connections write between chunks


async def _submit_batch(
    batch: list[tuple[Notification, Any]], sender: _Submitter, run: _Run
) -> None:
    """Submit ``(notification, line number)`` pairs in order; the list ends empty.

    Without a checkpoint while the sender's queue has room; when it is full, the next
    one waits for room (the lines before it are then all dealt with)."""
    start = 0
    while start < len(batch):
        start += sender.submit_nowait_many(batch[start:] if start else batch)
        if start < len(batch):
            notification, number = batch[start]
            run.last_line = number - 1  # lines are numbered one by one
            await sender.submit(notification, tag=number)
            start += 1
    batch.clear()


def parse_in_process(choice: str, source: int | None, http2: bool) -> bool:
    """Whether ``--parse CHOICE`` puts the input's parsing in a second process."""
    if source is None or choice == "inline":
        return False
    if choice == "process":
        return True
    info = os.fstat(source)
    big = (
        info.st_size >= PARSE_PROCESS_FROM
        if stat.S_ISREG(info.st_mode)
        else stat.S_ISFIFO(info.st_mode) or stat.S_ISSOCK(info.st_mode)
    )
    # POSIX only: the worker's pipe and session are written for it.
    return big and not http2 and os.name == "posix" and _free_cores() >= 2


def _free_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def _open_input(path: str | None) -> Iterator[int | None]:
    if path is None:
        yield None
        return
    if path == "-":
        try:
            descriptor = sys.stdin.fileno()
        except (AttributeError, OSError, ValueError):  # closed, or not a real file
            raise UsageError("--input -: there is no standard input to read") from None
        yield descriptor
        return
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise UsageError(f"--input {path}: cannot read ({os_error(exc)})") from None
    try:
        if stat.S_ISDIR(os.fstat(descriptor).st_mode):  # Linux opens a directory happily
            raise UsageError(f"--input {path}: is a directory")
        yield descriptor
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def _open_report(path: str | None, append: bool = False) -> Iterator[IO[bytes] | None]:
    if path is None:
        yield None
        return
    if path == "-":
        sys.stdout.flush()
        out: IO[bytes] | None = getattr(sys.stdout, "buffer", None)
        if out is None:  # a text-only stdout (an embedding program's): write it decoded
            out = cast("IO[bytes]", _TextSink(sys.stdout))
        yield out
        out.flush()
        return
    try:
        file = open(path, "ab" if append else "wb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise UsageError(f"--report {path}: cannot write ({os_error(exc)})") from None
    with file:
        yield file


class _TextSink(io.RawIOBase):
    """Bytes written to a text stream (UTF-8 report lines, decoded)."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__()
        self._stream = stream

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._stream.write(bytes(data).decode("utf-8"))
        return len(data)

    def flush(self) -> None:
        self._stream.flush()


def _file_size(source: int | None) -> int | None:
    """The size of a regular input file (for the progress percentage); None for a pipe."""
    if source is None:
        return None
    info = os.fstat(source)
    return info.st_size if stat.S_ISREG(info.st_mode) and info.st_size > 0 else None


def run(args: argparse.Namespace) -> int:
    """Handler of ``send``: check everything, then connect and send."""
    plan = make_plan(args)
    config = plan.config
    opener: Opener
    if isinstance(config, Http2SenderConfig):
        http2_config_: Http2SenderConfig = config

        def opener(on_outcome: Callable[[Outcome], None]) -> Any:
            return open_http2_sender(http2_config_, on_outcome=on_outcome)

    else:
        target = load_client_context(args)
        binary_config: SenderConfig = config

        def opener(on_outcome: Callable[[Outcome], None]) -> Any:
            return open_sender(
                target.context,
                host=target.host,
                port=target.port,
                config=binary_config,
                on_outcome=on_outcome,
            )

    http2 = args.http2
    check = PayloadCheck(config.settings) if isinstance(config, Http2SenderConfig) else None
    guard = (
        StoreGuard(args.db, allow_long_tokens=args.long_tokens, http2=http2)
        if args.db is not None
        else None
    )
    with (
        contextlib.closing(guard) if guard is not None else contextlib.nullcontext(),
        _open_input(args.input) as source,
        _open_report(args.report, args.append) as report,
    ):
        display = Display.create(
            enabled=not args.quiet,
            total=len(plan.tokens) if source is None else None,
            total_bytes=_file_size(source),
            every=args.progress_every,
        )
        # Few long-lived objects per notification: collect less often (client/_gc.py).
        with bulk_gc(SEND_GC_THRESHOLDS):
            run_state = _Run(
                report,
                display,
                guard=guard,
                http2=http2,
                check=check,
                parse_in_process=parse_in_process(args.parse, source, http2),
            )
            try:
                return run_trio(send, plan, opener, source, run_state)
            finally:
                # Every outcome handed over, however the run ended (a second Ctrl-C
                # included), is in the report before it is closed.
                run_state.flush_report()
