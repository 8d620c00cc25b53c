"""The sender against our simulator, over real TLS on 127.0.0.1 (issue scenarios).

Each test checks the delivery invariant: every submitted notification has exactly one
outcome, submitted == accepted + rejected + failed, and what the simulator recorded
agrees with the outcomes (none lost; duplicates only where the sender says "possible").
"""

from __future__ import annotations

import collections
import datetime as dt

import attrs
import pytest
import trio

from apns_legacy import (
    Command,
    DeviceToken,
    Evidence,
    Notification,
    OutcomeKind,
    SenderConfig,
    open_sender,
    send_all,
)
from apns_legacy.simulator import Fault, FaultScope, open_simulator
from apns_legacy.tls import Environment, client_context, open_tls_stream


def token_for(i: int) -> DeviceToken:
    return DeviceToken(i.to_bytes(4, "big") * 8)


def notifications(n: int) -> list[Notification]:
    return [
        Notification(token=token_for(i), payload=b'{"aps":{"alert":"n%d"}}' % i) for i in range(n)
    ]


FAST = SenderConfig(backoff_initial=0.01, error_wait=0.3)


async def run(sim, items, config=FAST, context=None):
    outcomes = []
    context = context or sim.client_context()
    host, port = sim.gateway_address
    with trio.fail_after(60):
        async with open_sender(
            context, host=host, port=port, server_hostname="localhost", config=config,
            on_outcome=outcomes.append,
        ) as sender:  # fmt: skip
            for i, notification in enumerate(items):
                await sender.submit(notification, tag=i)
            await sender.flush(confirm=config.command is not Command.SIMPLE)
    stats = sender.stats
    assert len(outcomes) == len(items) == stats.submitted
    assert stats.submitted == stats.accepted + stats.rejected + stats.failed
    assert sorted(o.tag for o in outcomes) == list(range(len(items)))
    return {o.tag: o for o in outcomes}, stats


def recorded_counts(sim) -> collections.Counter[str]:
    return collections.Counter(record.token for record in sim.accepted)


@pytest.mark.parametrize(
    ("connections", "command"),
    [(1, Command.FRAME), (4, Command.FRAME), (1, Command.ENHANCED), (4, Command.ENHANCED)],
)
async def test_ten_thousand_with_three_invalid_tokens(pki, connections, command):
    items = notifications(10_000)
    bad = {2_000, 5_000, 7_500}
    async with open_simulator(pki=pki, invalid_tokens=[token_for(i).value for i in bad]) as sim:
        config = SenderConfig(backoff_initial=0.01, connections=connections, command=command)
        outcomes, stats = await run(sim, items, config)
        counts = recorded_counts(sim)
    rejected = {i for i, o in outcomes.items() if o.kind is OutcomeKind.REJECTED}
    assert rejected == bad
    assert all(outcomes[i].status == 8 for i in bad)
    accepted = [i for i, o in outcomes.items() if o.accepted]
    assert len(accepted) == 9_997
    # Every accepted notification was recorded exactly once, and nothing else was.
    assert counts == collections.Counter(token_for(i).hex for i in accepted)
    assert stats.possible_duplicates == 0
    assert stats.replayed > 0


SHAPES = pytest.mark.parametrize(
    ("connections", "command"), [(1, Command.FRAME), (4, Command.FRAME), (1, Command.ENHANCED)]
)


@SHAPES
async def test_shutdown_after_n_replays_the_rest_without_loss(pki, connections, command):
    items = notifications(3_000)
    config = SenderConfig(backoff_initial=0.01, connections=connections,
                          command=command)  # fmt: skip
    fault = Fault.shutdown_after(1_000, per=FaultScope.SERVER)
    async with open_simulator(pki=pki, faults=[fault]) as sim:
        outcomes, stats = await run(sim, items, config)
        counts = recorded_counts(sim)
        errors = list(sim.errors_sent)
    assert all(o.accepted for o in outcomes.values())
    assert 10 in [e.status for e in errors]
    # The one named by status 10 is accepted as such, not resent.
    shutdown = [o for o in outcomes.values() if o.evidence is Evidence.SHUTDOWN]
    assert len(shutdown) >= 1
    assert counts == collections.Counter(token_for(i).hex for i in range(3_000))
    assert stats.possible_duplicates == 0
    assert stats.replayed > 0


