"""Values and events of the wire layer: frozen attrs classes, validated on construction."""

from __future__ import annotations

import datetime as _dt
import enum
from collections.abc import Iterable, Iterator
from typing import Any, Final

import attrs

from ._errors import LocalProtocolError
from ._fastinit import slot_setter, validate
from ._status import Status
from ._tokens import TOKEN_LENGTH, DeviceToken


class Need(enum.Enum):
    """What a decoder returns when it needs more bytes before the next event."""

    DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return "NEED_DATA"


#: The decoder has no complete event yet: feed it more bytes (or EOF).
NEED_DATA: Final = Need.DATA


class Command(enum.IntEnum):
    """The first byte of every gateway frame."""

    #: Command 0: token and payload only; errors close the connection silently.
    SIMPLE = 0
    #: Command 1: adds a 4-byte identifier and a 4-byte expiry.
    ENHANCED = 1
    #: Command 2: a frame of items, adding priority (iOS 7, 2013).
    FRAME = 2
    #: Command 8: the 6-byte error response, gateway to provider.
    ERROR_RESPONSE = 8


#: Priority 10: deliver at once. Must carry an alert, sound or badge.
PRIORITY_IMMEDIATE: Final = 10
#: Priority 5: deliver when it conserves power; may be grouped or throttled.
PRIORITY_CONSERVE_POWER: Final = 5

_UINT32_MAX: Final = 0xFFFF_FFFF
_UINT16_MAX: Final = 0xFFFF


def _check_token(
    instance: object, attribute: attrs.Attribute[DeviceToken], value: DeviceToken
) -> None:
    # The encoders read token.value; catch raw bytes or hex here, not mid-send.
    if not isinstance(value, DeviceToken):
        raise TypeError(
            f"token must be a DeviceToken (DeviceToken.from_hex or .from_bytes), "
            f"not {type(value).__name__}"
        )


def _check_payload(instance: object, attribute: attrs.Attribute[bytes], value: bytes) -> None:
    if type(value) is not bytes:
        raise TypeError(f"payload must be bytes, not {type(value).__name__}")
    if not value:
        raise LocalProtocolError("payload is empty; the gateway answers 'Missing payload'")
    if len(value) > _UINT16_MAX:
        raise LocalProtocolError(
            f"payload is {len(value)} bytes; no command can carry more than {_UINT16_MAX}"
        )


