"""Our own binary sender through the bridge into the HTTP/2 simulator: 100,000
notifications with 0.5% invalid tokens and 0.5% uninstalled apps, on 1 and 4 client
connections, in ``exact`` and ``feedback-only`` modes (issue 13, all four at full size).
Every valid one is recorded by "Apple" exactly once; in ``exact`` the sender sees status
8 for exactly the invalid ones, in ``feedback-only`` it sees none and the feedback port
lists them too; the feedback port always lists the uninstalled ones.

The path runs about 2,000/s here (sender, bridge and simulator share one process), so
each run takes about a minute; DEADLINE bounds each one, and the sender's graceful close
may use all of it (its default, 60 s, is shorter than draining a full 50,000 queue on a
loaded machine)."""

from __future__ import annotations

import collections
import random

import pytest
import trio
from bridge_helpers import GONE_MS, TOPIC, new_key, open_rig, sim_config

from apns_legacy.bridge import BridgeMode
from apns_legacy.client import Outcome, SenderConfig, open_sender, read_feedback
from apns_legacy.tls import make_test_pki
from apns_legacy.wire import DeviceToken, Notification

COUNT = 100_000
DEADLINE = 300  # seconds per run: about 5 times what one takes on a shared 2-core machine


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
async def test_our_sender_through_the_bridge(pki, mode, connections):
    count = COUNT
    key = new_key()
    rng = random.Random(13)
    tokens = [rng.randbytes(32) for _ in range(count)]
    special = rng.sample(range(count), count // 100)
    invalid = {tokens[i] for i in special[: count // 200]}
    gone = {tokens[i] for i in special[count // 200 :]}
    sim = sim_config(
        key, invalid_tokens=invalid, uninstalled_tokens={t.hex(): GONE_MS for t in gone}
    )
    outcomes: list[Outcome] = []
    with trio.fail_after(DEADLINE):
        async with open_rig(pki, key, sim=sim, mode=mode) as rig:
            host, port = rig.bridge.gateway_address
            async with open_sender(
                rig.context(),
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
            host, port = rig.bridge.feedback_address
            listed = await read_feedback(
                rig.context(), host=host, port=port, server_hostname="localhost"
            )
            matched = rig.bridge.gateway.replay_matched
    recorded = collections.Counter(bytes.fromhex(r.token) for r in rig.sim.accepted)
    assert len(outcomes) == count
    assert set(recorded) == set(tokens) - invalid - gone
    assert max(recorded.values()) == 1  # each valid one reached "Apple" exactly once
    rejected = {o.notification.token.value for o in outcomes if not o.accepted}
    statuses = {int(o.status) for o in outcomes if o.status is not None}
    feedback = {item.token for item in listed}
    if mode is BridgeMode.EXACT:
        assert rejected == invalid
        assert statuses == {8}
        assert feedback == gone
        assert matched > 0  # the sender's replays were absorbed, not sent twice
    else:
        assert rejected == set()
        assert feedback == gone | invalid
