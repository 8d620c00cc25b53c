"""The HTTP/2 APNs simulator: Apple's provider API (HTTP2.md) on ``h2`` over our TLS.

One task per TCP connection: TLS with ALPN ``h2`` (a client certificate is optional:
with one the connection uses certificate auth, without one token auth), then an
``h2`` server connection fed from the TLS stream. Each request is judged when its
stream ends, in this order: scripted faults (RST_STREAM REFUSED_STREAM, 429/500/503
for every Nth request, dropping the connection), ``:method`` (405), ``:path`` (404
BadPath, 400 MissingDeviceToken/BadDeviceToken), authentication (certificate topic
or provider token: 403 with Apple's reasons, 429 TooManyProviderTokenUpdates), the
``apns-*`` headers (400 with Apple's reasons), the body (400 PayloadEmpty, 413
PayloadTooLarge), then the device token lists (400 BadDeviceToken for the invalid
set, 410 Unregistered with a timestamp for the uninstalled set). Anything else is
accepted: 200 with an ``apns-id``, recorded in :attr:`Http2Simulator.accepted` (see
``keep_records``) and optionally as JSON lines.

Streams: ``SETTINGS_MAX_CONCURRENT_STREAMS`` is ``max_concurrent_streams`` (1000 by
default), and 1 on a token connection until a valid token arrives (Apple: "only one
stream until you post a request with a valid authentication token"). A client that
opens more streams than allowed gets Apple's GOAWAY "Maximum active streams violated
for this endpoint." (h2 refuses the stream, we close the connection).

Time: the provider-token checks (``iat`` age, 20 minutes between token changes on a
connection) and 410 timestamps read ``clock`` (UNIX seconds), which a test may
replace.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import IO, Any, Final

import attrs
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import trio
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL

from ..h2wire import (
    COLLAPSE_ID_LIMIT,
    HTTP2_PAYLOAD_LIMIT,
    HTTP2_VOIP_PAYLOAD_LIMIT,
    MAX_TOKEN_AGE,
    MIN_REFRESH_INTERVAL,
    PushType,
    Reason,
    TokenRejected,
    encode_error_body,
    verify_provider_token,
)
from ..tls import (
    Credentials,
    TestPKI,
    TLSStream,
    certificate_topic,
    client_context,
    inspect_certificate,
    make_test_pki,
    server_context,
)
from ._config import check_keep_records, record_limit
from ._server import ServerCertificates

logger = logging.getLogger("apns_legacy.simulator.http2")

#: Observed on APNs 2021-23 (HTTP2.md 1.4); none is documented.
DEFAULT_MAX_CONCURRENT_STREAMS: Final = 1000
_PATH: Final = re.compile(r"/3/device/(.*)")
_HEX: Final = re.compile(r"[0-9a-fA-F]*")
_UUID: Final = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE
)
_STATUS_REASONS: Final = {
    429: Reason.TOO_MANY_REQUESTS,
    500: Reason.INTERNAL_SERVER_ERROR,
    503: Reason.SERVICE_UNAVAILABLE,
}
_CERT_SUFFIXES: Final = ("", ".voip", ".complication")
_MAX_BODY_KEPT: Final = HTTP2_VOIP_PAYLOAD_LIMIT + 1
#: How long a connection after a scripted GOAWAY waits for the client to close.
_DRAIN_SECONDS: Final = 10.0


def _token_set(values: Iterable[bytes | str]) -> frozenset[str]:
    return frozenset(v.hex() if isinstance(v, bytes) else v.lower() for v in values)


def _check_every(
    instance: object, attribute: attrs.Attribute[int | None], value: int | None
) -> None:
    if value is not None and (type(value) is not int or value < 1):
        raise ValueError(f"{attribute.name} must be a whole number >= 1, not {value!r}")


@attrs.frozen(kw_only=True)
class Http2Faults:
    """Scripted misbehaviour, counted per simulator (``*_every``) or per connection.

    Attributes:
        goaway_after: after answering this many requests on a connection, send GOAWAY
            (last stream id: the last one answered) with ``{"reason": goaway_reason}``
            and close it; streams the client opened after it get no answer.
        goaway_reason: the GOAWAY's JSON reason.
        status_every: every Nth request (counted over the simulator) gets
            ``fault_status`` (429 TooManyRequests, 500 InternalServerError or 503
            ServiceUnavailable) instead of being judged.
        fault_status: see ``status_every``.
        refuse_every: every Nth request is reset with RST_STREAM REFUSED_STREAM.
        drop_after: the connection carrying the Nth request of the simulator is
            closed (TCP) without answering it; once.
    """

    goaway_after: int | None = attrs.field(default=None, validator=_check_every)
    goaway_reason: str = "Shutdown"
    status_every: int | None = attrs.field(default=None, validator=_check_every)
    fault_status: int = attrs.field(default=503)
    refuse_every: int | None = attrs.field(default=None, validator=_check_every)
    drop_after: int | None = attrs.field(default=None, validator=_check_every)

    @fault_status.validator
    def _check_status(self, attribute: attrs.Attribute[int], value: int) -> None:
        if value not in _STATUS_REASONS:
            raise ValueError(f"fault_status must be 429, 500 or 503, not {value!r}")


@attrs.frozen(kw_only=True)
class Http2SimulatorConfig:
    """What the HTTP/2 simulator accepts.

    Attributes:
        host, port: where to listen (port 0: a free one).
        provider_keys: public keys of registered token-signing keys, by
            ``(team id, key id)``.
        team_topics: topics each team may push to with tokens; a team not listed
            may push to any topic.
        invalid_tokens: device tokens (bytes or hex) answered 400 BadDeviceToken.
        uninstalled_tokens: device tokens answered 410 Unregistered, with the
            timestamp (ms) given, or the current time when the value is None.
        max_concurrent_streams: SETTINGS_MAX_CONCURRENT_STREAMS once authenticated.
        lower_after_rejection: after a rejection, lower SETTINGS_MAX_CONCURRENT_STREAMS
            to 1 until the next success, as APNs does.
        initial_window_size: SETTINGS_INITIAL_WINDOW_SIZE (each stream's flow-control
            window for request bodies; tiny values test a client's flow control).
        token_max_age: seconds after ``iat`` a token is ExpiredProviderToken.
        token_update_interval: a connection whose token changes again sooner than
            this (seconds) gets 429 TooManyProviderTokenUpdates.
        faults: scripted faults.
        record_path: append each accepted notification to this file (JSON lines).
        keep_records: keep accepted notifications in :attr:`Http2Simulator.accepted`:
            True (all), False (none: a long run with ``record_path`` then stays flat
            in memory), or an int (the first N). Counters are kept either way.
    """

    host: str = "127.0.0.1"
    port: int = 0
    provider_keys: Mapping[tuple[str, str], ec.EllipticCurvePublicKey] = attrs.field(factory=dict)
    team_topics: Mapping[str, frozenset[str]] = attrs.field(factory=dict)
    invalid_tokens: frozenset[str] = attrs.field(factory=frozenset, converter=_token_set)
    uninstalled_tokens: Mapping[str, int | None] = attrs.field(factory=dict)
    max_concurrent_streams: int = DEFAULT_MAX_CONCURRENT_STREAMS
    initial_window_size: int = 65_535
    lower_after_rejection: bool = False
    token_max_age: int = MAX_TOKEN_AGE
    token_update_interval: int = MIN_REFRESH_INTERVAL
    faults: Http2Faults = attrs.field(factory=Http2Faults)
    record_path: Path | None = None
    keep_records: bool | int = attrs.field(default=True, validator=check_keep_records)


@attrs.frozen(kw_only=True)
class Http2AcceptedRecord:
    """One notification the HTTP/2 simulator answered 200."""

    connection: int
    stream_id: int
    token: str
    topic: str | None
    push_type: str | None
    priority: int
    expiration: int | None
    collapse_id: str | None
    apns_id: str
    payload: str
    auth: str
    team_id: str | None
    time: float

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-able dict (one line of ``record_path``)."""
        return attrs.asdict(self)


@attrs.define(kw_only=True)
class Http2Stats:
    """Counters since the simulator started."""

    connections: int = 0
    handshake_failures: int = 0
    requests: int = 0
    accepted: int = 0
    rejected: int = 0
    by_reason: dict[str, int] = attrs.field(factory=dict)
    refused_streams: int = 0
    goaways: int = 0
    drops: int = 0
    protocol_errors: int = 0


class Http2Simulator:
    """A running HTTP/2 simulator (see :func:`open_http2_simulator`)."""

    def __init__(
        self, config: Http2SimulatorConfig, pki: TestPKI | None, clock: Callable[[], float]
    ) -> None:
        self.config = config
        self.pki = pki
        self.clock = clock
        #: Accepted notifications, in order (see ``keep_records``).
        self.accepted: list[Http2AcceptedRecord] = []
        self._max_records = record_limit(config.keep_records)
        self.stats = Http2Stats()
        self.address: tuple[str, int] = (config.host, 0)
        self._invalid = set(config.invalid_tokens)
        self._uninstalled: dict[str, int | None] = {
            key.lower(): value for key, value in config.uninstalled_tokens.items()
        }
        self._requests = 0
        self._dropped = False
        self._connection_ids = 0
        self._changed = trio.Event()
        self._file: IO[str] | None = (
            config.record_path.open("a", encoding="utf-8") if config.record_path else None
        )

    # -- for tests and callers --------------------------------------------------------

    @property
    def port(self) -> int:
        """The port it listens on."""
        return self.address[1]

    def client_context(self, *, certificate: bool = False) -> SSL.Context:
        """A client context trusting the simulator's CA, offering ALPN h2; with
        ``certificate`` it presents the test PKI's client certificate (certificate auth).
        Needs the simulator's ``pki``."""
        if self.pki is None:
            raise RuntimeError("client_context() needs the simulator's TestPKI (pki=...)")
        client: Credentials | None = self.pki.client if certificate else None
        return client_context(client, ca=self.pki.ca_pem(), alpn=[b"h2"])

    def add_invalid_token(self, token: bytes | str) -> None:
        """Answer 400 BadDeviceToken for ``token`` from now on."""
        self._invalid.update(_token_set([token]))

    def add_uninstalled_token(self, token: bytes | str, timestamp_ms: int | None = None) -> None:
        """Answer 410 Unregistered for ``token`` from now on."""
        self._uninstalled.update(dict.fromkeys(_token_set([token]), timestamp_ms))

    async def wait_for_accepted(self, n: int) -> None:
        """Return once ``n`` notifications have been accepted in all."""
        while self.stats.accepted < n:
            await self._changed.wait()

    # -- used by connections ----------------------------------------------------------

    def _next_connection(self) -> int:
        self._connection_ids += 1
        return self._connection_ids

    def _record(self, record: Http2AcceptedRecord) -> None:
        if self._max_records is None or len(self.accepted) < self._max_records:
            self.accepted.append(record)
        self.stats.accepted += 1
        if self._file is not None:
            self._file.write(json.dumps(record.to_json(), separators=(",", ":")) + "\n")
            self._file.flush()
        self._wake()

    def _rejected(self, reason: Reason) -> None:
        self.stats.rejected += 1
        self.stats.by_reason[reason.value] = self.stats.by_reason.get(reason.value, 0) + 1
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@attrs.define
class _Stream:
    headers: list[tuple[str, str]]
    body: bytearray = attrs.field(factory=bytearray)
    size: int = 0


@attrs.define
class _Verdict:
    status: int
    reason: Reason | None = None
    timestamp_ms: int | None = None


class _Rejection(Exception):
    def __init__(self, reason: Reason, timestamp_ms: int | None = None) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.timestamp_ms = timestamp_ms


class _Connection:
    """One client connection: an h2 server connection over a TLS stream."""

    def __init__(self, sim: Http2Simulator, stream: TLSStream) -> None:
        self.sim = sim
        self.stream = stream
        self.number = sim._next_connection()
        certificate = stream.peer_certificate
        self.certificate_topics: tuple[str, ...] | None = None
        if certificate is not None:
            info = inspect_certificate(certificate)
            topic = certificate_topic(certificate)
            self.certificate_topics = info.topics or ((topic,) if topic else ())
        # Token auth state, per connection.
        self.token: str | None = None
        self.token_since = 0.0
        self.token_iat = 0
        self.token_changes = 0
        self.key_id: str | None = None
        self.team_id: str | None = None
        self.authenticated = certificate is not None
        self.answered = 0
        self.streams: dict[int, _Stream] = {}
        self.pending: dict[int, bytes] = {}
        self.closing = False
        #: After a scripted GOAWAY: read (and drop) what the client still sends until it
        #: closes, so that closing never resets the connection under answers in flight.
        self.graceful = False
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        limit = sim.config.max_concurrent_streams if self.authenticated else 1
        self.conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: limit,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 8000,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: sim.config.initial_window_size,
            },
        )

    async def run(self) -> None:
        self.conn.initiate_connection()
        await self._flush()
        while not self.closing:
            data = await self.stream.receive_some()
            if not data:
                break
            try:
                events = self.conn.receive_data(data)
            except h2.exceptions.TooManyStreamsError:
                self.sim.stats.protocol_errors += 1
                self._goaway(
                    h2.errors.ErrorCodes.PROTOCOL_ERROR,
                    "Maximum active streams violated for this endpoint.",
                )
                await self._flush()
                return
            except h2.exceptions.ProtocolError as exc:
                self.sim.stats.protocol_errors += 1
                logger.debug("http2 #%d: protocol error: %r", self.number, exc)
                await self._flush()
                return
            for event in events:
                self._handle(event)
            await self._flush()
        if self.graceful:
            with trio.move_on_after(_DRAIN_SECONDS):
                while await self.stream.receive_some():
                    pass

    async def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            await self.stream.send_all(data)

    def _goaway(self, code: h2.errors.ErrorCodes, reason: str, last: int | None = None) -> None:
        self.sim.stats.goaways += 1
        self.conn.close_connection(
            error_code=code,
            additional_data=json.dumps({"reason": reason}).encode(),
            last_stream_id=last,
        )
        self.closing = True

    def _handle(self, event: h2.events.Event) -> None:
        if self.closing:
            return  # after our GOAWAY: the rest of this read is not answered
        if isinstance(event, h2.events.RequestReceived):
            headers = [(str(k), str(v)) for k, v in event.headers or ()]
            self.streams[event.stream_id] = _Stream(headers)
            if event.stream_ended is not None:
                self._complete(event.stream_id)
        elif isinstance(event, h2.events.DataReceived):
            assert event.stream_id is not None
            record = self.streams.get(event.stream_id)
            data = event.data or b""
            if record is not None:
                record.size += len(data)
                if len(record.body) < _MAX_BODY_KEPT:
                    record.body += data[: _MAX_BODY_KEPT - len(record.body)]
            self.conn.acknowledge_received_data(event.flow_controlled_length or 0, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            assert event.stream_id is not None
            self._complete(event.stream_id)
        elif isinstance(event, h2.events.StreamReset):
            if event.stream_id is not None:
                self.streams.pop(event.stream_id, None)
                self.pending.pop(event.stream_id, None)
        elif isinstance(event, h2.events.WindowUpdated):
            self._send_pending()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.closing = True

    def _complete(self, stream_id: int) -> None:
        request = self.streams.pop(stream_id, None)
        if request is None:
            return
        sim = self.sim
        faults = sim.config.faults
        sim._requests += 1
        sim.stats.requests += 1
        count = sim._requests
        if faults.drop_after is not None and count >= faults.drop_after and not sim._dropped:
            sim._dropped = True
            sim.stats.drops += 1
            self.closing = True
            raise _Drop
        if faults.refuse_every is not None and count % faults.refuse_every == 0:
            sim.stats.refused_streams += 1
            self.conn.reset_stream(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        headers = dict(request.headers)
        apns_id = headers.get("apns-id")
        if apns_id is None or not _UUID.fullmatch(apns_id):
            apns_id = str(uuid.uuid4())
        if faults.status_every is not None and count % faults.status_every == 0:
            verdict = _Verdict(faults.fault_status, _STATUS_REASONS[faults.fault_status])
        else:
            try:
                self._judge(stream_id, request, apns_id)
                verdict = _Verdict(200)
            except _Rejection as rejection:
                verdict = _Verdict(
                    rejection.reason.status, rejection.reason, rejection.timestamp_ms
                )
        if verdict.reason is not None:
            sim._rejected(verdict.reason)
            if sim.config.lower_after_rejection and self.authenticated:
                # Apple drops the limit to 1 after a rejection and restores it after
                # the next success (openradar 27870881, HTTP2.md 1.4).
                self._set_limit(1)
        elif sim.config.lower_after_rejection:
            self._set_limit(sim.config.max_concurrent_streams)
        self._respond(stream_id, verdict, apns_id)
        self.answered += 1
        if faults.goaway_after is not None and self.answered >= faults.goaway_after:
            # A graceful GOAWAY: streams up to this one that are still incomplete were
            # not processed, and say so (REFUSED_STREAM), so that last_stream_id is
            # exact: everything at or below it was answered, nothing above it read.
            for pending in [k for k in self.streams if k < stream_id]:
                del self.streams[pending]
                self.sim.stats.refused_streams += 1
                self.conn.reset_stream(pending, h2.errors.ErrorCodes.REFUSED_STREAM)
            self._goaway(h2.errors.ErrorCodes.NO_ERROR, faults.goaway_reason, last=stream_id)
            self.graceful = True

    def _set_limit(self, limit: int) -> None:
        if self.conn.local_settings.max_concurrent_streams != limit:
            self.conn.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: limit})

    def _respond(self, stream_id: int, verdict: _Verdict, apns_id: str) -> None:
        headers = [(":status", str(verdict.status)), ("apns-id", apns_id)]
        if verdict.reason is None:
            self.conn.send_headers(stream_id, headers, end_stream=True)
            return
        body = encode_error_body(verdict.reason, verdict.timestamp_ms)
        headers += [("content-type", "application/json"), ("content-length", str(len(body)))]
        self.conn.send_headers(stream_id, headers)
        self.pending[stream_id] = body
        self._send_pending()

    def _send_pending(self) -> None:
        for stream_id, body in list(self.pending.items()):
            if self.conn.local_flow_control_window(stream_id) >= len(body):
                self.conn.send_data(stream_id, body, end_stream=True)
                del self.pending[stream_id]

    def _judge(self, stream_id: int, request: _Stream, apns_id: str) -> None:
        sim = self.sim
        seen: dict[str, str] = {}
        for name, value in request.headers:
            if name in seen and (name.startswith("apns-") or name == "authorization"):
                raise _Rejection(Reason.DUPLICATE_HEADERS)
            seen[name] = value
        if seen.get(":method") != "POST":
            raise _Rejection(Reason.METHOD_NOT_ALLOWED)
        match = _PATH.fullmatch(seen.get(":path", ""))
        if match is None:
            raise _Rejection(Reason.BAD_PATH)
        token = match.group(1)
        if not token:
            raise _Rejection(Reason.MISSING_DEVICE_TOKEN)
        if not _HEX.fullmatch(token) or len(token) % 2 or not 64 <= len(token) <= 200:
            raise _Rejection(Reason.BAD_DEVICE_TOKEN)
        token = token.lower()
        topic = seen.get("apns-topic")
        team_id: str | None = None
        if self.certificate_topics is not None:
            if topic is None:
                if len(self.certificate_topics) != 1:
                    raise _Rejection(Reason.MISSING_TOPIC)
                topic = self.certificate_topics[0]
            allowed = {t + s for t in self.certificate_topics for s in _CERT_SUFFIXES}
            if topic not in allowed:
                raise _Rejection(Reason.BAD_TOPIC)
        else:
            team_id = self._check_provider_token(seen.get("authorization"))
            if topic is None:
                raise _Rejection(Reason.MISSING_TOPIC)
            topics = sim.config.team_topics.get(team_id)
            if topics is not None and topic not in topics:
                raise _Rejection(Reason.TOPIC_DISALLOWED)
        push_type = seen.get("apns-push-type")
        if push_type is not None and push_type not in set(PushType):
            raise _Rejection(Reason.INVALID_PUSH_TYPE)
        priority_text = seen.get("apns-priority", "10")
        if priority_text not in ("10", "5", "1"):
            raise _Rejection(Reason.BAD_PRIORITY)
        expiration_text = seen.get("apns-expiration")
        if expiration_text is not None and not (
            expiration_text.isascii() and expiration_text.isdigit() and len(expiration_text) <= 10
        ):
            raise _Rejection(Reason.BAD_EXPIRATION_DATE)
        if "apns-id" in seen and not _UUID.fullmatch(seen["apns-id"]):
            raise _Rejection(Reason.BAD_MESSAGE_ID)
        collapse_id = seen.get("apns-collapse-id")
        if collapse_id is not None and len(collapse_id.encode()) > COLLAPSE_ID_LIMIT:
            raise _Rejection(Reason.BAD_COLLAPSE_ID)
        if request.size == 0:
            raise _Rejection(Reason.PAYLOAD_EMPTY)
        limit = HTTP2_VOIP_PAYLOAD_LIMIT if push_type == "voip" else HTTP2_PAYLOAD_LIMIT
        if request.size > limit:
            raise _Rejection(Reason.PAYLOAD_TOO_LARGE)
        if token in sim._invalid:
            raise _Rejection(Reason.BAD_DEVICE_TOKEN)
        if token in sim._uninstalled:
            stamp = sim._uninstalled[token]
            raise _Rejection(
                Reason.UNREGISTERED, int(sim.clock() * 1000) if stamp is None else stamp
            )
        sim._record(
            Http2AcceptedRecord(
                connection=self.number,
                stream_id=stream_id,
                token=token,
                topic=topic,
                push_type=push_type,
                priority=int(priority_text),
                expiration=None if expiration_text is None else int(expiration_text),
                collapse_id=collapse_id,
                apns_id=apns_id,
                payload=bytes(request.body).decode("utf-8", "replace"),
                auth="certificate" if self.certificate_topics is not None else "token",
                team_id=team_id,
                time=sim.clock(),
            )
        )

    def _check_provider_token(self, authorization: str | None) -> str:
        sim = self.sim
        if authorization is None:
            raise _Rejection(Reason.MISSING_PROVIDER_TOKEN)
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise _Rejection(Reason.MISSING_PROVIDER_TOKEN)
        now = sim.clock()
        if token != self.token:
            try:
                verified = verify_provider_token(
                    token,
                    sim.config.provider_keys,
                    now=int(now),
                    max_age=sim.config.token_max_age,
                )
            except TokenRejected as exc:
                raise _Rejection(exc.reason) from None
            if self.key_id is not None and verified.key_id != self.key_id:
                raise _Rejection(Reason.UNRELATED_KEY_ID_IN_TOKEN)
            if self.token is not None and now - self.token_since < sim.config.token_update_interval:
                raise _Rejection(Reason.TOO_MANY_PROVIDER_TOKEN_UPDATES)
            self.token, self.token_since, self.token_iat = token, now, verified.issued_at
            self.key_id, self.team_id = verified.key_id, verified.team_id
            if not self.authenticated:
                self.authenticated = True
                limit = sim.config.max_concurrent_streams
                self.conn.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: limit})
        elif now - self.token_iat > sim.config.token_max_age:
            raise _Rejection(Reason.EXPIRED_PROVIDER_TOKEN)
        assert self.team_id is not None
        return self.team_id


