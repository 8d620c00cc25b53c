"""build_payload's fast path: whether a payload is plain (msgspec writes it) is worked out
while the payload is put together; the bytes must be json.dumps's, whatever the mix of
arguments, str subclasses, floats and nesting."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apns_legacy import Alert, LocalProtocolError, build_payload


class Text(str):
    """A str subclass: plain for json.dumps, not for the fast path's type test."""


texts = st.one_of(st.text(max_size=12), st.text(max_size=12).map(Text))
optional_texts = st.none() | texts
json_values = st.recursive(
    # Floats whose text msgspec writes differently (1e16, not json.dumps's 1e+16).
    st.sampled_from([1e16, -2e22, 1e-7, 1.5e300])
    | st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda children: (
        st.lists(children, max_size=3)
        | st.lists(children, max_size=3).map(tuple)
        | st.dictionaries(texts, children, max_size=3)
    ),
    max_leaves=10,
)
alerts = st.one_of(
    optional_texts,
    st.builds(
        Alert,
        title=optional_texts,
        body=optional_texts,
        loc_key=optional_texts,
        loc_args=st.none() | st.lists(texts, max_size=3),
    ),
)


def expected_bytes(kwargs: dict[str, Any]) -> bytes:
    """The payload as json.dumps writes it, assembled by hand from the arguments."""
    aps: dict[str, Any] = {}
    alert = kwargs["alert"]
    if isinstance(alert, Alert):
        aps["alert"] = alert.to_dict()
    elif alert is not None:
        aps["alert"] = alert
    for name, key in (("badge", "badge"), ("sound", "sound")):
        if kwargs[name] is not None:
            aps[key] = kwargs[name]
    if kwargs["content_available"]:
        aps["content-available"] = 1
    for name, key in (("category", "category"), ("thread_id", "thread-id")):
        if kwargs[name] is not None:
            aps[key] = kwargs[name]
    if kwargs["url_args"] is not None:
        aps["url-args"] = list(kwargs["url_args"])
    root = {"aps": aps, **(kwargs["custom"] or {})}
    text = json.dumps(root, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8")


@given(
    alert=alerts,
    badge=st.none() | st.integers(0, 2**70),
    sound=optional_texts,
    content_available=st.booleans(),
    category=optional_texts,
    thread_id=optional_texts,
    url_args=st.none() | st.lists(texts, max_size=3),
    custom=st.none() | st.dictionaries(st.text(max_size=8) | texts, json_values, max_size=4),
)
@settings(max_examples=300)
def test_build_payload_writes_what_json_dumps_writes(**kwargs: Any) -> None:
    if kwargs["custom"] is not None:
        kwargs["custom"].pop("aps", None)
    try:
        expected = expected_bytes(kwargs)
    except UnicodeEncodeError:
        with pytest.raises(LocalProtocolError, match="surrogate"):
            build_payload(**kwargs, limit=0xFFFF)
        return
    if len(expected) > 0xFFFF:
        return
    assert build_payload(**kwargs, limit=0xFFFF) == expected


def test_values_msgspec_would_write_differently_take_the_standard_path() -> None:
    # msgspec writes 1e16 as 1e16 and would refuse a None key: json.dumps's rules win,
    # at any depth and whatever the aps arguments before them were.
    for custom, text in [
        ({"f": 1e16}, b'"f":1e+16'),
        ({"f": [1, [1e16]]}, b'"f":[1,[1e+16]]'),
        ({"f": {"g": {"h": 1e-7}}}, b'"f":{"g":{"h":1e-07}}'),
        ({"s": "x", "f": (2e22,)}, b'"s":"x","f":[2e+22]'),
        ({"m": {None: 1, 2: "x"}}, b'"m":{"null":1,"2":"x"}'),
    ]:
        assert build_payload(alert="hi", badge=1, custom=custom) == (
            b'{"aps":{"alert":"hi","badge":1},' + text + b"}"
        )
    assert build_payload(alert=Text("hi"), custom={"n": 2**70}) == (
        b'{"aps":{"alert":"hi"},"n":1180591620717411303424}'
    )
    assert build_payload(custom={Text("k"): 1}) == b'{"aps":{},"k":1}'


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"limit": True}, TypeError, "limit must be an int, not bool"),
        ({"limit": 0}, LocalProtocolError, "limit 0 is out of range: it must be 1..65535"),
        ({"limit": 65536}, LocalProtocolError, "limit 65536 is out of range"),
        ({"ellipsis": b"."}, TypeError, "ellipsis must be a str, not bytes"),
        ({"alert": 5}, TypeError, "alert must be a str, not int"),
        ({"sound": b"x"}, TypeError, "sound must be a str, not bytes"),
        ({"category": 1}, TypeError, "category must be a str, not int"),
        ({"thread_id": 1}, TypeError, "thread_id must be a str, not int"),
        ({"custom": {1: "x"}}, TypeError, "custom key must be a str, not int"),
        ({"custom": {"aps": 1}}, LocalProtocolError, "custom has a key named 'aps'"),
    ],
)
def test_errors_are_unchanged(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        build_payload(**kwargs)
