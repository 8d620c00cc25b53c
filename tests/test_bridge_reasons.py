"""Apple's reason for a configuration fault reaches the bridge as a structured field
(``Http2Outcome.apns_reason``), not as text to search: the HTTP/2 sender sets it on the
failure that met the fault and on every queued or later notification the same fault
fails; the bridge maps it to the legacy status. End to end against the HTTP/2 simulator.
"""

from __future__ import annotations

import pytest
import trio
from bridge_helpers import (
    PAYLOAD,
    TOPIC,
    Rig,
    bridge_config,
    error_frame,
    frame,
    new_key,
    open_rig,
    read_all,
    sim_config,
    token,
)

from apns_legacy.bridge import AppConfig, open_bridge
from apns_legacy.client import Http2SenderConfig, OutcomeKind, open_http2_sender
from apns_legacy.h2wire import AppSettings, Reason
from apns_legacy.simulator import Http2Faults, open_http2_simulator
from apns_legacy.tls import make_test_pki
from apns_legacy.wire import DeviceToken, Notification


@pytest.fixture(scope="module")
def pki():
    return make_test_pki(topic=TOPIC)


@pytest.fixture(scope="module")
def key():
    return new_key()


async def exchange(rig: Rig, data: bytes) -> bytes:
    stream = await rig.connect()
    await stream.send_all(data)
    heard = await read_all(stream)
    await stream.aclose()
    return heard


#: Each configuration fault the sender gives up on, and the status a legacy client hears.
FATAL = [
    (Reason.MISSING_TOPIC, 3),
    (Reason.TOPIC_DISALLOWED, 3),
    (Reason.BAD_TOPIC, 6),
    (Reason.BAD_CERTIFICATE, 1),
    (Reason.BAD_CERTIFICATE_ENVIRONMENT, 1),
    (Reason.INVALID_PROVIDER_TOKEN, 1),
    (Reason.MISSING_PROVIDER_TOKEN, 1),
    (Reason.BAD_ENVIRONMENT_KEY_ID_IN_TOKEN, 1),
]


@pytest.mark.parametrize(("reason", "status"), FATAL, ids=[r.value for r, _ in FATAL])
async def test_a_goaway_naming_a_configuration_fault_maps_by_its_structured_reason(
    pki, key, reason, status
):
    # The simulator answers the first request, then closes the connection with a GOAWAY
    # naming ``reason``: the sender fails the second notification (queued, in flight
    # above the GOAWAY, or submitted after it) with that reason as a field.
    sim = sim_config(key, faults=Http2Faults(goaway_after=1, goaway_reason=reason.value))
    with trio.fail_after(30):
        async with open_rig(pki, key, sim=sim) as rig:
            heard = await exchange(rig, frame(1, token(1)) + frame(2, token(2)))
            failing = dict(rig.bridge.failing)
    assert heard == error_frame(status, 2)
    assert rig.recorded() == [token(1).hex()]
    # Every one of these is the bridge's own configuration: /health fails for the app.
    assert reason.value in failing[TOPIC]


async def test_topic_disallowed_as_an_answer_maps_by_its_structured_reason(pki, key):
    sim = sim_config(key, team_topics={key.team_id: frozenset({"com.example.other"})})
    with trio.fail_after(30):
        async with open_rig(pki, key, sim=sim) as rig:
            heard = await exchange(rig, frame(1, token(1)) + frame(2, token(2)))
    assert heard == error_frame(3, 1)


async def test_invalid_provider_token_as_an_answer_is_status_1(pki, key):
    with trio.fail_after(30):
        async with open_rig(pki, key, sim=sim_config(new_key())) as rig:
            heard = await exchange(rig, frame(1, token(1)) + frame(2, token(2)))
            failing = dict(rig.bridge.failing)
    assert heard == error_frame(1, 1)
    assert "InvalidProviderToken" in failing[TOPIC]


