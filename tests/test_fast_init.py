"""The hand-written constructors of Notification and DeviceToken agree with attrs' own.

Both classes write their ``__init__`` out for speed (wire/_fastinit.py). The reference
here is what attrs generates for the same fields and validators (``attrs.make_class``),
so any value the fast test lets through that a validator would refuse, or an error
that differs in type, message or order, fails.
"""

from __future__ import annotations

import inspect
import weakref
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from apns_legacy.wire import (
    PRIORITY_IMMEDIATE,
    DeviceToken,
    LocalProtocolError,
    Notification,
    check_token_length,
)


def attrs_twin(cls: type, *, kw_only: bool) -> type:
    """A class with ``cls``'s fields and validators and attrs' generated __init__."""
    fields = {
        f.name: attrs.field(default=f.default, validator=f.validator, kw_only=kw_only)
        for f in attrs.fields(cls)
    }
    return attrs.make_class(f"Attrs{cls.__name__}", fields, frozen=True)


ReferenceNotification = attrs_twin(Notification, kw_only=True)
ReferenceToken = attrs_twin(DeviceToken, kw_only=False)


class TokenSubclass(DeviceToken):
    pass


def outcome(make: Any, *args: Any, **kwargs: Any) -> tuple[str, Any]:
    try:
        made = make(*args, **kwargs)
    except (TypeError, LocalProtocolError) as exc:
        return ("error", (type(exc), str(exc)))
    return ("made", attrs.astuple(made, recurse=False))


token_values = st.one_of(
    st.binary(min_size=30, max_size=102),
    st.builds(DeviceToken, st.binary(min_size=32, max_size=100)),
    st.builds(TokenSubclass, st.binary(min_size=32, max_size=100)),
    st.sampled_from([None, "a1" * 32, 0, bytearray(32)]),
)
payload_values = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"", b"x" * 0xFFFF, b"x" * 0x10000, "{}", bytearray(b"{}"), None, 5]),
)
int_like = st.one_of(
    st.integers(min_value=-3, max_value=12),
    st.integers(min_value=0xFFFF_FFFE, max_value=0x1_0000_0001),
    st.sampled_from([True, False, 10.0, 5.0, 1.5, None, "10"]),
)


@given(token=token_values, payload=payload_values, expiry=int_like, priority=int_like)
def test_notification_agrees_with_attrs_generated_init(token, payload, expiry, priority):
    args = {"token": token, "payload": payload, "expiry": expiry, "priority": priority}
    assert outcome(Notification, **args) == outcome(ReferenceNotification, **args)


@given(token=token_values, payload=payload_values)
def test_notification_defaults_agree_with_attrs_generated_init(token, payload):
    args = {"token": token, "payload": payload}
    assert outcome(Notification, **args) == outcome(ReferenceNotification, **args)


def test_the_first_bad_field_in_field_order_names_the_error():
    with pytest.raises(TypeError, match="token must be a DeviceToken"):
        Notification(token=b"x" * 32, payload=b"", expiry=-1, priority=7)  # type: ignore[arg-type]
    token = DeviceToken(bytes(32))
    with pytest.raises(LocalProtocolError, match="payload is empty"):
        Notification(token=token, payload=b"", expiry=-1, priority=7)
    with pytest.raises(LocalProtocolError, match="expiry -1"):
        Notification(token=token, payload=b"{}", expiry=-1, priority=7)
    with pytest.raises(LocalProtocolError, match="priority must be 10 or 5, not 7"):
        Notification(token=token, payload=b"{}", priority=7)


EDGES = [bytes(n) for n in (0, 31, 32, 33, 99, 100, 101)]


@given(value=st.one_of(st.binary(max_size=110), st.sampled_from([*EDGES, "a1" * 32, None, 32])))
def test_device_token_agrees_with_attrs_generated_init(value):
    assert outcome(DeviceToken, value) == outcome(ReferenceToken, value)


def reference_from_bytes(value: Any, *, allow_long: bool = False) -> DeviceToken:
    """DeviceToken.from_bytes as it was written before its fast path."""
    value = bytes(memoryview(value))
    check_token_length(len(value), allow_long=allow_long)
    return DeviceToken(value)


@given(
    value=st.one_of(
        st.binary(max_size=110),
        st.sampled_from(EDGES),
        st.binary(min_size=32, max_size=40).map(bytearray),
        st.binary(min_size=32, max_size=40).map(memoryview),
        st.sampled_from([32, "a1" * 32, None]),
    ),
    allow_long=st.booleans(),
)
def test_from_bytes_agrees_with_its_reference(value, allow_long):
    def run(make: Any) -> tuple[str, Any]:
        try:
            return ("made", make(value, allow_long=allow_long))
        except (TypeError, LocalProtocolError) as exc:
            return ("error", (type(exc), str(exc)))

    assert run(DeviceToken.from_bytes) == run(reference_from_bytes)


def test_signature_defaults_are_the_fields_defaults():
    parameters = inspect.signature(Notification.__init__).parameters
    for field in attrs.fields(Notification):
        parameter = parameters[field.name]
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY
        expected = inspect.Parameter.empty if field.default is attrs.NOTHING else field.default
        assert parameter.default == expected
    assert Notification(token=DeviceToken(bytes(32)), payload=b"{}").priority == PRIORITY_IMMEDIATE


def test_attrs_machinery_still_works():
    token = DeviceToken(bytes(range(32)))
    n = Notification(token=token, payload=b"{}")
    changed = attrs.evolve(n, expiry=5)
    assert changed.expiry == 5
    assert changed.token is token
    with pytest.raises(LocalProtocolError, match="priority must be 10 or 5"):
        attrs.evolve(n, priority=1)
    attrs.validate(n)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        n.expiry = 3  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        token.value = bytes(32)  # type: ignore[misc]
    assert weakref.ref(n)() is n
    assert hash(n) == hash(Notification(token=DeviceToken(bytes(range(32))), payload=b"{}"))
    assert repr(n) == (
        "Notification(token=DeviceToken(00010203…1e1f), payload=b'{}', expiry=0, priority=10)"
    )
    assert TokenSubclass(bytes(32)).value == bytes(32)
    sub = TokenSubclass(bytes(32))
    assert Notification(token=sub, payload=b"{}").token is sub


raw_token_values = st.one_of(
    st.binary(min_size=30, max_size=102),
    st.sampled_from([bytes(32), bytes(31), bytes(33), bytes(100), bytes(101), None, "a1" * 32]),
    st.builds(bytearray, st.binary(min_size=32, max_size=32)),
)


@given(token=raw_token_values, payload=payload_values, expiry=int_like, priority=int_like)
def test_notification_from_parts_agrees_with_the_constructors(token, payload, expiry, priority):
    # wire._events.notification_from (send --parse process) against the two
    # constructors it stands for: the same value or the same error.
    from apns_legacy.wire._events import notification_from

    def by_keywords(token, payload, expiry, priority):
        return Notification(
            token=DeviceToken(token), payload=payload, expiry=expiry, priority=priority
        )

    made = outcome(notification_from, token, payload, expiry, priority)
    assert made == outcome(by_keywords, token, payload, expiry, priority)
    if made[0] == "made":
        notification = notification_from(token, payload, expiry, priority)
        assert type(notification) is Notification
        assert type(notification.token) is DeviceToken
        assert notification == by_keywords(token, payload, expiry, priority)
