""" "Accepted" needs evidence: the sender against gateways that answer late, reset, or stop
reading. The gateways here are written by hand from PROTOCOL.md (struct, not our
decoders), over trio memory streams, on trio's autojump clock: seconds of waiting cost
nothing and every run is deterministic.
"""

from __future__ import annotations

import collections
import math
import struct

import attrs
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from apns_legacy import (
    DeviceToken,
    Evidence,
    Notification,
    OutcomeKind,
    SenderConfig,
    open_sender,
)


def token(n: int) -> bytes:
    return n.to_bytes(4, "big") * 8


def note(n: int) -> Notification:
    return Notification(token=DeviceToken(token(n)), payload=b'{"aps":{"alert":"%d"}}' % n)


@attrs.define
class Script:
    """How the gateway behaves on its Nth connection (the last one repeats)."""

    #: Seconds between reading the bad notification (or the probe) and answering.
    answer_delay: float = 0.0
    #: Close without a word after taking this many notifications (None: never).
    drop_after: int | None = None
    #: Stop reading for good after this many notifications (None: never).
    stall_after: int | None = None


class HandWrittenGateway:
    """Takes command-2 frames apart with struct; records what it accepted, in order."""

    def __init__(self, scripts: list[Script], invalid: set[bytes], *, lockstep: bool) -> None:
        self.scripts = scripts
        self.invalid = invalid
        self.lockstep = lockstep
        self.recorded: list[bytes] = []
        self.connections = 0
        self._nursery: trio.Nursery | None = None

    async def connect(self) -> trio.abc.Stream:
        pair = (
            trio.testing.lockstep_stream_pair if self.lockstep else trio.testing.memory_stream_pair
        )
        client, server = pair()
        script = self.scripts[min(self.connections, len(self.scripts) - 1)]
        self.connections += 1
        assert self._nursery is not None
        self._nursery.start_soon(self._serve, server, script)
        return client

    async def _serve(self, stream: trio.abc.Stream, script: Script) -> None:
        buffer = bytearray()
        taken = 0

        async def read(n: int) -> bytes | None:
            while len(buffer) < n:
                try:
                    data = await stream.receive_some()
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return None
                if not data:
                    return None
                buffer.extend(data)
            out = bytes(buffer[:n])
            del buffer[:n]
            return out

        async def answer(status: int, identifier: int) -> None:
            await trio.sleep(script.answer_delay)
            try:
                await stream.send_all(struct.pack("!BBI", 8, status, identifier))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            await stream.aclose()

        while True:
            if script.stall_after is not None and taken >= script.stall_after:
                await trio.sleep_forever()
            if script.drop_after is not None and taken >= script.drop_after:
                await stream.aclose()
                return
            header = await read(5)
            if header is None:
                await stream.aclose()
                return
            command, length = struct.unpack("!BI", header)
            assert command == 2
            body = await read(length)
            if body is None:
                await stream.aclose()
                return
            items: dict[int, bytes] = {}
            at = 0
            while at < len(body):
                item, size = struct.unpack_from("!BH", body, at)
                items[item] = body[at + 3 : at + 3 + size]
                at += 3 + size
            identifier = struct.unpack("!I", items[3])[0]
            if items[1] == b"":
                await answer(2, 0)  # the probe: status 2, identifier 0, as Apple did
                return
            if items[1] in self.invalid:
                await answer(8, identifier)
                return
            self.recorded.append(items[1])
            taken += 1


async def run_against(gateway: HandWrittenGateway, n: int, config: SenderConfig):
    outcomes = []
    async with trio.open_nursery() as nursery:
        gateway._nursery = nursery
        async with open_sender(
            connect=gateway.connect, config=config, on_outcome=outcomes.append
        ) as sender:
            await sender.submit_many(note(i) for i in range(n))
        nursery.cancel_scope.cancel()
    return outcomes, sender.stats


def check_invariants(outcomes, stats, gateway: HandWrittenGateway, n: int) -> None:
    assert len(outcomes) == n == stats.submitted
    assert stats.submitted == stats.accepted + stats.rejected + stats.failed
    recorded = collections.Counter(gateway.recorded)
    for outcome in outcomes:
        value = outcome.notification.token.value
        if outcome.kind is OutcomeKind.ACCEPTED:
            # The invariant of the evidence issue: accepted implies recorded.
            assert recorded[value] >= 1, outcome
            assert outcome.evidence is not Evidence.ASSUMED
        if outcome.kind is OutcomeKind.REJECTED:
            assert value in gateway.invalid
            assert outcome.status == 8
        if recorded[value] > 1:
            assert outcome.possible_duplicate, outcome


