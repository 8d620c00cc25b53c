"""The pass-update loop over HTTP/2, end to end on this machine: devices register with
the web service (httpx playing Wallet), ``apns-legacy wallet update`` (a subprocess)
pushes through the HTTP/2 simulator playing APNs, with token auth (a ``.p8`` key) and
with certificate auth (the Pass Type ID certificate, chained through the WWDR-like
intermediate); the simulator records an empty-``aps`` notification with the pass type
ID as topic and push type ``background``; the device asks which serials changed and
fetches the new pass; the devices whose tokens APNs answers 400 BadDeviceToken or 410
Unregistered lose their registrations (410: unless they registered again since
Apple's timestamp). Then the Python API's failure paths: transient answers, an
unreachable host and refused credentials are reported, and nothing is removed."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import httpx
import pytest
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from wallet_support import (
    AUTH,
    P12_SECRET,
    balance_of,
    check_device_sees_update,
    cli,
    register_devices,
    write_config,
    write_pass,
    write_signing_files,
)

from apns_legacy.cli import main
from apns_legacy.client import PRODUCTION_HOST
from apns_legacy.h2wire import AppSettings, ProviderKey, PushType
from apns_legacy.simulator import Http2Faults, Http2SimulatorConfig, open_http2_simulator
from apns_legacy.wallet import (
    Http2Gateway,
    PassStore,
    open_wallet_server,
    publish_pass,
    read_pass_folder,
    update_pass,
)

KEY_ID, TEAM_ID = "KEY1234567", "TEAM123456"  # the provider key's
GOOD, GONE, BACK, BAD = "0a" * 32, "0b" * 32, "0c" * 32, "ee" * 32
#: Apple's example 410 timestamp (2016), before any registration made by these tests.
OLD_410_MS = 1454402113123


@pytest.fixture(scope="module")
def provider_key() -> ProviderKey:
    return ProviderKey(
        key_id=KEY_ID, team_id=TEAM_ID, private_key=ec.generate_private_key(ec.SECP256R1())
    )


def simulator_config(pass_type_id: str, key: ProviderKey, **kwargs: object) -> Http2SimulatorConfig:
    return Http2SimulatorConfig(
        provider_keys={(key.team_id, key.key_id): key.public_key},
        # The team's key may push to the pass type only: a wrong topic is TopicDisallowed.
        team_topics={key.team_id: frozenset({pass_type_id})},
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def issuer(tmp_path, wallet_pki, provider_key) -> Path:
    """An issuer's folder: pass certificate (.p12), WWDR, the APNs CA, a .p8 key, one pass."""
    write_signing_files(tmp_path, wallet_pki)
    (tmp_path / "apns-ca.pem").write_bytes(wallet_pki.pki.ca_pem())
    (tmp_path / f"AuthKey_{KEY_ID}.p8").write_bytes(
        provider_key.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    write_pass(tmp_path, wallet_pki.pass_type_id, "1.00")
    return tmp_path


def http2_push(port: int, auth: str) -> str:
    push = f'[push]\nroute = "http2"\nhost = "127.0.0.1"\nport = {port}\nca = "apns-ca.pem"\n'
    if auth == "token":
        push += f'auth_key = "AuthKey_{KEY_ID}.p8"\nkey_id = "{KEY_ID}"\nteam_id = "{TEAM_ID}"\n'
    return push


@pytest.mark.parametrize("auth", ["token", "certificate"])
async def test_wallet_update_over_http2_end_to_end(issuer, wallet_pki, provider_key, auth):
    pass_type = wallet_pki.pass_type_id
    config_file = simulator_config(pass_type, provider_key, invalid_tokens=[BAD])
    async with open_http2_simulator(config_file, pki=wallet_pki.pki) as sim:
        config = write_config(issuer, push=http2_push(sim.port, auth))
        first = await cli("wallet", "update", "--config", str(config))
        assert first.returncode == 0, first.stderr
        [published] = [json.loads(line) for line in first.stdout.splitlines()]
        assert published["devices"] == 0
        first_tag = published["tag"]

        # The web service runs in this process on the same SQLite file the CLI writes.
        with PassStore(issuer / "wallet.db") as store:
            async with (
                open_wallet_server(store) as server,
                httpx.AsyncClient(base_url=server.url, timeout=10) as device,
            ):
                with trio.fail_after(60):
                    headers = {"Authorization": f"ApplePass {AUTH}"}
                    devices = {"phone": GOOD, "gone": GONE, "back": BACK, "broken": BAD}
                    await register_devices(device, pass_type, devices)
                    old = await device.get(f"v1/passes/{pass_type}/S1", headers=headers)
                    assert balance_of(old.content) == "1.00"
                    # APNs: GONE's app is gone since after it registered; BACK's token
                    # was reported gone in 2016, but the device registered it since.
                    later_ms = int((time.time() + 1) * 1000)
                    sim.add_uninstalled_token(GONE, later_ms)
                    sim.add_uninstalled_token(BACK, OLD_410_MS)

                    write_pass(issuer, pass_type, "2.50")
                    pushed_at = time.time()
                    update = await cli("wallet", "update", "--config", str(config))
                    assert update.returncode == 1, update.stderr  # some pushes rejected
                    [line] = [json.loads(text) for text in update.stdout.splitlines()]
                    assert line["devices"] == 4
                    assert (line["accepted"], line["rejected"], line["failed"]) == (1, 3, 0)
                    assert line["removed_registrations"] == 2
                    assert line["kept_reregistered"] == 1
                    assert sorted(line["problems"], key=lambda p: p["token"]) == [
                        {"token": GONE, "problem": "410 Unregistered"},
                        {"token": BACK, "problem": "410 Unregistered"},
                        {"token": BAD, "problem": "400 BadDeviceToken"},
                    ]

                    # APNs got one empty-aps background push, topic = the pass type ID.
                    [record] = sim.accepted
                    assert (record.token, record.payload, record.topic) == (
                        GOOD,
                        '{"aps":{}}',
                        pass_type,
                    )
                    assert (record.push_type, record.priority, record.auth) == (
                        "background",
                        5,
                        auth,
                    )
                    assert record.team_id == (TEAM_ID if auth == "token" else None)
                    assert record.expiration is not None
                    assert abs(record.expiration - (pushed_at + 86400)) < 60

                    # Wallet's side: which serials changed since my tag, then the pass.
                    await check_device_sees_update(
                        device,
                        pass_type,
                        since_tag=first_tag,
                        tag=line["tag"],
                        old=old,
                        balance="2.50",
                    )

                    # 400 and 410 lost their registrations; the re-registered one kept it.
                    for name, expected in (("gone", 204), ("broken", 204), ("back", 200)):
                        answer = await device.get(f"v1/devices/{name}/registrations/{pass_type}")
                        assert answer.status_code == expected, name
            assert [r.device_library_id for r in store.registrations()] == ["back", "phone"]


async def test_feedback_command_has_nothing_to_read_on_http2(issuer, capsys):
    config = write_config(issuer, push=http2_push(443, "certificate"))
    assert main(["wallet", "feedback", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "push.route 'http2' has no feedback service" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("push", "message"),
    [
        (f'auth_key = "missing.p8"\nkey_id = "{KEY_ID}"\nteam_id = "{TEAM_ID}"\n',
         "push.auth_key: cannot read"),
        (f'auth_key = "wwdr.pem"\nkey_id = "{KEY_ID}"\nteam_id = "{TEAM_ID}"\n',
         "push.auth_key: auth key is not an unencrypted PEM private key"),
        ('ca = "nope.pem"\n', "push.ca: "),
    ],
)  # fmt: skip
def test_update_refuses_a_bad_provider_key_before_changing_anything(
    issuer, capsys, monkeypatch, push, message
):
    config = write_config(issuer, push=f'[push]\nroute = "http2"\n{push}')
    monkeypatch.setenv("PASS_P12_SECRET", P12_SECRET)
    assert main(["wallet", "update", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert err.count("\n") == 1
    assert not (issuer / "wallet.db").exists()


def test_http2_route_defaults_and_sender_settings(wallet_pki, provider_key):
    route = Http2Gateway()
    assert (route.host, route.port) == (PRODUCTION_HOST, 443) == ("api.push.apple.com", 443)
    signer = wallet_pki.signer()
    certificate = route.sender_config(signer)
    assert certificate.settings == AppSettings(
        topic=wallet_pki.pass_type_id, push_type=PushType.BACKGROUND
    )
    assert certificate.provider_key is None
    assert certificate.credentials is not None
    assert wallet_pki.wwdr.certificate in certificate.credentials.chain
    token = Http2Gateway(provider_key=provider_key, priority=10).sender_config(signer)
    assert token.credentials is None
    assert token.provider_key is provider_key
    assert token.settings.priority == 10


async def _one_device_store(folder: Path, wallet_pki, store: PassStore):
    write_pass(folder, wallet_pki.pass_type_id, "1.00")
    source = read_pass_folder(folder / "passes", "S1")
    publish_pass(store, wallet_pki.signer(), source)
    store.register(
        device_library_id="phone",
        push_token=GOOD,
        pass_type_id=wallet_pki.pass_type_id,
        serial_number="S1",
    )
    return source


async def test_transient_failures_are_reported_and_keep_the_registration(
    tmp_path, wallet_pki, provider_key
):
    config = simulator_config(
        wallet_pki.pass_type_id, provider_key, faults=Http2Faults(status_every=1, fault_status=503)
    )
    with PassStore(":memory:") as store:
        source = await _one_device_store(tmp_path, wallet_pki, store)
        async with open_http2_simulator(config, pki=wallet_pki.pki) as sim:
            route = Http2Gateway(
                host="127.0.0.1",
                port=sim.port,
                ca=wallet_pki.pki.ca_pem(),
                provider_key=provider_key,
                max_attempts=2,
                retry_delay=0.01,
            )
            with trio.fail_after(30):
                result = await update_pass(store, wallet_pki.signer(), source, route)
        assert result.push is not None
        assert (result.push.accepted, result.push.rejected, result.push.failed) == (0, 0, 1)
        assert result.push.problems == (
            (GOOD, "failed: 503 ServiceUnavailable (after 2 attempts)"),
        )
        assert sim.stats.requests == 2
        assert result.push.removed_registrations == 0
        assert len(store.registrations()) == 1


async def test_unreachable_or_refused_http2_fails_and_keeps_registrations(
    tmp_path, wallet_pki, provider_key
):
    stranger = ProviderKey(
        key_id="OTHERKEY12", team_id=TEAM_ID, private_key=ec.generate_private_key(ec.SECP256R1())
    )
    with PassStore(":memory:") as store:
        source = await _one_device_store(tmp_path, wallet_pki, store)
        signer = wallet_pki.signer()
        # Port 1 on loopback: nothing listens.
        nowhere = Http2Gateway(host="127.0.0.1", port=1, max_connect_failures=1)
        with trio.fail_after(30):
            result = await update_pass(store, signer, source, nowhere)
        assert result.push is not None
        assert result.push.failed == 1
        [(token, problem)] = result.push.problems
        assert token == GOOD
        assert problem.startswith("failed: cannot connect to 127.0.0.1:1")

        # A key APNs does not know: 403 InvalidProviderToken fails everything at once.
        config = simulator_config(wallet_pki.pass_type_id, provider_key)
        async with open_http2_simulator(config, pki=wallet_pki.pki) as sim:
            refused = Http2Gateway(
                host="127.0.0.1", port=sim.port, ca=wallet_pki.pki.ca_pem(), provider_key=stranger
            )
            with trio.fail_after(30):
                result = await update_pass(store, signer, source, refused)
        assert result.push is not None
        assert result.push.problems == (
            (GOOD, "failed: APNs refused the credentials or topic: 403 InvalidProviderToken"),
        )
        assert sim.accepted == []
        assert len(store.registrations()) == 1


async def test_priority_is_configurable(tmp_path, wallet_pki, provider_key):
    with PassStore(":memory:") as store:
        source = await _one_device_store(tmp_path, wallet_pki, store)
        config = simulator_config(wallet_pki.pass_type_id, provider_key)
        async with open_http2_simulator(config, pki=wallet_pki.pki) as sim:
            route = Http2Gateway(
                host="127.0.0.1", port=sim.port, ca=wallet_pki.pki.ca_pem(), priority=10, expiry=0
            )
            with trio.fail_after(30):
                result = await update_pass(store, wallet_pki.signer(), source, route)
        assert result.push is not None
        assert result.push.accepted == 1
        [record] = sim.accepted
        assert (record.priority, record.expiration, record.auth) == (10, 0, "certificate")
        assert record.time == pytest.approx(dt.datetime.now(dt.UTC).timestamp(), abs=60)
