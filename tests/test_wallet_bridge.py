"""The bridge route: the binary route pointed at ``apns-legacy bridge``, presenting the
client certificate the bridge expects. The binary simulator stands in for the bridge
in most tests (same protocol, its own CA and client certificate, different from the
pass certificate's, so a push made with the wrong identity fails the handshake); one
test runs the whole route through the real bridge into the HTTP/2 simulator."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from bridge_helpers import bridge_config as make_bridge_config
from bridge_helpers import new_key, sim_config
from wallet_support import P12_SECRET, write_config, write_pass, write_signing_files
from wallet_support import cli as run_cli

from apns_legacy.bridge import AppConfig, open_bridge
from apns_legacy.cli import main
from apns_legacy.simulator import open_http2_simulator, open_simulator
from apns_legacy.tls import Environment, TestPKI, make_test_pki
from apns_legacy.wallet import BinaryGateway, PassStore, WalletConfig

GOOD, GONE, BAD = "0a" * 32, "0b" * 32, "ee" * 32
BRIDGE_SECRET = "bridge-client-secret"


@pytest.fixture(scope="module")
def bridge_pki(wallet_pki) -> TestPKI:
    """The bridge's own CA, server certificate and a client certificate whose topic is
    the pass type ID (the bridge routes by the client certificate's topic)."""
    return make_test_pki(topic=wallet_pki.pass_type_id, environments=[Environment.PRODUCTION])


@pytest.fixture
def issuer(tmp_path, wallet_pki, bridge_pki) -> Path:
    write_signing_files(tmp_path, wallet_pki)
    (tmp_path / "bridge-ca.pem").write_bytes(bridge_pki.ca_pem())
    (tmp_path / "bridge-client.p12").write_bytes(
        bridge_pki.client.to_pkcs12(BRIDGE_SECRET.encode())
    )
    write_pass(tmp_path, wallet_pki.pass_type_id, "1.00")
    return tmp_path


def bridge_config(issuer: Path, push: str) -> Path:
    return write_config(issuer, push=f"[push]\n{push}")


async def cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    return await run_cli(*arguments, env={"BRIDGE_P12_SECRET": BRIDGE_SECRET})


async def test_update_and_feedback_through_the_bridge(issuer, wallet_pki, bridge_pki):
    pass_type = wallet_pki.pass_type_id
    async with open_simulator(
        pki=bridge_pki, environment=Environment.PRODUCTION, invalid_tokens=[bytes.fromhex(BAD)]
    ) as bridge:
        (host, port), (_, feedback_port) = bridge.gateway_address, bridge.feedback_address
        config = bridge_config(
            issuer,
            f'route = "bridge"\nhost = "{host}"\nport = {port}\nfeedback_port = {feedback_port}\n'
            'ca = "bridge-ca.pem"\ncert = "bridge-client.p12"\n'
            'passphrase_env = "BRIDGE_P12_SECRET"\n',
        )
        first = await cli("wallet", "update", "--config", str(config), "--no-push")
        assert first.returncode == 0, first.stderr
        with PassStore(issuer / "wallet.db") as store:
            for name, token in (("phone", GOOD), ("gone", GONE), ("broken", BAD)):
                store.register(
                    device_library_id=name,
                    push_token=token,
                    pass_type_id=pass_type,
                    serial_number="S1",
                    now=1_700_000_000,
                )

        update = await cli("wallet", "update", "--config", str(config), "S1")
        assert update.returncode == 1, update.stderr  # BAD rejected with status 8
        [line] = [json.loads(text) for text in update.stdout.splitlines()]
        assert (line["devices"], line["accepted"], line["rejected"]) == (3, 2, 1)
        assert line["problems"] == [{"token": BAD, "problem": "status 8"}]
        assert line["removed_registrations"] == 1
        # The bridge got {"aps":{}} for the pass type (the topic of the client
        # certificate it expects), to the tokens that are not invalid.
        assert sorted((r.token, r.payload, r.topic) for r in bridge.accepted) == [
            (GOOD, '{"aps":{}}', pass_type),
            (GONE, '{"aps":{}}', pass_type),
        ]

        # The bridge turns APNs's 410s into its feedback list: wallet feedback reads it
        # there, with the same client certificate, and forgets GONE.
        bridge.add_feedback(bytes.fromhex(GONE), 1_700_000_100, topic=pass_type)
        feedback = await cli("wallet", "feedback", "--config", str(config))
        assert feedback.returncode == 0, feedback.stderr
        assert [json.loads(x)["token"] for x in feedback.stdout.splitlines()] == [GONE]
        devices = await cli("wallet", "devices", "--config", str(config))
        assert [json.loads(x)["device_library_id"] for x in devices.stdout.splitlines()] == [
            "phone"
        ]


async def test_update_and_feedback_through_the_real_bridge_into_http2(
    issuer, wallet_pki, bridge_pki
):
    """wallet update (route "bridge") -> apns-legacy bridge -> the HTTP/2 simulator:
    Apple sees one background push with an empty aps per valid device, topic = the
    pass type ID; 400 BadDeviceToken comes back as status 8 and removes that
    registration; the 410 reaches wallet feedback through the bridge's feedback port
    with Apple's timestamp and removes the other."""
    pass_type = wallet_pki.pass_type_id
    key = new_key()
    gone_at = 1_700_000_100  # after the registrations below: the device is really gone
    upstream = sim_config(
        key, invalid_tokens=[BAD], uninstalled_tokens={GONE: gone_at * 1000 + 123}
    )
    async with open_http2_simulator(upstream) as apple:
        bridge_settings = make_bridge_config(
            bridge_pki, apple, key, apps=[AppConfig(topic=pass_type, provider_key=key)]
        )
        async with open_bridge(bridge_settings) as bridge:
            (host, port), (_, feedback_port) = bridge.gateway_address, bridge.feedback_address
            config = bridge_config(
                issuer,
                f'route = "bridge"\nhost = "{host}"\nport = {port}\n'
                f"feedback_port = {feedback_port}\n"
                'ca = "bridge-ca.pem"\ncert = "bridge-client.p12"\n'
                'passphrase_env = "BRIDGE_P12_SECRET"\n',
            )
            first = await cli("wallet", "update", "--config", str(config), "--no-push")
            assert first.returncode == 0, first.stderr
            with PassStore(issuer / "wallet.db") as store:
                for name, token in (("phone", GOOD), ("gone", GONE), ("broken", BAD)):
                    store.register(
                        device_library_id=name,
                        push_token=token,
                        pass_type_id=pass_type,
                        serial_number="S1",
                        now=1_700_000_000,
                    )

            update = await cli("wallet", "update", "--config", str(config), "S1")
            assert update.returncode == 1, update.stderr  # BAD: status 8 from the bridge
            [line] = [json.loads(text) for text in update.stdout.splitlines()]
            assert (line["devices"], line["accepted"], line["rejected"]) == (3, 2, 1)
            assert line["problems"] == [{"token": BAD, "problem": "status 8"}]
            assert sorted(
                (r.token, r.payload, r.topic, r.push_type, r.priority) for r in apple.accepted
            ) == [(GOOD, '{"aps":{}}', pass_type, "background", 5)]

            feedback = await cli("wallet", "feedback", "--config", str(config))
            assert feedback.returncode == 0, feedback.stderr
            [gone] = [json.loads(x) for x in feedback.stdout.splitlines()]
            assert (gone["token"], gone["timestamp"]) == (GONE, gone_at)  # Apple's time, in s
            devices = await cli("wallet", "devices", "--config", str(config))
            assert [json.loads(x)["device_library_id"] for x in devices.stdout.splitlines()] == [
                "phone"
            ]


async def test_the_pass_certificate_is_refused_by_a_bridge_that_expects_another(
    issuer, wallet_pki, bridge_pki
):
    # Without push.cert the route presents the pass certificate, which this bridge's
    # CA did not issue: the handshake fails, the push is reported failed, exit 1.
    async with open_simulator(pki=bridge_pki, environment=Environment.PRODUCTION) as bridge:
        host, port = bridge.gateway_address
        config = bridge_config(
            issuer,
            f'route = "bridge"\nhost = "{host}"\nport = {port}\nca = "bridge-ca.pem"\n',
        )
        assert (await cli("wallet", "update", "--config", str(config), "--no-push")).returncode == 0
        with PassStore(issuer / "wallet.db") as store:
            store.register(
                device_library_id="phone",
                push_token=GOOD,
                pass_type_id=wallet_pki.pass_type_id,
                serial_number="S1",
            )
        update = await cli("wallet", "update", "--config", str(config), "S1")
        assert update.returncode == 1
        [line] = [json.loads(text) for text in update.stdout.splitlines()]
        assert (line["accepted"], line["failed"]) == (0, 1)
        assert bridge.accepted == []


def test_bridge_defaults(issuer):
    config = WalletConfig.load(
        bridge_config(issuer, 'route = "bridge"\nhost = "bridge.internal"\n')
    )
    route = config.route_for_push()
    assert isinstance(route, BinaryGateway)
    assert (route.host, route.port) == ("bridge.internal", 2195)
    assert (route.feedback_host, route.feedback_port) == ("bridge.internal", 2196)
    assert route.credentials is None  # the pass certificate


def test_bridge_client_certificate_must_carry_the_pass_type(issuer, capsys, monkeypatch):
    other = make_test_pki(topic="com.example.app", environments=[Environment.PRODUCTION])
    (issuer / "other.p12").write_bytes(other.client.to_pkcs12(BRIDGE_SECRET.encode()))
    push = 'route = "bridge"\nhost = "127.0.0.1"\ncert = "other.p12"\n'
    config = bridge_config(issuer, push + 'passphrase_env = "BRIDGE_P12_SECRET"\n')
    monkeypatch.setenv("PASS_P12_SECRET", P12_SECRET)
    monkeypatch.setenv("BRIDGE_P12_SECRET", BRIDGE_SECRET)
    assert main(["wallet", "update", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "push.cert: its topic 'com.example.app' is not pass_type_id" in err
    assert err.count("\n") == 1
    monkeypatch.delenv("BRIDGE_P12_SECRET")
    assert main(["wallet", "update", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "push.passphrase_env: the environment variable BRIDGE_P12_SECRET is not set" in err
    config = bridge_config(issuer, push)
    assert main(["wallet", "update", "--config", str(config)]) == 2
    assert "(set push.passphrase_env)" in capsys.readouterr().err
    config = bridge_config(issuer, 'route = "bridge"\nhost = "127.0.0.1"\nca = "nope.pem"\n')
    assert main(["wallet", "update", "--config", str(config)]) == 2
    assert "--config: push.ca: " in capsys.readouterr().err
    assert not (issuer / "wallet.db").exists()
