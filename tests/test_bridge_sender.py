"""Our own binary sender through the bridge into the HTTP/2 simulator: 100,000
notifications with 0.5% invalid tokens and 0.5% uninstalled apps, on 1 and 4 client
connections, in ``exact`` and ``feedback-only`` modes (issue 13, all four at full size).
Every valid one is recorded by "Apple" exactly once; in ``exact`` the sender sees status
8 for exactly the invalid ones, in ``feedback-only`` it sees none and the feedback port
lists them too; the feedback port always lists the uninstalled ones, with the time of
their 410.

The bridge (``apns-legacy bridge --config FILE``) and the simulator (``apns-legacy serve
--http2 --record FILE``) each run in a process of their own, as operators run them, so
that the three ends spread over the cores: about 2,500/s on a shared 2-core machine
(about 1,800/s with all three in one process), 40-45 s a run. What "Apple" accepted is
read from the simulator's record once it has exited; what the bridge absorbed from the
sender's replays, from the bridge's final counters. DEADLINE bounds each run, and the
sender's graceful close may use all of it (its default, 60 s, is shorter than draining a
full 50,000 queue on a loaded machine)."""

from __future__ import annotations

import collections
import random
from datetime import UTC, datetime, timedelta

import pytest
import trio
from bridge_helpers import TOPIC, bridge_process, new_key, serve_http2_process

from apns_legacy.bridge import BridgeMode
from apns_legacy.client import Outcome, SenderConfig, open_sender, read_feedback
from apns_legacy.tls import client_context, make_test_pki
from apns_legacy.wire import DeviceToken, Notification

COUNT = 100_000
DEADLINE = 300  # seconds per run: 5-7 times what one takes on a shared 2-core machine


@pytest.fixture(scope="module")
def pki():
    return make_test_pki(topic=TOPIC)


@pytest.mark.parametrize(
    ("mode", "connections"),
    [
        (BridgeMode.EXACT, 1),
        (BridgeMode.EXACT, 4),
        (BridgeMode.FEEDBACK_ONLY, 1),
        (BridgeMode.FEEDBACK_ONLY, 4),
    ],
)
async def test_our_sender_through_the_bridge(pki, mode, connections, tmp_path):
    key = new_key()
    rng = random.Random(13)
    tokens = [rng.randbytes(32) for _ in range(COUNT)]
    special = rng.sample(range(COUNT), COUNT // 100)
    invalid = {tokens[i] for i in special[: COUNT // 200]}
    gone = {tokens[i] for i in special[COUNT // 200 :]}
    context = client_context(pki.client, ca=pki.ca_pem())
    outcomes: list[Outcome] = []
    started = datetime.now(UTC).replace(microsecond=0)
    with trio.fail_after(DEADLINE):
        async with (
            serve_http2_process(tmp_path, key, invalid=invalid, uninstalled=gone) as sim,
            bridge_process(tmp_path, pki, key, sim, mode) as bridge,
        ):
            host, port = bridge.gateway
            async with open_sender(
                context,
                host=host,
                port=port,
                server_hostname="localhost",
                config=SenderConfig(connections=connections, close_timeout=DEADLINE),
                on_outcome=outcomes.append,
            ) as sender:
                await sender.submit_many(
                    Notification(token=DeviceToken(t), payload=b'{"aps":{"alert":"x"}}')
                    for t in tokens
                )
            host, port = bridge.feedback
            listed = await read_feedback(context, host=host, port=port, server_hostname="localhost")
    ended = datetime.now(UTC) + timedelta(seconds=1)
    recorded = collections.Counter(bytes.fromhex(t) for t in sim.recorded())
    assert len(outcomes) == COUNT
    assert set(recorded) == set(tokens) - invalid - gone
    assert max(recorded.values()) == 1  # each valid one reached "Apple" exactly once
    rejected = {o.notification.token.value for o in outcomes if not o.accepted}
    statuses = {int(o.status) for o in outcomes if o.status is not None}
    feedback = {item.token for item in listed}
    assert all(started <= item.time <= ended for item in listed)
    if mode is BridgeMode.EXACT:
        assert rejected == invalid
        assert statuses == {8}
        assert feedback == gone
        # the sender's replays were absorbed, not sent twice
        assert bridge.stopped["replay_matched"] > 0
    else:
        assert rejected == set()
        assert feedback == gone | invalid
