"""One benchmark case in a fresh process: ``python bench/cases.py CASE --port P --pki DIR --n N``.

Prints one JSON line: the case, how many notifications, the timed seconds, the rate,
peak RSS of this process (or of the command-line child), the sender's stats and any
problems found (an invariant broken, a timeout). ``bench/run.py`` starts one of these
per case and repetition, next to a fresh ``bench/receiver.py``.

Every case sends ``--n`` command-2 frames of the same size (32-byte token, a
101-byte payload: 162 bytes a frame) and ends with the confirmation probe, so the
clock stops only when the receiver has read every byte and answered.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import trio
from profiling import Clock, peak_rss_kib

from apns_legacy import (
    Command,
    DeviceToken,
    Notification,
    Outcome,
    OutcomeKind,
    SenderConfig,
    build_payload,
    encode_frame,
    encode_probe,
    open_sender,
    send_all,
)
from apns_legacy.tls import Credentials, client_context, open_tls_stream

HOST = "127.0.0.1"
PAYLOAD_SIZE = 101
FRAME_SIZE = 162
WRITE_SIZE = 65_536
ANSWER = b"\x08\x02\x00\x00\x00\x00"


def payload_for(i: int) -> bytes:
    """The payload of notification ``i`` built with ``build_payload`` (101 bytes).

    The number is zero-padded so that every payload, and so every frame, has the
    same size (the receiver counts bytes, not frames).
    """
    number = f"{i % 10_000_000:07d}"
    return build_payload(
        alert=f"Benchmark notification number {number}",
        badge=1,
        sound="default",
        custom={"ref": number},
    )


SAMPLE_PAYLOAD = payload_for(0)
assert len(SAMPLE_PAYLOAD) == PAYLOAD_SIZE, len(SAMPLE_PAYLOAD)
# The same bytes as payload_for, fast: for preparing data before the clock starts.
_TEMPLATE = SAMPLE_PAYLOAD.replace(b"0000000", b"%s")


def quick_payload(i: int) -> bytes:
    """Exactly ``payload_for(i)``, without the builder (for data made before timing)."""
    number = b"%07d" % (i % 10_000_000)
    return _TEMPLATE % (number, number)


assert quick_payload(1_234_567) == payload_for(1_234_567)


def token_bytes(n: int, seed: int = 2195) -> list[bytes]:
    """``n`` distinct-looking 32-byte tokens, deterministic."""
    blob = random.Random(seed).randbytes(32 * n)
    return [blob[i : i + 32] for i in range(0, 32 * n, 32)]


class Setup:
    def __init__(self, args: argparse.Namespace) -> None:
        self.n: int = args.n
        self.port: int = args.port
        self.pki: Path = args.pki
        self.connections: int = args.connections
        self.deadline: float = args.deadline
        self.work: Path = args.work
        self.profile: str | None = args.profile
        self.config_overrides: dict[str, Any] = json.loads(args.config)
        self.profile_out: Path | None = args.profile_out
        self.credentials = Credentials.load(self.pki / "client.pem", self.pki / "client-key.pem")
        self.context = client_context(self.credentials, ca=self.pki / "ca.pem")

    def sender_config(self) -> SenderConfig:
        """The library's defaults, with this run's connection count and ``--config``."""
        return SenderConfig(connections=self.connections, **self.config_overrides)


Result = dict[str, Any]


# -- references: pre-built frames, 64 KiB writes, one connection -------------------------


def reference_block() -> bytes:
    """As many whole frames as fit in 64 KiB (404 frames, 65,448 bytes)."""
    tokens = token_bytes(WRITE_SIZE // FRAME_SIZE, seed=1)
    return b"".join(encode_frame(i + 1, t, SAMPLE_PAYLOAD) for i, t in enumerate(tokens))


def reference_writes(n: int) -> Iterator[bytes]:
    block = reference_block()
    per_block = len(block) // FRAME_SIZE
    full, rest = divmod(n, per_block)
    for _ in range(full):
        yield block
    if rest:
        yield block[: rest * FRAME_SIZE]
    yield encode_probe(Command.FRAME, n + 1)


async def case_reference(setup: Setup) -> Result:
    """Pre-built frames written through our TLSStream (trio), then the probe."""
    writes = list(reference_writes(setup.n))
    clock = Clock(setup)
    clock.start()
    stream = await open_tls_stream(HOST, setup.port, setup.context)
    for data in writes:
        await stream.send_all(data)
    answer = b""
    while len(answer) < len(ANSWER):
        more = await stream.receive_some()
        if not more:
            break
        answer += more
    seconds = clock.stop()
    await trio.aclose_forcefully(stream)
    return reference_result(setup, clock, seconds, answer)


def reference_result(setup: Setup, clock: Clock, seconds: float, answer: bytes) -> Result:
    """What both reference cases report: the time, and whether the probe was answered."""
    problems = [] if answer == ANSWER else [f"probe answer {answer.hex()}"]
    return {
        "seconds": seconds,
        "written": setup.n,
        "rss_before_kib": clock.before_kib,
        "gc": clock.gc.to_json(),
        "problems": problems,
    }


def case_reference_ssl(setup: Setup) -> Result:
    """The same bytes through the standard library's ssl module, blocking sendall."""
    writes = list(reference_writes(setup.n))
    context = ssl.create_default_context(cafile=str(setup.pki / "ca.pem"))
    context.load_cert_chain(setup.pki / "client.pem", setup.pki / "client-key.pem")
    clock = Clock(setup)
    clock.start()
    with (
        socket.create_connection((HOST, setup.port), timeout=setup.deadline) as raw,
        context.wrap_socket(raw, server_hostname=HOST) as tls,
    ):
        for data in writes:
            tls.sendall(data)
        answer = b""
        while len(answer) < len(ANSWER):
            more = tls.recv(64)
            if not more:
                break
            answer += more
    seconds = clock.stop()
    return reference_result(setup, clock, seconds, answer)


