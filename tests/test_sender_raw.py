"""The sender against a gateway scripted by hand in raw bytes (PROTOCOL.md sections 4, 5).

These tests do not use our simulator or our decoders on the gateway side: frames are
taken apart here with struct, straight from the byte layout, and error responses are
written as hex. So the sender and the simulator cannot agree on a shared mistake.
Streams are trio memory streams; time is trio's autojump clock, so waits for answers
that never come pass instantly.
"""

from __future__ import annotations

import functools
import math
import struct

import pytest
import trio
import trio.testing

from apns_legacy import (
    Command,
    DeviceToken,
    Evidence,
    LocalProtocolError,
    Notification,
    OutcomeKind,
    SenderConfig,
    encode_frame,
    encode_probe,
    open_sender,
)
from apns_legacy.wire import encode_batch


def token(n: int) -> DeviceToken:
    return DeviceToken(bytes([n]) * 32)


def note(n: int) -> Notification:
    return Notification(token=token(n), payload=b'{"aps":{"alert":"%d"}}' % n)


class ScriptedGateway:
    """Hands each new client connection's server end to the test."""

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[trio.abc.Stream](math.inf)
        self.connections = 0

    async def connect(self) -> trio.abc.Stream:
        client, server = trio.testing.memory_stream_pair()
        self.connections += 1
        self._send.send_nowait(server)
        return client

    async def accept(self) -> ServerEnd:
        return ServerEnd(await self._receive.receive())


class ServerEnd:
    """Reads frames off the wire by hand."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def _read_exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            data = await self.stream.receive_some()
            if not data:
                raise EOFError
            self.buffer += data
        out = bytes(self.buffer[:n])
        del self.buffer[:n]
        return out

    async def read_frame(self) -> dict[int, bytes]:
        """One command-2 frame as {item id: data}."""
        command, length = struct.unpack("!BI", await self._read_exactly(5))
        assert command == 2
        body = await self._read_exactly(length)
        items: dict[int, bytes] = {}
        at = 0
        while at < len(body):
            item, size = struct.unpack_from("!BH", body, at)
            items[item] = body[at + 3 : at + 3 + size]
            at += 3 + size
        return items

    async def read_frames(self, n: int) -> list[dict[int, bytes]]:
        return [await self.read_frame() for _ in range(n)]

    async def reply(self, hex_bytes: str) -> None:
        await self.stream.send_all(bytes.fromhex(hex_bytes))

    async def close(self) -> None:
        await self.stream.aclose()

    async def answer_probe(self) -> None:
        """Read the confirmation probe and answer it as real gateways did, then close."""
        probe = await self.read_frame()
        assert probe[1] == b""  # a zero-length token
        await self.reply("080200000000")  # status 2, identifier 0
        await self.close()


async def flush_confirmed(sender, server: ServerEnd) -> None:
    """``sender.flush()`` while the gateway answers the probe it brings."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender.flush)
        await server.answer_probe()


def ident(items: dict[int, bytes]) -> int:
    return struct.unpack("!I", items[3])[0]


async def run_with(gateway, config, body):
    outcomes = []
    async with open_sender(connect=gateway.connect, config=config, on_outcome=outcomes.append) as s:
        await body(s)
    return outcomes, s.stats


# These scripts answer an exact sequence of connections; spare connections (on by
# default) have their own tests, here and in test_sender_latency.py.
CONFIG = SenderConfig(backoff_initial=0.01, spare_connection=False)


async def test_first_frame_matches_protocol_layout(autojump_clock):
    gateway = ScriptedGateway()

    async def body(sender):
        await sender.submit(
            Notification(token=DeviceToken(bytes(range(32))), payload=b'{"aps":{"alert":"Hi"}}')
        )
        server = await gateway.accept()
        raw = await server._read_exactly(83)
        # PROTOCOL.md section 4 example, with the sender's first identifier (1).
        assert raw.hex() == (
            "020000004e"
            "010020" + bytes(range(32)).hex()
            + "0200167b22617073223a7b22616c657274223a224869227d7d"
            "03000400000001" "04000400000000" "0500010a"
        )  # fmt: skip
        await flush_confirmed(sender, server)

    outcomes, stats = await run_with(gateway, CONFIG, body)
    assert [o.kind for o in outcomes] == [OutcomeKind.ACCEPTED]
    assert outcomes[0].evidence is Evidence.CONFIRMED
    assert outcomes[0].reason is None
    assert stats.probes == 1


