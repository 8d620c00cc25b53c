"""Values and events of the wire layer, the error classes, and import purity."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given
from strategies import notifications

from apns_legacy.wire import (
    NEED_DATA,
    PRIORITY_CONSERVE_POWER,
    PRIORITY_IMMEDIATE,
    BadNotification,
    Command,
    ConnectionClosed,
    DeviceToken,
    ErrorResponse,
    FeedbackItem,
    LocalProtocolError,
    Need,
    Notification,
    ProtocolError,
    ReceivedNotification,
    RemoteProtocolError,
    Status,
)

TOKEN = DeviceToken(bytes(range(32)))
PAYLOAD = b'{"aps":{"alert":"Hi"}}'


# -- Notification validates on construction ------------------------------------------------


def test_notification_defaults():
    n = Notification(token=TOKEN, payload=PAYLOAD)
    assert (n.expiry, n.priority) == (0, PRIORITY_IMMEDIATE) == (0, 10)
    assert PRIORITY_CONSERVE_POWER == 5


def test_notification_refuses_an_empty_payload():
    with pytest.raises(LocalProtocolError, match="empty"):
        Notification(token=TOKEN, payload=b"")


def test_notification_payload_up_to_65535_bytes():
    assert len(Notification(token=TOKEN, payload=b"x" * 0xFFFF).payload) == 0xFFFF
    with pytest.raises(LocalProtocolError, match="65535"):
        Notification(token=TOKEN, payload=b"x" * 0x10000)


@pytest.mark.parametrize("payload", ["{}", bytearray(b"{}"), memoryview(b"{}"), None])
def test_notification_payload_must_be_bytes(payload):
    with pytest.raises(TypeError, match="payload must be bytes"):
        Notification(token=TOKEN, payload=payload)


@pytest.mark.parametrize("priority", [0, 1, 4, 6, 9, 11, 255, -10])
def test_notification_priority_must_be_5_or_10(priority):
    with pytest.raises(LocalProtocolError, match="priority"):
        Notification(token=TOKEN, payload=PAYLOAD, priority=priority)


@pytest.mark.parametrize("expiry", [-1, 2**32, 2**63])
def test_notification_expiry_must_fit_uint32(expiry):
    with pytest.raises(LocalProtocolError, match="expiry"):
        Notification(token=TOKEN, payload=PAYLOAD, expiry=expiry)


@pytest.mark.parametrize("expiry", [0, 1, 2**31, 2**32 - 1])
def test_notification_expiry_range_is_inclusive(expiry):
    assert Notification(token=TOKEN, payload=PAYLOAD, expiry=expiry).expiry == expiry


@pytest.mark.parametrize("token", [bytes(range(32)), TOKEN.hex, None])
def test_notification_token_must_be_a_device_token(token):
    with pytest.raises(TypeError, match="DeviceToken"):
        Notification(token=token, payload=PAYLOAD)


def test_notification_is_frozen_and_keyword_only():
    n = Notification(token=TOKEN, payload=PAYLOAD)
    with pytest.raises(AttributeError):
        n.priority = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        Notification(TOKEN, PAYLOAD)  # type: ignore[misc]


@given(notification=notifications())
def test_generated_notifications_are_valid_values(notification):
    copy = Notification(
        token=notification.token,
        payload=notification.payload,
        expiry=notification.expiry,
        priority=notification.priority,
    )
    assert copy == notification
    assert type(notification.payload) is bytes


# -- events -------------------------------------------------------------------------------


def test_need_data_is_a_named_sentinel():
    assert NEED_DATA is Need.DATA
    assert repr(NEED_DATA) == "NEED_DATA"


def test_command_bytes():
    assert [int(c) for c in Command] == [0, 1, 2, 8]
    assert Command(2) is Command.FRAME


def test_events_are_values():
    assert ErrorResponse(Status.INVALID_TOKEN, 7) == ErrorResponse(8, 7)
    assert ConnectionClosed() == ConnectionClosed()
    a = ReceivedNotification(
        command=Command.FRAME, identifier=1, token=b"t", payload=b"p", expiry=None, priority=10
    )
    assert a == ReceivedNotification(
        command=Command.FRAME, identifier=1, token=b"t", payload=b"p", expiry=None, priority=10
    )
    bad = BadNotification(command=2, status=Status.MISSING_PAYLOAD, identifier=1, reason="no")
    with pytest.raises(AttributeError):
        bad.status = Status.INVALID_TOKEN  # type: ignore[misc]


@pytest.mark.parametrize(
    ("timestamp", "iso"),
    [
        (0, "1970-01-01T00:00:00+00:00"),
        (1300000000, "2011-03-13T07:06:40+00:00"),
        (2**32 - 1, "2106-02-07T06:28:15+00:00"),
    ],
)
def test_feedback_item_time_is_aware_utc(timestamp, iso):
    time = FeedbackItem(timestamp, b"t").time
    assert time.tzinfo is dt.UTC
    assert time.isoformat() == iso


# -- errors ----------------------------------------------------------------------------------


def test_protocol_error_is_abstract():
    with pytest.raises(TypeError, match="abstract"):
        ProtocolError("x")


def test_error_classes():
    local = LocalProtocolError("ours")
    remote = RemoteProtocolError("theirs")
    assert isinstance(local, ProtocolError)
    assert isinstance(local, ValueError)
    assert isinstance(remote, ProtocolError)
    assert not isinstance(remote, ValueError)
    assert str(local) == "ours"


# -- the wire layer is sans-IO -----------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    ["import apns_legacy.wire", "import apns_legacy", "from apns_legacy import GatewayDecoder"],
)
def test_importing_the_wire_layer_pulls_in_no_io_modules(statement):
    # The package imports its other layers lazily (PEP 562), so the codec alone
    # brings in no trio, OpenSSL or sockets.
    code = textwrap.dedent(
        f"""
        import sys
        {statement}
        import apns_legacy.wire
        assert apns_legacy.wire.GatewayDecoder
        banned = ("trio", "OpenSSL", "socket", "ssl", "cryptography", "asyncio", "select")
        print(" ".join(sorted(m for m in banned if m in sys.modules)))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_other_layers_load_on_first_use():
    code = "import sys, apns_legacy; apns_legacy.open_sender; print('trio' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.stdout.strip() == "True", result.stderr


