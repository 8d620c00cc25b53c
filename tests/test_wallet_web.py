"""The PassKit web service over real HTTP on 127.0.0.1 (Hypercorn), called the way Wallet
calls it, with an HTTP client nobody here wrote (httpx)."""

from __future__ import annotations

import email.utils
import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs
import httpx
import pytest
import trio

from apns_legacy.wallet import (
    PassStore,
    build_pkpass,
    open_wallet_server,
    read_pass_directory,
    write_sample_pass,
)

TOKEN_A = "a1" * 32
TOKEN_B = "b2" * 32
AUTH = "0123456789abcdef0123456789abcdef"
TEAM = "ABCDE12345"


@attrs.define
class Service:
    client: httpx.AsyncClient
    store: PassStore
    path: Path
    pass_type_id: str
    publish: object

    def registration(self, device: str, serial: str = "S1") -> str:
        return f"v1/devices/{device}/registrations/{self.pass_type_id}/{serial}"

    def serials(self, device: str) -> str:
        return f"v1/devices/{device}/registrations/{self.pass_type_id}"

    def pass_url(self, serial: str = "S1") -> str:
        return f"v1/passes/{self.pass_type_id}/{serial}"


def auth(token: str = AUTH) -> dict[str, str]:
    return {"Authorization": f"ApplePass {token}"}


@pytest.fixture
async def service(tmp_path, wallet_pki) -> AsyncIterator[Service]:
    signer = wallet_pki.signer()
    path = tmp_path / "wallet.db"

    def publish(serial: str, now: float, balance: str = "1.00") -> int:
        folder = write_sample_pass(
            tmp_path / "passes" / serial,
            pass_type_id=wallet_pki.pass_type_id,
            serial_number=serial,
            team_id=TEAM,
            authentication_token=AUTH,
            balance=balance,
        )
        source = read_pass_directory(folder)
        return store.put_pass(
            pass_type_id=source.pass_type_id,
            serial_number=source.serial_number,
            authentication_token=source.authentication_token,
            pkpass=build_pkpass(source, signer),
            content_digest=source.content_digest(),
            now=now,
        )

    with PassStore(path) as store:
        publish("S1", 1_700_000_000)
        publish("S2", 1_700_000_100)
        async with open_wallet_server(store) as server:
            assert server.address[0] == "127.0.0.1"
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
                with trio.fail_after(30):
                    yield Service(client, store, path, wallet_pki.pass_type_id, publish)


# -- register --------------------------------------------------------------------------


async def test_register_201_then_200(service):
    body = {"pushToken": TOKEN_A}
    first = await service.client.post(service.registration("dev1"), json=body, headers=auth())
    assert first.status_code == 201
    again = await service.client.post(service.registration("dev1"), json=body, headers=auth())
    assert again.status_code == 200
    assert [(r.device_library_id, r.push_token) for r in service.store.registrations()] == [
        ("dev1", TOKEN_A)
    ]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        auth("wrong-token-wrong-token"),
        {"Authorization": f"Bearer {AUTH}"},
        {"Authorization": "ApplePass"},
        {"Authorization": f"applepass  {AUTH[:-1]}"},
    ],
)
async def test_register_without_the_pass_token_is_401(service, headers):
    response = await service.client.post(
        service.registration("dev1"), json={"pushToken": TOKEN_A}, headers=headers
    )
    assert response.status_code == 401
    assert service.store.registrations() == []


async def test_scheme_name_is_case_insensitive(service):
    response = await service.client.post(
        service.registration("dev1"),
        json={"pushToken": TOKEN_A},
        headers={"Authorization": f"applepass {AUTH}"},
    )
    assert response.status_code == 201


