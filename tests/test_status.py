"""Status codes of the error response (PROTOCOL.md section 5)."""

from __future__ import annotations

import pytest

from apns_legacy.wire import Status, status_from_int, status_name

# Apple's table, typed from PROTOCOL.md section 5.
APPLE_TABLE = {
    0: "No errors encountered",
    1: "Processing error",
    2: "Missing device token",
    3: "Missing topic",
    4: "Missing payload",
    5: "Invalid token size",
    6: "Invalid topic size",
    7: "Invalid payload size",
    8: "Invalid token",
    10: "Shutdown",
    128: "Protocol error (APNs could not parse the notification)",
    255: "None (unknown)",
}


def test_codes_and_descriptions_match_apples_table():
    assert {int(s): s.description for s in Status} == APPLE_TABLE


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (0, "NO_ERROR"),
        (2, "MISSING_DEVICE_TOKEN"),
        (7, "INVALID_PAYLOAD_SIZE"),
        (8, "INVALID_TOKEN"),
        (10, "SHUTDOWN"),
        (128, "PROTOCOL_ERROR"),
        (255, "UNKNOWN"),
    ],
)
def test_known_codes_become_status_members(code, name):
    status = status_from_int(code)
    assert status is Status[name]
    assert isinstance(status, Status)
    assert status_name(status) == name


@pytest.mark.parametrize("code", [9, 11, 42, 127, 129, 254, 256, 512])
def test_unknown_codes_stay_plain_ints(code):
    status = status_from_int(code)
    assert status == code
    assert type(status) is int
    assert status_name(status) == f"UNKNOWN_STATUS_{code}"


def test_every_byte_value_maps_without_error():
    known = {int(s) for s in Status}
    for code in range(256):
        status = status_from_int(code)
        assert isinstance(status, Status) == (code in known)
        assert status_name(status)


def test_status_compares_as_its_code():
    assert Status.INVALID_TOKEN == 8
    assert Status(10) is Status.SHUTDOWN
