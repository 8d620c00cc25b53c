"""The issuer's configuration file (TOML) for ``apns-legacy wallet serve/update/...``.

Example (every relative path is relative to the file's own folder)::

    pass_type_id = "pass.com.example.card"
    store = "wallet.db"             # SQLite; may be the token store's file
    passes = "passes"               # one pass directory per serial number
    cert = "pass.p12"               # Pass Type ID certificate: .p12, or PEM (+ key)
    # key = "pass-key.pem"
    passphrase_env = "PASS_P12_PASSPHRASE"
    wwdr = "AppleWWDRCAG4.cer"      # Apple's WWDR intermediate (PEM or DER)
    listen = "127.0.0.1:8080"       # default 127.0.0.1:0 (a free port)
    base_path = ""                  # the path part of webServiceURL, if any
    # tls_cert = "web.pem"          # serve HTTPS (PEM chain); with tls_key, and
    # tls_key = "web-key.pem"       # tls_passphrase_env if that key is encrypted

    [push]
    route = "binary"                # "binary" (the default), "http2" or "bridge"
    host = "gateway.push.apple.com" # default: Apple's production gateway
    port = 2195
    feedback_host = "feedback.push.apple.com"  # the default (wallet feedback)
    feedback_port = 2196
    # ca = "gateway-ca.pem"         # trust anchors (default: the system store)
    expiry = 86400                  # seconds an offline device's push is kept

Keys by route (``route``, ``host``, ``port``, ``ca`` and ``expiry`` everywhere):

* ``binary``: ``feedback_host``, ``feedback_port``; host and port default to Apple's
  production gateway (2195) and feedback service (2196).
* ``http2``: host and port default to ``api.push.apple.com:443``; ``auth_key``,
  ``key_id`` and ``team_id`` (all three: token auth with that ``.p8`` key; none:
  certificate auth with the pass certificate), ``priority`` (10, 5 or 1; default 5),
  ``connections`` (default 1).
* ``bridge``: the binary route pointed at ``apns-legacy bridge``: ``host`` is
  required, ``port`` defaults to 2195, ``feedback_host`` to ``host`` and
  ``feedback_port`` to 2196; ``cert`` (with ``key``, ``passphrase_env``) is the client
  certificate the bridge expects, when it is not the pass certificate.

Unknown keys, and keys of another route, are refused (a typo must not silently fall
back to a default).
"""

from __future__ import annotations

import os
import ssl
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from ..client import PRODUCTION_FEEDBACK, PRODUCTION_GATEWAY, PRODUCTION_HOST
from ..h2wire import ProviderKey
from ..tls import Credentials, CredentialsError, WrongPassphraseError, certificate_topic
from ..wire import LocalProtocolError
from ._pkpass import PassError, PassSigner, load_wwdr
from ._tls import WebTLS
from ._update import DEFAULT_PUSH_EXPIRY, BinaryGateway, Http2Gateway

#: Push routes the configuration accepts.
ROUTES: Final = ("binary", "http2", "bridge")
_TOP_KEYS: Final = frozenset(
    {
        "pass_type_id",
        "store",
        "passes",
        "cert",
        "key",
        "passphrase_env",
        "wwdr",
        "listen",
        "base_path",
        "tls_cert",
        "tls_key",
        "tls_passphrase_env",
        "push",
    }
)
_COMMON_PUSH_KEYS: Final = frozenset({"route", "host", "port", "ca", "expiry"})
#: The [push] keys each route takes beyond the common ones.
_ROUTE_KEYS: Final = {
    "binary": frozenset({"feedback_host", "feedback_port"}),
    "http2": frozenset({"auth_key", "key_id", "team_id", "priority", "connections"}),
    "bridge": frozenset({"feedback_host", "feedback_port", "cert", "key", "passphrase_env"}),
}
_PUSH_KEYS: Final = _COMMON_PUSH_KEYS.union(*_ROUTE_KEYS.values())
#: The bridge's ports (the binary protocol's).
_BRIDGE_PORTS: Final = (2195, 2196)


class ConfigError(ValueError):
    """The configuration file cannot be used; one line naming the file and the key."""


def _string(table: Mapping[str, Any], key: str, label: str, *, default: str | None = None) -> str:
    value = table.get(key, default)
    if value is None:
        raise ConfigError(f"{label}: {key} is missing")
    if not isinstance(value, str) or (not value and default is None):
        raise ConfigError(f"{label}: {key} must be a non-empty string, not {value!r}")
    return value


