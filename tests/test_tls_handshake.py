"""Real TLS over TCP on 127.0.0.1: mutual authentication and every way it fails.

Each failure must surface as a clear error on both ends, within a deadline.
"""

from __future__ import annotations

import re
import socket
import struct
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio
from cryptography.hazmat.primitives import serialization
from helpers import tls_server

from apns_legacy import (
    Credentials,
    TLSHandshakeError,
    client_context,
    make_test_pki,
    open_tls_stream,
    server_context,
)

PASSPHRASE = b"p12 passphrase"


@pytest.fixture(scope="module")
def pki():
    return make_test_pki()


@pytest.fixture(scope="module")
def other_pki():
    return make_test_pki(topic="com.example.intruder")


@pytest.fixture(params=["tls12", "tls13"])
def tls13(request):
    return request.param == "tls13"


async def ping(port, context, **kwargs):
    stream = await open_tls_stream("127.0.0.1", port, context, **kwargs)
    try:
        await stream.send_all(b"ping")
        reply = await stream.receive_some()
    finally:
        await stream.aclose()
    return reply


# -- success with every credential form -----------------------------------------------


def credential_sources(pki, folder):
    """name -> (cert, key, passphrase) in each form, from files and from bytes."""
    paths = pki.write(folder, p12_passphrase=PASSPHRASE)
    key = pki.client.private_key
    pem = serialization.Encoding.PEM
    encrypted = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(PASSPHRASE)
    )
    (folder / "client-key-enc.pem").write_bytes(encrypted)
    combined = paths["client.pem"].read_bytes() + paths["client-key.pem"].read_bytes()
    (folder / "combined.pem").write_bytes(combined)
    return {
        "pem separate (paths)": (paths["client.pem"], paths["client-key.pem"], None),
        "pem separate (bytes)": (
            paths["client.pem"].read_bytes(),
            paths["client-key.pem"].read_bytes(),
            None,
        ),
        "pem combined (path)": (folder / "combined.pem", None, None),
        "pem combined (bytes)": (combined, None, None),
        "encrypted pem (path)": (paths["client.pem"], folder / "client-key-enc.pem", PASSPHRASE),
        "encrypted pem (bytes)": (paths["client.pem"].read_bytes(), encrypted, PASSPHRASE),
        "pkcs12 (path)": (paths["client.p12"], None, PASSPHRASE),
        "pkcs12 (bytes)": (paths["client.p12"].read_bytes(), None, PASSPHRASE),
    }


FORMS = [
    "pem separate (paths)",
    "pem separate (bytes)",
    "pem combined (path)",
    "pem combined (bytes)",
    "encrypted pem (path)",
    "encrypted pem (bytes)",
    "pkcs12 (path)",
    "pkcs12 (bytes)",
]


@pytest.mark.parametrize("form", FORMS)
async def test_mutual_auth_with_each_credential_form(pki, tmp_path, tls13, form):
    cert, key, passphrase = credential_sources(pki, tmp_path)[form]
    credentials = Credentials.load(cert, key, passphrase=passphrase)
    ca = tmp_path / "ca.pem" if "path" in form else pki.ca_pem()
    context = client_context(credentials, ca=ca)
    with trio.fail_after(10):
        async with tls_server(
            server_context(pki.server, client_ca=pki.ca_certificate, allow_tls13=tls13)
        ) as (port, outcomes):
            assert await ping(port, context) == b"PING"
            kind, peer = await outcomes.receive()
    assert kind == "ok"
    assert peer == pki.client.certificate


async def test_versions_negotiated(pki):
    context = client_context(pki.client, ca=pki.ca_pem())
    seen = []

    async def record_version(stream):
        seen.append(stream.tls_version)

    for tls13, expected in [(False, "TLSv1.2"), (True, "TLSv1.3")]:
        server = server_context(pki.server, client_ca=pki.ca_pem(), allow_tls13=tls13)
        with trio.fail_after(10):
            async with tls_server(server, record_version) as (port, outcomes):
                stream = await open_tls_stream("localhost", port, context)
                assert stream.tls_version == expected
                await stream.aclose()
                await outcomes.receive()
    assert seen == ["TLSv1.2", "TLSv1.3"]


