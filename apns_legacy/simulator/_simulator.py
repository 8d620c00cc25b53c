"""The simulator's state and its test-facing API, independent of sockets and TLS.

:class:`Simulator` holds the configuration, the token sets, the faults, the feedback
list, the records and the counters. ``serve_gateway_stream`` and
``serve_feedback_stream`` run one connection over any ``trio.abc.Stream`` whose peer
has already been identified; ``open_simulator`` (``_server.py``) adds the TCP
listeners and TLS in front of them.
"""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from ..tls import Environment
from ..wire import MAX_LONG_TOKEN_LENGTH, PAYLOAD_LIMIT, TOKEN_LENGTH
from ._fault_book import FaultBook
from ._faults import Fault
from ._feedback import FeedbackStore, timestamp_of
from ._gateway import GatewayConnection, _close
from ._records import AcceptedRecord, ErrorRecord, JsonLinesWriter, SimulatorStats

if TYPE_CHECKING:
    from OpenSSL import SSL

    from ..tls import TestPKI

logger = logging.getLogger("apns_legacy.simulator")


class Simulator:
    """A gateway and feedback service that behave like Apple's, with scripted faults.

    Usually obtained from :func:`open_simulator`, which also listens on TCP with TLS.
    Constructed directly, it serves streams you hand it (see
    :meth:`serve_gateway_stream`); call :meth:`close` when done if ``record_path``
    was given.

    Args:
        pki: the certificates; required by :meth:`client_context` and the TLS listeners.
        environment: the environment this server plays; client certificates must allow it.
        invalid_tokens: tokens answered with status 8 (invalid token).
        uninstalled_tokens: tokens accepted, then listed by the feedback service.
        payload_limit: largest payload (2048; 256 for the pre-iOS 8 era).
        max_token_length: 32, or up to 100 for Apple's 2018 "up to 100 bytes".
        protocol_error_frames: answer an unknown command byte or a broken command-2
            frame with ``08 80 <id>`` instead of closing silently.
        allow_tls13: offer TLS 1.3 (Apple's legacy gateway topped out at TLS 1.2).
        wrong_environment_delay: seconds before a wrong-environment client is dropped.
        feedback_chunk_size: write the feedback stream in pieces of this many bytes.
        faults: faults armed from the start (see :class:`Fault`).
        record_path: append each accepted notification to this file as a JSON line.
        keep_records: keep accepted notifications in :attr:`accepted`: ``True`` (all),
            ``False`` (none), or an int (the first N).
        handshake_timeout: seconds a client may take over the TLS handshake.
    """

    def __init__(
        self,
        *,
        pki: TestPKI | None = None,
        environment: Environment = Environment.SANDBOX,
        invalid_tokens: Iterable[bytes] = (),
        uninstalled_tokens: Iterable[bytes] = (),
        payload_limit: int = PAYLOAD_LIMIT,
        max_token_length: int = TOKEN_LENGTH,
        protocol_error_frames: bool = False,
        allow_tls13: bool = False,
        wrong_environment_delay: float = 0.1,
        feedback_chunk_size: int | None = None,
        faults: Iterable[Fault] = (),
        record_path: str | Path | None = None,
        keep_records: bool | int = True,
        handshake_timeout: float = 10.0,
    ) -> None:
        if not 1 <= payload_limit <= 0xFFFF:
            raise ValueError(f"payload_limit must be 1..65535, not {payload_limit}")
        if not TOKEN_LENGTH <= max_token_length <= MAX_LONG_TOKEN_LENGTH:
            raise ValueError(
                f"max_token_length must be {TOKEN_LENGTH}..{MAX_LONG_TOKEN_LENGTH}, "
                f"not {max_token_length}"
            )
        if not wrong_environment_delay >= 0:
            raise ValueError("wrong_environment_delay must be 0 or more")
        if feedback_chunk_size is not None and feedback_chunk_size < 1:
            raise ValueError("feedback_chunk_size must be at least 1")
        self.pki = pki
        self.environment = Environment(environment)
        self.payload_limit = payload_limit
        self.max_token_length = max_token_length
        self.protocol_error_frames = protocol_error_frames
        self.allow_tls13 = allow_tls13
        self.wrong_environment_delay = wrong_environment_delay
        self.feedback_chunk_size = feedback_chunk_size
        self.handshake_timeout = handshake_timeout
        self.invalid_tokens: set[bytes] = {bytes(t) for t in invalid_tokens}
        self.uninstalled_tokens: set[bytes] = {bytes(t) for t in uninstalled_tokens}
        self.faults = FaultBook()
        for fault in faults:
            self.faults.add(fault)
        self.feedback = FeedbackStore()
        #: Accepted notifications, in order (see ``keep_records``).
        self.accepted: list[AcceptedRecord] = []
        #: Error frames written, in order.
        self.errors_sent: list[ErrorRecord] = []
        self.stats = SimulatorStats()
        self._max_records: int | None = (
            None if keep_records is True else 0 if keep_records is False else int(keep_records)
        )
        self._writer = JsonLinesWriter(record_path) if record_path is not None else None
        self._changed = trio.Event()
        self._gateway_address: tuple[str, int] | None = None
        self._feedback_address: tuple[str, int] | None = None

    # -- addresses (set by the TLS listeners) ---------------------------------------------

    @property
    def gateway_address(self) -> tuple[str, int]:
        """``(host, port)`` of the gateway listener."""
        if self._gateway_address is None:
            raise RuntimeError("this simulator is not listening (use open_simulator)")
        return self._gateway_address

    @property
    def feedback_address(self) -> tuple[str, int]:
        """``(host, port)`` of the feedback listener."""
        if self._feedback_address is None:
            raise RuntimeError("this simulator is not listening (use open_simulator)")
        return self._feedback_address

    def listening_on(self, gateway: tuple[str, int], feedback: tuple[str, int]) -> None:
        """Record the listeners' addresses (called by ``open_simulator``)."""
        self._gateway_address = gateway
        self._feedback_address = feedback

    # -- scripting -------------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        """Arm ``fault`` from now on."""
        self.faults.add(fault)

    def add_invalid_token(self, token: bytes) -> None:
        """Answer notifications to ``token`` with status 8 (invalid token) from now on."""
        self.invalid_tokens.add(bytes(token))

    def add_uninstalled_token(self, token: bytes) -> None:
        """Accept notifications to ``token``, then list it in the feedback service."""
        self.uninstalled_tokens.add(bytes(token))

    def add_feedback(
        self, token: bytes, timestamp: int | float | _dt.datetime, topic: str | None = None
    ) -> None:
        """Put a tuple in the feedback list directly (for tests of feedback clients).

        ``topic`` defaults to the topic of ``pki.client``.
        """
        if topic is None and self.pki is not None:
            topic = self.pki.client.topic
        self.feedback.add(topic, bytes(token), timestamp_of(timestamp))

    def client_context(self) -> SSL.Context:
        """A client TLS context for ``pki.client`` that trusts the test CA."""
        from ..tls import client_context

        if self.pki is None:
            raise RuntimeError("this simulator has no pki")
        return client_context(self.pki.client, ca=self.pki.ca_pem())

    # -- waiting -----------------------------------------------------------------------------

    def changed(self) -> None:
        """Wake everything in :meth:`wait_until` (called after each read and each close)."""
        self._changed.set()
        self._changed = trio.Event()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` is true; re-checked after each change. No polling."""
        while not predicate():
            await self._changed.wait()

    async def wait_for_accepted(self, n: int) -> None:
        """Return once ``n`` notifications have been accepted in all."""
        await self.wait_until(lambda: self.stats.accepted >= n)

    # -- records -----------------------------------------------------------------------------

    @property
    def keeps_records(self) -> bool:
        """Whether accepted notifications are recorded anywhere (list or file)."""
        return self._writer is not None or self._max_records != 0

    def record(self, record: AcceptedRecord) -> None:
        """Store one accepted notification (called by the gateway)."""
        if self._max_records is None or len(self.accepted) < self._max_records:
            self.accepted.append(record)
        if self._writer is not None:
            self._writer.write(record)

    def flush_records(self) -> None:
        """Flush the record file, if any (called after each read)."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush and close the record file, if any."""
        if self._writer is not None:
            self._writer.close()

    # -- serving streams ---------------------------------------------------------------------

    def _environment_allowed(self, environments: Collection[Environment]) -> bool:
        return self.environment in environments

    async def _drop_wrong_environment(self, stream: trio.abc.Stream, service: str) -> None:
        # Apple accepted the handshake, then closed "immediately" with no packet
        # (node-apn waits 100 ms to see it). Read and drop meanwhile, so that the close
        # is a clean FIN, not a reset caused by unread data.
        self.stats.wrong_environment += 1
        logger.debug("%s: certificate does not allow %s", service, self.environment.value)
        with trio.move_on_after(self.wrong_environment_delay):
            while await stream.receive_some(65536):
                pass
            await trio.sleep_forever()
        await _close(stream)
        self.changed()

    async def serve_gateway_stream(
        self, stream: trio.abc.Stream, *, topic: str | None, environments: Collection[Environment]
    ) -> None:
        """Serve one gateway connection on ``stream`` and close it.

        Errors of the stream itself (``trio.BrokenResourceError`` when the client
        vanishes, ...) propagate; the TLS listeners catch and log them.

        Args:
            stream: the (decrypted) connection.
            topic: the client certificate's topic (subject UID), or ``None``.
            environments: the environments the client certificate allows.
        """
        self.stats.gateway_connections += 1
        number = self.stats.gateway_connections
        if not self._environment_allowed(environments):
            await self._drop_wrong_environment(stream, f"gateway #{number}")
            return
        connection = GatewayConnection(self, stream, number=number, topic=topic)
        try:
            await connection.run()
        finally:
            self.changed()

    async def serve_feedback_stream(
        self, stream: trio.abc.Stream, *, topic: str | None, environments: Collection[Environment]
    ) -> None:
        """Serve one feedback connection: write the topic's pending tuples, clear, close."""
        self.stats.feedback_connections += 1
        number = self.stats.feedback_connections
        if not self._environment_allowed(environments):
            await self._drop_wrong_environment(stream, f"feedback #{number}")
            return
        entries = self.feedback.take(topic)
        data = FeedbackStore.encode(entries)
        chunk = self.feedback_chunk_size or len(data) or 1
        try:
            for start in range(0, len(data), chunk):
                await stream.send_all(data[start : start + chunk])
        except BaseException:
            self.feedback.put_back(topic, entries)
            raise
        self.stats.feedback_items_sent += len(entries)
        logger.debug("feedback #%d: sent %d tuples for %s", number, len(entries), topic)
        await _close(stream)
        self.changed()