@SHAPES
async def test_abrupt_reset_mid_stream_loses_nothing(pki, connections, command):
    items = notifications(3_000)
    config = SenderConfig(backoff_initial=0.01, connections=connections,
                          command=command)  # fmt: skip
    async with open_simulator(pki=pki, faults=[Fault.reset_after(notifications=1_200)]) as sim:
        outcomes, stats = await run(sim, items, config)
        counts = recorded_counts(sim)
    assert all(o.accepted for o in outcomes.values())
    # Nothing lost; duplicates only among those the sender flagged as possible.
    assert set(counts) == {token_for(i).hex for i in range(3_000)}
    duplicated = {t for t, c in counts.items() if c > 1}
    flagged = {o.notification.token.hex for o in outcomes.values() if o.possible_duplicate}
    assert duplicated <= flagged
    assert stats.possible_duplicates >= len(duplicated)


async def test_resets_on_every_connection_are_not_mistaken_for_wrong_environment(pki):
    # A gateway that resets every connection after 400 notifications: the sender keeps
    # going. What is accepted was recorded; what failed rode max_losses dead
    # connections; nothing is without an outcome, and nothing is called a certificate
    # problem.
    items = notifications(2_000)
    fault = Fault.reset_after(notifications=400, times=None)
    async with open_simulator(pki=pki, faults=[fault]) as sim:
        outcomes, stats = await run(sim, items)
        counts = recorded_counts(sim)
    assert stats.accepted > 0
    for o in outcomes.values():
        if o.accepted:
            assert counts[o.notification.token.hex] >= 1
        else:
            assert o.kind is OutcomeKind.FAILED
            assert "connections that died" in o.reason


async def test_delayed_error_response_still_pinpoints(pki):
    items = notifications(500)
    async with open_simulator(
        pki=pki, invalid_tokens=[token_for(250).value], faults=[Fault.delay_errors(0.2)]
    ) as sim:
        outcomes, stats = await run(sim, items, SenderConfig())
        counts = recorded_counts(sim)
    assert [i for i, o in outcomes.items() if not o.accepted] == [250]
    assert sum(counts.values()) == 499
    assert stats.possible_duplicates == 0


async def test_slow_reader_back_pressure(pki):
    items = notifications(2_000)
    async with open_simulator(pki=pki, faults=[Fault.slow_reader(200_000)]) as sim:
        outcomes, _ = await run(sim, items, SenderConfig(window_size=500))
        counts = recorded_counts(sim)
    assert all(o.accepted for o in outcomes.values())
    assert counts == collections.Counter(token_for(i).hex for i in range(2_000))


async def test_refused_handshakes_are_retried(pki):
    items = notifications(10)
    async with open_simulator(pki=pki, faults=[Fault.refuse_handshake(times=2)]) as sim:
        outcomes, stats = await run(sim, items)
    assert all(o.accepted for o in outcomes.values())
    assert stats.connect_failures == 2


async def test_gateway_that_never_completes_handshake_fails_after_retry_limit(pki):
    items = notifications(5)
    config = SenderConfig(max_connect_attempts=3, backoff_initial=0.01)
    async with open_simulator(pki=pki, faults=[Fault.refuse_handshake(times=None)]) as sim:
        outcomes, stats = await run(sim, items, config)
    assert all(o.kind is OutcomeKind.FAILED for o in outcomes.values())
    assert "3 attempts" in outcomes[0].reason
    assert stats.connect_failures == 3


async def test_wrong_environment_certificate_fails_fast(pki):
    # The session PKI's client certificate is sandbox-only; this gateway is production.
    items = notifications(20)
    async with open_simulator(pki=pki, environment=Environment.PRODUCTION) as sim:
        outcomes, _stats = await run(sim, items)
        connections = sim.stats.gateway_connections
    assert all(o.kind is OutcomeKind.FAILED for o in outcomes.values())
    assert "other environment" in outcomes[0].reason
    assert connections <= 3


async def test_untrusted_client_certificate_fails_fast(pki):
    from apns_legacy.tls import make_test_pki

    stranger = make_test_pki()  # a different CA: the simulator's TLS refuses it
    context = client_context(stranger.client, ca=pki.ca_pem())
    async with open_simulator(pki=pki) as sim:
        outcomes, stats = await run(sim, notifications(5), context=context)
    assert all(o.kind is OutcomeKind.FAILED for o in outcomes.values())
    assert "TLS" in outcomes[0].reason
    assert stats.connect_failures == 1


