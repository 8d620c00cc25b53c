"""``apns-legacy send --http2``: the flags and checks of sending through Apple's HTTP/2 API.

The input, the report, the progress display, the summary and the token store are the
binary ``send``'s (``_send.py`` and the modules beside it); what is here is what
differs: token auth (``--auth-key FILE.p8 --key-id ID --team-id ID``) or certificate
auth (``--cert``), the application's headers (``--topic``, ``--push-type``,
``--collapse-id``), Apple's HTTP/2 hosts, and the payload limit (4096 bytes, 5120 for
VoIP). Everything is checked before anything connects; a problem is one line naming the
flag (exit 2). The decrypted provider key stays in memory.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Final

from ..client import PRODUCTION_HOST, SANDBOX_HOST, Http2SenderConfig
from ..h2wire import (
    HTTP2_PAYLOAD_LIMIT,
    HTTP2_VOIP_PAYLOAD_LIMIT,
    AppSettings,
    ProviderKey,
    PushType,
    build_request,
)
from ..tls import Credentials, CredentialsError, client_context
from ..wire import PAYLOAD_LIMIT, LocalProtocolError, Notification, PayloadTooLargeError
from ._common import load_credentials, resolve_address, warn_environment_mismatch
from ._exit import UsageError
from ._text import os_error

#: The HTTP/2 provider API's address (``--sandbox``: the development one).
PRODUCTION_API: Final = (PRODUCTION_HOST, 443)
SANDBOX_API: Final = (SANDBOX_HOST, 443)

#: Flags of the binary protocol only, by ``argparse`` destination (their defaults are
#: None, so that giving one with ``--http2`` is noticed; ``binary_defaults`` fills
#: them in otherwise).
BINARY_ONLY: Final = {
    "format": ("--format", "frame"),
    "probe_timeout": ("--probe-timeout", 20.0),
    "write_timeout": ("--write-timeout", 15.0),
    "settle": ("--settle", 1.0),
    "payload_limit": ("--payload-limit", PAYLOAD_LIMIT),
    "assume_accepted": ("--assume-accepted", False),
    "no_spare": ("--no-spare", False),
}
#: Flags of ``--http2`` only.
HTTP2_ONLY: Final = {
    "auth_key": "--auth-key",
    "key_id": "--key-id",
    "team_id": "--team-id",
    "topic": "--topic",
    "push_type": "--push-type",
    "collapse_id": "--collapse-id",
}


def add_http2_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--http2`` group of ``send``."""
    group = parser.add_argument_group(
        "HTTP/2 provider API (--http2)",
        f"send to {PRODUCTION_HOST}:443 (--sandbox: {SANDBOX_HOST}) with token auth "
        "(--auth-key, --key-id, --team-id, --topic) or certificate auth (--cert ...)",
    )
    add = group.add_argument
    add("--http2", action="store_true", help="use Apple's HTTP/2 provider API (today's APNs)")
    add("--auth-key", metavar="FILE.p8", help="token auth: the signing key from Apple (.p8)")
    add("--key-id", metavar="ID", help="token auth: the key's id (10 characters)")
    add("--team-id", metavar="ID", help="token auth: your team id")
    add("--topic", metavar="TOPIC",
        help="apns-topic, usually the bundle id (needed with --auth-key; with a certificate "
        "the certificate's topic by default)")  # fmt: skip
    add("--push-type", choices=[t.value for t in PushType], metavar="TYPE",
        help="apns-push-type: " + ", ".join(t.value for t in PushType)
        + " (default: inferred from the payload and topic)")  # fmt: skip
    add("--collapse-id", metavar="ID", help="apns-collapse-id (at most 64 bytes)")


def check_protocol_flags(args: argparse.Namespace) -> None:
    """Refuse the other protocol's flags; fill in the binary defaults without ``--http2``.

    Raises:
        UsageError: a binary-only flag with ``--http2``, or an HTTP/2-only one without.
    """
    if args.http2:
        for dest, (flag, _) in BINARY_ONLY.items():
            value = getattr(args, dest)
            if value is not None and value is not False:
                raise UsageError(
                    f"{flag} is for the binary protocol; it cannot be used with --http2"
                )
        args.production_address, args.sandbox_address = PRODUCTION_API, SANDBOX_API
        return
    for dest, flag in HTTP2_ONLY.items():
        if getattr(args, dest) is not None:
            raise UsageError(f"{flag} is for the HTTP/2 API; add --http2 (or leave it out)")
    for dest, (_, default) in BINARY_ONLY.items():
        if getattr(args, dest) is None and default is not None:
            setattr(args, dest, default)


def http2_settings(args: argparse.Namespace) -> AppSettings:
    """The ``apns-*`` headers of ``--topic``, ``--push-type`` and ``--collapse-id``."""
    for flag, field, value in (
        ("--topic", "topic", args.topic),
        ("--collapse-id", "collapse_id", args.collapse_id),
    ):
        try:
            AppSettings(**{field: value})
        except LocalProtocolError as exc:
            raise UsageError(f"{flag}: {exc}") from None
    push_type = PushType(args.push_type) if args.push_type is not None else None
    try:
        return AppSettings(topic=args.topic, push_type=push_type, collapse_id=args.collapse_id)
    except LocalProtocolError as exc:  # pragma: no cover - each field was checked above
        raise UsageError(str(exc)) from None