async def test_register_for_an_unknown_pass_is_401(service):
    response = await service.client.post(
        service.registration("dev1", "NOPE"), json={"pushToken": TOKEN_A}, headers=auth()
    )
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("content", "status"),
    [
        (b"not json", 400),
        (b'{"token": "a1"}', 400),
        (b'{"pushToken": "xyz"}', 400),
        (b'{"pushToken": "' + b"a1" * 31 + b'"}', 400),  # 31 bytes
        (b"[" + b"1," * 40_000 + b"1]", 413),
    ],
)
async def test_register_with_a_bad_body(service, content, status):
    response = await service.client.post(
        service.registration("dev1"), content=content, headers=auth()
    )
    assert response.status_code == status
    assert service.store.registrations() == []


# -- serial numbers since a tag --------------------------------------------------------


async def register(service, device: str, serial: str, token: str = TOKEN_A) -> None:
    response = await service.client.post(
        service.registration(device, serial), json={"pushToken": token}, headers=auth()
    )
    assert response.status_code == 201


async def test_serials_204_for_a_device_without_passes(service):
    response = await service.client.get(service.serials("nobody"))
    assert response.status_code == 204
    assert response.content == b""


async def test_serials_and_the_tag_logic(service):
    await register(service, "dev1", "S1")
    await register(service, "dev1", "S2")
    everything = await service.client.get(service.serials("dev1"))
    assert everything.status_code == 200
    assert everything.headers["content-type"] == "application/json"
    assert everything.json() == {"serialNumbers": ["S1", "S2"], "lastUpdated": "1700000100"}

    tag = everything.json()["lastUpdated"]
    nothing = await service.client.get(service.serials("dev1"), params={"passesUpdatedSince": tag})
    assert nothing.status_code == 204

    service.publish("S1", 1_700_000_050)  # clock behind the newest tag: tag 1700000101
    changed = await service.client.get(service.serials("dev1"), params={"passesUpdatedSince": tag})
    assert changed.json() == {"serialNumbers": ["S1"], "lastUpdated": "1700000101"}
    again = await service.client.get(
        service.serials("dev1"), params={"passesUpdatedSince": changed.json()["lastUpdated"]}
    )
    assert again.status_code == 204


async def test_serials_with_a_tag_we_never_gave_returns_everything(service):
    await register(service, "dev1", "S1")
    response = await service.client.get(
        service.serials("dev1"), params={"passesUpdatedSince": "yesterday"}
    )
    assert response.json()["serialNumbers"] == ["S1"]


# -- the pass itself -------------------------------------------------------------------


async def test_latest_pass_with_last_modified_and_304(service):
    stored = service.store.get_pass(service.pass_type_id, "S1")
    response = await service.client.get(service.pass_url(), headers=auth())
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/vnd.apple.pkpass"
    assert response.content == stored.pkpass
    last_modified = response.headers["last-modified"]
    assert last_modified == "Tue, 14 Nov 2023 22:13:20 GMT"  # 1700000000
    assert email.utils.parsedate_to_datetime(last_modified) == datetime.fromtimestamp(
        1_700_000_000, UTC
    )

    cached = await service.client.get(
        service.pass_url(), headers={**auth(), "If-Modified-Since": last_modified}
    )
    assert cached.status_code == 304
    assert cached.content == b""
    assert cached.headers["last-modified"] == last_modified

    earlier = email.utils.format_datetime(
        datetime.fromtimestamp(1_700_000_000, UTC) - timedelta(seconds=1), usegmt=True
    )
    stale = await service.client.get(
        service.pass_url(), headers={**auth(), "If-Modified-Since": earlier}
    )
    assert stale.status_code == 200
    garbage = await service.client.get(
        service.pass_url(), headers={**auth(), "If-Modified-Since": "soon"}
    )
    assert garbage.status_code == 200

    service.publish("S1", 1_700_000_500, balance="9.99")
    updated = await service.client.get(
        service.pass_url(), headers={**auth(), "If-Modified-Since": last_modified}
    )
    assert updated.status_code == 200
    assert updated.headers["last-modified"] == "Tue, 14 Nov 2023 22:21:40 GMT"  # 1700000500
    assert updated.content != response.content