async def test_expired_client_certificate_fails_fast(pki):
    from apns_legacy.tls import Credentials

    now = dt.datetime.now(dt.UTC)
    old = pki.issue_client(
        topic="com.example.app",
        environments=[Environment.SANDBOX],
        not_before=now - dt.timedelta(days=30),
        not_after=now - dt.timedelta(days=1),
    )
    creds = Credentials(old.certificate, old.private_key, old.chain)
    context = client_context(creds, ca=pki.ca_pem())
    async with open_simulator(pki=pki) as sim:
        outcomes, _ = await run(sim, notifications(3), context=context)
    assert all(o.kind is OutcomeKind.FAILED for o in outcomes.values())


async def test_idle_drop_by_gateway_loses_nothing(pki):
    # The gateway drops connections idle for 1 s, sooner than the sender's confirm_after:
    # the first window is lost with the connection, resent, and from then on the sender
    # probes within half the quiet time the gateway tolerated.
    config = attrs.evolve(FAST, confirm_after=5.0)
    async with open_simulator(pki=pki, faults=[Fault.idle_timeout(1.0)]) as sim:
        host, port = sim.gateway_address
        outcomes = []
        with trio.fail_after(30):
            async with open_sender(
                sim.client_context(), host=host, port=port, config=config,
                on_outcome=outcomes.append,
            ) as sender:  # fmt: skip
                for n in notifications(5):
                    await sender.submit(n)
                await sender.flush(confirm=False)
                # Wait until the gateway has dropped the idle connection.
                await sim.wait_until(lambda: sim.stats.idle_closes >= 1)
                for n in notifications(10)[5:]:
                    await sender.submit(n)
                await sender.flush(confirm=True)
        counts = recorded_counts(sim)
    assert len(outcomes) == 10
    assert all(o.accepted for o in outcomes), [o for o in outcomes if not o.accepted]
    assert set(counts) == {token_for(i).hex for i in range(10)}


async def test_simple_format_cannot_pinpoint_but_loses_nothing_silently(pki):
    # Command 0 has no error response: the gateway just closes. The sender resends
    # the window; the bad one keeps killing connections until max_losses fails it,
    # and whatever shared its windows may fail with it. Nothing ends without an outcome.
    items = notifications(50)
    config = SenderConfig(command=Command.SIMPLE, settle_after=0.3, max_losses=2,
                          backoff_initial=0.01)  # fmt: skip
    async with open_simulator(pki=pki, invalid_tokens=[token_for(25).value]) as sim:
        outcomes, _ = await run(sim, items, config)
    assert outcomes[25].kind is OutcomeKind.FAILED
    assert all(o.kind is not OutcomeKind.REJECTED for o in outcomes.values())


def test_sync_facade_returns_outcomes_in_order(pki, tmp_path):
    items = notifications(200)

    async def main():
        async with open_simulator(pki=pki, invalid_tokens=[token_for(7).value]) as sim:
            host, port = sim.gateway_address
            result = await trio.to_thread.run_sync(
                lambda: send_all(items, sim.client_context(), host=host, port=port, config=FAST)
            )
            return result, recorded_counts(sim)

    (outcomes, stats), counts = trio.run(main)
    assert [o.notification for o in outcomes] == items
    assert [i for i, o in enumerate(outcomes) if not o.accepted] == [7]
    assert stats.accepted == 199
    assert sum(counts.values()) == 199


async def test_unreachable_gateway_fails_with_a_readable_reason():
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = SenderConfig(max_connect_attempts=2, backoff_initial=0.01)
    outcomes = []

    async def connect():
        return await trio.open_tcp_stream("127.0.0.1", port)

    with trio.fail_after(30):
        async with open_sender(
            connect=connect,
            config=config,
            on_outcome=outcomes.append,
        ) as sender:
            await sender.submit_many(notifications(3))
            await sender.flush()
            # Later work gets one attempt, not a new round of backoff.
            await sender.submit_many(notifications(2))
            await sender.flush()
    assert [o.kind for o in outcomes] == [OutcomeKind.FAILED] * 5
    reason = outcomes[0].reason
    assert reason.count(f"127.0.0.1:{port}") <= 2, reason
    assert "2 attempts" in reason
    assert sender.stats.connect_failures == 3


