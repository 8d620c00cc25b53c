"""``apns-legacy send`` as users run it: a subprocess against an in-process simulator over
real TLS on 127.0.0.1, and its checks before anything is sent (in-process ``main``)."""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio
from cryptography.hazmat.primitives import serialization
from helpers import reaped, run_cli, run_on_terminal, stop_with
from hypothesis import given
from hypothesis import strategies as st

from apns_legacy.cli import main
from apns_legacy.cli._common import load_client_context
from apns_legacy.cli._main import build_parser
from apns_legacy.cli._send_input import LineSplitter
from apns_legacy.client import TokenStore
from apns_legacy.simulator import open_simulator

P12_PASSPHRASE = "p12-secret"
TOKEN_A = "a1" * 32
TOKEN_B = "b2" * 32


def token(i: int) -> str:
    return f"{i:064x}"


@pytest.fixture(scope="module")
def certs(tmp_path_factory, pki) -> dict[str, Path]:
    return pki.write(tmp_path_factory.mktemp("certs"), p12_passphrase=P12_PASSPHRASE.encode())


def pem_flags(certs, sim) -> list[str]:
    host, port = sim.gateway_address
    return [
        "--host", host, "--port", str(port), "--ca", str(certs["ca.pem"]),
        "--cert", str(certs["client.pem"]), "--key", str(certs["client-key.pem"]),
    ]  # fmt: skip


async def send(*arguments: str, stdin: bytes = b"", env: dict[str, str] | None = None):
    """Run ``python -m apns_legacy send ...``; the CompletedProcess (stdout/stderr as text)."""
    with trio.fail_after(30):
        return await run_cli("send", *arguments, stdin=stdin, env=env)


def read_report(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def summary_line(stderr: str) -> str:
    return stderr.strip().splitlines()[-1]


# -- sending ---------------------------------------------------------------------------


async def test_tokens_and_alert_are_sent_and_reported_on_stdout(pki, certs):
    async with open_simulator(pki=pki) as sim:
        done = await send(
            *pem_flags(certs, sim), "--token", TOKEN_A, "--token", f"<{TOKEN_B[:8]} {TOKEN_B[8:]}>",
            "--alert", "Hello", "--badge", "3", "--sound", "default", "--report", "-",
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    payload = '{"aps":{"alert":"Hello","badge":3,"sound":"default"}}'
    assert [(r.token, r.payload, r.command, r.priority) for r in sim.accepted] == [
        (TOKEN_A, payload, 2, 10),
        (TOKEN_B, payload, 2, 10),
    ]
    report = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(e["line"], e["token"], e["outcome"]) for e in report] == [
        (1, TOKEN_A, "accepted"),
        (2, TOKEN_B, "accepted"),
    ]
    assert [e["identifier"] for e in report] == [r.identifier for r in sim.accepted]
    assert summary_line(done.stderr).startswith("sent 2: 2 accepted, 0 rejected, 0 failed; ")
    assert "submitted" not in done.stderr  # no progress display: stderr is not a terminal


async def test_no_spare_opens_one_connection_per_rejection_and_no_more(pki, certs):
    tokens = [token(i) for i in range(1, 41)]
    async with open_simulator(
        pki=pki, invalid_tokens=[bytes.fromhex(tokens[9]), bytes.fromhex(tokens[29])]
    ) as sim:
        arguments = [f"--token={t}" for t in tokens]
        done = await send(*pem_flags(certs, sim), *arguments, "--alert", "hi", "--no-spare")
    assert done.returncode == 1, done.stderr  # two rejections
    assert summary_line(done.stderr).startswith(
        "sent 40: 38 accepted, 2 rejected (INVALID_TOKEN 2)"
    )
    # The first connection, and one after each rejection: no spare opened in advance
    # (with spares, the default, this run opens a fourth).
    assert sim.stats.gateway_connections == 3


async def test_progress_display_on_a_terminal(pki, certs, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"token": token(n)}) + "\n" for n in range(1, 101)))
    async with open_simulator(pki=pki) as sim:
        command = [sys.executable, "-m", "apns_legacy", "send", *pem_flags(certs, sim),
                   "--input", str(source), "--alert", "tty"]  # fmt: skip
        with trio.fail_after(30):
            code, text = await run_on_terminal(command)
    assert code == 0
    assert re.search(r"\d+ submitted, \d+ accepted, 0 rejected, 0 failed", text), text
    assert "sent 100: 100 accepted, 0 rejected, 0 failed; " in text