async def test_rejection_pinpoints_and_replays_the_rest(autojump_clock):
    gateway = ScriptedGateway()

    async def body(sender):
        for n in range(5):
            await sender.submit(note(n), tag=n)
        server = await gateway.accept()
        frames = await server.read_frames(5)
        # Reject the third; the gateway discards the fourth and fifth and closes.
        await server.reply("0808" + struct.pack("!I", ident(frames[2])).hex())
        await server.close()
        second = await gateway.accept()
        again = await second.read_frames(2)
        assert [f[1] for f in again] == [token(3).value, token(4).value]
        # New identifiers, never reused while unsettled.
        assert ident(again[0]) > ident(frames[4])
        flush = trio.Event()

        async def confirm():
            await sender.flush(confirm=True)
            flush.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(confirm)
            probe = await second.read_frame()
            assert probe[1] == b""  # zero-length token: the confirmation probe
            await second.reply("080200000000")  # real gateways answered it with id 0
            await second.close()
        assert flush.is_set()

    outcomes, stats = await run_with(gateway, CONFIG, body)
    by_tag = {o.tag: o for o in outcomes}
    assert len(outcomes) == 5
    assert by_tag[2].kind is OutcomeKind.REJECTED
    assert by_tag[2].status == 8
    assert all(by_tag[n].kind is OutcomeKind.ACCEPTED for n in (0, 1, 3, 4))
    assert by_tag[3].evidence is by_tag[4].evidence is Evidence.CONFIRMED
    assert not any(o.possible_duplicate for o in outcomes)
    assert stats.replayed == 2
    assert stats.possible_duplicates == 0
    assert stats.probes == 1
    assert stats.submitted == stats.accepted + stats.rejected + stats.failed == 5


async def test_error_response_in_pieces_then_close(autojump_clock):
    gateway = ScriptedGateway()

    async def body(sender):
        for n in range(3):
            await sender.submit(note(n), tag=n)
        server = await gateway.accept()
        frames = await server.read_frames(3)
        raw = bytes.fromhex("0808") + struct.pack("!I", ident(frames[1]))
        for piece in (raw[:1], raw[1:4], raw[4:]):
            await server.stream.send_all(piece)
            await trio.testing.wait_all_tasks_blocked()
        await server.close()
        second = await gateway.accept()
        assert (await second.read_frame())[1] == token(2).value
        await flush_confirmed(sender, second)

    outcomes, _ = await run_with(gateway, CONFIG, body)
    kinds = {o.tag: o.kind for o in outcomes}
    assert kinds == {0: OutcomeKind.ACCEPTED, 1: OutcomeKind.REJECTED, 2: OutcomeKind.ACCEPTED}


async def test_shutdown_status_accepts_named_and_replays_after(autojump_clock):
    gateway = ScriptedGateway()

    async def body(sender):
        for n in range(4):
            await sender.submit(note(n), tag=n)
        server = await gateway.accept()
        frames = await server.read_frames(4)
        # Status 10 names the last notification that WAS accepted.
        await server.reply("080a" + struct.pack("!I", ident(frames[1])).hex())
        await server.close()
        second = await gateway.accept()
        again = await second.read_frames(2)
        assert [f[1] for f in again] == [token(2).value, token(3).value]
        await flush_confirmed(sender, second)

    outcomes, stats = await run_with(gateway, CONFIG, body)
    assert sorted(o.tag for o in outcomes) == [0, 1, 2, 3]
    assert all(o.kind is OutcomeKind.ACCEPTED for o in outcomes)
    evidence = {o.tag: o.evidence for o in outcomes}
    assert evidence[0] is evidence[1] is Evidence.SHUTDOWN
    assert evidence[2] is evidence[3] is Evidence.CONFIRMED
    assert stats.replayed == 2
    assert stats.possible_duplicates == 0


async def test_silent_close_resends_as_possible_duplicates(autojump_clock):
    gateway = ScriptedGateway()

    async def body(sender):
        for n in range(3):
            await sender.submit(note(n), tag=n)
        server = await gateway.accept()
        await server.read_frames(3)
        await trio.sleep(0.2)  # virtual time: the gateway holds the connection a while
        await server.close()  # no error response: fate unknown
        # Careful replay: one notification and a probe, then a window of two.
        second = await gateway.accept()
        assert [f[1] for f in await server_frames_until_probe(second)] == [token(0).value]
        await second.reply("080200000000")
        await second.close()
        third = await gateway.accept()
        assert [f[1] for f in await server_frames_until_probe(third)] == [
            token(1).value,
            token(2).value,
        ]
        await third.reply("080200000000")
        await third.close()

    outcomes, stats = await run_with(gateway, CONFIG, body)
    assert all(o.kind is OutcomeKind.ACCEPTED and o.possible_duplicate for o in outcomes)
    assert stats.possible_duplicates == 3
    assert stats.replayed == 3
    assert stats.probes == 2


