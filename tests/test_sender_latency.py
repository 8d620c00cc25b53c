"""The sender under round-trip latency and rejections (issue 15), on the autojump clock.

The simulator's gateway runs in-process behind its latency layer (every byte, both
ways, ``ONE_WAY`` late, close included) over memory streams; each connect costs
``HANDSHAKE`` seconds (TCP plus a TLS 1.2 handshake: three round trips), so virtual
time is what a 20 ms path would cost. Invalid tokens sit at known positions. From the
simulator's record: nothing lost, nothing duplicated, every rejection reported; with
spare connections, each replay after a rejection starts on a connection whose
handshake is already done, so the run takes about one round trip per rejection.
"""

from __future__ import annotations

import collections

import pytest
import trio
import trio.testing
from helpers import InProcessGateway

from apns_legacy import DeviceToken, Evidence, Notification, OutcomeKind, SenderConfig, open_sender
from apns_legacy.simulator import Simulator
from apns_legacy.tls import Environment

N = 4000
INVALID = tuple(range(50, N, 200))  # 20 rejections, 200 apart
ONE_WAY = 0.010
RTT = 2 * ONE_WAY
HANDSHAKE = 3 * RTT


def token(i: int) -> bytes:
    return i.to_bytes(4, "big") * 8


async def send_all_through(connections: int, spare: bool):
    sim = Simulator(invalid_tokens=[token(i) for i in INVALID], environment=Environment.SANDBOX)
    config = SenderConfig(
        connections=connections, spare_connection=spare, backoff_initial=0.01, write_size=4096
    )
    outcomes = []
    with trio.fail_after(600):  # virtual time
        async with trio.open_nursery() as nursery:
            gateway = InProcessGateway(sim, nursery, one_way=ONE_WAY, handshake=HANDSHAKE)
            started = trio.current_time()
            async with open_sender(
                connect=gateway.connect, config=config, on_outcome=outcomes.append
            ) as sender:
                await sender.submit_many(
                    Notification(token=DeviceToken(token(i)), payload=b'{"aps":{"alert":"%d"}}' % i)
                    for i in range(N)
                )
                await sender.flush()
                elapsed = trio.current_time() - started
            nursery.cancel_scope.cancel()
    return outcomes, sender.stats, sim, elapsed


def check_exact(outcomes, stats, sim):
    """Every valid token recorded exactly once and accepted; every invalid one rejected."""
    assert len(outcomes) == N == stats.submitted
    counts = collections.Counter(bytes.fromhex(record.token) for record in sim.accepted)
    invalid = {token(i) for i in INVALID}
    assert set(counts) == {token(i) for i in range(N)} - invalid  # nothing lost
    assert max(counts.values()) == 1  # nothing duplicated
    by_kind = collections.defaultdict(set)
    for outcome in outcomes:
        by_kind[outcome.kind].add(outcome.notification.token.value)
        assert not outcome.possible_duplicate
        if outcome.accepted:
            assert outcome.evidence is Evidence.CONFIRMED
        if outcome.kind is OutcomeKind.REJECTED:
            assert outcome.status == 8
    assert by_kind[OutcomeKind.REJECTED] == invalid  # every rejection reported
    assert by_kind[OutcomeKind.ACCEPTED] == set(counts)
    assert stats.failed == 0


@pytest.mark.parametrize("connections", [1, 4])
async def test_rejections_under_latency_lose_and_duplicate_nothing(autojump_clock, connections):
    outcomes, stats, sim, _ = await send_all_through(connections, spare=False)
    check_exact(outcomes, stats, sim)
    assert stats.spares_used == 0


@pytest.mark.parametrize("connections", [1, 4])
async def test_spares_take_each_replay_without_a_handshake_in_the_way(autojump_clock, connections):
    outcomes, stats, sim, elapsed = await send_all_through(connections, spare=True)
    check_exact(outcomes, stats, sim)
    r = len(INVALID)
    # Each rejection's replay starts on a spare whose handshake was done before.
    assert stats.spares_used >= r
    # About one round trip per rejection and connection: within 1.5x of r x RTT / c
    # (the target, for one connection), plus the first handshake and the final
    # confirmation probe's round trip. Four connections see their runs between
    # rejections interleaved and size windows less well, and trio's scheduling order
    # varies: 2.5x there (0.26 to 0.32 s in 10 runs, against 0.58 to 0.72 s without
    # spares; the limit is 0.35 s).
    factor = 1.5 if connections == 1 else 2.5
    assert elapsed <= factor * r * RTT / connections + HANDSHAKE + 2 * RTT


@pytest.mark.parametrize("connections", [1, 4])
async def test_without_spares_each_rejection_waits_for_a_handshake(autojump_clock, connections):
    # The contrast that makes the timing check above mean something.
    _, _, _, elapsed = await send_all_through(connections, spare=False)
    assert elapsed >= len(INVALID) * (RTT + HANDSHAKE) / connections
