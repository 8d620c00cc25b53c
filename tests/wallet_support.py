"""What the wallet tests share: the issuer's files, the configuration file, running
``apns-legacy`` as a subprocess, reading a pass's balance."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import trio
from cryptography.hazmat.primitives import serialization

from apns_legacy.wallet import write_sample_pass

AUTH = "0123456789abcdef0123456789abcdef"
TEAM = "ABCDE12345"
P12_SECRET = "wallet-p12-secret"


def write_signing_files(folder: Path, wallet_pki: Any) -> None:
    """``pass.p12`` (under ``P12_SECRET``) and ``wwdr.pem`` in ``folder``."""
    (folder / "pass.p12").write_bytes(wallet_pki.pass_credentials.to_pkcs12(P12_SECRET.encode()))
    (folder / "wwdr.pem").write_bytes(
        wallet_pki.wwdr.certificate.public_bytes(serialization.Encoding.PEM)
    )


def write_config(folder: Path, *, push: str = "", extra: str = "") -> Path:
    """``folder/wallet.toml`` for the files above, plus ``extra`` and ``push`` lines."""
    config = folder / "wallet.toml"
    config.write_text(
        'pass_type_id = "pass.com.example.card"\n'
        'store = "wallet.db"\n'
        'passes = "passes"\n'
        'cert = "pass.p12"\n'
        'passphrase_env = "PASS_P12_SECRET"\n'
        'wwdr = "wwdr.pem"\n'
        f"{extra}"
        f"{push}"
    )
    return config


async def cli(*arguments: str, env: Mapping[str, str] = {}) -> subprocess.CompletedProcess[str]:
    """``python -m apns_legacy ARGUMENTS`` with ``PASS_P12_SECRET`` (and ``env``) set."""
    with trio.fail_after(60):
        done = await trio.run_process(
            [sys.executable, "-m", "apns_legacy", *arguments],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env={**os.environ, "PASS_P12_SECRET": P12_SECRET, **env},
        )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


def balance_of(pkpass: bytes) -> str:
    """The sample pass's balance field."""
    with zipfile.ZipFile(io.BytesIO(pkpass)) as archive:
        document = json.loads(archive.read("pass.json"))
    return str(document["storeCard"]["primaryFields"][0]["value"])


def write_pass(folder: Path, pass_type_id: str, balance: str, serial_number: str = "S1") -> None:
    """The sample pass, with ``AUTH`` and ``balance``, as ``folder/passes/<serial_number>``."""
    write_sample_pass(
        folder / "passes" / serial_number,
        pass_type_id=pass_type_id,
        serial_number=serial_number,
        team_id=TEAM,
        authentication_token=AUTH,
        balance=balance,
    )


async def check_device_sees_update(
    device: httpx.AsyncClient,
    pass_type_id: str,
    *,
    since_tag: str,
    tag: str,
    old: httpx.Response,
    balance: str,
) -> None:
    """Wallet's side after an update push: device ``phone`` asks which serials changed
    since ``since_tag`` (S1, with ``tag``), then fetches S1 with the old
    ``Last-Modified``, and gets the new version."""
    since = await device.get(
        f"v1/devices/phone/registrations/{pass_type_id}",
        params={"passesUpdatedSince": since_tag},
    )
    assert since.json() == {"serialNumbers": ["S1"], "lastUpdated": tag}
    new = await device.get(
        f"v1/passes/{pass_type_id}/S1",
        headers={
            "Authorization": f"ApplePass {AUTH}",
            "If-Modified-Since": old.headers["last-modified"],
        },
    )
    assert new.status_code == 200
    assert new.headers["last-modified"] != old.headers["last-modified"]
    assert balance_of(new.content) == balance


async def register_devices(
    device: httpx.AsyncClient, pass_type_id: str, tokens: Mapping[str, str]
) -> None:
    """Register S1 on each device (name -> push token hex) as Wallet does: 201 each."""
    for name, token in tokens.items():
        response = await device.post(
            f"v1/devices/{name}/registrations/{pass_type_id}/S1",
            json={"pushToken": token},
            headers={"Authorization": f"ApplePass {AUTH}"},
        )
        assert response.status_code == 201, (name, response.status_code)
