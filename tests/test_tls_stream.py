"""TLSStream over trio memory streams: conformance, byte-level failure cases, closing."""

from __future__ import annotations

import array
import contextlib
import functools
import socket
from datetime import UTC, datetime, timedelta

import pytest
import trio
import trio.testing
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL

from apns_legacy import (
    Credentials,
    TLSHandshakeError,
    TLSStream,
    client_context,
    make_test_pki,
    server_context,
)
from apns_legacy.tls import UnreadableCredentialsError

TLS_VERSIONS = ["tls12", "tls13"]


@pytest.fixture(scope="module")
def pki():
    return make_test_pki()


@pytest.fixture(params=TLS_VERSIONS)
def contexts(request, pki):
    tls13 = request.param == "tls13"
    client = client_context(pki.client, ca=pki.ca_pem())
    server = server_context(pki.server, client_ca=pki.ca_certificate, allow_tls13=tls13)
    return client, server


def tls_pair(contexts, transports, hostname="localhost"):
    client_ctx, server_ctx = contexts
    client_transport, server_transport = transports
    client = TLSStream(client_transport, client_ctx, server_side=False, server_hostname=hostname)
    server = TLSStream(server_transport, server_ctx, server_side=True)
    return client, server


async def read_until_gone(server):
    """The server end of a connection the client will abandon."""
    with contextlib.suppress(trio.BrokenResourceError):
        while await server.receive_some():
            pass


async def handshake_both(client, server):
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        nursery.start_soon(server.do_handshake)


async def test_check_two_way_stream(contexts):
    async def stream_maker():
        return tls_pair(contexts, trio.testing.memory_stream_pair())

    async def clogged_stream_maker():
        client, server = tls_pair(contexts, trio.testing.lockstep_stream_pair())
        # As in trio's own SSLStream tests: finish the handshakes first, or a
        # receive_some that unclogs the peer would itself start a handshake.
        await handshake_both(client, server)
        return client, server

    # TLS has no half-close here (TLSStream is not a HalfCloseableStream), so
    # check_two_way_stream is the complete conformance suite for it.
    with trio.fail_after(10):
        await trio.testing.check_two_way_stream(stream_maker, clogged_stream_maker)


async def test_handshake_reports_version_and_peer(contexts, pki):
    client, server = tls_pair(contexts, trio.testing.memory_stream_pair())
    assert client.peer_certificate is None
    with trio.fail_after(5):
        await handshake_both(client, server)
    assert client.peer_certificate == pki.server.certificate
    assert server.peer_certificate == pki.client.certificate
    assert client.tls_version == server.tls_version
    assert client.tls_version in ("TLSv1.2", "TLSv1.3")


async def test_large_transfer_both_ways_byte_exact(contexts):
    client, server = tls_pair(contexts, trio.testing.memory_stream_pair())
    payload = bytes(range(256)) * 4096  # 1 MiB, several send chunks
    received = bytearray()

    async def reader():
        while len(received) < len(payload):
            chunk = await server.receive_some()
            assert chunk
            received.extend(chunk)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await client.send_all(payload)
    assert received == payload


async def test_receive_some_returns_many_records_at_once(contexts):
    client, server = tls_pair(contexts, trio.testing.memory_stream_pair())
    with trio.fail_after(5):
        await handshake_both(client, server)
        for _ in range(20):  # 20 separate records of 100 bytes
            await client.send_all(b"x" * 100)
        await trio.testing.wait_all_tasks_blocked()
        data = await server.receive_some()
    assert len(data) == 2000


async def test_receive_some_respects_max_bytes(contexts):
    client, server = tls_pair(contexts, trio.testing.memory_stream_pair())
    with trio.fail_after(5):
        await handshake_both(client, server)
        await client.send_all(b"abcdef")
        assert await server.receive_some(4) == b"abcd"
        assert await server.receive_some(4) == b"ef"


