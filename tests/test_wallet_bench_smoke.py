"""Keeps bench/wallet.py working: a tiny run, checking the figures file's shape (timings
are never asserted; the script itself checks every answer and every push)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wallet_bench_quick_run(tmp_path):
    output = tmp_path / "wallet.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "wallet.py"), "--quick", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(output.read_text())
    assert [r["case"].split(",")[0] for r in results] == [
        "build_pkpass",
        "GET pass",
        "GET pass",
        "GET serials since tag 0",
        "update_pass: rebuild",
        "update_pass over HTTP/2",
        "update_pass over HTTP/2",
    ]
    assert all(r["per_second"] > 0 for r in results)
    assert "| update_pass: rebuild, sign, push to every device | 20 |" in done.stdout
