"""``apns-legacy wallet serve/update/passes/devices`` as an issuer runs them: subprocesses
reading one TOML file, the web service's ready line, a device (httpx) registering and
fetching, the update pushed through the in-process binary simulator; and the
configuration checks (one line, exit code 2)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio
from helpers import read_ready_line, reaped
from wallet_support import (
    AUTH,
    P12_SECRET,
    check_device_sees_update,
    cli,
    register_devices,
    write_config,
    write_pass,
    write_signing_files,
)

from apns_legacy.cli import main
from apns_legacy.simulator import open_simulator
from apns_legacy.tls import Environment
from apns_legacy.wallet import PassStore

GOOD = "0a" * 32
BAD = "ee" * 32


@pytest.fixture
def issuer(tmp_path, wallet_pki) -> Path:
    """An issuer's folder: credentials, WWDR certificate, the gateway CA, one pass."""
    write_signing_files(tmp_path, wallet_pki)
    (tmp_path / "gateway-ca.pem").write_bytes(wallet_pki.pki.ca_pem())
    write_pass(tmp_path, wallet_pki.pass_type_id, "1.00")
    return tmp_path


async def test_issuer_loop_through_the_command_line(issuer, wallet_pki):
    pass_type = wallet_pki.pass_type_id
    async with open_simulator(
        pki=wallet_pki.pki, environment=Environment.PRODUCTION, invalid_tokens=[bytes.fromhex(BAD)]
    ) as sim:
        host, port = sim.gateway_address
        config = write_config(
            issuer,
            push=f'[push]\nroute = "binary"\nhost = "{host}"\nport = {port}\n'
            'ca = "gateway-ca.pem"\n',
        )
        # First publication: no devices yet, nothing pushed.
        first = await cli("wallet", "update", "--config", str(config))
        assert first.returncode == 0, first.stderr
        [published] = [json.loads(line) for line in first.stdout.splitlines()]
        assert published["serial_number"] == "S1"
        assert published["devices"] == 0
        first_tag = published["tag"]
        nothing = await cli("wallet", "update", "--config", str(config))
        assert nothing.returncode == 0
        assert nothing.stdout == ""
        assert "no pass is new or changed" in nothing.stderr

        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "apns_legacy", "wallet", "serve", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PASS_P12_SECRET": P12_SECRET},
        )
        assert process.stdout is not None
        assert process.stderr is not None
        async with reaped(process):
            with trio.fail_after(60):
                ready = json.loads(await read_ready_line(process.stdout, "wallet serve"))
                assert ready["pass_type_id"] == pass_type
                assert ready["listen"].startswith("127.0.0.1:")
                assert ready["url"] == f"http://{ready['listen']}/"
                async with httpx.AsyncClient(base_url=ready["url"], timeout=10) as device:
                    headers = {"Authorization": f"ApplePass {AUTH}"}
                    await register_devices(device, pass_type, {"phone": GOOD, "old-phone": BAD})
                    old = await device.get(f"v1/passes/{pass_type}/S1", headers=headers)
                    assert old.status_code == 200

                    # The issuer changes the pass; `wallet update` finds and pushes it.
                    write_pass(issuer, pass_type, "7.25")
                    update = await cli("wallet", "update", "--config", str(config))
                    assert update.returncode == 1, update.stderr  # one push rejected
                    [line] = [json.loads(text) for text in update.stdout.splitlines()]
                    assert line["devices"] == 2
                    assert (line["accepted"], line["rejected"], line["failed"]) == (1, 1, 0)
                    assert line["removed_registrations"] == 1
                    assert line["problems"] == [{"token": BAD, "problem": "status 8"}]
                    assert [(r.token, r.payload, r.topic) for r in sim.accepted] == [
                        (GOOD, '{"aps":{}}', pass_type)
                    ]

                    await check_device_sees_update(
                        device,
                        pass_type,
                        since_tag=first_tag,
                        tag=line["tag"],
                        old=old,
                        balance="7.25",
                    )

                process.send_signal(signal.SIGTERM)
                assert await process.wait() == 0

        devices = await cli("wallet", "devices", "--config", str(config))
        assert [json.loads(x)["device_library_id"] for x in devices.stdout.splitlines()] == [
            "phone"
        ]
        passes = await cli("wallet", "passes", "--config", str(config))
        [listed] = [json.loads(x) for x in passes.stdout.splitlines()]
        assert (listed["serial_number"], listed["devices"], listed["tag"]) == ("S1", 1, line["tag"])

        # A named serial is updated (and pushed) even when unchanged.
        again = await cli("wallet", "update", "--config", str(config), "S1")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["accepted"] == 1
        assert len(sim.accepted) == 2