def manual_link():
    """Two transports whose bytes only move when the test moves them."""
    client_out, server_in = trio.testing.MemorySendStream(), trio.testing.MemoryReceiveStream()
    server_out, client_in = trio.testing.MemorySendStream(), trio.testing.MemoryReceiveStream()
    client_transport = trio.StapledStream(client_out, client_in)
    server_transport = trio.StapledStream(server_out, server_in)
    return (client_transport, server_transport), (client_out, server_in, server_out, client_in)


async def pump(source, sink):
    while True:
        data = await source.get_data()
        sink.put_data(data)


async def test_half_written_record_then_eof_is_broken_not_a_hang(contexts):
    transports, (client_out, server_in, server_out, client_in) = manual_link()
    client, server = tls_pair(contexts, transports)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump, client_out, server_in)
            nursery.start_soon(pump, server_out, client_in)
            await handshake_both(client, server)
            await server.send_all(b"hello")
            await trio.testing.wait_all_tasks_blocked()
            assert await client.receive_some() == b"hello"
            nursery.cancel_scope.cancel()
        await server.send_all(b"this record will be cut short")
        record = server_out.get_data_nowait()
        assert len(record) > 10
        client_in.put_data(record[:-7])  # header and most of the body
        client_in.put_eof()
        with pytest.raises(trio.BrokenResourceError) as info:
            await client.receive_some()
    assert "close_notify" in str(info.value)
    assert isinstance(info.value.__cause__, SSL.Error)
    # and the stream stays broken
    with pytest.raises(trio.BrokenResourceError):
        await client.receive_some()


async def test_data_then_eof_without_close_notify_keeps_the_data(contexts):
    # Like a gateway that writes an error frame and drops TCP without close_notify:
    # the bytes come first, the truncation error on the next call.
    transports, (client_out, server_in, server_out, client_in) = manual_link()
    client, server = tls_pair(contexts, transports)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump, client_out, server_in)
            nursery.start_soon(pump, server_out, client_in)
            await handshake_both(client, server)
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        await server.send_all(b"\x08\x08\x00\x00\x00\x07")
        client_in.put_data(server_out.get_data_nowait())
        client_in.put_eof()
        assert await client.receive_some() == b"\x08\x08\x00\x00\x00\x07"
        with pytest.raises(trio.BrokenResourceError, match="without a TLS close_notify"):
            await client.receive_some()


async def test_eof_during_handshake_is_a_handshake_error(contexts):
    transports, (client_out, _server_in, _server_out, client_in) = manual_link()
    client, _server = tls_pair(contexts, transports)

    async def peer_hangs_up():
        await client_out.get_data()  # the ClientHello
        client_in.put_data(b"\x16\x03\x03\x00")  # a fragment of a record header
        client_in.put_eof()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer_hangs_up)
            with pytest.raises(TLSHandshakeError, match="closed the connection during the hand"):
                await client.do_handshake()


async def test_garbage_from_peer_is_broken(contexts):
    transports, (client_out, _server_in, _server_out, client_in) = manual_link()
    client, _server = tls_pair(contexts, transports)

    async def peer_speaks_http():
        await client_out.get_data()
        client_in.put_data(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer_speaks_http)
            with pytest.raises(TLSHandshakeError, match="handshake failed"):
                await client.do_handshake()


async def test_peer_reset_mid_stream_is_broken(contexts):
    client, server = tls_pair(contexts, trio.testing.memory_stream_pair())
    with trio.fail_after(5):
        await handshake_both(client, server)
        await trio.aclose_forcefully(server.transport_stream)
        with pytest.raises(trio.BrokenResourceError):
            await client.receive_some()


async def test_graceful_close_gives_empty_read_and_closed_errors(contexts):
    client, server = tls_pair(contexts, trio.testing.memory_stream_pair())
    with trio.fail_after(5):
        await handshake_both(client, server)
        await client.send_all(b"last words")
        await client.aclose()
        assert await server.receive_some() == b"last words"
        assert await server.receive_some() == b""
        assert await server.receive_some() == b""
        await server.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await client.send_all(b"more")
    with pytest.raises(trio.ClosedResourceError):
        await server.receive_some()


