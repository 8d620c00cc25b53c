"""Interoperability: our TLS against the stdlib ``ssl`` module and the ``openssl`` tools.

Everything runs on 127.0.0.1 with throwaway certificates from the test PKI.
Foreign peers run in a thread (stdlib) or a subprocess (openssl) and are always
bounded by timeouts and killed at the end.
"""

from __future__ import annotations

import re
import shutil
import socket
import ssl
import subprocess
from contextlib import asynccontextmanager

import pytest
import trio
from helpers import tls_server

from apns_legacy import (
    Credentials,
    TLSHandshakeError,
    client_context,
    make_test_pki,
    open_tls_stream,
    server_context,
)

OPENSSL = shutil.which("openssl")
P12_PASSPHRASE = b"interop"
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="no openssl command")


@pytest.fixture(scope="module")
def pki():
    return make_test_pki()


@pytest.fixture
def files(pki, tmp_path):
    return pki.write(tmp_path / "pki", p12_passphrase=P12_PASSPHRASE)


@pytest.fixture(params=["tls12", "tls13"])
def tls13(request):
    return request.param == "tls13"


def client_credentials(files):
    return Credentials.load(files["client.p12"], passphrase=P12_PASSPHRASE)


async def read_line(stream):
    data = b""
    while not data.endswith(b"\n"):
        chunk = await stream.receive_some()
        if not chunk:
            break
        data += chunk
    return data


async def answer_one_line(stream):
    line = await read_line(stream)
    await stream.send_all(line.upper())


# -- stdlib ssl -------------------------------------------------------------------------


def stdlib_server_context(files, tls13):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files["server.pem"], files["server-key.pem"])
    context.load_verify_locations(cafile=files["ca.pem"])
    context.verify_mode = ssl.CERT_REQUIRED
    context.maximum_version = ssl.TLSVersion.TLSv1_3 if tls13 else ssl.TLSVersion.TLSv1_2
    return context


def serve_one_stdlib(listener, context):
    """Blocking: accept one client, echo one line upper-cased, close cleanly."""
    listener.settimeout(5)
    conn, _ = listener.accept()
    conn.settimeout(5)
    with context.wrap_socket(conn, server_side=True) as tls:
        peer = tls.getpeercert()
        version = tls.version()
        data = b""
        while not data.endswith(b"\n"):
            data += tls.recv(1024)
        tls.sendall(data.upper())
        tls.unwrap()  # close_notify both ways
    return peer, version


async def test_our_client_with_stdlib_server(files, tls13):
    context = stdlib_server_context(files, tls13)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        result = {}

        async def server():
            result["peer"], result["version"] = await trio.to_thread.run_sync(
                serve_one_stdlib, listener, context
            )

        ours = client_context(client_credentials(files), ca=files["ca.pem"])
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server)
                stream = await open_tls_stream("127.0.0.1", port, ours)
                await stream.send_all(b"hello stdlib\n")
                assert await read_line(stream) == b"HELLO STDLIB\n"
                assert await stream.receive_some() == b""  # the server's close_notify
                await stream.aclose()
    assert result["version"] == ("TLSv1.3" if tls13 else "TLSv1.2")
    assert ("userId", "com.example.app") in {
        item for rdn in result["peer"]["subject"] for item in rdn
    }


