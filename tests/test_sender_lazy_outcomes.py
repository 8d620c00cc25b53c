"""submit_many queues the caller's notifications as they are; each gets its Outcome when
it leaves the queue or a connection's window. The outcomes must be what they were when
made at submission: one per notification, the notification itself, the identifier it
was last written with, the loss count, in every way a window ends.

The gateway is scripted here in raw bytes over trio memory streams (struct, not our
decoders); the autojump clock makes waits instant.
"""

from __future__ import annotations

import math
import struct

import trio
import trio.testing

from apns_legacy import (
    DeviceToken,
    Evidence,
    Notification,
    Outcome,
    OutcomeKind,
    SenderConfig,
    open_sender,
)

CONFIG = SenderConfig(backoff_initial=0.01, spare_connection=False)


def note(n: int) -> Notification:
    return Notification(token=DeviceToken(bytes([n]) * 32), payload=b'{"n":%d}' % n)


class Gateway:
    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[trio.abc.Stream](math.inf)

    async def connect(self) -> trio.abc.Stream:
        client, server = trio.testing.memory_stream_pair()
        self._send.send_nowait(server)
        return client

    async def accept(self) -> Server:
        return Server(await self._receive.receive())


class Server:
    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            data = await self.stream.receive_some()
            assert data, "the sender closed early"
            self.buffer += data
        out = bytes(self.buffer[:n])
        del self.buffer[:n]
        return out

    async def frame(self) -> tuple[bytes, int]:
        """(token, identifier) of the next command-2 frame."""
        command, length = struct.unpack("!BI", await self._read(5))
        assert command == 2
        body = await self._read(length)
        items = {}
        at = 0
        while at < len(body):
            item, size = struct.unpack_from("!BH", body, at)
            items[item] = body[at + 3 : at + 3 + size]
            at += 3 + size
        return items[1], struct.unpack("!I", items[3])[0]

    async def frames(self, n: int) -> list[tuple[bytes, int]]:
        return [await self.frame() for _ in range(n)]

    async def error(self, status: int, identifier: int) -> None:
        await self.stream.send_all(struct.pack("!BBI", 8, status, identifier))
        await self.stream.aclose()

    async def answer_probe(self) -> None:
        token, _ = await self.frame()
        assert token == b""
        await self.error(2, 0)


async def run(body, notes, config=CONFIG):  # type: ignore[no-untyped-def]
    outcomes: list[Outcome] = []
    gateway = Gateway()
    async with open_sender(connect=gateway.connect, config=config, on_outcome=outcomes.append) as s:
        await s.submit_many(notes)
        await body(s, gateway)
    return outcomes


def by_notification(outcomes: list[Outcome], notes: list[Notification]) -> list[Outcome]:
    """The outcomes in the notes' order, checking there is exactly one each (by identity)."""
    assert len(outcomes) == len(notes)
    index = {id(o.notification): o for o in outcomes}
    assert len(index) == len(notes)
    return [index[id(n)] for n in notes]


async def test_rejection_accepts_before_rejects_one_and_resends_after(autojump_clock):
    notes = [note(i) for i in range(10)]
    seen: dict[bytes, list[int]] = {}

    async def body(sender, gateway):  # type: ignore[no-untyped-def]
        first = await gateway.accept()
        frames = await first.frames(10)
        for token, identifier in frames:
            seen.setdefault(token, []).append(identifier)
        await first.error(8, frames[3][1])
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender.flush)
            second = await gateway.accept()
            for token, identifier in await second.frames(6):
                seen.setdefault(token, []).append(identifier)
            await second.answer_probe()

    outcomes = by_notification(await run(body, notes), notes)
    for i, (n, o) in enumerate(zip(notes, outcomes, strict=True)):
        assert o.notification is n
        assert o.identifier == seen[n.token.value][-1]
        assert o.possible_duplicate is False
        if i == 3:
            assert o.kind is OutcomeKind.REJECTED
            assert o.status == 8
            assert len(seen[n.token.value]) == 1
        else:
            assert o.kind is OutcomeKind.ACCEPTED
            assert o.evidence is Evidence.CONFIRMED
            assert len(seen[n.token.value]) == (1 if i < 3 else 2)