async def test_aclose_does_not_wait_for_a_silent_peer(contexts, autojump_clock):
    # Lockstep: close_notify can only be delivered if the peer reads. It never
    # does, so aclose must give up after its short grace period, not hang.
    # (autojump_clock: the grace period passes in virtual time.)
    client, server = tls_pair(contexts, trio.testing.lockstep_stream_pair())
    with trio.fail_after(5):
        await handshake_both(client, server)
        await client.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await client.receive_some()


async def test_wrong_hostname_fails_the_handshake(contexts):
    client, server = tls_pair(contexts, trio.testing.memory_stream_pair(), hostname="example.org")
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_until_gone, server)
            with pytest.raises(TLSHandshakeError, match=r"not valid for 'example\.org'") as info:
                await client.do_handshake()
            # the stream stays broken, with the reason
            with pytest.raises(trio.BrokenResourceError, match=r"example\.org"):
                await client.send_all(b"x")
            await client.aclose()
    assert "DNS:localhost" in str(info.value)
    assert client.peer_certificate is not None  # still there, for diagnosis


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "LOCALHOST", "localhost."])
async def test_hostname_and_ip_sans_match(contexts, host):
    client, server = tls_pair(contexts, trio.testing.memory_stream_pair(), hostname=host)
    with trio.fail_after(5):
        await handshake_both(client, server)


@pytest.mark.parametrize("host", ["127.0.0.2", "::2", "local.host", "localhostx"])
async def test_near_miss_hosts_are_rejected(contexts, host):
    client, server = tls_pair(contexts, trio.testing.memory_stream_pair(), hostname=host)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_until_gone, server)
            with pytest.raises(TLSHandshakeError, match="not valid for"):
                await client.do_handshake()
            await client.aclose()


async def test_wildcard_san_matches_one_label_only():
    pki = make_test_pki(server_names=("*.gateway.test",))
    server_ctx = server_context(pki.server, client_ca=pki.ca_certificate)
    client_ctx = client_context(pki.client, ca=pki.ca_pem())
    for host, ok in [
        ("push.gateway.test", True),
        ("a.b.gateway.test", False),
        ("gateway.test", False),
    ]:
        client, server = tls_pair(
            (client_ctx, server_ctx), trio.testing.memory_stream_pair(), hostname=host
        )
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_until_gone, server)
                if ok:
                    await client.do_handshake()
                    await client.send_all(b"ok")
                    await client.aclose()
                else:
                    with pytest.raises(TLSHandshakeError):
                        await client.do_handshake()
                    await client.aclose()


async def test_concurrent_send_and_receive_share_the_handshake(contexts):
    client, server = tls_pair(contexts, trio.testing.memory_stream_pair())

    async def echo_once():
        data = await server.receive_some()
        await server.send_all(data.upper())

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(echo_once)
            got = []

            async def receive():
                got.append(await client.receive_some())

            nursery.start_soon(receive)
            await trio.testing.wait_all_tasks_blocked()
            await client.send_all(b"ping")
    assert got == [b"PING"]


async def test_second_waiter_sees_the_handshake_failure(contexts):
    client, server = tls_pair(contexts, trio.testing.memory_stream_pair(), hostname="wrong.test")
    errors = []

    async def waiter():
        try:
            await client.do_handshake()
        except trio.BrokenResourceError as exc:
            errors.append(exc)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_until_gone, server)
            nursery.start_soon(waiter)
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            await client.aclose()
    assert len(errors) == 2
    assert all("wrong.test" in str(error) for error in errors)


async def test_corrupt_record_after_data_keeps_the_data(contexts):
    # One transport read holds a good record and then a forged one: the good
    # bytes are returned first, the failure on the next call.
    transports, (client_out, server_in, server_out, client_in) = manual_link()
    client, server = tls_pair(contexts, transports)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump, client_out, server_in)
            nursery.start_soon(pump, server_out, client_in)
            await handshake_both(client, server)
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        await server.send_all(b"good")
        forged = b"\x17\x03\x03\x00\x20" + bytes(32)  # application data, bad MAC
        client_in.put_data(server_out.get_data_nowait() + forged)
        assert await client.receive_some() == b"good"
        with pytest.raises(trio.BrokenResourceError) as info:
            await client.receive_some()
    assert not isinstance(info.value, TLSHandshakeError)
    assert str(info.value).startswith("TLS connection failed: ")


