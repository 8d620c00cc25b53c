"""The sender against our simulator's gateway under every fault of the evidence issue.

The gateway runs in-process over trio memory streams (no TLS: the TLS layer has tests
of its own), on the autojump clock, so a 5 s answer delay costs nothing and every run
is deterministic. For each fault, with 1 and 4 connections and commands 1 and 2: what
the sender calls accepted is exactly what the gateway recorded, rejections carry
their status, and nothing is called accepted on an assumption.
"""

from __future__ import annotations

import collections

import pytest
import trio
import trio.testing
from helpers import InProcessGateway

from apns_legacy import (
    Command,
    DeviceToken,
    Evidence,
    Notification,
    OutcomeKind,
    SenderConfig,
    open_sender,
)
from apns_legacy.simulator import Fault, Simulator
from apns_legacy.tls import Environment

N = 300
INVALID = (40, 150, 260)


def token(i: int) -> bytes:
    return i.to_bytes(4, "big") * 8


async def run(fault, *, connections, command, lockstep=False, config_changes=None):
    sim = Simulator(invalid_tokens=[token(i) for i in INVALID], environment=Environment.SANDBOX)
    if fault is not None:
        sim.add_fault(fault)
    config = SenderConfig(
        connections=connections, command=command, backoff_initial=0.01, write_size=4096,
        **(config_changes or {}),
    )  # fmt: skip
    outcomes = []
    with trio.fail_after(3600):  # virtual time
        async with trio.open_nursery() as nursery:
            gateway = InProcessGateway(sim, nursery, lockstep=lockstep)
            async with open_sender(
                connect=gateway.connect, config=config, on_outcome=outcomes.append
            ) as sender:
                await sender.submit_many(
                    Notification(token=DeviceToken(token(i)), payload=b'{"aps":{"alert":"%d"}}' % i)
                    for i in range(N)
                )
            nursery.cancel_scope.cancel()
    return outcomes, sender.stats, sim


def recorded(sim) -> collections.Counter[bytes]:
    return collections.Counter(bytes.fromhex(record.token) for record in sim.accepted)


def check_truthful(outcomes, stats, sim):
    assert len(outcomes) == N == stats.submitted
    assert stats.submitted == stats.accepted + stats.rejected + stats.failed
    counts = recorded(sim)
    accepted = {o.notification.token.value for o in outcomes if o.accepted}
    assert accepted <= set(counts), "accepted but never recorded"
    assert not any(o.evidence is Evidence.ASSUMED for o in outcomes)
    for outcome in outcomes:
        if outcome.kind is OutcomeKind.REJECTED:
            assert outcome.status == 8
            assert outcome.notification.token.value in {token(i) for i in INVALID}
        if counts[outcome.notification.token.value] > 1:
            assert outcome.possible_duplicate
    return counts, accepted


SHAPES = pytest.mark.parametrize(
    ("connections", "command"),
    [(1, Command.FRAME), (4, Command.FRAME), (1, Command.ENHANCED), (4, Command.ENHANCED)],
)
ANSWERING = [
    pytest.param(Fault.delay_errors(0.5), id="errors-0.5s-late"),
    pytest.param(Fault.delay_errors(1.5), id="errors-1.5s-late"),
    pytest.param(Fault.delay_errors(3.0), id="errors-3s-late"),
    pytest.param(Fault.delay_errors(5.0), id="errors-5s-late"),
    pytest.param(Fault.split_errors((1, 5), gap=1.5), id="errors-split-1+5"),
    pytest.param(Fault.split_errors((3, 3), gap=3.0), id="errors-split-3+3"),
    pytest.param(Fault.slow_reader(100_000), id="slow-reader-100KBps"),
]


@SHAPES
@pytest.mark.parametrize("fault", ANSWERING)
async def test_slow_or_late_answers_settle_exactly(autojump_clock, fault, connections, command):
    outcomes, stats, sim = await run(fault, connections=connections, command=command)
    counts, accepted = check_truthful(outcomes, stats, sim)
    # Exactly: every valid one accepted and recorded once, the three invalid rejected.
    assert accepted == set(counts) == {token(i) for i in range(N) if i not in INVALID}
    assert all(count == 1 for count in counts.values())
    assert stats.rejected == 3
    assert stats.failed == 0


@SHAPES
async def test_drop_after_some_bytes_loses_nothing_and_names_no_certificate_problem(
    autojump_clock, connections, command
):
    fault = Fault.drop_after(bytes=3_000, times=None)
    outcomes, stats, sim = await run(fault, connections=connections, command=command)
    check_truthful(outcomes, stats, sim)
    assert not any("environment" in (o.reason or "") for o in outcomes)
    # A notification caught in max_losses (3) dropped windows fails as such; the rest
    # get through, one careful probe at a time. With four connections the windows
    # stay below the drop point and connections stop taking once one of them died
    # (trio's scheduler seeded over 300 runs: at least 253 of 300 delivered; 88 once
    # the windows could outgrow the drop again, which failed CI at 85f89ea).
    failed = [o for o in outcomes if o.kind is OutcomeKind.FAILED]
    assert all("connections that died" in o.reason for o in failed)
    assert stats.accepted + stats.rejected > 2 * N // 3


@SHAPES
async def test_slow_reader_at_one_byte_a_second_is_never_accepted(
    autojump_clock, connections, command
):
    outcomes, stats, sim = await run(
        Fault.slow_reader(1, read_size=1), connections=connections, command=command
    )
    check_truthful(outcomes, stats, sim)
    assert stats.accepted == 0  # nothing the gateway took could be confirmed in time
    assert stats.failed + stats.rejected == N


@SHAPES
async def test_gateway_that_never_reads_ends_by_itself(autojump_clock, connections, command):
    outcomes, stats, sim = await run(
        Fault.stop_reading(0, times=None), connections=connections, command=command, lockstep=True
    )
    check_truthful(outcomes, stats, sim)
    assert stats.accepted == 0
    assert stats.failed == N
    assert stats.stalled_writes >= 1
    assert trio.current_time() < 600  # write_timeout 15 s, max_unproductive 4


@SHAPES
async def test_answers_never_come_for_a_probe_the_gateway_keeps(
    autojump_clock, connections, command
):
    # memory streams never push back, so the writes complete; the gateway stopped
    # reading and answers nothing: everything ends unconfirmed, nothing accepted.
    outcomes, stats, sim = await run(
        Fault.stop_reading(0, times=None), connections=connections, command=command
    )
    check_truthful(outcomes, stats, sim)
    assert stats.accepted == 0
    assert stats.unconfirmed >= 1
    assert stats.failed == N
