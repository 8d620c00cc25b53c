"""Keeps bench/http2.py working: a tiny run; timings are never asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_http2_bench_quick_run():
    command = [
        sys.executable, str(ROOT / "bench" / "http2.py"),
        "--n", "200", "--connections", "2", "--goaway-after", "50",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["outcomes"] == {
        "accepted": 198,
        "rejected BadDeviceToken": 1,
        "rejected Unregistered": 1,
    }
    assert result["recorded"] == 198
    assert result["recorded_twice"] == 0
    assert result["goaways"] >= 3
    assert result["per_second"] > 0


def test_http2_bench_compare_quick_run():
    # The side-by-side mode with our sender only (aioapns is in the 'bench' extra,
    # not installed for tests): the lean receiver in its own processes, a worker.
    command = [
        sys.executable, str(ROOT / "bench" / "http2.py"),
        "--compare", "--clients", "apns_legacy", "--n", "300", "--deadline", "60",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    row = json.loads(done.stderr.splitlines()[-1])
    assert row["outcomes"] == {"accepted": 300}
    assert row["receiver"]["requests"] == 300
    assert row["receiver"]["connections"] == 1
    assert not row["timed_out"]
    assert "| apns_legacy | 300 | 1 |" in done.stdout