async def test_chain_is_presented(tmp_path):
    # leaf <- intermediate <- root; the server trusts only the root, so the
    # client must send the intermediate from its credentials' chain.
    trustme = pytest.importorskip("trustme")
    root = trustme.CA()
    intermediate = root.create_child_ca()
    leaf = intermediate.issue_cert("client.example")
    credentials = Credentials.load(leaf.private_key_and_cert_chain_pem.bytes())
    assert len(credentials.chain) == 1
    pki = make_test_pki()
    server = server_context(pki.server, client_ca=root.cert_pem.bytes())
    with trio.fail_after(10):
        async with tls_server(server) as (port, outcomes):
            assert await ping(port, client_context(credentials, ca=pki.ca_pem())) == b"PING"
            assert (await outcomes.receive())[0] == "ok"


# -- failures: clear, on both ends, never a hang -----------------------------------------


async def failing_client(port, context, **kwargs):
    """Connect and talk; return the client's error."""
    with pytest.raises(TLSHandshakeError) as info:
        # Under TLS 1.3 a rejected client certificate is reported on the first
        # read (the client's handshake finishes first); ping() reads.
        await ping(port, context, **kwargs)
    return info.value


async def test_client_without_certificate(pki, tls13):
    server = server_context(pki.server, client_ca=pki.ca_certificate, allow_tls13=tls13)
    with trio.fail_after(10):
        async with tls_server(server) as (port, outcomes):
            error = await failing_client(port, client_context(None, ca=pki.ca_pem()))
            kind, server_error = await outcomes.receive()
    if tls13:
        assert "requires a client certificate" in str(error)
    else:
        assert "may require a client certificate" in str(error)
        assert str(error).startswith(f"127.0.0.1:{port}: TLS handshake failed")
    assert "TLS handshake failed" in str(error)
    assert kind == "error"
    assert isinstance(server_error, TLSHandshakeError)
    assert "client presented no certificate" in str(server_error)


async def test_optional_client_certificate(pki):
    server = server_context(
        pki.server, client_ca=pki.ca_certificate, require_client_certificate=False
    )
    with trio.fail_after(10):
        async with tls_server(server) as (port, outcomes):
            assert await ping(port, client_context(None, ca=pki.ca_pem())) == b"PING"
            assert await outcomes.receive() == ("ok", None)


async def test_untrusted_client_certificate(pki, other_pki, tls13):
    server = server_context(pki.server, client_ca=pki.ca_certificate, allow_tls13=tls13)
    with trio.fail_after(10):
        async with tls_server(server) as (port, outcomes):
            error = await failing_client(port, client_context(other_pki.client, ca=pki.ca_pem()))
            _, server_error = await outcomes.receive()
    assert "does not trust our certificate's issuer (alert: unknown CA)" in str(error)
    assert "client certificate is not trusted: it was issued by a CA that is not trusted" in str(
        server_error
    )
    assert "com.example.intruder" in str(server_error)


async def test_expired_client_certificate(pki, tls13):
    now = datetime.now(UTC)
    expired = pki.issue_client(
        not_before=now - timedelta(days=400), not_after=now - timedelta(days=1)
    )
    pem = serialization.Encoding.PEM
    loaded = Credentials.from_pem(
        expired.certificate.public_bytes(pem),
        expired.private_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        allow_expired=True,
    )
    server = server_context(pki.server, client_ca=pki.ca_certificate, allow_tls13=tls13)
    with trio.fail_after(10):
        async with tls_server(server) as (port, outcomes):
            error = await failing_client(port, client_context(loaded, ca=pki.ca_pem()))
            _, server_error = await outcomes.receive()
    assert "rejected our certificate as expired" in str(error)
    assert "the certificate has expired" in str(server_error)


async def test_untrusted_server(pki, other_pki, tls13):
    server = server_context(pki.server, client_ca=pki.ca_certificate, allow_tls13=tls13)
    context = client_context(pki.client, ca=other_pki.ca_pem())
    with trio.fail_after(10):
        async with tls_server(server) as (port, outcomes):
            error = await failing_client(port, context)
            _, server_error = await outcomes.receive()
    assert "the server certificate is not trusted" in str(error)
    # (the server also sends its CA: OpenSSL completes the chain from its trust store)
    assert "untrusted self-signed root" in str(error)
    assert isinstance(server_error, TLSHandshakeError)


async def test_wrong_host_name(pki, tls13):
    server = server_context(pki.server, client_ca=pki.ca_certificate, allow_tls13=tls13)
    context = client_context(pki.client, ca=pki.ca_pem())
    with trio.fail_after(10):
        async with tls_server(server) as (port, outcomes):
            error = await failing_client(port, context, server_hostname="gateway.push.apple.com")
            kind, _ = await outcomes.receive()
    assert "not valid for 'gateway.push.apple.com'" in str(error)
    assert "DNS:localhost, IP:127.0.0.1, IP:::1" in str(error)
    assert kind == "error"


