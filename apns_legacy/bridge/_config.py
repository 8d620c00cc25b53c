"""The bridge's configuration: the TOML file (``apns-legacy bridge --config FILE``) and
the values it becomes.

The file has a ``[bridge]`` table (listen addresses, the bridge's own TLS identity, the
CA legacy client certificates must chain to, the replay mode, the SQLite store), an
optional ``[upstream]`` table (where the HTTP/2 provider API is: Apple by default, a
simulator in tests) and one ``[[app]]`` table per topic with that topic's upstream
credentials: a ``.p8`` signing key (token auth) or a certificate (certificate auth).
Relative paths are read relative to the configuration file's folder. Every error is
one line naming the field (``[[app]] 2 auth_key: ...``), raised as
:class:`BridgeConfigError` before anything listens.
"""

from __future__ import annotations

import enum
import functools
import os
import ssl
import tomllib
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import attrs
from cryptography import x509

from ..h2wire import ProviderKey
from ..tls import Credentials, CredentialsError, Environment, read_pem_certificates
from ..wire import PAYLOAD_LIMIT, ProtocolError

#: Apple's HTTP/2 hosts per environment.
PRODUCTION_HOST: Final = "api.push.apple.com"
SANDBOX_HOST: Final = "api.sandbox.push.apple.com"


_END_CERTIFICATE: Final = b"-----END CERTIFICATE-----"


@functools.cache
def system_roots() -> bytes:
    """The system's default CA bundle as PEM (empty when there is no bundle file).

    Only certificates that ``cryptography`` parses without complaint are kept: system
    bundles carry a few old roots (a negative serial number, say) that it warns about
    today and will refuse in a future release, and one of them must not make the whole
    bundle unreadable."""
    paths = ssl.get_default_verify_paths()
    for name in (paths.cafile, paths.openssl_cafile):
        if name and os.path.isfile(name):
            with open(name, "rb") as file:
                data = file.read()
            break
    else:
        return b""
    kept: list[bytes] = []
    for block in data.split(_END_CERTIFICATE)[:-1]:
        start = block.find(b"-----BEGIN CERTIFICATE-----")
        if start < 0:
            continue
        pem = block[start:] + _END_CERTIFICATE + b"\n"
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                x509.load_pem_x509_certificate(pem)
            except (ValueError, Warning):
                continue
        kept.append(pem)
    return b"".join(kept)


class BridgeConfigError(ValueError):
    """A bad configuration: one line naming the field and what is wrong."""


class BridgeMode(enum.Enum):
    """How upstream rejections reach the legacy client (README "Bridge", HTTP2.md §6)."""

    #: Error frames exactly as Apple's gateway would have sent them, replays absorbed
    #: by the per-client ledger so that Apple gets each notification once.
    EXACT = "exact"
    #: No error frames for upstream rejections; BadDeviceToken goes to feedback.
    FEEDBACK_ONLY = "feedback-only"
    #: One notification in flight per client connection: exact without a ledger.
    SERIAL = "serial"


