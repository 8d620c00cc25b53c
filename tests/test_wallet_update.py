"""The whole pass-update loop on this machine: a device registers over HTTP with the web
service, ``update_pass`` rebuilds, signs and pushes through the binary simulator (which
plays Apple's production gateway and checks the pass certificate, chained through the
WWDR-like intermediate), the device asks which serials changed since its tag and
fetches the new pass; a device whose token the gateway rejects loses its registration."""

from __future__ import annotations

import io
import json
import zipfile

import httpx
import pytest
import trio

from apns_legacy.client import PRODUCTION_GATEWAY, SenderConfig
from apns_legacy.simulator import open_simulator
from apns_legacy.tls import Credentials, Environment
from apns_legacy.wallet import (
    BinaryGateway,
    PassError,
    PassSigner,
    PassStore,
    changed_passes,
    open_wallet_server,
    pass_directories,
    publish_pass,
    read_pass_folder,
    update_pass,
    write_sample_pass,
)

AUTH = "0123456789abcdef0123456789abcdef"
TEAM = "ABCDE12345"
GOOD = bytes(range(32))
BAD = bytes([0xEE]) * 32


def balance_of(pkpass: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(pkpass)) as archive:
        return json.loads(archive.read("pass.json"))["storeCard"]["primaryFields"][0]["value"]


def test_the_default_route_is_apples_production_gateway():
    route = BinaryGateway()
    assert (route.host, route.port) == PRODUCTION_GATEWAY == ("gateway.push.apple.com", 2195)


async def test_update_loop_end_to_end(tmp_path, wallet_pki):
    signer = wallet_pki.signer()
    passes = tmp_path / "passes"

    def write(balance: str) -> None:
        write_sample_pass(
            passes / "S1",
            pass_type_id=wallet_pki.pass_type_id,
            serial_number="S1",
            team_id=TEAM,
            authentication_token=AUTH,
            balance=balance,
        )

    write("1.00")
    with PassStore(tmp_path / "wallet.db") as store:
        first_tag = publish_pass(store, signer, read_pass_folder(passes, "S1"))
        async with (
            open_simulator(
                pki=wallet_pki.pki, environment=Environment.PRODUCTION, invalid_tokens=[BAD]
            ) as sim,
            open_wallet_server(store) as server,
            httpx.AsyncClient(base_url=server.url, timeout=10) as device,
        ):
            with trio.fail_after(30):
                headers = {"Authorization": f"ApplePass {AUTH}"}
                registration = f"v1/devices/%s/registrations/{wallet_pki.pass_type_id}/S1"
                for name, token in (("phone", GOOD), ("old-phone", BAD)):
                    response = await device.post(
                        registration % name, json={"pushToken": token.hex()}, headers=headers
                    )
                    assert response.status_code == 201
                first = await device.get(f"v1/passes/{wallet_pki.pass_type_id}/S1", headers=headers)
                assert balance_of(first.content) == "1.00"

                write("2.50")
                [changed] = changed_passes(store, wallet_pki.pass_type_id, [passes / "S1"])
                host, port = sim.gateway_address
                route = BinaryGateway(
                    host=host, port=port, ca=wallet_pki.pki.ca_pem(), config=SenderConfig()
                )
                result = await update_pass(store, signer, changed, route)

                # The gateway got exactly one empty-aps push, to the good token, with the
                # pass type ID as topic (from the certificate), and rejected the other.
                assert result.tag > first_tag
                push = result.push
                assert push is not None
                assert (push.tokens, push.accepted, push.rejected, push.failed) == (2, 1, 1, 0)
                assert push.removed_registrations == 1
                assert push.problems == ((BAD.hex(), "status 8"),)
                assert [(r.token, r.payload, r.topic) for r in sim.accepted] == [
                    (GOOD.hex(), '{"aps":{}}', wallet_pki.pass_type_id)
                ]
                assert [e.status for e in sim.errors_sent] == [8]
                assert [r.device_library_id for r in store.registrations()] == ["phone"]

                # Wallet's side: which serials changed since my tag, then the pass.
                since = await device.get(
                    f"v1/devices/phone/registrations/{wallet_pki.pass_type_id}",
                    params={"passesUpdatedSince": str(first_tag)},
                )
                assert since.json() == {"serialNumbers": ["S1"], "lastUpdated": str(result.tag)}
                fresh = await device.get(
                    f"v1/passes/{wallet_pki.pass_type_id}/S1",
                    headers={**headers, "If-Modified-Since": first.headers["last-modified"]},
                )
                assert fresh.status_code == 200
                assert fresh.headers["last-modified"] != first.headers["last-modified"]
                assert balance_of(fresh.content) == "2.50"
                # The rejected device is forgotten.
                gone = await device.get(
                    f"v1/devices/old-phone/registrations/{wallet_pki.pass_type_id}"
                )
                assert gone.status_code == 204
                # Nothing changed since: nothing to update.
                assert changed_passes(store, wallet_pki.pass_type_id, [passes / "S1"]) == []


