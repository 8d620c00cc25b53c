"""Building an HTTP/2 APNs request from a :class:`~apns_legacy.wire.Notification`.

Sans-IO: the result is a header list and the body bytes, ready for any HTTP/2 stack
(``h2``'s ``send_headers``/``send_data``). The rules (HTTP2.md 1.2, Apple's *Sending
notification requests to APNs*):

* ``:method POST``, ``:scheme https``, ``:path /3/device/<token as hex>``;
* ``apns-topic`` (required with token auth; a single-topic certificate may leave it
  out), ``apns-push-type``, ``apns-priority`` (10, 5 or 1), ``apns-expiration`` (UNIX
  seconds, 0: try once), ``apns-collapse-id`` (at most 64 bytes), ``apns-id``
  (lowercase canonical UUID), ``authorization: bearer <JWT>`` for token auth;
* the payload limit is 4096 bytes, 5120 for VoIP, checked here before any byte goes out.

Push type inference (when not given), the issue's rules:

* a payload whose ``aps`` holds only ``content-available: 1`` -> ``background``,
  priority 5 ("Using priority 10 is an error" for background pushes);
* a topic ending in ``.voip`` -> ``voip``;
* a Wallet pass topic (``pass.``) -> ``background``, and an empty ``aps`` (or none)
  is allowed, as Wallet update pushes carry ``{}`` or ``{"aps": {}}``;
* otherwise ``alert``.
"""

from __future__ import annotations

import enum
import json
import re
from typing import Final

import attrs

from apns_legacy.wire import (
    PRIORITY_CONSERVE_POWER,
    LocalProtocolError,
    Notification,
    PayloadTooLargeError,
)

#: The HTTP/2 payload limit for every push type but VoIP [SEND].
HTTP2_PAYLOAD_LIMIT: Final = 4096
#: The VoIP payload limit [SEND].
HTTP2_VOIP_PAYLOAD_LIMIT: Final = 5120
#: ``apns-collapse-id`` may be at most this many bytes [SEND].
COLLAPSE_ID_LIMIT: Final = 64
#: The priorities APNs accepts [SEND].
PRIORITIES: Final = (10, 5, 1)

_UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_UINT32_MAX: Final = 0xFFFF_FFFF

Header = tuple[str, str]


class PushType(enum.StrEnum):
    """The ``apns-push-type`` values Apple documents."""

    ALERT = "alert"
    BACKGROUND = "background"
    VOIP = "voip"
    COMPLICATION = "complication"
    FILEPROVIDER = "fileprovider"
    LIVEACTIVITY = "liveactivity"
    LOCATION = "location"
    PUSHTOTALK = "pushtotalk"
    WIDGETS = "widgets"
    CONTROLS = "controls"
    MDM = "mdm"


def _check_optional_priority(
    instance: object, attribute: attrs.Attribute[int | None], value: int | None
) -> None:
    if value is None:
        return
    if type(value) is not int:
        raise TypeError(f"priority must be an int (10, 5 or 1), not {type(value).__name__}")
    if value not in PRIORITIES:
        raise LocalProtocolError(f"apns-priority must be 10, 5 or 1, not {value!r}")


def _check_expiration(
    instance: object, attribute: attrs.Attribute[int | None], value: int | None
) -> None:
    if value is None:
        return
    if type(value) is not int:
        raise TypeError(f"expiration must be an int (UNIX seconds), not {type(value).__name__}")
    if not 0 <= value <= _UINT32_MAX:
        raise LocalProtocolError(
            f"apns-expiration {value} is out of range: it must be 0..{_UINT32_MAX} (UNIX seconds)"
        )


def _check_collapse_id(
    instance: object, attribute: attrs.Attribute[str | None], value: str | None
) -> None:
    if value is None:
        return
    size = len(value.encode("utf-8"))
    if size > COLLAPSE_ID_LIMIT:
        raise LocalProtocolError(
            f"apns-collapse-id is {size} bytes; the limit is {COLLAPSE_ID_LIMIT}"
        )
    _check_header_text("apns-collapse-id", value)


def _check_topic(
    instance: object, attribute: attrs.Attribute[str | None], value: str | None
) -> None:
    if value is None:
        return
    if not value:
        raise LocalProtocolError("apns-topic is empty; leave it out (None) or name the bundle ID")
    _check_header_text("apns-topic", value)


def _check_push_type(
    instance: object, attribute: attrs.Attribute[PushType | None], value: PushType | None
) -> None:
    if value is not None and not isinstance(value, PushType):
        raise TypeError(f"push_type must be a PushType, not {type(value).__name__}")


def _check_header_text(name: str, value: str) -> None:
    for index, char in enumerate(value, 1):
        if char in "\r\n\0" or ord(char) < 0x20:
            raise LocalProtocolError(f"{name} has a control character at position {index}")


def check_apns_id(value: str) -> None:
    """Raise :class:`LocalProtocolError` unless ``value`` is a lowercase canonical UUID."""
    if not _UUID.fullmatch(value):
        raise LocalProtocolError(
            f"apns-id {value!r} is not a lowercase canonical UUID (8-4-4-4-12 hex digits)"
        )


