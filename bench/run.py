"""The throughput and memory benchmark: ``python bench/run.py [--quick] [--cases a,b,...]``.

Each case runs in a fresh process (``bench/cases.py``) against a fresh lean receiver
in another process (``bench/receiver.py``, stdlib ``ssl``, TLS 1.2, client
certificate required), both on 127.0.0.1, so peak RSS is per case and nothing is
shared. Every case ends with a confirmation probe, so the clock stops when the
receiver has read every frame and answered. Each case is repeated (3 times by
default) and the median is reported, with the ratio to the reference (pre-built
frames through our TLSStream in 64 KiB writes) of the same run.

Results go to ``bench/results/latest.json`` (gitignored) and a table on stdout.
Every case is bounded by ``--deadline`` seconds and reported as timed out after it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import selectors
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@attrs.frozen
class Case:
    name: str
    kind: str  # the bench/cases.py case
    what: str
    connections: int = 1
    #: Which notification count: "n" (the main one), "small" (sync, cli) or a fixed number.
    size: str | int = "n"
    #: Collect young objects less often in the sending process, as `apns-legacy send`
    #: does: gc.set_threshold(50_000, 20, 20).
    tuned_gc: bool = False


CASES = [
    Case("reference", "reference", "pre-built frames, TLSStream, 64 KiB writes"),
    Case("reference-ssl", "reference-ssl", "pre-built frames, stdlib ssl, 64 KiB writes"),
    Case("receiver-check", "s_client", "receiver alone: openssl s_client sends a file"),
    Case("sender-1", "sender", "sender, Notification objects built before"),
    Case("sender-4", "sender", "sender, Notification objects built before", 4),
    Case("build-1", "build", "sender, Notification objects built in the loop"),
    Case("build-4", "build", "sender, Notification objects built in the loop", 4),
    Case("payload-1", "payload", "sender, build_payload in the loop"),
    Case("payload-4", "payload", "sender, build_payload in the loop", 4),
    Case("broadcast-1", "broadcast", "sender, one payload to many tokens"),
    Case("broadcast-4", "broadcast", "sender, one payload to many tokens", 4),
    Case("sender-1-gc", "sender", "sender-1 with fewer young-generation GCs", tuned_gc=True),
    Case("payload-1-gc", "payload", "payload-1 with fewer young-generation GCs", tuned_gc=True),
    Case(
        "broadcast-1-gc", "broadcast", "broadcast-1 with fewer young-generation GCs", tuned_gc=True
    ),
    Case("sync", "sync", "send_all (synchronous facade)", 1, "small"),
    Case("cli", "cli", "apns-legacy send --input FILE (subprocess)", 1, "small"),
    Case("cli-report", "cli-report", "apns-legacy send --input FILE --report FILE", 1, "small"),
    Case("cli-report-inline", "cli-report-inline", "the same, --parse inline", 1, "small"),
    Case("memory-small", "cli", "apns-legacy send --input, streamed (peak RSS)", 1, "memory"),
    Case("memory-large", "cli", "apns-legacy send --input, streamed (peak RSS)", 1, "n"),
]
BY_NAME = {case.name: case for case in CASES}


def case_size(case: Case, args: argparse.Namespace) -> int:
    if isinstance(case.size, int):
        return case.size
    sizes: dict[str, int] = {"n": args.n, "small": args.small_n, "memory": max(1, args.n // 10)}
    return sizes[case.size]


# -- processes -----------------------------------------------------------------------------


def worker_env(work: Path) -> dict[str, str]:
    """The environment of the workers: bytecode caching on, the cache in ``work``.

    A user's installation has its modules compiled; without a cache (for example
    under PYTHONDONTWRITEBYTECODE) every process would compile them again, and the
    command-line cases would time that.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    return env