async def test_tls13_late_certificate_rejection_fails_fast(pki):
    # Under TLS 1.3 the client's handshake completes before the server checks the
    # client certificate; the refusal arrives as an alert on the first read.
    from apns_legacy.tls import make_test_pki

    stranger = make_test_pki()
    context = client_context(stranger.client, ca=pki.ca_pem())
    async with open_simulator(pki=pki, allow_tls13=True) as sim:
        outcomes, stats = await run(sim, notifications(5), context=context)
    assert all(o.kind is OutcomeKind.FAILED for o in outcomes.values())
    assert "TLS" in outcomes[0].reason
    assert stats.connections_opened <= 2


@pytest.mark.parametrize("connections", [1, 4])
async def test_broadcast_ten_thousand_with_three_invalid_tokens(pki, connections):
    bad = {2_000, 5_000, 7_500}
    payload = b'{"aps":{"alert":"to everyone"}}'
    config = SenderConfig(backoff_initial=0.01, connections=connections)
    outcomes = []
    async with open_simulator(pki=pki, invalid_tokens=[token_for(i).value for i in bad]) as sim:
        host, port = sim.gateway_address
        with trio.fail_after(60):
            async with open_sender(
                sim.client_context(), host=host, port=port, config=config,
                on_outcome=outcomes.append,
            ) as sender:  # fmt: skip
                tokens = [token_for(i).value for i in range(10_000)]
                await sender.submit_broadcast(tokens, payload=payload)
                await sender.flush(confirm=True)
        counts = recorded_counts(sim)
    stats = sender.stats
    assert stats.submitted == stats.accepted + stats.rejected == 10_000
    rejected = {o.notification.token.hex for o in outcomes if not o.accepted}
    assert rejected == {token_for(i).hex for i in bad}
    assert counts == collections.Counter(token_for(i).hex for i in range(10_000) if i not in bad)
    assert {record.payload for record in sim.accepted} == {payload.decode()}


@SHAPES
async def test_error_response_then_reset_is_never_missed(pki, connections, command):
    # The gateway answers, then closes with our bytes unread: a TCP reset right behind
    # the 6 bytes, while we are still writing. Every answer must still be read.
    from apns_legacy.simulator import ErrorClose

    items = notifications(5_000)
    bad = {700, 2_100, 3_500, 4_900}
    config = SenderConfig(backoff_initial=0.01, connections=connections, command=command)
    async with open_simulator(
        pki=pki,
        invalid_tokens=[token_for(i).value for i in bad],
        error_close=ErrorClose.RESET,
    ) as sim:
        outcomes, stats = await run(sim, items, config)
        counts = recorded_counts(sim)
    assert {i for i, o in outcomes.items() if o.kind is OutcomeKind.REJECTED} == bad
    accepted = {token_for(i).hex for i, o in outcomes.items() if o.accepted}
    assert accepted == set(counts)
    assert all(count == 1 for count in counts.values())
    assert stats.possible_duplicates == 0  # no answer was missed


async def test_a_spare_still_in_its_handshake_at_close_ends_with_close_notify(pki):
    # The spare (the second connect) starts its TCP connect and TLS handshake only once
    # the sender is closing: a graceful close lets it finish and closes it with
    # close_notify, instead of cutting it off (which the gateway counts as a failed
    # handshake, and a strict peer as an error).
    closing = trio.Event()
    async with open_simulator(pki=pki) as sim:
        host, port = sim.gateway_address
        context = sim.client_context()
        connects = 0

        async def connect():
            nonlocal connects
            connects += 1
            if connects == 2:
                await closing.wait()
            stream = await open_tls_stream(host, port, context, server_hostname="localhost")
            await stream.do_handshake()
            return stream

        outcomes = []
        with trio.fail_after(30):
            async with open_sender(connect=connect, on_outcome=outcomes.append) as sender:
                await sender.submit(notifications(1)[0])
                await sender.flush(confirm=True)
                assert connects == 2  # the spare is waiting to start
                closing.set()
            await sim.wait_until(
                lambda: sim.stats.gateway_connections + sim.stats.handshake_failures >= 2
            )
        assert [o.kind for o in outcomes] == [OutcomeKind.ACCEPTED]
        assert (sim.stats.gateway_connections, sim.stats.handshake_failures) == (2, 0)
    assert sender.stats.connections_opened == 1  # the spare carried nothing