@attrs.frozen(kw_only=True)
class AppSettings:
    """What an application's notifications share on the HTTP/2 API.

    Every field is optional: ``None`` leaves the header out (``topic``: a single-topic
    certificate's default topic) or lets :func:`build_request` infer it
    (``push_type``, ``priority``). ``expiration`` overrides the notification's own
    ``expiry`` when given.
    """

    topic: str | None = attrs.field(default=None, validator=_check_topic)
    push_type: PushType | None = attrs.field(default=None, validator=_check_push_type)
    priority: int | None = attrs.field(default=None, validator=_check_optional_priority)
    expiration: int | None = attrs.field(default=None, validator=_check_expiration)
    collapse_id: str | None = attrs.field(default=None, validator=_check_collapse_id)


@attrs.frozen(kw_only=True)
class Request:
    """One HTTP/2 request: the header list (pseudo-headers first) and the body."""

    headers: tuple[Header, ...]
    body: bytes
    push_type: PushType
    priority: int

    @property
    def path(self) -> str:
        """The ``:path`` pseudo-header."""
        return dict(self.headers)[":path"]


def _aps_of(payload: bytes) -> tuple[dict[str, object], object]:
    """The payload as a JSON object, and its ``aps`` value (``None`` when absent)."""
    try:
        document = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise LocalProtocolError(f"payload is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise LocalProtocolError(
            f"payload must be a JSON object, not a JSON {type(document).__name__}"
        )
    return document, document.get("aps")


def infer_push_type(payload: bytes, topic: str | None) -> PushType:
    """The push type for ``payload`` sent to ``topic``, by the rules in the module docstring.

    Raises:
        LocalProtocolError: the payload is not a JSON object, or it has no content
            (empty or missing ``aps``) for a topic that is not a Wallet pass topic.
    """
    _, aps = _aps_of(payload)
    if topic is not None and topic.startswith("pass."):
        return PushType.BACKGROUND
    if (
        isinstance(aps, dict)
        and aps.keys() == {"content-available"}
        and aps["content-available"] == 1
    ):
        return PushType.BACKGROUND
    if topic is not None and topic.endswith(".voip"):
        return PushType.VOIP
    if not aps:
        raise LocalProtocolError(
            "payload has no 'aps' content; only Wallet pass topics (pass.*) may send that "
            "without an explicit push type"
        )
    return PushType.ALERT


def payload_limit(push_type: PushType) -> int:
    """The payload limit in bytes for ``push_type``: 5120 for VoIP, 4096 otherwise."""
    return HTTP2_VOIP_PAYLOAD_LIMIT if push_type is PushType.VOIP else HTTP2_PAYLOAD_LIMIT


def build_request(
    notification: Notification,
    settings: AppSettings,
    *,
    apns_id: str | None = None,
    authorization: str | None = None,
    authority: str | None = None,
) -> Request:
    """The request for ``notification`` under ``settings``.

    Args:
        notification: token, payload, expiry and priority. Its ``expiry`` becomes
            ``apns-expiration`` unless ``settings.expiration`` is given; its priority
            is used unless ``settings.priority`` is given or the push type is
            ``background`` (then 5).
        settings: the application's topic, push type and other headers.
        apns_id: the request's ``apns-id`` (lowercase canonical UUID); ``None``
            lets APNs make one.
        authorization: a provider token (JWT); sent as ``bearer <token>``.
        authority: the ``:authority`` pseudo-header (the host), if wanted.

    Raises:
        LocalProtocolError: an argument breaks a rule (the message names the header).
        PayloadTooLargeError: the payload is over 4096 bytes (5120 for VoIP).
    """
    push_type = settings.push_type or infer_push_type(notification.payload, settings.topic)
    if settings.push_type is not None:
        _aps_of(notification.payload)  # still a JSON object
    limit = payload_limit(push_type)
    size = len(notification.payload)
    if size > limit:
        raise PayloadTooLargeError(
            size,
            limit,
            f"payload is {size} bytes; the limit for apns-push-type {push_type.value} is {limit}",
        )
    if settings.priority is not None:
        priority = settings.priority
        is_pass = settings.topic is not None and settings.topic.startswith("pass.")
        if push_type is PushType.BACKGROUND and priority == 10 and not is_pass:
            raise LocalProtocolError(
                "apns-priority 10 with apns-push-type background; Apple requires 5"
            )
    elif push_type is PushType.BACKGROUND:
        priority = PRIORITY_CONSERVE_POWER
    else:
        priority = notification.priority
    expiration = settings.expiration if settings.expiration is not None else notification.expiry
    if apns_id is not None:
        check_apns_id(apns_id)

    headers: list[Header] = [
        (":method", "POST"),
        (":scheme", "https"),
        (":path", f"/3/device/{notification.token.value.hex()}"),
    ]
    if authority is not None:
        headers.insert(2, (":authority", authority))
    if authorization is not None:
        _check_header_text("authorization", authorization)
        headers.append(("authorization", f"bearer {authorization}"))
    if settings.topic is not None:
        headers.append(("apns-topic", settings.topic))
    headers.append(("apns-push-type", push_type.value))
    headers.append(("apns-priority", str(priority)))
    headers.append(("apns-expiration", str(expiration)))
    if settings.collapse_id is not None:
        headers.append(("apns-collapse-id", settings.collapse_id))
    if apns_id is not None:
        headers.append(("apns-id", apns_id))
    headers.append(("content-length", str(size)))
    return Request(
        headers=tuple(headers), body=notification.payload, push_type=push_type, priority=priority
    )
