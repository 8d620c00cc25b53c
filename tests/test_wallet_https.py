"""``wallet serve`` over HTTPS (``tls_cert``/``tls_key`` in the configuration): a device
(httpx, which shares no code with the server) registers and fetches a pass over TLS
verified against the test CA; and the configuration checks, one line and exit code 2."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio
from cryptography.hazmat.primitives import serialization
from helpers import read_ready_line, reaped
from wallet_support import (
    AUTH,
    P12_SECRET,
    cli,
    write_config,
    write_pass,
    write_signing_files,
)

from apns_legacy.cli import main
from apns_legacy.tls import make_test_pki

KEY_SECRET = "web-key-secret"
TLS_LINES = 'tls_cert = "web.pem"\ntls_key = "web-key.pem"\ntls_passphrase_env = "WEB_KEY_SECRET"\n'


@pytest.fixture(scope="module")
def web_pki():
    return make_test_pki()


@pytest.fixture
def issuer(tmp_path, wallet_pki, web_pki) -> Path:
    """An issuer's folder with a pass, and the web service's certificate and encrypted key."""
    write_signing_files(tmp_path, wallet_pki)
    write_pass(tmp_path, wallet_pki.pass_type_id, "1.00")
    pem = serialization.Encoding.PEM
    (tmp_path / "web.pem").write_bytes(web_pki.server.certificate.public_bytes(pem))
    (tmp_path / "web-key.pem").write_bytes(
        web_pki.server.private_key.private_bytes(
            pem,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(KEY_SECRET.encode()),
        )
    )
    return tmp_path


async def test_serve_over_https(issuer, wallet_pki, web_pki):
    pass_type = wallet_pki.pass_type_id
    config = write_config(issuer, extra=TLS_LINES)
    published = await cli("wallet", "update", "--config", str(config), "--no-push")
    assert published.returncode == 0, published.stderr
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "apns_legacy", "wallet", "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PASS_P12_SECRET": P12_SECRET, "WEB_KEY_SECRET": KEY_SECRET},
    )
    assert process.stdout is not None
    assert process.stderr is not None
    async with reaped(process):
        with trio.fail_after(60):
            ready = json.loads(await read_ready_line(process.stdout, "wallet serve"))
            assert ready["url"] == f"https://{ready['listen']}/"
            trust = ssl.create_default_context(cadata=web_pki.ca_pem().decode())
            async with httpx.AsyncClient(base_url=ready["url"], verify=trust, timeout=10) as device:
                headers = {"Authorization": f"ApplePass {AUTH}"}
                registered = await device.post(
                    f"v1/devices/phone/registrations/{pass_type}/S1",
                    json={"pushToken": "0a" * 32},
                    headers=headers,
                )
                assert registered.status_code == 201
                fetched = await device.get(f"v1/passes/{pass_type}/S1", headers=headers)
                assert fetched.status_code == 200
                assert fetched.headers["content-type"] == "application/vnd.apple.pkpass"
            # A client that does not trust the test CA is refused by its own check.
            async with httpx.AsyncClient(base_url=ready["url"], timeout=10) as stranger:
                with pytest.raises(httpx.ConnectError):
                    await stranger.get(f"v1/passes/{pass_type}/S1", headers=headers)
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0


@pytest.mark.parametrize(
    ("extra", "environ", "message"),
    [
        ('tls_cert = "web.pem"\n', {}, "tls_cert is given without tls_key (HTTPS needs both)"),
        ('tls_key = "web-key.pem"\n', {}, "tls_key is given without tls_cert (HTTPS needs both)"),
        (
            'tls_passphrase_env = "WEB_KEY_SECRET"\n',
            {},
            "tls_passphrase_env is given without tls_key",
        ),
        (
            TLS_LINES,
            {},
            "tls_passphrase_env: the environment variable WEB_KEY_SECRET is not set",
        ),
        (TLS_LINES, {"WEB_KEY_SECRET": "wrong"}, "tls_cert/tls_key: cannot be used ("),
        (
            'tls_cert = "pass.p12"\ntls_key = "web-key.pem"\n',
            {},
            "tls_cert/tls_key: cannot be used (",
        ),
        (
            'tls_cert = "nope.pem"\ntls_key = "web-key.pem"\n',
            {},
            "tls_cert/tls_key: cannot be used (",
        ),
    ],
)
def test_serve_refuses_unusable_tls_settings(issuer, extra, environ, message, capsys, monkeypatch):
    config = write_config(issuer, extra=extra)
    monkeypatch.setenv("PASS_P12_SECRET", P12_SECRET)
    monkeypatch.delenv("WEB_KEY_SECRET", raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert main(["wallet", "serve", "--config", str(config), "--for", "5"]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1
    assert not (issuer / "wallet.db").exists()  # refused before anything was made