async def test_latest_pass_needs_its_token(service):
    assert (await service.client.get(service.pass_url())).status_code == 401
    assert (await service.client.get(service.pass_url(), headers=auth("x" * 32))).status_code == 401
    assert (await service.client.get(service.pass_url("NOPE"), headers=auth())).status_code == 401
    # A 401 is decided before If-Modified-Since.
    response = await service.client.get(
        service.pass_url(),
        headers={"If-Modified-Since": "Tue, 14 Nov 2030 22:13:20 GMT"},
    )
    assert response.status_code == 401


# -- unregister ------------------------------------------------------------------------


async def test_unregister_deletes_before_answering(service):
    await register(service, "dev1", "S1")
    await register(service, "dev2", "S1", TOKEN_B)
    denied = await service.client.delete(service.registration("dev1"), headers=auth("y" * 32))
    assert denied.status_code == 401
    assert len(service.store.registrations()) == 2

    response = await service.client.delete(service.registration("dev1"), headers=auth())
    assert response.status_code == 200
    # Read through a separate connection as soon as the answer arrived: already gone.
    with PassStore(service.path) as other:
        assert [r.device_library_id for r in other.registrations()] == ["dev2"]
    assert (await service.client.get(service.serials("dev1"))).status_code == 204
    again = await service.client.delete(service.registration("dev1"), headers=auth())
    assert again.status_code == 200


# -- log, and everything else ----------------------------------------------------------


async def test_log_endpoint(service, caplog):
    caplog.set_level(logging.WARNING, logger="apns_legacy.wallet.device")
    lines = ["Web service error for pass.com.example.card (https://x/): Response code 401"]
    response = await service.client.post("v1/log", json={"logs": lines})
    assert response.status_code == 200
    assert [
        r.getMessage() for r in caplog.records if r.name == "apns_legacy.wallet.device"
    ] == lines
    bad = await service.client.post("v1/log", json={"logs": "one string"})
    assert bad.status_code == 400


async def test_unknown_paths_and_methods(service):
    assert (await service.client.get("v1/nothing")).status_code == 404
    assert (await service.client.get("v2/log")).status_code == 404
    assert (
        await service.client.put(service.registration("dev1"), headers=auth())
    ).status_code == 405
    assert (await service.client.get("v1/log")).status_code == 405


async def test_base_path_of_the_web_service_url(tmp_path):
    with PassStore(tmp_path / "w.db") as store:
        async with open_wallet_server(store, base_path="/wallet/") as server:
            assert server.url.endswith("/wallet/")
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
                with trio.fail_after(30):
                    assert (await client.get("v1/devices/d/registrations/p")).status_code == 204
                    assert (await client.post("v1/log", json={"logs": []})).status_code == 200
                    host, port = server.address
                    assert (await client.get(f"http://{host}:{port}/v1/log")).status_code == 404


async def test_errors_of_the_body_come_out_unwrapped(tmp_path):
    with PassStore(tmp_path / "w.db") as store, pytest.raises(KeyError, match="mine"):
        async with open_wallet_server(store):
            raise KeyError("mine")


async def test_port_in_use_is_an_oserror(tmp_path):
    with PassStore(tmp_path / "w.db") as store:
        async with open_wallet_server(store) as server:
            with pytest.raises(OSError):
                async with open_wallet_server(store, port=server.address[1]):
                    pass  # pragma: no cover


def test_without_the_wallet_extra_only_the_web_names_are_missing():
    # Starlette made unimportable in a fresh interpreter: building passes and the CLI
    # still load; the web names say which extra to install.
    code = (
        "import sys; sys.modules['starlette'] = None; sys.modules['hypercorn'] = None\n"
        "import apns_legacy.wallet as w\n"
        "from apns_legacy.cli import main\n"
        "assert w.PassSigner and w.update_pass\n"
        "try:\n"
        "    w.open_wallet_server\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'apns-legacy[wallet]'" in result.stdout
