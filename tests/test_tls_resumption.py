"""TLS session resumption: our client resumes, our server (the simulator's) lets others resume.

Each side is checked against a peer nobody here wrote: the stdlib ``ssl`` module (which
reads ``SSL_session_reused`` directly) on the other end, and ``openssl s_client
-reconnect`` against the simulator. Real TLS over 127.0.0.1 with the test PKI.
"""

from __future__ import annotations

import re
import shutil
import socket
import ssl

import pytest
import trio

from apns_legacy.simulator import open_simulator
from apns_legacy.tls import (
    Credentials,
    TLSSessionCache,
    TLSStream,
    client_context,
    make_test_pki,
    open_tls_stream,
)
from apns_legacy.wire import Command, encode_probe

OPENSSL = shutil.which("openssl")
P12_PASSPHRASE = b"resume"


@pytest.fixture(scope="module")
def pki():
    return make_test_pki()


@pytest.fixture
def files(pki, tmp_path):
    return pki.write(tmp_path / "pki", p12_passphrase=P12_PASSPHRASE)


@pytest.fixture(params=["tls12", "tls13"])
def tls13(request):
    return request.param == "tls13"


def stdlib_server(listener, files, tls13, connections):
    """Blocking: serve ``connections`` clients one by one (a line in, the line back);
    return whether the server saw each one resume a session."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files["server.pem"], files["server-key.pem"])
    context.load_verify_locations(cafile=files["ca.pem"])
    context.verify_mode = ssl.CERT_REQUIRED
    context.maximum_version = ssl.TLSVersion.TLSv1_3 if tls13 else ssl.TLSVersion.TLSv1_2
    listener.settimeout(10)
    reused = []
    for _ in range(connections):
        conn, _ = listener.accept()
        conn.settimeout(10)
        with context.wrap_socket(conn, server_side=True) as tls:
            data = b""
            while not data.endswith(b"\n"):
                data += tls.recv(1024)
            tls.sendall(data)
            reused.append(tls.session_reused)
            tls.unwrap()
    return reused


async def echo(stream: TLSStream, line: bytes) -> bytes:
    await stream.send_all(line)
    data = b""
    while not data.endswith(b"\n"):
        chunk = await stream.receive_some()
        assert chunk
        data += chunk
    return data


async def test_our_client_resumes_with_a_stdlib_server(files, tls13):
    ours = client_context(
        Credentials.load(files["client.p12"], passphrase=P12_PASSPHRASE), ca=files["ca.pem"]
    )
    sessions = TLSSessionCache()
    seen = []
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                result = {}

                async def serve():
                    result["reused"] = await trio.to_thread.run_sync(
                        stdlib_server, listener, files, tls13, 3
                    )

                nursery.start_soon(serve)
                for number in range(3):
                    stream = await open_tls_stream("localhost", port, ours, sessions=sessions)
                    # TLS 1.3 tickets come after the handshake: read once before closing.
                    assert await echo(stream, b"line %d\n" % number) == b"line %d\n" % number
                    seen.append(stream.session_reused)
                    await stream.aclose()
    assert result["reused"] == [False, True, True]  # the server's word (SSL_session_reused)
    assert seen == [False, True, True]
    assert (sessions.offered, sessions.resumed) == (2, 2)


async def test_without_a_cache_nothing_is_offered(files):
    ours = client_context(
        Credentials.load(files["client.p12"], passphrase=P12_PASSPHRASE), ca=files["ca.pem"]
    )
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        result = {}
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:

                async def serve():
                    result["reused"] = await trio.to_thread.run_sync(
                        stdlib_server, listener, files, False, 2
                    )

                nursery.start_soon(serve)
                for _ in range(2):
                    stream = await open_tls_stream("localhost", port, ours)
                    await echo(stream, b"x\n")
                    assert not stream.session_reused
                    await stream.aclose()
    assert result["reused"] == [False, False]


def stdlib_client_twice(port, files, tls13):
    """Blocking: two connections to our server, the second offering the first's session."""
    context = ssl.create_default_context(cafile=files["ca.pem"])
    context.load_cert_chain(files["client.pem"], files["client-key.pem"])
    context.maximum_version = ssl.TLSVersion.TLSv1_3 if tls13 else ssl.TLSVersion.TLSv1_2
    session = None
    reused = []
    for _ in range(2):
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="localhost", session=session) as tls,
        ):
            # A probe (zero-length token): the simulator answers with status 2 and
            # closes; TLS 1.3 tickets arrive in front of that answer.
            tls.sendall(encode_probe(Command.FRAME, 7))
            answer = b""
            while len(answer) < 6:
                chunk = tls.recv(6)
                if not chunk:
                    break
                answer += chunk
            assert answer[:1] == b"\x08"
            reused.append(tls.session_reused)
            session = tls.session
    return reused


async def test_the_simulator_lets_a_stdlib_client_resume(pki, files, tls13):
    async with open_simulator(pki=pki, allow_tls13=tls13) as sim:
        port = sim.gateway_address[1]
        with trio.fail_after(20):
            reused = await trio.to_thread.run_sync(stdlib_client_twice, port, files, tls13)
    assert reused == [False, True]


@pytest.mark.skipif(OPENSSL is None, reason="no openssl command")
async def test_openssl_s_client_reconnect_resumes_with_the_simulator(pki, files):
    async with open_simulator(pki=pki) as sim:
        port = sim.gateway_address[1]
        command = [
            OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-reconnect",
            "-servername", "localhost", "-CAfile", str(files["ca.pem"]),
            "-cert", str(files["client.pem"]), "-key", str(files["client-key.pem"]),
            "-tls1_2",
        ]  # fmt: skip
        with trio.fail_after(30):
            result = await trio.run_process(
                command, stdin=b"", capture_stdout=True, capture_stderr=True, check=False
            )
    text = result.stdout.decode(errors="replace")
    # s_client connects once, then five more times offering the session each time.
    assert len(re.findall(r"^New, ", text, re.M)) == 1, text
    assert len(re.findall(r"^Reused, ", text, re.M)) == 5, text


async def test_a_session_is_kept_per_server_and_context(pki):
    async with open_simulator(pki=pki) as first, open_simulator(pki=pki) as second:
        context = first.client_context()
        sessions = TLSSessionCache()
        order = [first, second, first, second]
        seen = []
        for sim in order:
            host, port = sim.gateway_address
            stream = await open_tls_stream(host, port, context, sessions=sessions)
            seen.append(stream.session_reused)
            await stream.aclose()
        # Each simulator resumes only its own session; another context gets none.
        assert seen == [False, False, True, True]
        other = second.client_context()
        stream = await open_tls_stream(*second.gateway_address, other, sessions=sessions)
        assert not stream.session_reused
        await stream.aclose()
