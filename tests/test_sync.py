"""The synchronous facades, against the simulator over real TLS: send_all and SyncSender."""

from __future__ import annotations

import concurrent.futures

import pytest
import trio

from apns_legacy import (
    DeviceToken,
    LocalProtocolError,
    Notification,
    OutcomeKind,
    SenderConfig,
    open_simulator,
    send_all,
)
from apns_legacy.client import SyncSender

BAD = bytes([7]) * 32


def note(i: int, payload: bytes = b'{"aps":{}}') -> Notification:
    return Notification(token=DeviceToken(bytes([i]) * 32), payload=payload)


async def test_sync_sender_serves_many_threads_on_shared_connections(pki):
    async with open_simulator(pki=pki, invalid_tokens=[BAD]) as sim:
        host, port = sim.gateway_address

        def web_app() -> tuple[list, int]:
            with SyncSender(sim.client_context(), host=host, port=port) as push:
                with concurrent.futures.ThreadPoolExecutor(4) as pool:
                    outcomes = list(pool.map(lambda i: push.send(note(i), timeout=30), range(12)))
                opened = push.stats.connections_opened
            return outcomes, opened

        with trio.fail_after(60):
            outcomes, opened = await trio.to_thread.run_sync(web_app)
    assert [o.kind for o in outcomes] == [
        OutcomeKind.REJECTED if i == 7 else OutcomeKind.ACCEPTED for i in range(12)
    ]
    assert outcomes[7].status == 8
    assert sorted(bytes.fromhex(r.token)[0] for r in sim.accepted) == [
        i for i in range(12) if i != 7
    ]
    assert opened >= 1


async def test_sync_sender_checks_limits_in_the_calling_thread(pki):
    async with open_simulator(pki=pki) as sim:
        host, port = sim.gateway_address

        def web_app() -> None:
            with SyncSender(
                sim.client_context(), host=host, port=port, config=SenderConfig(payload_limit=20)
            ) as push:
                with pytest.raises(LocalProtocolError, match="the limit is 20"):
                    push.submit(note(1, b'{"aps":{"alert":"far too long"}}'))
                future = push.submit(note(2), tag="mine")
                push.close()
                assert future.result(timeout=0).tag == "mine"
                assert future.result(timeout=0).accepted

        with trio.fail_after(60):
            await trio.to_thread.run_sync(web_app)
    assert len(sim.accepted) == 1


async def test_send_all_names_a_bad_notification_by_index_before_sending(pki):
    async with open_simulator(pki=pki) as sim:
        host, port = sim.gateway_address
        items = [note(0), note(1, b"{" + b" " * 3000 + b"}"), note(2)]

        def call() -> None:
            with pytest.raises(LocalProtocolError, match=r"notification 1: payload is 3002 bytes"):
                send_all(items, sim.client_context(), host=host, port=port)

        await trio.to_thread.run_sync(call)
    assert sim.stats.gateway_connections == 0  # nothing was sent
