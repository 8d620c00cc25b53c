"""The HTTP/2 sender against hand-written server frames on trio memory streams.

The server end of each connection is h2's server-side connection driven step by step
by the test (what to answer, when to lower SETTINGS, when to go away), plus frames
written as bytes from RFC 9113 where the test must not trust h2 on both ends (GOAWAY,
RST_STREAM). The sender reaches it through ``open_http2_sender(connect=...)``.
"""

from __future__ import annotations

import collections
import json
import struct
from collections.abc import Callable

import attrs
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import trio
import trio.testing

from apns_legacy.client import Http2SenderConfig, OutcomeKind, open_http2_sender
from apns_legacy.h2wire import AppSettings, ProviderKey
from apns_legacy.wire import DeviceToken, Notification

TOPIC = "com.example.app"
PAYLOAD = b'{"aps":{"alert":"hi"}}'
APNS_ID = "eabeae54-14a8-11e5-b60b-1697f925ec7b"

# RFC 9113 section 6: frame types and error codes used below.
GOAWAY, RST_STREAM = 0x7, 0x3
NO_ERROR, REFUSED_STREAM = 0x0, 0x7


def frame(kind: int, stream_id: int, payload: bytes, flags: int = 0) -> bytes:
    """One frame (RFC 9113 4.1): 24-bit length, type, flags, 31-bit stream id."""
    return (
        len(payload).to_bytes(3, "big")
        + bytes([kind, flags])
        + struct.pack(">I", stream_id)
        + payload
    )


def goaway(last_stream_id: int, error: int, debug: bytes) -> bytes:
    """GOAWAY (RFC 9113 6.8): last stream id, error code, debug data."""
    return frame(GOAWAY, 0, struct.pack(">II", last_stream_id, error) + debug)


def rst_stream(stream_id: int, error: int) -> bytes:
    """RST_STREAM (RFC 9113 6.4): a 32-bit error code."""
    return frame(RST_STREAM, stream_id, struct.pack(">I", error))


def token(i: int) -> DeviceToken:
    return DeviceToken.from_bytes(i.to_bytes(32, "big"))


def index_of(path: str) -> int:
    return int(path.rsplit("/", 1)[1], 16)


@attrs.define
class Request:
    headers: dict[str, str]
    body: bytearray = attrs.field(factory=bytearray)
    ended: bool = False
    answered: bool = False
    data_frames: list[int] = attrs.field(factory=list)

    @property
    def index(self) -> int:
        return index_of(self.headers[":path"])


