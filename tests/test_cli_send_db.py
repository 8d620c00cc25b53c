"""``apns-legacy send --db PATH``: a subprocess against the simulator over real TLS, with a
real token store: deactivated tokens skipped and reported, new status-8 rejections
recorded as they come in, a missing or damaged store refused before anything is sent."""

from __future__ import annotations

import collections
import json
import subprocess
from pathlib import Path

import pytest
import trio
from helpers import run_cli

from apns_legacy.cli import main
from apns_legacy.client import TokenStore
from apns_legacy.simulator import open_simulator
from apns_legacy.wire import FeedbackItem


def token(i: int) -> str:
    return f"{i:064x}"


@pytest.fixture(scope="module")
def certs(tmp_path_factory, pki) -> dict[str, Path]:
    return pki.write(tmp_path_factory.mktemp("certs"), p12_passphrase=b"p12-secret")


def pem_flags(certs, sim) -> list[str]:
    host, port = sim.gateway_address
    return [
        "--host", host, "--port", str(port), "--ca", str(certs["ca.pem"]),
        "--cert", str(certs["client.pem"]), "--key", str(certs["client-key.pem"]),
    ]  # fmt: skip


async def send(*arguments: str, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    with trio.fail_after(60):
        return await run_cli("send", *arguments, stdin=stdin)


def read_report(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def summary_line(stderr: str) -> str:
    return stderr.strip().splitlines()[-1]


def make_store(path: Path, count: int) -> None:
    """A store with tokens 1..count registered at 1,000,000."""
    with TokenStore(path) as store:
        store.register_many([token(n) for n in range(1, count + 1)], at=1_000_000)


async def test_deactivated_tokens_are_skipped_and_new_rejections_recorded(pki, certs, tmp_path):
    db = tmp_path / "devices.db"
    make_store(db, 3000)
    with TokenStore(db) as store:
        # Dead before this send: by an earlier status 8, and by the feedback service.
        store.deactivate([token(n) for n in (5, 6, 7)], reason="invalid-token", at=2_000_000)
        store.apply_feedback(
            [FeedbackItem(2_000_000, bytes.fromhex(token(n))) for n in (100, 2500)],
            now=2_000_001,
        )
        # Deactivated, then registered again since: sent as any other.
        store.deactivate([token(8)], reason="invalid-token", at=2_000_000)
        store.register(token(8), at=3_000_000)
    dead_before = {5, 6, 7, 100, 2500}
    invalid_now = {17, 1234, 2999}  # the gateway rejects these (status 8)
    lines = [json.dumps({"token": token(n)}) for n in range(1, 3001)]
    lines.append(json.dumps({"token": token(4000)}))  # unknown to the store: sent
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n")
    report = tmp_path / "report.jsonl"
    invalid = [bytes.fromhex(token(n)) for n in invalid_now]
    async with open_simulator(pki=pki, invalid_tokens=invalid) as sim:
        done = await send(
            *pem_flags(certs, sim), "--input", str(source), "--alert", "hi",
            "--report", str(report), "--db", str(db), "--connections", "2",
        )  # fmt: skip
    assert done.returncode == 1, done.stderr  # rejections and skips: exit 1
    # Nothing deactivated reached the gateway; everything else did, once.
    sent = collections.Counter(r.token for r in sim.accepted)
    expected = set(range(1, 3001)) - dead_before - invalid_now
    assert sent == {token(n): 1 for n in expected | {4000}}
    entries = read_report(report)
    assert sorted(e["line"] for e in entries) == list(range(1, 3002))  # one line each
    skipped = {e["line"]: e for e in entries if e["outcome"] == "skipped"}
    assert set(skipped) == dead_before
    for number, entry in skipped.items():
        assert entry["token"] == token(number)
        assert (entry["identifier"], entry["status"], entry["evidence"]) == (None, None, None)
        assert entry["possible_duplicate"] is False
    assert skipped[5]["reason"] == (
        "deactivated in the token store (invalid-token, 1970-01-24T03:33:20Z); not sent"
    )
    assert skipped[100]["reason"] == (
        "deactivated in the token store (feedback, 1970-01-24T03:33:21Z); not sent"
    )
    assert {e["line"] for e in entries if e["outcome"] == "rejected"} == invalid_now
    # The new rejections are in the store now, with the reason `tokens deactivate` uses.
    with TokenStore(db) as store:
        for number in invalid_now:
            device = store.get(token(number))
            assert device is not None
            assert (device.active, device.deactivated_reason) == (False, "invalid-token")
        assert store.counts().deactivated == len(dead_before | invalid_now)
        assert store.get(token(8)).active  # type: ignore[union-attr]
    assert (
        f"--db {db}: 5 deactivated tokens skipped; 3 tokens rejected as invalid (status 8), "
        "3 deactivated in the store" in done.stderr
    )
    assert summary_line(done.stderr).startswith(
        "sent 2996: 2993 accepted, 3 rejected (INVALID_TOKEN 3), 0 failed, "
        "5 skipped (deactivated in the token store); "
    )
    # The next day's run skips them all: nothing is rejected any more.
    async with open_simulator(pki=pki, invalid_tokens=invalid) as sim:
        again = await send(
            *pem_flags(certs, sim), "--input", str(source), "--alert", "hi", "--db", str(db),
        )  # fmt: skip
    assert again.returncode == 1, again.stderr
    assert "0 rejected" in summary_line(again.stderr)
    assert "8 skipped (deactivated in the token store)" in summary_line(again.stderr)
    assert len(sim.accepted) == 3001 - 8


async def test_tokens_given_on_the_command_line_are_checked_too(pki, certs, tmp_path):
    db = tmp_path / "devices.db"
    make_store(db, 2)
    with TokenStore(db) as store:
        store.deactivate([token(2)], reason="uninstalled", at=2_000_000)
    async with open_simulator(pki=pki) as sim:
        done = await send(
            *pem_flags(certs, sim), "--token", token(1), "--token", token(2), "--alert", "hi",
            "--db", str(db), "--report", "-",
        )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert [r.token for r in sim.accepted] == [token(1)]
    entries = [json.loads(line) for line in done.stdout.splitlines()]
    assert sorted((e["line"], e["outcome"]) for e in entries) == [
        (1, "accepted"),
        (2, "skipped"),
    ]


async def test_with_nothing_deactivated_the_exit_code_is_0(pki, certs, tmp_path):
    db = tmp_path / "devices.db"
    make_store(db, 3)
    async with open_simulator(pki=pki) as sim:
        done = await send(
            *pem_flags(certs, sim), "--input", "-", "--alert", "hi", "--db", str(db),
            stdin="".join(json.dumps({"token": token(n)}) + "\n" for n in (1, 2, 3)).encode(),
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(sim.accepted) == 3
    assert "skipped" not in summary_line(done.stderr)


async def test_a_missing_or_damaged_store_is_refused_before_sending(pki, certs, tmp_path):
    damaged = tmp_path / "damaged.db"
    make_store(damaged, 2000)
    data = bytearray(damaged.read_bytes())
    # Overwrite a page in the middle of the table's b-tree (not the header).
    page = 4096
    assert len(data) > 3 * page
    data[2 * page : 3 * page] = b"\x55" * page
    damaged.write_bytes(bytes(data))
    not_a_store = tmp_path / "notes.txt"
    not_a_store.write_text("hello\n")
    async with open_simulator(pki=pki) as sim:
        missing = await send(
            *pem_flags(certs, sim), "--token", token(1), "--alert", "hi",
            "--db", str(tmp_path / "nothing.db"),
        )  # fmt: skip
        text = await send(
            *pem_flags(certs, sim), "--token", token(1), "--alert", "hi", "--db", str(not_a_store),
        )  # fmt: skip
        broken = await send(
            *pem_flags(certs, sim), "--token", token(1), "--alert", "hi", "--db", str(damaged),
        )  # fmt: skip
        assert sim.accepted == []
    assert missing.returncode == 2
    assert missing.stderr.strip() == (
        f"apns-legacy send: --db: no token store at {tmp_path / 'nothing.db'} "
        "(create one with `tokens register`)"
    )
    assert not (tmp_path / "nothing.db").exists()  # never created by send
    assert text.returncode == 2
    assert "not a token store" in text.stderr
    assert broken.returncode == 1, broken.stderr
    assert "the token store is damaged" in broken.stderr
    assert len(broken.stderr.strip().splitlines()) == 1


def test_db_is_checked_after_the_flags(tmp_path, capsys):
    # A usage error in the flags is reported first, whatever --db names.
    code = main(["send", "--cert", str(tmp_path / "none.pem"), "--db", str(tmp_path / "x.db")])
    assert code == 2
    assert "--token" in capsys.readouterr().err


def test_a_store_failing_while_sending_is_reported_once_and_not_used_again(tmp_path, capsys):
    # StoreGuard (send --db) writes through the library's StoreKeeper with its error
    # hook: the failed write is one line on stderr and the run's failure (exit 1),
    # the send goes on, and the store is neither written nor read afterwards.
    from apns_legacy.cli._send_store import StoreGuard
    from apns_legacy.client import Outcome
    from apns_legacy.wire import DeviceToken, Notification, Status

    path = tmp_path / "devices.db"
    make_store(path, 5)
    guard = StoreGuard(str(path), allow_long_tokens=False)

    def rejected(n: int) -> Outcome:
        outcome = Outcome(Notification(token=DeviceToken.from_hex(token(n)), payload=b"{}"))
        outcome.status = Status.INVALID_TOKEN
        return outcome

    guard.store.close()  # the store goes away under the run (a real sqlite3 error)
    for n in range(1, 1001):  # the thousandth rejection makes a write due
        guard.keeper.on_outcome(rejected(n % 5 + 1))
    assert guard.failure is not None
    assert guard.failure.startswith(f"--db {path}: could not record 1000 rejected tokens (")
    assert guard.failure.endswith(
        "apply the report later with `apns-legacy tokens deactivate --from-report FILE`"
    )
    assert capsys.readouterr().err == f"apns-legacy send: {guard.failure}\n"
    assert guard.dead([DeviceToken.from_hex(token(1))]) == {}  # not read again
    assert guard.close().endswith("1000 tokens rejected as invalid (status 8), 0 deactivated "
                                  "in the store")  # fmt: skip
    assert capsys.readouterr().err == ""  # reported once