@pytest.mark.parametrize("parse", ["inline", "process"])
async def test_input_file_with_invalid_tokens(pki, certs, tmp_path, parse):
    invalid_lines = {17, 500, 1234, 1999}
    lines = [
        json.dumps({"token": token(n), "payload": {"aps": {"alert": f"n{n}"}}})
        for n in range(1, 2001)
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n")
    report = tmp_path / "report.jsonl"
    invalid = [bytes.fromhex(token(n)) for n in invalid_lines]
    async with open_simulator(pki=pki, invalid_tokens=invalid) as sim:
        done = await send(
            *pem_flags(certs, sim), "--input", str(source), "--report", str(report),
            "--connections", "2", "--parse", parse,
        )  # fmt: skip
    assert done.returncode == 1, done.stderr
    entries = read_report(report)
    assert sorted(e["line"] for e in entries) == list(range(1, 2001))
    for entry in entries:
        assert entry["token"] == token(entry["line"])
        assert not entry["possible_duplicate"]
    rejected = {e["line"]: e for e in entries if e["outcome"] != "accepted"}
    assert set(rejected) == invalid_lines
    for entry in rejected.values():
        assert (entry["outcome"], entry["status"], entry["status_name"]) == (
            "rejected", 8, "INVALID_TOKEN",
        )  # fmt: skip
    # Every other token reached the gateway exactly once, with its own payload.
    counts = collections.Counter(r.token for r in sim.accepted)
    assert counts == {token(n): 1 for n in range(1, 2001) if n not in invalid_lines}
    assert all(r.payload == f'{{"aps":{{"alert":"n{int(r.token, 16)}"}}}}' for r in sim.accepted)
    assert summary_line(done.stderr).startswith(
        "sent 2000: 1996 accepted, 4 rejected (INVALID_TOKEN 4), 0 failed; "
    )


BAD_LINES = {
    3: ('{"token": "zz' + "0" * 62 + '"}', "line 3: token: device token has 'z' at position 1"),
    4: ("not json", "line 4: not JSON: "),
    5: (json.dumps({"token": TOKEN_A, "priorty": 5}), "line 5: unknown field 'priorty'"),
    6: (json.dumps({"token": TOKEN_A, "priority": 7}), "line 6: priority: must be 10 or 5, not 7"),
    7: (
        json.dumps({"token": TOKEN_A, "payload": {"aps": {"alert": "x" * 100}}}),
        "line 7: payload: payload is 120 bytes; the limit is 100",
    ),
    8: (json.dumps({"token": TOKEN_A, "payload": [1]}), "line 8: payload: must be a JSON object"),
    9: (json.dumps({"token": "abcd"}), "line 9: token: device token is 2 bytes; it must be 32"),
    11: (json.dumps({"payload": {}}), "line 11: token: missing"),
}


def input_with_bad_lines() -> bytes:
    lines = [json.dumps({"token": token(n)}) for n in range(1, 14)]
    for number, (text, _) in BAD_LINES.items():
        lines[number - 1] = text
    lines[9] = "   "  # line 10: blank lines are skipped silently
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("parse", ["inline", "process"])
async def test_bad_input_lines_are_reported_and_skipped(pki, certs, tmp_path, parse):
    source = tmp_path / "in.jsonl"
    source.write_bytes(input_with_bad_lines())
    report = tmp_path / "report.jsonl"
    async with open_simulator(pki=pki) as sim:
        done = await send(
            *pem_flags(certs, sim), "--input", str(source), "--report", str(report),
            "--alert", "default payload", "--payload-limit", "100", "--parse", parse,
        )  # fmt: skip
    assert done.returncode == 1, done.stderr
    messages = done.stderr.strip().splitlines()
    for (_, expected), message in zip(BAD_LINES.values(), messages, strict=False):
        assert message.startswith(expected), message
    assert len(messages) == len(BAD_LINES) + 1
    good = [1, 2, 12, 13]
    assert [e["line"] for e in read_report(report)] == good
    assert [r.token for r in sim.accepted] == [token(n) for n in good]
    assert {r.payload for r in sim.accepted} == {'{"aps":{"alert":"default payload"}}'}
    assert "0 failed, 8 skipped (bad input); " in summary_line(done.stderr)


async def test_deeply_nested_lines_are_skipped_not_a_crash(pki, certs):
    deep = "[" * 100_000
    lines = [
        deep,  # line 1: at the top level
        '{"token": "' + TOKEN_A + '", "payload": {"aps": ' + deep + "}}",  # in the payload
        json.dumps({"token": TOKEN_A, "payload": '{"aps": ' + deep + "}"}),  # in a string
        json.dumps({"token": TOKEN_B}),
    ]
    async with open_simulator(pki=pki) as sim:
        done = await send(
            *pem_flags(certs, sim), "--input", "-", "--alert", "hi",
            stdin=("\n".join(lines) + "\n").encode(),
        )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    messages = done.stderr.strip().splitlines()
    assert messages[0] == "line 1: not JSON this program reads: arrays or objects nested too deeply"
    assert messages[1] == "line 2: not JSON this program reads: arrays or objects nested too deeply"
    assert messages[2] == "line 3: payload: payload nests arrays or objects too deeply"
    assert [r.token for r in sim.accepted] == [TOKEN_B]
    assert "1 accepted, 0 rejected, 0 failed, 3 skipped (bad input)" in summary_line(done.stderr)


async def test_the_jsonl_export_of_the_store_is_valid_input(pki, certs, tmp_path):
    db = tmp_path / "devices.db"
    assert main(["tokens", "register", "--db", str(db), TOKEN_A, TOKEN_B, token(3)]) == 0
    with TokenStore(db) as store:
        store.deactivate([token(3)], reason="invalid-token")
    everything = tmp_path / "all.jsonl"
    assert main(["tokens", "export", "--db", str(db), "--format", "jsonl",
                 "--output", str(everything)]) == 0  # fmt: skip
    # A UTF-8 byte order mark (as a Windows editor writes it) is skipped.
    source = b"\xef\xbb\xbf" + everything.read_bytes()
    async with open_simulator(pki=pki) as sim:
        done = await send(*pem_flags(certs, sim), "--input", "-", "--alert", "hi", stdin=source)
    assert sorted(r.token for r in sim.accepted) == [TOKEN_A, TOKEN_B]
    assert "line 1: active: false, a deactivated device (export with --active)" in done.stderr
    active = tmp_path / "active.jsonl"
    assert main(["tokens", "export", "--db", str(db), "--active", "--format", "jsonl",
                 "--output", str(active)]) == 0  # fmt: skip
    async with open_simulator(pki=pki) as sim:
        done = await send(*pem_flags(certs, sim), "--input", str(active), "--alert", "hi")
    assert done.returncode == 0, done.stderr
    assert sorted(r.token for r in sim.accepted) == [TOKEN_A, TOKEN_B]


async def test_report_append_and_deactivating_what_it_rejected(pki, certs, tmp_path):
    db = tmp_path / "devices.db"
    assert main(["tokens", "register", "--db", str(db), TOKEN_A, TOKEN_B]) == 0
    report = tmp_path / "report.jsonl"
    report.write_text("")
    async with open_simulator(pki=pki, invalid_tokens=[bytes.fromhex(TOKEN_B)]) as sim:
        for tokens in ([TOKEN_A], [TOKEN_B]):
            await send(*pem_flags(certs, sim), "--token", tokens[0], "--alert", "hi",
                       "--report", str(report), "--append")  # fmt: skip
    entries = read_report(report)
    assert [(e["token"], e["outcome"], e["status"]) for e in entries] == [
        (TOKEN_A, "accepted", None),
        (TOKEN_B, "rejected", 8),
    ]
    assert main(["tokens", "deactivate", "--db", str(db), "--from-report", str(report)]) == 0
    with TokenStore(db) as store:
        assert [t.hex for t in store.active_tokens()] == [TOKEN_A]
        device = store.get(TOKEN_B)
        assert device is not None
        assert device.deactivated_reason == "invalid-token"


async def test_a_plain_progress_line_when_stderr_is_not_a_terminal(pki, certs):
    async with open_simulator(pki=pki) as sim:
        command = [sys.executable, "-m", "apns_legacy", "send", *pem_flags(certs, sim),
                   "--input", "-", "--alert", "hi", "--progress-every", "0.2"]  # fmt: skip
        process = await trio.lowlevel.open_process(
            command, stdin=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert process.stdin is not None
        assert process.stderr is not None
        async with reaped(process):
            with trio.fail_after(20):
                await process.stdin.send_all((json.dumps({"token": TOKEN_A}) + "\n").encode())
                await sim.wait_for_accepted(1)
                stderr = b""
                while b"progress: 1 submitted, 1 accepted" not in stderr:
                    chunk = await process.stderr.receive_some(65536)
                    assert chunk, stderr
                    stderr += chunk
                await process.stdin.aclose()
                assert await process.wait() == 0
    assert re.search(rb"progress: 1 submitted, 1 accepted, 0 rejected, 0 failed after \d+s", stderr)


async def test_strict_stops_at_the_first_bad_line(pki, certs, tmp_path):
    report = tmp_path / "report.jsonl"
    async with open_simulator(pki=pki) as sim:
        done = await send(
            *pem_flags(certs, sim), "--input", "-", "--report", str(report), "--alert", "hi",
            "--strict", stdin=input_with_bad_lines(),
        )  # fmt: skip
    assert done.returncode == 2
    assert "line 3: token: device token has 'z' at position 1" in done.stderr
    assert "stopped at line 3 (--strict)" in done.stderr
    assert "line 4" not in done.stderr
    # What came before the bad line was sent and reported; nothing after it.
    assert [e["line"] for e in read_report(report)] == [1, 2]
    assert [r.token for r in sim.accepted] == [token(1), token(2)]


async def test_input_from_stdin_with_every_field(pki, certs):
    payload_text = '{"aps": {"alert": "as given"}, "k": 1}'
    lines = [
        json.dumps({"token": TOKEN_A, "payload": payload_text, "expiry": 1700000000}),
        "",
        json.dumps({"token": TOKEN_B, "payload": {"aps": {}}, "priority": 5}),
    ]
    async with open_simulator(pki=pki) as sim:
        # No newline after the last line, and a CRLF line ending.
        stdin = (lines[0] + "\r\n" + lines[1] + "\n" + lines[2]).encode()
        done = await send(*pem_flags(certs, sim), "--input", "-", stdin=stdin)
    assert done.returncode == 0, done.stderr
    assert [(r.token, r.payload, r.expiry, r.priority) for r in sim.accepted] == [
        (TOKEN_A, payload_text, 1700000000, 10),  # a string payload goes as is
        (TOKEN_B, '{"aps":{}}', 0, 5),
    ]


@pytest.mark.parametrize(("fmt", "command"), [("enhanced", 1), ("simple", 0)])
async def test_older_formats(pki, certs, fmt, command):
    async with open_simulator(pki=pki) as sim:
        done = await send(
            *pem_flags(certs, sim), "--format", fmt, "--settle", "0.2", "--token", TOKEN_A,
            "--token", TOKEN_B, "--payload", '{"aps":{"alert":"old"}}', "--expiry", "1234",
        )  # fmt: skip
    records = [(r.command, r.token, r.payload, r.expiry) for r in sim.accepted]
    expiry = 1234 if command == 1 else None  # command 0 carries no expiry
    assert records == [
        (command, TOKEN_A, '{"aps":{"alert":"old"}}', expiry),
        (command, TOKEN_B, '{"aps":{"alert":"old"}}', expiry),
    ]
    if command == 1:
        assert done.returncode == 0, done.stderr
        assert summary_line(done.stderr).startswith("sent 2: 2 accepted,")
    else:
        # Command 0 has no error responses and no probe: acceptance is an assumption,
        # and the exit code does not pretend otherwise.
        assert done.returncode == 1, done.stderr
        assert summary_line(done.stderr).startswith(
            "sent 2: 2 accepted (2 assumed, not confirmed),"
        )
        assert "2 accepted without confirmation" in done.stderr


async def test_ctrl_c_stops_the_input_and_settles_what_was_submitted(pki, certs, tmp_path):
    report = tmp_path / "report.jsonl"
    async with open_simulator(pki=pki) as sim:
        command = [sys.executable, "-m", "apns_legacy", "send", *pem_flags(certs, sim),
                   "--input", "-", "--alert", "hi", "--report", str(report)]  # fmt: skip
        process = await trio.lowlevel.open_process(
            command, stdin=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert process.stdin is not None
        assert process.stderr is not None
        async with reaped(process):
            with trio.fail_after(20):
                lines = "".join(json.dumps({"token": token(n)}) + "\n" for n in range(1, 51))
                await process.stdin.send_all(lines.encode())
                await sim.wait_for_accepted(50)
                # The producer is still there (stdin open): only the signal ends the input.
                code, stderr = await stop_with(process, signal.SIGINT)
                assert code == 130
    assert "SIGINT: no more input" in stderr.decode()
    assert "sent 50: 50 accepted, 0 rejected, 0 failed; " in stderr.decode()
    assert "stopped after input line 50: resume from line 51" in stderr.decode()
    entries = read_report(report)
    assert [(e["line"], e["outcome"]) for e in entries] == [(n, "accepted") for n in range(1, 51)]


@pytest.mark.parametrize("parse", ["inline", "process"])
async def test_ctrl_c_during_a_file_input_reports_exactly_the_lines_before_the_stop(
    pki, certs, tmp_path, parse
):
    # The signal stops the input in the middle of a file: every line before the resume
    # line has its outcome in the report, and none after it.
    report = tmp_path / "report.jsonl"
    source = tmp_path / "input.jsonl"
    total = 100_000
    source.write_text("".join(json.dumps({"token": token(n)}) + "\n" for n in range(total)))
    async with open_simulator(pki=pki) as sim:
        command = [sys.executable, "-m", "apns_legacy", "send", *pem_flags(certs, sim),
                   "--input", str(source), "--alert", "hi", "--report", str(report),
                   "--parse", parse]  # fmt: skip
        process = await trio.lowlevel.open_process(command, stderr=subprocess.PIPE)
        assert process.stderr is not None
        async with reaped(process):
            with trio.fail_after(60):
                await sim.wait_for_accepted(500)
                code, stderr = await stop_with(process, signal.SIGINT)
                assert code == 130
    text = stderr.decode()
    assert "SIGINT: no more input" in text
    found = re.search(r"stopped after input line (\d+): resume from line (\d+)", text)
    assert found is not None, text
    last = int(found.group(1))
    assert int(found.group(2)) == last + 1
    assert 500 <= last < total  # stopped in the middle of the file
    entries = read_report(report)
    assert [e["line"] for e in entries] == list(range(1, last + 1))
    assert {e["outcome"] for e in entries} == {"accepted"}
    assert f"sent {last}: {last} accepted, 0 rejected, 0 failed; " in text


@pytest.mark.parametrize("parse", ["inline", "process"])
async def test_an_input_that_cannot_be_read_stops_with_the_reason_and_the_resume_line(
    pki, certs, tmp_path, parse
):
    # Standard input open for writing only: the first read fails (EBADF). One line
    # says why, the next where to resume, and the exit code is 1; nothing was sent.
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"token": TOKEN_A}) + "\n")
    descriptor = os.open(path, os.O_WRONLY)
    try:
        async with open_simulator(pki=pki) as sim:
            with trio.fail_after(30):
                done = await trio.run_process(
                    [sys.executable, "-m", "apns_legacy", "send", *pem_flags(certs, sim),
                     "--input", "-", "--alert", "hi", "--parse", parse],
                    stdin=descriptor, capture_stderr=True, check=False,
                )  # fmt: skip
    finally:
        os.close(descriptor)
    stderr = done.stderr.decode()
    assert done.returncode == 1, stderr
    assert "apns-legacy send: --input: cannot read further (Bad file descriptor)\n" in stderr
    assert "stopped after input line 0: resume from line 1 " in stderr
    assert "Traceback" not in stderr
    assert sim.accepted == []


