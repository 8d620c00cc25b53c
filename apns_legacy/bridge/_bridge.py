"""The bridge: legacy binary clients in (gateway and feedback ports), HTTP/2 APNs out.

``open_bridge(config)`` opens, for the ``async with`` block:

* one HTTP/2 sender (:func:`open_http2_sender`) per app and environment, with the
  app's credentials; its answers come back through :meth:`_Route.on_outcome`, which
  maps them (:func:`map_outcome`), lists 410s in the feedback store and resolves the
  waiting :class:`Entry`;
* TLS listeners for the gateway and the feedback service, requiring a client
  certificate that chains to ``client_ca``. The certificate's subject UID (or, failing
  that, a topic of its .6.3.6 extension) names the app; its environment extensions
  choose sandbox or production when it has only one of them (a universal certificate
  goes to the app's configured environment; Wallet pass topics always to production).
  A certificate that names no configured app is served, and every notification it
  sends is refused with status 3, as Apple refused unknown topics;
* per client identity (the certificate's subject), the replay ledger of ``exact`` mode.

Connections submit through the app's *current* route. A route is replaced (retired:
its sender closes once what it has in flight is answered, at most ``drain_timeout``
later, and whatever it could not answer gets status 1) when a reload changes the app,
or when its sender gives up for good (APNs unreachable, credentials or topic refused:
the HTTP/2 sender's fatal state); the replacement starts with the app's next
notification, not sooner than ``max_retry_delay`` after a give-up, so an app recovers
by itself once APNs does.

Leaving the block stops the bridge as SIGTERM does: stop accepting, stop reading,
wait (at most ``drain_timeout``) for the answers to what is in flight, send each
client status 10 naming its last notification that succeeded (or the error frame of
its first failure), close; then the HTTP/2 senders.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Final

import attrs
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from OpenSSL import SSL

from ..client import Http2Outcome, Http2Sender, Http2SenderConfig, Outcome, open_http2_sender
from ..h2wire import AppSettings
from ..simulator._server import listener_address, open_listeners
from ..simulator._streams import SocketTransport, close
from ..tls import (
    Environment,
    TLSStream,
    certificate_environments,
    inspect_certificate,
    server_context,
)
from ..wire import Notification, Status, encode_feedback_item, pass_payload
from ._config import AppConfig, BridgeConfig, BridgeMode
from ._metrics import serve_metrics
from ._replay import Entry, ReplayLedger, map_outcome
from ._session import GatewaySession, SessionStats
from ._store import FeedbackStore, LedgerRow

logger = logging.getLogger("apns_legacy.bridge")

#: Longest the feedback service takes to write one app's list to a client (seconds).
FEEDBACK_WRITE_LIMIT: Final = 300.0
#: Seconds between snapshots of the replay ledgers into the store (while not empty).
LEDGER_SAVE_INTERVAL: Final = 1.0


class BridgeListenError(OSError):
    """A listener could not be opened; the message names the port's purpose and address."""


@attrs.define
class BridgeStats:
    """Counters since the bridge started (see also :attr:`Bridge.gateway`)."""

    #: Upstream outcomes: ``accepted``, ``rejected <Reason>``, ``failed``.
    upstream: collections.Counter[str] = attrs.Factory(collections.Counter)
    #: The same by ``(app, outcome, reason)``.
    upstream_by_app: collections.Counter[tuple[str, str, str]] = attrs.Factory(collections.Counter)
    #: Tokens listed for feedback (410s, and BadDeviceToken in feedback-only mode).
    feedback_listed: int = 0
    #: Feedback tuples served to clients.
    feedback_served: int = 0
    handshake_failures: int = 0
    #: Operator-visible errors (credentials refused, a request APNs called malformed).
    alerts: int = 0
    internal_errors: int = 0