def test_notification_refuses_float_priority_and_expiry():
    from apns_legacy import DeviceToken, Notification

    token = DeviceToken(bytes(32))
    with pytest.raises(TypeError, match="priority"):
        Notification(token=token, payload=b"{}", priority=10.0)
    with pytest.raises(TypeError, match="expiry"):
        Notification(token=token, payload=b"{}", expiry=1.5)


def test_encoders_accept_plain_int_commands():
    from apns_legacy import DeviceToken, Notification
    from apns_legacy.wire import encode_batch, encode_notification

    n = Notification(token=DeviceToken(bytes(32)), payload=b"{}")
    assert encode_notification(2, n, 7) == encode_notification(Command.FRAME, n, 7)
    assert encode_batch(1, 7, [n]) == encode_batch(Command.ENHANCED, 7, [n])


def test_for_tokens_equals_the_constructor_and_shares_the_payload():
    from apns_legacy import DeviceToken, Notification

    payload = b'{"aps":{"alert":"hi"}}'
    tokens = [bytes([i]) * 32 for i in range(3)] + [DeviceToken(bytes(40))]
    made = list(Notification.for_tokens(tokens, payload=payload, expiry=7, priority=5))
    expected = [
        Notification(
            token=t if isinstance(t, DeviceToken) else DeviceToken(t),
            payload=payload,
            expiry=7,
            priority=5,
        )
        for t in tokens
    ]
    assert made == expected
    assert all(n.payload is made[0].payload for n in made)
    assert all(type(n.token.value) is bytes for n in made)


def test_for_tokens_checks_shared_values_at_once_and_each_token_lazily():
    from apns_legacy import LocalProtocolError, Notification

    with pytest.raises(LocalProtocolError, match="priority"):
        Notification.for_tokens([], payload=b"{}", priority=7)
    made = Notification.for_tokens([bytes(32), bytes(31)], payload=b"{}")
    assert next(made).token.value == bytes(32)
    with pytest.raises(LocalProtocolError, match="31 bytes"):
        next(made)
    with pytest.raises(TypeError):
        next(Notification.for_tokens(["ab" * 32], payload=b"{}"))
