"""Incremental, sans-IO decoders: feed bytes in, take events out.

All three decoders share one shape (h11's, with websockets' explicit EOF)::

    decoder.receive_data(chunk)     # any split of the stream, in order
    decoder.receive_eof()           # the peer closed
    event = decoder.next_event()    # an event, or NEED_DATA

Any chunking of the same bytes gives the same events: a decision never depends on
where a read happened to end, only on the bytes so far.

Memory stays bounded. Each decoder holds at most one unit it is still reading, and
the gateway decoder never holds more than one command-2 *item*: items too large for
their limit, and unknown items, are skipped as they arrive rather than buffered.
That keeps the identifier of an oversized notification: node-apn and PyAPNs write
the identifier item *after* the payload, so a decoder that refused the frame from its
length alone would have to answer with identifier 0 and the sender could not tell
which notification failed. Only a frame length that no frame of five items could
reach is refused as soon as its header arrives.
"""

from __future__ import annotations

from typing import Final

import attrs

from ._errors import LocalProtocolError, RemoteProtocolError
from ._events import (
    NEED_DATA,
    BadNotification,
    Command,
    ConnectionClosed,
    ErrorResponse,
    FeedbackItem,
    Need,
    ReceivedNotification,
)
from ._frames import (
    ENHANCED_HEADER,
    ERROR_RESPONSE,
    FEEDBACK_HEADER,
    FRAME_HEADER,
    ITEM_HEADER,
    PAYLOAD_LIMIT,
    SIMPLE_HEADER,
    UINT16,
    UINT32,
    Item,
)
from ._status import Status, status_from_int
from ._tokens import MAX_LONG_TOKEN_LENGTH, TOKEN_LENGTH

GatewayEvent = ReceivedNotification | BadNotification | ConnectionClosed

# Five items of the largest size a uint16 length allows. Nothing legal is longer.
_ABSOLUTE_MAX_FRAME: Final = 5 * (ITEM_HEADER.size + 0xFFFF)
_FIXED_ITEM_LENGTHS: Final = {Item.IDENTIFIER: 4, Item.EXPIRY: 4, Item.PRIORITY: 1}


class _Decoder:
    """The buffer and EOF handling the three decoders share."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._eof = False

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes from the peer. Raises :class:`LocalProtocolError` after EOF."""
        if self._eof:
            raise LocalProtocolError("receive_data() after receive_eof()")
        self._buf += data

    def receive_eof(self) -> None:
        """Record that the peer closed its side. Idempotent."""
        self._eof = True

    @property
    def buffered(self) -> int:
        """Bytes received but not yet turned into events."""
        return len(self._buf)

    def _end_of_input(self, what: str) -> ConnectionClosed | Need:
        # Called when the buffer holds no complete unit.
        if not self._eof:
            return NEED_DATA
        if self._buf:
            raise RemoteProtocolError(
                f"connection closed with {len(self._buf)} bytes of an incomplete {what}"
            )
        return ConnectionClosed()


@attrs.define
class _FrameInProgress:
    """A command-2 frame whose items are still arriving."""

    remaining: int
    skip: int = 0
    items: dict[int, bytes] = attrs.Factory(dict)
    # Sizes of the token and payload items that were too large to keep.
    token_size: int | None = None
    payload_size: int | None = None
    problem: str | None = None