async def test_handshake_timeout():
    # A server that accepts and then says nothing.
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    accepted = []

    async def silent(tcp):
        accepted.append(tcp)
        await trio.sleep_forever()

    pki = make_test_pki()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, silent, listeners)
            with pytest.raises(TLSHandshakeError, match=r"timed out after 0\.2 s"):
                await open_tls_stream(
                    "127.0.0.1", port, client_context(None, ca=pki.ca_pem()), handshake_timeout=0.2
                )
            nursery.cancel_scope.cancel()
    assert len(accepted) == 1


async def test_server_hangs_up_during_handshake(pki):
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]

    async def hang_up(tcp):
        await tcp.receive_some()  # the ClientHello
        await tcp.aclose()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, hang_up, listeners)
            with pytest.raises(TLSHandshakeError, match="during the handshake"):
                await open_tls_stream("127.0.0.1", port, client_context(None, ca=pki.ca_pem()))
            nursery.cancel_scope.cancel()


async def test_not_tls_at_all(pki):
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]

    async def http(tcp):
        await tcp.receive_some()
        await tcp.send_all(b"HTTP/1.0 400 Bad Request\r\n\r\n")
        await tcp.aclose()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, http, listeners)
            with pytest.raises(TLSHandshakeError, match=r"does not speak TLS|handshake failed"):
                await open_tls_stream("127.0.0.1", port, client_context(None, ca=pki.ca_pem()))
            nursery.cancel_scope.cancel()


async def test_connection_refused(pki):
    with socket.socket() as probe:  # a port with no listener
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with trio.fail_after(5), pytest.raises(OSError):
        await open_tls_stream("127.0.0.1", port, client_context(None, ca=pki.ca_pem()))


async def test_peer_reset_after_handshake(pki, tls13):
    async def reset(stream):
        await stream.receive_some()
        raw = stream.transport_stream.socket
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.close()  # RST instead of FIN, no close_notify

    server = server_context(pki.server, client_ca=pki.ca_certificate, allow_tls13=tls13)
    context = client_context(pki.client, ca=pki.ca_pem())
    with trio.fail_after(10):
        async with tls_server(server, reset) as (port, _outcomes):
            stream = await open_tls_stream("127.0.0.1", port, context)
            await stream.send_all(b"x")
            with pytest.raises(trio.BrokenResourceError):
                await stream.receive_some()
            with pytest.raises(trio.BrokenResourceError):
                await stream.send_all(b"more")
            await stream.aclose()


async def test_one_context_serves_many_connections(pki):
    server = server_context(pki.server, client_ca=pki.ca_certificate)
    context = client_context(pki.client, ca=pki.ca_pem())
    with trio.fail_after(10):
        async with tls_server(server) as (port, outcomes):
            async with trio.open_nursery() as nursery:
                for _ in range(8):
                    nursery.start_soon(ping, port, context)
            results = [await outcomes.receive() for _ in range(8)]
    assert all(kind == "ok" for kind, _ in results)


def test_readme_example_runs(tmp_path):
    # The "Credentials and TLS" example in README.md, run as written.
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("## Credentials and TLS") :]
    section = section[: section.index("\n## ", 1)]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "com.example.app ['production', 'sandbox']",
        "b'HELLO' TLSv1.2",
    ]


async def test_cancelled_connect_closes_the_socket():
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    closed = trio.Event()

    async def silent_until_closed(tcp):
        while await tcp.receive_some():  # the ClientHello, then EOF when we give up
            pass
        closed.set()

    pki = make_test_pki()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, silent_until_closed, listeners)
            with trio.move_on_after(0.2) as scope:
                await open_tls_stream("127.0.0.1", port, client_context(None, ca=pki.ca_pem()))
            assert scope.cancelled_caught
            await closed.wait()
            nursery.cancel_scope.cancel()


def test_handshake_errors_say_whether_tls_refused():
    from apns_legacy.client._diagnosis import is_tls_refusal

    refused = TLSHandshakeError("TLS handshake failed: certificate verify failed")
    broke = TLSHandshakeError("TLS handshake failed: the connection broke", refused=False)
    assert refused.refused
    assert is_tls_refusal(refused)
    assert not broke.refused
    assert not is_tls_refusal(broke)
    # Classified by the TLS layer, not by the words of the message.
    assert not is_tls_refusal(TLSHandshakeError("certificate", refused=False))