async def test_unknown_identifier_resends_everything_as_possible_duplicates(autojump_clock):
    gateway = ScriptedGateway()

    async def body(sender):
        for n in range(2):
            await sender.submit(note(n), tag=n)
        server = await gateway.accept()
        await server.read_frames(2)
        await server.reply("0808deadbeef")
        await server.close()
        second = await gateway.accept()
        await second.read_frames(2)
        await flush_confirmed(sender, second)

    outcomes, stats = await run_with(gateway, CONFIG, body)
    assert stats.unknown_identifiers == 1
    assert all(o.possible_duplicate and o.accepted for o in outcomes)


async def test_silent_closes_after_handshake_fail_fast_as_wrong_environment(autojump_clock):
    gateway = ScriptedGateway()

    async def body(sender):
        for n in range(3):
            await sender.submit(note(n), tag=n)
        for _ in range(2):
            server = await gateway.accept()
            await server.close()  # what Apple did with the other environment's certificate
        await sender.flush()
        # Later submissions fail at once with the same reason instead of looping.
        await sender.submit(note(9), tag=9)
        await sender.flush()

    outcomes, stats = await run_with(gateway, CONFIG, body)
    assert len(outcomes) == 4
    assert all(o.kind is OutcomeKind.FAILED for o in outcomes)
    assert "other environment" in outcomes[0].reason
    assert gateway.connections == 2
    assert stats.failed == 4


async def test_connection_lost_repeatedly_ends_failed_after_max_losses(autojump_clock):
    gateway = ScriptedGateway()
    config = SenderConfig(max_losses=2, backoff_initial=0.01)

    async def body(sender):
        await sender.submit(note(1))
        for _ in range(2):
            server = await gateway.accept()
            await server.read_frame()
            await trio.sleep(3)  # long enough not to look like a wrong-environment close
            await server.stream.send_all(b"\x08\x08")  # half an error response, then EOF
            await server.close()
        await sender.flush()

    outcomes, stats = await run_with(gateway, config, body)
    assert [o.kind for o in outcomes] == [OutcomeKind.FAILED]
    assert "2 connections" in outcomes[0].reason
    assert stats.possible_duplicates == 2


async def test_limits_are_checked_before_anything_is_sent(autojump_clock):
    gateway = ScriptedGateway()
    config = SenderConfig(payload_limit=256)

    async def body(sender):
        big = Notification(token=token(1), payload=b"{" + b" " * 300 + b"}")
        with pytest.raises(LocalProtocolError, match="302 bytes; the limit is 256"):
            await sender.submit(big)
        long_token = Notification(token=DeviceToken(bytes(40)), payload=b"{}")
        with pytest.raises(LocalProtocolError, match="40 bytes"):
            await sender.submit(long_token)

    outcomes, stats = await run_with(gateway, config, body)
    assert outcomes == []
    assert stats.submitted == 0
    assert gateway.connections == 0


@pytest.mark.parametrize("command", [Command.ENHANCED, Command.SIMPLE])
async def test_legacy_commands_layout(autojump_clock, command):
    gateway = ScriptedGateway()
    config = SenderConfig(command=command)

    async def body(sender):
        await sender.submit(
            Notification(token=DeviceToken(bytes(range(32))), payload=b'{"aps":{"alert":"Hi"}}')
        )
        server = await gateway.accept()
        payload = "00167b22617073223a7b22616c657274223a224869227d7d"
        if command is Command.ENHANCED:
            expected = "0100000001000000000020" + bytes(range(32)).hex() + payload
        else:
            expected = "000020" + bytes(range(32)).hex() + payload
        raw = await server._read_exactly(len(expected) // 2)
        assert raw.hex() == expected
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender.flush)
            if command is Command.ENHANCED:
                probe = await server._read_exactly(len(encode_probe(command, 2)))
                assert probe == encode_probe(command, 2)
                await server.reply("080200000000")
                await server.close()

    outcomes, _ = await run_with(gateway, config, body)
    assert [o.kind for o in outcomes] == [OutcomeKind.ACCEPTED]
    # Command 0 has no error response and no probe: acceptance can only be assumed.
    expected = Evidence.ASSUMED if command is Command.SIMPLE else Evidence.CONFIRMED
    assert outcomes[0].evidence is expected


