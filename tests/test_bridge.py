"""The bridge end to end: hand-written binary frames in over real TLS, the HTTP/2
simulator out, each row of the mapping table, replay absorption, feedback, shutdown."""

from __future__ import annotations

import socket
import struct
import time

import attrs
import pytest
import trio
from bridge_helpers import (
    GONE_MS,
    TOPIC,
    Rig,
    bridge_config,
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

from apns_legacy.bridge import AppConfig, BridgeMode, FeedbackStore, UpstreamConfig, open_bridge
from apns_legacy.h2wire import ProviderKey
from apns_legacy.simulator import Http2Faults, open_http2_simulator
from apns_legacy.tls import Environment, make_test_pki


@pytest.fixture(scope="module")
def pki():
    return make_test_pki(topic=TOPIC)


@pytest.fixture(scope="module")
def key():
    return new_key()


async def test_accepted_notifications_reach_the_simulator_and_the_client_hears_nothing(pki, key):
    with trio.fail_after(30):
        async with open_rig(pki, key) as rig:
            stream = await rig.connect()
            await stream.send_all(b"".join(frame(i, token(i)) for i in range(1, 21)))
            await rig.sim.wait_for_accepted(20)
            await stream.aclose()
    assert rig.recorded() == [token(i).hex() for i in range(1, 21)]
    assert {r.topic for r in rig.sim.accepted} == {TOPIC}
    assert {r.push_type for r in rig.sim.accepted} == {"alert"}


async def exchange_with(rig, client, data: bytes) -> bytes:
    stream = await rig.connect(client)
    await stream.send_all(data)
    heard = await read_all(stream)
    await stream.aclose()
    return heard


async def exchange(rig, data: bytes) -> bytes:
    """Connect, write ``data``, read until the bridge closes; what the client heard."""
    stream = await rig.connect()
    await stream.send_all(data)
    heard = await read_all(stream)
    await stream.aclose()
    return heard


async def test_bad_device_token_is_status_8_after_earlier_ones_and_the_replay_goes_upstream_once(
    pki, key
):
    # Tokens 5 and 8 are invalid upstream. The first connection forwards 1..10
    # concurrently; it must name 5 (the lowest failure, once 1..4 resolved) and
    # nothing else. The client then replays 6..10 renumbered from 101: the bridge
    # recognises 6 and 7 (already delivered) and 8 (already failed), and names 103.
    # The third connection replays 9, 10 (matched) and sends 11 (new).
    sim = sim_config(key, invalid_tokens=[token(5), token(8)])
    with trio.fail_after(30):
        async with open_rig(pki, key, sim=sim) as rig:
            first = await exchange(rig, b"".join(frame(i, token(i)) for i in range(1, 11)))
            assert first == error_frame(8, 5)
            assert sorted(rig.recorded()) == sorted(
                token(i).hex() for i in (1, 2, 3, 4, 6, 7, 9, 10)
            )
            second = await exchange(
                rig, b"".join(frame(100 + n, token(i)) for n, i in enumerate(range(6, 11), 1))
            )
            assert second == error_frame(8, 103)
            stream = await rig.connect()
            await stream.send_all(
                frame(201, token(9)) + frame(202, token(10)) + frame(203, token(11))
            )
            await rig.sim.wait_for_accepted(9)
            await stream.aclose()
            assert rig.bridge.gateway.replay_matched == 5
    recorded = rig.recorded()
    assert sorted(recorded) == sorted(token(i).hex() for i in (1, 2, 3, 4, 6, 7, 9, 10, 11))
    assert len(recorded) == len(set(recorded)) == 9
    assert rig.sim.stats.by_reason == {"BadDeviceToken": 2}


async def test_a_replay_that_differs_is_forwarded(pki, key):
    sim = sim_config(key, invalid_tokens=[token(2)])
    with trio.fail_after(30):
        async with open_rig(pki, key, sim=sim) as rig:
            assert await exchange(
                rig, frame(1, token(1)) + frame(2, token(2)) + frame(3, token(3))
            ) == (error_frame(8, 2))
            # Same token, different payload: not the same notification, so it goes up.
            stream = await rig.connect()
            await stream.send_all(frame(7, token(3), b'{"aps":{"alert":"other"}}'))
            await rig.sim.wait_for_accepted(3)
            await stream.aclose()
    assert [r.token for r in rig.sim.accepted].count(token(3).hex()) == 2


@pytest.mark.parametrize("mode", [BridgeMode.EXACT, BridgeMode.SERIAL])
async def test_410_is_silent_and_lands_on_the_feedback_port_with_apples_timestamp(pki, key, mode):
    sim = sim_config(key, uninstalled_tokens={token(3).hex(): GONE_MS})
    with trio.fail_after(30):
        async with open_rig(pki, key, sim=sim, mode=mode) as rig:
            stream = await rig.connect()
            await stream.send_all(b"".join(frame(i, token(i)) for i in range(1, 6)))
            await rig.sim.wait_for_accepted(4)
            await rig.bridge.wait_for_feedback(1)
            tuples = await rig.feedback()
            again = await rig.feedback()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(rig.bridge.stop)
                heard = await read_all(stream)
                await stream.aclose()
    # The client heard nothing but the shutdown status naming its last notification.
    assert heard == error_frame(10, 5)
    assert tuples == struct.pack("!IH", GONE_MS // 1000, 32) + token(3)
    assert again == b""


async def test_serial_mode_forwards_nothing_after_a_failure(pki, key):
    sim = sim_config(key, invalid_tokens=[token(5)])
    with trio.fail_after(30):
        async with open_rig(pki, key, sim=sim, mode=BridgeMode.SERIAL) as rig:
            heard = await exchange(rig, b"".join(frame(i, token(i)) for i in range(1, 11)))
    assert heard == error_frame(8, 5)
    assert rig.recorded() == [token(i).hex() for i in range(1, 5)]


async def test_feedback_only_never_sends_a_frame_and_lists_bad_tokens(pki, key):
    sim = sim_config(key, invalid_tokens=[token(2)], uninstalled_tokens={token(4).hex(): GONE_MS})
    with trio.fail_after(30):
        async with open_rig(pki, key, sim=sim, mode=BridgeMode.FEEDBACK_ONLY) as rig:
            stream = await rig.connect()
            await stream.send_all(b"".join(frame(i, token(i)) for i in range(1, 7)))
            await rig.sim.wait_for_accepted(4)
            await rig.bridge.wait_for_feedback(2)
            tuples = await rig.feedback()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(rig.bridge.stop)
                heard = await read_all(stream)
                await stream.aclose()
    assert heard == error_frame(10, 6)
    assert rig.recorded() == [token(i).hex() for i in (1, 3, 5, 6)]
    assert len(tuples) == 2 * 38
    listed = {tuples[i + 6 : i + 38]: struct.unpack("!I", tuples[i : i + 4])[0] for i in (0, 38)}
    assert listed[token(4)] == GONE_MS // 1000
    assert abs(listed[token(2)] - time.time()) < 60


@pytest.mark.parametrize(
    ("bad", "status", "identifier"),
    [
        # zero-length token: status 2 with identifier 0, as Apple's gateway did
        (frame(3, b""), 2, 0),
        (frame(3, token(3)[:31]), 5, 3),
        (frame(3, token(3), b""), 4, 3),
        (frame(3, token(3), b"{" + b" " * 2047 + b"}"), 7, 3),
        # Not JSON: no HTTP/2 request can carry it; decided locally.
        (frame(3, token(3), b"not json"), 255, 3),
        (enhanced(3, token(3)[:31]), 5, 3),
    ],
)
async def test_local_statuses_are_decided_while_parsing(pki, key, bad, status, identifier):
    with trio.fail_after(30):
        async with open_rig(pki, key) as rig:
            heard = await exchange(
                rig, frame(1, token(1)) + frame(2, token(2)) + bad + frame(4, token(4))
            )
    assert heard == error_frame(status, identifier)
    # Everything before it went through first; nothing after it did.
    assert rig.recorded() == [token(1).hex(), token(2).hex()]


async def test_command_0_and_1_are_forwarded_and_a_bad_command_0_closes_silently(pki, key):
    with trio.fail_after(30):
        async with open_rig(pki, key) as rig:
            stream = await rig.connect()
            await stream.send_all(simple(token(1)) + enhanced(2, token(2), expiry=1_900_000_000))
            await rig.sim.wait_for_accepted(2)
            await stream.aclose()
            heard = await exchange(rig, simple(token(3)) + simple(token(4)[:31]) + simple(token(5)))
    assert heard == b""
    assert rig.recorded() == [token(i).hex() for i in (1, 2, 3)]
    assert rig.sim.accepted[1].expiration == 1_900_000_000
    assert rig.sim.accepted[0].expiration == 0


async def test_expiry_and_priority_carry_over_and_a_background_push_gets_priority_5(pki, key):
    background = b'{"aps":{"content-available":1}}'
    with trio.fail_after(30):
        async with open_rig(pki, key) as rig:
            stream = await rig.connect()
            await stream.send_all(
                frame(1, token(1), expiry=1_800_000_000, priority=5)
                + frame(2, token(2), background, priority=10)
            )
            await rig.sim.wait_for_accepted(2)
            await stream.aclose()
    first, second = sorted(rig.sim.accepted, key=lambda r: r.token)
    assert (first.expiration, first.priority, first.push_type) == (1_800_000_000, 5, "alert")
    # content-available only: background, and priority 5 (HTTP/2 refuses 10 there).
    assert (second.priority, second.push_type) == (5, "background")


async def test_a_client_certificate_of_no_configured_app_gets_status_3(pki, key):
    stranger = pki.issue_client(topic="com.example.stranger")
    with trio.fail_after(30):
        async with open_rig(pki, key) as rig:
            stream = await rig.connect(stranger)
            await stream.send_all(frame(41, token(1)))
            heard = await read_all(stream)
            await stream.aclose()
            assert await rig.feedback(stranger) == b""
    assert heard == error_frame(3, 41)
    assert rig.recorded() == []


async def test_topic_disallowed_upstream_is_status_3(pki, key):
    # The simulator lets this team push only to another topic.
    sim = sim_config(key, team_topics={key.team_id: frozenset({"com.example.other"})})
    with trio.fail_after(30):
        async with open_rig(pki, key, sim=sim) as rig:
            heard = await exchange(rig, frame(1, token(1)) + frame(2, token(2)))
    assert heard == error_frame(3, 1)


async def test_credentials_refused_upstream_are_status_1_and_an_operator_alert(pki, key, caplog):
    # The simulator knows no signing key: InvalidProviderToken (403).
    with trio.fail_after(30):
        async with open_rig(pki, key, sim=sim_config(new_key())) as rig:
            heard = await exchange(rig, frame(1, token(1)) + frame(2, token(2)))
            alerts = rig.bridge.stats.alerts
    assert heard == error_frame(1, 1)
    assert alerts >= 1
    assert any(
        "InvalidProviderToken" in r.getMessage() for r in caplog.records if r.levelname == "ERROR"
    )


async def test_goaway_and_503_upstream_lose_nothing_and_show_the_client_nothing(pki, key):
    sim = sim_config(key, faults=Http2Faults(goaway_after=40, status_every=7, fault_status=503))
    count = 300
    with trio.fail_after(60):
        async with open_rig(pki, key, sim=sim) as rig:
            stream = await rig.connect()
            await stream.send_all(b"".join(frame(i, token(i)) for i in range(1, count + 1)))
            await rig.sim.wait_for_accepted(count)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(rig.bridge.stop)
                heard = await read_all(stream)
                await stream.aclose()
    assert heard == error_frame(10, count)
    recorded = rig.recorded()
    assert sorted(recorded) == sorted(token(i).hex() for i in range(1, count + 1))
    assert rig.sim.stats.goaways >= 2
    assert rig.sim.stats.by_reason.get("ServiceUnavailable", 0) >= 10


async def test_feedback_survives_a_restart_of_the_bridge(pki, key, tmp_path):
    path = tmp_path / "bridge.db"
    sim = sim_config(key, uninstalled_tokens={token(7).hex(): GONE_MS})
    with trio.fail_after(30):
        store = FeedbackStore(path)
        async with open_rig(pki, key, sim=sim, store=store) as rig:
            stream = await rig.connect()
            await stream.send_all(frame(1, token(7)))
            await rig.bridge.wait_for_feedback(1)
            await stream.aclose()
        store.close()
        store = FeedbackStore(path)
        assert store.sizes() == {TOPIC: 1}
        async with open_rig(pki, key, sim=sim, store=store) as rig:
            tuples = await rig.feedback()
        store.close()
    assert tuples == struct.pack("!IH", GONE_MS // 1000, 32) + token(7)
    assert FeedbackStore(path).sizes() == {}


async def test_a_small_window_slows_the_client_instead_of_buffering(pki, key):
    count = 200
    with trio.fail_after(30):
        async with open_rig(pki, key, max_in_flight=3) as rig:
            stream = await rig.connect()
            await stream.send_all(b"".join(frame(i, token(i)) for i in range(1, count + 1)))
            await rig.sim.wait_for_accepted(count)
            await stream.aclose()
    assert sorted(rig.recorded()) == sorted(token(i).hex() for i in range(1, count + 1))
    # Never more than the window's worth in flight: the rest waited in TCP buffers.
    assert rig.bridge.gateway.forwarded == count
    assert rig.bridge.gateway.peak_window == 3


async def test_metrics_and_health_on_their_own_port(pki, key):
    import httpx  # a client nobody here wrote

    sim = sim_config(key, invalid_tokens=[token(2)], uninstalled_tokens={token(3).hex(): GONE_MS})
    with trio.fail_after(30):
        async with open_rig(pki, key, sim=sim, metrics=("127.0.0.1", 0)) as rig:
            assert await exchange(rig, b"".join(frame(i, token(i)) for i in range(1, 5))) == (
                error_frame(8, 2)
            )
            await rig.bridge.wait_for_feedback(1)
            assert rig.bridge.metrics_address is not None
            host, port = rig.bridge.metrics_address
            async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as http:
                metrics = await http.get("/metrics")
                health = await http.get("/health")
                missing = await http.get("/nothing")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = metrics.text
    app = 'app="com.example.app"'
    assert (
        f'apns_bridge_upstream_outcomes_total{{{app},outcome="rejected",reason="BadDeviceToken"}} 1'
        in text
    )
    assert (
        f'apns_bridge_upstream_outcomes_total{{{app},outcome="rejected",reason="Unregistered"}} 1'
        in text
    )
    assert f'apns_bridge_upstream_outcomes_total{{{app},outcome="accepted",reason=""}} 2' in text
    assert 'apns_bridge_error_frames_total{status="8"} 1' in text
    assert f"apns_bridge_feedback_pending{{{app}}} 1" in text
    assert "apns_bridge_notifications_in_total 4" in text
    assert "apns_bridge_ledger_entries 2" in text  # 3 and 4 were forwarded after 2
    (server_days,) = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith('apns_bridge_certificate_expiry_days{what="server"}')
    ]
    assert 800 < server_days < 826
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert missing.status_code == 404


async def test_health_fails_while_apns_refuses_the_credentials(pki, key):
    import httpx

    with trio.fail_after(30):
        async with open_rig(pki, key, sim=sim_config(new_key()), metrics=("127.0.0.1", 0)) as rig:
            assert await exchange(rig, frame(1, token(1))) == error_frame(1, 1)
            assert rig.bridge.metrics_address is not None
            host, port = rig.bridge.metrics_address
            async with httpx.AsyncClient() as http:
                health = await http.get(f"http://{host}:{port}/health")
    assert health.status_code == 503
    document = health.json()
    assert document["status"] == "failing"
    assert "InvalidProviderToken" in document["apps"]["com.example.app"]


async def test_reload_adds_an_app_without_dropping_open_connections(pki, key):
    other = pki.issue_client(topic="com.example.other")
    with trio.fail_after(30):
        async with open_rig(pki, key) as rig:
            # Open before the reload, and it stays open across it.
            kept = await rig.connect()
            await kept.send_all(frame(1, token(1)))
            await rig.sim.wait_for_accepted(1)
            assert await exchange_with(rig, other, frame(5, token(50))) == error_frame(3, 5)
            config = attrs.evolve(
                rig.bridge.config,
                apps=[
                    *rig.bridge.config.apps,
                    AppConfig(topic="com.example.other", provider_key=key),
                ],
                gateway=("127.0.0.1", 1),  # cannot change without a restart
                max_in_flight=7,
            )
            notes = await rig.bridge.reload(config)
            assert notes == [
                "gateway needs a restart to change; still ('127.0.0.1', 0)",
                "app com.example.other: added",
            ]
            assert rig.bridge.config.max_in_flight == 7
            stream = await rig.connect(other)
            await stream.send_all(frame(6, token(51)))
            await kept.send_all(frame(2, token(2)))
            await rig.sim.wait_for_accepted(3)
            await stream.aclose()
            await kept.aclose()
    topics = {r.token: r.topic for r in rig.sim.accepted}
    assert topics == {
        token(1).hex(): TOPIC,
        token(2).hex(): TOPIC,
        token(51).hex(): "com.example.other",
    }


async def test_reload_with_new_credentials_moves_even_open_connections_to_them(pki, key):
    fresh = new_key()
    sim = sim_config(key)
    sim = attrs.evolve(
        sim,
        provider_keys={
            (key.team_id, key.key_id): key.public_key,
            ("FRESHTEAM1", "FRESHKEY01"): fresh.public_key,
        },
    )
    fresh = ProviderKey(key_id="FRESHKEY01", team_id="FRESHTEAM1", private_key=fresh.private_key)
    with trio.fail_after(30):
        async with open_rig(pki, key, sim=sim) as rig:
            old_stream = await rig.connect()
            await old_stream.send_all(frame(1, token(1)))
            await rig.sim.wait_for_accepted(1)
            (old_route,) = rig.bridge.routes()
            config = attrs.evolve(
                rig.bridge.config, apps=[AppConfig(topic=TOPIC, provider_key=fresh)]
            )
            assert await rig.bridge.reload(config) == ["app com.example.app (production): changed"]
            await old_route.closed.wait()  # nothing was in flight: the old sender closed
            new_stream = await rig.connect()
            await new_stream.send_all(frame(1, token(2)))
            await old_stream.send_all(frame(2, token(3)))
            await rig.sim.wait_for_accepted(3)
            await old_stream.aclose()
            await new_stream.aclose()
            assert rig.bridge.routes(retired=True) == []
    teams = {r.token: r.team_id for r in rig.sim.accepted}
    # The connection opened before the reload is still open, on the new key.
    assert teams == {
        token(1).hex(): key.team_id,
        token(2).hex(): "FRESHTEAM1",
        token(3).hex(): "FRESHTEAM1",
    }


async def test_an_upstream_that_was_down_is_tried_again_and_the_app_recovers(pki, key):
    import httpx

    with socket.socket() as probe:  # a free port, with nothing listening on it yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pki_up = make_test_pki()
    upstream = UpstreamConfig(
        host="localhost", port=port, ca=pki_up.ca_pem(), retry_delay=0.01, max_retry_delay=0.05
    )
    config = attrs.evolve(
        bridge_config(pki, None, key, upstream=upstream), metrics=("127.0.0.1", 0)
    )
    with trio.fail_after(30):
        async with open_bridge(config) as bridge:
            rig = Rig(bridge, None, pki, pki.client)
            # Nothing listens upstream: the sender gives up; the client hears status 1.
            assert await exchange(rig, frame(1, token(1))) == error_frame(1, 1)
            assert bridge.metrics_address is not None
            host, metrics_port = bridge.metrics_address
            async with httpx.AsyncClient() as http:
                down = await http.get(f"http://{host}:{metrics_port}/health")
            assert down.status_code == 503
            assert "cannot connect" in down.json()["apps"][TOPIC]
            # "Apple" comes back on that port; the client resends; the app recovers.
            async with open_http2_simulator(
                attrs.evolve(sim_config(key), port=port), pki=pki_up
            ) as sim:
                stream = await rig.connect()
                await stream.send_all(frame(2, token(1)))
                await sim.wait_for_accepted(1)
                await stream.aclose()
                async with httpx.AsyncClient() as http:
                    up = await http.get(f"http://{host}:{metrics_port}/health")
    assert up.status_code == 200
    assert [r.token for r in sim.accepted] == [token(1).hex()]


async def test_a_wallet_pass_topic_goes_as_a_background_push_with_an_empty_aps(pki, key):
    pass_topic = "pass.com.example.member"
    member = pki.issue_client(topic=pass_topic, pass_type=True)
    apps = [AppConfig(topic=pass_topic, provider_key=key)]
    with trio.fail_after(30):
        async with open_rig(pki, key, apps=apps) as rig:
            stream = await rig.connect(member)
            # A binary-era pass push: {"aps":""} (any payload: the device fetches the pass).
            await stream.send_all(frame(1, token(1), b'{"aps":""}'))
            await rig.sim.wait_for_accepted(1)
            await stream.aclose()
            (route,) = rig.bridge.routes()
    (record,) = rig.sim.accepted
    assert (record.topic, record.push_type, record.priority) == (pass_topic, "background", 5)
    assert record.payload == '{"aps":{}}'
    assert route.environment.value == "production"


async def test_the_client_certificates_environment_chooses_the_upstream_environment(pki, key):
    sandbox_only = pki.issue_client(topic=TOPIC, environments=[Environment.SANDBOX])
    with trio.fail_after(30):
        async with open_rig(pki, key) as rig:
            stream = await rig.connect(sandbox_only)
            await stream.send_all(frame(1, token(1)))
            await rig.sim.wait_for_accepted(1)
            await stream.aclose()
            environments = sorted(r.environment.value for r in rig.bridge.routes())
    # The app's production sender from the start, and a sandbox one for this client.
    assert environments == ["production", "sandbox"]


async def test_a_replaced_sender_that_cannot_finish_answers_its_notifications_with_status_1(
    pki, key
):
    # "Apple" answers 503 to everything; the sender keeps retrying. A reload replaces the
    # app's sender; past drain_timeout the old one is closed, and the notification it
    # could not deliver is reported to the client (status 1), not left hanging.
    sim = sim_config(key, faults=Http2Faults(status_every=1, fault_status=503))
    with trio.fail_after(30):
        async with open_http2_simulator(sim) as simulator:
            assert simulator.pki is not None
            upstream = UpstreamConfig(
                host="localhost",
                port=simulator.port,
                ca=simulator.pki.ca_pem(),
                max_attempts=100,
                retry_delay=0.2,
                max_retry_delay=0.5,
            )
            config = bridge_config(pki, simulator, key, upstream=upstream, drain_timeout=0.3)
            async with open_bridge(config) as bridge:
                rig = Rig(bridge, simulator, pki, pki.client)
                stream = await rig.connect()
                await stream.send_all(frame(7, token(1)))
                await bridge.wait_for_forwarded(1)
                changed = attrs.evolve(
                    config, apps=[AppConfig(topic=TOPIC, provider_key=new_key())]
                )
                await bridge.reload(changed)
                heard = await read_all(stream)
                await stream.aclose()
    assert heard == error_frame(1, 7)
    assert simulator.stats.accepted == 0


async def test_certificate_auth_upstream(pki, key):
    # The app's upstream credential is a push certificate (a copy of the topic's .p12 on
    # the bridge), not a .p8 key: APNs takes the topic from it.
    upstream_pki = make_test_pki(topic=TOPIC)
    apps = [AppConfig(topic=TOPIC, credentials=upstream_pki.client)]
    with trio.fail_after(30):
        async with open_http2_simulator(sim_config(key), pki=upstream_pki) as simulator:
            config = bridge_config(pki, simulator, key, apps=apps)
            async with open_bridge(config) as bridge:
                rig = Rig(bridge, simulator, pki, pki.client)
                stream = await rig.connect()
                await stream.send_all(frame(1, token(1)))
                await simulator.wait_for_accepted(1)
                await stream.aclose()
    (record,) = simulator.accepted
    assert (record.auth, record.topic) == ("certificate", TOPIC)


async def test_the_replay_ledger_survives_a_restart_of_the_bridge(pki, key, tmp_path):
    # As the replay test above, but the bridge restarts (same store file) between the
    # client's status 8 and its replay: the second bridge reads the ledger back, so
    # 6, 7, 9 and 10 are not sent to Apple again and 8's failure is still reported.
    path = tmp_path / "bridge.db"
    sim = sim_config(key, invalid_tokens=[token(5), token(8)])
    with trio.fail_after(30):
        async with open_http2_simulator(sim) as simulator:
            config = bridge_config(pki, simulator, key)
            store = FeedbackStore(path)
            async with open_bridge(config, store=store) as bridge:
                rig = Rig(bridge, simulator, pki, pki.client)
                first = await exchange(rig, b"".join(frame(i, token(i)) for i in range(1, 11)))
            store.close()
            assert first == error_frame(8, 5)
            assert len(simulator.accepted) == 8
            store = FeedbackStore(path)
            assert len(store.load_ledger(time.time())) == 5  # 6..10, forwarded after 5
            async with open_bridge(config, store=store) as bridge:
                rig = Rig(bridge, simulator, pki, pki.client)
                second = await exchange(
                    rig, b"".join(frame(100 + n, token(i)) for n, i in enumerate(range(6, 11), 1))
                )
                stream = await rig.connect()
                await stream.send_all(
                    frame(201, token(9)) + frame(202, token(10)) + frame(203, token(11))
                )
                await simulator.wait_for_accepted(9)
                await stream.aclose()
                matched = bridge.gateway.replay_matched
            # Everything was taken: the snapshot written at the stop holds nothing.
            assert store.load_ledger(time.time()) == []
            store.close()
    assert second == error_frame(8, 103)
    assert matched == 5
    recorded = [r.token for r in simulator.accepted]
    assert sorted(recorded) == sorted(token(i).hex() for i in (1, 2, 3, 4, 6, 7, 9, 10, 11))
    assert len(recorded) == len(set(recorded)) == 9
    assert simulator.stats.by_reason == {"BadDeviceToken": 2}


async def test_the_replay_ledger_is_saved_about_once_a_second_while_the_bridge_runs(
    pki, key, tmp_path, mock_clock
):
    # Not only at the stop: a bridge that crashes keeps what the last snapshot held.
    # The clock runs at real speed and is pushed past the interval by hand; the store
    # is read while the bridge is still up.
    from apns_legacy.bridge._bridge import LEDGER_SAVE_INTERVAL

    mock_clock.rate = 1.0
    path = tmp_path / "bridge.db"
    sim = sim_config(key, invalid_tokens=[token(5)])
    with trio.fail_after(30):
        async with open_http2_simulator(sim) as simulator:
            store = FeedbackStore(path)
            async with open_bridge(bridge_config(pki, simulator, key), store=store) as bridge:
                rig = Rig(bridge, simulator, pki, pki.client)
                answer = await exchange(rig, b"".join(frame(i, token(i)) for i in range(1, 8)))
                assert answer == error_frame(8, 5)
                mock_clock.jump(LEDGER_SAVE_INTERVAL)
                await trio.testing.wait_all_tasks_blocked()
                saved = store.load_ledger(time.time())
                assert [row[1] for row in saved] == [token(i) for i in (6, 7)]
                # Entries taken by the replay leave the next snapshot too (8 is new:
                # once Apple has it, the replayed 6 and 7 before it were matched).
                stream = await rig.connect()
                await stream.send_all(
                    frame(20, token(6)) + frame(21, token(7)) + frame(22, token(8))
                )
                await simulator.wait_for_accepted(7)
                await stream.aclose()
                assert bridge.gateway.replay_matched == 2
                mock_clock.jump(LEDGER_SAVE_INTERVAL)
                await trio.testing.wait_all_tasks_blocked()
                assert store.load_ledger(time.time()) == []
            store.close()