class _Drop(Exception):
    """Close the connection now, answering nothing (a scripted fault)."""


async def _handle(sim: Http2Simulator, context: SSL.Context, tcp: trio.SocketStream) -> None:
    stream = TLSStream(tcp, context, server_side=True)
    try:
        try:
            with trio.fail_after(10):
                await stream.do_handshake()
        except (trio.BrokenResourceError, trio.TooSlowError) as exc:
            sim.stats.handshake_failures += 1
            logger.debug("http2: handshake failed: %r", exc)
            return
        sim.stats.connections += 1
        connection = _Connection(sim, stream)
        try:
            await connection.run()
        except _Drop:
            await trio.aclose_forcefully(tcp)
            return
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
        logger.debug("http2: connection ended: %r", exc)
    finally:
        await trio.aclose_forcefully(stream)


@asynccontextmanager
async def open_http2_simulator(
    config: Http2SimulatorConfig | None = None,
    *,
    pki: TestPKI | None = None,
    certificates: ServerCertificates | None = None,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[Http2Simulator]:
    """Run the HTTP/2 APNs simulator with TLS (ALPN h2) for the ``async with`` block.

    Args:
        config: what it accepts and its faults; default: all defaults.
        pki: the test certificates; default: a throwaway CA, server and client
            certificate. Clients may present the client certificate (certificate
            auth) or none (token auth).
        certificates: the server certificate and client CA instead of ``pki`` (a
            certificate directory, as ``apns-legacy serve --http2`` reads it).
        clock: UNIX seconds, for token ages and 410 timestamps.
    """
    config = config or Http2SimulatorConfig()
    if certificates is None:
        pki = pki or make_test_pki()
        certificates = ServerCertificates.from_pki(pki)
    sim = Http2Simulator(config, pki, clock)
    context = server_context(
        certificates.server,
        client_ca=certificates.client_ca,
        allow_tls13=True,
        require_client_certificate=False,
        alpn=[b"h2"],
    )
    listeners = await trio.open_tcp_listeners(config.port, host=config.host)
    host, port, *_ = listeners[0].socket.getsockname()
    sim.address = (str(host), int(port))
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, partial(_handle, sim, context), listeners)
            try:
                yield sim
            finally:
                nursery.cancel_scope.cancel()
    finally:
        sim._close()
