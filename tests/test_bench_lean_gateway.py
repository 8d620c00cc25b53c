"""Keeps bench/lean_gateway.py honest: it must check what the simulator checks.

The lean gateway replaces the simulator in latency.py's ``lean`` rows, so a gateway that
stopped parsing, refusing or recording would make those rows look good and wrong. Here:
the same latency.py row against the simulator and the lean gateway gives the same
counts (accepted, refused, nothing twice), and the gateway itself, driven by the
standard library's TLS client, answers and records as the simulator would. Timings are
never asserted, except that an answer cannot come sooner than the round trip.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from apns_legacy.tls import make_test_pki
from apns_legacy.wire import Command, encode_frame, encode_probe

ROOT = Path(__file__).resolve().parent.parent
GOOD = [bytes([i]) * 32 for i in range(1, 4)]
BAD = b"\xee" * 32


@pytest.mark.parametrize("rtt", ["0", "20"])
def test_lean_gateway_row_matches_the_simulators(rtt):
    command = [
        sys.executable, str(ROOT / "bench" / "latency.py"), "--n", "400", "--rates", "0.01",
        "--rtts", rtt, "--connections", "1", "--deadline", "60", "--gateway", "in-process",
    ]  # fmt: skip
    rows = {}
    for gateway in ("in-process", "lean"):
        command[-1] = gateway
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "nothing lost, no rejection missed" in done.stdout
        rows[gateway] = json.loads(done.stderr.strip().splitlines()[-1])
    simulator, lean = rows["in-process"], rows["lean"]
    assert lean["gateway"] == "lean"
    for row in (simulator, lean):
        assert (row["n"], row["invalid"], row["timed_out"]) == (400, 4, False)
        assert row["missed"] == 0
        assert row["recorded_twice"] == 0
        assert row["nothing_lost"]
        assert row["accepted_recorded"] == 396
        assert row["rejections_recorded"] == 4
        assert row["reconnects"] >= 4  # every refusal ended a connection
    assert lean["rejected_as_expected"] is True


@contextmanager
def lean_gateway(tmp_path: Path, delay: float) -> Iterator[tuple[int, ssl.SSLContext, dict]]:
    """The gateway running, its port, a stdlib client context; the report filled in at exit."""
    pki = make_test_pki()
    files = pki.write(tmp_path / "pki", p12_passphrase=b"test")
    (tmp_path / "invalid.txt").write_text(BAD.hex() + "\n")
    gateway = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "lean_gateway.py"), "--pki", str(tmp_path / "pki"),
         "--delay", str(delay), "--invalid-file", str(tmp_path / "invalid.txt"), "--for", "60"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    report: dict = {}
    try:
        assert gateway.stdout is not None
        port = json.loads(gateway.stdout.readline())["port"]
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(files["ca.pem"])
        context.load_cert_chain(files["client.pem"], files["client-key.pem"])
        yield port, context, report
        out, err = gateway.communicate(input=b"", timeout=30)
        assert gateway.returncode == 0, err
        report.update(json.loads(out.decode().splitlines()[-1]))
    finally:
        if gateway.poll() is None:
            gateway.kill()
            gateway.communicate()


def connect(port: int, context: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as the sender does
    return context.wrap_socket(raw, server_hostname="localhost")


def read_to_end(conn: ssl.SSLSocket) -> bytes:
    data = b""
    try:
        while chunk := conn.recv(64):
            data += chunk
    except (ssl.SSLError, ConnectionResetError):
        pass
    return data


def test_lean_gateway_answers_records_and_delays(tmp_path):
    delay = 0.05
    with lean_gateway(tmp_path, delay) as (port, context, report):
        with connect(port, context) as conn:
            assert conn.version() == "TLSv1.2"
            frames = [encode_frame(i, token, b'{"aps":{}}') for i, token in enumerate(GOOD, 1)]
            frames.append(encode_frame(7, GOOD[0], b"{}"))  # the same token again
            frames.append(encode_frame(8, BAD, b"{}"))
            frames.append(encode_frame(9, b"\x99" * 32, b"{}"))  # after the bad one: dropped
            written = time.monotonic()
            conn.sendall(b"".join(frames))
            answer = read_to_end(conn)
            # In 50 ms, the answer 50 ms back: no sooner than the round trip.
            assert time.monotonic() - written >= 2 * delay
        assert answer == b"\x08\x08\x00\x00\x00\x08"
        with connect(port, context) as conn:
            conn.sendall(encode_frame(1, GOOD[1], b"{}") + encode_probe(Command.FRAME, 5))
            assert read_to_end(conn) == b"\x08\x02\x00\x00\x00\x00"  # identifier 0, as Apple
    assert report["tokens"] == {GOOD[0].hex(): 2, GOOD[1].hex(): 2, GOOD[2].hex(): 1}
    assert report["accepted"] == 5
    assert report["errors"] == [[8, 8, BAD.hex()], [2, 0, ""]]
    assert report["connections"] == 2
    assert (report["problems"], report["still_open"]) == ([], 0)


def test_lean_gateway_resets_a_client_that_keeps_writing(tmp_path):
    # As the simulator (and Apple): the client's bytes wait unread when the gateway
    # refuses, so the close is a reset rather than close_notify.
    filler = encode_frame(2, GOOD[0], b"x" * 2000) * 30
    with lean_gateway(tmp_path, 0.05) as (port, context, report), connect(port, context) as conn:
        conn.sendall(encode_frame(1, BAD, b"{}"))
        until = time.monotonic() + 10
        try:
            while time.monotonic() < until:  # bounded: ends with the reset
                conn.sendall(filler)
        except (ssl.SSLError, OSError):
            pass
    assert report["errors"] == [[8, 1, BAD.hex()]]
    assert report["resets"] == 1
    assert report["accepted"] == 0


def test_lean_gateway_closes_silently_on_garbage(tmp_path):
    with lean_gateway(tmp_path, 0) as (port, context, report), connect(port, context) as conn:
        conn.sendall(encode_frame(1, GOOD[0], b"{}") + b"\x05" + bytes(40))
        assert read_to_end(conn) == b""
    assert report["tokens"] == {GOOD[0].hex(): 1}
    assert report["protocol_errors"] == 1