def stdlib_client(port, files, *, with_certificate=True):
    context = ssl.create_default_context(cafile=files["ca.pem"])
    if with_certificate:
        context.load_cert_chain(files["client.pem"], files["client-key.pem"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"hello ours\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = tls.recv(1024)
            if not chunk:
                break
            data += chunk
        version = tls.version()
        tls.unwrap()
    return data, version


async def test_stdlib_client_with_tls_server(pki, files, tls13):
    server = server_context(pki.server, client_ca=files["ca.pem"], allow_tls13=tls13)

    async def answer_then_wait_for_close(stream):
        await answer_one_line(stream)
        assert await stream.receive_some() == b""  # the client's close_notify

    with trio.fail_after(10):
        async with tls_server(server, answer_then_wait_for_close) as (port, outcomes):
            data, version = await trio.to_thread.run_sync(stdlib_client, port, files)
            kind, peer = await outcomes.receive()
    assert data == b"HELLO OURS\n"
    assert version == ("TLSv1.3" if tls13 else "TLSv1.2")
    assert kind == "ok"
    assert peer == pki.client.certificate


async def test_stdlib_client_without_certificate_is_refused(pki, files):
    server = server_context(pki.server, client_ca=files["ca.pem"])

    def attempt():
        with pytest.raises((ssl.SSLError, ConnectionError)):
            stdlib_client(port, files, with_certificate=False)

    with trio.fail_after(10):
        async with tls_server(server, answer_one_line) as (port, outcomes):
            await trio.to_thread.run_sync(attempt)
            kind, error = await outcomes.receive()
    assert kind == "error"
    assert isinstance(error, TLSHandshakeError)
    assert "presented no certificate" in str(error)


# -- openssl s_server / s_client ------------------------------------------------------


@asynccontextmanager
async def openssl_s_server(*args):
    """Start ``openssl s_server`` on 127.0.0.1:0; yield its port; always kill it."""
    process = await trio.lowlevel.open_process(
        [OPENSSL, "s_server", "-accept", "127.0.0.1:0", "-naccept", "1", *map(str, args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        output = b""
        with trio.fail_after(10):
            while (match := re.search(rb"ACCEPT 127\.0\.0\.1:(\d+)", output)) is None:
                chunk = await process.stdout.receive_some()
                assert chunk, f"openssl s_server exited early: {output.decode(errors='replace')}"
                output += chunk
        yield int(match.group(1))
    finally:
        process.kill()
        with trio.move_on_after(5):
            await process.wait()
        await process.stdin.aclose()
        await process.stdout.aclose()


def s_server_args(files, tls13):
    return [
        "-cert", files["server.pem"],
        "-key", files["server-key.pem"],
        "-CAfile", files["ca.pem"],
        "-Verify", "2",
        "-verify_return_error",
        "-rev",  # echo each line reversed
        *([] if tls13 else ["-tls1_2"]),
    ]  # fmt: skip


@needs_openssl
async def test_our_client_with_openssl_s_server(files, tls13):
    ours = client_context(client_credentials(files), ca=files["ca.pem"])
    with trio.fail_after(15):
        async with openssl_s_server(*s_server_args(files, tls13)) as port:
            stream = await open_tls_stream("localhost", port, ours)
            assert stream.tls_version == ("TLSv1.3" if tls13 else "TLSv1.2")
            await stream.send_all(b"ping\n")
            assert await read_line(stream) == b"gnip\n"
            await stream.aclose()


@needs_openssl
async def test_openssl_s_server_refuses_an_untrusted_client(files, tls13):
    stranger = make_test_pki(topic="com.example.stranger").client
    ours = client_context(stranger, ca=files["ca.pem"])
    streams = []

    async def attempt(port):
        streams.append(await open_tls_stream("127.0.0.1", port, ours))
        await streams[0].send_all(b"ping\n")  # TLS 1.3: the alert arrives after the handshake
        await read_line(streams[0])

    with trio.fail_after(15):
        async with openssl_s_server(*s_server_args(files, tls13)) as port:
            with pytest.raises(TLSHandshakeError, match="unknown CA"):
                await attempt(port)
    for stream in streams:
        await stream.aclose()


@needs_openssl
async def test_openssl_s_client_with_tls_server(pki, files, tls13):
    server = server_context(pki.server, client_ca=pki.ca_certificate, allow_tls13=tls13)
    command = [
        OPENSSL, "s_client",
        "-connect", None,
        "-servername", "localhost",
        "-CAfile", files["ca.pem"],
        "-cert", files["client.pem"],
        "-key", files["client-key.pem"],
        "-verify_return_error",
        "-quiet",  # no banner; wait for the server to close after stdin ends
    ]  # fmt: skip
    with trio.fail_after(15):
        async with tls_server(server, answer_one_line) as (port, outcomes):
            command[3] = f"127.0.0.1:{port}"
            result = await trio.run_process(
                [str(part) for part in command],
                stdin=b"hello openssl\n",
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
            kind, peer = await outcomes.receive()
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert result.stdout == b"HELLO OPENSSL\n"
    assert kind == "ok"
    assert peer == pki.client.certificate


@needs_openssl
async def test_openssl_s_client_without_certificate_is_refused(pki, files):
    server = server_context(pki.server, client_ca=pki.ca_certificate)
    with trio.fail_after(15):
        async with tls_server(server, answer_one_line) as (port, outcomes):
            command = [OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}"]
            command += ["-CAfile", str(files["ca.pem"]), "-quiet"]
            result = await trio.run_process(
                command,
                stdin=b"hello\n",
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
            kind, error = await outcomes.receive()
    assert result.returncode != 0
    assert b"alert" in result.stderr
    assert kind == "error"
    assert "presented no certificate" in str(error)


# -- ALPN (the HTTP/2 provider API negotiates "h2") ---------------------------------------


@pytest.mark.parametrize(
    ("offered", "selected"), [(["http/1.1", "h2"], "h2"), (["http/1.1"], None), (None, None)]
)
async def test_server_alpn_selects_h2_for_a_stdlib_client(pki, files, offered, selected):
    server = server_context(pki.server, client_ca=files["ca.pem"], allow_tls13=True, alpn=[b"h2"])
    seen = []

    async def record(stream):
        seen.append(stream.alpn_protocol)
        await answer_one_line(stream)

    def client():
        context = ssl.create_default_context(cafile=files["ca.pem"])
        context.load_cert_chain(files["client.pem"], files["client-key.pem"])
        if offered is not None:
            context.set_alpn_protocols(offered)
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.sendall(b"x\n")
            tls.recv(10)
            return tls.selected_alpn_protocol()

    with trio.fail_after(10):
        async with tls_server(server, record) as (port, outcomes):
            chosen = await trio.to_thread.run_sync(client)
            await outcomes.receive()
    assert chosen == selected
    assert seen == [None if selected is None else selected.encode()]


async def test_client_alpn_offers_h2_to_a_stdlib_server(files):
    context = stdlib_server_context(files, tls13=True)
    context.set_alpn_protocols(["h2"])
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve():
        listener.settimeout(5)
        conn, _ = listener.accept()
        with context.wrap_socket(conn, server_side=True) as tls:
            tls.recv(10)
            return tls.selected_alpn_protocol()

    ours = client_context(client_credentials(files), ca=files["ca.pem"], alpn=[b"h2"])
    with listener, trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            result = []

            async def run_server():
                result.append(await trio.to_thread.run_sync(serve))

            nursery.start_soon(run_server)
            stream = await open_tls_stream("127.0.0.1", port, ours, server_hostname="localhost")
            await stream.do_handshake()
            assert stream.alpn_protocol == b"h2"
            await stream.send_all(b"x\n")
            await stream.aclose()
    assert result == ["h2"]
