"""Keeps bench/bridge.py working: a tiny run; timings are never asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("mode", ["exact", "feedback-only"])
def test_bridge_bench_quick_run(mode):
    command = [
        sys.executable, str(ROOT / "bench" / "bridge.py"),
        "--n", "400", "--clients", "2", "--latency-n", "20", "--mode", mode,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["rejected_upstream"] == 2
    # exact: one status 8 per invalid token, each seen by the replaying client once.
    assert result["error_frames"] == (2 if mode == "exact" else 0)
    assert result["bridged_per_second"] > 0
    assert result["direct_per_second"] > 0