# -- the sender ------------------------------------------------------------------------


ACCEPTED = OutcomeKind.ACCEPTED


class Tally:
    """Counts outcomes as the sender reports them (the on_outcome callback); kept lean,
    as a user's callback would be, so that it costs the sender little."""

    def __init__(self) -> None:
        self.accepted = 0
        self.others = 0

    def __call__(self, outcome: Outcome) -> None:
        if outcome.kind is ACCEPTED:
            self.accepted += 1
        else:
            self.others += 1


def check_invariant(n: int, stats: Any, tally: Tally) -> list[str]:
    problems = []
    if stats.submitted != n:
        problems.append(f"submitted {stats.submitted} != {n}")
    if stats.accepted != stats.submitted:
        problems.append(
            f"accepted {stats.accepted} != submitted {stats.submitted} "
            f"(rejected {stats.rejected}, failed {stats.failed}, pending {stats.pending})"
        )
    if tally.accepted != n or tally.others:
        problems.append(f"on_outcome saw {tally.accepted} accepted and {tally.others} others")
    return problems


async def run_sender(setup: Setup, submit: Callable[[Any], Coroutine[Any, Any, object]]) -> Result:
    """Open a sender, let ``submit(sender)`` queue ``n``, flush with a probe, stop the clock."""
    tally = Tally()
    config = setup.sender_config()
    clock = Clock(setup)
    clock.start()
    async with open_sender(
        setup.context, host=HOST, port=setup.port, config=config, on_outcome=tally
    ) as sender:
        await submit(sender)
        await sender.flush(confirm=True)
        seconds = clock.stop()
    stats = sender.stats
    return {
        "seconds": seconds,
        "written": stats.written,
        "rss_before_kib": clock.before_kib,
        "gc": clock.gc.to_json(),
        "stats": stats.to_json(),
        "problems": check_invariant(setup.n, stats, tally),
    }


async def case_sender(setup: Setup) -> Result:
    """Notification objects (token and payload ready) built before the clock starts."""
    payloads = [quick_payload(i) for i in range(setup.n)]
    items = [
        Notification(token=DeviceToken(t), payload=p)
        for t, p in zip(token_bytes(setup.n), payloads, strict=True)
    ]
    del payloads

    async def submit(sender: Any) -> None:
        await sender.submit_many(items)

    return await run_sender(setup, submit)


