"""``apns-legacy serve --http2`` as users run it: a subprocess, its ready line, curl, SIGTERM."""

from __future__ import annotations

import json
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
import trio
from helpers import read_ready_line, reaped, run_cli, write_p8

from apns_legacy.cli import main
from apns_legacy.h2wire import ProviderKey, make_provider_token
from apns_legacy.tls import Credentials

CURL = shutil.which("curl")
GOOD = "aa" * 32
BAD = "bb" * 32
PAYLOAD = '{"aps":{"alert":"hi"}}'


def curl_has_http2() -> bool:
    if CURL is None:
        return False
    out = subprocess.run([CURL, "--version"], capture_output=True, text=True, check=False)
    return "HTTP2" in out.stdout


@attrs.define
class Served:
    port: int
    cert_dir: Path
    #: The ready line.
    ready: dict[str, str]
    #: serve's stderr, read once it stopped.
    stderr: str = ""


@asynccontextmanager
async def serve_http2(tmp_path: Path, *flags: str) -> AsyncIterator[Served]:
    """``serve --http2`` as a subprocess until the block ends (then SIGTERM, exit 0)."""
    cert_dir = tmp_path / "certs"
    command = [sys.executable, "-m", "apns_legacy", "serve", "--http2", "--http2-port", "0",
               "--cert-dir", str(cert_dir), "--for", "60", *flags]  # fmt: skip
    process = await trio.lowlevel.open_process(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None
    assert process.stderr is not None
    async with reaped(process):
        with trio.fail_after(30):
            ready = json.loads(await read_ready_line(process.stdout, "serve"))
        served = Served(int(ready["http2"].rsplit(":", 1)[1]), cert_dir, ready)
        yield served
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            errors = b""
            while chunk := await process.stderr.receive_some(65536):
                errors += chunk
            assert await process.wait() == 0, errors
        served.stderr = errors.decode()


def stopped_line(stderr: str) -> str:
    (line,) = [line for line in stderr.splitlines() if line.startswith("stopped: ")]
    return line


@pytest.mark.skipif(not curl_has_http2(), reason="curl with HTTP/2 is not installed")
async def test_serve_http2_subprocess_with_curl(tmp_path):
    p8 = tmp_path / "AuthKey.p8"
    key = ProviderKey(key_id="KEY1234567", team_id="TEAM123456", private_key=write_p8(p8))
    record = tmp_path / "records.jsonl"
    async with serve_http2(
        tmp_path, "--provider-key", f"TEAM123456:KEY1234567:{p8}", "--invalid-token", BAD,
        "--record", str(record),
    ) as served:  # fmt: skip
        assert served.ready["cert_dir"] == str(served.cert_dir)
        jwt = make_provider_token(key, now=int(time.time())).value
        answers = []
        for device in (GOOD, BAD):
            curl_command = [
                CURL, "--http2", "--silent", "--max-time", "10",
                "--cacert", str(served.cert_dir / "ca.pem"), "--output", "-",
                "--write-out", "\n%{http_code}", "--header", f"authorization: bearer {jwt}",
                "--header", "apns-topic: com.example.app", "--data-binary", PAYLOAD,
                f"https://localhost:{served.port}/3/device/{device}",
            ]  # fmt: skip
            with trio.fail_after(30):
                result = await trio.run_process(curl_command, capture_stdout=True, check=False)
            body, _, status = result.stdout.decode().rpartition("\n")
            answers.append((int(status), body))
    assert answers == [(200, ""), (400, '{"reason":"BadDeviceToken"}')]
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert [line["token"] for line in lines] == [GOOD]


def test_serve_http2_refuses_a_bad_provider_key(tmp_path):
    bad = tmp_path / "key.p8"
    bad.write_bytes(b"not a key")
    command = [
            sys.executable,
            "-m",
            "apns_legacy",
            "serve",
            "--http2",
            "--cert-dir",
            str(tmp_path / "certs"),
            "--provider-key",
            f"T:K:{bad}",
        ]  # fmt: skip
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--provider-key" in result.stderr
    assert "not a PEM .p8 private key or PEM public key" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# -- the HTTP/2 fault and stream flags -------------------------------------------------------


async def test_serve_http2_faults_from_the_command_line_with_send_http2(tmp_path):
    # Every HTTP/2 fault at once, driven by `send --http2` (two processes, real TLS):
    # each notification is recorded, more than once only when send counted it as a
    # possible duplicate (the dropped connection), and serve says what it did.
    p8 = tmp_path / "AuthKey.p8"
    write_p8(p8)
    record = tmp_path / "records.jsonl"
    source = tmp_path / "in.jsonl"
    source.write_text("".join(f'{{"token": "{n:064x}"}}\n' for n in range(1, 61)))
    async with serve_http2(
        tmp_path, "--provider-key", f"TEAM123456:KEY1234567:{p8}", "--record", str(record),
        "--goaway-after", "9", "--goaway-reason", "IdleTimeout", "--status-every", "7",
        "--fault-status", "429", "--refuse-every", "11", "--drop-after", "23",
        "--lower-after-rejection", "--max-concurrent-streams", "5",
    ) as served:  # fmt: skip
        with trio.fail_after(60):
            done = await run_cli(
                "-v", "send", "--http2", "--host", "127.0.0.1", "--port", str(served.port),
                "--ca", str(served.cert_dir / "ca.pem"), "--auth-key", str(p8),
                "--key-id", "KEY1234567", "--team-id", "TEAM123456", "--topic", "com.example.app",
                "--input", str(source), "--alert", "Hi", "--connections", "2",
            )  # fmt: skip
    assert done.returncode == 0, done.stderr
    tokens = [json.loads(line)["token"] for line in record.read_text().splitlines()]
    assert set(tokens) == {f"{n:064x}" for n in range(1, 61)}
    duplicates = re.search(r"(\d+) possible duplicates?", done.stderr)
    assert duplicates is not None, done.stderr
    assert len(tokens) - 60 <= int(duplicates.group(1))
    line = stopped_line(served.stderr)
    numbers = {
        name: int(count)
        for count, name in re.findall(r"(\d+) (accepted|GOAWAYs?|refused streams?|dropped)", line)
    }
    assert numbers["accepted"] == len(tokens)
    assert numbers["dropped"] == 1
    assert numbers.get("GOAWAYs", numbers.get("GOAWAY", 0)) >= 5
    assert numbers.get("refused streams", numbers.get("refused stream", 0)) >= 5
    assert re.search(r"rejected \(TooManyRequests \d+\)", line), line
    assert "reason 'IdleTimeout'" in done.stderr  # --goaway-reason, as the sender logged it


@pytest.mark.skipif(not curl_has_http2(), reason="curl with HTTP/2 is not installed")
async def test_serve_http2_flags_seen_by_curl(tmp_path):
    # curl (nghttp2) with the client certificate: 503 ServiceUnavailable for every 2nd
    # request, and a GOAWAY after each answer (curl opens a new connection for the next
    # URL).
    async with serve_http2(
        tmp_path, "--status-every", "2", "--fault-status", "503", "--goaway-after", "1",
    ) as served:  # fmt: skip
        certs = served.cert_dir
        url = f"https://localhost:{served.port}/3/device/"
        command = [
            CURL, "--http2", "--silent", "--max-time", "20",
            "--cacert", str(certs / "ca.pem"), "--cert", str(certs / "client.pem"),
            "--key", str(certs / "client-key.pem"), "--write-out", "|%{http_code}\n",
            "--header", "apns-topic: " + topic_of(certs), "--data-binary", PAYLOAD,
            url + GOOD, "--next", "--http2", "--cacert", str(certs / "ca.pem"),
            "--cert", str(certs / "client.pem"), "--key", str(certs / "client-key.pem"),
            "--write-out", "|%{http_code}\n", "--data-binary", PAYLOAD, url + "cc" * 32,
        ]  # fmt: skip
        with trio.fail_after(30):
            result = await trio.run_process(
                command, capture_stdout=True, capture_stderr=True, check=False
            )
    out, err = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 0, err
    assert out.splitlines() == ["|200", '{"reason":"ServiceUnavailable"}|503']
    assert stopped_line(served.stderr) == (
        "stopped: 2 connections, 1 accepted, 1 rejected (ServiceUnavailable 1), 2 GOAWAYs, "
        "0 refused streams, 0 dropped"
    )


async def test_serve_http2_stream_limit_flags_seen_by_h2_over_stdlib_ssl(tmp_path):
    # h2's client side over the standard library's TLS, with the client certificate:
    # --max-concurrent-streams is the limit in the first SETTINGS, and
    # --lower-after-rejection drops it to 1 after a 400 and restores it after a 200.
    async with serve_http2(
        tmp_path, "--max-concurrent-streams", "7", "--lower-after-rejection",
        "--invalid-token", BAD,
    ) as served:  # fmt: skip
        certs = served.cert_dir
        context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        context.load_cert_chain(certs / "client.pem", certs / "client-key.pem")
        context.set_alpn_protocols(["h2"])
        with trio.fail_after(30):
            tcp = await trio.open_tcp_stream("127.0.0.1", served.port)
            stream = trio.SSLStream(tcp, context, server_hostname="localhost")
            await stream.do_handshake()
            assert stream.selected_alpn_protocol() == "h2"
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
            conn.initiate_connection()
            limits: list[int] = []
            statuses: list[str] = []

            async def exchange(until: int) -> None:
                """Write what h2 has, read until ``until`` answers came in all."""
                await stream.send_all(conn.data_to_send())
                while len(statuses) < until:
                    for event in conn.receive_data(await stream.receive_some()):
                        if isinstance(event, h2.events.RemoteSettingsChanged):
                            changed = event.changed_settings.get(
                                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS
                            )
                            if changed is not None:
                                limits.append(changed.new_value)
                        elif isinstance(event, h2.events.ResponseReceived):
                            statuses.append(dict(event.headers)[b":status"].decode())
                    await stream.send_all(conn.data_to_send())

            for number, device in enumerate((BAD, GOOD), start=1):
                stream_id = conn.get_next_available_stream_id()
                conn.send_headers(stream_id, [
                    (":method", "POST"), (":scheme", "https"), (":authority", "localhost"),
                    (":path", f"/3/device/{device}"), ("apns-topic", topic_of(certs)),
                ], end_stream=False)  # fmt: skip
                conn.send_data(stream_id, PAYLOAD.encode(), end_stream=True)
                await exchange(number)
            await stream.aclose()
    assert statuses == ["400", "200"]
    assert limits == [7, 1, 7]


def topic_of(cert_dir: Path) -> str:
    credentials = Credentials.load(cert_dir / "client.pem", cert_dir / "client-key.pem")
    assert credentials.topic is not None
    return credentials.topic


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--http2", "--goaway-after", "0"], "--goaway-after must be at least 1, not 0"),
        (["--http2", "--status-every", "-1"], "--status-every must be at least 1, not -1"),
        (["--http2", "--refuse-every", "0"], "--refuse-every must be at least 1, not 0"),
        (["--http2", "--drop-after", "0"], "--drop-after must be at least 1, not 0"),
        (["--http2", "--fault-status", "429"], "--fault-status needs --status-every N"),
        (["--http2", "--goaway-reason", "Shutdown"], "--goaway-reason needs --goaway-after N"),
        (
            ["--http2", "--goaway-after", "1", "--goaway-reason", "a\nb"],
            "--goaway-reason must be printable text",
        ),
        (["--http2", "--max-concurrent-streams", "0"], "--max-concurrent-streams must be 1 to"),
        (["--http2", "--shutdown-after", "1"], "--shutdown-after is a fault of the binary"),
        (["--http2", "--latency", "5"], "--latency is a fault of the binary gateway"),
        (["--http2", "--reset-after", "3"], "--reset-after is a fault of the binary gateway"),
        (["--goaway-after", "1"], "--goaway-after is for the HTTP/2 simulator; add --http2"),
        (["--lower-after-rejection"], "--lower-after-rejection is for the HTTP/2 simulator"),
        (["--max-concurrent-streams", "9"], "--max-concurrent-streams is for the HTTP/2"),
        (["--provider-key", "T:K:f"], "--provider-key is for the HTTP/2 simulator"),
    ],
)
def test_serve_http2_flag_errors_are_one_line(tmp_path, capsys, arguments, message):
    cert_dir = tmp_path / "certs"
    code = main(["serve", "--cert-dir", str(cert_dir), "--http2-port", "0", *arguments])
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert captured.err.startswith("apns-legacy serve: "), captured.err
    assert message in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    assert not cert_dir.exists()  # refused before anything was written or listened on