class _Route:
    """One app in one environment: its HTTP/2 sender and how its answers are mapped."""

    def __init__(self, bridge: Bridge, app: AppConfig, environment: Environment) -> None:
        self.bridge = bridge
        self.app = app
        self.environment = environment
        self.topic = app.topic
        self.mode = bridge.config.mode_of(app)
        self.settings = AppSettings(topic=app.topic)
        self.rewrite = pass_payload() if app.topic.startswith("pass.") else None
        self.sender: Http2Sender | None = None
        #: Set to close this route's sender (shutdown, or retired).
        self.stop = trio.Event()
        #: Set once its sender has closed.
        self.closed = trio.Event()
        #: Replaced (a reload changed the app, or its sender gave up for good): new
        #: notifications go to a new route; this one closes once its own are answered.
        self.retired = False
        #: Submitted and not answered yet; answered with status 1 if the sender closes
        #: without answering them (a retired sender past ``drain_timeout``).
        self.unanswered: set[Entry] = set()
        self._alerts_seen: set[str] = set()

    def retries(self) -> int:
        """Notifications written upstream again (transient failures, lost connections)."""
        return self.sender.stats.replayed if self.sender is not None else 0

    def pending(self) -> int:
        """Notifications submitted and not answered yet."""
        return self.sender.stats.pending if self.sender is not None else 0

    def sender_config(self) -> Http2SenderConfig:
        upstream = self.bridge.config.upstream
        return Http2SenderConfig(
            host=upstream.host_for(self.environment),
            port=upstream.port,
            settings=self.settings,
            provider_key=self.app.provider_key,
            credentials=self.app.credentials,
            ca=upstream.trust(),
            server_hostname=upstream.server_hostname,
            connections=upstream.connections,
            max_attempts=upstream.max_attempts,
            retry_delay=upstream.retry_delay,
            max_retry_delay=upstream.max_retry_delay,
        )

    async def submit(self, notification: Notification, entry: Entry) -> None:
        assert self.sender is not None
        # Before: a sender that already gave up answers inside submit().
        self.unanswered.add(entry)
        try:
            await self.sender.submit(notification, tag=entry)
        except BaseException:
            self.unanswered.discard(entry)  # never submitted (cancelled while waiting)
            raise

    def on_outcome(self, outcome: Outcome) -> None:
        assert isinstance(outcome, Http2Outcome)
        entry = outcome.tag
        assert isinstance(entry, Entry)
        self.unanswered.discard(entry)
        stats = self.bridge.stats
        now = time.time()
        mapped = map_outcome(outcome, self.mode, now)
        kind = outcome.kind.value
        if outcome.reason and kind == "rejected":
            stats.upstream[f"rejected {outcome.reason}"] += 1
            stats.upstream_by_app[(self.topic, kind, outcome.reason)] += 1
        else:
            stats.upstream[kind] += 1
            stats.upstream_by_app[(self.topic, kind, "")] += 1
        # The sender fails everything from now on (its fatal state): credentials or topic
        # refused, or APNs unreachable.
        fatal = kind == "failed" and (
            mapped.configuration or (outcome.reason or "").startswith("cannot connect")
        )
        if mapped.configuration or fatal:
            self.bridge.failing[self.topic] = mapped.alert or outcome.reason or ""
        elif kind == "accepted":
            self.bridge.failing.pop(self.topic, None)
        if mapped.feedback is not None:
            self.bridge.store.add(self.topic, outcome.token_bytes, mapped.feedback)
            stats.feedback_listed += 1
            self.bridge._feedback_changed.set()
            self.bridge._feedback_changed = trio.Event()
        if mapped.alert is not None:
            stats.alerts += 1
            if mapped.alert not in self._alerts_seen:
                self._alerts_seen.add(mapped.alert)
                logger.error("app %s: %s", self.topic, mapped.alert)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "app %s: %s apns-id %s -> %s%s",
                self.topic,
                outcome.notification.token,
                outcome.apns_id,
                outcome.kind.value,
                f" ({outcome.status} {outcome.reason})" if outcome.reason else "",
            )
        entry.resolve(mapped.status)
        if fatal:
            # Replace the sender, so that the app recovers once APNs (or the network) does.
            self.bridge._retire(self, outcome.reason or "")