async def test_p12_with_passphrase_from_the_environment(pki, certs):
    async with open_simulator(pki=pki) as sim:
        host, port = sim.gateway_address
        done = await send(
            "--host", host, "--port", str(port), "--ca", str(certs["ca.pem"]),
            "--cert", str(certs["client.p12"]), "--passphrase-env", "APNS_P12_PASS",
            "--token", TOKEN_A, "--alert", "p12", "--quiet",
            env={**os.environ, "APNS_P12_PASS": P12_PASSPHRASE},
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # --quiet: no summary
    assert [(r.token, r.topic) for r in sim.accepted] == [(TOKEN_A, pki.client.topic)]


async def test_wrong_passphrase_fails_before_connecting(pki, certs):
    async with open_simulator(pki=pki) as sim:
        host, port = sim.gateway_address
        done = await send(
            "--host", host, "--port", str(port), "--ca", str(certs["ca.pem"]),
            "--cert", str(certs["client.p12"]), "--passphrase-env", "APNS_P12_PASS",
            "--token", TOKEN_A, "--alert", "p12",
            env={**os.environ, "APNS_P12_PASS": "not-the-passphrase"},
        )  # fmt: skip
        stats = sim.stats
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("apns-legacy send: cannot use the credentials: ")
    assert "wrong passphrase" in line
    assert "not-the-passphrase" not in line
    assert (stats.gateway_connections, stats.handshake_failures) == (0, 0)


async def test_payload_over_the_limit_fails_before_connecting(pki, certs):
    async with open_simulator(pki=pki) as sim:
        done = await send(
            *pem_flags(certs, sim), "--token", TOKEN_A, "--alert", "x" * 40,
            "--payload-limit", "40",
        )  # fmt: skip
        stats = sim.stats
    assert done.returncode == 2
    assert done.stderr == (
        "apns-legacy send: --alert/--badge/--sound: payload is 60 bytes; the limit is 40 "
        "(--payload-limit)\n"
    )
    assert (stats.gateway_connections, stats.handshake_failures) == (0, 0)


async def test_unreachable_gateway_fails_every_notification(certs):
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = await send(
        "--host", "127.0.0.1", "--port", str(port), "--ca", str(certs["ca.pem"]),
        "--cert", str(certs["client.pem"]), "--key", str(certs["client-key.pem"]),
        "--token", TOKEN_A, "--alert", "nobody there",
    )  # fmt: skip
    assert done.returncode == 1
    assert f"could not connect to 127.0.0.1:{port}" in done.stderr
    assert summary_line(done.stderr).startswith("sent 1: 0 accepted, 0 rejected, 1 failed; ")


# -- checks before sending (in-process) ------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ([], "give either --token HEX (repeatable) or --input FILE|-"),
        (["--token", TOKEN_A, "--input", "-"], "give either --token HEX"),
        (["--token", TOKEN_A], "--token needs a payload"),
        (["--token", "abc", "--alert", "x"], "--token 'abc': device token has 3 hex digits"),
        (["--token", TOKEN_A, "--payload", "[1]"], "--payload: payload must be a JSON object"),
        (["--token", TOKEN_A, "--payload", "{}", "--alert", "x"], "--payload cannot be combined"),
        (["--token", TOKEN_A, "--alert", "x", "--badge", "-1"], "--badge must be 0 or more"),
        (["--token", TOKEN_A, "--alert", "x", "--connections", "0"], "--connections must be"),
        (["--token", TOKEN_A, "--alert", "x", "--settle", "0"], "--settle must be more than 0"),
        (
            ["--token", TOKEN_A, "--alert", "x", "--probe-timeout", "nan"],
            "--probe-timeout must be more than 0 seconds",
        ),
        (
            ["--token", TOKEN_A, "--alert", "x", "--write-timeout", "-1"],
            "--write-timeout must be more than 0 seconds",
        ),
        (
            ["--token", TOKEN_A, "--alert", "x", "--connections", "5000"],
            "--connections must be 1 to 100",
        ),
        (
            ["--token", TOKEN_A, "--alert", "x", "--connect-attempts", "0"],
            "--connect-attempts must be at least 1",
        ),
        (["--token", TOKEN_A, "--alert", "x", "--payload-limit", "0"], "--payload-limit must"),
        (["--token", TOKEN_A, "--alert", "x", "--expiry", "-1"], "--expiry must be 0 to"),
        (["--token", TOKEN_A, "--alert", "x", "--sandbox"], "give either --sandbox or --host"),
        (["--token", TOKEN_A, "--alert", "x", "--port", "0"], "--port must be 1 to 65535"),
        (
            ["--token", TOKEN_A, "--alert", "x", "--passphrase-env", "APNS_TEST_UNSET_VARIABLE"],
            "--passphrase-env: the environment variable APNS_TEST_UNSET_VARIABLE is not set",
        ),
        (["--input", "/nonexistent/in.jsonl"], "--input /nonexistent/in.jsonl: cannot read"),
        (["--input", "/"], "--input /: is a directory"),
        (["--token", TOKEN_A, "--alert", "x", "--parse", "process"], "--parse process applies"),
        (["--input", os.devnull, "--report", "/nonexistent/r.jsonl"], "--report /nonexistent/r"),
    ],
)
def test_usage_errors_are_one_line(certs, capsys, arguments, message):
    assert "APNS_TEST_UNSET_VARIABLE" not in os.environ
    code = main([
        "send", "--host", "127.0.0.1", "--cert", str(certs["client.pem"]),
        "--key", str(certs["client-key.pem"]), "--ca", str(certs["ca.pem"]), *arguments,
    ])  # fmt: skip
    assert code == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("apns-legacy send: "), captured.err
    assert message in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    assert captured.out == ""


