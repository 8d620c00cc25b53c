"""Keeps bench/run.py working: a tiny run of two cases, checking the result file's shape.

Timings are never asserted; only that the script runs, the invariants held (every
notification accepted, the receiver counted every frame) and the JSON is complete.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_bench_quick_run_writes_results(tmp_path):
    output = tmp_path / "latest.json"
    command = [
        sys.executable, str(ROOT / "bench" / "run.py"), "--quick",
        "--cases", "reference,sender-1", "--n", "2000", "--deadline", "30",
        "--output", str(output),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr

    result = json.loads(output.read_text())
    assert set(result) >= {"machine", "git", "settings", "reference_rate", "cases"}
    assert result["machine"]["nproc"] >= 1
    assert result["settings"]["n"] == 2000
    assert result["settings"]["repeat"] == 1
    assert [case["case"] for case in result["cases"]] == ["reference", "sender-1"]
    for case in result["cases"]:
        assert case["ok"], case["problems"]
        assert not case["timed_out"]
        assert case["n"] == 2000
        assert case["median_rate"] > 0
        assert case["ratio_to_reference"] > 0
        assert case["median_peak_rss_mib"] > 0
        assert len(case["runs"]) == 1
        (run,) = case["runs"]
        assert sum(c["frames"] for c in run["receiver"]["connections"]) == 2000
    sender = result["cases"][1]["runs"][0]["stats"]
    assert sender["submitted"] == sender["accepted"] == 2000
    assert sender["pending"] == 0
    assert "| sender-1 |" in done.stdout


@pytest.mark.parametrize("gateway", ["in-process", "process"])
def test_latency_table_runs_one_row(gateway):
    command = [
        sys.executable, str(ROOT / "bench" / "latency.py"), "--n", "300", "--rates", "0.01",
        "--rtts", "10", "--connections", "1", "--deadline", "60", "--gateway", gateway,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    row = json.loads(done.stderr.strip().splitlines()[-1])
    assert (row["n"], row["invalid"], row["rtt_ms"], row["connections"]) == (300, 3, 10.0, 1)
    assert row["gateway"] == gateway
    assert row["missed"] == 0
    assert row["nothing_lost"]
    assert not row["timed_out"]
    assert "nothing lost, no rejection missed" in done.stdout


def test_resumption_bench_resumes_after_the_first_connection():
    command = [
        sys.executable, str(ROOT / "bench" / "resumption.py"), "--count", "3", "--rtts", "0",
        "--tls", "1.2,1.3",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split(" | ") for line in done.stdout.splitlines() if line.startswith("| 0.0 ")]
    # rtt, tls, resume, resumed: no cache resumes nothing; with one, all but the first.
    assert [(r[1], r[2], r[3]) for r in rows] == [
        ("1.2", "False", "0"),
        ("1.2", "True", "2"),
        ("1.3", "False", "0"),
        ("1.3", "True", "2"),
    ]
