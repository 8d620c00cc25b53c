"""Profiling the timed part of a case, and a driver: ``python bench/profiling.py [CASE]``.

``Clock`` (used by every case in ``bench/cases.py``) times the measured part and,
when asked, profiles exactly that part:

* ``py-spy`` (default): an external sampling profiler attached to the worker while
  the clock runs; it does not slow the sender down. Bench-only extra:
  ``pip install py-spy``. Idle samples (waiting in epoll) are kept, so percentages
  are of wall time.
* ``pyinstrument``: in-process sampling; its call hooks slow call-heavy code down.
* ``cprofile``: the standard library's deterministic profiler; exact call counts,
  but its overhead distorts the shares of small functions.

The driver starts a receiver, runs one case with the profiler and prints the top
functions by own time (where the interpreter was) and by inclusive time.
"""

from __future__ import annotations

import argparse
import collections
import gc
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TOP = 30


def peak_rss_kib(who: int = resource.RUSAGE_SELF) -> int:
    """Peak resident set size so far, in KiB (Linux units)."""
    return resource.getrusage(who).ru_maxrss


def py_spy() -> str:
    """The py-spy executable: on PATH, or next to this Python (a virtualenv)."""
    beside = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or str(beside)


class GCTimer:
    """Time spent in the cyclic garbage collector, per generation (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.collections = [0, 0, 0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            generation = info["generation"]
            self.seconds[generation] += time.perf_counter() - self._started
            self.collections[generation] += 1

    def to_json(self) -> dict[str, Any]:
        return {"seconds": sum(self.seconds), "by_generation": self.seconds,
                "collections": self.collections}  # fmt: skip


class Clock:
    """Times the measured part; optionally profiles exactly that part.

    ``before_kib`` is the peak RSS when the clock started (the prepared data);
    ``gc`` the garbage collector's share of the timed part.
    """

    def __init__(self, setup: Any) -> None:
        self.kind: str | None = setup.profile
        self.out: Path | None = setup.profile_out
        self.before_kib = 0
        self.gc = GCTimer()
        self._start = 0.0
        self._profiler: Any = None

    def start(self) -> None:
        self.before_kib = peak_rss_kib()
        if self.kind == "py-spy" and self.out is not None:
            self._profiler = subprocess.Popen(
                [
                    py_spy(), "record", "--pid", str(os.getpid()), "--format", "raw",
                    "--output", str(self.out.with_suffix(".raw")), "--rate", "500",
                    "--idle", "--nonblocking", "--function",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(0.5)  # let it attach before the clock starts
        elif self.kind == "cprofile":
            import cProfile

            self._profiler = cProfile.Profile()
            self._profiler.enable()
        elif self.kind == "pyinstrument":
            from pyinstrument import Profiler

            self._profiler = Profiler(interval=0.0005, async_mode="disabled")
            self._profiler.start()
        gc.callbacks.append(self.gc)
        self._start = time.perf_counter()

    def stop(self) -> float:
        seconds = time.perf_counter() - self._start
        gc.callbacks.remove(self.gc)
        if self._profiler is not None and self.out is not None:
            write_profile(self._profiler, self.kind, self.out, seconds)
        return seconds


def write_profile(profiler: Any, kind: str | None, out: Path, seconds: float) -> None:
    """The top functions as text in ``out`` (the raw profile beside it)."""
    if kind == "py-spy":
        profiler.send_signal(signal.SIGINT)
        profiler.wait(timeout=60)
        out.write_text(summarise_raw(out.with_suffix(".raw"), seconds))
    elif kind == "cprofile":
        import io
        import pstats

        profiler.disable()
        profiler.dump_stats(out.with_suffix(".prof"))
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats("tottime").print_stats(TOP)
        stats.sort_stats("cumulative").print_stats(TOP)
        out.write_text(text.getvalue())
    else:
        session = profiler.stop()
        own: collections.Counter[str] = collections.Counter()
        frames = [session.root_frame()]
        while frames:
            frame = frames.pop()
            if frame is None:
                continue
            frames.extend(frame.children)
            if not frame.is_synthetic:  # "[self]" frames repeat their parent's own time
                own[f"{frame.function} ({frame.file_path_short}:{frame.line_no})"] += (
                    frame.total_self_time
                )
        head = f"timed part {seconds:.3f} s (pyinstrument; its hooks slow the sender)"
        tree = profiler.output_text(unicode=False, color=False, show_all=False)
        out.write_text(ranking(head, own, collections.Counter()) + "\n" + tree)


def summarise_raw(raw: Path, seconds: float) -> str:
    """Own and inclusive shares per function from py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if any(frame.startswith(("Clock.start ", "Thread.run ")) for frame in frames):
            continue  # attaching before the clock started; helper threads (trio.to_thread)
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    head = "py-spy, wall-clock samples incl. idle, main thread"
    if seconds:
        head = f"timed part {seconds:.3f} s ({head})"
    return ranking(head, own, inclusive)


def ranking(head: str, own: collections.Counter[str], inclusive: collections.Counter[str]) -> str:
    total = sum(own.values()) or 1
    lines = [head, "", f"own time (top {TOP}):"]
    lines += [f"{100 * v / total:6.1f}%  {k}" for k, v in own.most_common(TOP)]
    if inclusive:
        lines += ["", f"inclusive time (top {TOP}):"]
        lines += [f"{100 * v / total:6.1f}%  {k}" for k, v in inclusive.most_common(TOP)]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", nargs="?", default="sender", help="a bench/cases.py case")
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument(
        "--profiler", choices=["py-spy", "pyinstrument", "cprofile"], default="py-spy"
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "profile.txt")
    parser.add_argument("--config", default="{}", help="SenderConfig overrides as JSON")
    parser.add_argument(
        "--raw", type=Path, help="only summarise this py-spy raw file (e.g. of the CLI)"
    )
    args = parser.parse_args()
    if args.raw:
        print(summarise_raw(args.raw, 0.0))
        return 0
    from run import make_pki, start_receiver, stop_receiver, worker_env

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="apns-profile-") as temp:
        work = Path(temp)
        env = worker_env(work)
        problem = make_pki(work / "pki", env)
        if problem:
            raise SystemExit(f"cannot make the test PKI: {problem}")
        receiver, port = start_receiver(work / "pki", work, env)
        try:
            command = [
                sys.executable, str(HERE / "cases.py"), args.kind, "--port", str(port),
                "--pki", str(work / "pki"), "--work", str(work), "--n", str(args.n),
                "--connections", str(args.connections), "--config", args.config,
                "--profile", args.profiler, "--profile-out", str(args.out),
            ]  # fmt: skip
            subprocess.run(command, check=True, timeout=600, env=env)
        finally:
            stop_receiver(receiver)
    print(args.out.read_text()[:8000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