def test_unreadable_certificate_is_one_line(tmp_path, capsys):
    code = main(["send", "--cert", str(tmp_path / "missing.pem"), "--token", TOKEN_A,
                 "--alert", "x"])  # fmt: skip
    assert code == 2
    assert capsys.readouterr().err == (
        f"apns-legacy send: cannot use the credentials: {tmp_path / 'missing.pem'}: no such file\n"
    )


def test_expired_certificate_is_refused_before_connecting(pki, tmp_path, capsys):
    expired = pki.issue_client(
        not_before=datetime.now(UTC) - timedelta(days=30),
        not_after=datetime.now(UTC) - timedelta(days=1),
    )
    combined = tmp_path / "expired.pem"
    combined.write_bytes(
        expired.certificate.public_bytes(serialization.Encoding.PEM)
        + expired.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    code = main(["send", "--host", "127.0.0.1", "--cert", str(combined), "--token", TOKEN_A,
                 "--alert", "x"])  # fmt: skip
    assert code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("apns-legacy send: cannot use the credentials: the certificate ")
    assert " expired on " in line


def test_connection_flags_resolve_apple_hosts_and_warn_about_the_environment(certs, capsys):
    # Only resolves and loads; nothing connects (load_client_context never does).
    base = ["send", "--cert", str(certs["client.pem"]), "--key", str(certs["client-key.pem"]),
            "--token", TOKEN_A, "--alert", "x"]  # fmt: skip
    production = load_client_context(build_parser().parse_args(base))
    assert (production.host, production.port) == ("gateway.push.apple.com", 2195)
    assert capsys.readouterr().err == (
        "warning: the certificate is for sandbox only, but gateway.push.apple.com is the "
        "production server (use --sandbox)\n"
    )
    sandbox = load_client_context(build_parser().parse_args([*base, "--sandbox"]))
    assert (sandbox.host, sandbox.port) == ("gateway.sandbox.push.apple.com", 2195)
    relay = load_client_context(build_parser().parse_args([*base, "--host", "relay.example"]))
    assert (relay.host, relay.port) == ("relay.example", 2195)
    assert capsys.readouterr().err == ""  # right environment, or a host we cannot judge


# -- input splitting -------------------------------------------------------------------


def split_in_pieces(data: bytes, cuts: list[int]) -> list[tuple[int, bytes | None]]:
    """What a LineSplitter (lines up to 1,000 bytes) makes of ``data`` cut at ``cuts``."""
    splitter = LineSplitter(max_line=1000)
    got: list[tuple[int, bytes | None]] = []
    start = 0
    for cut in [*sorted(c for c in cuts if c < len(data)), len(data)]:
        got += splitter.feed(data[start:cut])
        start = cut
    return got + splitter.finish()


@given(
    lines=st.lists(
        st.binary(max_size=1500).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b""))
    ),
    final_newline=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=2000)),
)
def test_line_splitter_gives_the_same_lines_for_any_chunking(lines, final_newline, cuts):
    data = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    got = split_in_pieces(data, cuts)
    if lines:  # a UTF-8 byte order mark at the very start is not part of line 1
        lines = [lines[0].removeprefix(b"\xef\xbb\xbf"), *lines[1:]]
    expected = [(n, line if len(line) <= 1000 else None) for n, line in enumerate(lines, 1)]
    if lines and not final_newline and lines[-1] == b"":
        expected.pop()  # an empty last line without a newline is no line at all
    assert got == expected