def _check_expiry(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int:
        raise TypeError(f"expiry must be an int (UNIX seconds), not {type(value).__name__}")
    if not 0 <= value <= _UINT32_MAX:
        raise LocalProtocolError(f"expiry {value} does not fit 0..{_UINT32_MAX} (uint32 seconds)")


def _check_priority(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int:
        raise TypeError(f"priority must be an int (10 or 5), not {type(value).__name__}")
    if value not in (PRIORITY_IMMEDIATE, PRIORITY_CONSERVE_POWER):
        raise LocalProtocolError(f"priority must be 10 or 5, not {value!r}")


@attrs.frozen(kw_only=True, init=False)
class Notification:
    """One push, as the provider means it. Identifiers are assigned by the sender, not here.

    ``payload`` is the encoded JSON (see :func:`apns_legacy.build_payload`); the
    configured byte limit (2048 by default) is checked by whoever sends it, since it
    depends on the server. ``expiry`` is UNIX seconds (0: do not store);
    ``priority`` is 10 or 5 and only travels in command 2.
    """

    token: DeviceToken = attrs.field(validator=_check_token)
    payload: bytes = attrs.field(validator=_check_payload)
    expiry: int = attrs.field(default=0, validator=_check_expiry)
    priority: int = attrs.field(default=PRIORITY_IMMEDIATE, validator=_check_priority)

    # Written out (init=False), for speed: the usual values pass one combined test,
    # anything else goes to the field validators above for their errors (see
    # _fastinit; tests/test_events.py checks that both agree).
    def __init__(
        self,
        *,
        token: DeviceToken,
        payload: bytes,
        expiry: int = 0,
        priority: int = PRIORITY_IMMEDIATE,
    ) -> None:
        if not (
            type(token) is DeviceToken
            and type(payload) is bytes
            and 0 < len(payload) <= _UINT16_MAX
            and type(expiry) is int
            and 0 <= expiry <= _UINT32_MAX
            and type(priority) is int
            and priority in (PRIORITY_IMMEDIATE, PRIORITY_CONSERVE_POWER)
        ):
            validate(self, _NOTIFICATION_FIELDS, token, payload, expiry, priority)
        _set_token(self, token)
        _set_payload(self, payload)
        _set_expiry(self, expiry)
        _set_priority(self, priority)

    @classmethod
    def for_tokens(
        cls,
        tokens: Iterable[DeviceToken | bytes],
        *,
        payload: bytes,
        expiry: int = 0,
        priority: int = PRIORITY_IMMEDIATE,
    ) -> Iterator[Notification]:
        """One notification per token, all sharing one payload: the broadcast case.

        The shared values are checked at once, here (see :class:`Broadcast`); each
        token when the iterator reaches it (raw bytes become a :class:`DeviceToken`).
        Lazy: feed it to ``Sender.submit_many`` and a million tokens never sit in
        memory as notifications at once. (``Sender.submit_broadcast`` is the faster
        path for the same thing: it makes no notification objects at all.)

        Raises:
            LocalProtocolError, TypeError: as the constructor, for the shared values
                (at once) or for a token (when the iterator reaches it).
        """
        return Broadcast(payload=payload, expiry=expiry, priority=priority).notifications(tokens)


_NOTIFICATION_FIELDS: Final[tuple[attrs.Attribute[Any], ...]] = tuple(attrs.fields(Notification))
_set_token: Final = slot_setter(Notification, "token")
_set_payload: Final = slot_setter(Notification, "payload")
_set_expiry: Final = slot_setter(Notification, "expiry")
_set_priority: Final = slot_setter(Notification, "priority")
_set_token_value: Final = slot_setter(DeviceToken, "value")
_new: Final = object.__new__


def notification_from(token: bytes, payload: bytes, expiry: int, priority: int) -> Notification:
    """``Notification(token=DeviceToken(token), payload=..., expiry=..., priority=...)``,
    from positional parts, for about half the cost: no keyword call, and one test for
    the usual values of both objects. Anything else goes through the constructors, so
    the errors are theirs (tests/test_events.py compares the two)."""
    if (
        type(token) is bytes
        and len(token) == TOKEN_LENGTH
        and type(payload) is bytes
        and 0 < len(payload) <= _UINT16_MAX
        and type(expiry) is int
        and 0 <= expiry <= _UINT32_MAX
        and type(priority) is int
        and priority in (PRIORITY_IMMEDIATE, PRIORITY_CONSERVE_POWER)
    ):
        device = _new(DeviceToken)
        _set_token_value(device, token)
        notification = _new(Notification)
        _set_token(notification, device)
        _set_payload(notification, payload)
        _set_expiry(notification, expiry)
        _set_priority(notification, priority)
        return notification
    return Notification(token=DeviceToken(token), payload=payload, expiry=expiry, priority=priority)


@attrs.frozen(kw_only=True)
class Broadcast:
    """What the notifications of a broadcast share: one payload, expiry and priority.

    Checked once, when made, as :class:`Notification` checks them. The sender's
    broadcast path (``Sender.submit_broadcast``) keeps one of these for all the devices
    and encodes their frames from it and the raw tokens; that it is one value, shared
    on purpose, is what tells the encoder that the frames differ only in token and
    identifier.
    """

    payload: bytes = attrs.field(validator=_check_payload)
    expiry: int = attrs.field(default=0, validator=_check_expiry)
    priority: int = attrs.field(default=PRIORITY_IMMEDIATE, validator=_check_priority)

    def notification(self, token: DeviceToken | bytes) -> Notification:
        """The notification of one device (raw bytes become a :class:`DeviceToken`)."""
        if not isinstance(token, DeviceToken):
            token = DeviceToken.from_bytes(token, allow_long=True)
        return Notification(
            token=token, payload=self.payload, expiry=self.expiry, priority=self.priority
        )

    def notifications(self, tokens: Iterable[DeviceToken | bytes]) -> Iterator[Notification]:
        """One notification per token, lazily."""
        for token in tokens:
            yield self.notification(token)


@attrs.frozen(kw_only=True)
class ReceivedNotification:
    """A well-formed notification as the gateway parsed it (server side).

    Fields a command does not carry are ``None``: command 0 has no identifier,
    expiry or priority; a command-2 frame may leave out items 3, 4 and 5.
    """

    command: Command
    identifier: int | None
    token: bytes
    payload: bytes
    expiry: int | None
    priority: int | None


@attrs.frozen(kw_only=True)
class BadNotification:
    """The first malformed notification on a connection (server side).

    ``status`` is what Apple's gateway answers; ``identifier`` is what goes in the
    error response (0 where none was read, and 0 for a missing or zero-length token in
    a command-2 frame, as the real gateway did; command 1 keeps its identifier). A
    server writes ``08 status identifier`` unless ``command`` is
    :attr:`Command.SIMPLE` or the byte was not a command at all, where Apple closed
    without a word. The decoder yields nothing after this event.
    """

    command: int
    status: Status
    identifier: int
    reason: str


@attrs.frozen
class ErrorResponse:
    """The gateway's 6-byte answer to a bad notification: ``08 status identifier``.

    ``status`` is a :class:`Status`, or the plain int for a code Apple never defined.
    For :attr:`Status.SHUTDOWN` the identifier names the last *accepted* notification.
    """

    status: Status | int
    identifier: int


@attrs.frozen
class FeedbackItem:
    """One feedback tuple: the app was gone from the device with ``token`` at ``timestamp``."""

    timestamp: int
    token: bytes

    @property
    def time(self) -> _dt.datetime:
        """``timestamp`` as a timezone-aware UTC datetime."""
        return _dt.datetime.fromtimestamp(self.timestamp, tz=_dt.UTC)


@attrs.frozen
class ConnectionClosed:
    """The peer closed the stream cleanly, on a frame boundary."""