async def case_build(setup: Setup) -> Result:
    """Payload bytes and raw tokens ready; Notification objects built inside the clock."""
    payloads = [quick_payload(i) for i in range(setup.n)]
    tokens = token_bytes(setup.n)

    async def submit(sender: Any) -> None:
        await sender.submit_many(
            Notification(token=DeviceToken.from_bytes(t), payload=p)
            for t, p in zip(tokens, payloads, strict=True)
        )

    return await run_sender(setup, submit)


async def case_payload(setup: Setup) -> Result:
    """``build_payload`` for every notification, inside the clock."""
    tokens = token_bytes(setup.n)

    async def submit(sender: Any) -> None:
        await sender.submit_many(
            Notification(token=DeviceToken.from_bytes(t), payload=payload_for(i))
            for i, t in enumerate(tokens)
        )

    return await run_sender(setup, submit)


async def case_broadcast(setup: Setup) -> Result:
    """One payload to many tokens: raw token bytes (as from a store), built before.

    Uses ``Sender.submit_broadcast``, the broadcast path: the shared payload, expiry
    and priority are checked once, each device costs one outcome object, and frames
    are assembled from the raw tokens.
    """
    tokens = token_bytes(setup.n)
    payload = SAMPLE_PAYLOAD

    async def submit(sender: Any) -> None:
        await sender.submit_broadcast(tokens, payload=payload)

    return await run_sender(setup, submit)


def case_sync(setup: Setup) -> Result:
    """``send_all``, the synchronous facade, on pre-built Notification objects."""
    items = [
        Notification(token=DeviceToken(t), payload=quick_payload(i))
        for i, t in enumerate(token_bytes(setup.n))
    ]
    config = setup.sender_config()
    clock = Clock(setup)
    clock.start()
    outcomes, stats = send_all(items, setup.context, host=HOST, port=setup.port, config=config)
    seconds = clock.stop()
    tally = Tally()
    for outcome in outcomes:
        tally(outcome)
    return {
        "seconds": seconds,
        "written": stats.written,
        "rss_before_kib": clock.before_kib,
        "gc": clock.gc.to_json(),
        "stats": stats.to_json(),
        "problems": check_invariant(setup.n, stats, tally),
    }


# -- the command line ------------------------------------------------------------------


def write_input(path: Path, n: int) -> None:
    """``n`` JSON lines ``{"token": hex, "payload": {...}}``, written in pieces (small RSS)."""
    with path.open("w", encoding="utf-8") as file:
        for first in range(0, n, 10_000):
            tokens = token_bytes(min(10_000, n - first), seed=first)
            for i, token in enumerate(tokens, start=first):
                # quick_payload is compact JSON already: it goes in as the payload object.
                payload = quick_payload(i).decode()
                file.write(f'{{"token":"{token.hex()}","payload":{payload}}}\n')


def high_water_kib(pid: int) -> int | None:
    """VmHWM (peak RSS) of a running process, from /proc; None when unavailable."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


def process_tree(pid: int) -> list[int]:
    """``pid`` and its children, from /proc (Linux); just ``pid`` where unavailable."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return [pid]
    return [pid, *(int(child) for child in children)]


def case_cli(setup: Setup, report: bool = False, parse: str | None = None) -> Result:
    """``apns-legacy send --input FILE --quiet`` as a subprocess; peak RSS is the child's
    (with its input worker's, summed: ``--parse``).

    The child's peak is read from /proc while it runs (every 20 ms): its
    ``ru_maxrss`` would include this process's memory at the fork. With ``report``,
    ``--report FILE`` too (one JSON line an outcome), and the file must hold a line
    for every notification.
    """
    path = setup.work / f"input-{setup.n}.jsonl"
    if not path.exists():
        write_input(path, setup.n)
    command = [
        sys.executable, "-m", "apns_legacy", "send",
        "--host", HOST, "--port", str(setup.port),
        "--ca", str(setup.pki / "ca.pem"),
        "--cert", str(setup.pki / "client.pem"),
        "--key", str(setup.pki / "client-key.pem"),
        "--connections", str(setup.connections),
        "--input", str(path), "--quiet",
    ]  # fmt: skip
    report_path = setup.work / f"cli-report-{os.getpid()}.jsonl"
    if report:
        command += ["--report", str(report_path)]
    if parse is not None:  # --parse inline|process (newer than --at's older commits)
        command += ["--parse", parse]
    output = setup.work / f"cli-output-{os.getpid()}.txt"
    peak = 0
    with output.open("w+") as log:
        start = time.perf_counter()
        # Not in the repository's root: `python -m` puts the working directory first on
        # sys.path, and the working tree's apns_legacy would shadow the one of `--at REV`.
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=setup.work)
        deadline = start + setup.deadline
        while child.poll() is None:
            # The command and the process parsing its input (--parse), if it has one.
            peak = max(peak, sum(high_water_kib(pid) or 0 for pid in process_tree(child.pid)))
            if time.perf_counter() > deadline:
                child.kill()
                child.wait()
                raise TimeoutError
            time.sleep(0.02)
        seconds = time.perf_counter() - start
        log.seek(0)
        text = log.read()
    output.unlink()
    problems = []
    if child.returncode != 0:
        problems.append(f"exit {child.returncode}: {text.strip()[-500:]}")
    if report:
        with report_path.open("rb") as file:
            reported = sum(1 for _ in file)
        report_path.unlink()
        if reported != setup.n:
            problems.append(f"--report has {reported} lines for {setup.n} notifications")
    return {
        "seconds": seconds,
        "written": setup.n,
        "rss_child_kib": peak or peak_rss_kib(resource.RUSAGE_CHILDREN),
        "problems": problems,
    }