@given(
    lines=st.lists(
        st.lists(st.sampled_from([b"a", b"\r", b"{}", b"x" * 400, b"\xef\xbb\xbf"])).map(b"".join)
    ),
    final_newline=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=3000)),
)
def test_line_splitter_strips_carriage_returns_after_the_length_check(lines, final_newline, cuts):
    data = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    got = split_in_pieces(data, cuts)
    if lines:
        lines = [lines[0].removeprefix(b"\xef\xbb\xbf"), *lines[1:]]
    expected = [
        (n, None if len(line) > 1000 else line.rstrip(b"\r")) for n, line in enumerate(lines, 1)
    ]
    if lines and not final_newline and lines[-1] == b"":
        expected.pop()
    assert got == expected


@pytest.mark.parametrize("size", [1, 2, 3, 64])
def test_line_splitter_skips_a_byte_order_mark_at_the_start_only(size):
    data = b"\xef\xbb\xbf{}\n\xef\xbb\xbf[]\n"
    splitter = LineSplitter()
    got = []
    for start in range(0, len(data), size):
        got += splitter.feed(data[start : start + size])
    assert got + splitter.finish() == [(1, b"{}"), (2, b"\xef\xbb\xbf[]")]
    short = LineSplitter()
    assert short.feed(b"\xef\xbb") == []
    assert short.finish() == [(1, b"\xef\xbb")]  # not a whole mark: kept, reported as not UTF-8


