"""The HTTP/2 APNs simulator over real TLS on 127.0.0.1 (ALPN h2).

Two clients nobody here wrote the HTTP/2 side of: ``curl --http2`` (nghttp2) as a
subprocess, and h2's client connection driven by hand in this file (``H2Client``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
import trio
from cryptography.hazmat.primitives.asymmetric import ec

from apns_legacy.h2wire import (
    AppSettings,
    ProviderKey,
    Reason,
    build_request,
    make_provider_token,
    parse_response,
)
from apns_legacy.simulator import Http2Faults, Http2SimulatorConfig, open_http2_simulator
from apns_legacy.tls import TLSStream, client_context, make_test_pki, open_tls_stream
from apns_legacy.wire import DeviceToken, Notification

CURL = shutil.which("curl")
GOOD = "aa" * 32
BAD = "bb" * 32
GONE = "cc" * 32
GONE_MS = 1_454_402_113_123
TOPIC = "com.example.app"
PAYLOAD = b'{"aps":{"alert":"hi"}}'


def curl_has_http2() -> bool:
    if CURL is None:
        return False
    out = subprocess.run([CURL, "--version"], capture_output=True, text=True, check=False)
    return "HTTP2" in out.stdout


needs_curl = pytest.mark.skipif(not curl_has_http2(), reason="curl with HTTP/2 is not installed")


@pytest.fixture(scope="module")
def pki():
    return make_test_pki()


def config_for(key: ProviderKey, **changes) -> Http2SimulatorConfig:
    return Http2SimulatorConfig(
        provider_keys={(key.team_id, key.key_id): key.public_key},
        invalid_tokens=[BAD],
        uninstalled_tokens={GONE: GONE_MS},
        **changes,
    )


@attrs.define
class Answer:
    headers: list[tuple[bytes, bytes]] = attrs.field(factory=list)
    body: bytearray = attrs.field(factory=bytearray)
    reset: int | None = None
    done: trio.Event = attrs.field(factory=trio.Event)

    def parsed(self):
        return parse_response(self.headers, bytes(self.body))


class H2Client:
    """h2's client side over our TLSStream: a reader task and one Answer per stream."""

    def __init__(self, stream: TLSStream) -> None:
        self.stream = stream
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.answers: dict[int, Answer] = {}
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.settings_changed = trio.Event()
        self.closed = trio.Event()
        self.send_lock = trio.Lock()
        self.goaway_seen = trio.Event()

    async def flush(self) -> None:
        async with self.send_lock:
            data = self.conn.data_to_send()
            if data:
                await self.stream.send_all(data)

    async def read_loop(self) -> None:
        try:
            while True:
                data = await self.stream.receive_some()
                if not data:
                    break
                for event in self.conn.receive_data(data):
                    self.on_event(event)
                await self.flush()
        except trio.BrokenResourceError:
            pass
        finally:
            self.closed.set()
            for answer in self.answers.values():
                answer.done.set()

    def on_event(self, event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            self.answers[event.stream_id].headers = list(event.headers)
        elif isinstance(event, h2.events.DataReceived):
            self.answers[event.stream_id].body += event.data
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            self.answers[event.stream_id].done.set()
        elif isinstance(event, h2.events.StreamReset):
            self.answers[event.stream_id].reset = event.error_code
            self.answers[event.stream_id].done.set()
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self.settings_changed.set()
            self.settings_changed = trio.Event()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event
            self.goaway_seen.set()

    @property
    def max_streams(self) -> int:
        return self.conn.remote_settings.max_concurrent_streams

    async def start(self, headers, body: bytes) -> Answer:
        stream_id = self.conn.get_next_available_stream_id()
        answer = self.answers[stream_id] = Answer()
        self.conn.send_headers(stream_id, list(headers), end_stream=not body)
        if body:
            self.conn.send_data(stream_id, body, end_stream=True)
        await self.flush()
        return answer

    async def start_many(self, requests) -> list[Answer]:
        # All in one write, so that a GOAWAY cannot arrive between them.
        answers = []
        for headers, body in requests:
            stream_id = self.conn.get_next_available_stream_id()
            answers.append(Answer())
            self.answers[stream_id] = answers[-1]
            self.conn.send_headers(stream_id, list(headers))
            self.conn.send_data(stream_id, body, end_stream=True)
        await self.flush()
        return answers

    async def request(self, headers, body: bytes) -> Answer:
        answer = await self.start(headers, body)
        await answer.done.wait()
        return answer


@asynccontextmanager
async def h2_client(sim, *, certificate: bool = False) -> AsyncIterator[H2Client]:
    context = sim.client_context(certificate=certificate)
    stream = await open_tls_stream(*sim.address, context, server_hostname="localhost")
    await stream.do_handshake()
    assert stream.alpn_protocol == b"h2"
    client = H2Client(stream)
    try:
        client.conn.initiate_connection()
        await client.flush()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.read_loop)
            # The server's first SETTINGS.
            await client.settings_changed.wait()
            yield client
            nursery.cancel_scope.cancel()
    finally:
        await trio.aclose_forcefully(stream)