def _optional_string(table: Mapping[str, Any], key: str, label: str) -> str | None:
    """``table[key]`` checked as :func:`_string` does, or None when it is not given."""
    return None if key not in table else _string(table, key, label)


def _integer(
    table: Mapping[str, Any], key: str, label: str, low: int, high: int, default: int
) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{label}: {key} must be an integer from {low} to {high}, not {value!r}")
    return value


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) as ``(host, port)``.

    Raises:
        ValueError: no port, or a port outside 0..65535.
    """
    host, colon, port_text = text.rpartition(":")
    if not colon or not host or not port_text.isdigit():
        raise ValueError(f"listen must be HOST:PORT, not {text!r}")
    port = int(port_text)
    if port > 0xFFFF:
        raise ValueError(f"listen port must be 0 to 65535, not {port}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port


@attrs.frozen(kw_only=True)
class WalletConfig:
    """A checked configuration; paths are absolute. Build it with :meth:`load`."""

    path: Path
    pass_type_id: str
    store: Path
    passes: Path
    cert: Path
    key: Path | None
    passphrase_env: str | None
    wwdr: Path
    host: str = "127.0.0.1"
    port: int = 0
    base_path: str = ""
    route: str = "binary"
    gateway_host: str = PRODUCTION_GATEWAY[0]
    gateway_port: int = PRODUCTION_GATEWAY[1]
    feedback_host: str = PRODUCTION_FEEDBACK[0]
    feedback_port: int = PRODUCTION_FEEDBACK[1]
    gateway_ca: Path | None = None
    expiry: int = DEFAULT_PUSH_EXPIRY
    #: http2: the .p8 key, its key id and team id (token auth); None: certificate auth.
    auth_key: Path | None = None
    key_id: str | None = None
    team_id: str | None = None
    #: http2: apns-priority (None: 5).
    priority: int | None = None
    #: http2: connections.
    connections: int = 1
    #: bridge: the client certificate the bridge expects (None: the pass certificate).
    push_cert: Path | None = None
    push_key: Path | None = None
    push_passphrase_env: str | None = None
    #: serve: HTTPS with this certificate chain and key (PEM files); None: plain HTTP.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_passphrase_env: str | None = None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> WalletConfig:
        """Read and check a TOML configuration file.

        Raises:
            ConfigError: unreadable, not TOML, a missing or invalid key, an unknown
                key, or a push route that does not exist (yet).
        """
        file = Path(path)
        label = str(file)
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{label}: cannot read ({exc.strerror})") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{label}: not UTF-8 (byte {exc.start})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{label}: not valid TOML ({exc})") from None
        unknown = sorted(set(data) - _TOP_KEYS)
        if unknown:
            raise ConfigError(f"{label}: unknown key {unknown[0]!r}")
        push = data.get("push", {})
        if not isinstance(push, dict):
            raise ConfigError(f"{label}: push must be a table ([push])")
        unknown = sorted(set(push) - _PUSH_KEYS)
        if unknown:
            raise ConfigError(f"{label}: unknown key push.{unknown[0]}")
        folder = file.resolve().parent

        def required(key: str) -> Path:
            return folder / _string(data, key, label)

        def optional(key: str, table: Mapping[str, Any], where: str) -> Path | None:
            return None if table.get(key) is None else folder / _string(table, key, where)

        where = f"{label}: push"
        route = _string(push, "route", where, default="binary")
        if route not in ROUTES:
            raise ConfigError(
                f"{label}: push.route must be 'binary', 'http2' or 'bridge', not {route!r}"
            )
        foreign = sorted(set(push) - _COMMON_PUSH_KEYS - _ROUTE_KEYS[route])
        if foreign:
            users = [name for name, keys in _ROUTE_KEYS.items() if foreign[0] in keys]
            raise ConfigError(
                f"{label}: push.{foreign[0]} is for route {' or '.join(map(repr, users))}, "
                f"not {route!r}"
            )
        if route == "binary":
            default_host, default_port = PRODUCTION_GATEWAY
            default_feedback = PRODUCTION_FEEDBACK
        elif route == "http2":
            default_host, default_port = PRODUCTION_HOST, 443
            default_feedback = PRODUCTION_FEEDBACK  # unused: HTTP/2 has no feedback service
        else:
            if "host" not in push:
                raise ConfigError(
                    f"{label}: push.host is required for route 'bridge' (its address)"
                )
            default_host, default_port = _string(push, "host", where), _BRIDGE_PORTS[0]
            default_feedback = (default_host, _BRIDGE_PORTS[1])
        token_keys = [key for key in ("auth_key", "key_id", "team_id") if key in push]
        if token_keys and len(token_keys) != 3:
            missing = next(k for k in ("auth_key", "key_id", "team_id") if k not in push)
            raise ConfigError(
                f"{label}: push.{missing} is missing (token auth needs auth_key, key_id and "
                "team_id; leave all three out for certificate auth)"
            )
        for key in ("key_id", "team_id"):
            value = push.get(key)
            if value is not None and not (
                isinstance(value, str) and value and value.isascii() and value.isalnum()
            ):
                raise ConfigError(
                    f"{label}: push.{key} must be ASCII letters and digits (Apple's are 10), "
                    f"not {value!r}"
                )
        priority = push.get("priority")
        if priority is not None and (
            isinstance(priority, bool)
            or not isinstance(priority, int)
            or priority not in (10, 5, 1)
        ):
            raise ConfigError(f"{label}: push.priority must be 10, 5 or 1, not {priority!r}")
        if "key" in push and "cert" not in push:
            raise ConfigError(f"{label}: push.key is given without push.cert")
        push_passphrase_env = _optional_string(push, "passphrase_env", where)
        try:
            host, port = parse_listen(_string(data, "listen", label, default="127.0.0.1:0"))
        except ValueError as exc:
            raise ConfigError(f"{label}: {exc}") from None
        base_path = _string(data, "base_path", label, default="")
        if base_path and not base_path.startswith("/"):
            raise ConfigError(f"{label}: base_path must start with '/', not {base_path!r}")
        passphrase_env = _optional_string(data, "passphrase_env", label)
        if ("tls_cert" in data) != ("tls_key" in data):
            given, missing = (
                ("tls_cert", "tls_key")
                if "tls_cert" in data
                else (
                    "tls_key",
                    "tls_cert",
                )
            )
            raise ConfigError(f"{label}: {given} is given without {missing} (HTTPS needs both)")
        if "tls_passphrase_env" in data and "tls_key" not in data:
            raise ConfigError(f"{label}: tls_passphrase_env is given without tls_key")
        tls_passphrase_env = _optional_string(data, "tls_passphrase_env", label)
        return cls(
            path=file,
            pass_type_id=_string(data, "pass_type_id", label),
            store=required("store"),
            passes=required("passes"),
            cert=required("cert"),
            key=optional("key", data, label),
            passphrase_env=passphrase_env,
            wwdr=required("wwdr"),
            host=host,
            port=port,
            base_path=base_path.rstrip("/"),
            route=route,
            gateway_host=_string(push, "host", where, default=default_host),
            gateway_port=_integer(push, "port", where, 1, 0xFFFF, default_port),
            feedback_host=_string(push, "feedback_host", where, default=default_feedback[0]),
            feedback_port=_integer(push, "feedback_port", where, 1, 0xFFFF, default_feedback[1]),
            gateway_ca=optional("ca", push, where),
            expiry=_integer(push, "expiry", where, 0, 30 * 24 * 3600, DEFAULT_PUSH_EXPIRY),
            auth_key=optional("auth_key", push, where),
            key_id=_string(push, "key_id", where) if token_keys else None,
            team_id=_string(push, "team_id", where) if token_keys else None,
            priority=priority,
            connections=_integer(push, "connections", where, 1, 100, 1),
            push_cert=optional("cert", push, where),
            push_key=optional("key", push, where),
            push_passphrase_env=push_passphrase_env,
            tls_cert=optional("tls_cert", data, label),
            tls_key=optional("tls_key", data, label),
            tls_passphrase_env=tls_passphrase_env,
        )

    def web_tls(self, environ: Mapping[str, str] | None = None) -> WebTLS | None:
        """The web service's HTTPS settings, checked by loading them once (None: HTTP).

        The files are read where they are (Hypercorn loads them with the standard
        library's ``ssl``); nothing is written, and an encrypted key stays encrypted on
        disk, its passphrase taken from ``tls_passphrase_env``.

        Raises:
            ConfigError: the variable is not set, or the files are not a usable PEM
                certificate chain and matching key.
        """
        if self.tls_cert is None or self.tls_key is None:
            return None
        passphrase = self._passphrase(
            self.tls_passphrase_env, "tls_", os.environ if environ is None else environ
        )
        tls = WebTLS(cert=self.tls_cert, key=self.tls_key, passphrase=passphrase)
        try:
            tls.context()
        except (OSError, ssl.SSLError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ConfigError(f"{self.path}: tls_cert/tls_key: cannot be used ({why})") from None
        return tls

    def signer(self, environ: Mapping[str, str] | None = None) -> PassSigner:
        """Load the pass certificate and WWDR certificate, checked against ``pass_type_id``.

        Args:
            environ: where ``passphrase_env`` is looked up (default ``os.environ``).

        Raises:
            ConfigError: the variable is not set, the credentials or WWDR certificate
                cannot be used, or the certificate is for another pass type.
        """
        credentials = self._credentials(
            self.cert, self.key, self.passphrase_env, "", os.environ if environ is None else environ
        )
        try:
            signer = PassSigner.create(credentials, load_wwdr(self.wwdr))
        except PassError as exc:
            raise ConfigError(f"{self.path}: {exc}") from None
        if signer.pass_type_id != self.pass_type_id:
            raise ConfigError(
                f"{self.path}: pass_type_id {self.pass_type_id!r} is not the certificate's "
                f"({signer.pass_type_id!r})"
            )
        return signer

    def _credentials(
        self,
        cert: Path,
        key: Path | None,
        passphrase_env: str | None,
        prefix: str,
        environ: Mapping[str, str],
    ) -> Credentials:
        text = self._passphrase(passphrase_env, prefix, environ)
        passphrase = None if text is None else text.encode("utf-8")
        try:
            return Credentials.load(cert, key, passphrase=passphrase)
        except WrongPassphraseError as exc:
            hint = "" if passphrase is not None else f" (set {prefix}passphrase_env)"
            raise ConfigError(f"{self.path}: {prefix}cert: {exc}{hint}") from None
        except CredentialsError as exc:
            raise ConfigError(f"{self.path}: {prefix}cert: {exc}") from None

    def _passphrase(
        self, variable: str | None, prefix: str, environ: Mapping[str, str]
    ) -> str | None:
        """The passphrase from the environment variable ``{prefix}passphrase_env`` names
        (None without one); a variable that is not set is a one-line error."""
        if variable is None:
            return None
        value = environ.get(variable)
        if value is None:
            raise ConfigError(
                f"{self.path}: {prefix}passphrase_env: the environment variable {variable} "
                "is not set"
            )
        return value

    def route_for_push(
        self, environ: Mapping[str, str] | None = None
    ) -> BinaryGateway | Http2Gateway:
        """Where ``wallet update`` pushes, by ``push.route``: the binary gateway, Apple's
        HTTP/2 API, or the bridge (the binary route at the bridge's address).

        Args:
            environ: where ``push.passphrase_env`` is looked up (default ``os.environ``).

        Raises:
            ConfigError: the ``.p8`` key or the bridge's client certificate cannot be
                used (the message names the key in [push]).
        """
        ca = None if self.gateway_ca is None else str(self.gateway_ca)
        if self.route == "http2":
            provider_key = None
            if self.auth_key is not None:
                assert self.key_id is not None
                assert self.team_id is not None
                try:
                    data = self.auth_key.read_bytes()
                except OSError as exc:
                    raise ConfigError(
                        f"{self.path}: push.auth_key: cannot read {self.auth_key} ({exc.strerror})"
                    ) from None
                try:
                    provider_key = ProviderKey.from_p8(
                        data, key_id=self.key_id, team_id=self.team_id
                    )
                except LocalProtocolError as exc:
                    raise ConfigError(f"{self.path}: push.auth_key: {exc}") from None
            return Http2Gateway(
                host=self.gateway_host,
                port=self.gateway_port,
                ca=ca,
                provider_key=provider_key,
                priority=self.priority,
                expiry=self.expiry,
                connections=self.connections,
            )
        credentials = None
        if self.push_cert is not None:
            environ = os.environ if environ is None else environ
            credentials = self._credentials(
                self.push_cert, self.push_key, self.push_passphrase_env, "push.", environ
            )
            topic = certificate_topic(credentials.certificate)
            if topic != self.pass_type_id:
                raise ConfigError(
                    f"{self.path}: push.cert: its topic {topic!r} is not pass_type_id "
                    f"{self.pass_type_id!r} (the bridge routes by the client certificate's topic)"
                )
        return BinaryGateway(
            host=self.gateway_host,
            port=self.gateway_port,
            feedback_host=self.feedback_host,
            feedback_port=self.feedback_port,
            ca=ca,
            expiry=self.expiry,
            credentials=credentials,
        )