async def test_window_full_is_confirmed_before_anything_more_is_written(autojump_clock):
    gateway = ScriptedGateway()
    config = SenderConfig(window_size=4)

    async def body(sender):
        for n in range(10):
            await sender.submit(note(n), tag=n)
        server = await gateway.accept()
        first = await server.read_frames(4)
        # A full window ends with a probe; nothing more is written on this connection.
        probe = await server.read_frame()
        assert probe[1] == b""
        with trio.move_on_after(10):
            await server.read_frame()
            raise AssertionError("wrote past a full window")
        await server.reply("080200000000")
        await server.close()
        second = await gateway.accept()
        rest = await server_frames_until_probe(second)
        assert ident(rest[0]) > ident(first[-1])
        await second.reply("080200000000")
        await second.close()
        third = await gateway.accept()
        assert len(await server_frames_until_probe(third)) == 2
        await third.reply("080200000000")
        await third.close()
        await sender.flush()

    outcomes, stats = await run_with(gateway, config, body)
    assert sorted(o.tag for o in outcomes) == list(range(10))
    assert stats.accepted == 10
    assert stats.probes == 3


async def server_frames_until_probe(server: ServerEnd) -> list[dict[int, bytes]]:
    frames = []
    while (frame := await server.read_frame())[1] != b"":
        frames.append(frame)
    return frames


async def test_idle_connection_closes_and_reopens_on_demand(autojump_clock):
    # Only command 0 keeps a connection open once its window is settled (with
    # commands 1 and 2 the probe's answer ends it), so idling is tested there.
    gateway = ScriptedGateway()
    config = SenderConfig(
        command=Command.SIMPLE, idle_timeout=60.0, settle_after=1.0, spare_connection=False
    )
    size = len(encode_batch(Command.SIMPLE, 1, [note(1)]))

    async def body(sender):
        await sender.submit(note(1))
        first = await gateway.accept()
        await first._read_exactly(size)
        await sender.flush()  # assumed after the quiet period
        # After idle_timeout with nothing to send, the sender closes its side.
        with trio.fail_after(120):
            assert await first.stream.receive_some() == b""
        assert gateway.connections == 1
        await sender.submit(note(2))
        second = await gateway.accept()
        assert (await second._read_exactly(size))[3:35] == token(2).value
        await sender.flush()

    outcomes, stats = await run_with(gateway, config, body)
    assert [o.kind for o in outcomes] == [OutcomeKind.ACCEPTED] * 2
    assert stats.connections_opened == 2
    assert stats.assumed == 2


async def test_probe_answered_late_still_settles_and_the_connection_waits(autojump_clock):
    gateway = ScriptedGateway()

    async def body(sender):
        for n in range(3):
            await sender.submit(note(n), tag=n)
        server = await gateway.accept()
        await server.read_frames(3)
        probe = await server.read_frame()  # after confirm_after
        assert probe[1] == b""
        await trio.sleep(10)  # a slow network, or a slow reader
        await server.reply("080200000000")
        await server.close()
        await sender.flush()

    outcomes, stats = await run_with(gateway, CONFIG, body)
    assert [(o.kind, o.evidence) for o in outcomes] == [
        (OutcomeKind.ACCEPTED, Evidence.CONFIRMED)
    ] * 3
    assert stats.probes_unanswered == 0
    assert gateway.connections == 1


async def test_unanswered_probe_is_never_acceptance(autojump_clock):
    # A server that takes anything, even a zero-length token, never answers the probe.
    gateway = ScriptedGateway()
    config = SenderConfig(probe_timeout=30.0, spare_connection=False)

    async def body(sender):
        await sender.submit(note(1), tag=1)
        server = await gateway.accept()
        await server.read_frame()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender.flush)
            assert (await server.read_frame())[1] == b""
            started = trio.current_time()
            # The connection stays open while a late answer can still come...
            with trio.move_on_after(29.9):
                await server.stream.receive_some()
                raise AssertionError("closed before probe_timeout")
            # ...and only then closes, with the notification's fate unknown.
            assert await server.stream.receive_some() == b""
            assert trio.current_time() - started == pytest.approx(30.0, abs=0.01)
        assert sender.stats.pending == 0

    outcomes, stats = await run_with(gateway, config, body)
    assert [o.kind for o in outcomes] == [OutcomeKind.FAILED]
    assert outcomes[0].reason.startswith("unconfirmed: ")
    assert stats.unconfirmed == 1
    assert stats.probes_unanswered == 1
    assert stats.accepted == 0
    assert not outcomes[0].possible_duplicate  # written once, never again


