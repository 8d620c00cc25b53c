"""The bridge end to end: hand-written binary frames in over real TLS, the HTTP/2
simulator out, each row of the mapping table, replay absorption, feedback, shutdown."""

from __future__ import annotations

import struct

import pytest
import trio

from apns_legacy.bridge import BridgeMode, FeedbackStore
from apns_legacy.simulator import Http2Faults
from apns_legacy.tls import make_test_pki

from bridge_helpers import (
    GONE_MS,
    PAYLOAD,
    TOPIC,
    enhanced,
    error_frame,
    frame,
    new_key,
    open_rig,
    read_all,
    sim_config,
    simple,
    token,
)


@pytest.fixture(scope="module")
def pki():
    return make_test_pki(topic=TOPIC)


@pytest.fixture(scope="module")
def key():
    return new_key()


async def test_accepted_notifications_reach_the_simulator_and_the_client_hears_nothing(
    pki, key
):
    with trio.fail_after(30):
        async with open_rig(pki, key) as rig:
            stream = await rig.connect()
            await stream.send_all(b"".join(frame(i, token(i)) for i in range(1, 21)))
            await rig.sim.wait_for_accepted(20)
            await stream.aclose()
    assert rig.recorded() == [token(i).hex() for i in range(1, 21)]
    assert {r.topic for r in rig.sim.accepted} == {TOPIC}
    assert {r.push_type for r in rig.sim.accepted} == {"alert"}
