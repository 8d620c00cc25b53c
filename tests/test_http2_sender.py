"""The HTTP/2 sender against the HTTP/2 simulator over real TLS on 127.0.0.1."""

from __future__ import annotations

import collections
import datetime as dt
from functools import partial

import attrs
import pytest
import trio
from cryptography.hazmat.primitives.asymmetric import ec

from apns_legacy.client import (
    Evidence,
    Http2SenderConfig,
    OutcomeKind,
    StoreKeeper,
    TokenStore,
    open_http2_sender,
)
from apns_legacy.h2wire import AppSettings, ProviderKey
from apns_legacy.simulator import Http2Faults, Http2SimulatorConfig, open_http2_simulator
from apns_legacy.tls import make_test_pki
from apns_legacy.wire import DeviceToken, Notification

TOPIC = "com.example.app"
PAYLOAD = b'{"aps":{"alert":"hi"}}'
GONE_MS = 1_454_402_113_123


def token(i: int) -> DeviceToken:
    return DeviceToken.from_bytes(i.to_bytes(32, "big"))


@pytest.fixture(scope="module")
def pki():
    return make_test_pki()


def sim_config(key, **changes) -> Http2SimulatorConfig:
    return Http2SimulatorConfig(
        provider_keys={(key.team_id, key.key_id): key.public_key},
        invalid_tokens=[token(3).value],
        uninstalled_tokens={token(5).value.hex(): GONE_MS},
        **changes,
    )


def sender_config(sim, *, key=None, credentials=None, **changes) -> Http2SenderConfig:
    return Http2SenderConfig(
        host="localhost",
        port=sim.port,
        ca=sim.pki.ca_pem(),
        settings=AppSettings(topic=TOPIC),
        provider_key=key,
        credentials=credentials,
        retry_delay=0.001,
        **changes,
    )


async def send(config, count: int):
    outcomes = []
    with trio.fail_after(60):
        async with open_http2_sender(config) as sender:
            for i in range(count):
                outcomes.append(
                    await sender.submit(Notification(token=token(i), payload=PAYLOAD), tag=i)
                )
    return sender, outcomes


async def test_token_auth_accepted_rejected_and_410(key, pki):
    async with open_http2_simulator(sim_config(key), pki=pki) as sim:
        sender, outcomes = await send(sender_config(sim, key=key), 20)
    kinds = collections.Counter(o.kind for o in outcomes)
    assert kinds == {OutcomeKind.ACCEPTED: 18, OutcomeKind.REJECTED: 2}
    bad, gone = outcomes[3], outcomes[5]
    assert (bad.status, bad.reason) == (400, "BadDeviceToken")
    assert (gone.status, gone.reason) == (410, "Unregistered")
    assert gone.timestamp == dt.datetime(2016, 2, 2, 8, 35, 13, 123000, tzinfo=dt.UTC)
    assert gone.to_json()["timestamp"] == "2016-02-02T08:35:13.123000+00:00"
    assert all(o.evidence is Evidence.CONFIRMED and o.apns_id for o in outcomes if o.accepted)
    assert sorted(r.token for r in sim.accepted) == sorted(
        token(i).value.hex() for i in range(20) if i not in (3, 5)
    )
    assert sender.stats.accepted == 18
    assert sender.stats.rejected == 2
    assert sender.stats.rejected_by_status == {400: 1, 410: 1}
    assert sender.rejected_by_reason == {"BadDeviceToken": 1, "Unregistered": 1}
    assert sender.stats.connections_opened == 1


async def test_certificate_auth(key, pki):
    async with open_http2_simulator(sim_config(key), pki=pki) as sim:
        _sender, outcomes = await send(sender_config(sim, credentials=pki.client), 10)
    assert sum(o.accepted for o in outcomes) == 8
    assert {r.auth for r in sim.accepted} == {"certificate"}


@pytest.mark.parametrize("connections", [1, 4])
async def test_goaway_refused_and_503_every_notification_once(key, pki, connections):
    faults = Http2Faults(goaway_after=60, status_every=7, refuse_every=11)
    async with open_http2_simulator(sim_config(key, faults=faults), pki=pki) as sim:
        sender, outcomes = await send(
            sender_config(sim, key=key, connections=connections, max_attempts=10), 500
        )
    kinds = collections.Counter(o.kind for o in outcomes)
    assert kinds == {OutcomeKind.ACCEPTED: 498, OutcomeKind.REJECTED: 2}
    recorded = collections.Counter(r.token for r in sim.accepted)
    assert len(recorded) == 498
    assert set(recorded.values()) == {1}  # none twice
    assert sender.stats.possible_duplicates == 0
    assert sim.stats.goaways >= 500 // 60 - 1
    assert sim.stats.refused_streams > 0
    assert sim.stats.by_reason["ServiceUnavailable"] > 0
    assert sender.stats.replayed > 0


