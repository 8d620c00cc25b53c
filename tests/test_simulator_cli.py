"""``apns-legacy serve`` as users run it: a subprocess, its JSON ready line, a real TLS
client, SIGTERM; and its argument checks."""

from __future__ import annotations

import json
import signal
import socket
import struct
import subprocess
import sys

import pytest
import trio
from helpers import read_ready_line, reaped

from apns_legacy.cli import main
from apns_legacy.tls import Credentials, TestPKI, client_context, make_test_pki, open_tls_stream

TOKEN = bytes(range(32))
ENHANCED = bytes.fromhex(
    "01 01020304 00000000 0020" + TOKEN.hex() + "0016 7b22617073223a7b22616c657274223a224869227d7d"
)
PROBE = struct.pack("!BIIH", 1, 9, 0, 0) + struct.pack("!H", 2) + b"{}"


async def test_serve_subprocess(tmp_path):
    cert_dir = tmp_path / "certs"
    record = tmp_path / "records.jsonl"
    command = [
        sys.executable, "-m", "apns_legacy", "serve", "--cert-dir", str(cert_dir),
        "--gateway-port", "0", "--feedback-port", "0", "--for", "30",
        "--record", str(record), "--uninstalled-token", TOKEN.hex(),
    ]  # fmt: skip
    process = await trio.lowlevel.open_process(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None
    assert process.stderr is not None
    async with reaped(process):
        with trio.fail_after(20):
            ready = json.loads(await read_ready_line(process.stdout, "serve"))
            assert ready["cert_dir"] == str(cert_dir)
            gateway_host, gateway_port = ready["gateway"].rsplit(":", 1)
            feedback_host, feedback_port = ready["feedback"].rsplit(":", 1)

            pki = TestPKI.load(cert_dir)
            context = client_context(pki.client, ca=cert_dir / "ca.pem")
            stream = await open_tls_stream(gateway_host, int(gateway_port), context)
            await stream.send_all(ENHANCED + PROBE)
            assert await stream.receive_some() == bytes.fromhex("0802 00000009")
            await stream.aclose()
            feedback = await open_tls_stream(feedback_host, int(feedback_port), context)
            data = b""
            while chunk := await feedback.receive_some():
                data += chunk
            await feedback.aclose()
            assert data[4:] == b"\x00\x20" + TOKEN

            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
            log = b""
            while chunk := await process.stderr.receive_some(65536):
                log += chunk
    assert b"client.p12 passphrase: 'apns-legacy-test'" in log
    (line,) = record.read_text().splitlines()
    entry = json.loads(line)
    assert (entry["identifier"], entry["token"], entry["command"]) == (0x01020304, TOKEN.hex(), 1)
    assert entry["topic"] == pki.client.topic
    # The .p12 was written with the documented default passphrase.
    p12 = Credentials.load(cert_dir / "client.p12", passphrase=b"apns-legacy-test")
    assert p12.topic == pki.client.topic


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--gateway-port", "70000"], "--gateway-port must be 0 to 65535"),
        (["--payload-limit", "0"], "--payload-limit must be 1 to 65535"),
        (["--shutdown-after", "0"], "--shutdown-after must be at least 1"),
        (["--read-rate", "0"], "--read-rate must be more than 0"),
        (["--error-delay", "-1"], "--error-delay must be 0 or more"),
        (["--invalid-token", "abcd"], "--invalid-token 'abcd': device token is 2 bytes"),
        (["--uninstalled-token", "zz"], "--uninstalled-token 'zz'"),
        (["--drop-after-bytes", "0"], "--drop-after-bytes must be at least 1"),
        (["--split-errors", "1,4"], "--split-errors must be 2 or more sizes"),
        (["--split-errors", "x"], "adding up to 6 (e.g. 1,5 or 3,3), not 'x'"),
        (["--split-gap", "-1"], "--split-gap must be 0 or more"),
        (["--stop-reading-after", "-1"], "--stop-reading-after must be 0 or more"),
        (["--latency", "-5"], "--latency must be 0 or more"),
        (["--idle-timeout", "-1"], "--idle-timeout must be 0 or more"),
        (["--max-connections", "-1"], "--max-connections must be 0 (no limit) or more"),
    ],
)
def test_serve_argument_errors(tmp_path, capsys, arguments, message):
    code = main(["serve", "--cert-dir", str(tmp_path), *arguments])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # checked before anything was written


def _serve_args(cert_dir, *more: str) -> list[str]:
    return [
        "serve", "--cert-dir", str(cert_dir), "--gateway-port", "0", "--feedback-port", "0",
        "--for", "0.1", *more,
    ]  # fmt: skip