async def test_update_without_registrations_pushes_nothing(tmp_path, wallet_pki):
    folder = write_sample_pass(
        tmp_path / "S9", pass_type_id=wallet_pki.pass_type_id, serial_number="S9", team_id=TEAM
    )
    with PassStore(":memory:") as store:
        # Port 1 on loopback: nothing listens; a connection attempt would fail.
        route = BinaryGateway(host="127.0.0.1", port=1)
        result = await update_pass(
            store, wallet_pki.signer(), read_pass_folder(folder.parent, "S9"), route
        )
        assert result.push is not None
        assert result.push.tokens == 0
        assert store.get_pass(wallet_pki.pass_type_id, "S9") is not None


async def test_unreachable_gateway_fails_the_pushes_and_keeps_registrations(tmp_path, wallet_pki):
    folder = write_sample_pass(
        tmp_path / "S1", pass_type_id=wallet_pki.pass_type_id, serial_number="S1", team_id=TEAM
    )
    with PassStore(":memory:") as store:
        source = read_pass_folder(folder.parent, "S1")
        publish_pass(store, wallet_pki.signer(), source)
        store.register(
            device_library_id="phone",
            push_token=GOOD,
            pass_type_id=wallet_pki.pass_type_id,
            serial_number="S1",
        )
        config = SenderConfig(max_connect_attempts=1, connect_timeout=5)
        route = BinaryGateway(host="127.0.0.1", port=1, config=config)
        with trio.fail_after(30):
            result = await update_pass(store, wallet_pki.signer(), source, route)
        assert result.push is not None
        assert (result.push.accepted, result.push.failed) == (0, 1)
        assert len(store.registrations()) == 1


def test_pass_folder_must_carry_its_serial_number(tmp_path, wallet_pki):
    write_sample_pass(
        tmp_path / "S1", pass_type_id=wallet_pki.pass_type_id, serial_number="S2", team_id=TEAM
    )
    with pytest.raises(PassError, match="serialNumber 'S2' does not match its folder name 'S1'"):
        read_pass_folder(tmp_path, "S1")
    with pytest.raises(PassError, match="cannot be a folder name"):
        read_pass_folder(tmp_path, "../S1")
    assert list(pass_directories(tmp_path)) == ["S1"]


async def test_pass_certificate_without_a_chain_still_sends_the_wwdr(tmp_path, wallet_pki):
    # Like a Keychain .p12 that holds only the certificate and key: the pushes send the
    # WWDR certificate from the signer, or the simulator (trusting only the root) would
    # refuse the handshake.
    bare = Credentials(
        wallet_pki.pass_credentials.certificate, wallet_pki.pass_credentials.private_key
    )
    assert bare.chain == ()
    signer = PassSigner.create(bare, wallet_pki.wwdr.certificate)
    folder = write_sample_pass(
        tmp_path / "S1", pass_type_id=wallet_pki.pass_type_id, serial_number="S1", team_id=TEAM
    )
    with PassStore(":memory:") as store:
        source = read_pass_folder(folder.parent, "S1")
        publish_pass(store, signer, source)
        store.register(
            device_library_id="phone",
            push_token=GOOD,
            pass_type_id=wallet_pki.pass_type_id,
            serial_number="S1",
        )
        async with open_simulator(pki=wallet_pki.pki, environment=Environment.PRODUCTION) as sim:
            host, port = sim.gateway_address
            route = BinaryGateway(host=host, port=port, ca=wallet_pki.pki.ca_pem())
            with trio.fail_after(30):
                result = await update_pass(store, signer, source, route)
            assert result.push is not None
            assert result.push.accepted == 1
            assert sim.stats.handshake_failures == 0