class RawServer:
    """The server end of one connection, answering only when the test says so."""

    def __init__(self, stream: trio.abc.Stream, settings: dict[int, int], *, mute: bool) -> None:
        self.stream = stream
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        self.settings = settings
        self.requests: dict[int, Request] = {}
        self.mute = mute  # reads, never writes (not even PING answers)
        self.changed = trio.Event()
        self.eof = False
        self.pings = 0
        self.settings_acks = 0
        self.violations: list[str] = []
        self.resets: list[int] = []
        self.errors: list[Exception] = []

    async def run(self) -> None:
        self.conn.initiate_connection()
        # In force once the client acknowledges them (RFC 9113 6.5.3), as for a server.
        self.conn.update_settings(self.settings)
        await self.flush()
        try:
            while True:
                data = await self.stream.receive_some()
                if not data:
                    break
                try:
                    events = self.conn.receive_data(data)
                except h2.exceptions.ProtocolError as exc:
                    self.errors.append(exc)
                    break
                for event in events:
                    self.on_event(event)
                if not self.mute:
                    await self.flush()
                self.wake()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        self.eof = True
        self.wake()

    def wake(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    def open_streams(self) -> list[int]:
        return [k for k, r in self.requests.items() if not r.answered]

    def on_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            assert event.stream_id is not None
            assert event.headers is not None
            limit = self.conn.local_settings.max_concurrent_streams
            if len(self.open_streams()) >= limit:
                self.violations.append(f"stream {event.stream_id} opened over the limit {limit}")
            self.requests[event.stream_id] = Request(dict(event.headers))  # type: ignore[arg-type]
        elif isinstance(event, h2.events.DataReceived):
            assert event.stream_id is not None
            assert event.data is not None
            request = self.requests[event.stream_id]
            request.body += event.data
            request.data_frames.append(len(event.data))
            if not self.mute:
                self.conn.acknowledge_received_data(
                    event.flow_controlled_length or 0, event.stream_id
                )
        elif isinstance(event, h2.events.StreamEnded):
            assert event.stream_id is not None
            self.requests[event.stream_id].ended = True
        elif isinstance(event, h2.events.PingReceived):
            self.pings += 1
        elif isinstance(event, h2.events.SettingsAcknowledged):
            self.settings_acks += 1
        elif isinstance(event, h2.events.StreamReset):
            assert event.stream_id is not None
            self.resets.append(event.stream_id)
            if event.stream_id in self.requests:
                self.requests[event.stream_id].answered = True

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            await self.stream.send_all(data)

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(self.conn.data_to_send() + data)

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        while not condition():
            await self.changed.wait()

    async def wait_ended(self, count: int) -> list[int]:
        """Wait until ``count`` complete requests are unanswered; their stream ids."""

        def ready() -> list[int]:
            return [k for k in self.open_streams() if self.requests[k].ended]

        await self.wait_for(lambda: len(ready()) >= count)
        return ready()

    def answer_now(
        self, stream_id: int, status: int = 200, body: dict[str, object] | None = None
    ) -> None:
        self.requests[stream_id].answered = True
        headers = [(":status", str(status)), ("apns-id", APNS_ID)]
        if body is None:
            self.conn.send_headers(stream_id, headers, end_stream=True)
        else:
            headers.append(("content-type", "application/json"))
            self.conn.send_headers(stream_id, headers)
            self.conn.send_data(stream_id, json.dumps(body).encode(), end_stream=True)

    async def answer(
        self, stream_id: int, status: int = 200, body: dict[str, object] | None = None
    ) -> None:
        self.answer_now(stream_id, status, body)
        await self.flush()
        self.wake()

    async def answer_all(self) -> None:
        """Answer 200 to whatever comes, one request at a time, until the client leaves."""
        while not self.eof:
            # Taken before the flush: requests read while it runs set this one.
            changed = self.changed
            ready = [k for k in self.open_streams() if self.requests[k].ended]
            for stream_id in ready:
                self.answer_now(stream_id)
            if ready:
                await self.flush()
            await changed.wait()


class Harness:
    """Hands the sender a new memory stream pair per connection; keeps the servers."""

    def __init__(self, nursery: trio.Nursery, **settings: int) -> None:
        self.nursery = nursery
        self.settings = {
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100,
            **{getattr(h2.settings.SettingCodes, k.upper()): v for k, v in settings.items()},
        }
        self.servers: list[RawServer] = []
        self.mute = False
        self._new = trio.Event()

    async def connect(self) -> trio.abc.Stream:
        client, server_end = trio.testing.memory_stream_pair()
        server = RawServer(server_end, self.settings, mute=self.mute)
        self.servers.append(server)
        self.nursery.start_soon(server.run)
        self._new.set()
        self._new = trio.Event()
        return client

    async def server(self, index: int) -> RawServer:
        while len(self.servers) <= index:
            await self._new.wait()
        return self.servers[index]


def config(key: ProviderKey, **changes: object) -> Http2SenderConfig:
    values: dict[str, object] = {
        "host": "apns.test",
        "settings": AppSettings(topic=TOPIC),
        "provider_key": key,
        "retry_delay": 0.001,
    }
    values.update(changes)
    return Http2SenderConfig(**values)  # type: ignore[arg-type]


def note(i: int, payload: bytes = PAYLOAD) -> Notification:
    return Notification(token=token(i), payload=payload)


async def test_settings_lowered_to_one_with_streams_open(key):
    async with trio.open_nursery() as nursery:
        harness = Harness(nursery)
        with trio.fail_after(30):
            async with open_http2_sender(config(key), connect=harness.connect) as sender:
                outcomes = [await sender.submit(note(i)) for i in range(10)]
                server = await harness.server(0)
                # A token connection has one stream until its first answer.
                first = await server.wait_ended(1)
                assert first == [1]
                await server.answer(1)
                open_now = await server.wait_ended(9)
                assert len(open_now) == 9
                # Lowered to 1 with nine streams open; the client acknowledges.
                server.conn.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1})
                await server.flush()
                await server.wait_for(lambda: server.settings_acks >= 3)
                outcomes += [await sender.submit(note(i)) for i in range(10, 20)]
                for stream_id in open_now:
                    await server.answer(stream_id)
                # From now on one stream at a time: the next opens after an answer.
                for _ in range(10):
                    (stream_id,) = await server.wait_ended(1)
                    assert server.open_streams() == [stream_id]
                    await server.answer(stream_id)
        nursery.cancel_scope.cancel()
    assert [o.kind for o in outcomes] == [OutcomeKind.ACCEPTED] * 20
    assert server.violations == []
    assert sorted(r.index for r in server.requests.values()) == list(range(20))
    assert sender.stats.connections_opened == 1


