"""The simulator's state and its test-facing API, independent of sockets and TLS.

:class:`Simulator` holds the configuration, the token sets, the faults, the feedback
list, the records and the counters. ``serve_gateway_stream`` and
``serve_feedback_stream`` run one connection over any ``trio.abc.Stream`` whose peer
has already been identified; ``open_simulator`` (``_server.py``) adds the TCP
listeners and TLS in front of them. For the gateway it is the :class:`GatewaySink`
of a :class:`GatewayConnection`.
"""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Unpack

import trio

from ..tls import Environment
from ..wire import ReceivedNotification, Status
from . import _streams
from ._config import SimulatorConfig, SimulatorOptions, make_config, record_limit
from ._fault_book import FaultBook
from ._faults import Fault
from ._feedback import FeedbackStore, serve_feedback, timestamp_of
from ._gateway import GatewayConnection
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
        config: the settings (see :class:`SimulatorConfig`); default: all defaults.
        pki: the certificates; required by :meth:`client_context` and the TLS listeners.
        **changes: fields of :class:`SimulatorConfig` to change (keyword shortcuts).
    """

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        pki: TestPKI | None = None,
        **changes: Unpack[SimulatorOptions],
    ) -> None:
        config = make_config(config, changes)
        self.config = config
        self.pki = pki
        self.invalid_tokens: set[bytes] = set(config.invalid_tokens)
        self.uninstalled_tokens: set[bytes] = set(config.uninstalled_tokens)
        self.faults = FaultBook()
        for fault in config.faults:
            self.faults.add(fault)
        self.feedback = FeedbackStore()
        #: Accepted notifications, in order (see ``keep_records``).
        self.accepted: list[AcceptedRecord] = []
        #: Error frames written, in order.
        self.errors_sent: list[ErrorRecord] = []
        self.stats = SimulatorStats()
        self._max_records = record_limit(config.keep_records)
        self._keeps = self._max_records != 0
        self._writer = JsonLinesWriter(config.record_path) if config.record_path else None
        self._changed = trio.Event()
        self._gateway_address: tuple[str, int] | None = None
        self._feedback_address: tuple[str, int] | None = None

    @property
    def environment(self) -> Environment:
        """The environment this server plays (``config.environment``)."""
        return self.config.environment

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
            raise RuntimeError("this simulator has no pki (no client certificate)")
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

    # -- records: the GatewaySink of every gateway connection ------------------------------

    @property
    def keeps_records(self) -> bool:
        """Whether accepted notifications are recorded anywhere (list or file)."""
        return self._writer is not None or self._keeps

    def refusal(self, notification: ReceivedNotification) -> int | None:
        """Status 8 for a token in the invalid set (called by the gateway)."""
        return Status.INVALID_TOKEN if notification.token in self.invalid_tokens else None

    def accept(
        self, notification: ReceivedNotification, connection: int, topic: str, now: float, /
    ) -> None:
        """Record one accepted notification (called by the gateway)."""
        if self._writer is not None or self._keeps:
            self.record(
                AcceptedRecord(
                    connection=connection,
                    command=int(notification.command),
                    identifier=notification.identifier,
                    token=notification.token.hex(),
                    payload=notification.payload.decode("utf-8", "replace"),
                    expiry=notification.expiry,
                    priority=notification.priority,
                    time=now,
                    topic=topic,
                )
            )
        if notification.token in self.uninstalled_tokens:
            self.feedback.add(topic, notification.token, int(now))

    def error_sent(self, record: ErrorRecord) -> None:
        """Keep one error frame the gateway wrote."""
        self.errors_sent.append(record)
        self.changed()

    def after_read(self) -> None:
        """Flush the record file and wake waiters (called after each gateway read)."""
        if self._writer is not None:
            self._writer.flush()
        self.changed()

    def record(self, record: AcceptedRecord) -> None:
        """Store one accepted notification."""
        if self._max_records is None or len(self.accepted) < self._max_records:
            self.accepted.append(record)
        if self._writer is not None:
            self._writer.write(record)

    def flush_records(self) -> None:
        """Flush the record file, if any."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush and close the record file, if any."""
        if self._writer is not None:
            self._writer.close()

    # -- serving streams ---------------------------------------------------------------------

    def _environment_allowed(self, environments: Collection[Environment]) -> bool:
        return self.config.environment in environments

    async def _drop_wrong_environment(self, stream: trio.abc.Stream, service: str) -> None:
        # Apple accepted the handshake, then closed "immediately" with no packet
        # (node-apn waits 100 ms to see it). Read and drop meanwhile, so that the close
        # is a clean FIN, not a reset caused by unread data.
        self.stats.wrong_environment += 1
        logger.debug("%s: certificate does not allow %s", service, self.environment.value)
        with trio.move_on_after(self.config.wrong_environment_delay):
            while await stream.receive_some(_streams.READ_SIZE):
                pass
            await trio.sleep_forever()
        await _streams.close(stream)
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
        connection = GatewayConnection(
            stream,
            config=self.config,
            faults=self.faults,
            sink=self,
            stats=self.stats,
            number=number,
            topic=topic,
        )
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
        try:
            sent = await serve_feedback(
                stream, self.feedback, topic=topic, chunk_size=self.config.feedback_chunk_size
            )
            self.stats.feedback_items_sent += sent
            logger.debug("feedback #%d: sent %d tuples for %s", number, sent, topic)
        finally:
            self.changed()