def test_flags_make_the_config():
    from apns_legacy.cli._main import build_parser
    from apns_legacy.cli._serve import _config
    from apns_legacy.simulator import ErrorClose, Fault

    args = build_parser().parse_args(
        [
            "serve", "--cert-dir", "d", "--latency", "250", "--split-errors", "3,3",
            "--split-gap", "1.5", "--stop-reading-after", "100", "--drop-after-bytes", "10000",
            "--error-close", "drain", "--idle-timeout", "0", "--max-connections", "5",
        ]
    )  # fmt: skip
    config = _config(args)
    assert set(config.faults) == {
        Fault.latency(0.25),
        Fault.split_errors((3, 3), gap=1.5),
        Fault.stop_reading(100),
        Fault.drop_after(bytes=10_000, times=None),
    }
    assert config.error_close is ErrorClose.DRAIN
    assert config.idle_timeout is None
    assert config.max_connections == 5
    defaults = _config(build_parser().parse_args(["serve", "--cert-dir", "d"]))
    assert (defaults.idle_timeout, defaults.max_connections) == (1800.0, 1000)
    assert defaults.error_close is ErrorClose.RESET_IF_UNREAD
    assert defaults.faults == ()


def test_server_certificate_and_ca_are_enough(tmp_path, capsys):
    # A user bringing their own server certificate: no client files in the directory.
    TestPKI.write(make_test_pki(), tmp_path, p12_passphrase=b"x")
    for name in ("client.pem", "client-key.pem", "client.p12"):
        (tmp_path / name).unlink()
    assert main(_serve_args(tmp_path)) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["cert_dir"] == str(tmp_path)
    assert f"using the certificates in {tmp_path}" in err


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("server-key.pem", "server-key.pem: no readable private key found"),
        ("ca.pem", "ca.pem"),
        ("server.pem", "server.pem"),
    ],
)
def test_unreadable_certificate_file_is_named(tmp_path, capsys, damage, message):
    TestPKI.write(make_test_pki(), tmp_path, p12_passphrase=b"x")
    (tmp_path / damage).write_bytes(b"not PEM at all")
    assert main(_serve_args(tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("apns-legacy serve: --cert-dir: ")
    assert message in err


def test_missing_server_file_and_stray_client_files(tmp_path, capsys):
    TestPKI.write(make_test_pki(), tmp_path, p12_passphrase=b"x")
    (tmp_path / "ca.pem").unlink()
    assert main(_serve_args(tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"apns-legacy serve: --cert-dir: {tmp_path / 'ca.pem'} is missing (the simulator "
        "needs server.pem, server-key.pem, ca.pem; client files are optional)"
    )
    only_client = tmp_path / "only-client"
    only_client.mkdir()
    (only_client / "client.pem").write_bytes(b"x")
    assert main(_serve_args(only_client)) == 2
    err = capsys.readouterr().err.strip()
    assert "holds client.pem but no server.pem" in err
    assert (only_client / "server.pem").exists() is False  # nothing overwritten


def test_a_file_given_as_cert_dir(tmp_path, capsys):
    path = tmp_path / "certs"
    path.write_text("oops")
    assert main(_serve_args(path)) == 2
    assert capsys.readouterr().err.strip() == (
        f"apns-legacy serve: --cert-dir {path} is a file, not a directory"
    )


def test_address_in_use_names_address_and_port(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(
            ["serve", "--cert-dir", str(tmp_path), "--gateway-port", str(port),
             "--feedback-port", "0", "--for", "0.1"]
        )  # fmt: skip
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1] == (
        f"apns-legacy serve: cannot listen on 127.0.0.1:{port} for the gateway: "
        "address already in use (another server is listening there)"
    )


def test_environment_has_help(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--environment {sandbox,production} the Apple environment this server plays" in text
    assert "--idle-timeout SECONDS close gateway connections idle that long" in text
    assert "(default 1800; 0: never)" in text
    assert "(default 1000; 0: no limit)" in text


async def test_serve_with_latency_and_split_errors(tmp_path):
    cert_dir = tmp_path / "certs"
    command = [
        sys.executable, "-m", "apns_legacy", "serve", "--cert-dir", str(cert_dir),
        "--gateway-port", "0", "--feedback-port", "0", "--for", "30",
        "--latency", "100", "--split-errors", "1,5", "--split-gap", "0.3",
    ]  # fmt: skip
    process = await trio.lowlevel.open_process(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert process.stdout is not None
    async with reaped(process):
        with trio.fail_after(20):
            ready = json.loads(await read_ready_line(process.stdout, "serve"))
            host, port = ready["gateway"].rsplit(":", 1)
            pki = TestPKI.load(cert_dir)
            context = client_context(pki.client, ca=cert_dir / "ca.pem")
            start = trio.current_time()
            stream = await open_tls_stream(host, int(port), context)
            handshake = trio.current_time() - start
            await stream.send_all(ENHANCED + PROBE)
            chunks = []
            while data := await stream.receive_some():
                chunks.append(data)
            await stream.aclose()
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
    assert handshake >= 0.4  # two round trips of 2 x 100 ms
    assert chunks == [b"\x08", bytes.fromhex("02 00000009")]