def case_s_client(setup: Setup) -> Result:
    """The receiver alone against a C client: ``openssl s_client`` sending a file."""
    path = setup.work / f"frames-{setup.n}.bin"
    if not path.exists():
        with path.open("wb") as file:
            for data in reference_writes(setup.n):
                file.write(data)
    command = [
        "openssl", "s_client", "-quiet", "-connect", f"{HOST}:{setup.port}",
        "-CAfile", str(setup.pki / "ca.pem"),
        "-cert", str(setup.pki / "client.pem"), "-key", str(setup.pki / "client-key.pem"),
    ]  # fmt: skip
    start = time.perf_counter()
    with path.open("rb") as stdin:
        done = subprocess.run(command, stdin=stdin, capture_output=True, timeout=setup.deadline)
    seconds = time.perf_counter() - start
    problems = [] if ANSWER in done.stdout else [f"no probe answer: {done.stderr[-300:]!r}"]
    return {"seconds": seconds, "written": setup.n, "problems": problems}


ASYNC_CASES = {
    "reference": case_reference,
    "sender": case_sender,
    "build": case_build,
    "payload": case_payload,
    "broadcast": case_broadcast,
}
SYNC_CASES = {
    "reference-ssl": case_reference_ssl,
    "sync": case_sync,
    "cli": case_cli,
    "cli-report": lambda setup: case_cli(setup, report=True),
    "cli-report-inline": lambda setup: case_cli(setup, report=True, parse="inline"),
    "s_client": case_s_client,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=sorted([*ASYNC_CASES, *SYNC_CASES]))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pki", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True, help="scratch directory")
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--deadline", type=float, default=120.0)
    parser.add_argument(
        "--config", default="{}", help='SenderConfig overrides as JSON, e.g. {"window_size": 1}'
    )
    parser.add_argument("--profile", choices=["py-spy", "cprofile", "pyinstrument"])
    parser.add_argument("--profile-out", type=Path, help="where the profile's text goes")
    parser.add_argument(
        "--tuned-gc", action="store_true", help="gc.set_threshold(50_000, 20, 20) before the clock"
    )
    args = parser.parse_args()
    if args.tuned_gc:
        gc.set_threshold(50_000, 20, 20)
    setup = Setup(args)
    result: Result
    try:
        if args.kind in ASYNC_CASES:
            case = ASYNC_CASES[args.kind]

            async def bounded() -> Result:
                with trio.fail_after(setup.deadline):
                    return await case(setup)

            result = trio.run(bounded)
        else:
            result = SYNC_CASES[args.kind](setup)
    except (trio.TooSlowError, subprocess.TimeoutExpired, TimeoutError):
        result = {"timed_out": True, "problems": [f"timed out after {setup.deadline} s"]}
    result.setdefault("timed_out", False)
    result.update(kind=args.kind, n=args.n, connections=args.connections)
    result["rss_kib"] = peak_rss_kib()
    if result.get("seconds"):
        result["rate"] = args.n / result["seconds"]
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