async def test_dropped_connection_resends_as_possible_duplicates(key, pki):
    faults = Http2Faults(drop_after=30)
    async with open_http2_simulator(sim_config(key, faults=faults), pki=pki) as sim:
        sender, outcomes = await send(sender_config(sim, key=key), 200)
    assert sum(o.accepted for o in outcomes) == 198
    assert {r.token for r in sim.accepted} == {
        token(i).value.hex() for i in range(200) if i not in (3, 5)
    }
    assert sim.stats.drops == 1
    assert sender.stats.reconnects >= 1
    assert sender.stats.possible_duplicates == sum(o.possible_duplicate for o in outcomes) > 0


async def test_unknown_key_fails_everything_fast_with_one_message(key, pki):
    stranger = ProviderKey(
        key_id="STRANGER12",
        team_id=key.team_id,
        private_key=ec.generate_private_key(ec.SECP256R1()),
    )
    async with open_http2_simulator(sim_config(key), pki=pki) as sim:
        sender, outcomes = await send(sender_config(sim, key=stranger), 50)
    assert sender.fatal_error == "APNs refused the credentials or topic: 403 InvalidProviderToken"
    assert {o.kind for o in outcomes} == {OutcomeKind.FAILED}
    assert {o.reason for o in outcomes} == {
        "APNs refused the credentials or topic: 403 InvalidProviderToken"
    }
    assert sim.stats.requests == 1
    assert sim.accepted == []


async def test_payload_over_the_limit_fails_before_sending(key, pki):
    big = b'{"aps":{"alert":"' + b"x" * 4100 + b'"}}'
    async with open_http2_simulator(sim_config(key), pki=pki) as sim:
        with trio.fail_after(30):
            async with open_http2_sender(sender_config(sim, key=key)) as sender:
                outcome = await sender.submit(Notification(token=token(1), payload=big))
                ok = await sender.submit(Notification(token=token(2), payload=PAYLOAD))
    assert outcome.kind is OutcomeKind.FAILED
    assert "the limit for apns-push-type alert is 4096" in outcome.reason
    assert ok.accepted
    assert sim.stats.requests == 1


def test_config_needs_exactly_one_kind_of_auth(key):
    with pytest.raises(ValueError, match="exactly one of provider_key and credentials"):
        Http2SenderConfig(settings=AppSettings(topic=TOPIC))
    with pytest.raises(ValueError, match=r"token auth needs settings\.topic"):
        Http2SenderConfig(provider_key=key)


async def submit_and_settle(sender, i: int):
    outcome = await sender.submit(Notification(token=token(i), payload=PAYLOAD))
    with trio.fail_after(10):
        while outcome.kind is OutcomeKind.PENDING:
            await sender._ledger.wait_settled()
    return outcome


async def test_expired_provider_token_gets_a_new_token_and_connection(key, pki):
    # The server calls tokens stale after 30 minutes; the sender would keep one for 50.
    now = [1_700_000_000.0]
    config = sim_config(key, token_max_age=30 * 60)
    async with open_http2_simulator(config, pki=pki, clock=lambda: now[0]) as sim:
        sender_conf = attrs.evolve(sender_config(sim, key=key), clock=lambda: now[0])
        async with open_http2_sender(sender_conf) as sender:
            assert (await submit_and_settle(sender, 10)).accepted
            now[0] += 31 * 60
            outcome = await submit_and_settle(sender, 11)
    assert outcome.accepted
    assert sim.stats.by_reason == {"ExpiredProviderToken": 1}
    assert sender.stats.connections_opened == 2
    assert len({r.connection for r in sim.accepted}) == 2


async def test_too_many_provider_token_updates_moves_to_a_new_connection(key, pki):
    # The server wants 55 minutes between token changes on a connection; the sender's
    # cache replaces its token after 50: the correct-timing case of pushy#811.
    now = [1_700_000_000.0]
    config = sim_config(key, token_update_interval=55 * 60)
    async with open_http2_simulator(config, pki=pki, clock=lambda: now[0]) as sim:
        sender_conf = attrs.evolve(sender_config(sim, key=key), clock=lambda: now[0])
        async with open_http2_sender(sender_conf) as sender:
            assert (await submit_and_settle(sender, 10)).accepted
            now[0] += 50 * 60
            outcome = await submit_and_settle(sender, 11)
    assert outcome.accepted
    assert not outcome.possible_duplicate
    assert sim.stats.by_reason == {"TooManyProviderTokenUpdates": 1}
    assert sender.stats.connections_opened == 2


