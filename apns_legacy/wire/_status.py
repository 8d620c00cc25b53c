"""Status codes of the 6-byte error response (PROTOCOL.md section 5)."""

from __future__ import annotations

import enum
from typing import Final


class Status(enum.IntEnum):
    """A status code from Apple's table; ``description`` is Apple's text for it."""

    #: "No errors encountered" (java-apns saw it for a malformed command 0 in enhanced mode).
    NO_ERROR = 0
    #: Apple-side and transient.
    PROCESSING_ERROR = 1
    #: Also what a zero-length token gives, with identifier 0.
    MISSING_DEVICE_TOKEN = 2
    MISSING_TOPIC = 3
    MISSING_PAYLOAD = 4
    INVALID_TOKEN_SIZE = 5
    INVALID_TOPIC_SIZE = 6
    INVALID_PAYLOAD_SIZE = 7
    #: Includes a token of the other environment.
    INVALID_TOKEN = 8
    #: The identifier names the last notification that was *accepted*; the rest must be resent.
    SHUTDOWN = 10
    #: Only in Apple's 2017-18 table; older gateways closed silently instead.
    PROTOCOL_ERROR = 128
    UNKNOWN = 255

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]


_DESCRIPTIONS: Final = {
    Status.NO_ERROR: "No errors encountered",
    Status.PROCESSING_ERROR: "Processing error",
    Status.MISSING_DEVICE_TOKEN: "Missing device token",
    Status.MISSING_TOPIC: "Missing topic",
    Status.MISSING_PAYLOAD: "Missing payload",
    Status.INVALID_TOKEN_SIZE: "Invalid token size",
    Status.INVALID_TOPIC_SIZE: "Invalid topic size",
    Status.INVALID_PAYLOAD_SIZE: "Invalid payload size",
    Status.INVALID_TOKEN: "Invalid token",
    Status.SHUTDOWN: "Shutdown",
    Status.PROTOCOL_ERROR: "Protocol error (APNs could not parse the notification)",
    Status.UNKNOWN: "None (unknown)",
}


def status_from_int(value: int) -> Status | int:
    """The :class:`Status` for ``value``, or the plain int for a code Apple never defined."""
    try:
        return Status(value)
    except ValueError:
        return value


def status_name(value: Status | int) -> str:
    """``INVALID_TOKEN`` for a known code, ``UNKNOWN_STATUS_42`` for an unknown one."""
    known = status_from_int(int(value))
    return known.name if isinstance(known, Status) else f"UNKNOWN_STATUS_{int(value)}"
