"""``apns-legacy serve --http2`` as users run it: a subprocess, its ready line, curl, SIGTERM."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from apns_legacy.h2wire import ProviderKey, make_provider_token

CURL = shutil.which("curl")
GOOD = "aa" * 32
BAD = "bb" * 32
PAYLOAD = '{"aps":{"alert":"hi"}}'


def curl_has_http2() -> bool:
    if CURL is None:
        return False
    out = subprocess.run([CURL, "--version"], capture_output=True, text=True, check=False)
    return "HTTP2" in out.stdout


async def read_line(stream) -> bytes:
    data = b""
    while b"\n" not in data:
        chunk = await stream.receive_some(4096)
        assert chunk, f"serve exited before its ready line: {data!r}"
        data += chunk
    return data


@pytest.mark.skipif(not curl_has_http2(), reason="curl with HTTP/2 is not installed")
async def test_serve_http2_subprocess_with_curl(tmp_path):
    private = ec.generate_private_key(ec.SECP256R1())
    p8 = tmp_path / "AuthKey.p8"
    p8.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key = ProviderKey.from_p8(p8.read_bytes(), key_id="KEY1234567", team_id="TEAM123456")
    cert_dir = tmp_path / "certs"
    record = tmp_path / "records.jsonl"
    command = [
        sys.executable, "-m", "apns_legacy", "serve", "--http2", "--http2-port", "0",
        "--cert-dir", str(cert_dir), "--provider-key", f"TEAM123456:KEY1234567:{p8}",
        "--invalid-token", BAD, "--record", str(record), "--for", "30",
    ]  # fmt: skip
    process = await trio.lowlevel.open_process(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None
    try:
        with trio.fail_after(30):
            ready = json.loads(await read_line(process.stdout))
            assert ready["cert_dir"] == str(cert_dir)
            port = int(ready["http2"].rsplit(":", 1)[1])
            jwt = make_provider_token(key, now=int(time.time())).value
            answers = []
            for device in (GOOD, BAD):
                curl_command = [
                        CURL,
                        "--http2",
                        "--silent",
                        "--max-time",
                        "10",
                        "--cacert",
                        str(cert_dir / "ca.pem"),
                        "--output",
                        "-",
                        "--write-out",
                        "\n%{http_code}",
                        "--header",
                        f"authorization: bearer {jwt}",
                        "--header",
                        "apns-topic: com.example.app",
                        "--data-binary",
                        PAYLOAD,
                        f"https://localhost:{port}/3/device/{device}",
                    ]  # fmt: skip
                result = await trio.run_process(
                    curl_command,
                    capture_stdout=True,
                    check=False,
                )
                body, _, status = result.stdout.decode().rpartition("\n")
                answers.append((int(status), body))
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()
            await process.stdout.aclose()
            assert process.stderr is not None
            await process.stderr.aclose()
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