@pytest.mark.parametrize(("connections", "goaway_after"), [(1, 3000), (4, 1000)])
async def test_ten_thousand_with_goaways_each_recorded_exactly_once(
    key, pki, connections, goaway_after
):
    # The acceptance case: 10,000 notifications, 3 BadDeviceToken and 5
    # Unregistered tokens, GOAWAY after a number of answers on each connection.
    bad = [3, 4_444, 9_001]
    gone = [5, 1_000, 3_001, 6_000, 9_999]
    config = Http2SimulatorConfig(
        provider_keys={(key.team_id, key.key_id): key.public_key},
        invalid_tokens=[token(i).value for i in bad],
        uninstalled_tokens={token(i).value.hex(): GONE_MS for i in gone},
        faults=Http2Faults(goaway_after=goaway_after),
    )
    async with open_http2_simulator(config, pki=pki) as sim:
        sender, outcomes = await send(sender_config(sim, key=key, connections=connections), 10_000)
    recorded = collections.Counter(r.token for r in sim.accepted)
    assert len(recorded) == 9_992
    assert set(recorded.values()) == {1}
    assert [i for i, o in enumerate(outcomes) if o.reason == "BadDeviceToken"] == bad
    unregistered = [i for i, o in enumerate(outcomes) if o.reason == "Unregistered"]
    assert unregistered == gone
    assert all(outcomes[i].timestamp is not None for i in gone)
    assert sum(o.accepted for o in outcomes) == 9_992
    assert sender.stats.pending == 0
    assert sender.stats.possible_duplicates == 0
    assert sim.stats.goaways >= 3


# -- against an HTTP/2 server nobody here wrote: hypercorn (h2 inside, ASGI app) ----------


async def test_sender_against_hypercorn(key, tmp_path):
    pytest.importorskip("hypercorn")
    from hypercorn.config import Config
    from hypercorn.trio import serve

    files = make_test_pki().write(tmp_path / "pki", p12_passphrase=b"x")
    seen: list[tuple[str, dict[str, str], bytes]] = []

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        seen.append((scope["http_version"], headers, body))
        device = scope["path"].rsplit("/", 1)[1]
        if device == token(3).value.hex():
            status, answer = 400, b'{"reason":"BadDeviceToken"}'
        elif device == token(5).value.hex():
            status, answer = 410, b'{"reason":"Unregistered","timestamp":1454402113123}'
        else:
            status, answer = 200, b""
        response_headers = [(b"apns-id", b"eabeae54-14a8-11e5-b60b-1697f925ec7b")]
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": answer})

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.certfile = str(files["server.pem"])
    config.keyfile = str(files["server-key.pem"])
    config.alpn_protocols = ["h2"]
    stop = trio.Event()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(partial(serve, app, config, shutdown_trigger=stop.wait))
            port = int(binds[0].rsplit(":", 1)[1])
            sender_conf = Http2SenderConfig(
                host="localhost",
                port=port,
                ca=files["ca.pem"].read_bytes(),
                provider_key=key,
                settings=AppSettings(topic=TOPIC),
            )
            outcomes = []
            async with open_http2_sender(sender_conf) as sender:
                for i in range(8):
                    outcomes.append(
                        await sender.submit(Notification(token=token(i), payload=PAYLOAD))
                    )
            stop.set()
    assert [o.kind for o in outcomes].count(OutcomeKind.ACCEPTED) == 6
    assert (outcomes[3].status, outcomes[3].reason) == (400, "BadDeviceToken")
    assert (outcomes[5].status, outcomes[5].reason) == (410, "Unregistered")
    assert outcomes[5].timestamp == dt.datetime(2016, 2, 2, 8, 35, 13, 123000, tzinfo=dt.UTC)
    assert {version for version, _, _ in seen} == {"2"}
    assert all(h["authorization"].startswith("bearer ey") for _, h, _ in seen)
    assert {h["apns-topic"] for _, h, _ in seen} == {TOPIC}
    assert {body for _, _, body in seen} == {PAYLOAD}


async def test_tiny_flow_control_window_sends_bodies_in_pieces(key, pki):
    # Each stream may carry 7 bytes until the server's WINDOW_UPDATE: every payload
    # (22 bytes, and one of 3,000) goes out in pieces, none is refused or lost.
    big = b'{"aps":{"alert":"' + b"x" * 2980 + b'"}}'
    async with open_http2_simulator(sim_config(key, initial_window_size=7), pki=pki) as sim:
        with trio.fail_after(30):
            async with open_http2_sender(sender_config(sim, key=key)) as sender:
                outcomes = [
                    await sender.submit(Notification(token=token(i), payload=PAYLOAD))
                    for i in range(20)
                ]
                outcomes.append(await sender.submit(Notification(token=token(99), payload=big)))
    assert sum(o.accepted for o in outcomes) == 19
    assert outcomes[-1].accepted
    payloads = {r.token: r.payload for r in sim.accepted}
    assert payloads[token(99).value.hex()] == big.decode()
    assert payloads[token(0).value.hex()] == PAYLOAD.decode()


