"""``apns-legacy serve`` as users run it: a subprocess, its JSON ready line, a real TLS
client, SIGTERM; and its argument checks."""

from __future__ import annotations

import json
import signal
import struct
import subprocess
import sys

import pytest
import trio

from apns_legacy.cli import main
from apns_legacy.tls import Credentials, TestPKI, client_context, open_tls_stream

TOKEN = bytes(range(32))
ENHANCED = bytes.fromhex(
    "01 01020304 00000000 0020" + TOKEN.hex() + "0016 7b22617073223a7b22616c657274223a224869227d7d"
)
PROBE = struct.pack("!BIIH", 1, 9, 0, 0) + struct.pack("!H", 2) + b"{}"


async def read_line(stream: trio.abc.ReceiveStream) -> bytes:
    data = b""
    while b"\n" not in data:
        chunk = await stream.receive_some(4096)
        assert chunk, f"serve exited before its ready line: {data!r}"
        data += chunk
    return data


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
    try:
        with trio.fail_after(20):
            ready = json.loads(await read_line(process.stdout))
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
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()
            await process.stdout.aclose()
            await process.stderr.aclose()
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
    ],
)
def test_serve_argument_errors(tmp_path, capsys, arguments, message):
    code = main(["serve", "--cert-dir", str(tmp_path), *arguments])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # checked before anything was written