async def test_goaway_below_open_streams_retries_those_above(key):
    async with trio.open_nursery() as nursery:
        harness = Harness(nursery)
        with trio.fail_after(30):
            async with open_http2_sender(config(key), connect=harness.connect) as sender:
                outcomes = [await sender.submit(note(i)) for i in range(6)]
                first = await harness.server(0)
                await first.answer((await first.wait_ended(1))[0])
                assert await first.wait_ended(5) == [3, 5, 7, 9, 11]
                await first.answer(3)
                await first.answer(5)
                # Written by hand (RFC 9113 6.8): streams 9 and 11 were not processed.
                await first.send_raw(goaway(7, NO_ERROR, b'{"reason":"Shutdown"}'))
                second = await harness.server(1)
                await first.answer(7)  # a stream below the last id still completes
                nursery.start_soon(second.answer_all)
                await first.wait_for(lambda: first.eof)
        nursery.cancel_scope.cancel()
    assert [o.kind for o in outcomes] == [OutcomeKind.ACCEPTED] * 6
    assert sorted(r.index for r in first.requests.values()) == [0, 1, 2, 3, 4, 5]
    assert sorted(r.index for r in second.requests.values()) == [4, 5]
    assert not any(o.possible_duplicate for o in outcomes)
    assert sender.stats.possible_duplicates == 0
    assert sender.stats.replayed == 2
    assert first.errors == []


async def test_refused_stream_is_retried(key):
    async with trio.open_nursery() as nursery:
        harness = Harness(nursery)
        with trio.fail_after(30):
            async with open_http2_sender(config(key), connect=harness.connect) as sender:
                outcomes = [await sender.submit(note(i)) for i in range(3)]
                server = await harness.server(0)
                await server.answer((await server.wait_ended(1))[0])
                assert await server.wait_ended(2) == [3, 5]
                server.requests[3].answered = True
                await server.send_raw(rst_stream(3, REFUSED_STREAM))
                await server.answer(5)
                (again,) = await server.wait_ended(1)
                assert server.requests[again].index == 1
                await server.answer(again)
        nursery.cancel_scope.cancel()
    assert [o.kind for o in outcomes] == [OutcomeKind.ACCEPTED] * 3
    assert not outcomes[1].possible_duplicate
    assert outcomes[1].attempts == 1
    assert sender.stats.connections_opened == 1


async def test_too_many_provider_token_updates_moves_to_another_connection(key):
    async with trio.open_nursery() as nursery:
        harness = Harness(nursery)
        with trio.fail_after(30):
            async with open_http2_sender(config(key), connect=harness.connect) as sender:
                outcome = await sender.submit(note(1))
                first = await harness.server(0)
                (stream_id,) = await first.wait_ended(1)
                await first.answer(stream_id, 429, {"reason": "TooManyProviderTokenUpdates"})
                second = await harness.server(1)
                (stream_id,) = await second.wait_ended(1)
                await second.answer(stream_id)
                await first.wait_for(lambda: first.eof)
        nursery.cancel_scope.cancel()
    assert outcome.accepted
    assert not outcome.possible_duplicate
    # The same cached token on the new connection: no new token within 20 minutes.
    assert first.requests[1].headers["authorization"] == second.requests[1].headers["authorization"]
    assert sender.stats.connections_opened == 2


async def test_expired_provider_token_new_token_new_connection_retried_once(key):
    now = [1_700_000_000.0]
    async with trio.open_nursery() as nursery:
        harness = Harness(nursery)
        with trio.fail_after(30):
            async with open_http2_sender(
                config(key, clock=lambda: now[0]), connect=harness.connect
            ) as sender:
                outcome = await sender.submit(note(1))
                first = await harness.server(0)
                (stream_id,) = await first.wait_ended(1)
                now[0] += 25 * 60  # past the 20-minute floor: a new token may be made
                await first.answer(stream_id, 403, {"reason": "ExpiredProviderToken"})
                second = await harness.server(1)
                (stream_id,) = await second.wait_ended(1)
                # Still expired with the new token: it fails, no endless loop.
                await second.answer(stream_id, 403, {"reason": "ExpiredProviderToken"})
        nursery.cancel_scope.cancel()
    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.reason == "ExpiredProviderToken after a new token"
    tokens = [s.requests[1].headers["authorization"] for s in (first, second)]
    assert tokens[0] != tokens[1]
    assert all(t.startswith("bearer ey") for t in tokens)