@pytest.mark.parametrize("connections", [1, 3])
async def test_stream_limit_lowered_to_one_after_each_rejection(key, pki, connections):
    # APNs drops SETTINGS_MAX_CONCURRENT_STREAMS to 1 after a rejection, with many
    # streams open, and restores it after a success: the sender follows, never opening
    # more streams than allowed (the simulator would answer with a GOAWAY).
    bad = list(range(3, 400, 37))
    config = Http2SimulatorConfig(
        provider_keys={(key.team_id, key.key_id): key.public_key},
        invalid_tokens=[token(i).value for i in bad],
        lower_after_rejection=True,
        # Bodies wait for WINDOW_UPDATE between streams of one batch, so that the
        # lowered limit arrives while a batch is being written.
        initial_window_size=7,
    )
    async with open_http2_simulator(config, pki=pki) as sim:
        _sender, outcomes = await send(sender_config(sim, key=key, connections=connections), 400)
    assert [i for i, o in enumerate(outcomes) if o.reason == "BadDeviceToken"] == bad
    assert sum(o.accepted for o in outcomes) == 400 - len(bad)
    assert sim.stats.protocol_errors == 0
    assert sim.stats.goaways == 0
    assert len({r.token for r in sim.accepted}) == len(sim.accepted) == 400 - len(bad)


async def test_on_outcome_is_called_once_for_each_notification(key, pki):
    seen = []
    async with open_http2_simulator(sim_config(key), pki=pki) as sim:
        with trio.fail_after(60):
            async with open_http2_sender(
                sender_config(sim, key=key), on_outcome=seen.append
            ) as sender:
                for i in range(8):
                    await sender.submit(Notification(token=token(i), payload=PAYLOAD), tag=i)
    assert sorted(o.tag for o in seen) == list(range(8))
    assert {o.tag: o.kind for o in seen}[3] is OutcomeKind.REJECTED
    with pytest.raises(RuntimeError):
        async for _ in sender.outcomes():
            pass


async def test_submit_nowait_queues_while_there_is_room(key, pki):
    async with open_http2_simulator(sim_config(key), pki=pki) as sim:
        with trio.fail_after(60):
            async with open_http2_sender(sender_config(sim, key=key, queue_size=2)) as sender:
                first = sender.submit_nowait(Notification(token=token(10), payload=PAYLOAD))
                second = sender.submit_nowait(Notification(token=token(11), payload=PAYLOAD))
                with pytest.raises(trio.WouldBlock):  # no checkpoint yet: the queue is full
                    sender.submit_nowait(Notification(token=token(12), payload=PAYLOAD))
                third = await sender.submit(Notification(token=token(12), payload=PAYLOAD))
    assert [o.kind for o in (first, second, third)] == [OutcomeKind.ACCEPTED] * 3
    assert sorted(r.token for r in sim.accepted) == [token(i).value.hex() for i in (10, 11, 12)]
    assert sender.fatal_error is None


async def test_store_keeper_records_bad_device_tokens_and_applies_410s_as_feedback(
    key, pki, tmp_path
):
    # StoreKeeper given to open_http2_sender: 400 BadDeviceToken deactivates the token;
    # a 410 deactivates it only if the device has not registered again since the 410's
    # timestamp (2016 here), as a feedback tuple would.
    gone_at = GONE_MS // 1000
    config = attrs.evolve(
        sim_config(key), uninstalled_tokens={token(i).value.hex(): GONE_MS for i in (5, 7)}
    )
    with TokenStore(tmp_path / "devices.db") as store, StoreKeeper(store) as keeper:
        store.register_many([token(i) for i in range(10)], at=gone_at - 86_400)
        store.register(token(7), at=gone_at + 86_400)  # registered again after the 410
        async with open_http2_simulator(config, pki=pki) as sim:
            with trio.fail_after(60):
                async with open_http2_sender(
                    sender_config(sim, key=key), on_outcome=keeper.on_outcome
                ) as sender:
                    for i in range(10):
                        await sender.submit(Notification(token=token(i), payload=PAYLOAD))
        assert (keeper.rejected, keeper.gone) == (1, 2)
    with TokenStore(tmp_path / "devices.db") as store:
        inactive = {d.token: d.deactivated_reason for d in store.devices("deactivated")}
        assert (keeper.deactivated, keeper.reregistered) == (2, 1)
        assert inactive == {token(3): "invalid-token", token(5): "feedback"}
