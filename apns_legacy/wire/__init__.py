"""The wire layer: byte layouts, encoders and incremental decoders. Sans-IO and pure.

Nothing here imports trio, sockets or OpenSSL, or reads a clock.
"""

from __future__ import annotations

from ._decoders import ErrorResponseDecoder, FeedbackDecoder, GatewayDecoder, GatewayEvent
from ._errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from ._events import (
    NEED_DATA,
    PRIORITY_CONSERVE_POWER,
    PRIORITY_IMMEDIATE,
    BadNotification,
    Broadcast,
    Command,
    ConnectionClosed,
    ErrorResponse,
    FeedbackItem,
    Need,
    Notification,
    ReceivedNotification,
)
from ._frames import (
    ERROR_RESPONSE_SIZE,
    OLD_PAYLOAD_LIMIT,
    PAYLOAD_LIMIT,
    VOIP_PAYLOAD_LIMIT,
    Item,
    encode_batch,
    encode_broadcast,
    encode_enhanced,
    encode_error_response,
    encode_feedback_item,
    encode_frame,
    encode_frame_items,
    encode_item,
    encode_notification,
    encode_probe,
    encode_simple,
    max_frame_length,
)
from ._payload import Alert, PayloadTooLargeError, build_payload, pass_payload, raw_payload
from ._status import Status, status_from_int, status_name
from ._tokens import MAX_LONG_TOKEN_LENGTH, TOKEN_LENGTH, DeviceToken, check_token_length

__all__ = [
    # errors
    "ProtocolError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "PayloadTooLargeError",
    # values and events
    "Command",
    "DeviceToken",
    "Notification",
    "Broadcast",
    "ReceivedNotification",
    "BadNotification",
    "ErrorResponse",
    "FeedbackItem",
    "ConnectionClosed",
    "Need",
    "NEED_DATA",
    "Status",
    "status_from_int",
    "status_name",
    "PRIORITY_IMMEDIATE",
    "PRIORITY_CONSERVE_POWER",
    "TOKEN_LENGTH",
    "MAX_LONG_TOKEN_LENGTH",
    "check_token_length",
    "PAYLOAD_LIMIT",
    "OLD_PAYLOAD_LIMIT",
    "VOIP_PAYLOAD_LIMIT",
    "ERROR_RESPONSE_SIZE",
    # encoders
    "Item",
    "encode_simple",
    "encode_enhanced",
    "encode_frame",
    "encode_item",
    "encode_frame_items",
    "encode_notification",
    "encode_batch",
    "encode_broadcast",
    "encode_probe",
    "encode_error_response",
    "encode_feedback_item",
    "max_frame_length",
    # payloads
    "Alert",
    "build_payload",
    "pass_payload",
    "raw_payload",
    # decoders
    "GatewayDecoder",
    "GatewayEvent",
    "ErrorResponseDecoder",
    "FeedbackDecoder",
]