async def test_tiny_flow_control_window(key):
    big = b'{"aps":{"alert":"' + b"x" * 1000 + b'"}}'
    async with trio.open_nursery() as nursery:
        harness = Harness(nursery, initial_window_size=5)
        with trio.fail_after(30):
            async with open_http2_sender(config(key), connect=harness.connect) as sender:
                outcomes = [await sender.submit(note(i)) for i in range(4)]
                outcomes.append(await sender.submit(note(4, big)))
                server = await harness.server(0)
                nursery.start_soon(server.answer_all)
        nursery.cancel_scope.cancel()
    assert [o.kind for o in outcomes] == [OutcomeKind.ACCEPTED] * 5
    bodies = {r.index: bytes(r.body) for r in server.requests.values()}
    assert bodies == {0: PAYLOAD, 1: PAYLOAD, 2: PAYLOAD, 3: PAYLOAD, 4: big}
    # Stream 1 went out before the client had the server's SETTINGS (allowed); every
    # later one in pieces of at most 5 bytes.
    sizes = [n for k, r in server.requests.items() if k > 1 for n in r.data_frames]
    assert max(sizes) <= 5
    assert len(server.requests[9].data_frames) == -(-len(big) // 5)
    assert server.errors == []


async def test_answer_before_the_whole_body_resets_our_half_of_the_stream(key):
    # The server rejects a request while its body still waits for window: the sender
    # settles it and resets the stream, so that it stops counting as open.
    big = b'{"aps":{"alert":"' + b"x" * 1000 + b'"}}'
    async with trio.open_nursery() as nursery:
        harness = Harness(nursery, initial_window_size=5)
        with trio.fail_after(30):
            async with open_http2_sender(config(key), connect=harness.connect) as sender:
                first = await sender.submit(note(0))
                server = await harness.server(0)
                await server.answer((await server.wait_ended(1))[0])
                await server.wait_for(lambda: server.settings_acks >= 2)
                server.mute = True  # no WINDOW_UPDATE: the body stalls after 5 bytes
                outcome = await sender.submit(note(3, big))
                await server.wait_for(lambda: 3 in server.requests)
                await server.wait_for(lambda: len(server.requests[3].body) == 5)
                server.mute = False
                await server.answer(3, 400, {"reason": "BadDeviceToken"})
                await server.wait_for(lambda: 3 in server.resets)
        nursery.cancel_scope.cancel()
    assert first.accepted
    assert (outcome.status, outcome.reason) == (400, "BadDeviceToken")
    assert len(server.requests[3].body) == 5


async def test_connection_lost_with_streams_open_resends_as_possible_duplicates(key):
    async with trio.open_nursery() as nursery:
        harness = Harness(nursery)
        with trio.fail_after(30):
            async with open_http2_sender(config(key), connect=harness.connect) as sender:
                outcomes = [await sender.submit(note(i)) for i in range(4)]
                first = await harness.server(0)
                await first.answer((await first.wait_ended(1))[0])
                assert await first.wait_ended(3) == [3, 5, 7]
                await first.stream.aclose()  # gone without a word
                second = await harness.server(1)
                nursery.start_soon(second.answer_all)
        nursery.cancel_scope.cancel()
    assert [o.kind for o in outcomes] == [OutcomeKind.ACCEPTED] * 4
    assert [o.possible_duplicate for o in outcomes] == [False, True, True, True]
    assert sender.stats.possible_duplicates == 3
    assert sorted(r.index for r in second.requests.values()) == [1, 2, 3]


async def test_server_that_never_answers_anything(key, autojump_clock):
    # Not even PINGs: each connection is declared lost after ping_interval +
    # ping_timeout, and the notification fails after max_losses connections.
    async with trio.open_nursery() as nursery:
        harness = Harness(nursery)
        harness.mute = True
        start = trio.current_time()
        with trio.fail_after(1000):
            async with open_http2_sender(
                config(key, ping_interval=30, ping_timeout=5, max_losses=3),
                connect=harness.connect,
            ) as sender:
                outcome = await sender.submit(note(1))
        elapsed = trio.current_time() - start
        nursery.cancel_scope.cancel()
    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.reason.startswith("in flight on 3 connections that died")
    assert len(harness.servers) == 3
    assert [s.pings for s in harness.servers] == [1, 1, 1]
    assert 3 * 35 <= elapsed < 3 * 35 + 5


async def test_stream_never_answered_is_reset_and_retried(key, autojump_clock):
    # PINGs are answered (h2 does), the stream never: it is reset after
    # response_timeout and written again, counted as a possible duplicate.
    async with trio.open_nursery() as nursery:
        harness = Harness(nursery)
        with trio.fail_after(1000):
            async with open_http2_sender(
                config(key, response_timeout=20, ping_interval=7), connect=harness.connect
            ) as sender:
                outcome = await sender.submit(note(1))
                server = await harness.server(0)
                await server.wait_ended(1)
                start = trio.current_time()
                await server.wait_for(lambda: len(server.requests) == 2)
                waited = trio.current_time() - start
                await server.answer(3)
        nursery.cancel_scope.cancel()
    assert outcome.accepted
    assert outcome.possible_duplicate
    assert 20 <= waited < 25
    assert server.pings >= 2  # idle pings while waiting, answered
    assert sender.stats.connections_opened == 1


async def test_idle_connection_is_pinged_and_kept(key, autojump_clock):
    async with trio.open_nursery() as nursery:
        harness = Harness(nursery)
        with trio.fail_after(1000):
            async with open_http2_sender(
                config(key, ping_interval=60, ping_timeout=10), connect=harness.connect
            ) as sender:
                await sender.submit(note(1))
                server = await harness.server(0)
                await server.answer((await server.wait_ended(1))[0])
                await sender.wait_settled()
                start = trio.current_time()
                await server.wait_for(lambda: server.pings == 1)
                first_ping = trio.current_time() - start
                await trio.sleep(600)  # virtual time: ten minutes idle
                later = await sender.submit(note(2))
                (stream_id,) = await server.wait_ended(1)
                await server.answer(stream_id)
        nursery.cancel_scope.cancel()
    assert 59 <= first_ping <= 61
    assert 10 <= server.pings <= 12
    assert later.accepted
    assert sender.stats.connections_opened == 1


async def test_unanswered_ping_on_an_idle_connection_closes_it(key, autojump_clock):
    async with trio.open_nursery() as nursery:
        harness = Harness(nursery)
        with trio.fail_after(1000):
            async with open_http2_sender(
                config(key, ping_interval=60, ping_timeout=10), connect=harness.connect
            ) as sender:
                await sender.submit(note(1))
                server = await harness.server(0)
                await server.answer((await server.wait_ended(1))[0])
                await sender.wait_settled()
                server.mute = True  # from now on it reads but never writes
                start = trio.current_time()
                await server.wait_for(lambda: server.eof)
                closed_after = trio.current_time() - start
        nursery.cancel_scope.cancel()
    assert server.pings == 1
    assert 69 <= closed_after <= 71
    assert sender.stats.possible_duplicates == 0
    assert collections.Counter(s.eof for s in harness.servers)[True] >= 1


class BreaksOnLargeWrite(trio.abc.Stream):
    """A client stream whose first write over ``limit`` bytes fails, as a connection
    that dies in the middle of a batch of requests."""

    def __init__(self, inner: trio.abc.Stream, limit: int) -> None:
        self.inner = inner
        self.limit = limit
        self.broken = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if len(data) > self.limit and not self.broken:
            self.broken = True
            raise trio.BrokenResourceError("connection died mid-batch")
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_connection_dying_mid_batch_returns_the_unwritten_rest_unreplayed(key):
    """99 requests taken in one batch, written 64 at a time: the first write of 64 fails.
    Those 64 are possible duplicates; the 35 never written go back as they were; each of
    the 100 notifications gets exactly one outcome, on the next connection."""
    async with trio.open_nursery() as nursery:
        harness = Harness(nursery)
        streams: list[BreaksOnLargeWrite] = []

        async def connect() -> trio.abc.Stream:
            stream = BreaksOnLargeWrite(await harness.connect(), limit=4000)
            stream.broken = bool(streams)  # only the first connection breaks
            streams.append(stream)
            return stream

        seen: collections.Counter[int] = collections.Counter()
        with trio.fail_after(30):
            async with open_http2_sender(
                config(key), connect=connect, on_outcome=lambda o: seen.update([id(o)])
            ) as sender:
                outcomes = [await sender.submit(note(i)) for i in range(100)]
                first = await harness.server(0)
                (stream_id,) = await first.wait_ended(1)  # one stream until an answer
                await first.answer(stream_id)
                second = await harness.server(1)
                nursery.start_soon(second.answer_all)
        nursery.cancel_scope.cancel()
    assert streams[0].broken
    assert [o.kind for o in outcomes] == [OutcomeKind.ACCEPTED] * 100
    assert sorted(seen.values()) == [1] * 100
    assert sum(o.possible_duplicate for o in outcomes) == 64
    assert sender.stats.possible_duplicates == 64
    assert sorted(r.index for r in second.requests.values()) == list(range(1, 100))