async def test_send_all_accepts_any_buffer(contexts):
    client, server = tls_pair(contexts, trio.testing.memory_stream_pair())
    words = array.array("H", [0x0102, 0x0304])
    with trio.fail_after(5):
        await handshake_both(client, server)
        await client.send_all(memoryview(words))
        await client.send_all(bytearray(b"!"))
        received = b""
        while len(received) < 5:
            received += await server.receive_some()
    assert received == words.tobytes() + b"!"


async def test_no_common_version(pki):
    client_ctx = client_context(pki.client, ca=pki.ca_pem(), min_version=SSL.TLS1_3_VERSION)
    server_ctx = server_context(pki.server, client_ca=pki.ca_certificate)  # TLS 1.2 at most
    client, server = tls_pair((client_ctx, server_ctx), trio.testing.memory_stream_pair())
    errors = []

    async def side(stream):
        try:
            await stream.do_handshake()
        except TLSHandshakeError as exc:
            errors.append(str(exc))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(side, client)
            nursery.start_soon(side, server)
    assert len(errors) == 2
    assert all("no TLS version in common" in error for error in errors)


async def test_server_certificate_without_san_is_rejected(pki):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(pki.ca_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(pki.ca_key, hashes.SHA256())
    )
    server_ctx = server_context(Credentials(certificate, key), client_ca=[pki.ca_certificate])
    client_ctx = client_context(pki.client, ca=pki.ca_pem())
    client, server = tls_pair((client_ctx, server_ctx), trio.testing.memory_stream_pair())
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_until_gone, server)
            # the common name alone is not accepted (RFC 6125; as Python's ssl)
            with pytest.raises(TLSHandshakeError, match="no subject alternative names"):
                await client.do_handshake()
            await client.aclose()


def test_context_arguments(pki, tmp_path):
    assert isinstance(client_context(None), SSL.Context)  # system trust store
    assert isinstance(server_context(pki.server, client_ca=[pki.ca_certificate]), SSL.Context)
    with pytest.raises(UnreadableCredentialsError, match="cannot read"):
        client_context(None, ca=tmp_path / "missing.pem")
    with pytest.raises(UnreadableCredentialsError, match="no PEM certificate"):
        client_context(None, ca=b"not a certificate")
    with pytest.raises(UnreadableCredentialsError, match="no PEM certificate"):
        server_context(pki.server, client_ca=b"")


async def test_answer_before_a_reset_is_still_read_after_our_write_fails(contexts):
    # Apple's gateway: an error response, then a close with our data unread, which the
    # kernel turns into a TCP reset. Our next write fails first; the 6 bytes that came
    # before the reset must still be readable (TN2265: read before giving up).
    client_ctx, server_ctx = contexts
    answered = trio.Event()

    async def gateway(tcp: trio.SocketStream) -> None:
        server = TLSStream(tcp, server_ctx, server_side=True)
        await server.receive_some()  # the first bytes
        await server.send_all(b"\x08\x08\x00\x00\x00\x07")
        answered.set()
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        await trio.aclose_forcefully(tcp)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                functools.partial(trio.serve_tcp, gateway, 0, host="127.0.0.1")
            )
            port = listeners[0].socket.getsockname()[1]
            tcp = await trio.open_tcp_stream("127.0.0.1", port)
            client = TLSStream(tcp, client_ctx, server_side=False, server_hostname="localhost")
            await client.send_all(b"x" * 100)
            await answered.wait()
            failed = False
            for _ in range(1000):  # until the reset shows
                try:
                    await client.send_all(b"x" * 65536)
                except trio.BrokenResourceError:
                    failed = True
                    break
            assert failed
            assert await client.receive_some() == b"\x08\x08\x00\x00\x00\x07"
            with pytest.raises(trio.BrokenResourceError):
                await client.receive_some()
            with pytest.raises(trio.BrokenResourceError):
                await client.send_all(b"more")
            await client.aclose()
            nursery.cancel_scope.cancel()