@pytest.mark.parametrize(
    ("push", "extra", "message"),
    [
        ('[push]\nroute = "carrier-pigeon"\n', "",
         "push.route must be 'binary', 'http2' or 'bridge', not 'carrier-pigeon'"),
        ('[push]\nroute = "http2"\nfeedback_port = 2196\n', "",
         "push.feedback_port is for route 'binary' or 'bridge', not 'http2'"),
        ('[push]\nauth_key = "k.p8"\n', "", "push.auth_key is for route 'http2', not 'binary'"),
        ('[push]\nroute = "binary"\ncert = "c.pem"\n', "",
         "push.cert is for route 'bridge', not 'binary'"),
        ('[push]\nroute = "bridge"\n', "",
         "push.host is required for route 'bridge' (its address)"),
        ('[push]\nroute = "bridge"\nhost = "b"\nkey = "k.pem"\n', "",
         "push.key is given without push.cert"),
        ('[push]\nroute = "http2"\nauth_key = "k.p8"\nteam_id = "T"\n', "",
         "push.key_id is missing (token auth needs auth_key, key_id and team_id"),
        ('[push]\nroute = "http2"\nauth_key = "k.p8"\nkey_id = "AB-1"\nteam_id = "T"\n', "",
         "push.key_id must be ASCII letters and digits (Apple's are 10), not 'AB-1'"),
        ('[push]\nroute = "http2"\npriority = 7\n', "",
         "push.priority must be 10, 5 or 1, not 7"),
        ('[push]\nroute = "http2"\nconnections = 0\n', "",
         "push: connections must be an integer from 1 to 100, not 0"),
        ('[push]\nport = 70000\n', "", "port must be an integer from 1 to 65535, not 70000"),
        ('[push]\nhots = "x"\n', "", "unknown key push.hots"),
        ("", 'listen = "8080"\n', "listen must be HOST:PORT, not '8080'"),
        ("", 'colour = "blue"\n', "unknown key 'colour'"),
        ("", 'base_path = "wallet"\n', "base_path must start with '/'"),
        ("", "pass_type_id = 3\n", "not valid TOML"),  # a duplicate key
    ],
)  # fmt: skip
def test_config_errors(issuer, capsys, push, extra, message):
    config = write_config(issuer, push=push, extra=extra)
    assert main(["wallet", "passes", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("apns-legacy wallet: --config: "), err
    assert message in err
    assert err.count("\n") == 1


def test_missing_config_and_missing_key(issuer, capsys):
    assert main(["wallet", "serve", "--config", str(issuer / "nope.toml")]) == 2
    assert "nope.toml: cannot read" in capsys.readouterr().err
    (issuer / "bare.toml").write_text('store = "x.db"\n')
    assert main(["wallet", "passes", "--config", str(issuer / "bare.toml")]) == 2
    assert "pass_type_id is missing" in capsys.readouterr().err


def test_update_refusals(issuer, capsys, monkeypatch, wallet_pki):
    config = write_config(issuer)
    monkeypatch.delenv("PASS_P12_SECRET", raising=False)
    assert main(["wallet", "update", "--config", str(config)]) == 2
    assert "the environment variable PASS_P12_SECRET is not set" in capsys.readouterr().err
    monkeypatch.setenv("PASS_P12_SECRET", "wrong")
    assert main(["wallet", "update", "--config", str(config)]) == 2
    assert "wrong passphrase" in capsys.readouterr().err
    monkeypatch.setenv("PASS_P12_SECRET", P12_SECRET)
    assert main(["wallet", "update", "--config", str(config), "NOPE"]) == 2
    assert "passes/NOPE: not a directory" in capsys.readouterr().err
    other = write_config(issuer, extra="")
    other.write_text(other.read_text().replace("pass.com.example.card", "pass.com.other"))
    assert main(["wallet", "update", "--config", str(other)]) == 2
    assert "pass_type_id 'pass.com.other' is not the certificate's" in capsys.readouterr().err
    config = write_config(issuer)
    (issuer / "passes" / "S1" / "pass.json").write_text("{")
    assert main(["wallet", "update", "--config", str(config), "--no-push"]) == 2
    err = capsys.readouterr().err
    assert "S1/pass.json: not valid JSON" in err
    assert err.count("\n") == 1


def test_serve_refuses_a_port_in_use(issuer, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(issuer, extra=f'listen = "127.0.0.1:{port}"\n')
        assert main(["wallet", "serve", "--config", str(config), "--for", "5"]) == 2
    err = capsys.readouterr().err
    assert f"listen 127.0.0.1:{port}:" in err
    assert err.count("\n") == 1


def test_wallet_without_a_command_is_usage(capsys):
    assert main(["wallet"]) == 2
    assert "give a wallet command" in capsys.readouterr().err


async def test_feedback_command_forgets_listed_devices(issuer, wallet_pki):
    with PassStore(issuer / "wallet.db") as store:
        for device, token in (("phone", GOOD), ("tablet", BAD)):
            store.register(
                device_library_id=device,
                push_token=token,
                pass_type_id=wallet_pki.pass_type_id,
                serial_number="S1",
                now=1_700_000_000,
            )
    async with open_simulator(pki=wallet_pki.pki, environment=Environment.PRODUCTION) as sim:
        sim.add_feedback(bytes.fromhex(BAD), 1_700_000_100, topic=wallet_pki.pass_type_id)
        sim.add_feedback(bytes.fromhex(GOOD), 1_600_000_000, topic=wallet_pki.pass_type_id)
        sim.add_feedback(bytes(32), 1_700_000_100, topic="com.example.other-app")
        host, port = sim.feedback_address
        config = write_config(
            issuer,
            push=f'[push]\nfeedback_host = "{host}"\nfeedback_port = {port}\n'
            'ca = "gateway-ca.pem"\n',
        )
        done = await cli("wallet", "feedback", "--config", str(config))
    assert done.returncode == 0, done.stderr
    listed = [json.loads(line) for line in done.stdout.splitlines()]
    assert sorted(entry["token"] for entry in listed) == sorted([BAD, GOOD])
    assert "2 tokens listed; 1 devices forgotten (1 registrations), 1 kept" in done.stderr
    devices = await cli("wallet", "devices", "--config", str(config))
    assert [json.loads(x)["device_library_id"] for x in devices.stdout.splitlines()] == ["phone"]


async def test_feedback_command_unreachable_is_exit_1(issuer):
    config = write_config(issuer, push='[push]\nfeedback_host = "127.0.0.1"\nfeedback_port = 1\n')
    missing = await cli("wallet", "feedback", "--config", str(config))
    assert missing.returncode == 2
    assert "wallet.db does not exist (wallet update or serve makes it)" in missing.stderr
    PassStore(issuer / "wallet.db").close()
    done = await cli("wallet", "feedback", "--config", str(config))
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("apns-legacy wallet feedback: ")