def request_for(token_hex: str, *, jwt: str | None = None, topic: str | None = TOPIC, **kw):
    notification = Notification(token=DeviceToken.from_hex(token_hex), payload=PAYLOAD)
    request = build_request(
        notification, AppSettings(topic=topic, **kw), authorization=jwt, authority="localhost"
    )
    return request.headers, request.body


# -- curl --------------------------------------------------------------------------------


async def curl(sim, tmp_path, token_hex: str, *headers: str):
    ca = tmp_path / "ca.pem"
    ca.write_bytes(sim.pki.ca_pem())
    args = [
        CURL,
        "--http2",
        "--silent",
        "--show-error",
        "--max-time",
        "10",
        "--cacert",
        str(ca),
        "--output",
        "-",
        "--write-out",
        "\n%{http_code} %{http_version}",
        "--data-binary",
        PAYLOAD.decode(),
    ]
    for header in headers:
        args += ["--header", header]
    args.append(f"https://localhost:{sim.port}/3/device/{token_hex}")
    result = await trio.run_process(args, capture_stdout=True, capture_stderr=True, check=False)
    assert result.returncode == 0, result.stderr
    body, _, tail = result.stdout.decode().rpartition("\n")
    status, version = tail.split()
    return int(status), version, body


@needs_curl
async def test_curl_with_token_200_400_410(key, tmp_path):
    async with open_http2_simulator(config_for(key)) as sim:
        jwt = make_provider_token(key, now=int(time.time())).value
        auth = f"authorization: bearer {jwt}"
        status, version, body = await curl(sim, tmp_path, GOOD, auth, f"apns-topic: {TOPIC}")
        assert (status, version, body) == (200, "2", "")
        status, _, body = await curl(sim, tmp_path, BAD, auth, f"apns-topic: {TOPIC}")
        assert status == 400
        assert json.loads(body) == {"reason": "BadDeviceToken"}
        status, _, body = await curl(sim, tmp_path, GONE, auth, f"apns-topic: {TOPIC}")
        assert status == 410
        assert json.loads(body) == {"reason": "Unregistered", "timestamp": GONE_MS}
    assert [record.token for record in sim.accepted] == [GOOD]
    assert sim.accepted[0].auth == "token"
    assert sim.accepted[0].team_id == key.team_id
    assert sim.accepted[0].payload == PAYLOAD.decode()


@needs_curl
async def test_curl_without_a_token_gets_403(key, tmp_path):
    async with open_http2_simulator(config_for(key)) as sim:
        status, _, body = await curl(sim, tmp_path, GOOD, f"apns-topic: {TOPIC}")
        assert status == 403
        assert json.loads(body) == {"reason": "MissingProviderToken"}
        assert sim.accepted == []


# -- h2's client, by hand ----------------------------------------------------------------


async def test_token_connection_starts_at_one_stream_then_opens_up(key):
    async with open_http2_simulator(config_for(key)) as sim, h2_client(sim) as client:
        assert client.max_streams == 1
        jwt = make_provider_token(key, now=int(time.time())).value
        answer = await client.request(*request_for(GOOD, jwt=jwt))
        response = answer.parsed()
        assert response.ok
        assert response.apns_id
        with trio.fail_after(5):
            while client.max_streams != 1000:
                await client.settings_changed.wait()
        # Now many streams at once.
        answers = [await client.start(*request_for(GOOD, jwt=jwt)) for _ in range(20)]
        for answer in answers:
            await answer.done.wait()
            assert answer.parsed().ok
    assert len(sim.accepted) == 21


