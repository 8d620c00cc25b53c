"""Updating a pass: a new tag, a rebuilt and re-signed archive, and the update push.

Apple's loop (*PassKit Web Service Reference*; *Adding a Web Service to Update
Passes*): the issuer pushes to every device registered for the pass, with the Pass
Type ID certificate (its subject UID is the topic), to the **production** gateway,
with a payload the device ignores; Wallet then asks the web service which serial
numbers changed since its tag and fetches each of those passes. "On an invalid-token
error, delete the device."

The payload is ``{"aps":{}}`` (:func:`apns_legacy.pass_payload`, grocer's form; on
HTTP/2 it is also what django-walletpass sends). Each push gets one outcome from the
sender, and the answers that say the token is dead remove registrations:

* binary gateway (and the bridge, which speaks it): status 8 (invalid token) removes
  every registration of the devices holding that token;
* HTTP/2: 400 ``BadDeviceToken`` or ``DeviceTokenNotForTopic`` likewise; 410
  ``Unregistered``/``ExpiredToken`` with Apple's timestamp removes the devices that did
  not register again since that time (the feedback service's rule: Apple's "stop
  pushing notifications until the device registers a token with a later timestamp"),
  and without a timestamp removes them.

Routes:

* :class:`BinaryGateway`: the legacy binary gateway (Apple's production one by
  default) or anything that speaks it, such as the bridge (``apns-legacy bridge``):
  point ``host``/``port`` at it and give the client certificate it expects;
* :class:`Http2Gateway`: Apple's HTTP/2 provider API, push type ``background``, topic
  = the pass type ID, token auth (a ``.p8`` key) or certificate auth (the Pass Type ID
  certificate).
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import attrs
from OpenSSL import SSL

from ..client import (
    PRODUCTION_FEEDBACK,
    PRODUCTION_GATEWAY,
    PRODUCTION_HOST,
    Http2Outcome,
    Http2SenderConfig,
    Outcome,
    OutcomeKind,
    SenderConfig,
    open_http2_sender,
    open_sender,
    read_feedback,
)
from ..h2wire import AppSettings, ProviderKey, PushType, Reason
from ..tls import Credentials, client_context
from ..wire import DeviceToken, FeedbackItem, Notification, Status, pass_payload
from ._pkpass import PassError, PassSigner, PassSource, build_pkpass, read_pass_directory
from ._store import PassFeedbackResult, PassStore

logger = logging.getLogger("apns_legacy.wallet")

#: How long the gateway may keep an update push for a device that is offline.
DEFAULT_PUSH_EXPIRY: Final = 24 * 3600
#: HTTP/2 answers that say the token will never work for this pass type.
_INVALID_REASONS: Final = frozenset({Reason.BAD_DEVICE_TOKEN, Reason.DEVICE_TOKEN_NOT_FOR_TOPIC})
#: HTTP/2 answers that say the token is no longer active (410), with a timestamp.
_GONE_REASONS: Final = frozenset({Reason.UNREGISTERED, Reason.EXPIRED_TOKEN})


def _with_wwdr(signer: PassSigner) -> Credentials:
    """The pass certificate as a TLS identity, sent with the WWDR certificate (a Keychain
    .p12 often holds no chain; a server that trusts only the root, like the simulator
    or a relay, needs the intermediate)."""
    credentials = signer.credentials
    if signer.wwdr not in credentials.chain:
        credentials = attrs.evolve(credentials, chain=(*credentials.chain, signer.wwdr))
    return credentials


@attrs.frozen(kw_only=True)
class BinaryGateway:
    """Update pushes over the legacy binary gateway (Apple's production one by default),
    or anything that speaks it: the bridge is this route with its address.

    Args:
        host, port: the gateway; pass updates work only in production.
        feedback_host, feedback_port: the feedback service ("You still need to
            regularly query the feedback service" for pass pushes, too).
        ca: PEM trust anchors for the gateway's certificate (bytes or a file path);
            None uses the system store.
        server_hostname: the name to verify the gateway's certificate against.
        config: the sender's settings.
        expiry: seconds the gateway may hold the push for an offline device
            (0: deliver now or never).
        credentials: the client certificate to present; None (the default): the
            pass certificate, with the WWDR certificate. A bridge that verifies its
            clients against a CA of its own may expect another certificate (its
            topic must still be the pass type ID: the bridge routes by it).
    """

    host: str = PRODUCTION_GATEWAY[0]
    port: int = PRODUCTION_GATEWAY[1]
    feedback_host: str = PRODUCTION_FEEDBACK[0]
    feedback_port: int = PRODUCTION_FEEDBACK[1]
    ca: bytes | str | None = None
    server_hostname: str | None = None
    config: SenderConfig = attrs.Factory(SenderConfig)
    expiry: int = DEFAULT_PUSH_EXPIRY
    credentials: Credentials | None = attrs.field(default=None, repr=False)

    def context(self, signer: PassSigner) -> SSL.Context:
        """The client TLS context: ``credentials``, or else the pass certificate sent
        with the WWDR certificate."""
        credentials = self.credentials if self.credentials is not None else _with_wwdr(signer)
        return client_context(credentials, ca=self.ca)


@attrs.frozen(kw_only=True)
class Http2Gateway:
    """Update pushes over Apple's HTTP/2 provider API (production by default).

    Each push is ``{"aps":{}}`` with ``apns-push-type: background`` and ``apns-topic``
    = the pass type ID.

    Args:
        host, port: the API; pass updates work only in production.
        ca: PEM trust anchors for the server's certificate (bytes or a file path);
            None uses the system store.
        server_hostname: the name to verify the server's certificate against.
        provider_key: token auth with this ``.p8`` key (key id, team id); None
            (the default): certificate auth with the pass certificate.
        priority: ``apns-priority`` (10, 5 or 1); None sends 5, as background pushes
            want (Wallet's pages name no priority).
        expiry: seconds APNs may hold the push for an offline device (0: now or never).
        connections, max_attempts, retry_delay, connect_timeout, max_connect_failures:
            the HTTP/2 sender's settings (see :class:`Http2SenderConfig`).
    """

    host: str = PRODUCTION_HOST
    port: int = 443
    ca: bytes | str | None = None
    server_hostname: str | None = None
    provider_key: ProviderKey | None = attrs.field(default=None, repr=False)
    priority: int | None = None
    expiry: int = DEFAULT_PUSH_EXPIRY
    connections: int = 1
    max_attempts: int = 5
    retry_delay: float = 0.05
    connect_timeout: float = 10.0
    max_connect_failures: int = 5

    def check(self, signer: PassSigner, topic: str | None = None) -> Http2SenderConfig:
        """:meth:`sender_config`, with its TLS context made once to check it (the trust
        anchors are readable, the certificate and key usable): call it before anything
        changes. Returns the configuration.

        Raises:
            LocalProtocolError: a setting breaks a rule (the message names it).
            CredentialsError: ``ca`` or the certificate cannot be used.
        """
        config = self.sender_config(signer, topic)
        client_context(config.credentials, ca=config.ca, alpn=[b"h2"])
        return config

    def sender_config(self, signer: PassSigner, topic: str | None = None) -> Http2SenderConfig:
        """The HTTP/2 sender's configuration for pushes of ``topic`` (default: the
        signer's pass type ID).

        Raises:
            LocalProtocolError: a setting breaks a rule (the message names it).
        """
        settings = AppSettings(
            topic=topic or signer.pass_type_id,
            push_type=PushType.BACKGROUND,
            priority=self.priority,
        )
        return Http2SenderConfig(
            host=self.host,
            port=self.port,
            settings=settings,
            provider_key=self.provider_key,
            credentials=None if self.provider_key is not None else _with_wwdr(signer),
            ca=self.ca,
            server_hostname=self.server_hostname,
            connections=self.connections,
            max_attempts=self.max_attempts,
            retry_delay=self.retry_delay,
            connect_timeout=self.connect_timeout,
            max_connect_failures=self.max_connect_failures,
        )


@attrs.frozen(kw_only=True)
class PushReport:
    """What became of the update pushes for one pass."""

    pass_type_id: str
    serial_number: str
    #: Devices' push tokens pushed to (distinct).
    tokens: int = 0
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    #: Registrations removed because the gateway said the token is invalid (status 8;
    #: on HTTP/2 400 BadDeviceToken or DeviceTokenNotForTopic, and 410).
    removed_registrations: int = 0
    #: HTTP/2 410 answers whose device registered again since Apple's timestamp: kept.
    kept_reregistered: int = 0
    #: (token hex, status or reason) of every push that was not accepted.
    problems: tuple[tuple[str, str], ...] = ()


@attrs.frozen(kw_only=True)
class UpdateResult:
    """One pass updated: its new tag and, if pushed, the push report."""

    pass_type_id: str
    serial_number: str
    tag: int
    push: PushReport | None


def publish_pass(
    store: PassStore,
    signer: PassSigner,
    source: PassSource,
    *,
    now: _dt.datetime | float | None = None,
) -> int:
    """Build and sign ``source`` and store it as the pass's new version; returns its tag.

    Raises:
        PassError: the pass does not belong to the signer's certificate.
    """
    pkpass = build_pkpass(source, signer)
    return store.put_pass(
        pass_type_id=source.pass_type_id,
        serial_number=source.serial_number,
        authentication_token=source.authentication_token,
        pkpass=pkpass,
        content_digest=source.content_digest(),
        now=now,
    )


async def push_pass_update(
    store: PassStore,
    signer: PassSigner,
    pass_type_id: str,
    serial_number: str,
    route: BinaryGateway | Http2Gateway,
    *,
    context: SSL.Context | None = None,
) -> PushReport:
    """Push ``{"aps":{}}`` to every device registered for the pass; prune dead tokens.

    Args:
        store: registrations are read from it, and dead tokens' removed.
        signer: its certificate authenticates the pushes (the topic is its UID), unless
            the route brings credentials of its own.
        pass_type_id, serial_number: the pass.
        route: where to push.
        context: a ready client TLS context for a :class:`BinaryGateway` (default: made
            from ``signer``); an :class:`Http2Gateway` makes its own (leave it None).

    Returns:
        Counts, the problems (every push not accepted, with why), and the
        registrations removed.
    """
    tokens = store.push_tokens(pass_type_id, serial_number)
    if not tokens:
        return PushReport(pass_type_id=pass_type_id, serial_number=serial_number)
    expiry = 0 if route.expiry == 0 else int(_dt.datetime.now(_dt.UTC).timestamp()) + route.expiry
    notifications = [
        (
            token,
            Notification(token=DeviceToken.from_hex(token), payload=pass_payload(), expiry=expiry),
        )
        for token in tokens
    ]
    outcomes: list[Outcome] = []
    if isinstance(route, Http2Gateway):
        if context is not None:
            raise ValueError("context is for the binary route; the HTTP/2 route makes its own")
        # Checked here, so that a bad ca or credential raises as itself, not from
        # inside the sender's nursery.
        async with open_http2_sender(
            route.check(signer, pass_type_id), on_outcome=outcomes.append
        ) as h2sender:
            for token, notification in notifications:
                await h2sender.submit(notification, tag=token)
        removed, kept = _prune_http2(store, outcomes)
    else:
        async with open_sender(
            context if context is not None else route.context(signer),
            host=route.host,
            port=route.port,
            server_hostname=route.server_hostname,
            config=route.config,
            on_outcome=outcomes.append,
        ) as sender:
            for token, notification in notifications:
                await sender.submit(notification, tag=token)
            await sender.flush(confirm=True)
        invalid = [str(o.tag) for o in outcomes if o.status == Status.INVALID_TOKEN]
        removed, kept = (store.remove_push_tokens(invalid) if invalid else 0), 0
    report = PushReport(
        pass_type_id=pass_type_id,
        serial_number=serial_number,
        tokens=len(tokens),
        accepted=sum(o.kind is OutcomeKind.ACCEPTED for o in outcomes),
        rejected=sum(o.kind is OutcomeKind.REJECTED for o in outcomes),
        failed=sum(o.kind is OutcomeKind.FAILED for o in outcomes),
        removed_registrations=removed,
        kept_reregistered=kept,
        problems=tuple((str(o.tag), _problem(o)) for o in outcomes if not o.accepted),
    )
    logger.info(
        "pushed %s %s to %d devices: %d accepted, %d rejected, %d failed; %d registrations removed",
        pass_type_id,
        serial_number,
        report.tokens,
        report.accepted,
        report.rejected,
        report.failed,
        removed,
    )
    return report


def _problem(outcome: Outcome) -> str:
    """Why a push was not accepted, in one short phrase."""
    if outcome.kind is OutcomeKind.REJECTED:
        if isinstance(outcome, Http2Outcome):
            return f"{outcome.status} {outcome.reason}"
        return (
            f"status {int(outcome.status)}" if outcome.status is not None else str(outcome.reason)
        )
    return f"failed: {outcome.reason}"


def _prune_http2(store: PassStore, outcomes: list[Outcome]) -> tuple[int, int]:
    """Remove the registrations HTTP/2 answers declared dead; (removed, kept)."""
    invalid: list[str] = []
    gone: list[FeedbackItem] = []
    for outcome in outcomes:
        if not isinstance(outcome, Http2Outcome) or outcome.kind is not OutcomeKind.REJECTED:
            continue
        token = str(outcome.tag)
        if outcome.reason in _INVALID_REASONS:
            invalid.append(token)
        elif outcome.reason in _GONE_REASONS:
            if outcome.timestamp is None:
                invalid.append(token)
            else:
                seconds = int(outcome.timestamp.timestamp())
                gone.append(FeedbackItem(timestamp=seconds, token=bytes.fromhex(token)))
    removed = store.remove_push_tokens(invalid) if invalid else 0
    kept = 0
    if gone:
        result = store.apply_feedback(gone)
        removed += result.removed_registrations
        kept = result.kept_reregistered
    return removed, kept


async def update_pass(
    store: PassStore,
    signer: PassSigner,
    source: PassSource,
    route: BinaryGateway | Http2Gateway | None,
    *,
    now: _dt.datetime | float | None = None,
    context: SSL.Context | None = None,
) -> UpdateResult:
    """Publish a new version of the pass (new tag, rebuilt and signed) and push it.

    Args:
        store, signer, source: see :func:`publish_pass`.
        route: where to push; None publishes without pushing.
        now: the time for the tag (default now).
        context: see :func:`push_pass_update`.

    Raises:
        PassError: the pass does not belong to the signer's certificate.
    """
    tag = publish_pass(store, signer, source, now=now)
    report = None
    if route is not None:
        report = await push_pass_update(
            store, signer, source.pass_type_id, source.serial_number, route, context=context
        )
    return UpdateResult(
        pass_type_id=source.pass_type_id,
        serial_number=source.serial_number,
        tag=tag,
        push=report,
    )


def pass_directories(passes: str | os.PathLike[str]) -> dict[str, Path]:
    """The pass directories in ``passes`` (one subfolder per serial number), by name."""
    folder = Path(passes)
    return {
        path.name: path
        for path in sorted(folder.iterdir())
        if path.is_dir() and not path.name.startswith(".")
    }


def read_pass_folder(passes: str | os.PathLike[str], serial_number: str) -> PassSource:
    """Read ``passes/<serial_number>``, whose ``pass.json`` must carry that serial number.

    Raises:
        PassError: no such folder, not a valid pass, or another serial number inside.
    """
    folder = Path(passes) / serial_number
    if Path(serial_number).name != serial_number or serial_number.startswith("."):
        raise PassError(f"serial number {serial_number!r} cannot be a folder name")
    source = read_pass_directory(folder)
    if source.serial_number != serial_number:
        raise PassError(
            f"{folder}/pass.json: serialNumber {source.serial_number!r} does not match its "
            f"folder name {serial_number!r}"
        )
    return source


def changed_passes(
    store: PassStore, pass_type_id: str, directories: Iterable[Path]
) -> list[PassSource]:
    """The pass directories whose content differs from the stored version (or is new).

    Raises:
        PassError: a directory is not a valid pass.
    """
    changed = []
    for directory in directories:
        source = read_pass_folder(directory.parent, directory.name)
        stored = store.get_pass(pass_type_id, source.serial_number, with_pkpass=False)
        if stored is None or stored.content_digest != source.content_digest():
            changed.append(source)
    return changed


async def read_pass_feedback(
    signer: PassSigner, route: BinaryGateway, *, context: SSL.Context | None = None
) -> list[FeedbackItem]:
    """Read the feedback service's list for the pass type (the certificate's topic).

    The list is cleared once read: keep what this returns (apply it with
    :meth:`PassStore.apply_feedback`).

    Raises:
        FeedbackError: the read failed; nothing was read.
    """
    return await read_feedback(
        context if context is not None else route.context(signer),
        host=route.feedback_host,
        port=route.feedback_port,
        server_hostname=route.server_hostname,
    )


async def prune_from_feedback(
    store: PassStore, signer: PassSigner, route: BinaryGateway
) -> tuple[list[FeedbackItem], PassFeedbackResult]:
    """Read the feedback service and forget the devices it lists (re-registration rule).

    Returns:
        The entries read, and what applying them did.

    Raises:
        FeedbackError: the read failed; nothing was changed.
    """
    items = await read_pass_feedback(signer, route)
    return items, store.apply_feedback(items)