def make_pki(directory: Path, env: dict[str, str]) -> str | None:
    """Write a fresh test PKI with the apns_legacy under test; the error, if any.

    Also imports every command module once, so their bytecode is cached before any
    case runs.
    """
    made = subprocess.run(
        [sys.executable, "-c", "import sys\nfrom apns_legacy.tls import make_test_pki\n"
         "from apns_legacy.cli._main import build_parser\nbuild_parser()\n"
         "make_test_pki().write(sys.argv[1], p12_passphrase=b'bench')", str(directory)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    return made.stderr.strip() or "failed" if made.returncode else None


def start_receiver(
    pki: Path, work: Path, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], int]:
    stderr = (work / "receiver-stderr.txt").open("ab")
    receiver = subprocess.Popen(
        [sys.executable, str(HERE / "receiver.py"), "--pki", str(pki)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        env=env,
    )
    stderr.close()
    try:
        return receiver, read_port(receiver, "the receiver")
    except RuntimeError:
        receiver.kill()
        raise


def read_port(process: subprocess.Popen[bytes], who: str) -> int:
    """The port from a helper process's first line, ``{"port": N}`` (the receiver's, the
    lean gateway's), waiting at most 15 s."""
    assert process.stdout is not None
    line = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 15.0
        while not line.endswith(b"\n"):
            if not selector.select(max(0.0, deadline - time.monotonic())):
                raise RuntimeError(f"{who} did not start within 15 s")
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                raise RuntimeError(f"{who} exited before it was ready")
            line += chunk
    return int(json.loads(line)["port"])


def stop_receiver(receiver: subprocess.Popen[bytes]) -> dict[str, Any]:
    try:
        out, _ = receiver.communicate(input=b"", timeout=20.0)
    except subprocess.TimeoutExpired:
        receiver.kill()
        receiver.wait()
        return {"connections": [], "error": "the receiver did not report within 20 s"}
    lines = [line for line in out.decode().splitlines() if line.strip()]
    if not lines:
        return {"connections": [], "error": f"the receiver exited {receiver.returncode} silently"}
    report: dict[str, Any] = json.loads(lines[-1])
    return report


def run_worker(command: list[str], deadline: float, env: dict[str, str]) -> dict[str, Any]:
    # A session of its own, so that a timed-out worker and its children (the CLI
    # case) can be killed as a group.
    worker = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = worker.communicate(timeout=deadline)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.communicate()
        return {"timed_out": True, "problems": [f"killed after {deadline:.0f} s"]}
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    if worker.returncode != 0 or not lines:
        tail = err.decode(errors="replace").strip()[-800:]
        return {"timed_out": False, "problems": [f"worker exit {worker.returncode}: {tail}"]}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def run_once(
    case: Case, n: int, args: argparse.Namespace, pki: Path, work: Path, env: dict[str, str]
) -> dict[str, Any]:
    receiver, port = start_receiver(pki, work, env)
    command = [
        sys.executable, str(HERE / "cases.py"), case.kind,
        "--port", str(port), "--pki", str(pki), "--work", str(work),
        "--n", str(n), "--connections", str(case.connections),
        "--deadline", str(args.deadline),
        *(["--tuned-gc"] if case.tuned_gc else []),
    ]  # fmt: skip
    try:
        # The worker bounds its timed part by --deadline; this bounds the whole process
        # (data preparation included) a little later.
        result = run_worker(command, args.deadline + 60.0, env)
    finally:
        report = stop_receiver(receiver)
    result["receiver"] = report
    problems: list[str] = result.setdefault("problems", [])
    if report.get("error"):
        problems.append(f"receiver: {report['error']}")
    if not result.get("timed_out") and "seconds" in result:
        counted = sum(c["frames"] for c in report["connections"])
        if counted != result.get("written"):
            problems.append(f"receiver counted {counted} frames, sender wrote {result['written']}")
        for connection in report["connections"]:
            if not connection.get("error"):
                continue
            if connection["bytes"] == 0:
                # A spare connection (on by default) that carried nothing: the sender
                # closes one still in its handshake at the end without close_notify.
                # Nothing was lost on it; counted, not a problem.
                result["unused_connections_cut"] = result.get("unused_connections_cut", 0) + 1
                continue
            problems.append(f"receiver connection: {connection['error']}")
        if report.get("still_open"):
            problems.append(f"{report['still_open']} receiver connections still open")
    return result


# -- report --------------------------------------------------------------------------------


def summarise(case: Case, n: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    good = [r for r in runs if "rate" in r and not r.get("timed_out")]
    rates = [r["rate"] for r in good]
    # The command-line cases measure the child process; the others the worker itself.
    rss = [r.get("rss_child_kib", r.get("rss_kib", 0)) / 1024 for r in good]
    before = [r["rss_before_kib"] / 1024 for r in good if "rss_before_kib" in r]
    gc_shares = [r["gc"]["seconds"] / r["seconds"] for r in good if "gc" in r]
    receiver_rates = [
        sum(c["frames"] for c in r["receiver"]["connections"])
        / max(c["seconds"] for c in r["receiver"]["connections"])
        for r in good
        if r["receiver"]["connections"] and max(c["seconds"] for c in r["receiver"]["connections"])
    ]
    return {
        "case": case.name,
        "what": case.what,
        "n": n,
        "connections": case.connections,
        "median_rate": statistics.median(rates) if rates else None,
        "median_peak_rss_mib": statistics.median(rss) if rss else None,
        "median_rss_before_timing_mib": statistics.median(before) if before else None,
        "median_receiver_rate": statistics.median(receiver_rates) if receiver_rates else None,
        "median_gc_share": statistics.median(gc_shares) if gc_shares else None,
        "ok": bool(runs) and all(not r.get("problems") for r in runs),
        "timed_out": any(r.get("timed_out") for r in runs),
        "problems": sorted({p for r in runs for p in r.get("problems", [])}),
        "runs": runs,
    }


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    openssl = subprocess.run(["openssl", "version"], capture_output=True, text=True, check=False)
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "openssl_cli": openssl.stdout.strip(),
    }


def git_state(at: str | None) -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    if at:
        return {
            "commit": git("rev-parse", "--verify", f"{at}^{{commit}}"),
            "tree": f"git archive of {at}",
        }
    dirty = bool(git("status", "--porcelain", "--", "apns_legacy"))
    return {"commit": git("rev-parse", "HEAD"), "tree": "working tree", "dirty": dirty}


def fmt_rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:,.0f}"


def table(rows: list[dict[str, Any]], reference: float | None) -> str:
    lines = [
        "| case | what | n | conns | notifications/s (median) | x reference | peak RSS MiB "
        "| RSS before clock MiB | GC share | receiver's rate | status |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        rate = row["median_rate"]
        ratio = "-" if rate is None or not reference else f"{rate / reference:.3f}"
        rss = row["median_peak_rss_mib"]
        before = row["median_rss_before_timing_mib"]
        gc_share = row["median_gc_share"]
        status = "ok" if row["ok"] else ("TIMED OUT" if row["timed_out"] else "PROBLEM")
        lines.append(
            f"| {row['case']} | {row['what']} | {row['n']:,} | {row['connections']} "
            f"| {fmt_rate(rate)} | {ratio} | {'-' if rss is None else f'{rss:.0f}'} "
            f"| {'-' if before is None else f'{before:.0f}'} "
            f"| {'-' if gc_share is None else f'{100 * gc_share:.0f}%'} "
            f"| {fmt_rate(row['median_receiver_rate'])} | {status} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 notifications, 1 run")
    parser.add_argument(
        "--cases", default="all", help=f"comma-separated, or 'all': {', '.join(BY_NAME)}"
    )
    parser.add_argument("--n", type=int, help="notifications per case (default 1,000,000)")
    parser.add_argument("--small-n", type=int, help="for sync and cli (default 200,000)")
    parser.add_argument("--repeat", type=int, help="runs per case (default 3; --quick 1)")
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds per case run")
    parser.add_argument("--at", metavar="REV", help="benchmark this commit's apns_legacy")
    parser.add_argument(
        "--output", type=Path, default=HERE / "results" / "latest.json", help="JSON results"
    )
    args = parser.parse_args(argv)
    if args.n is None:
        args.n = 100_000 if args.quick else 1_000_000
    if args.small_n is None:
        args.small_n = min(args.n, 200_000)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    names = list(BY_NAME) if args.cases == "all" else [c for c in args.cases.split(",") if c]
    unknown = [name for name in names if name not in BY_NAME]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(BY_NAME)}")
    args.names = names
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="apns-bench-") as temp:
        work = Path(temp)
        env = worker_env(work)
        # Taken before the cases run: other commits may land meanwhile.
        state = git_state(args.at)
        if args.at:
            if not state["commit"]:
                print(f"--at {args.at}: no such commit", file=sys.stderr)
                return 2
            tree = work / "tree"
            tree.mkdir()
            archive = subprocess.run(
                ["git", "archive", state["commit"], "apns_legacy"],
                cwd=ROOT,
                capture_output=True,
                check=True,
            )
            subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
            env["PYTHONPATH"] = os.pathsep.join([str(tree), env.get("PYTHONPATH", "")])
        problem = make_pki(work / "pki", env)
        if problem:
            print(f"cannot make the test PKI: {problem}", file=sys.stderr)
            return 2
        rows = []
        for name in args.names:
            case = BY_NAME[name]
            n = case_size(case, args)
            runs = []
            for repetition in range(args.repeat):
                started = time.monotonic()
                result = run_once(case, n, args, work / "pki", work, env)
                runs.append(result)
                took = time.monotonic() - started
                print(
                    f"{name} run {repetition + 1}/{args.repeat}: "
                    f"{fmt_rate(result.get('rate'))}/s ({took:.1f} s)"
                    + (f" PROBLEMS: {result['problems']}" if result.get("problems") else ""),
                    file=sys.stderr,
                    flush=True,
                )
            rows.append(summarise(case, n, runs))
    reference = next((r["median_rate"] for r in rows if r["case"] == "reference"), None)
    for row in rows:
        rate = row["median_rate"]
        row["ratio_to_reference"] = rate / reference if rate and reference else None
    info = machine()
    output: dict[str, Any] = {
        "machine": info,
        "git": state,
        "settings": {
            "n": args.n,
            "small_n": args.small_n,
            "repeat": args.repeat,
            "deadline": args.deadline,
            "frame_size": 162,
            "payload_size": 101,
        },
        "reference_rate": reference,
        "cases": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(output, indent=2) + "\n")
    print(f"{info['nproc']} cores, {info['cpu']}, Python {info['python']}; {output['git']}")
    print(table(rows, reference))
    print(f"results: {args.output}")
    return 0 if all(row["ok"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