async def test_every_answer_parses_with_apples_reason(key):
    now = int(time.time())
    jwt = make_provider_token(key, now=now).value
    cases = [
        (request_for(BAD, jwt=jwt), 400, Reason.BAD_DEVICE_TOKEN),
        (request_for(GOOD, jwt=jwt, topic=None), 400, Reason.MISSING_TOPIC),
        (request_for(GOOD, jwt=jwt, collapse_id="x" * 64), 200, None),
    ]
    async with open_http2_simulator(config_for(key)) as sim, h2_client(sim) as client:
        for (headers, body), status, reason in cases:
            response = (await client.request(headers, body)).parsed()
            assert (response.status, response.reason) == (status, reason)
        gone = (await client.request(*request_for(GONE, jwt=jwt))).parsed()
        assert gone.status == 410
        assert gone.timestamp is not None
        assert int(gone.timestamp.timestamp() * 1000) == GONE_MS

        def with_header(name, value, token=GOOD):
            headers, body = request_for(token, jwt=jwt)
            return [(k, value if k == name else v) for k, v in headers], body

        raw_cases = [
            (with_header("apns-priority", "7"), Reason.BAD_PRIORITY),
            (with_header("apns-expiration", "soon"), Reason.BAD_EXPIRATION_DATE),
            (with_header("apns-push-type", "fax"), Reason.INVALID_PUSH_TYPE),
            (with_header(":path", "/3/device/"), Reason.MISSING_DEVICE_TOKEN),
            (with_header(":path", "/3/device/xyz"), Reason.BAD_DEVICE_TOKEN),
            (with_header(":path", "/2/device/" + GOOD), Reason.BAD_PATH),
            (with_header(":method", "PUT"), Reason.METHOD_NOT_ALLOWED),
            (with_header("authorization", "bearer nonsense"), Reason.INVALID_PROVIDER_TOKEN),
            (
                (request_for(GOOD, jwt=jwt)[0] + (("apns-id", "not-a-uuid"),), PAYLOAD),
                Reason.BAD_MESSAGE_ID,
            ),
            (
                (request_for(GOOD, jwt=jwt)[0] + (("apns-topic", "again"),), PAYLOAD),
                Reason.DUPLICATE_HEADERS,
            ),
            ((request_for(GOOD, jwt=jwt)[0], b""), Reason.PAYLOAD_EMPTY),
            ((request_for(GOOD, jwt=jwt)[0], b"{" + b" " * 4096 + b"}"), Reason.PAYLOAD_TOO_LARGE),
        ]
        for (headers, body), reason in raw_cases:
            headers = [(k, v) for k, v in headers if k != "content-length"]
            response = (await client.request(headers, body)).parsed()
            assert (response.status, response.reason) == (reason.status, reason), reason
    assert sim.stats.accepted == 1
    assert sim.stats.by_reason["BadDeviceToken"] == 2


async def test_expired_token_and_token_updates_within_20_minutes(key):
    clock = [1_700_000_000.0]
    async with (
        open_http2_simulator(config_for(key), clock=lambda: clock[0]) as sim,
        h2_client(sim) as client,
    ):
        old = make_provider_token(key, now=int(clock[0]) - 3601).value
        response = (await client.request(*request_for(GOOD, jwt=old))).parsed()
        assert response.reason is Reason.EXPIRED_PROVIDER_TOKEN
        first = make_provider_token(key, now=int(clock[0]) - 1000).value
        assert (await client.request(*request_for(GOOD, jwt=first))).parsed().ok
        clock[0] += 19 * 60
        second = make_provider_token(key, now=int(clock[0])).value
        response = (await client.request(*request_for(GOOD, jwt=second))).parsed()
        assert response.reason is Reason.TOO_MANY_PROVIDER_TOKEN_UPDATES
        assert response.status == 429
        # The first token still works on this connection until it is an hour old...
        assert (await client.request(*request_for(GOOD, jwt=first))).parsed().ok
        clock[0] += 60
        # ...and 20 minutes after adopting it, a new one is taken.
        assert (await client.request(*request_for(GOOD, jwt=second))).parsed().ok
        clock[0] += 3600
        response = (await client.request(*request_for(GOOD, jwt=second))).parsed()
        assert response.reason is Reason.EXPIRED_PROVIDER_TOKEN
    # A new connection with the "second" token right away is fine: the rule is per connection.


async def test_unknown_key_is_invalid_provider_token(key):
    other = ProviderKey(
        key_id="OTHERKEY12",
        team_id=key.team_id,
        private_key=ec.generate_private_key(ec.SECP256R1()),
    )
    async with open_http2_simulator(config_for(key)) as sim, h2_client(sim) as client:
        jwt = make_provider_token(other, now=int(time.time())).value
        response = (await client.request(*request_for(GOOD, jwt=jwt))).parsed()
        assert (response.status, response.reason) == (403, Reason.INVALID_PROVIDER_TOKEN)
        assert client.max_streams == 1


