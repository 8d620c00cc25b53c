"""Prometheus metrics and a health check for the bridge, on a separate (loopback) port.

``GET /metrics``: the Prometheus text format (version 0.0.4). ``GET /health``: 200 and
``{"status": "ok"}`` while every app's upstream works, 503 and the reasons while one
fails for the bridge's own configuration (credentials or topic refused by APNs; it
clears with the app's next accepted notification). HTTP/1.1 parsing is ``h11``'s
(python-hyper's sans-IO HTTP/1.1, the sibling of the ``h2`` we already use); one
request per connection, 10 seconds at most.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import logging
from collections.abc import Iterable, Sequence
from functools import partial
from typing import Final, Protocol

import h11
import trio
from cryptography import x509

from ..tls import Environment
from ._config import BridgeConfig
from ._session import SessionStats

logger = logging.getLogger("apns_legacy.bridge")

_REQUEST_LIMIT: Final = 10.0
_CONTENT_TYPE: Final = b"text/plain; version=0.0.4; charset=utf-8"


class _Stats(Protocol):
    @property
    def upstream_by_app(self) -> collections.Counter[tuple[str, str, str]]: ...
    @property
    def alerts(self) -> int: ...


class _Route(Protocol):
    @property
    def topic(self) -> str: ...
    @property
    def environment(self) -> Environment: ...
    def retries(self) -> int: ...
    def pending(self) -> int: ...


class Bridge(Protocol):
    """What the metrics read of a running bridge (``_bridge.Bridge``)."""

    @property
    def config(self) -> BridgeConfig: ...
    @property
    def gateway(self) -> SessionStats: ...
    @property
    def stats(self) -> _Stats: ...
    @property
    def open_sessions(self) -> int: ...
    @property
    def failing(self) -> dict[str, str]: ...
    def routes(self) -> Sequence[_Route]: ...
    def ledger_size(self) -> int: ...
    def feedback_sizes(self) -> dict[str, int]: ...


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(
        self, name: str, kind: str, help_text: str, samples: Iterable[tuple[dict[str, str], float]]
    ) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            if labels:
                text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
                self.lines.append(f"{name}{{{text}}} {value:g}")
            else:
                self.lines.append(f"{name} {value:g}")


def _days_left(certificate: x509.Certificate, now: dt.datetime) -> float:
    return round((certificate.not_valid_after_utc - now).total_seconds() / 86400, 2)


def render_metrics(bridge: Bridge, now: dt.datetime | None = None) -> str:
    """The Prometheus text for ``bridge``."""
    now = now or dt.datetime.now(dt.UTC)
    gateway = bridge.gateway
    stats = bridge.stats
    out = _Writer()
    out.metric(
        "apns_bridge_connections_total",
        "counter",
        "Gateway connections from legacy clients.",
        [({}, gateway.connections)],
    )
    out.metric(
        "apns_bridge_open_connections", "gauge", "Gateway connections open now.",
        [({}, bridge.open_sessions)],
    )  # fmt: skip
    out.metric(
        "apns_bridge_notifications_in_total",
        "counter",
        "Well-formed notifications read from legacy clients.",
        [({}, gateway.notifications)],
    )
    out.metric(
        "apns_bridge_forwarded_total",
        "counter",
        "Notifications sent upstream (replays absorbed by the ledger not counted).",
        [({}, gateway.forwarded)],
    )
    out.metric(
        "apns_bridge_replay_matched_total",
        "counter",
        "Resent notifications the exact-mode ledger recognised (not sent upstream again).",
        [({}, gateway.replay_matched)],
    )
    out.metric(
        "apns_bridge_error_frames_total",
        "counter",
        "Error frames and silent closes for failures, by binary status.",
        [({"status": str(k)}, v) for k, v in sorted(gateway.by_status.items())],
    )
    out.metric(
        "apns_bridge_upstream_outcomes_total",
        "counter",
        "Upstream outcomes by app, outcome and APNs reason.",
        [
            ({"app": app, "outcome": outcome, "reason": reason}, v)
            for (app, outcome, reason), v in sorted(stats.upstream_by_app.items())
        ],
    )
    routes = bridge.routes()
    out.metric(
        "apns_bridge_upstream_retries_total",
        "counter",
        "Notifications written upstream again (transient failures, GOAWAY, lost connections).",
        [({"app": r.topic, "environment": r.environment.value}, r.retries()) for r in routes],
    )
    out.metric(
        "apns_bridge_upstream_in_flight",
        "gauge",
        "Notifications submitted upstream and not answered yet.",
        [({"app": r.topic, "environment": r.environment.value}, r.pending()) for r in routes],
    )
    out.metric(
        "apns_bridge_ledger_entries", "gauge", "Entries waiting in the exact-mode replay ledgers.",
        [({}, bridge.ledger_size())],
    )  # fmt: skip
    sizes = bridge.feedback_sizes()
    out.metric(
        "apns_bridge_feedback_pending",
        "gauge",
        "Tokens waiting in each app's feedback list.",
        [({"app": app.topic}, sizes.get(app.topic, 0)) for app in bridge.config.apps],
    )
    out.metric(
        "apns_bridge_alerts_total",
        "counter",
        "Operator-visible upstream errors (credentials refused, malformed requests).",
        [({}, stats.alerts)],
    )
    expiry: list[tuple[dict[str, str], float]] = [
        ({"what": "server"}, _days_left(bridge.config.server.certificate, now))
    ]
    expiry += [
        ({"what": "client_ca", "subject": ca.subject.rfc4514_string()}, _days_left(ca, now))
        for ca in bridge.config.client_ca
    ]
    expiry += [
        ({"what": "app", "app": app.topic}, _days_left(app.credentials.certificate, now))
        for app in bridge.config.apps
        if app.credentials is not None
    ]
    out.metric(
        "apns_bridge_certificate_expiry_days",
        "gauge",
        "Days until each certificate the bridge uses expires (.p8 keys do not expire).",
        expiry,
    )
    return "\n".join(out.lines) + "\n"


def health(bridge: Bridge) -> tuple[int, dict[str, object]]:
    """The health status code and document."""
    if bridge.failing:
        return 503, {"status": "failing", "apps": dict(bridge.failing)}
    return 200, {"status": "ok", "open_connections": bridge.open_sessions}


async def _serve_one(bridge: Bridge, stream: trio.SocketStream) -> None:
    connection = h11.Connection(h11.SERVER)
    try:
        with trio.move_on_after(_REQUEST_LIMIT):
            request: h11.Request | None = None
            while request is None:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    connection.receive_data(await stream.receive_some(8192))
                elif isinstance(event, h11.Request):
                    request = event
                else:
                    return
            path = request.target.split(b"?")[0]
            if request.method not in (b"GET", b"HEAD"):
                status, body, kind = 405, b"GET only\n", b"text/plain"
            elif path == b"/metrics":
                status, body, kind = 200, render_metrics(bridge).encode(), _CONTENT_TYPE
            elif path in (b"/health", b"/healthz"):
                code, document = health(bridge)
                status, body, kind = code, json.dumps(document).encode(), b"application/json"
            else:
                status, body, kind = 404, b"/metrics or /health\n", b"text/plain"
            headers = [
                (b"content-type", kind),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ]
            data = connection.send(h11.Response(status_code=status, headers=headers))
            if request.method != b"HEAD":
                data += connection.send(h11.Data(data=body))
            data += connection.send(h11.EndOfMessage())
            await stream.send_all(data)
    except (h11.RemoteProtocolError, trio.BrokenResourceError, OSError) as exc:
        logger.debug("metrics: %r", exc)
    finally:
        await trio.aclose_forcefully(stream)


async def serve_metrics(
    bridge: Bridge,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``/metrics`` and ``/health`` on ``host:port`` until cancelled."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound_host, bound_port, *_ = listeners[0].socket.getsockname()
    task_status.started((str(bound_host), int(bound_port)))
    await trio.serve_listeners(partial(_serve_one, bridge), listeners)