def _host_port(text: str, field: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise BridgeConfigError(f"{field}: expected HOST:PORT, not {text!r}")
    host = host.strip("[]")
    try:
        number = int(port)
    except ValueError:
        raise BridgeConfigError(f"{field}: port {port!r} is not a number") from None
    if not 0 <= number <= 65535:
        raise BridgeConfigError(f"{field}: port {number} is outside 0..65535")
    return host, number


@attrs.frozen(kw_only=True)
class AppConfig:
    """One app (topic) and its upstream credentials.

    Exactly one of ``provider_key`` (token auth) and ``credentials`` (certificate
    auth) is set. ``environment`` is where notifications go when the client
    certificate does not say (a universal certificate); Wallet pass topics
    (``pass.*``) always go to production.
    """

    topic: str
    provider_key: ProviderKey | None = None
    credentials: Credentials | None = attrs.field(default=None, repr=False)
    environment: Environment = Environment.PRODUCTION
    mode: BridgeMode | None = None

    def __attrs_post_init__(self) -> None:
        if (self.provider_key is None) == (self.credentials is None):
            raise BridgeConfigError(
                f"app {self.topic}: give exactly one of auth_key (token auth) and cert"
            )


@attrs.frozen(kw_only=True)
class UpstreamConfig:
    """Where the HTTP/2 provider API is. ``host`` None: Apple's host for the environment."""

    host: str | None = None
    port: int = 443
    #: Extra trust anchors (PEM bytes), for a simulator or a TLS-inspecting proxy.
    ca: bytes | None = attrs.field(default=None, repr=False)
    #: With ``ca``, trust the system's roots too (``ca`` is *extra*); False: only ``ca``.
    system_roots: bool = True
    #: The name the server certificate is checked against (default ``host``).
    server_hostname: str | None = None
    #: HTTP/2 connections per app and environment.
    connections: int = 1
    #: Tries of one notification on transient failures (429, 500, 503, GOAWAY, ...)
    #: before it is given up (status 1 to the client).
    max_attempts: int = 8
    #: First back-off between tries, doubled each time, at most ``max_retry_delay``.
    retry_delay: float = 0.1
    max_retry_delay: float = 5.0

    def trust(self) -> bytes | None:
        """The PEM trust anchors for the upstream connection; ``None``: the system's."""
        if self.ca is None:
            return None
        if not self.system_roots:
            return self.ca
        return self.ca + b"\n" + system_roots()

    def host_for(self, environment: Environment) -> str:
        if self.host is not None:
            return self.host
        return SANDBOX_HOST if environment is Environment.SANDBOX else PRODUCTION_HOST


def _certificates(values: Iterable[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    return tuple(values)


def _apps(values: Iterable[AppConfig]) -> tuple[AppConfig, ...]:
    return tuple(values)


@attrs.frozen(kw_only=True)
class BridgeConfig:
    """Everything the bridge needs, loaded (see :func:`load_config` for the file)."""

    gateway: tuple[str, int] = ("0.0.0.0", 2195)
    feedback: tuple[str, int] = ("0.0.0.0", 2196)
    server: Credentials = attrs.field(repr=False)
    client_ca: tuple[x509.Certificate, ...] = attrs.field(converter=_certificates, repr=False)
    mode: BridgeMode = BridgeMode.EXACT
    #: The SQLite file for the feedback lists; ``None`` keeps them in memory only.
    store: Path | None = None
    apps: tuple[AppConfig, ...] = attrs.field(converter=_apps, factory=tuple)
    upstream: UpstreamConfig = attrs.field(factory=UpstreamConfig)
    #: Largest payload a legacy client may send (2048 as on Apple's binary gateway).
    payload_limit: int = PAYLOAD_LIMIT
    #: Notifications forwarded and unanswered per client connection; a client that
    #: sends faster is slowed by TCP back-pressure.
    max_in_flight: int = 1000
    #: How long (seconds) the exact mode keeps what it forwarded after a reported
    #: failure, waiting for the client's replay.
    ledger_ttl: float = 60.0
    #: Most entries kept per client identity in that ledger.
    ledger_size: int = 10_000
    #: Most tokens kept per app in the feedback list (the oldest go first).
    feedback_limit: int = 1_000_000
    #: How long a stopping bridge waits for answers from upstream (status 10 drain).
    drain_timeout: float = 30.0
    #: TLS handshake deadline for legacy clients.
    handshake_timeout: float = 10.0
    #: Offer TLS 1.3 to legacy clients (Apple's binary gateway stopped at 1.2).
    allow_tls13: bool = False
    #: ``(host, port)`` for Prometheus ``/metrics`` and ``/health``; ``None``: off.
    metrics: tuple[str, int] | None = None

    def __attrs_post_init__(self) -> None:
        if not self.client_ca:
            raise BridgeConfigError("bridge.client_ca: needs at least one CA certificate")
        topics = [app.topic for app in self.apps]
        for topic in topics:
            if topics.count(topic) > 1:
                raise BridgeConfigError(f"app {topic}: configured twice")
        for name in ("max_in_flight", "ledger_size", "feedback_limit"):
            if getattr(self, name) < 1:
                raise BridgeConfigError(f"bridge.{name}: must be >= 1")
        for name in ("ledger_ttl", "drain_timeout", "handshake_timeout"):
            if not getattr(self, name) > 0:
                raise BridgeConfigError(f"bridge.{name}: must be > 0")
        if not 1 <= self.payload_limit <= 4096:
            raise BridgeConfigError(
                f"bridge.payload_limit: {self.payload_limit} is outside 1..4096"
            )

    def app(self, topic: str) -> AppConfig | None:
        for app in self.apps:
            if app.topic == topic:
                return app
        return None

    def mode_of(self, app: AppConfig) -> BridgeMode:
        return app.mode if app.mode is not None else self.mode


# -- reading the file ----------------------------------------------------------------

_BRIDGE_KEYS: Final = frozenset(
    {
        "gateway",
        "feedback",
        "server_cert",
        "server_key",
        "server_passphrase_env",
        "client_ca",
        "mode",
        "store",
        "payload_limit",
        "max_in_flight",
        "ledger_ttl",
        "ledger_size",
        "feedback_limit",
        "drain_timeout",
        "handshake_timeout",
        "allow_tls13",
        "metrics",
    }
)
_UPSTREAM_KEYS: Final = frozenset(
    {
        "host",
        "port",
        "ca",
        "server_hostname",
        "connections",
        "max_attempts",
        "retry_delay",
        "max_retry_delay",
        "system_roots",
    }
)
_APP_KEYS: Final = frozenset(
    {
        "topic",
        "auth_key",
        "auth_key_env",
        "key_id",
        "team_id",
        "cert",
        "key",
        "passphrase_env",
        "environment",
        "mode",
    }
)


class _Table:
    """One TOML table with typed getters whose errors name ``where.key``."""

    def __init__(self, data: Any, where: str, keys: frozenset[str], base: Path) -> None:
        if not isinstance(data, dict):
            raise BridgeConfigError(f"{where}: must be a table")
        unknown = sorted(set(data) - keys)
        if unknown:
            raise BridgeConfigError(
                f"{where}.{unknown[0]}: unknown setting (known: {', '.join(sorted(keys))})"
            )
        self.data: dict[str, Any] = data
        self.where = where
        self.base = base

    def name(self, key: str) -> str:
        return f"{self.where}.{key}"

    def text(self, key: str, default: str | None = None) -> str | None:
        value = self.data.get(key, default)
        if value is not None and not isinstance(value, str):
            raise BridgeConfigError(f"{self.name(key)}: must be a string, not {value!r}")
        return value

    def required(self, key: str) -> str:
        value = self.text(key)
        if not value:
            raise BridgeConfigError(f"{self.name(key)}: required")
        return value

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.data.get(key, default)
        if type(value) is not int or not low <= value <= high:
            raise BridgeConfigError(f"{self.name(key)}: must be a whole number {low}..{high}")
        return value

    def number(self, key: str, default: float) -> float:
        value = self.data.get(key, default)
        if type(value) not in (int, float) or not value > 0:
            raise BridgeConfigError(f"{self.name(key)}: must be a number > 0, not {value!r}")
        return float(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if type(value) is not bool:
            raise BridgeConfigError(f"{self.name(key)}: must be true or false")
        return value

    def path(self, key: str) -> Path | None:
        value = self.text(key)
        if value is None:
            return None
        return self.base / Path(value).expanduser()

    def read(self, key: str) -> bytes:
        path = self.path(key)
        if path is None:
            raise BridgeConfigError(f"{self.name(key)}: required")
        try:
            return path.read_bytes()
        except OSError as exc:
            raise BridgeConfigError(
                f"{self.name(key)}: cannot read {path} ({exc.strerror or exc})"
            ) from None

    def env(self, key: str, environ: Mapping[str, str]) -> bytes | None:
        variable = self.text(key)
        if variable is None:
            return None
        if variable not in environ:
            raise BridgeConfigError(f"{self.name(key)}: environment variable {variable} is not set")
        return environ[variable].encode()


def _mode(text: str | None, field: str) -> BridgeMode | None:
    if text is None:
        return None
    try:
        return BridgeMode(text)
    except ValueError:
        choices = " | ".join(m.value for m in BridgeMode)
        raise BridgeConfigError(f"{field}: {text!r} is not a mode ({choices})") from None


def _app(table: _Table, environ: Mapping[str, str]) -> AppConfig:
    topic = table.required("topic")
    environment_text = table.text("environment", "production")
    try:
        environment = Environment(environment_text)
    except ValueError:
        raise BridgeConfigError(
            f"{table.name('environment')}: {environment_text!r} is not production or sandbox"
        ) from None
    mode = _mode(table.text("mode"), table.name("mode"))
    has_key = "auth_key" in table.data or "auth_key_env" in table.data
    if has_key == ("cert" in table.data):
        raise BridgeConfigError(
            f"{table.where}: give exactly one of auth_key (token auth) and cert (certificate auth)"
        )
    if has_key:
        if "auth_key" in table.data:
            data = table.read("auth_key")
            field = table.name("auth_key")
        else:
            data = table.env("auth_key_env", environ) or b""
            field = table.name("auth_key_env")
        try:
            key = ProviderKey.from_p8(
                data, key_id=table.required("key_id"), team_id=table.required("team_id")
            )
        except ProtocolError as exc:
            raise BridgeConfigError(f"{field}: {exc}") from None
        return AppConfig(topic=topic, provider_key=key, environment=environment, mode=mode)
    cert_path = table.path("cert")
    key_path = table.path("key")
    assert cert_path is not None
    try:
        credentials = Credentials.load(
            cert_path, key_path, passphrase=table.env("passphrase_env", environ)
        )
    except CredentialsError as exc:
        raise BridgeConfigError(f"{table.name('cert')}: {exc}") from None
    except OSError as exc:
        raise BridgeConfigError(f"{table.name('cert')}: {exc.strerror or exc}") from None
    return AppConfig(topic=topic, credentials=credentials, environment=environment, mode=mode)


def parse_config(
    document: Mapping[str, Any], *, base: Path, environ: Mapping[str, str] | None = None
) -> BridgeConfig:
    """The :class:`BridgeConfig` of a parsed TOML document; paths relative to ``base``.

    Raises:
        BridgeConfigError: a field is missing, of the wrong type, or its file cannot be
            read or parsed (the message names the field).
    """
    environ = os.environ if environ is None else environ
    unknown = sorted(set(document) - {"bridge", "upstream", "app"})
    if unknown:
        raise BridgeConfigError(f"{unknown[0]}: unknown table (known: bridge, upstream, app)")
    bridge = _Table(document.get("bridge"), "bridge", _BRIDGE_KEYS, base)
    upstream_table = _Table(document.get("upstream", {}), "upstream", _UPSTREAM_KEYS, base)
    apps_data = document.get("app", [])
    if not isinstance(apps_data, list) or not apps_data:
        raise BridgeConfigError("app: at least one [[app]] table is required")

    server_cert = bridge.required("server_cert")
    try:
        server = Credentials.load(
            bridge.path("server_cert") or Path(server_cert),
            bridge.path("server_key"),
            passphrase=bridge.env("server_passphrase_env", environ),
        )
    except CredentialsError as exc:
        raise BridgeConfigError(f"bridge.server_cert: {exc}") from None
    except OSError as exc:
        raise BridgeConfigError(f"bridge.server_cert: {exc.strerror or exc}") from None
    bridge.required("client_ca")
    try:
        client_ca = read_pem_certificates(str(bridge.path("client_ca")), "client CA")
    except CredentialsError as exc:
        raise BridgeConfigError(f"bridge.client_ca: {exc}") from None
    except OSError as exc:
        raise BridgeConfigError(f"bridge.client_ca: {exc.strerror or exc}") from None

    ca = upstream_table.read("ca") if "ca" in upstream_table.data else None
    if ca is not None and b"-----BEGIN CERTIFICATE" not in ca:
        raise BridgeConfigError("upstream.ca: holds no PEM certificate")
    upstream = UpstreamConfig(
        host=upstream_table.text("host"),
        port=upstream_table.integer("port", 443, 1, 65535),
        ca=ca,
        server_hostname=upstream_table.text("server_hostname"),
        connections=upstream_table.integer("connections", 1, 1, 64),
        max_attempts=upstream_table.integer("max_attempts", 8, 1, 100),
        retry_delay=upstream_table.number("retry_delay", 0.1),
        max_retry_delay=upstream_table.number("max_retry_delay", 5.0),
        system_roots=upstream_table.flag("system_roots", True),
    )
    apps = [
        _app(_Table(data, f"[[app]] {index}", _APP_KEYS, base), environ)
        for index, data in enumerate(apps_data, 1)
    ]
    store = bridge.path("store")
    return BridgeConfig(
        gateway=_host_port(bridge.text("gateway", "0.0.0.0:2195") or "", "bridge.gateway"),
        feedback=_host_port(bridge.text("feedback", "0.0.0.0:2196") or "", "bridge.feedback"),
        server=server,
        client_ca=client_ca,
        mode=_mode(bridge.text("mode", "exact"), "bridge.mode") or BridgeMode.EXACT,
        store=store,
        apps=apps,
        upstream=upstream,
        payload_limit=bridge.integer("payload_limit", PAYLOAD_LIMIT, 1, 4096),
        max_in_flight=bridge.integer("max_in_flight", 1000, 1, 1_000_000),
        ledger_ttl=bridge.number("ledger_ttl", 60.0),
        ledger_size=bridge.integer("ledger_size", 10_000, 1, 10_000_000),
        feedback_limit=bridge.integer("feedback_limit", 1_000_000, 1, 100_000_000),
        drain_timeout=bridge.number("drain_timeout", 30.0),
        handshake_timeout=bridge.number("handshake_timeout", 10.0),
        allow_tls13=bridge.flag("allow_tls13", False),
        metrics=(
            _host_port(bridge.text("metrics") or "", "bridge.metrics")
            if "metrics" in bridge.data
            else None
        ),
    )


def load_config(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> BridgeConfig:
    """Read the bridge's TOML configuration file (see the README, "Bridge").

    Raises:
        BridgeConfigError: the file cannot be read, is not TOML, or a field is wrong
            (one line naming it).
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise BridgeConfigError(f"{file}: cannot read ({reason or exc})") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BridgeConfigError(f"{file}: not TOML: {exc}") from None
    return parse_config(document, base=file.resolve().parent, environ=environ)


def app_topics(apps: Sequence[AppConfig]) -> frozenset[str]:
    """The configured topics."""
    return frozenset(app.topic for app in apps)