async def serve_until_flushed(sender, gateway, seen):  # type: ignore[no-untyped-def]
    """Connection after connection: record each frame, answer each probe, until flushed."""

    async def serve() -> None:
        while True:
            server = await gateway.accept()
            while True:
                token, identifier = await server.frame()
                if token == b"":
                    await server.error(2, 0)
                    break
                seen.setdefault(token, []).append(identifier)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        await sender.flush()
        nursery.cancel_scope.cancel()


async def test_a_silent_close_resends_all_as_possible_duplicates(autojump_clock):
    notes = [note(i) for i in range(5)]
    seen: dict[bytes, list[int]] = {}

    async def body(sender, gateway):  # type: ignore[no-untyped-def]
        first = await gateway.accept()
        for token, identifier in await first.frames(5):
            seen.setdefault(token, []).append(identifier)
        await first.stream.aclose()  # no error response: fate unknown
        # The policy then writes careful windows, each ended by a probe.
        await serve_until_flushed(sender, gateway, seen)

    outcomes = by_notification(await run(body, notes), notes)
    for n, o in zip(notes, outcomes, strict=True):
        assert o.kind is OutcomeKind.ACCEPTED
        assert o.evidence is Evidence.CONFIRMED
        assert o.possible_duplicate is True
        assert o.losses == 1
        first_id, second_id = seen[n.token.value]
        assert o.identifier == second_id != first_id


async def test_an_interrupted_close_fails_written_and_queued_ones(autojump_clock):
    # 300 notifications of about 1 KiB with 4 KiB writes: a few written (in the window,
    # with identifiers), the rest still queued (never written: no identifier).
    notes = [
        Notification(token=DeviceToken(bytes([i % 256]) * 32), payload=b"x" * 1000)
        for i in range(300)
    ]
    config = SenderConfig(spare_connection=False, write_size=4096)
    written: list[int] = []

    async def body(sender, gateway):  # type: ignore[no-untyped-def]
        server = await gateway.accept()
        written.extend(identifier for _, identifier in await server.frames(3))
        await sender.aclose(graceful=False)

    outcomes = by_notification(await run(body, notes, config), notes)
    assert all(o.kind is OutcomeKind.FAILED for o in outcomes)
    identified = [o.identifier for o in outcomes if o.identifier is not None]
    assert identified[:3] == written
    assert identified == list(range(1, len(identified) + 1))  # written in order from 1
    assert outcomes[-1].identifier is None  # never written


async def test_bare_notifications_and_broadcast_outcomes_share_the_queue(autojump_clock):
    notes = [note(i) for i in range(3)]
    tokens = [bytes([100 + i]) * 32 for i in range(3)]
    frames: list[tuple[bytes, int]] = []
    outcomes: list[Outcome] = []
    gateway = Gateway()
    async with open_sender(
        connect=gateway.connect, config=CONFIG, on_outcome=outcomes.append
    ) as sender:
        await sender.submit_many(notes[:2])
        await sender.submit_broadcast(tokens, payload=b'{"b":1}')
        await sender.submit_many(notes[2:])
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender.flush)
            server = await gateway.accept()
            frames.extend(await server.frames(6))
            await server.answer_probe()
    assert [t for t, _ in frames] == [
        notes[0].token.value,
        notes[1].token.value,
        *tokens,
        notes[2].token.value,
    ]
    assert sorted(o.identifier for o in outcomes) == sorted(i for _, i in frames)
    assert all(o.kind is OutcomeKind.ACCEPTED for o in outcomes)
    assert {o.token_bytes: o.identifier for o in outcomes} == dict(frames)