async def test_certificate_auth_topic_from_the_certificate(pki, key):
    single = pki.issue_client(topic="com.example.single", topics_extension=False)
    async with open_http2_simulator(config_for(key), pki=pki) as sim:
        # The universal certificate lists three topics: apns-topic is mandatory.
        async with h2_client(sim, certificate=True) as client:
            assert client.max_streams == 1000
            response = (await client.request(*request_for(GOOD, topic=None))).parsed()
            assert response.reason is Reason.MISSING_TOPIC
            assert (await client.request(*request_for(GOOD, topic=f"{TOPIC}.voip"))).parsed().ok
            response = (await client.request(*request_for(GOOD, topic="com.other"))).parsed()
            assert response.reason is Reason.BAD_TOPIC
        # A single-topic certificate: its UID is the default topic.
        context = client_context(single, ca=pki.ca_pem(), alpn=[b"h2"])
        stream = await open_tls_stream(*sim.address, context, server_hostname="localhost")
        client = H2Client(stream)
        client.conn.initiate_connection()
        await client.flush()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.read_loop)
            assert (await client.request(*request_for(GOOD, topic=None))).parsed().ok
            nursery.cancel_scope.cancel()
        await trio.aclose_forcefully(stream)
    assert [(r.topic, r.auth) for r in sim.accepted] == [
        (f"{TOPIC}.voip", "certificate"),
        ("com.example.single", "certificate"),
    ]


async def test_too_many_streams_gets_apples_goaway(key):
    async with open_http2_simulator(config_for(key)) as sim, h2_client(sim) as client:
        # Before a valid token only one stream is allowed: h2's client would refuse to
        # open a second, so lift its view of the limit to break the rule on purpose.
        client.conn.remote_settings = h2.settings.Settings(
            client=False, initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 10}
        )
        headers, _ = request_for(GOOD)
        for _ in range(2):
            stream_id = client.conn.get_next_available_stream_id()
            client.answers[stream_id] = Answer()
            client.conn.send_headers(stream_id, list(headers))
        await client.flush()
        with trio.fail_after(5):
            await client.closed.wait()
    assert client.goaway is not None
    assert json.loads(client.goaway.additional_data) == {
        "reason": "Maximum active streams violated for this endpoint."
    }
    assert sim.stats.protocol_errors == 1


async def test_goaway_after_n_with_a_json_reason(key):
    faults = Http2Faults(goaway_after=3, goaway_reason="Shutdown")
    jwt = make_provider_token(key, now=int(time.time())).value
    async with open_http2_simulator(config_for(key, faults=faults)) as sim:
        async with h2_client(sim) as client:
            assert (await client.request(*request_for(GOOD, jwt=jwt))).parsed().ok
            with trio.fail_after(5):
                while client.max_streams != 1000:
                    await client.settings_changed.wait()
            answers = await client.start_many([request_for(GOOD, jwt=jwt)] * 5)
            with trio.fail_after(5):
                await client.goaway_seen.wait()
        assert client.goaway is not None
        assert json.loads(client.goaway.additional_data) == {"reason": "Shutdown"}
        answered = [a for a in answers if a.headers]
        assert len(answered) == 2
        # Streams 1, 3 and 5 were answered; 7, 9 and 11 never will be.
        assert client.goaway.last_stream_id == 5
        assert sorted(client.answers) == [1, 3, 5, 7, 9, 11]
        assert sim.stats.accepted == 3


async def test_status_and_refused_stream_faults(key, tmp_path):
    record = tmp_path / "accepted.jsonl"
    faults = Http2Faults(status_every=3, fault_status=429, refuse_every=4)
    async with (
        open_http2_simulator(config_for(key, faults=faults, record_path=record), pki=None) as sim,
        h2_client(sim, certificate=True) as client,
    ):
        outcomes = []
        for _ in range(8):
            answer = await client.request(*request_for(GOOD))
            if answer.reset is not None:
                outcomes.append(("reset", answer.reset))
            else:
                response = answer.parsed()
                outcomes.append((response.status, response.reason))
    ok = (200, None)
    busy = (429, Reason.TOO_MANY_REQUESTS)
    refused = ("reset", h2.errors.ErrorCodes.REFUSED_STREAM)
    assert outcomes == [ok, ok, busy, refused, ok, busy, ok, refused]
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert len(lines) == 4 == sim.stats.accepted
    assert lines[0]["token"] == GOOD
    assert lines[0]["topic"] == TOPIC


async def test_drop_connection_fault(key):
    faults = Http2Faults(drop_after=2)
    async with open_http2_simulator(config_for(key, faults=faults)) as sim:
        async with h2_client(sim, certificate=True) as client:
            assert (await client.request(*request_for(GOOD))).parsed().ok
            answer = await client.start(*request_for(GOOD))
            with trio.fail_after(5):
                await client.closed.wait()
            assert answer.headers == []
        # The fault fires once: a new connection works.
        async with h2_client(sim, certificate=True) as client:
            assert (await client.request(*request_for(GOOD))).parsed().ok
    assert sim.stats.drops == 1
    assert sim.stats.accepted == 2
