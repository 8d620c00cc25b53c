"""The feedback client over real TLS on 127.0.0.1: the simulator, and tiny raw servers."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trio

from apns_legacy import (
    DeviceToken,
    FeedbackError,
    FeedbackItem,
    Notification,
    RemoteProtocolError,
    SenderConfig,
    TLSStream,
    TokenStore,
    client_context,
    open_sender,
    open_simulator,
    read_feedback,
    server_context,
)
from apns_legacy.wire import encode_feedback_item

T0 = 1_700_000_000


def token(n: int) -> bytes:
    return n.to_bytes(4, "big") * 8


@asynccontextmanager
async def raw_server(
    pki, handler: Callable[[TLSStream, trio.SocketStream], Awaitable[None]]
) -> AsyncIterator[tuple[str, int]]:
    """A TLS server on 127.0.0.1 that runs ``handler`` after each handshake."""
    context = server_context(pki.server, client_ca=pki.ca_certificate)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")

    async def serve(tcp: trio.SocketStream) -> None:
        tls = TLSStream(tcp, context, server_side=True)
        try:
            await tls.do_handshake()
            await handler(tls, tcp)
        except trio.BrokenResourceError:
            pass
        finally:
            await trio.aclose_forcefully(tcp)

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, serve, listeners)
        host, port = listeners[0].socket.getsockname()[:2]
        yield host, port
        nursery.cancel_scope.cancel()


def context_for(pki):
    return client_context(pki.client, ca=pki.ca_pem())


async def test_reads_tuples_split_across_reads(pki):
    # 5-byte writes: every tuple arrives in pieces, the header split from the token.
    async with open_simulator(pki=pki, feedback_chunk_size=5) as sim:
        for n in range(20):
            sim.add_feedback(token(n), T0 + n)
        host, port = sim.feedback_address
        with trio.fail_after(10):
            items = await read_feedback(sim.client_context(), host=host, port=port)
    assert items == [FeedbackItem(T0 + n, token(n)) for n in range(20)]
    assert items[3].time == dt.datetime.fromtimestamp(T0 + 3, dt.UTC)
    assert items[3].time.tzinfo is dt.UTC


async def test_an_empty_list_is_a_normal_answer_and_reading_is_destructive(pki):
    async with open_simulator(pki=pki) as sim:
        host, port = sim.feedback_address
        assert await read_feedback(sim.client_context(), host=host, port=port) == []
        sim.add_feedback(token(1), T0)
        first = await read_feedback(sim.client_context(), host=host, port=port)
        second = await read_feedback(sim.client_context(), host=host, port=port)
    assert first == [FeedbackItem(T0, token(1))]
    assert second == []


async def test_a_truncated_tuple_at_eof_is_an_error_and_nothing_is_applied(pki):
    async def thirty_bytes(tls: TLSStream, tcp: trio.SocketStream) -> None:
        # One whole tuple (38 bytes) would be more; 30 is a header and part of a token.
        await tls.send_all(encode_feedback_item(T0, token(1))[:30])
        await tls.aclose()

    with TokenStore(":memory:") as store:
        store.register(token(1), at=T0 - 100)
        async with raw_server(pki, thirty_bytes) as (host, port):

            async def cleanup() -> None:
                items = await read_feedback(context_for(pki), host=host, port=port, timeout=10)
                store.apply_feedback(items)

            with pytest.raises(FeedbackError, match="30 bytes of an incomplete") as info:
                await cleanup()
        assert isinstance(info.value.__cause__, RemoteProtocolError)
        assert store.counts().active == 1


async def test_a_truncated_tuple_after_good_ones_drops_the_whole_list(pki):
    data = b"".join(encode_feedback_item(T0, token(n)) for n in range(3))

    async def whole_then_partial(tls: TLSStream, tcp: trio.SocketStream) -> None:
        await tls.send_all(data + data[:10])
        await tls.aclose()

    async with raw_server(pki, whole_then_partial) as (host, port):
        with pytest.raises(FeedbackError, match="list read so far is dropped"):
            await read_feedback(context_for(pki), host=host, port=port, timeout=10)


async def test_a_close_without_close_notify_on_a_tuple_boundary_ends_the_list(pki, caplog):
    async def no_close_notify(tls: TLSStream, tcp: trio.SocketStream) -> None:
        await tls.send_all(encode_feedback_item(T0, token(7)))
        await tcp.aclose()  # TCP FIN with no TLS close_notify

    async with raw_server(pki, no_close_notify) as (host, port):
        items = await read_feedback(context_for(pki), host=host, port=port, timeout=10)
    assert items == [FeedbackItem(T0, token(7))]
    assert "without TLS close_notify" in caplog.text


async def test_a_close_without_close_notify_inside_a_tuple_is_an_error(pki):
    async def cut(tls: TLSStream, tcp: trio.SocketStream) -> None:
        await tls.send_all(encode_feedback_item(T0, token(7))[:20])
        await tcp.aclose()

    async with raw_server(pki, cut) as (host, port):
        with pytest.raises(FeedbackError, match=f"{host}:{port}"):
            await read_feedback(context_for(pki), host=host, port=port, timeout=10)


async def test_a_server_that_never_closes_hits_the_deadline(pki):
    async def stall(tls: TLSStream, tcp: trio.SocketStream) -> None:
        await tls.send_all(encode_feedback_item(T0, token(1)))
        await trio.sleep_forever()

    async with raw_server(pki, stall) as (host, port):
        with trio.fail_after(10), pytest.raises(FeedbackError, match=r"within 0\.3 s"):
            await read_feedback(context_for(pki), host=host, port=port, timeout=0.3)


async def test_connection_refused_is_a_feedback_error(pki):
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    await listeners[0].aclose()
    with pytest.raises(FeedbackError, match=f"127.0.0.1:{port}") as info:
        await read_feedback(context_for(pki), host="127.0.0.1", port=port, timeout=10)
    assert isinstance(info.value.__cause__, OSError)


async def test_an_untrusted_server_is_a_feedback_error(pki):
    from apns_legacy import make_test_pki

    stranger = make_test_pki()
    async with open_simulator(pki=pki) as sim:
        host, port = sim.feedback_address
        with pytest.raises(FeedbackError, match="certificate"):
            await read_feedback(context_for(stranger), host=host, port=port, timeout=10)


async def test_sent_to_uninstalled_apps_then_cleaned_up(pki):
    # The whole loop: send, the simulator lists the uninstalled tokens, the store
    # deactivates them; one re-registered after the push stays active.
    tokens = [token(n) for n in range(40)]
    gone = tokens[:5]
    with TokenStore(":memory:") as store:
        store.register_many(tokens, at=T0)
        async with open_simulator(pki=pki, uninstalled_tokens=gone) as sim:
            config = SenderConfig(settle_after=0.2)
            host, port = sim.gateway_address
            context = sim.client_context()
            async with open_sender(context, host=host, port=port, config=config) as sender:
                for t in tokens:
                    await sender.submit(
                        Notification(token=DeviceToken(t), payload=b'{"aps":{"alert":"hi"}}')
                    )
                with trio.fail_after(10):
                    await sender.flush(confirm=True)
            assert sender.stats.accepted == 40
            host, port = sim.feedback_address
            items = await read_feedback(sim.client_context(), host=host, port=port, timeout=10)
        assert sorted(item.token for item in items) == sorted(gone)
        store.register(gone[0], at=items[0].timestamp + 1)  # the user reinstalled the app
        result = store.apply_feedback(items)
        assert (result.deactivated, result.skipped_reregistered) == (4, 1)
        assert store.counts().active == 36