def http2_payload_limit(settings: AppSettings) -> int:
    """The largest payload the run may send: 5120 bytes for VoIP, else 4096."""
    voip = settings.push_type is PushType.VOIP or (
        settings.push_type is None
        and settings.topic is not None
        and settings.topic.endswith(".voip")
    )
    return HTTP2_VOIP_PAYLOAD_LIMIT if voip else HTTP2_PAYLOAD_LIMIT


def limit_hint(settings: AppSettings) -> str:
    """What the payload limit error adds after the numbers."""
    if http2_payload_limit(settings) == HTTP2_VOIP_PAYLOAD_LIMIT:
        return "(the HTTP/2 limit for VoIP)"
    return "(the HTTP/2 limit; 5120 with --push-type voip)"


def check_request(flag: str, notification: Notification, settings: AppSettings) -> None:
    """Build the request ``notification`` would be, to refuse a bad one before sending.

    Raises:
        UsageError: naming ``flag`` and the rule (payload limit, push type...).
    """
    try:
        build_request(notification, settings)
    except PayloadTooLargeError as exc:
        raise UsageError(f"{flag}: {exc} {limit_hint(settings)}") from None
    except LocalProtocolError as exc:
        raise UsageError(f"{flag}: {exc}") from None


class PayloadCheck:
    """The HTTP/2 request rules for an input line's payload (content in ``aps`` unless a
    push type is given, the limit of its push type), so that a line APNs would refuse is
    reported as a bad line before sending. Each distinct payload is checked once."""

    def __init__(self, settings: AppSettings) -> None:
        self.settings = settings
        self._seen: dict[bytes, str | None] = {}

    def __call__(self, notification: Notification) -> str | None:
        """Why ``notification`` cannot be sent (one line), or None."""
        payload = notification.payload
        if payload in self._seen:
            return self._seen[payload]
        problem: str | None = None
        try:
            build_request(notification, self.settings)
        except LocalProtocolError as exc:
            problem = f"payload: {exc}"
        if len(self._seen) >= _CHECKED_PAYLOADS:
            self._seen.clear()
        self._seen[payload] = problem
        return problem


#: Distinct payloads whose verdict PayloadCheck remembers.
_CHECKED_PAYLOADS: Final = 1024


def _provider_key(args: argparse.Namespace) -> ProviderKey:
    for flag, value in (("--key-id", args.key_id), ("--team-id", args.team_id)):
        if not value:
            raise UsageError(f"--auth-key needs {flag} ID (from the developer account)")
    for flag, value in (("--key", args.key), ("--passphrase-env", args.passphrase_env)):
        if value is not None:
            raise UsageError(f"{flag} is for --cert; a .p8 key (--auth-key) has no passphrase")
    if args.topic is None:
        raise UsageError("token auth (--auth-key) needs --topic (usually the app's bundle id)")
    path = Path(args.auth_key)
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise UsageError(f"--auth-key {path}: is a directory") from None
    except OSError as exc:
        raise UsageError(f"--auth-key {path}: cannot read ({os_error(exc)})") from None
    try:
        return ProviderKey.from_p8(data, key_id=args.key_id, team_id=args.team_id)
    except LocalProtocolError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "not a key"
        raise UsageError(f"--auth-key {path}: {first}") from None


def _ca(path: str | None) -> bytes | None:
    if path is None:
        return None
    try:
        data = Path(path).read_bytes()
    except IsADirectoryError:
        raise UsageError(f"--ca {path}: is a directory") from None
    except OSError as exc:
        raise UsageError(f"--ca {path}: cannot read ({os_error(exc)})") from None
    try:
        client_context(None, ca=data, alpn=[b"h2"])
    except CredentialsError as exc:
        raise UsageError(f"--ca: {exc}") from None
    return data


def http2_config(args: argparse.Namespace, settings: AppSettings) -> Http2SenderConfig:
    """The HTTP/2 sender's settings from the flags, the key or certificate loaded.

    Raises:
        UsageError: one line naming the flag.
    """
    if args.auth_key is not None and args.cert is not None:
        raise UsageError("give --auth-key (token auth) or --cert (certificate auth), not both")
    if args.auth_key is None:
        for flag, value in (("--key-id", args.key_id), ("--team-id", args.team_id)):
            if value is not None:
                raise UsageError(f"{flag} is for token auth; it needs --auth-key FILE.p8")
        if args.cert is None:
            raise UsageError(
                "--http2 needs --auth-key FILE.p8 --key-id ID --team-id ID (token auth) "
                "or --cert FILE (certificate auth)"
            )
    host, port = resolve_address(args)
    key: ProviderKey | None = None
    credentials: Credentials | None = None
    if args.auth_key is not None:
        key = _provider_key(args)
    else:
        credentials = load_credentials(args)
        warn_environment_mismatch(args, host, credentials, mismatch_is_error=False)
    return Http2SenderConfig(
        host=host,
        port=port,
        settings=settings,
        provider_key=key,
        credentials=credentials,
        ca=_ca(args.ca),
        connections=args.connections,
        max_connect_failures=args.connect_attempts,
        connect_timeout=args.connect_timeout,
    )