async def test_bad_topic_as_an_answer_is_status_6(pki, key):
    # Certificate auth upstream with a push certificate for another topic: APNs answers
    # 400 BadTopic to the bridge's apns-topic.
    upstream_pki = make_test_pki(topic="com.example.someone-else")
    apps = [AppConfig(topic=TOPIC, credentials=upstream_pki.client)]
    with trio.fail_after(30):
        async with open_http2_simulator(sim_config(key), pki=upstream_pki) as simulator:
            config = bridge_config(pki, simulator, key, apps=apps)
            async with open_bridge(config) as bridge:
                rig = Rig(bridge, simulator, pki, pki.client)
                heard = await exchange(rig, frame(1, token(1)) + frame(2, token(2)))
    assert heard == error_frame(6, 1)
    assert set(simulator.stats.by_reason) == {"BadTopic"}
    assert simulator.stats.accepted == 0


async def test_the_sender_names_apples_reason_on_every_failure_of_the_fault(key):
    # Directly, without the bridge: a key the simulator does not know. The first answer
    # is 403 InvalidProviderToken; the queued notifications and one submitted afterwards
    # fail by the same fault, each with the reason as a field.
    async with open_http2_simulator(sim_config(new_key())) as simulator:
        assert simulator.pki is not None
        config = Http2SenderConfig(
            host="localhost",
            port=simulator.port,
            ca=simulator.pki.ca_pem(),
            provider_key=key,
            settings=AppSettings(topic=TOPIC),
        )
        with trio.fail_after(30):
            async with open_http2_sender(config) as sender:
                outcomes = [
                    await sender.submit(Notification(token=DeviceToken(token(i)), payload=PAYLOAD))
                    for i in range(1, 6)
                ]
                await sender.wait_settled()
                outcomes.append(
                    await sender.submit(Notification(token=DeviceToken(token(6)), payload=PAYLOAD))
                )
                await sender.wait_settled()
    assert len(outcomes) == 6
    assert {o.kind for o in outcomes} == {OutcomeKind.FAILED}
    assert {o.apns_reason for o in outcomes} == {Reason.INVALID_PROVIDER_TOKEN}
    assert all(o.to_json()["reason"] == o.reason for o in outcomes)


async def test_accepted_rejected_and_given_up_outcomes_carry_no_apns_reason(key):
    sim = sim_config(
        key,
        invalid_tokens=frozenset({token(2)}),
        faults=Http2Faults(status_every=1, fault_status=503),
    )
    async with open_http2_simulator(sim_config(key, invalid_tokens=frozenset({token(2)}))) as ok:
        assert ok.pki is not None
        config = Http2SenderConfig(
            host="localhost",
            port=ok.port,
            ca=ok.pki.ca_pem(),
            provider_key=key,
            settings=AppSettings(topic=TOPIC),
        )
        with trio.fail_after(30):
            async with open_http2_sender(config) as sender:
                outcomes = [
                    await sender.submit(Notification(token=DeviceToken(token(i)), payload=PAYLOAD))
                    for i in (1, 2)
                ]
                await sender.wait_settled()
    kinds = {o.kind: o for o in outcomes}
    assert kinds[OutcomeKind.REJECTED].reason == "BadDeviceToken"
    assert {o.apns_reason for o in outcomes} == {None}
    # Given up after retries (503 on every request): a failure, but no configuration fault.
    async with open_http2_simulator(sim) as busy:
        assert busy.pki is not None
        config = Http2SenderConfig(
            host="localhost",
            port=busy.port,
            ca=busy.pki.ca_pem(),
            provider_key=key,
            settings=AppSettings(topic=TOPIC),
            max_attempts=2,
            retry_delay=0.001,
            max_retry_delay=0.01,
        )
        with trio.fail_after(30):
            async with open_http2_sender(config) as sender:
                failed = await sender.submit(
                    Notification(token=DeviceToken(token(1)), payload=PAYLOAD)
                )
                await sender.wait_settled()
    assert failed.kind is OutcomeKind.FAILED
    assert "ServiceUnavailable" in (failed.reason or "")
    assert failed.apns_reason is None
