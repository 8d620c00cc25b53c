"""The HTTP/2 sender: notifications to the provider API, each with exactly one outcome.

It shares the binary sender's :class:`Ledger` (queue, statistics, the outcome stream)
and outcome model (:class:`Outcome`, :class:`OutcomeKind`, :class:`Evidence`); what is
new is the connection, on ``h2`` over :class:`TLSStream` with ALPN ``h2``.

Theory of operation. ``connections`` slots each run one connection at a time, opened
when there is work. A connection has a writer task and a reader task. The writer
takes notifications from the shared queue only while fewer streams are open than the
server's current ``SETTINGS_MAX_CONCURRENT_STREAMS`` (re-read on every change; 1 on a
token connection until its first answer, as Apple allows), builds each request with
:func:`apns_legacy.h2wire.build_request`, and waits for flow-control window before
sending a body. The reader feeds h2 and settles each stream when it ends:

* 200: ``accepted`` (``Evidence.CONFIRMED``: APNs answered for this very request);
* 429 TooManyRequests, 500, 503 (and a stream reset with REFUSED_STREAM, or one above
  a GOAWAY's last stream id, which the server did not process): retried with
  exponential back-off, at most ``max_attempts`` times, then ``failed``;
* 403 ExpiredProviderToken: the token is marked stale (replaced once the 20-minute
  rule allows), the connection is closed, the notification retried once;
* 429 TooManyProviderTokenUpdates: that connection is closed and the notification
  retried on another (with the cached token);
* configuration faults (BadCertificate, BadCertificateEnvironment,
  InvalidProviderToken, MissingProviderToken, TopicDisallowed, BadTopic,
  MissingTopic): everything fails fast with one message (``Ledger.set_fatal``), and
  each such failure names Apple's reason in ``Http2Outcome.apns_reason``;
* any other reason: ``rejected``, with the HTTP status, Apple's reason and, for 410,
  the timestamp.

A connection lost with streams open puts them back in the queue as possible
duplicates (the server may have processed them), as the binary sender does.

A keep-alive task watches each connection: after ``ping_interval`` seconds without a
frame from the server it sends a PING, and a PING not answered within
``ping_timeout`` ends the connection (as lost). A stream without an answer after
``response_timeout`` is reset (CANCEL) and its notification goes back to the queue as
a possible duplicate (the server may have processed it).

``open_http2_sender(..., connect=...)`` replaces the TLS connect with any function
returning a connected :class:`trio.abc.Stream` (tests run the sender over trio memory
streams with hand-written HTTP/2 frames on the other end; relays may tunnel).
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

import attrs
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import hpack
import trio
from hpack.huffman_table import decode_huffman

from ..h2wire import (
    AppSettings,
    ProviderKey,
    ProviderTokenCache,
    Reason,
    build_request,
    parse_response,
    reason_from_str,
)
from ..tls import Credentials, client_context, open_tls_stream
from ..wire import LocalProtocolError, Notification, RemoteProtocolError
from ._ledger import Ledger, OutcomeCallback
from ._outcomes import Evidence, Outcome, OutcomeKind, SenderStats

#: Opens one connection: a connected byte stream (TLS with ALPN h2, or a test double).
Http2Connector = Callable[[], Awaitable[trio.abc.Stream]]

logger = logging.getLogger("apns_legacy.sender.http2")

PRODUCTION_HOST: Final = "api.push.apple.com"
SANDBOX_HOST: Final = "api.sandbox.push.apple.com"

_RETRY: Final = {
    Reason.TOO_MANY_REQUESTS,
    Reason.INTERNAL_SERVER_ERROR,
    Reason.SERVICE_UNAVAILABLE,
    Reason.SHUTDOWN,
    Reason.IDLE_TIMEOUT,
}
_FATAL: Final = {
    Reason.BAD_CERTIFICATE,
    Reason.BAD_CERTIFICATE_ENVIRONMENT,
    Reason.INVALID_PROVIDER_TOKEN,
    Reason.MISSING_PROVIDER_TOKEN,
    Reason.TOPIC_DISALLOWED,
    Reason.BAD_TOPIC,
    Reason.MISSING_TOPIC,
    Reason.BAD_ENVIRONMENT_KEY_ID_IN_TOKEN,
}


class Http2Outcome(Outcome):
    """An :class:`Outcome` with what an HTTP/2 answer adds.

    ``status`` is the HTTP status of a rejection (400, 403, 410...), ``reason`` Apple's
    reason for a rejection (or why it failed), ``apns_id`` the id APNs answered with,
    ``timestamp`` the 410 time (an aware UTC datetime).
    """

    __slots__ = ("apns_id", "attempts", "sent_at", "timestamp", "token_retries")

    def __init__(self, notification: Notification, tag: Any = None) -> None:
        super().__init__(notification, tag)
        self.apns_id: str | None = None
        self.timestamp: Any = None
        #: Retryable answers so far (429/500/503, refused streams).
        self.attempts = 0
        self.token_retries = 0
        #: When its current stream was opened (trio's clock).
        self.sent_at = 0.0

    @property
    def apns_reason(self) -> Reason | str | None:
        """Apple's reason when a configuration fault (credentials, topic: a 403 or a
        GOAWAY naming it; ExpiredProviderToken even after a new token) failed this
        notification, also for the queued and later ones failed by the same fault;
        ``None`` for every other outcome (for rejections, ``reason`` is Apple's reason
        already)."""
        if self.kind is OutcomeKind.FAILED:
            return getattr(self.reason, "apns_reason", None)
        return None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``apns_id`` and ``timestamp`` added; no binary fields)."""
        return {
            "token": self.notification.token.hex,
            "outcome": self.kind.value,
            "status": None if self.status is None else int(self.status),
            "reason": self.reason,
            "apns_id": self.apns_id,
            "timestamp": None if self.timestamp is None else self.timestamp.isoformat(),
            "possible_duplicate": self.possible_duplicate,
        }


