"""Byte layouts and pure encoders (PROTOCOL.md sections 2-5 and 8). Big-endian throughout.

Encoders check every length against its field and raise :class:`LocalProtocolError`
before producing a byte. They do not check the *configured* limits (payload 2048,
token 32): those belong to whoever sends, see :class:`apns_legacy.Limits`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Final

from ._errors import LocalProtocolError
from ._events import Command, Notification
from ._status import Status

# Command 0: command, token length, token, payload length, payload.
SIMPLE_HEADER: Final = struct.Struct("!BH")
# Command 1: command, identifier, expiry, token length (token and payload follow).
ENHANCED_HEADER: Final = struct.Struct("!BIIH")
# Command 2: command, frame length (items follow).
FRAME_HEADER: Final = struct.Struct("!BI")
# One item of a command-2 frame: item id, item data length.
ITEM_HEADER: Final = struct.Struct("!BH")
# The error response: command 8, status, identifier.
ERROR_RESPONSE: Final = struct.Struct("!BBI")
# A feedback tuple's fixed part: timestamp, token length.
FEEDBACK_HEADER: Final = struct.Struct("!IH")
UINT16: Final = struct.Struct("!H")
# Items 4 and 5 of a frame, as the tail of the broadcast fast path writes them.
_EXPIRY_PRIORITY: Final = struct.Struct("!BHIBHB")
UINT32: Final = struct.Struct("!I")

ERROR_RESPONSE_SIZE: Final = ERROR_RESPONSE.size  # 6


class Item:
    """Item ids of a command-2 frame."""

    TOKEN: Final = 1
    PAYLOAD: Final = 2
    IDENTIFIER: Final = 3
    EXPIRY: Final = 4
    PRIORITY: Final = 5


#: The default payload limit since iOS 8 (2014).
PAYLOAD_LIMIT: Final = 2048
#: The payload limit before iOS 8.
OLD_PAYLOAD_LIMIT: Final = 256
#: What node-apn allowed for VoIP pushes on the binary interface (a library claim).
VOIP_PAYLOAD_LIMIT: Final = 4096

_UINT16_MAX: Final = 0xFFFF
_UINT32_MAX: Final = 0xFFFF_FFFF


def max_frame_length(*, payload_limit: int, max_token_length: int) -> int:
    """Largest legal command-2 frame length (the 4-byte field) under these limits."""
    return ITEM_HEADER.size * 5 + max_token_length + payload_limit + 4 + 4 + 1


def _check_field(name: str, value: bytes, limit: int = _UINT16_MAX) -> None:
    if len(value) > limit:
        raise LocalProtocolError(f"{name} is {len(value)} bytes; the field holds at most {limit}")


def _check_uint32(name: str, value: int) -> None:
    if not 0 <= value <= _UINT32_MAX:
        raise LocalProtocolError(f"{name} {value} does not fit in 4 bytes (0..{_UINT32_MAX})")


def encode_simple(token: bytes, payload: bytes) -> bytes:
    """Command 0: ``00 | token length | token | payload length | payload``."""
    _check_field("token", token)
    _check_field("payload", payload)
    return b"".join(
        (SIMPLE_HEADER.pack(Command.SIMPLE, len(token)), token, UINT16.pack(len(payload)), payload)
    )


def encode_enhanced(identifier: int, expiry: int, token: bytes, payload: bytes) -> bytes:
    """Command 1: ``01 | identifier | expiry | token length | token | payload length | payload``."""
    _check_uint32("identifier", identifier)
    _check_uint32("expiry", expiry)
    _check_field("token", token)
    _check_field("payload", payload)
    return b"".join(
        (
            ENHANCED_HEADER.pack(Command.ENHANCED, identifier, expiry, len(token)),
            token,
            UINT16.pack(len(payload)),
            payload,
        )
    )


# Layouts of whole command-2 frames (all five items, in the order 1-5) by token and
# payload length, so that a frame is one pack call. A handful in practice; cleared if
# it ever grows past 4096.
_FRAME_STRUCTS: Final[dict[tuple[int, int], struct.Struct]] = {}


def _frame_struct(token_length: int, payload_length: int) -> struct.Struct:
    if len(_FRAME_STRUCTS) >= 4096:
        _FRAME_STRUCTS.clear()
    layout = struct.Struct(f"!BIBH{token_length}sBH{payload_length}sBHIBHIBHB")
    _FRAME_STRUCTS[token_length, payload_length] = layout
    return layout


def _full_frame_struct(token_length: int, payload_length: int) -> struct.Struct:
    return _FRAME_STRUCTS.get((token_length, payload_length)) or _frame_struct(
        token_length, payload_length
    )


def encode_frame(
    identifier: int | None,
    token: bytes,
    payload: bytes,
    expiry: int | None = 0,
    priority: int | None = 10,
) -> bytes:
    """Command 2 with items 1-5 in that order; an argument given as ``None`` leaves its item out.

    ``02 | length | 01 len token | 02 len payload | 03 0004 id | 04 0004 expiry | 05 0001 prio``
    """
    _check_field("token", token)
    _check_field("payload", payload)
    if identifier is not None and expiry is not None and priority is not None:
        _check_uint32("identifier", identifier)
        _check_uint32("expiry", expiry)
        if not 0 <= priority <= 0xFF:
            raise LocalProtocolError(f"priority {priority} does not fit in one byte")
        t, p = len(token), len(payload)
        return _full_frame_struct(t, p).pack(
            Command.FRAME, 3 * 5 + t + p + 9,
            Item.TOKEN, t, token,
            Item.PAYLOAD, p, payload,
            Item.IDENTIFIER, 4, identifier,
            Item.EXPIRY, 4, expiry,
            Item.PRIORITY, 1, priority,
        )  # fmt: skip
    items = [encode_item(Item.TOKEN, token), encode_item(Item.PAYLOAD, payload)]
    if identifier is not None:
        _check_uint32("identifier", identifier)
        items.append(encode_item(Item.IDENTIFIER, UINT32.pack(identifier)))
    if expiry is not None:
        _check_uint32("expiry", expiry)
        items.append(encode_item(Item.EXPIRY, UINT32.pack(expiry)))
    if priority is not None:
        if not 0 <= priority <= 0xFF:
            raise LocalProtocolError(f"priority {priority} does not fit in one byte")
        items.append(encode_item(Item.PRIORITY, bytes([priority])))
    return encode_frame_items(items)


def encode_item(item_id: int, data: bytes) -> bytes:
    """One command-2 item: ``id | length | data``. For tests and odd frames."""
    _check_field(f"item {item_id}", data)
    return ITEM_HEADER.pack(item_id, len(data)) + data


def encode_frame_items(items: list[bytes]) -> bytes:
    """A command-2 frame around already-encoded items (any order, any items)."""
    body = b"".join(items)
    return FRAME_HEADER.pack(Command.FRAME, len(body)) + body


def encode_notification(command: Command, notification: Notification, identifier: int) -> bytes:
    """Encode ``notification`` as ``command``. Command 0 carries no identifier or expiry."""
    token = notification.token.value
    if command == Command.FRAME:
        return encode_frame(
            identifier, token, notification.payload, notification.expiry, notification.priority
        )
    if command == Command.ENHANCED:
        return encode_enhanced(identifier, notification.expiry, token, notification.payload)
    if command == Command.SIMPLE:
        return encode_simple(token, notification.payload)
    raise LocalProtocolError(f"command {command!r} does not carry notifications")


def encode_broadcast(
    first_identifier: int,
    tokens: Sequence[bytes],
    payload: bytes,
    expiry: int = 0,
    priority: int = 10,
) -> bytes:
    """Command-2 frames of one payload to many tokens, identifiers counting up, joined.

    The frames are the same bytes but for the token and the identifier, so the batch
    is one list of the shared pieces with the tokens and identifiers slotted in by
    slice assignment, joined once: about half the cost of packing each frame.

    Raises:
        LocalProtocolError: tokens of different lengths, or a value that does not
            fit its field.
    """
    if not tokens:
        return b""
    t = len(tokens[0])
    if not all(len(token) == t for token in tokens):
        raise LocalProtocolError("encode_broadcast needs tokens of one length")
    _check_field("token", tokens[0])
    _check_field("payload", payload)
    _check_uint32("identifier", first_identifier)
    _check_uint32("identifier", first_identifier + len(tokens) - 1)
    _check_uint32("expiry", expiry)
    if not 0 <= priority <= 0xFF:
        raise LocalProtocolError(f"priority {priority} does not fit in one byte")
    return _frames_for_tokens(first_identifier, tokens, payload, expiry, priority)


def _frames_for_tokens(
    first_identifier: int, tokens: Sequence[bytes], payload: bytes, expiry: int, priority: int
) -> bytes:
    count = len(tokens)
    t, p = len(tokens[0]), len(payload)
    before_token = FRAME_HEADER.pack(Command.FRAME, 3 * 5 + t + p + 9) + ITEM_HEADER.pack(
        Item.TOKEN, t
    )
    before_id = ITEM_HEADER.pack(Item.PAYLOAD, p) + payload + ITEM_HEADER.pack(Item.IDENTIFIER, 4)
    after_id = _EXPIRY_PRIORITY.pack(Item.EXPIRY, 4, expiry, Item.PRIORITY, 1, priority)
    identifiers = struct.pack(f"!{count}I", *range(first_identifier, first_identifier + count))
    parts = [before_token, b"", before_id, b"", after_id] * count
    parts[1::5] = tokens
    parts[3::5] = [identifiers[i : i + 4] for i in range(0, 4 * count, 4)]
    return b"".join(parts)


# encode_batch's command-2 frames, as seven pieces: the bytes before the token (frame
# header and item 1's header), the token, item 2's header, the payload, item 3's
# header, the identifier, and items 4 and 5 (built once per expiry and priority). By
# token and payload length: the pack function and the two headers. Cleared if it
# ever grows past 4096 entries.
_BatchLayout = tuple[Callable[..., bytes], bytes, bytes]
_BATCH_LAYOUTS: Final[dict[tuple[int, int], _BatchLayout]] = {}
_IDENTIFIER_ITEM: Final = ITEM_HEADER.pack(Item.IDENTIFIER, 4)
# What encode_batch's loop starts from (replaced at its first notification).
_NO_LAYOUT: Final = (struct.Struct("!0s").pack, b"", b"", b"")


def _batch_layout(token_length: int, payload_length: int) -> _BatchLayout:
    if len(_BATCH_LAYOUTS) >= 4096:
        _BATCH_LAYOUTS.clear()
    t, p = token_length, payload_length
    head = FRAME_HEADER.pack(Command.FRAME, 3 * 5 + t + p + 9) + ITEM_HEADER.pack(Item.TOKEN, t)
    item = ITEM_HEADER.size
    pieces = struct.Struct(f"!{len(head)}s{t}s{item}s{p}s{item}sI{_EXPIRY_PRIORITY.size}s")
    entry = (pieces.pack, head, ITEM_HEADER.pack(Item.PAYLOAD, p))
    _BATCH_LAYOUTS[t, p] = entry
    return entry


def encode_batch(
    command: Command, first_identifier: int, notifications: Sequence[Notification]
) -> bytes:
    """Frames for ``notifications[i]`` with identifier ``first_identifier + i``, joined.

    The sender's hot path: a :class:`Notification` was validated when it was built,
    so only the identifiers are checked here, once for the whole range.
    """
    _check_uint32("identifier", first_identifier)
    _check_uint32("identifier", first_identifier + max(len(notifications) - 1, 0))
    if command == Command.FRAME:
        parts: list[bytes] = []
        append = parts.append
        layouts = _BATCH_LAYOUTS
        identifier = first_identifier
        # Notifications in bulk are alike: the layout (by token and payload length) and
        # the tail (by expiry and priority) are looked up only when they change.
        last_t = last_p = last_expiry = last_priority = -1
        pack, head, middle, tail = _NO_LAYOUT
        for n in notifications:
            token = n.token.value
            payload = n.payload
            t = len(token)
            p = len(payload)
            if p != last_p or t != last_t:
                last_t, last_p = t, p
                pack, head, middle = layouts.get((t, p)) or _batch_layout(t, p)
            expiry = n.expiry
            priority = n.priority
            if expiry != last_expiry or priority != last_priority:
                last_expiry, last_priority = expiry, priority
                tail = _EXPIRY_PRIORITY.pack(Item.EXPIRY, 4, expiry, Item.PRIORITY, 1, priority)
            append(pack(head, token, middle, payload, _IDENTIFIER_ITEM, identifier, tail))
            identifier += 1
        return b"".join(parts)
    return b"".join(
        encode_notification(command, n, first_identifier + i) for i, n in enumerate(notifications)
    )


def encode_probe(command: Command, identifier: int) -> bytes:
    """A deliberately bad notification: a zero-length token and a one-byte payload.

    The gateway answers it with status 2 (missing device token) and closes, which
    proves that everything written before it on the connection was processed (the
    technique of Pushy 0.x). Real gateways answered a zero-length token in a command-2
    frame with identifier **0**, not the probe's identifier; expect either.
    Command 0 has no error response, so it cannot be probed.
    """
    if command == Command.FRAME:
        return encode_frame(identifier, b"", b"{}", 0, 10)
    if command == Command.ENHANCED:
        return encode_enhanced(identifier, 0, b"", b"{}")
    raise LocalProtocolError("command 0 has no error response, so it cannot be probed")


def encode_error_response(status: Status | int, identifier: int) -> bytes:
    """``08 | status | identifier``: 6 bytes."""
    if not 0 <= status <= 0xFF:
        raise LocalProtocolError(f"status {status} does not fit in one byte")
    _check_uint32("identifier", identifier)
    return ERROR_RESPONSE.pack(Command.ERROR_RESPONSE, status, identifier)


def encode_feedback_item(timestamp: int, token: bytes) -> bytes:
    """One feedback tuple: ``timestamp | token length | token``."""
    _check_uint32("timestamp", timestamp)
    _check_field("token", token)
    return FEEDBACK_HEADER.pack(timestamp, len(token)) + token
