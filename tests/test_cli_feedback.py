"""``apns-legacy feedback`` against the simulator over TLS, and ``apns-legacy tokens``.

The command runs ``trio.run`` itself, so the tests run it on a worker thread while the
simulator runs in the test's own event loop; one test runs it as a process to send it
SIGINT.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys

import pytest
import trio

from apns_legacy import FeedbackItem, TokenStore, open_simulator
from apns_legacy.cli import main
from apns_legacy.cli._exit import UsageError
from apns_legacy.cli._feedback import parse_interval

T0 = 1_700_000_000


def token(n: int) -> bytes:
    return n.to_bytes(4, "big") * 8


@pytest.fixture(scope="module")
def cert_dir(tmp_path_factory, pki):
    directory = tmp_path_factory.mktemp("certs")
    pki.write(directory, p12_passphrase=b"secret")
    return directory


def feedback_args(sim, cert_dir, *extra: str) -> list[str]:
    host, port = sim.feedback_address
    return [
        "feedback",
        "--host",
        host,
        "--port",
        str(port),
        "--cert",
        str(cert_dir / "client.pem"),
        "--key",
        str(cert_dir / "client-key.pem"),
        "--ca",
        str(cert_dir / "ca.pem"),
        *extra,
    ]


async def run_cli(argv: list[str]) -> int:
    with trio.fail_after(30):
        return await trio.to_thread.run_sync(main, argv)


async def test_prints_json_lines(pki, cert_dir, capsys):
    async with open_simulator(pki=pki, feedback_chunk_size=7) as sim:
        for n in range(3):
            sim.add_feedback(token(n), T0 + n)
        code = await run_cli(feedback_args(sim, cert_dir))
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines == [
        {"token": token(n).hex(), "timestamp": T0 + n, "time": f"2023-11-14T22:13:2{n}Z"}
        for n in range(3)
    ]
    assert "3 tokens listed" in err


async def test_prints_csv(pki, cert_dir, capsys):
    async with open_simulator(pki=pki) as sim:
        sim.add_feedback(token(1), T0)
        code = await run_cli(feedback_args(sim, cert_dir, "--format", "csv"))
    out, _ = capsys.readouterr()
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows == [
        ["token", "timestamp", "time"],
        [token(1).hex(), str(T0), "2023-11-14T22:13:20Z"],
    ]


async def test_an_empty_list_exits_0_with_no_output(pki, cert_dir, capsys):
    async with open_simulator(pki=pki) as sim:
        code = await run_cli(feedback_args(sim, cert_dir))
    out, err = capsys.readouterr()
    assert code == 0
    assert out == ""
    assert "0 tokens listed" in err


async def test_db_applies_the_re_registration_rule(pki, cert_dir, tmp_path, capsys):
    db = tmp_path / "devices.db"
    with TokenStore(db) as store:
        store.register_many([token(1), token(2), token(3)], at=T0 - 3600)
        store.register(token(2), at=T0 + 60)  # reinstalled after the feedback entry
    async with open_simulator(pki=pki) as sim:
        for n in (1, 2, 3, 4):
            sim.add_feedback(token(n), T0)
        code = await run_cli(feedback_args(sim, cert_dir, "--db", str(db)))
    out, err = capsys.readouterr()
    assert code == 0, err
    assert len(out.splitlines()) == 4  # the entries are printed as well
    assert "2 deactivated, 1 skipped (re-registered since), 1 unknown" in err
    with TokenStore(db) as store:
        assert {t.value for t in store.active_tokens()} == {token(2)}


async def test_a_missing_db_is_refused_before_the_list_is_read(pki, cert_dir, tmp_path, capsys):
    async with open_simulator(pki=pki) as sim:
        sim.add_feedback(token(1), T0)
        code = await run_cli(feedback_args(sim, cert_dir, "--db", str(tmp_path / "typo.db")))
        assert sim.stats.feedback_connections == 0
        assert sim.feedback.pending(pki.client.topic) == [(T0, token(1))]
    _, err = capsys.readouterr()
    assert code == 2
    assert "no token store at" in err


async def test_a_failed_read_exits_1(pki, cert_dir, capsys):
    async with open_simulator(pki=pki) as sim:
        args = feedback_args(sim, cert_dir)
    code = await run_cli(args)  # the simulator is gone: connection refused
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    assert "apns-legacy feedback: feedback service 127.0.0.1:" in err
    assert err.strip().endswith("connection refused (nothing listens on that port?)"), err


async def test_every_with_count_polls_that_many_times(pki, cert_dir, capsys):
    async with open_simulator(pki=pki) as sim:
        sim.add_feedback(token(1), T0)
        code = await run_cli(feedback_args(sim, cert_dir, "--every", "0.1s", "--count", "3"))
        assert sim.stats.feedback_connections == 3
    out, err = capsys.readouterr()
    assert code == 0
    assert len(out.splitlines()) == 1  # the list was cleared by the first read
    assert err.count("next poll at") == 2
    assert "stopped after 3 polls (0 failed)" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--every", "soon"], "give a number with s, m, h or d"),
        (["--every", "0h"], "more than 0"),
        (["--count", "2"], "--count needs --every"),
        (["--every", "1h", "--count", "0"], "at least 1"),
        (["--timeout", "0"], "--timeout must be more than 0"),
        (["--sandbox"], "give either --sandbox or --host"),
    ],
)
async def test_bad_usage_exits_2(pki, cert_dir, capsys, extra, message):
    async with open_simulator(pki=pki) as sim:
        code = await run_cli(feedback_args(sim, cert_dir, *extra))
        assert sim.stats.feedback_connections == 0
    _, err = capsys.readouterr()
    assert code == 2
    assert message in err


def test_parse_interval():
    assert parse_interval("24h") == 86400
    assert parse_interval("30m") == 1800
    assert parse_interval("1d") == 86400
    assert parse_interval("90s") == 90
    assert parse_interval("90") == 90
    assert parse_interval("1.5h") == 5400
    with pytest.raises(UsageError):
        parse_interval("-1h")


async def test_ctrl_c_stops_a_scheduled_poller_cleanly(pki, cert_dir):
    async with open_simulator(pki=pki) as sim:
        sim.add_feedback(token(5), T0)
        argv = [sys.executable, "-m", "apns_legacy", *feedback_args(sim, cert_dir, "--every", "1h")]
        with trio.fail_after(30):
            process = await trio.lowlevel.open_process(
                argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            try:
                err = b""
                while b"next poll at" not in err:
                    chunk = await process.stderr.receive_some()
                    assert chunk, err
                    err += chunk
                process.send_signal(signal.SIGINT)
                out = b""
                while chunk := await process.stdout.receive_some():
                    out += chunk
                while chunk := await process.stderr.receive_some():
                    err += chunk
                code = await process.wait()
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
    assert code == 0, err
    assert json.loads(out)["token"] == token(5).hex()
    assert b"got SIGINT: stopping after the current poll" in err
    assert b"stopped after 1 poll (0 failed)" in err


# -- apns-legacy tokens ----------------------------------------------------------------


def test_tokens_register_export_and_stats(tmp_path, capsys):
    db = str(tmp_path / "devices.db")
    listing = tmp_path / "tokens.txt"
    listing.write_text(f"# registrations\n{token(2).hex()}\n\n<{token(3).hex()}>\n")
    assert main(["tokens", "register", "--db", db, token(1).hex(), "--topic", "com.ex"]) == 0
    assert main(["tokens", "register", "--db", db, "--input", str(listing)]) == 0
    assert "registered 2 tokens" in capsys.readouterr().out

    with TokenStore(db) as store:
        store.apply_feedback([FeedbackItem(2**32 - 1, token(3))])  # a time in 2106

    assert main(["tokens", "export", "--db", db, "--deactivated", "--format", "jsonl"]) == 0
    out, err = capsys.readouterr()
    (row,) = [json.loads(line) for line in out.splitlines()]
    assert row["token"] == token(3).hex()
    assert row["deactivated_reason"] == "feedback"
    assert row["feedback_time"] == "2106-02-07T06:28:15Z"
    assert "exported 1 device (deactivated)" in err

    output = tmp_path / "active.csv"
    assert main(["tokens", "export", "--db", db, "--active", "--output", str(output)]) == 0
    with output.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["token"] for r in rows] == [token(1).hex(), token(2).hex()]
    assert rows[0]["topic"] == "com.ex"
    registered = dt.datetime.fromisoformat(rows[0]["registered_at"])
    assert abs(registered - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)

    capsys.readouterr()
    assert main(["tokens", "stats", "--db", db, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "total": 3,
        "active": 2,
        "deactivated": 1,
        "deactivated_by_reason": {"feedback": 1},
    }
    assert main(["tokens", "stats", "--db", db]) == 0
    assert "active       2" in capsys.readouterr().out


def test_tokens_register_refuses_bad_input_and_writes_nothing(tmp_path, capsys):
    db = tmp_path / "devices.db"
    listing = tmp_path / "tokens.txt"
    listing.write_text(f"{token(1).hex()}\n{token(2).hex()[:-2]}zz\n")
    assert main(["tokens", "register", "--db", str(db), "--input", str(listing), "--strict"]) == 2
    assert f"--input {listing} line 2: device token has 'z'" in capsys.readouterr().err
    assert not db.exists()
    assert main(["tokens", "register", "--db", str(db), "abcd"]) == 2
    assert "TOKEN #1: device token is 2 bytes" in capsys.readouterr().err
    assert main(["tokens", "register", "--db", str(db)]) == 2
    assert main(["tokens", "stats", "--db", str(db)]) == 2
    assert "no token store at" in capsys.readouterr().err
    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("hello " * 1000)
    assert main(["tokens", "export", "--db", str(not_a_db)]) == 2
    assert "not a database" in capsys.readouterr().err


def test_tokens_register_from_stdin(tmp_path):
    db = tmp_path / "devices.db"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "apns_legacy",
            "tokens",
            "register",
            "--db",
            str(db),
            "--input",
            "-",
        ],
        input=f"{token(7).hex()}\n{token(8).hex()}\n",
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONWARNINGS": "error"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    with TokenStore(db) as store:
        assert store.counts().active == 2


# -- a damaged or wrong store, and saved lists -----------------------------------------


def sql(path, statement: str) -> None:
    connection = sqlite3.connect(path)
    try:
        connection.execute(statement)
        connection.commit()
    finally:
        connection.close()


def damaged_store(path, *, at: int = 4096 * 5, size: int = 4096) -> None:
    """A store of 3,000 devices with ``size`` bytes from ``at`` overwritten (by default
    one page in the middle)."""
    with TokenStore(path) as store:
        store.register_many([n.to_bytes(4, "big") * 8 for n in range(3000)], at=T0)
    with open(path, "r+b") as file:
        file.seek(at)
        file.write(b"\xff" * size)


async def test_a_damaged_store_is_checked_before_the_list_is_read(pki, cert_dir, tmp_path, capsys):
    db = tmp_path / "devices.db"
    damaged_store(db)
    async with open_simulator(pki=pki) as sim:
        sim.add_feedback(token(1), T0)
        code = await run_cli(feedback_args(sim, cert_dir, "--db", str(db)))
        assert sim.stats.feedback_connections == 0
        assert sim.feedback.pending(pki.client.topic) == [(T0, token(1))]  # not cleared
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    assert f"--db {db}: the token store is damaged (database disk image is malformed)" in err
    assert "Traceback" not in err


async def test_a_store_with_several_problems_is_refused_in_one_line(
    pki, cert_dir, tmp_path, capsys
):
    db = tmp_path / "devices.db"
    damaged_store(db, at=4096 * 4 + 100, size=200)  # quick_check: one problem per cell
    async with open_simulator(pki=pki) as sim:
        sim.add_feedback(token(1), T0)
        code = await run_cli(feedback_args(sim, cert_dir, "--db", str(db)))
        assert sim.feedback.pending(pki.client.topic) == [(T0, token(1))]  # not cleared
    _out, err = capsys.readouterr()
    assert code == 1
    (line,) = err.splitlines()
    assert f"--db {db}: the token store is damaged (" in line


async def test_a_list_that_cannot_be_applied_is_saved_and_can_be_applied_later(
    pki, cert_dir, tmp_path, capsys
):
    db = tmp_path / "devices.db"
    with TokenStore(db) as store:
        store.register_many([token(1), token(2)], at=T0 - 60)
    # A store sound by quick_check whose writes fail (as on a full disk).
    sql(
        db,
        "CREATE TRIGGER refuse BEFORE UPDATE ON devices BEGIN SELECT RAISE(ABORT, 'no room'); END",
    )
    async with open_simulator(pki=pki) as sim:
        sim.add_feedback(token(1), T0)
        code = await run_cli(feedback_args(sim, cert_dir, "--db", str(db)))
        assert sim.feedback.pending(pki.client.topic) == []  # read, so cleared on the server
    out, err = capsys.readouterr()
    assert code == 1
    assert json.loads(out)["token"] == token(1).hex()
    assert "could not apply 1 entry to" in err
    (saved,) = tmp_path.glob("feedback-*.jsonl")
    assert f"apply it later with: apns-legacy tokens apply-feedback --db {db} {saved}" in err
    sql(db, "DROP TRIGGER refuse")
    assert main(["tokens", "apply-feedback", "--db", str(db), str(saved)]) == 0
    assert "1 token in the list; 1 deactivated, 0 skipped" in capsys.readouterr().out
    with TokenStore(db) as store:
        assert [t.value for t in store.active_tokens()] == [token(2)]
    # Applying the same list again changes nothing; the printed output works too.
    listing = tmp_path / "printed.jsonl"
    listing.write_text(out)
    assert main(["tokens", "apply-feedback", "--db", str(db), str(listing)]) == 0
    assert "0 deactivated, 0 skipped (re-registered since), 0 unknown, 1 already inactive" in (
        capsys.readouterr().out
    )


def test_apply_feedback_reads_csv_and_refuses_a_bad_line(tmp_path, capsys):
    db = tmp_path / "devices.db"
    with TokenStore(db) as store:
        store.register_many([token(1), token(2)], at=T0 - 60)
    listing = tmp_path / "list.csv"
    listing.write_text(f"token,timestamp,time\n{token(2).hex()},{T0},2023-11-14T22:13:20Z\n")
    assert main(["tokens", "apply-feedback", "--db", str(db), str(listing)]) == 0
    assert "1 token in the list; 1 deactivated" in capsys.readouterr().out
    listing.write_text(f'{{"token": "{token(1).hex()}", "timestamp": "soon"}}\n')
    assert main(["tokens", "apply-feedback", "--db", str(db), str(listing)]) == 2
    assert "line 1: timestamp: missing, or not UNIX seconds" in capsys.readouterr().err


@pytest.mark.parametrize("action", [["stats"], ["export"], ["export", "--format", "jsonl"]])
def test_a_damaged_store_is_one_line_and_exit_1(tmp_path, capsys, action):
    db = tmp_path / "devices.db"
    damaged_store(db)
    assert main(["tokens", *action, "--db", str(db)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"apns-legacy tokens: --db {db}: the token store is damaged (")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "an empty file, not a token store"),
        (b"hello " * 100, "file is not a database"),
    ],
)
async def test_an_empty_or_foreign_db_is_refused_like_a_missing_one(
    pki, cert_dir, tmp_path, capsys, content, message
):
    db = tmp_path / "devices.db"
    db.write_bytes(content)
    async with open_simulator(pki=pki) as sim:
        sim.add_feedback(token(1), T0)
        code = await run_cli(feedback_args(sim, cert_dir, "--db", str(db)))
        assert sim.stats.feedback_connections == 0
    assert code == 2
    assert message in capsys.readouterr().err
    assert db.read_bytes() == content
    assert main(["tokens", "stats", "--db", str(db)]) == 2
    assert message in capsys.readouterr().err


def test_a_sqlite_database_that_is_not_a_token_store_is_refused(tmp_path, capsys):
    db = tmp_path / "other.db"
    sql(db, "CREATE TABLE notes (text TEXT)")
    assert main(["tokens", "stats", "--db", str(db)]) == 2
    assert "a SQLite database, but not a token store" in capsys.readouterr().err


def test_tokens_register_skips_bad_lines_by_default(tmp_path, capsys):
    db = tmp_path / "devices.db"
    listing = tmp_path / "tokens.txt"
    listing.write_bytes(
        b"\xef\xbb\xbf" + f"{token(1).hex()}\nnot-a-token\n{token(2).hex()}\n".encode()
    )
    assert main(["tokens", "register", "--db", str(db), "--input", str(listing)]) == 1
    out, err = capsys.readouterr()
    assert f"--input {listing} line 2: device token has 'n' at position 1" in err
    assert "registered 2 tokens" in out
    assert "skipped 1 bad line" in out
    with TokenStore(db) as store:
        assert store.counts().active == 2


def test_tokens_messages_use_the_singular_for_one(tmp_path, capsys):
    db = str(tmp_path / "devices.db")
    assert main(["tokens", "register", "--db", db, token(1).hex()]) == 0
    assert f"registered 1 token in {db} (1 active device)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("output", "message"),
    [(".", "is a directory"), ("missing/out.csv", "cannot write (No such file or directory)")],
)
def test_tokens_export_output_errors_are_one_line(tmp_path, capsys, output, message):
    db = str(tmp_path / "devices.db")
    assert main(["tokens", "register", "--db", db, token(1).hex()]) == 0
    capsys.readouterr()
    target = str(tmp_path / output)
    assert main(["tokens", "export", "--db", db, "--output", target]) == 2
    assert capsys.readouterr().err == f"apns-legacy tokens: --output {target}: {message}\n"


async def test_an_empty_list_with_a_single_environment_certificate_gets_a_note(
    pki, cert_dir, capsys
):
    # The test certificate allows sandbox only: a production service drops it after the
    # handshake, which from the client looks exactly like an empty list.
    async with open_simulator(pki=pki, environment="production") as sim:
        code = await run_cli(feedback_args(sim, cert_dir))
        assert sim.stats.wrong_environment == 1
    err = capsys.readouterr().err
    assert code == 0
    assert "0 tokens listed" in err
    assert "A certificate for the other environment gets the same answer" in err
    assert "this one allows sandbox only" in err


def test_feedback_refuses_an_apple_host_of_the_other_environment(cert_dir, capsys):
    code = main(
        [
            "feedback",
            "--cert",
            str(cert_dir / "client.pem"),
            "--key",
            str(cert_dir / "client-key.pem"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert (
        "the certificate is for sandbox only, but feedback.push.apple.com is the production" in err
    )
    assert "Apple accepts it in the handshake and then closes without data" in err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_tokens_export_write_errors_are_one_line(tmp_path, capsys):
    db = str(tmp_path / "devices.db")
    assert main(["tokens", "register", "--db", db, token(1).hex()]) == 0
    capsys.readouterr()
    assert main(["tokens", "export", "--db", db, "--output", "/dev/full"]) == 1
    err = capsys.readouterr().err
    assert err == "apns-legacy tokens: --output /dev/full: cannot write (No space left on device)\n"


def test_tokens_export_into_a_closed_pipe_ends_quietly(tmp_path):
    db = tmp_path / "devices.db"
    with TokenStore(db) as store:
        store.register_many([n.to_bytes(4, "big") * 8 for n in range(20000)])
    with subprocess.Popen(
        [sys.executable, "-m", "apns_legacy", "tokens", "export", "--db", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        assert process.stdout is not None
        assert process.stdout.readline().startswith(b"token,")
        process.stdout.close()  # like `| head -1`
        err = process.stderr.read() if process.stderr else b""
        code = process.wait(timeout=30)
    assert code == 1
    assert b"Traceback" not in err