class GatewayDecoder(_Decoder):
    """The gateway's view of a provider's stream: commands 0, 1 and 2 (server side).

    Yields :class:`ReceivedNotification` for each good notification, then at most one
    :class:`BadNotification` (after which :meth:`next_event` raises
    :class:`LocalProtocolError`: the gateway must answer and close, and everything
    after the bad notification is discarded, as Apple's gateway did), or
    :class:`ConnectionClosed` at a clean EOF.

    Args:
        payload_limit: largest payload in bytes (2048; 256 for the pre-iOS 8 era).
        max_token_length: 32, or up to 100 to accept long tokens (32 is the minimum).

    Raises (from :meth:`next_event`):
        RemoteProtocolError: EOF in the middle of a frame.
    """

    def __init__(
        self, *, payload_limit: int = PAYLOAD_LIMIT, max_token_length: int = TOKEN_LENGTH
    ) -> None:
        super().__init__()
        if not 1 <= payload_limit <= 0xFFFF:
            raise LocalProtocolError(f"payload_limit {payload_limit} is outside 1..65535")
        if not TOKEN_LENGTH <= max_token_length <= MAX_LONG_TOKEN_LENGTH:
            raise LocalProtocolError(
                f"max_token_length {max_token_length} is outside "
                f"{TOKEN_LENGTH}..{MAX_LONG_TOKEN_LENGTH}"
            )
        self.payload_limit = payload_limit
        self.max_token_length = max_token_length
        self._frame: _FrameInProgress | None = None
        self._ended = False

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes from the provider; after a :class:`BadNotification` they are dropped.

        Raises :class:`LocalProtocolError` after EOF.
        """
        if self._ended and not self._eof:
            # Apple discarded everything after the bad notification; so do we, rather
            # than hold whatever the client sends until the server gets round to closing.
            return
        super().receive_data(data)

    def next_event(self) -> GatewayEvent | Need:
        if self._ended:
            raise LocalProtocolError("the decoder ended with a bad notification")
        if self._frame is not None:
            return self._continue_frame(self._frame)
        buf = self._buf
        if not buf:
            return self._end_of_input("frame")
        command = buf[0]
        if command == Command.FRAME:
            return self._start_frame()
        if command == Command.ENHANCED:
            return self._read_legacy(Command.ENHANCED, ENHANCED_HEADER.size)
        if command == Command.SIMPLE:
            return self._read_legacy(Command.SIMPLE, SIMPLE_HEADER.size)
        return self._bad(command, Status.PROTOCOL_ERROR, 0, f"unknown command byte 0x{command:02x}")

    # -- commands 0 and 1 ------------------------------------------------------------

    def _read_legacy(self, command: Command, header_size: int) -> GatewayEvent | Need:
        # Both layouts end their fixed header with the token length, and continue
        # with token, payload length, payload; command 1 adds identifier and expiry.
        buf = self._buf
        if len(buf) < header_size:
            return self._end_of_input("frame")
        identifier: int | None
        expiry: int | None
        if command == Command.ENHANCED:
            _, identifier, expiry, token_length = ENHANCED_HEADER.unpack_from(buf)
        else:
            _, token_length = SIMPLE_HEADER.unpack_from(buf)
            identifier = expiry = None
        error_id = identifier or 0
        if token_length == 0:
            return self._bad(command, Status.MISSING_DEVICE_TOKEN, error_id, "token length is 0")
        if not TOKEN_LENGTH <= token_length <= self.max_token_length:
            return self._bad(
                command,
                Status.INVALID_TOKEN_SIZE,
                error_id,
                f"token length {token_length} is not {self._token_rule()}",
            )
        payload_at = header_size + token_length + UINT16.size
        if len(buf) < payload_at:
            return self._end_of_input("frame")
        (payload_length,) = UINT16.unpack_from(buf, payload_at - UINT16.size)
        if payload_length == 0:
            return self._bad(command, Status.MISSING_PAYLOAD, error_id, "payload length is 0")
        if payload_length > self.payload_limit:
            return self._bad(
                command,
                Status.INVALID_PAYLOAD_SIZE,
                error_id,
                f"payload length {payload_length} is over the limit of {self.payload_limit}",
            )
        end = payload_at + payload_length
        if len(buf) < end:
            return self._end_of_input("frame")
        event = ReceivedNotification(
            command=command,
            identifier=identifier,
            token=bytes(buf[header_size : header_size + token_length]),
            payload=bytes(buf[payload_at:end]),
            expiry=expiry,
            priority=None,
        )
        del buf[:end]
        return event

    # -- command 2 -------------------------------------------------------------------

    def _start_frame(self) -> GatewayEvent | Need:
        buf = self._buf
        if len(buf) < FRAME_HEADER.size:
            return self._end_of_input("frame header")
        _, length = FRAME_HEADER.unpack_from(buf)
        if length > _ABSOLUTE_MAX_FRAME:
            return self._bad(
                Command.FRAME,
                Status.PROTOCOL_ERROR,
                0,
                f"frame length {length} is over {_ABSOLUTE_MAX_FRAME}, which no frame of "
                "five items can reach",
            )
        del buf[: FRAME_HEADER.size]
        self._frame = _FrameInProgress(remaining=length)
        return self._continue_frame(self._frame)

    def _continue_frame(self, frame: _FrameInProgress) -> GatewayEvent | Need:
        buf = self._buf
        pos = 0  # bytes of buf consumed in this call; deleted once on the way out
        try:
            while True:
                if frame.skip:
                    n = min(frame.skip, len(buf) - pos)
                    pos += n
                    frame.skip -= n
                    frame.remaining -= n
                    if frame.skip:
                        return self._frame_needs_data()
                if frame.remaining == 0:
                    self._frame = None
                    return self._finish_frame(frame)
                if frame.remaining < ITEM_HEADER.size:
                    frame.problem = frame.problem or "frame ends inside an item header"
                    frame.skip = frame.remaining
                    continue
                if len(buf) - pos < ITEM_HEADER.size:
                    return self._frame_needs_data()
                item_id, size = ITEM_HEADER.unpack_from(buf, pos)
                if size > frame.remaining - ITEM_HEADER.size:
                    # The item overruns its frame: the framing itself is lost.
                    self._frame = None
                    return self._bad(
                        Command.FRAME,
                        Status.PROTOCOL_ERROR,
                        _identifier_of(frame),
                        f"item {item_id} of {size} bytes overruns the frame",
                    )
                if not self._keeps_item(frame, item_id, size):
                    pos += ITEM_HEADER.size
                    frame.remaining -= ITEM_HEADER.size
                    frame.skip = size
                    continue
                end = pos + ITEM_HEADER.size + size
                if len(buf) < end:
                    return self._frame_needs_data()
                frame.items[item_id] = bytes(buf[pos + ITEM_HEADER.size : end])
                frame.remaining -= ITEM_HEADER.size + size
                pos = end
        finally:
            del buf[:pos]

    def _frame_needs_data(self) -> Need:
        if self._eof:
            raise RemoteProtocolError("connection closed in the middle of a command-2 frame")
        return NEED_DATA

    def _keeps_item(self, frame: _FrameInProgress, item_id: int, size: int) -> bool:
        # Decide, from the item header alone, whether to buffer the item's data.
        # Anything not kept is skipped byte by byte and remembered as a problem.
        if item_id in frame.items or (
            (item_id == Item.TOKEN and frame.token_size is not None)
            or (item_id == Item.PAYLOAD and frame.payload_size is not None)
        ):
            frame.problem = frame.problem or f"item {item_id} appears twice"
            return False
        if item_id == Item.TOKEN:
            if size > self.max_token_length:
                frame.token_size = size
                return False
            return True
        if item_id == Item.PAYLOAD:
            if size > self.payload_limit:
                frame.payload_size = size
                return False
            return True
        expected = _FIXED_ITEM_LENGTHS.get(item_id)
        if expected is None:
            frame.problem = frame.problem or f"unknown item id {item_id}"
            return False
        if size != expected:
            frame.problem = frame.problem or f"item {item_id} is {size} bytes, not {expected}"
            return False
        return True

    def _finish_frame(self, frame: _FrameInProgress) -> GatewayEvent:
        # Checks in a fixed order, most specific first; the first failing one answers.
        items = frame.items
        identifier = _identifier_of(frame)
        token = items.get(Item.TOKEN)
        payload = items.get(Item.PAYLOAD)
        if frame.token_size is None and not token:
            # Real APNs answered a missing or empty token with identifier 0, wherever
            # the identifier item sat (node-apn #149; pushy 0.4 KnownBadPushNotification).
            return self._bad(Command.FRAME, Status.MISSING_DEVICE_TOKEN, 0, "no device token")
        token_size = frame.token_size if frame.token_size is not None else len(token or b"")
        if not TOKEN_LENGTH <= token_size <= self.max_token_length:
            return self._bad(
                Command.FRAME,
                Status.INVALID_TOKEN_SIZE,
                identifier,
                f"token is {token_size} bytes, not {self._token_rule()}",
            )
        if frame.payload_size is not None:
            return self._bad(
                Command.FRAME,
                Status.INVALID_PAYLOAD_SIZE,
                identifier,
                f"payload is {frame.payload_size} bytes, over the limit of {self.payload_limit}",
            )
        if not payload:
            return self._bad(Command.FRAME, Status.MISSING_PAYLOAD, identifier, "no payload")
        priority_item = items.get(Item.PRIORITY)
        priority = priority_item[0] if priority_item is not None else None
        if frame.problem is None and priority not in (None, 5, 10):
            frame.problem = f"priority {priority} is neither 5 nor 10"
        if frame.problem is not None:
            return self._bad(Command.FRAME, Status.PROTOCOL_ERROR, identifier, frame.problem)
        expiry_item = items.get(Item.EXPIRY)
        assert token is not None
        return ReceivedNotification(
            command=Command.FRAME,
            identifier=(
                UINT32.unpack(items[Item.IDENTIFIER])[0] if Item.IDENTIFIER in items else None
            ),
            token=token,
            payload=payload,
            expiry=UINT32.unpack(expiry_item)[0] if expiry_item is not None else None,
            priority=priority,
        )

    # -- shared ------------------------------------------------------------------------

    def _token_rule(self) -> str:
        if self.max_token_length == TOKEN_LENGTH:
            return f"{TOKEN_LENGTH}"
        return f"{TOKEN_LENGTH} to {self.max_token_length}"

    def _bad(self, command: int, status: Status, identifier: int, reason: str) -> BadNotification:
        self._ended = True
        self._buf.clear()
        return BadNotification(command=command, status=status, identifier=identifier, reason=reason)


def _identifier_of(frame: _FrameInProgress) -> int:
    raw = frame.items.get(Item.IDENTIFIER)
    return UINT32.unpack(raw)[0] if raw is not None else 0


class ErrorResponseDecoder(_Decoder):
    """The provider's view of the gateway's stream: 6-byte error responses (client side).

    The bytes may arrive in pieces, or together with the close. Yields
    :class:`ErrorResponse`, then :class:`ConnectionClosed` at EOF.

    Raises (from :meth:`next_event`):
        RemoteProtocolError: a first byte other than 8, or EOF inside the 6 bytes.
    """

    def next_event(self) -> ErrorResponse | ConnectionClosed | Need:
        buf = self._buf
        if buf and buf[0] != Command.ERROR_RESPONSE:
            raise RemoteProtocolError(
                f"gateway sent command byte 0x{buf[0]:02x}; only 0x08 (error response) is defined"
            )
        if len(buf) < ERROR_RESPONSE.size:
            return self._end_of_input("error response")
        _, status, identifier = ERROR_RESPONSE.unpack_from(buf)
        del buf[: ERROR_RESPONSE.size]
        return ErrorResponse(status_from_int(status), identifier)


class FeedbackDecoder(_Decoder):
    """The feedback service's stream of ``timestamp | token length | token`` tuples.

    Honours the length field (lengths 1 to 100) rather than assuming 38-byte records.

    Raises (from :meth:`next_event`):
        RemoteProtocolError: a token length of 0 or over 100, or EOF inside a tuple.
    """

    def next_event(self) -> FeedbackItem | ConnectionClosed | Need:
        buf = self._buf
        if len(buf) < FEEDBACK_HEADER.size:
            return self._end_of_input("feedback tuple")
        timestamp, token_length = FEEDBACK_HEADER.unpack_from(buf)
        if not 1 <= token_length <= MAX_LONG_TOKEN_LENGTH:
            raise RemoteProtocolError(
                f"feedback tuple has token length {token_length}; expected 1 to "
                f"{MAX_LONG_TOKEN_LENGTH}"
            )
        end = FEEDBACK_HEADER.size + token_length
        if len(buf) < end:
            return self._end_of_input("feedback tuple")
        token = bytes(buf[FEEDBACK_HEADER.size : end])
        del buf[:end]
        return FeedbackItem(timestamp, token)