async def test_assume_accepted_is_an_opt_in_and_says_so(autojump_clock):
    gateway = ScriptedGateway()
    config = SenderConfig(assume_accepted=True, settle_after=2.0)

    async def body(sender):
        await sender.submit(note(1), tag=1)
        server = await gateway.accept()
        await server.read_frame()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender.flush)
            assert (await server.read_frame())[1] == b""
            assert await server.stream.receive_some() == b""  # closed once settled
        assert trio.current_time() >= 2.0

    outcomes, stats = await run_with(gateway, config, body)
    assert [(o.kind, o.evidence) for o in outcomes] == [(OutcomeKind.ACCEPTED, Evidence.ASSUMED)]
    assert stats.assumed == stats.accepted == 1


async def test_leaving_by_an_exception_fails_what_is_unsettled_at_once(autojump_clock):
    gateway = ScriptedGateway()
    outcomes = []

    async def give_up():
        async with open_sender(
            connect=gateway.connect, config=CONFIG, on_outcome=outcomes.append
        ) as sender:
            await sender.submit(note(1))
            await (await gateway.accept()).read_frame()
            raise RuntimeError("caller gave up")

    with pytest.raises(RuntimeError, match="caller gave up"):
        await give_up()
    assert [o.kind for o in outcomes] == [OutcomeKind.FAILED]
    assert "interrupted" in outcomes[0].reason
    assert trio.current_time() < 1.0  # no close_timeout, no quiet period waited for


async def test_full_window_is_settled_by_probe_and_a_fresh_connection(autojump_clock):
    gateway = ScriptedGateway()
    config = SenderConfig(window_size=4)

    async def body(sender):
        for n in range(6):
            await sender.submit(note(n), tag=n)
        first = await gateway.accept()
        assert [f[1] for f in await first.read_frames(4)] == [token(n).value for n in range(4)]
        probe = await first.read_frame()
        assert probe[1] == b""
        await first.reply("080200000000")
        await first.close()
        second = await gateway.accept()
        assert [f[1] for f in await second.read_frames(2)] == [token(4).value, token(5).value]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(functools.partial(sender.flush, confirm=True))
            assert (await second.read_frame())[1] == b""
            await second.reply("080200000000")
            await second.close()
        assert trio.current_time() < 1  # no timer decided anything

    outcomes, stats = await run_with(gateway, config, body)
    assert {o.tag: o.evidence for o in outcomes} == dict.fromkeys(range(6), Evidence.CONFIRMED)
    assert stats.probes == 2
    assert stats.possible_duplicates == 0


async def test_submit_nowait_queues_until_full_then_would_block(autojump_clock):
    gateway = ScriptedGateway()
    config = SenderConfig(queue_size=2)

    async def body(sender):
        sender.submit_nowait(note(1), tag=1)
        sender.submit_nowait(note(2), tag=2)
        with pytest.raises(trio.WouldBlock):
            sender.submit_nowait(note(3), tag=3)
        assert sender.stats.submitted == 2
        server = await gateway.accept()
        await server.read_frames(2)
        await flush_confirmed(sender, server)

    outcomes, _ = await run_with(gateway, config, body)
    assert sorted(o.tag for o in outcomes) == [1, 2]


class OneWayGateway:
    """Like ScriptedGateway, but the two directions close independently.

    Lets a test stop reading (so the sender's writes fail) while still writing an
    error response: the TN2265 case of an error frame read after a failed write.
    """

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel(math.inf)

    async def connect(self):
        to_server_send, to_server_receive = trio.testing.memory_stream_one_way_pair()
        to_client_send, to_client_receive = trio.testing.memory_stream_one_way_pair()
        self._send.send_nowait((to_server_receive, to_client_send))
        return trio.StapledStream(to_server_send, to_client_receive)

    async def accept(self):
        return await self._receive.receive()


FRAME = len(encode_frame(1, token(0).value, note(0).payload))
PROBE = len(encode_probe(Command.FRAME, 1))


async def read_bytes(stream, n):
    data = b""
    while len(data) < n:
        chunk = await stream.receive_some()
        assert chunk, "stream ended early"
        data += chunk
    return data


