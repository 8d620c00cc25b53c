"""Updating a pass: a new tag, a rebuilt and re-signed archive, and the update push.

Apple's loop (*PassKit Web Service Reference*; *Adding a Web Service to Update
Passes*): the issuer pushes to every device registered for the pass, with the Pass
Type ID certificate (its subject UID is the topic), to the **production** gateway,
with a payload the device ignores; Wallet then asks the web service which serial
numbers changed since its tag and fetches each of those passes. "On an invalid-token
error, delete the device."

The payload is ``{"aps":{}}`` (:func:`apns_legacy.pass_payload`, grocer's form). The
binary gateway's sender gives each push one outcome; a rejection with status 8
(invalid token) removes every registration of the devices holding that token.

Routes: only the binary gateway exists in this project so far. HTTP/2 (push type
``background``, topic = pass type ID) and the bridge come with their own issues.
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
    Outcome,
    OutcomeKind,
    SenderConfig,
    open_sender,
    read_feedback,
)
from ..tls import client_context
from ..wire import DeviceToken, FeedbackItem, Notification, Status, pass_payload
from ._pkpass import PassError, PassSigner, PassSource, build_pkpass, read_pass_directory
from ._store import PassFeedbackResult, PassStore

logger = logging.getLogger("apns_legacy.wallet")

#: How long the gateway may keep an update push for a device that is offline.
DEFAULT_PUSH_EXPIRY: Final = 24 * 3600


@attrs.frozen(kw_only=True)
class BinaryGateway:
    """Update pushes over the legacy binary gateway (Apple's production one by default).

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
    """

    host: str = PRODUCTION_GATEWAY[0]
    port: int = PRODUCTION_GATEWAY[1]
    feedback_host: str = PRODUCTION_FEEDBACK[0]
    feedback_port: int = PRODUCTION_FEEDBACK[1]
    ca: bytes | str | None = None
    server_hostname: str | None = None
    config: SenderConfig = attrs.Factory(SenderConfig)
    expiry: int = DEFAULT_PUSH_EXPIRY

    def context(self, signer: PassSigner) -> SSL.Context:
        """The client TLS context: the pass certificate as identity, sent with the WWDR
        certificate (a Keychain .p12 often holds no chain; a server that trusts only
        the root, like the simulator or a relay, needs the intermediate)."""
        credentials = signer.credentials
        if signer.wwdr not in credentials.chain:
            credentials = attrs.evolve(credentials, chain=(*credentials.chain, signer.wwdr))
        return client_context(credentials, ca=self.ca)


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
    #: Registrations removed because the gateway said the token is invalid (status 8).
    removed_registrations: int = 0
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
    route: BinaryGateway,
    *,
    context: SSL.Context | None = None,
) -> PushReport:
    """Push ``{"aps":{}}`` to every device registered for the pass; prune invalid tokens.

    Args:
        store: registrations are read from it, and rejected tokens removed.
        signer: its certificate authenticates the pushes (the topic is its UID).
        pass_type_id, serial_number: the pass.
        route: where to push.
        context: a ready client TLS context (default: made from ``signer``).

    Returns:
        Counts, and the registrations removed for status 8.
    """
    tokens = store.push_tokens(pass_type_id, serial_number)
    if not tokens:
        return PushReport(pass_type_id=pass_type_id, serial_number=serial_number)
    outcomes: list[Outcome] = []
    expiry = 0 if route.expiry == 0 else int(_dt.datetime.now(_dt.UTC).timestamp()) + route.expiry
    async with open_sender(
        context if context is not None else route.context(signer),
        host=route.host,
        port=route.port,
        server_hostname=route.server_hostname,
        config=route.config,
        on_outcome=outcomes.append,
    ) as sender:
        payload = pass_payload()
        for token in tokens:
            notification = Notification(
                token=DeviceToken.from_hex(token), payload=payload, expiry=expiry
            )
            await sender.submit(notification, tag=token)
        await sender.flush(confirm=True)
    invalid = [str(o.tag) for o in outcomes if o.status == Status.INVALID_TOKEN]
    removed = store.remove_push_tokens(invalid) if invalid else 0
    problems = tuple(
        (str(o.tag), f"status {int(o.status)}" if o.status is not None else str(o.reason))
        for o in outcomes
        if not o.accepted
    )
    report = PushReport(
        pass_type_id=pass_type_id,
        serial_number=serial_number,
        tokens=len(tokens),
        accepted=sum(o.kind is OutcomeKind.ACCEPTED for o in outcomes),
        rejected=sum(o.kind is OutcomeKind.REJECTED for o in outcomes),
        failed=sum(o.kind is OutcomeKind.FAILED for o in outcomes),
        removed_registrations=removed,
        problems=problems,
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


async def update_pass(
    store: PassStore,
    signer: PassSigner,
    source: PassSource,
    route: BinaryGateway | None,
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
