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

    [push]
    route = "binary"                # the only route so far
    host = "gateway.push.apple.com" # default: Apple's production gateway
    port = 2195
    feedback_host = "feedback.push.apple.com"  # the default (wallet feedback)
    feedback_port = 2196
    # ca = "gateway-ca.pem"         # trust anchors (default: the system store)
    expiry = 86400                  # seconds an offline device's push is kept

Unknown keys are refused (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from ..client import PRODUCTION_FEEDBACK, PRODUCTION_GATEWAY
from ..tls import Credentials, CredentialsError, WrongPassphraseError
from ._pkpass import PassError, PassSigner, load_wwdr
from ._update import DEFAULT_PUSH_EXPIRY, BinaryGateway

#: Push routes the configuration accepts, and the ones planned but not built yet.
ROUTES: Final = ("binary",)
PLANNED_ROUTES: Final = ("http2", "bridge")
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
        "push",
    }
)
_PUSH_KEYS: Final = frozenset(
    {"route", "host", "port", "feedback_host", "feedback_port", "ca", "expiry"}
)


class ConfigError(ValueError):
    """The configuration file cannot be used; one line naming the file and the key."""


def _string(table: Mapping[str, Any], key: str, label: str, *, default: str | None = None) -> str:
    value = table.get(key, default)
    if value is None:
        raise ConfigError(f"{label}: {key} is missing")
    if not isinstance(value, str) or (not value and default is None):
        raise ConfigError(f"{label}: {key} must be a non-empty string, not {value!r}")
    return value


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

        route = _string(push, "route", f"{label}: push", default="binary")
        if route in PLANNED_ROUTES:
            raise ConfigError(
                f"{label}: push.route {route!r} is not available yet; only 'binary' is "
                "(HTTP/2 and the bridge are still to be built)"
            )
        if route not in ROUTES:
            raise ConfigError(f"{label}: push.route must be 'binary', not {route!r}")
        try:
            host, port = parse_listen(_string(data, "listen", label, default="127.0.0.1:0"))
        except ValueError as exc:
            raise ConfigError(f"{label}: {exc}") from None
        base_path = _string(data, "base_path", label, default="")
        if base_path and not base_path.startswith("/"):
            raise ConfigError(f"{label}: base_path must start with '/', not {base_path!r}")
        passphrase_env = data.get("passphrase_env")
        if passphrase_env is not None:
            passphrase_env = _string(data, "passphrase_env", label)
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
            gateway_host=_string(push, "host", f"{label}: push", default=PRODUCTION_GATEWAY[0]),
            gateway_port=_integer(push, "port", f"{label}: push", 1, 0xFFFF, PRODUCTION_GATEWAY[1]),
            feedback_host=_string(
                push, "feedback_host", f"{label}: push", default=PRODUCTION_FEEDBACK[0]
            ),
            feedback_port=_integer(
                push, "feedback_port", f"{label}: push", 1, 0xFFFF, PRODUCTION_FEEDBACK[1]
            ),
            gateway_ca=optional("ca", push, f"{label}: push"),
            expiry=_integer(
                push, "expiry", f"{label}: push", 0, 30 * 24 * 3600, DEFAULT_PUSH_EXPIRY
            ),
        )

    def signer(self, environ: Mapping[str, str] | None = None) -> PassSigner:
        """Load the pass certificate and WWDR certificate, checked against ``pass_type_id``.

        Args:
            environ: where ``passphrase_env`` is looked up (default ``os.environ``).

        Raises:
            ConfigError: the variable is not set, the credentials or WWDR certificate
                cannot be used, or the certificate is for another pass type.
        """
        environ = os.environ if environ is None else environ
        passphrase = None
        if self.passphrase_env is not None:
            value = environ.get(self.passphrase_env)
            if value is None:
                raise ConfigError(
                    f"{self.path}: passphrase_env: the environment variable "
                    f"{self.passphrase_env} is not set"
                )
            passphrase = value.encode("utf-8")
        try:
            credentials = Credentials.load(self.cert, self.key, passphrase=passphrase)
        except WrongPassphraseError as exc:
            hint = "" if passphrase is not None else " (set passphrase_env)"
            raise ConfigError(f"{self.path}: cert: {exc}{hint}") from None
        except CredentialsError as exc:
            raise ConfigError(f"{self.path}: cert: {exc}") from None
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

    def route_for_push(self) -> BinaryGateway:
        """Where ``wallet update`` pushes (the binary gateway: the only route so far)."""
        ca = None if self.gateway_ca is None else str(self.gateway_ca)
        return BinaryGateway(
            host=self.gateway_host,
            port=self.gateway_port,
            feedback_host=self.feedback_host,
            feedback_port=self.feedback_port,
            ca=ca,
            expiry=self.expiry,
        )