async def test_error_response_read_after_the_write_failed(autojump_clock):
    gateway = OneWayGateway()
    config = SenderConfig(error_wait=5.0)
    outcomes = []
    async with open_sender(
        connect=gateway.connect, config=config, on_outcome=outcomes.append
    ) as sender:
        for n in range(3):
            await sender.submit(note(n), tag=n)
        incoming, outgoing = await gateway.accept()
        await read_bytes(incoming, 3 * FRAME)
        # Stop reading: the sender's next write fails with a broken pipe...
        await incoming.aclose()
        await sender.submit(note(3), tag=3)
        await trio.testing.wait_all_tasks_blocked()
        # ...and only then does the error response arrive, naming notification 2.
        await outgoing.send_all(bytes.fromhex("0808") + struct.pack("!I", 2))
        await outgoing.aclose()
        second_in, second_out = await gateway.accept()
        await read_bytes(second_in, 2 * FRAME)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(functools.partial(sender.flush, confirm=True))
            await read_bytes(second_in, PROBE)
            await second_out.send_all(bytes.fromhex("080200000000"))
            await second_out.aclose()
        assert trio.current_time() < 5.0  # answered by the frame, not by error_wait
    kinds = {o.tag: o.kind for o in outcomes}
    assert kinds == {
        0: OutcomeKind.ACCEPTED,
        1: OutcomeKind.REJECTED,
        2: OutcomeKind.ACCEPTED,
        3: OutcomeKind.ACCEPTED,
    }
    assert not any(o.possible_duplicate for o in outcomes)


async def test_write_failure_without_error_response_resends_as_possible_duplicates(
    autojump_clock,
):
    gateway = OneWayGateway()
    config = SenderConfig(error_wait=2.0, spare_connection=False)
    outcomes = []
    async with open_sender(
        connect=gateway.connect, config=config, on_outcome=outcomes.append
    ) as sender:
        await sender.submit(note(1), tag=1)
        incoming, outgoing = await gateway.accept()
        await read_bytes(incoming, FRAME)
        await incoming.aclose()  # reads nothing more and says nothing
        await sender.submit(note(2), tag=2)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender.flush)
            # Careful replay: one notification and a probe per connection, at first.
            for _ in range(2):
                second_in, second_out = await gateway.accept()
                assert trio.current_time() >= 2.0  # the sender waited error_wait
                await read_bytes(second_in, FRAME + PROBE)
                await second_out.send_all(bytes.fromhex("080200000000"))
                await second_out.aclose()
        await outgoing.aclose()
    assert sorted((o.tag, o.kind, o.possible_duplicate) for o in outcomes) == [
        (1, OutcomeKind.ACCEPTED, True),
        (2, OutcomeKind.ACCEPTED, True),
    ]


async def test_submit_many_takes_an_async_iterable(autojump_clock):
    gateway = ScriptedGateway()

    async def produce():
        for n in range(3):
            await trio.lowlevel.checkpoint()
            yield note(n)

    async def body(sender):
        assert await sender.submit_many(produce()) == 3
        server = await gateway.accept()
        await server.read_frames(3)
        await flush_confirmed(sender, server)

    outcomes, _ = await run_with(gateway, CONFIG, body)
    assert len(outcomes) == 3


async def test_command_0_silent_closes_are_not_taken_for_a_wrong_environment(autojump_clock):
    # With command 0 the gateway answers a bad notification by closing: right after
    # the handshake, with nothing settled. That must not end the run as a
    # certificate problem; max_losses bounds it instead.
    gateway = ScriptedGateway()
    config = SenderConfig(command=Command.SIMPLE, max_losses=2, settle_after=1.0)

    async def body(sender):
        await sender.submit(note(1), tag=1)
        for _ in range(2):
            server = await gateway.accept()
            await server._read_exactly(1)
            await server.close()
        await sender.flush()
        assert sender.fatal_error is None
        await sender.submit(note(2), tag=2)
        third = await gateway.accept()
        await third._read_exactly(1)
        await sender.flush()

    outcomes, _ = await run_with(gateway, config, body)
    assert [(o.tag, o.kind) for o in outcomes] == [
        (1, OutcomeKind.FAILED),
        (2, OutcomeKind.ACCEPTED),
    ]
    assert "connections that died" in outcomes[0].reason