class _Refusal(str):
    """A failure's message that keeps Apple's reason (``Http2Outcome.apns_reason``);
    for a fatal fault the ledger hands the same object to every notification it fails."""

    apns_reason: Reason | str

    def __new__(cls, text: str, apns_reason: Reason | str) -> _Refusal:
        message = super().__new__(cls, text)
        message.apns_reason = apns_reason
        return message


def _positive(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not value > 0:
        raise LocalProtocolError(f"{attribute.name} must be > 0, not {value!r}")


@attrs.frozen(kw_only=True)
class Http2SenderConfig:
    """How to reach APNs over HTTP/2 and how hard to try.

    Exactly one of ``provider_key`` (token auth; ``settings.topic`` required) and
    ``credentials`` (certificate auth) is given.
    """

    host: str = PRODUCTION_HOST
    port: int = 443
    settings: AppSettings = attrs.field(factory=AppSettings)
    provider_key: ProviderKey | None = None
    credentials: Credentials | None = None
    ca: bytes | str | os.PathLike[str] | None = None
    server_hostname: str | None = None
    connections: int = attrs.field(default=1, validator=_positive)
    max_attempts: int = attrs.field(default=5, validator=_positive)
    retry_delay: float = attrs.field(default=0.05, validator=_positive)
    max_retry_delay: float = attrs.field(default=5.0, validator=_positive)
    max_losses: int = attrs.field(default=3, validator=_positive)
    max_connect_failures: int = attrs.field(default=5, validator=_positive)
    queue_size: int = attrs.field(default=10_000, validator=_positive)
    connect_timeout: float = attrs.field(default=10.0, validator=_positive)
    clock: Callable[[], float] = attrs.field(default=time.time, eq=False, repr=False)
    #: Seconds without a frame from the server before a PING checks the connection.
    ping_interval: float = attrs.field(default=60.0, validator=_positive)
    #: Seconds to wait for the PING's answer before the connection counts as lost.
    ping_timeout: float = attrs.field(default=10.0, validator=_positive)
    #: Seconds a stream may wait for its answer before it is reset and retried.
    response_timeout: float = attrs.field(default=60.0, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if (self.provider_key is None) == (self.credentials is None):
            raise LocalProtocolError("give exactly one of provider_key and credentials")
        if self.provider_key is not None and self.settings.topic is None:
            raise LocalProtocolError("token auth needs settings.topic (apns-topic)")


class Http2Sender:
    """A running HTTP/2 sender (see :func:`open_http2_sender`)."""

    def __init__(
        self,
        config: Http2SenderConfig,
        nursery: trio.Nursery,
        on_outcome: OutcomeCallback | None = None,
        connect: Http2Connector | None = None,
    ) -> None:
        self.config = config
        self._connect = connect or self._connect_tls
        self._nursery = nursery
        self._ledger = Ledger(
            queue_size=config.queue_size, max_losses=config.max_losses, on_outcome=on_outcome
        )
        self.rejected_by_reason: collections.Counter[str] = collections.Counter()
        self._context = client_context(config.credentials, ca=config.ca, alpn=[b"h2"])
        self._cache = (
            ProviderTokenCache(config.provider_key) if config.provider_key is not None else None
        )
        self._token_stale = False
        self._opened = 0
        self._templates = _Templates(self)

    @property
    def stats(self) -> SenderStats:
        """Running totals, shared with the binary sender's model."""
        return self._ledger.stats

    async def submit(self, notification: Notification, tag: Any = None) -> Http2Outcome:
        """Queue ``notification`` (waiting while the queue is full); returns its outcome,
        filled in when it settles."""
        await self._ledger.queue.wait_for_room()
        job = Http2Outcome(notification, tag)
        self._ledger.add(job)
        return job

    def submit_nowait(self, notification: Notification, tag: Any = None) -> Http2Outcome:
        """Queue ``notification`` if there is room, without waiting (the fast path for a
        loop that submits many: ``await submit(...)`` only when this raises).

        Raises:
            trio.WouldBlock: the queue is full (nothing was queued).
        """
        if not self._ledger.queue.room() > 0:
            raise trio.WouldBlock
        job = Http2Outcome(notification, tag)
        self._ledger.add(job)
        return job

    def submit_nowait_many(self, items: Sequence[tuple[Notification, Any]]) -> int:
        """Queue ``(notification, tag)`` pairs from the front of ``items`` while there
        is room, without waiting; how many were queued (as the binary sender's)."""
        queued = 0
        for notification, tag in items:
            try:
                self.submit_nowait(notification, tag)
            except trio.WouldBlock:
                break
            queued += 1
        return queued

    @property
    def fatal_error(self) -> str | None:
        """Why the sender gave up for good (refused credentials or topic, APNs
        unreachable), if it did; as for the binary sender."""
        return self._ledger.fatal

    def outcomes(self) -> AsyncIterator[Outcome]:
        """Every outcome as it settles; ends after :func:`open_http2_sender`'s block."""
        return self._ledger.outcomes()

    async def wait_settled(self) -> None:
        """Return when every submitted notification has its outcome."""
        while self.stats.pending:
            await self._ledger.wait_settled()

    # -- internals --------------------------------------------------------------------

    def _token(self) -> str | None:
        if self._cache is None:
            return None
        before = self._cache.current
        token = self._cache.token(int(self.config.clock()), stale=self._token_stale)
        if token is not before:
            self._token_stale = False
        return token.value

    def _retry(self, job: Http2Outcome, why: str) -> None:
        job.attempts += 1
        if job.attempts >= self.config.max_attempts:
            self._ledger.fail(job, f"{why} (after {job.attempts} attempts)")
            return
        delay = min(self.config.retry_delay * 2 ** (job.attempts - 1), self.config.max_retry_delay)
        self._nursery.start_soon(self._requeue_later, job, delay, why)

    async def _requeue_later(self, job: Http2Outcome, delay: float, why: str) -> None:
        await trio.sleep(delay)
        self._ledger.requeue([job], certain=True, reason=why)

    async def _connect_tls(self) -> trio.abc.Stream:
        stream = await open_tls_stream(
            self.config.host,
            self.config.port,
            self._context,
            server_hostname=self.config.server_hostname or self.config.host,
        )
        await stream.do_handshake()
        return stream

    async def _slot(self) -> None:
        failures = 0
        while True:
            await self._ledger.queue.wait()
            if self._ledger.fatal is not None:
                self._ledger.fail_queued(self._ledger.fatal)
                continue
            try:
                with trio.fail_after(self.config.connect_timeout):
                    stream = await self._connect()
            except (OSError, trio.BrokenResourceError, trio.TooSlowError) as exc:
                self.stats.connect_failures += 1
                failures += 1
                logger.info(
                    "http2: cannot connect to %s:%d: %r", self.config.host, self.config.port, exc
                )
                if failures >= self.config.max_connect_failures:
                    self._ledger.set_fatal(
                        f"cannot connect to {self.config.host}:{self.config.port} "
                        f"({failures} attempts): {exc}"
                    )
                    continue
                await trio.sleep(
                    min(self.config.retry_delay * 2**failures, self.config.max_retry_delay)
                )
                continue
            failures = 0
            self.stats.connections_opened += 1
            self._opened += 1
            if self._opened > self.config.connections:
                self.stats.reconnects += 1
            # A stream without ALPN (a test double, a tunnel) is taken as HTTP/2.
            if getattr(stream, "alpn_protocol", b"h2") != b"h2":
                await trio.aclose_forcefully(stream)
                self._ledger.set_fatal(
                    f"{self.config.host}:{self.config.port} does not speak HTTP/2 (no ALPN h2)"
                )
                continue
            connection = _Connection(self, stream)
            self._nursery.start_soon(connection.run)
            await connection.retired.wait()


def _hpack_integer(value: int, prefix_bits: int, first: int) -> bytes:
    """An HPACK integer (RFC 7541 5.1); ``first`` holds the bits above the prefix."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Headers whose value is the same for many requests: indexed in the dynamic table
# on first use, one byte from then on.
_INDEXED: Final = frozenset(
    {
        b":authority",
        b"apns-topic",
        b"apns-push-type",
        b"apns-priority",
        b"apns-expiration",
        b"apns-collapse-id",
    }
)
# Requests written between two flushes within a batch (each about 200 bytes on the
# wire with a small payload: about 12 KiB, one TLS record).
_FLUSH_EVERY: Final = 64
# Header blocks memoized at most (headers other than :path and apns-id).
_MEMO_LIMIT: Final = 4096


class _RequestEncoder(hpack.Encoder):
    """hpack's encoder with what APNs requests repeat memoized.

    Apple's advice (HTTP2.md 1.2): ``:path`` and ``authorization`` as literals never
    indexed; headers repeated on every request (``apns-topic``, ``apns-push-type``,
    ``apns-priority``, ``apns-expiration``, ``apns-collapse-id``, ``:authority``) are
    indexed once and then sent as one-byte references; everything else (``apns-id``,
    ``content-length``) never enters the table.

    A header's encoding depends only on the dynamic table, which changes only when
    this encoder indexes something or the peer resizes it; the memo is cleared at
    either, so a memoized encoding is always the one hpack would produce now.
    ``:path`` (unique per device token) is written directly: the static table's
    name index 4, never indexed, no Huffman coding (a hex string would shrink by a
    quarter, for a pure-Python loop per character).
    """

    def __init__(self) -> None:
        super().__init__()
        self._memo: dict[tuple[bytes, bytes], bytes] = {}

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        table = self.header_table
        if table.resized:  # a SETTINGS_HEADER_TABLE_SIZE change: hpack signals it
            self._memo.clear()
            return super().encode(headers, huffman)
        memo = self._memo
        block: list[bytes] = []
        for header in headers:
            name, value = header
            if name == b":path":
                block.append(b"\x14" + _hpack_integer(len(value), 7, 0) + value)
                continue
            encoded = memo.get(header)
            if encoded is None:
                if name in _INDEXED:
                    match = table.search(name, value)
                    encoded = self.add((name, value), False, huffman)
                    if match is None or match[2] is None:
                        memo.clear()  # this call indexed it: the table changed
                        block.append(encoded)
                        continue
                else:
                    encoded = self.add((name, value), True, huffman and name != b"apns-id")
                    if name == b"apns-id":
                        block.append(encoded)
                        continue
                if len(memo) >= _MEMO_LIMIT:
                    memo.clear()
                memo[header] = encoded
            block.append(encoded)
        return b"".join(block)


class _ResponseDecoder(hpack.Decoder):
    """hpack's decoder with a short path for what APNs answers carry.

    An answer is a handful of headers (``:status``, ``apns-id``, ``apns-unique-id``)
    as indexed fields and literals *not* added to the dynamic table (RFC 7541 6.1,
    6.2.2, 6.2.3) with one-byte lengths. Such a block leaves the table unchanged, so it
    is decoded here in one loop; a block with anything else (a literal that indexes, a
    table size update, a multi-byte integer, an error of any kind) goes to hpack's
    own decoder from its start, which is exact because this path changed nothing.
    """

    def decode(self, data: bytes, raw: bool = False) -> Any:
        if raw and self.header_table_size <= self.max_allowed_table_size:
            headers = self._short(data)
            if headers is not None:
                return headers
        return super().decode(data, raw)

    def _short(self, data: bytes) -> list[tuple[bytes, bytes]] | None:
        get = self.header_table.get_by_index
        limit = self.max_header_list_size
        headers: list[tuple[bytes, bytes]] = []
        size = 0
        at = 0
        end = len(data)
        try:
            while at < end:
                first = data[at]
                if first & 0x80:  # indexed field
                    index = first & 0x7F
                    if index == 0x7F:
                        return None
                    name, value = get(index)
                    at += 1
                else:
                    if first & 0xE0:  # indexes, or a table size update
                        return None
                    index = first & 0x0F  # literal without indexing / never indexed
                    at += 1
                    if index == 0x0F:
                        return None
                    if index:
                        name = get(index)[0]
                    else:
                        name, at = self._string(data, at)
                    value, at = self._string(data, at)
                size += 32 + len(name) + len(value)
                if size > limit:
                    return None
                headers.append((name, value))
        except (hpack.HPACKError, IndexError):
            return None
        return headers

    @staticmethod
    def _string(data: bytes, at: int) -> tuple[bytes, int]:
        first = data[at]
        length = first & 0x7F
        if length == 0x7F:
            raise IndexError("a multi-byte length: hpack's decoder reads it")
        start = at + 1
        end = start + length
        if end > len(data):
            raise IndexError("string past the end of the block")
        if first & 0x80:
            return decode_huffman(data[start:end]), end
        return bytes(data[start:end]), end


class _H2Connection(h2.connection.H2Connection):
    """h2's client connection, counting open streams in O(1) amortized.

    h2 counts open streams by walking all of them (and drops closed ones from its
    table) on every new stream: O(streams in flight) per request, the largest cost
    at hundreds of streams in flight. The sender keeps its own exact count of the
    streams it has open (``in_flight``) and never opens more than the server allows,
    so that count is what h2 checks against; h2's walk still runs once in 256 calls
    to prune closed streams.
    """

    # h2 remembers this many closed streams (to tell a late frame on one it reset
    # from an error); its default, 65,536, costs about 10 MiB per connection at full
    # speed. A frame on a stream we reset and h2 has since forgotten ends the
    # connection (its streams go back to the queue as possible duplicates); with
    # 65,536 that is only postponed by seconds at full speed.
    MAX_CLOSED_STREAMS = 4096

    def __init__(self, config: h2.config.H2Configuration, counter: Callable[[], int]) -> None:
        super().__init__(config)
        self._apns_counter = counter
        self._apns_calls = 0
        self.encoder = _RequestEncoder()
        self.decoder = _ResponseDecoder()
        self.decoder.max_header_list_size = self.DEFAULT_MAX_HEADER_LIST_SIZE

    @property
    def open_outbound_streams(self) -> int:
        self._apns_calls += 1
        if self._apns_calls & 0xFF == 0:
            return super().open_outbound_streams
        return self._apns_counter()


class _Templates:
    """Request headers by (payload, priority, expiry): built once by
    :func:`build_request` (every rule checked there), reused with another ``:path``."""

    def __init__(self, sender: Http2Sender) -> None:
        self.sender = sender
        self.token: str | None = None
        self._cache: dict[tuple[bytes, int, int], tuple[list[tuple[bytes, bytes]], int]] = {}

    def headers(self, notification: Notification, token: str | None) -> list[tuple[bytes, bytes]]:
        """The request's headers as bytes; raises as :func:`build_request` does."""
        if token != self.token:
            self._cache.clear()
            self.token = token
        key = (notification.payload, notification.priority, notification.expiry)
        cached = self._cache.get(key)
        if cached is None:
            config = self.sender.config
            request = build_request(
                notification, config.settings, authorization=token, authority=config.host
            )
            encoded = [(k.encode(), v.encode()) for k, v in request.headers]
            at = next(i for i, (k, _) in enumerate(encoded) if k == b":path")
            if len(self._cache) >= _MEMO_LIMIT:
                self._cache.clear()
            self._cache[key] = cached = (encoded, at)
        template, at = cached
        headers = template.copy()
        headers[at] = (b":path", b"/3/device/" + notification.token.value.hex().encode())
        return headers


class _Connection:
    def __init__(self, sender: Http2Sender, stream: Any) -> None:
        self.sender = sender
        self.ledger = sender._ledger
        self.stream = stream
        self.in_flight: dict[int, Http2Outcome] = {}
        # Requests come from build_request (checked there) and are bytes already:
        # h2's per-request normalization and validation would only repeat that.
        self.conn = _H2Connection(
            h2.config.H2Configuration(
                client_side=True,
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
                # Answers go to parse_response, which reads any header list (or
                # raises RemoteProtocolError); h2's checks of them cost a tenth.
                validate_inbound_headers=False,
                normalize_inbound_headers=False,
            ),
            self.in_flight.__len__,
        )
        #: Answers with a body, until their stream ends: (headers, body so far).
        self.answers: dict[int, tuple[list[tuple[bytes, bytes]], bytearray]] = {}
        #: Streams settled by an answer so far (the reader wakes the writer once a read).
        self.settled = 0
        self.answered_once = sender._cache is None
        self.stopping = False
        #: Set when this connection takes no more streams (GOAWAY, token trouble, end).
        self.retired = trio.Event()
        self.changed = trio.Event()
        self.send_lock = trio.Lock()
        self.goaway_last: int | None = None
        self.last_received = trio.current_time()
        self.pong = trio.Event()
        #: Streams whose body waits for flow-control window.
        self.partial: set[int] = set()

    def wake(self) -> None:
        self.changed.set()
        self.changed = trio.Event()
        self.ledger.queue.wake_all()

    def stop(self) -> None:
        # No new streams here; the slot may open the next connection while this one
        # reads the answers still due.
        self.stopping = True
        self.retired.set()

    def is_stopping(self) -> bool:
        # A method, not the attribute: it changes while the writer awaits.
        return self.stopping

    def limit(self) -> int:
        if not self.answered_once:
            return 1
        return self.conn.remote_settings.max_concurrent_streams

    async def flush(self) -> None:
        async with self.send_lock:
            data = self.conn.data_to_send()
            if data:
                await self.stream.send_all(data)

    async def run(self) -> None:
        try:
            self.conn.initiate_connection()
            await self.flush()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._guard, self.writer, nursery, False)
                nursery.start_soon(self._guard, self.keepalive, nursery, False)
                await self._guard(self.reader, nursery, True)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            logger.info("http2: connection lost: %r", exc)
        finally:
            self.stopping = True
            self.retired.set()
            self.lost()
            await trio.aclose_forcefully(self.stream)

    async def _guard(
        self, task: Callable[[], Awaitable[None]], nursery: trio.Nursery, always: bool
    ) -> None:
        # The reader's end ends the connection; the writer's only when it failed
        # (after a GOAWAY it stops writing while the reader drains the answers).
        try:
            await task()
        except (
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            OSError,
            h2.exceptions.ProtocolError,
        ) as exc:
            # An h2 error of our own side (a state the code above should never reach)
            # ends this connection like a loss, never the whole sender.
            logger.info("http2: connection lost: %r", exc)
            nursery.cancel_scope.cancel()
        else:
            if always:
                nursery.cancel_scope.cancel()

    async def keepalive(self) -> None:
        # PING after ping_interval without a frame from the server; no answer within
        # ping_timeout ends the connection as lost. Streams older than
        # response_timeout are reset and retried as possible duplicates.
        config = self.sender.config
        period = min(config.ping_interval, config.response_timeout) / 4
        while True:
            now = trio.current_time()
            if now - self.last_received >= config.ping_interval:
                self.pong = pong = trio.Event()
                self.conn.ping(b"apnslgcy")
                await self.flush()
                with trio.move_on_after(config.ping_timeout):
                    await pong.wait()
                if not pong.is_set():
                    logger.info("http2: no answer to a PING in %s s", config.ping_timeout)
                    raise trio.BrokenResourceError("no answer to a PING")
                continue
            if self.in_flight:
                stream_id, job = next(iter(self.in_flight.items()))
                if now - job.sent_at >= config.response_timeout:
                    self.time_out(stream_id)
                    await self.flush()
                    continue
            await trio.sleep_until(min(self.last_received + config.ping_interval, now + period))

    def time_out(self, stream_id: int) -> None:
        job = self.in_flight.pop(stream_id)
        self.answers.pop(stream_id, None)
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
        seconds = self.sender.config.response_timeout
        self.ledger.requeue([job], certain=False, reason=f"no answer within {seconds} s")
        self.wake()

    def lost(self) -> None:
        if self.in_flight:
            jobs: list[Outcome] = [self.in_flight.pop(k) for k in sorted(self.in_flight)]
            self.ledger.requeue(jobs, certain=False, reason="the connection was lost")

    async def writer(self) -> None:
        templates = self.sender._templates
        while not self.stopping:
            room = self.limit() - len(self.in_flight)
            if room <= 0:
                await self.changed.wait()
                continue
            await self.ledger.queue.wait()
            if self.is_stopping():
                break
            jobs = self.ledger.queue.take(room, 1 << 20)
            token = self.sender._token()
            done = 0  # jobs of this batch written or failed
            try:
                for job in jobs:
                    if not isinstance(job, Http2Outcome):  # pragma: no cover - only ours
                        raise TypeError("the HTTP/2 sender's queue holds Http2Outcome only")
                    try:
                        headers = templates.headers(job.notification, token)
                    except LocalProtocolError as exc:
                        self.ledger.fail(job, str(exc))
                        done += 1
                        continue
                    if self.is_stopping() or len(self.in_flight) >= self.limit():
                        # Closing, or the server lowered its stream limit while we
                        # were writing this batch: the rest goes back (below).
                        break
                    stream_id = self.conn.get_next_available_stream_id()
                    self.conn.send_headers(stream_id, headers)
                    job.sent_at = trio.current_time()
                    self.in_flight[stream_id] = job
                    self.ledger.stats.written += 1
                    done += 1  # in flight: settled by its answer or the connection's loss
                    await self.send_body(stream_id, job.notification.payload)
                    if done % _FLUSH_EVERY == 0:
                        # Out in pieces, so the server starts on them while the rest
                        # of the batch is encoded (one write per batch made the two
                        # ends take turns).
                        await self.flush()
            finally:
                # Taken but never written (closing, a lowered limit, the connection
                # failing during a flush): back to the head of the queue, no replay,
                # no duplicate risk.
                if done < len(jobs):
                    self.ledger.queue.put_front(jobs[done:])
            await self.flush()

    async def send_body(self, stream_id: int, body: bytes) -> None:
        # As much as the flow-control window (stream and connection) and the frame
        # size allow, then wait for WINDOW_UPDATE: a server with a window smaller than
        # the payload gets it in pieces, never a flow-control error.
        view = memoryview(body)
        while True:
            window = min(
                self.conn.local_flow_control_window(stream_id),
                self.conn.max_outbound_frame_size,
            )
            if window >= len(view):
                self.conn.send_data(stream_id, bytes(view), end_stream=True)
                return
            if window > 0:
                self.conn.send_data(stream_id, bytes(view[:window]))
                view = view[window:]
            # Taken before the flush: a WINDOW_UPDATE read while flushing sets this
            # one, and the wait below returns at once instead of missing it.
            changed = self.changed
            self.partial.add(stream_id)
            try:
                await self.flush()
                await changed.wait()
            finally:
                self.partial.discard(stream_id)
            if stream_id not in self.in_flight:
                return  # answered, reset or lost meanwhile; settled elsewhere

    async def reader(self) -> None:
        while True:
            data = await self.stream.receive_some()
            if not data:
                return
            self.last_received = trio.current_time()
            try:
                events = self.conn.receive_data(data)
            except h2.exceptions.ProtocolError as exc:
                logger.info("http2: protocol error from the server: %r", exc)
                return
            settled = self.settled
            for event in events:
                self.on_event(event)
            if self.settled != settled:
                self.wake()  # once per read, not once per answer
            await self.flush()
            if self.stopping and not self.in_flight:
                self.conn.close_connection()
                await self.flush()
                return

    def on_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            # An answer without a body (every 200) settles here, in one step; one
            # with a body keeps its headers until StreamEnded.
            stream_id = event.stream_id
            if event.stream_ended is not None:
                self.settle(stream_id, event.headers or [])
            elif stream_id in self.in_flight:
                self.answers[stream_id] = (list(event.headers or ()), bytearray())
        elif isinstance(event, h2.events.StreamEnded):
            if event.stream_id in self.in_flight:  # not yet settled by its headers
                headers, body = self.answers.pop(event.stream_id, ([], bytearray()))
                self.settle(event.stream_id, headers, bytes(body))
        elif isinstance(event, h2.events.DataReceived):
            assert event.stream_id is not None
            answer = self.answers.get(event.stream_id)
            if answer is not None:
                answer[1].extend(event.data or b"")
            self.conn.acknowledge_received_data(event.flow_controlled_length or 0, event.stream_id)
        elif isinstance(event, h2.events.StreamReset):
            job = self.in_flight.pop(event.stream_id or 0, None)
            self.answers.pop(event.stream_id or 0, None)
            if job is not None:
                if event.error_code == h2.errors.ErrorCodes.REFUSED_STREAM:
                    self.sender._retry(job, "stream refused (REFUSED_STREAM)")
                else:
                    self.ledger.requeue(
                        [job], certain=False, reason=f"stream reset ({event.error_code!r})"
                    )
            self.wake()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway(event)
        elif isinstance(event, (h2.events.RemoteSettingsChanged, h2.events.WindowUpdated)):
            self.wake()
        elif isinstance(event, h2.events.PingAckReceived):
            self.pong.set()

    def goaway(self, event: h2.events.ConnectionTerminated) -> None:
        self.stop()
        last = event.last_stream_id if event.last_stream_id is not None else 0
        reason = ""
        try:
            document = json.loads(event.additional_data or b"{}")
            if isinstance(document, dict):
                reason = str(document.get("reason", ""))
        except ValueError:
            pass
        logger.info("http2: GOAWAY (last stream %d, reason %r)", last, reason)
        unprocessed = sorted(k for k in self.in_flight if k > last)
        if unprocessed:
            jobs: list[Outcome] = [self.in_flight.pop(k) for k in unprocessed]
            for k in unprocessed:
                self.answers.pop(k, None)
            self.ledger.requeue(jobs, certain=True, reason=f"GOAWAY {reason}".strip())
        if reason in {r.value for r in _FATAL}:
            self.ledger.set_fatal(
                _Refusal(f"APNs closed the connection: {reason}", reason_from_str(reason))
            )
        if self.in_flight:
            # Streams up to the last stream id "might still complete successfully"
            # (RFC 9113 6.8), but h2 moves its connection state machine to CLOSED on
            # a received GOAWAY and would refuse their answers as a protocol error
            # (which would make them possible duplicates). Its state machine is
            # a public attribute; reopened here only to read those answers: the
            # writer opens no stream after a GOAWAY.
            self.conn.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
        self.wake()

    def settle(self, stream_id: Any, headers: Any, body: bytes = b"") -> None:
        job = self.in_flight.pop(stream_id, None)
        if job is None:
            return
        self.settled += 1
        if stream_id in self.partial:
            # Answered before its body was all sent (an early error answer): our half
            # of the stream would stay open, counting against the server's limit.
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
        self.answered_once = True
        try:
            response = parse_response(headers, body)
        except RemoteProtocolError as exc:
            self.ledger.fail(job, f"unreadable answer: {exc}")
            return
        job.apns_id = response.apns_id
        if response.ok:
            self.ledger.accept([job], Evidence.CONFIRMED)
            return
        reason = response.reason
        text = str(reason)
        if (
            reason in _RETRY
            or response.status in (500, 503)
            or (response.status == 429 and reason is not Reason.TOO_MANY_PROVIDER_TOKEN_UPDATES)
        ):
            self.sender._retry(job, f"{response.status} {text}")
        elif reason is Reason.EXPIRED_PROVIDER_TOKEN:
            self.sender._token_stale = True
            self.stop()
            job.token_retries += 1
            if job.token_retries > 1:
                self.ledger.fail(
                    job,
                    _Refusal(
                        "ExpiredProviderToken after a new token", Reason.EXPIRED_PROVIDER_TOKEN
                    ),
                )
            else:
                self.ledger.requeue([job], certain=True, reason=text)
        elif reason is Reason.TOO_MANY_PROVIDER_TOKEN_UPDATES:
            self.stop()
            self.sender._retry(job, text)
        elif reason in _FATAL:
            message = _Refusal(
                f"APNs refused the credentials or topic: {response.status} {text}",
                reason_from_str(text),
            )
            self.ledger.set_fatal(message)
            self.ledger.fail(job, message)
        else:
            job.reason = text
            job.timestamp = response.timestamp
            self.sender.rejected_by_reason[text] += 1
            self.ledger.reject(job, response.status)


@asynccontextmanager
async def open_http2_sender(
    config: Http2SenderConfig,
    *,
    on_outcome: OutcomeCallback | None = None,
    connect: Http2Connector | None = None,
) -> AsyncIterator[Http2Sender]:
    """Run an HTTP/2 sender for the ``async with`` block; leaving it waits until every
    submitted notification has its outcome, then closes the connections.

    ``on_outcome`` is called with each :class:`Http2Outcome` as it settles (as for
    :func:`open_sender`); without it, :meth:`Http2Sender.outcomes` streams them.
    ``connect`` opens a connection instead of TLS to ``config.host``/``port`` (any
    connected :class:`trio.abc.Stream` speaking HTTP/2; ``ca``, ``credentials``'
    TLS part and ``server_hostname`` are then not used)."""
    async with trio.open_nursery() as nursery:
        sender = Http2Sender(config, nursery, on_outcome, connect)
        for _ in range(config.connections):
            nursery.start_soon(sender._slot)
        try:
            yield sender
            await sender.wait_settled()
        finally:
            sender._ledger.finish()
            nursery.cancel_scope.cancel()