class Bridge:
    """A running bridge (see :func:`open_bridge`)."""

    def __init__(self, config: BridgeConfig, store: FeedbackStore) -> None:
        self.config = config
        self.store = store
        self.stats = BridgeStats()
        #: Counters of the gateway side (notifications, error frames...).
        self.gateway = SessionStats()
        self.gateway_address: tuple[str, int] = config.gateway
        self.feedback_address: tuple[str, int] = config.feedback
        #: Where ``/metrics`` and ``/health`` are served (``config.metrics``), once bound.
        self.metrics_address: tuple[str, int] | None = None
        self._routes: dict[tuple[str, Environment], _Route] = {}
        self._retired: list[_Route] = []
        #: Not before this (trio time) may a retired route's replacement start.
        self._retry_at: dict[tuple[str, Environment], float] = {}
        #: Apps whose upstream fails for the bridge's configuration or the network, and
        #: why, until their next accepted notification (``/health``).
        self.failing: dict[str, str] = {}
        self._route_lock = trio.Lock()
        self._ledgers: dict[str, ReplayLedger] = {}
        #: Entries in the store's ledger snapshot (0: nothing to replace).
        self._ledger_saved = 0
        self._sessions: set[GatewaySession] = set()
        self._sessions_changed = trio.Event()
        self._stopping = trio.Event()
        self._feedback_changed = trio.Event()
        self._forward_changed = trio.Event()
        self._upstream_nursery: trio.Nursery | None = None
        self._listening: trio.CancelScope | None = None
        # Built once per configuration (pyOpenSSL contexts must not change once used).
        self._context: SSL.Context | None = None
        self._stopping_clients = False
        self._connections = 0

    # -- for callers ---------------------------------------------------------------------

    @property
    def open_sessions(self) -> int:
        """Gateway connections open now."""
        return len(self._sessions)

    def _forwarded(self) -> None:
        self._forward_changed.set()
        self._forward_changed = trio.Event()

    async def wait_for_forwarded(self, n: int) -> None:
        """Return once ``n`` notifications have been handed to the HTTP/2 senders."""
        while self.gateway.forwarded < n:
            await self._forward_changed.wait()

    async def wait_for_feedback(self, n: int) -> None:
        """Return once ``n`` tokens have been listed for feedback since the start."""
        while self.stats.feedback_listed < n:
            await self._feedback_changed.wait()

    def routes(self, *, retired: bool = False) -> list[_Route]:
        """Every app and environment with an HTTP/2 sender; with ``retired``, instead
        the replaced ones whose sender is still closing (answers in flight)."""
        if retired:
            return [route for route in self._retired if not route.closed.is_set()]
        return list(self._routes.values())

    def ledger_size(self) -> int:
        """Entries waiting in all replay ledgers."""
        return sum(len(ledger) for ledger in self._ledgers.values())

    def save_ledgers(self) -> int:
        """Write every replay ledger's live entries to the store (one transaction,
        replacing what it held); the number written. The bridge does it about once a
        second while a ledger holds something, and when it stops."""
        now, wall = trio.current_time(), time.time()
        rows: list[LedgerRow] = []
        for identity, ledger in self._ledgers.items():
            for deadline, entry in ledger.live():
                token, payload, expiry, priority = entry.key
                expires = wall + (deadline - now)
                rows.append((identity, token, payload, expiry, priority, entry.status, expires))
        self.store.save_ledger(rows)
        self._ledger_saved = len(rows)
        return len(rows)

    def _load_ledgers(self) -> int:
        now, wall = trio.current_time(), time.time()
        rows = self.store.load_ledger(wall)
        for identity, token, payload, expiry, priority, status, expires in rows:
            key = (token, payload, expiry, priority)
            self._ledger(identity).restore(key, status, now + (expires - wall))
        self._ledger_saved = len(rows)
        if rows:
            logger.info("bridge: %d replay ledger entries read back from the store", len(rows))
        return len(rows)

    async def _keep_ledgers(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(LEDGER_SAVE_INTERVAL)
            # Nothing to write when every ledger is empty and so is what was written.
            if self._ledger_saved or any(self._ledgers.values()):
                self.save_ledgers()

    def feedback_sizes(self) -> dict[str, int]:
        """Tokens waiting in each app's feedback list."""
        return self.store.sizes()

    # -- apps and routes -----------------------------------------------------------------

    def app_for(self, certificate: x509.Certificate | None) -> AppConfig | None:
        """The configured app a client certificate names (subject UID, then .6.3.6 topics)."""
        if certificate is None:
            return None
        info = inspect_certificate(certificate)
        if info.topic is not None:
            app = self.config.app(info.topic)
            if app is not None:
                return app
        for topic in info.topics or ():
            app = self.config.app(topic)
            if app is not None:
                return app
        return None

    def _environment(self, app: AppConfig, certificate: x509.Certificate | None) -> Environment:
        if app.topic.startswith("pass."):
            return Environment.PRODUCTION  # Wallet pushes work only in production
        environments = certificate_environments(certificate) if certificate else frozenset()
        if len(environments) == 1:
            return next(iter(environments))
        return app.environment

    async def _route(self, app: AppConfig, environment: Environment) -> _Route:
        key = (app.topic, environment)
        route = self._routes.get(key)
        if route is not None:
            return route
        retry_at = self._retry_at.get(key)
        if retry_at is not None:
            await trio.sleep_until(retry_at)  # back-off after a give-up (outside the lock)
        async with self._route_lock:
            route = self._routes.get(key)
            if route is None:
                self._retry_at.pop(key, None)
                route = _Route(self, app, environment)
                assert self._upstream_nursery is not None
                await self._upstream_nursery.start(self._run_route, route)
                self._routes[key] = route
            return route

    async def _run_route(
        self, route: _Route, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            with trio.CancelScope() as scope:
                async with open_http2_sender(
                    route.sender_config(), on_outcome=route.on_outcome
                ) as sender:
                    route.sender = sender
                    task_status.started()
                    await route.stop.wait()
                    # Leaving waits for what is still unanswered; not longer than this.
                    scope.deadline = trio.current_time() + self.config.drain_timeout
        finally:
            route.closed.set()
            if route.unanswered:
                logger.warning(
                    "app %s (%s): %d notifications unanswered when its HTTP/2 sender closed; "
                    "status 1 (processing error) for them",
                    route.topic,
                    route.environment.value,
                    len(route.unanswered),
                )
                for entry in list(route.unanswered):
                    entry.resolve(Status.PROCESSING_ERROR)
                route.unanswered.clear()

    def _retire(self, route: _Route, why: str) -> None:
        if route.retired:
            return
        route.retired = True
        key = (route.topic, route.environment)
        if self._routes.get(key) is route:
            del self._routes[key]
        self._retired = [r for r in self._retired if not r.closed.is_set()]
        self._retired.append(route)
        route.stop.set()
        if why:
            self._retry_at[key] = trio.current_time() + self.config.upstream.max_retry_delay
            logger.warning(
                "app %s (%s): HTTP/2 sender gave up (%s); a new one starts with the next "
                "notification",
                route.topic,
                route.environment.value,
                why,
            )

    async def _submit(
        self,
        app: AppConfig,
        environment: Environment,
        notification: Notification,
        entry: Entry,
    ) -> None:
        # The app's current route: a reload or a give-up may have replaced the one the
        # connection started with.
        current = self.config.app(app.topic)
        if current is None:
            entry.resolve(Status.MISSING_TOPIC)  # removed from the configuration
            return
        route = await self._route(current, environment)
        await route.submit(notification, entry)

    def _ledger(self, identity: str) -> ReplayLedger:
        ledger = self._ledgers.get(identity)
        if ledger is None:
            ledger = self._ledgers[identity] = ReplayLedger(
                ttl=self.config.ledger_ttl, size=self.config.ledger_size, clock=trio.current_time
            )
        return ledger

    # -- connections ---------------------------------------------------------------------

    async def _handle(self, service: str, tcp: trio.SocketStream) -> None:
        self._connections += 1
        number = self._connections
        transport = SocketTransport(tcp)
        assert self._context is not None
        tls = TLSStream(transport, self._context, server_side=True)
        try:
            try:
                with trio.fail_after(self.config.handshake_timeout):
                    await tls.do_handshake()
            except (trio.TooSlowError, trio.BrokenResourceError, OSError) as exc:
                self.stats.handshake_failures += 1
                logger.debug("%s #%d: handshake failed: %s", service, number, exc)
                return
            certificate = tls.peer_certificate
            app = self.app_for(certificate)
            if service == "feedback":
                await self._serve_feedback(tls, app, number)
            else:
                await self._serve_gateway(tls, app, certificate, number)
        except (
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            trio.TooSlowError,
            OSError,
        ) as exc:
            logger.debug("%s #%d: connection ended: %r", service, number, exc)
        except Exception:
            self.stats.internal_errors += 1
            logger.exception("%s #%d: unexpected error in a connection handler", service, number)
        finally:
            await trio.aclose_forcefully(transport)

    async def _serve_gateway(
        self,
        tls: TLSStream,
        app: AppConfig | None,
        certificate: x509.Certificate | None,
        number: int,
    ) -> None:
        if self._stopping_clients:
            return
        route: _Route | None = None
        mode = self.config.mode
        ledger: ReplayLedger | None = None
        if app is not None:
            environment = self._environment(app, certificate)
            route = await self._route(app, environment)
            mode = route.mode
            if mode is BridgeMode.EXACT and certificate is not None:
                ledger = self._ledger(f"{app.topic}|{certificate.subject.rfc4514_string()}")
        else:
            logger.warning(
                "gateway #%d: the client certificate (%s) names no configured app; "
                "refusing its notifications with status 3",
                number,
                certificate.subject.rfc4514_string() if certificate else "none",
            )

        async def submit(notification: Notification, entry: Entry) -> None:
            assert app is not None  # without an app, the session submits nothing
            await self._submit(app, environment, notification, entry)

        session = GatewaySession(
            tls,
            number=number,
            settings=route.settings if route is not None else None,
            submit=submit,
            mode=mode,
            ledger=ledger,
            stats=self.gateway,
            payload_limit=self.config.payload_limit,
            max_in_flight=self.config.max_in_flight,
            rewrite_payload=route.rewrite if route is not None else None,
            on_forward=self._forwarded,
        )
        self.gateway.connections += 1
        self._sessions.add(session)
        try:
            await session.run()
        finally:
            self._sessions.discard(session)
            self._sessions_changed.set()
            self._sessions_changed = trio.Event()

    async def _serve_feedback(self, tls: TLSStream, app: AppConfig | None, number: int) -> None:
        if app is None:
            logger.warning("feedback #%d: the client certificate names no configured app", number)
            await close(tls)
            return
        items = self.store.pending(app.topic)
        data = b"".join(encode_feedback_item(ts, token) for ts, token in items)
        if data:
            # A client that stops reading must not hold the connection (or the list)
            # forever; the list stays until a read that completes.
            with trio.fail_after(FEEDBACK_WRITE_LIMIT):
                await tls.send_all(data)
        # Written: cleared, as Apple's list was once read.
        self.store.clear(app.topic, items)
        self.stats.feedback_served += len(items)
        logger.debug("feedback #%d: %d tuples for %s", number, len(items), app.topic)
        await close(tls)

    # -- listening and stopping ----------------------------------------------------------

    async def _listen(
        self,
        handlers: trio.Nursery,
        *,
        task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        config = self.config
        self._context = _context(config)
        gateway = await open_listeners(*config.gateway, "gateway", BridgeListenError)
        try:
            feedback = await open_listeners(*config.feedback, "feedback service", BridgeListenError)
        except BaseException:
            for listener in gateway:
                await trio.aclose_forcefully(listener)
            raise
        self.gateway_address = listener_address(gateway)
        self.feedback_address = listener_address(feedback)
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                for listeners, service in ((gateway, "gateway"), (feedback, "feedback")):
                    await nursery.start(
                        partial(
                            trio.serve_listeners,
                            partial(self._handle, service),
                            listeners,
                            handler_nursery=handlers,
                        )
                    )
                logger.info(
                    "bridge: gateway %s:%d, feedback %s:%d, %d apps",
                    *self.gateway_address,
                    *self.feedback_address,
                    len(config.apps),
                )
                task_status.started(scope)
        for listener in (*gateway, *feedback):
            await trio.aclose_forcefully(listener)

    async def reload(self, config: BridgeConfig) -> list[str]:
        """Apply ``config`` (as SIGHUP does) without dropping a connection.

        New connections get the new apps, modes, limits, server certificate and client
        CA; connections already open keep their mode and limits, and their next
        notifications go through the app's new credentials (the old HTTP/2 sender closes
        once what it has in flight is answered; an app removed from the file answers
        them with status 3). The listen
        addresses, the metrics address and the store cannot change without a restart:
        those stay, and the returned notes say so.

        Returns:
            What changed, one line each (for the log).
        """
        old = self.config
        notes: list[str] = []
        keep = {}
        for name in ("gateway", "feedback", "metrics", "store"):
            if getattr(config, name) != getattr(old, name):
                notes.append(f"{name} needs a restart to change; still {getattr(old, name)}")
                keep[name] = getattr(old, name)
        config = attrs.evolve(config, **keep)
        self._context = _context(config)
        self.config = config
        async with self._route_lock:
            for route in list(self._routes.values()):
                app = config.app(route.topic)
                if app is None or _identity(app, config) != _identity(route.app, old):
                    self._retire(route, "")
                    what = "removed" if app is None else "changed"
                    notes.append(f"app {route.topic} ({route.environment.value}): {what}")
        for app in config.apps:
            if old.app(app.topic) is None:
                notes.append(f"app {app.topic}: added")
            await self._route(app, _default_environment(app))
        return notes

    async def stop(self) -> None:
        """Stop as on SIGTERM: stop accepting connections and reading, wait (at most
        ``drain_timeout``) for what is in flight, send each client status 10 naming its
        last notification that succeeded (or the error frame of its first failure).
        Idempotent; leaving :func:`open_bridge`'s block does it too."""
        self._stopping_clients = True
        if self._listening is not None:
            self._listening.cancel()
        await self._drain()

    async def _drain(self) -> None:
        for session in list(self._sessions):
            session.request_shutdown()
        with trio.move_on_after(self.config.drain_timeout):
            while self._sessions:
                await self._sessions_changed.wait()
        if self._sessions:
            logger.warning(
                "bridge: %d connections still waiting for APNs after %ss; closing them",
                len(self._sessions),
                self.config.drain_timeout,
            )


def _context(config: BridgeConfig) -> SSL.Context:
    return server_context(
        config.server, client_ca=list(config.client_ca), allow_tls13=config.allow_tls13
    )


def _default_environment(app: AppConfig) -> Environment:
    return Environment.PRODUCTION if app.topic.startswith("pass.") else app.environment


def _identity(app: AppConfig, config: BridgeConfig) -> tuple[object, ...]:
    """What makes two configurations of an app the same upstream (keys compare by value)."""
    key = app.provider_key
    return (
        app.topic,
        app.environment,
        config.mode_of(app),
        config.upstream,
        None if key is None else (key.key_id, key.team_id, key.public_key.public_numbers()),
        None
        if app.credentials is None
        else app.credentials.certificate.fingerprint(hashes.SHA256()),
    )


@asynccontextmanager
async def open_bridge(
    config: BridgeConfig, *, store: FeedbackStore | None = None
) -> AsyncIterator[Bridge]:
    """Run the bridge for the ``async with`` block (see the module docstring).

    Args:
        config: the configuration (:func:`load_config` reads it from TOML).
        store: the feedback store; default: ``config.store`` (SQLite), or memory.

    Raises:
        BridgeListenError: a port cannot be opened.
    """
    own_store = store is None
    if store is None:
        store = FeedbackStore(config.store, limit=config.feedback_limit)
    bridge = Bridge(config, store)
    bridge._load_ledgers()
    try:
        async with trio.open_nursery() as upstream:
            bridge._upstream_nursery = upstream
            for app in config.apps:
                await bridge._route(app, _default_environment(app))
            try:
                async with trio.open_nursery() as handlers:
                    bridge._listening = await handlers.start(bridge._listen, handlers)
                    if store.path is not None:
                        await handlers.start(bridge._keep_ledgers)
                    if config.metrics is not None:
                        bridge.metrics_address = await handlers.start(
                            serve_metrics, bridge, *config.metrics
                        )
                    try:
                        yield bridge
                    finally:
                        await bridge.stop()
                        handlers.cancel_scope.cancel()
                        if store.path is not None:
                            bridge.save_ledgers()
            finally:
                bridge._stopping.set()
                for route in [*bridge._routes.values(), *bridge._retired]:
                    route.stop.set()
    except BaseExceptionGroup as group:
        # Connection handlers never raise: a group holds what the body (or opening a
        # listener) raised; give it back unwrapped, as if no nursery were here.
        single: BaseException = group
        while isinstance(single, BaseExceptionGroup) and len(single.exceptions) == 1:
            single = single.exceptions[0]
        if single is not group:
            raise single from None
        raise
    finally:
        if own_store:
            store.close()