async def test_broadcast_frames_rejection_and_lazy_notifications(autojump_clock):
    gateway = ScriptedGateway()
    payload = b'{"aps":{"alert":"to all"}}'

    async def body(sender):
        tokens = [token(n).value for n in range(4)]
        assert await sender.submit_broadcast(tokens, payload=payload, expiry=9, tag="news") == 4
        server = await gateway.accept()
        raw = await server._read_exactly(4 * len(encode_frame(1, tokens[0], payload)))
        assert raw == b"".join(
            encode_frame(1 + i, t, payload, expiry=9, priority=10) for i, t in enumerate(tokens)
        )
        await server.reply("0808" + struct.pack("!I", 2).hex())  # the second token
        await server.close()
        second = await gateway.accept()
        again = await second.read_frames(2)
        assert [f[1] for f in again] == tokens[2:]
        await flush_confirmed(sender, second)

    outcomes, stats = await run_with(gateway, CONFIG, body)
    assert all(type(o).__name__ == "BroadcastOutcome" and o.tag == "news" for o in outcomes)
    by_token = {o.notification.token.value: o for o in outcomes}
    assert by_token[token(1).value].kind is OutcomeKind.REJECTED
    assert by_token[token(1).value].notification == Notification(
        token=token(1), payload=payload, expiry=9
    )
    assert sum(o.accepted for o in outcomes) == 3
    assert stats.submitted == 4
    assert stats.replayed == 2


async def test_broadcast_checks_payload_once_and_names_a_bad_token(autojump_clock):
    gateway = ScriptedGateway()
    config = SenderConfig(payload_limit=64)

    async def body(sender):
        with pytest.raises(LocalProtocolError, match="limit is 64"):
            await sender.submit_broadcast([bytes(32)], payload=b"{" + b" " * 100 + b"}")
        assert sender.stats.submitted == 0
        with pytest.raises(LocalProtocolError, match="token 3 of the broadcast is 31 bytes"):
            await sender.submit_broadcast(
                [bytes(32), DeviceToken(bytes([1]) * 32), bytes(31)], payload=b"{}"
            )
        assert sender.stats.submitted == 2  # those before the bad one are queued
        server = await gateway.accept()
        await server.read_frames(2)
        await flush_confirmed(sender, server)

    outcomes, _ = await run_with(gateway, config, body)
    assert len(outcomes) == 2


async def test_submit_many_queues_those_before_a_bad_notification(autojump_clock):
    gateway = ScriptedGateway()
    config = SenderConfig(payload_limit=64)

    async def body(sender):
        too_big = Notification(token=token(9), payload=b"{" + b" " * 100 + b"}")
        with pytest.raises(LocalProtocolError, match="limit is 64"):
            await sender.submit_many([note(1), note(2), too_big, note(3)])
        assert sender.stats.submitted == 2
        server = await gateway.accept()
        assert [f[1] for f in await server.read_frames(2)] == [token(1).value, token(2).value]
        await flush_confirmed(sender, server)

    outcomes, _ = await run_with(gateway, config, body)
    assert len(outcomes) == 2


async def test_outcomes_stream_delivers_each_once_and_ends_after_finish(autojump_clock):
    # The README's pattern: a task reads outcomes() beside the submitting code, and
    # finish() says nothing more is coming, so the reader ends by itself.
    gateway = ScriptedGateway()
    seen = []
    async with open_sender(connect=gateway.connect, config=CONFIG) as sender:
        async with trio.open_nursery() as nursery:

            async def read_outcomes():
                async for outcome in sender.outcomes():
                    seen.append(outcome)

            async def gateway_side():
                server = await gateway.accept()
                frames = await server.read_frames(20)
                await server.reply("0808" + struct.pack("!I", ident(frames[6])).hex())
                await server.close()
                second = await gateway.accept()
                await server_frames_until_probe(second)  # 13 replays, then the probe
                await second.reply("080200000000")
                await second.close()

            nursery.start_soon(read_outcomes)
            nursery.start_soon(gateway_side)
            for n in range(20):
                await sender.submit(note(n), tag=n)
            sender.finish()
            with pytest.raises(trio.ClosedResourceError, match="finish"):
                await sender.submit(note(99))
        # The nursery ended: the reader's loop ended after the 20th outcome, and the
        # sender is still open (closing is the block's job).
        assert sorted(o.tag for o in seen) == list(range(20))
        assert [o.tag for o in seen if o.kind is OutcomeKind.REJECTED] == [6]
        assert sender.stats.replayed == 13


async def test_aclose_inside_the_block_does_not_cancel_the_caller(autojump_clock):
    gateway = ScriptedGateway()
    seen = []
    async with open_sender(connect=gateway.connect, config=CONFIG) as sender:
        async with trio.open_nursery() as nursery:

            async def read_outcomes():
                async for outcome in sender.outcomes():
                    seen.append(outcome)

            async def gateway_side():
                server = await gateway.accept()
                await server_frames_until_probe(server)
                await server.reply("080200000000")
                await server.close()

            nursery.start_soon(read_outcomes)
            nursery.start_soon(gateway_side)
            for n in range(20):
                await sender.submit(note(n), tag=n)
            await sender.aclose()  # settles everything (a probe), then stops the sender
        after = "still running"  # the caller's own code goes on after aclose()
    assert after == "still running"
    assert len(seen) == 20 == sender.stats.accepted