def test_line_splitter_drops_overlong_lines_without_keeping_them():
    splitter = LineSplitter(max_line=10)
    assert splitter.feed(b"short\r\n" + b"x" * 25) == [(1, b"short")]
    assert splitter.feed(b"y" * 1000) == []
    assert splitter.buffered == 0  # the long line is not kept
    assert splitter.feed(b"\nok\n") == [(2, None), (3, b"ok")]
    assert splitter.finish() == []


async def test_connections_open_as_work_needs_them(pki, certs):
    async with open_simulator(pki=pki) as sim:
        done = await send(*pem_flags(certs, sim), "--connections", "50", "--token", TOKEN_A,
                          "--alert", "one")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sim.stats.gateway_connections <= 2  # not 50 for one notification


async def test_a_closed_port_is_one_plain_reason(certs):
    with trio.socket.socket() as probe:  # a free port, then closed: nobody listens there
        await probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = await send("--host", "127.0.0.1", "--port", str(port), "--ca", str(certs["ca.pem"]),
                      "--cert", str(certs["client.pem"]), "--key", str(certs["client-key.pem"]),
                      "--connect-attempts", "2", "--token", TOKEN_A, "--alert", "x")  # fmt: skip
    assert done.returncode == 1
    assert f"could not connect to 127.0.0.1:{port}: connection refused (2 attempts)" in done.stderr
    assert done.stderr.count("connection refused") == 1  # said once, not three times


async def test_a_listener_that_never_speaks_gives_up_after_connect_timeout(certs):
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen(5)  # the kernel completes TCP; nobody ever starts TLS
    with listener:
        port = listener.getsockname()[1]
        started = trio.current_time()
        done = await send("--host", "127.0.0.1", "--port", str(port),
                          "--ca", str(certs["ca.pem"]), "--cert", str(certs["client.pem"]),
                          "--key", str(certs["client-key.pem"]), "--connect-timeout", "0.5",
                          "--connect-attempts", "2", "--token", TOKEN_A,
                          "--alert", "x")  # fmt: skip
        elapsed = trio.current_time() - started
    assert done.returncode == 1
    assert "no answer within 0.5 s" in done.stderr
    assert elapsed < 20