scripts = st.builds(
    Script,
    answer_delay=st.sampled_from([0.0, 0.5, 1.5, 3.0, 5.0, 12.0, 25.0]),
    drop_after=st.one_of(st.none(), st.integers(0, 40)),
    stall_after=st.one_of(st.none(), st.integers(0, 40)),
)


@settings(max_examples=150, deadline=None)
@given(
    script_list=st.lists(scripts, min_size=1, max_size=6),
    invalid=st.sets(st.integers(0, 59), max_size=4),
    connections=st.sampled_from([1, 4]),
    lockstep=st.booleans(),
)
def test_accepted_always_means_recorded(script_list, invalid, connections, lockstep):
    n = 60
    gateway = HandWrittenGateway(script_list, {token(i) for i in invalid}, lockstep=lockstep)
    config = SenderConfig(connections=connections, backoff_initial=0.01, write_size=2048)

    async def main():
        with trio.fail_after(3600):  # virtual time
            return await run_against(gateway, n, config)

    outcomes, stats = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    check_invariants(outcomes, stats, gateway, n)


def run_virtual(gateway, n, config):
    async def main():
        with trio.fail_after(3600):
            return await run_against(gateway, n, config)

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


@pytest.mark.parametrize("delay", [0.5, 1.5, 3.0, 5.0, 10.0])
@pytest.mark.parametrize("connections", [1, 4])
def test_late_answers_still_settle_exactly(delay, connections):
    invalid = {token(i) for i in (7, 30, 51)}
    gateway = HandWrittenGateway([Script(answer_delay=delay)], invalid, lockstep=False)
    # Every window costs one answer delay (up to 10 s here): give the close time for all.
    config = SenderConfig(
        connections=connections, backoff_initial=0.01, write_size=1024, close_timeout=600
    )
    outcomes, stats = run_virtual(gateway, 60, config)
    check_invariants(outcomes, stats, gateway, 60)
    assert stats.accepted == 57
    assert stats.rejected == 3
    assert stats.failed == 0
    assert sorted(o.notification.token.value for o in outcomes if o.accepted) == sorted(
        gateway.recorded
    )
    assert not any(o.possible_duplicate for o in outcomes)


def test_gateway_that_never_answers_probes_gives_unconfirmed_not_accepted():
    gateway = HandWrittenGateway([Script(answer_delay=math.inf)], set(), lockstep=False)
    config = SenderConfig(probe_timeout=5.0, max_unproductive=2)
    outcomes, stats = run_virtual(gateway, 10, config)
    check_invariants(outcomes, stats, gateway, 10)
    assert stats.accepted == 0
    assert stats.unconfirmed == 10
    assert all(o.reason.startswith("unconfirmed") for o in outcomes)


def test_gateway_that_stops_reading_ends_by_itself():
    # lockstep streams: a write blocks until the gateway reads it, like a full socket.
    gateway = HandWrittenGateway([Script(stall_after=0)], set(), lockstep=True)
    config = SenderConfig(write_timeout=5.0, error_wait=1.0, max_unproductive=2)
    outcomes, stats = run_virtual(gateway, 5000, config)
    check_invariants(outcomes, stats, gateway, 5000)
    assert stats.accepted == 0
    assert stats.failed == 5000
    assert stats.stalled_writes >= 1
    reasons = collections.Counter(o.reason.split(":")[0] for o in outcomes)
    assert sum(reasons.values()) == 5000


def test_drop_after_some_bytes_is_not_taken_for_the_wrong_environment():
    gateway = HandWrittenGateway([Script(drop_after=20)], set(), lockstep=False)
    config = SenderConfig(backoff_initial=0.01, write_size=65536)
    outcomes, stats = run_virtual(gateway, 2000, config)
    check_invariants(outcomes, stats, gateway, 2000)
    # Progress goes on, one careful probe at a time; a notification caught in
    # max_losses (3) dropped windows fails as such, never as a certificate problem.
    assert stats.accepted > 1900
    failed = [o for o in outcomes if o.kind is OutcomeKind.FAILED]
    assert all("in flight on 3 connections that died" in o.reason for o in failed)
    assert all(o.possible_duplicate for o in failed)