async def five_with_a_spare(sender, gateway):
    """Submit five; the first connection's socket, its five frames, and the spare
    (opened while the first one is still running)."""
    for n in range(5):
        await sender.submit(note(n), tag=n)
    first = await gateway.accept()
    frames = await first.read_frames(5)
    spare = await gateway.accept()
    return first, frames, spare


THIRD_OF_FIVE_REJECTED = [
    (0, OutcomeKind.ACCEPTED),
    (1, OutcomeKind.ACCEPTED),
    (2, OutcomeKind.REJECTED),
    (3, OutcomeKind.ACCEPTED),
    (4, OutcomeKind.ACCEPTED),
]


async def test_spare_connection_takes_the_replay_without_a_new_handshake(autojump_clock):
    gateway = ScriptedGateway()
    config = SenderConfig(spare_connection=True, backoff_initial=0.01)

    async def body(sender):
        first, frames, spare = await five_with_a_spare(sender, gateway)
        await first.reply("0808" + struct.pack("!I", ident(frames[2])).hex())
        await first.close()
        started = trio.current_time()
        again = await spare.read_frames(2)  # the replay goes to the spare at once
        assert [f[1] for f in again] == [token(3).value, token(4).value]
        assert trio.current_time() == started
        assert gateway.connections == 3  # and a new spare is on its way
        await flush_confirmed(sender, spare)

    outcomes, stats = await run_with(gateway, config, body)
    assert sorted((o.tag, o.kind) for o in outcomes) == THIRD_OF_FIVE_REJECTED
    assert stats.connections_opened == 2  # the unused third spare is not counted


@pytest.mark.parametrize("idle", [0.0, 10.0])
async def test_a_spare_the_gateway_closes_is_never_used(autojump_clock, idle):
    # Closed at once (a gateway that drops connections nobody writes on): spares stop.
    # Closed after 10 s idle (a middlebox's idle timeout): spares go on, and the next
    # ones are closed by the sender after 5 s, before the middlebox would drop them.
    gateway = ScriptedGateway()
    config = SenderConfig(spare_connection=True, backoff_initial=0.01)

    async def body(sender):
        first, frames, spare = await five_with_a_spare(sender, gateway)
        await trio.sleep(idle)
        await spare.close()
        await trio.testing.wait_all_tasks_blocked()  # the watching read has seen it
        await first.reply("0808" + struct.pack("!I", ident(frames[2])).hex())
        await first.close()
        fresh = await gateway.accept()  # the replay goes to a new connection
        again = await fresh.read_frames(2)
        assert [f[1] for f in again] == [token(3).value, token(4).value]
        if idle:
            with trio.fail_after(30):
                newer = await gateway.accept()  # spares go on
            opened = trio.current_time()
            with trio.fail_after(60):
                assert await newer.stream.receive_some() == b""  # closed by the sender...
            assert 5 <= trio.current_time() - opened <= 6  # ...after half the idle wait
        await flush_confirmed(sender, fresh)
        if not idle:
            assert gateway.connections == 3  # no spare opened after the dead one

    outcomes, stats = await run_with(gateway, config, body)
    assert sorted((o.tag, o.kind) for o in outcomes) == THIRD_OF_FIVE_REJECTED
    assert not any(o.possible_duplicate for o in outcomes)  # nothing was lost on it
    assert stats.spares_used == 0


async def test_an_unused_spare_is_closed_after_a_minute(autojump_clock):
    gateway = ScriptedGateway()
    config = SenderConfig(spare_connection=True, backoff_initial=0.01)

    async def body(sender):
        await sender.submit(note(1), tag=1)
        first = await gateway.accept()
        await first.read_frame()
        spare = await gateway.accept()
        await flush_confirmed(sender, first)
        started = trio.current_time()
        with trio.fail_after(120):
            assert await spare.stream.receive_some() == b""  # we closed it
        assert 60 <= trio.current_time() - started <= 61
        await sender.submit(note(2), tag=2)  # later work: a fresh connection
        fresh = await gateway.accept()
        assert (await fresh.read_frame())[1] == token(2).value
        await flush_confirmed(sender, fresh)

    outcomes, stats = await run_with(gateway, config, body)
    assert [o.kind for o in outcomes] == [OutcomeKind.ACCEPTED] * 2
    assert stats.spares_used == 0
