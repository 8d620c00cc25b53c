"""The HTTP/2 route against an HTTP/2 server nobody here wrote: Hypercorn (its own h2
stack, ALPN h2 over stdlib ssl) serving a small ASGI app in APNs's place, which checks
the provider token with PyJWT and answers 200, or 410 Unregistered with a timestamp.
What it receives is what Apple documents for a pass update push."""

from __future__ import annotations

import json
import socket
import time
from functools import partial
from typing import Any

import jwt
import trio
from cryptography.hazmat.primitives.asymmetric import ec
from hypercorn.config import Config
from hypercorn.trio import serve
from wallet_support import write_pass

from apns_legacy.h2wire import ProviderKey
from apns_legacy.wallet import Http2Gateway, PassStore, publish_pass, read_pass_folder, update_pass

GOOD, GONE = "0a" * 32, "0b" * 32
APNS_ID = "eabeae54-14a8-11e5-b60b-1697f925ec7b"


class FakeApns:
    """An ASGI app answering like APNs, recording each request."""

    def __init__(self, key: ProviderKey, gone_ms: int) -> None:
        self.key = key
        self.gone_ms = gone_ms
        self.requests: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        bearer = headers["authorization"].removeprefix("bearer ")
        self.requests.append(
            {
                "http_version": scope["http_version"],
                "method": scope["method"],
                "path": scope["path"],
                "headers": headers,
                "body": body,
                "jwt_header": jwt.get_unverified_header(bearer),
                # PyJWT checks the ES256 signature against the public key.
                "claims": jwt.decode(bearer, self.key.public_key, algorithms=["ES256"]),
            }
        )
        status, answer = 200, b""
        if scope["path"] == f"/3/device/{GONE}":
            status = 410
            answer = json.dumps({"reason": "Unregistered", "timestamp": self.gone_ms}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"apns-id", APNS_ID.encode())]
                + ([(b"content-type", b"application/json")] if answer else []),
            }
        )
        await send({"type": "http.response.body", "body": answer})


async def test_http2_route_against_hypercorn(tmp_path, wallet_pki):
    key = ProviderKey(
        key_id="KEY1234567",
        team_id="TEAM123456",
        private_key=ec.generate_private_key(ec.SECP256R1()),
    )
    files = wallet_pki.pki.write(tmp_path / "pki", p12_passphrase=b"unused")
    write_pass(tmp_path, wallet_pki.pass_type_id, "1.00")
    signer = wallet_pki.signer()
    with PassStore(":memory:") as store:
        source = read_pass_folder(tmp_path / "passes", "S1")
        publish_pass(store, signer, source)
        for name, token in (("phone", GOOD), ("gone", GONE)):
            store.register(
                device_library_id=name,
                push_token=token,
                pass_type_id=wallet_pki.pass_type_id,
                serial_number="S1",
                now=1_700_000_000,
            )
        app = FakeApns(key, gone_ms=int(time.time() * 1000))

        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        config = Config()
        config.bind = [f"fd://{listener.detach()}"]
        config.certfile = str(files["server.pem"])
        config.keyfile = str(files["server-key.pem"])
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(serve, app, config, shutdown_trigger=stop.wait))
            route = Http2Gateway(
                host="127.0.0.1", port=port, ca=wallet_pki.pki.ca_pem(), provider_key=key
            )
            pushed_at = int(time.time())
            with trio.fail_after(30):
                result = await update_pass(store, signer, source, route)
            stop.set()

    assert result.push is not None
    assert (result.push.accepted, result.push.rejected, result.push.failed) == (1, 1, 0)
    assert result.push.problems == ((GONE, "410 Unregistered"),)
    assert result.push.removed_registrations == 1
    assert sorted(r["path"] for r in app.requests) == [f"/3/device/{GOOD}", f"/3/device/{GONE}"]
    for request in app.requests:
        assert (request["http_version"], request["method"]) == ("2", "POST")
        headers = request["headers"]
        assert headers["apns-topic"] == wallet_pki.pass_type_id
        assert headers["apns-push-type"] == "background"
        assert headers["apns-priority"] == "5"
        assert abs(int(headers["apns-expiration"]) - (pushed_at + 86400)) < 60
        assert request["body"] == b'{"aps":{}}'
        assert request["jwt_header"]["alg"] == "ES256"
        assert request["jwt_header"]["kid"] == "KEY1234567"
        assert request["claims"]["iss"] == "TEAM123456"
        assert abs(request["claims"]["iat"] - pushed_at) < 60
