"""``apns-legacy demo`` runs the whole loop with no setup and exits 0."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from apns_legacy import TokenStore
from apns_legacy.cli import main


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    # A process of its own, as a user runs it (no terminal: plain progress lines).
    return subprocess.run(
        [sys.executable, "-m", "apns_legacy", "demo", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_demo_runs_and_the_invariant_holds():
    result = run_demo()
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "3000/3000 notifications have an outcome" in out
    assert "accepted 2990, rejected 10 (invalid token (8): 10), failed 0" in out
    assert "invalid token (8) x10, shutdown (10) x1" in out
    assert re.search(r"replayed [1-9]\d* after rejections and the shutdown, \d+ reconnects", out)
    assert "store: 10 devices deactivated for status 8 (invalid token)" in out
    assert "listed 50 tokens: 45 deactivated, 5 kept (re-registered since), 0 unknown" in out
    assert "submitted 3000 = accepted 2990 + rejected 10 + failed 0: yes" in out
    assert "0 twice, 0 accepted ones missing, 0 unexpected: invariant held" in out
    assert re.search(r"active devices now\s+│\s+2945", out)
    # The temporary directory is gone.
    (path,) = re.findall(r"in (\S+)/devices\.db", out)
    assert not os.path.exists(path)


def test_demo_keep_leaves_the_store(tmp_path):
    result = run_demo("--devices", "500", "--keep", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"kept the token store and the simulator's record in {tmp_path}" in result.stdout
    with TokenStore(tmp_path / "devices.db") as store:
        counts = store.counts()
    assert (counts.total, counts.active) == (500, 445)
    assert counts.by_reason == {"feedback": 45, "invalid-token": 10}
    records = (tmp_path / "accepted.jsonl").read_text().splitlines()
    assert len(records) == 490


def test_demo_refuses_too_few_devices(capsys):
    assert main(["demo", "--devices", "20"]) == 2
    assert "--devices must be 61 to 1000000" in capsys.readouterr().err


@pytest.mark.parametrize("other", [["--http2"], ["--keep", "kept"]])
def test_demo_bridge_runs_on_its_own(other, capsys):
    assert main(["demo", "--bridge", *other]) == 2
    assert "--bridge runs on its own: not with --http2 or --keep" in capsys.readouterr().err


def test_demo_http2_runs_send_http2_and_every_check_holds(tmp_path):
    result = run_demo("--http2", "--devices", "2500", "--keep", str(tmp_path))  # 2 slots: a GOAWAY
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    # The real command line ran, and said what it did on stderr.
    assert re.search(r"apns-legacy send --http2 --host 127\.0\.0\.1 --port \d+ ", out)
    assert (
        "sent 2500: 2440 accepted, 60 rejected (BadDeviceToken 10, Unregistered 50), 0 failed"
        in result.stderr
    )
    assert "50 gone (410), 55 deactivated in the store, 5 kept" in result.stderr
    assert re.search(
        r"the simulator saw \d+ connections, [1-9]\d* GOAWAYs, [1-9]\d* answered 503", out
    )
    assert (
        "accepted 2440, BadDeviceToken 10, Unregistered 50 (50 with their time); the simulator "
        "recorded 2440, 0 twice, 0 accepted ones missing, 0 unexpected; the store deactivated "
        "10 invalid and 45 gone, kept 5 installed again: held"
    ) in out
    assert "NOT AS EXPECTED" not in out
    with TokenStore(tmp_path / "devices.db") as store:
        counts = store.counts()
    assert (counts.total, counts.active) == (2500, 2445)
    assert counts.by_reason == {"feedback": 45, "invalid-token": 10}
    assert len((tmp_path / "report.jsonl").read_text().splitlines()) == 2500
    assert len((tmp_path / "accepted.jsonl").read_text().splitlines()) == 2440


def test_demo_bridge_runs_and_every_check_holds():
    result = run_demo("--bridge", "--devices", "1000")
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "sender: 990 accepted, 10 rejected with status 8 (invalid token), 0 other" in out
    assert re.search(r"Apple \(the simulator\) recorded 970 notifications: 0 twice, 0 valid", out)
    assert "feedback port: 20 tokens listed with Apple's 410 time" in out
    assert "all checks held" in out
