"""Payload builder: hand-written expected bytes, limits, truncation, and properties."""

from __future__ import annotations

import json
import pickle
import unicodedata

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apns_legacy import (
    PAYLOAD_LIMIT,
    Alert,
    LocalProtocolError,
    PayloadTooLargeError,
    build_payload,
    pass_payload,
    raw_payload,
)
from apns_legacy.wire import OLD_PAYLOAD_LIMIT, VOIP_PAYLOAD_LIMIT
from apns_legacy.wire._payload import _cluster_boundaries, _encode

# --- building --------------------------------------------------------------------------


def test_no_arguments_give_an_empty_aps():
    assert build_payload() == b'{"aps":{}}'


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"alert": "Hello"}, b'{"aps":{"alert":"Hello"}}'),
        ({"alert": ""}, b'{"aps":{"alert":""}}'),
        ({"badge": 0}, b'{"aps":{"badge":0}}'),
        ({"badge": 42}, b'{"aps":{"badge":42}}'),
        ({"sound": "default"}, b'{"aps":{"sound":"default"}}'),
        ({"content_available": True}, b'{"aps":{"content-available":1}}'),
        ({"mutable_content": True}, b'{"aps":{"mutable-content":1}}'),
        ({"content_available": False, "mutable_content": False}, b'{"aps":{}}'),
        ({"category": "INVITE"}, b'{"aps":{"category":"INVITE"}}'),
        ({"thread_id": "chat-7"}, b'{"aps":{"thread-id":"chat-7"}}'),
        ({"url_args": ["a", "b/c"]}, b'{"aps":{"url-args":["a","b/c"]}}'),
        ({"url_args": ()}, b'{"aps":{"url-args":[]}}'),
    ],
)
def test_each_aps_key(kwargs, expected):
    assert build_payload(**kwargs) == expected


def test_all_aps_keys_in_order_then_custom_keys_in_given_order():
    payload = build_payload(
        custom={"z": 1, "a": {"n": None}},
        url_args=["u"],
        thread_id="t",
        category="c",
        mutable_content=True,
        content_available=True,
        sound="s",
        badge=3,
        alert="hi",
    )
    assert payload == (
        b'{"aps":{"alert":"hi","badge":3,"sound":"s","content-available":1,'
        b'"mutable-content":1,"category":"c","thread-id":"t","url-args":["u"]},'
        b'"z":1,"a":{"n":null}}'
    )


def test_custom_keys_without_aps_keys_keep_aps():
    assert build_payload(custom={"acme": [1, "two"]}) == b'{"aps":{},"acme":[1,"two"]}'


def test_non_ascii_is_raw_utf8_not_escaped():
    payload = build_payload(alert="Grüße 👋", custom={"ключ": "値"})
    assert payload == '{"aps":{"alert":"Grüße 👋"},"ключ":"値"}'.encode()
    assert b"\\u" not in payload


def test_json_escapes_quotes_backslashes_and_controls():
    assert build_payload(alert='a"b\\c\nd\x01') == b'{"aps":{"alert":"a\\"b\\\\c\\nd\\u0001"}}'


def test_alert_dictionary_keys():
    alert = Alert(
        title="T",
        subtitle="S",
        body="B",
        title_loc_key="TK",
        title_loc_args=["t1", "t2"],
        action_loc_key="AK",
        loc_key="LK",
        loc_args=("l1",),
        launch_image="img.png",
        action="View",
    )
    assert build_payload(alert=alert) == (
        b'{"aps":{"alert":{"title":"T","subtitle":"S","body":"B","title-loc-key":"TK",'
        b'"title-loc-args":["t1","t2"],"action-loc-key":"AK","loc-key":"LK",'
        b'"loc-args":["l1"],"launch-image":"img.png","action":"View"}}}'
    )


def test_alert_none_fields_are_left_out():
    assert build_payload(alert=Alert(body="B", loc_key="K")) == (
        b'{"aps":{"alert":{"body":"B","loc-key":"K"}}}'
    )
    assert build_payload(alert=Alert()) == b'{"aps":{"alert":{}}}'


def test_alert_keeps_argument_lists_as_tuples():
    args = ["a"]
    alert = Alert(loc_args=args)
    args.append("b")
    assert alert.loc_args == ("a",)
    assert alert.to_dict() == {"loc-args": ["a"]}


def test_pass_payload():
    assert pass_payload() == b'{"aps":{}}'


# --- validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"badge": True}, TypeError, "badge must be an int, not bool"),
        ({"badge": 1.0}, TypeError, "badge must be an int, not float"),
        ({"badge": "1"}, TypeError, "badge must be an int, not str"),
        ({"badge": -1}, LocalProtocolError, "badge must not be negative, got -1"),
        ({"alert": b"hi"}, TypeError, "alert must be a str, not bytes"),
        ({"sound": 1}, TypeError, "sound must be a str, not int"),
        ({"category": None, "thread_id": 7}, TypeError, "thread_id must be a str"),
        ({"category": ["x"]}, TypeError, "category must be a str, not list"),
        ({"content_available": 1}, TypeError, "content_available must be a bool, not int"),
        ({"mutable_content": "yes"}, TypeError, "mutable_content must be a bool, not str"),
        ({"url_args": "abc"}, TypeError, "url_args must be a sequence of str, not str"),
        ({"url_args": ["a", 1]}, TypeError, r"url_args\[1\] must be a str, not int"),
        ({"custom": [("k", 1)]}, TypeError, "custom must be a mapping, not list"),
        ({"custom": {1: "x"}}, TypeError, "custom key must be a str, not int"),
        ({"custom": {"aps": {}}}, LocalProtocolError, "custom has a key named 'aps'"),
        ({"custom": {"k": {1, 2}}}, LocalProtocolError, "cannot be encoded as JSON.*set"),
        ({"custom": {"k": float("nan")}}, LocalProtocolError, "cannot be encoded as JSON"),
        ({"alert": "a\ud800b"}, LocalProtocolError, "lone surrogate \\(U\\+D800\\)"),
        ({"limit": 0}, LocalProtocolError, r"limit 0 is out of range: it must be 1\.\.65535"),
        ({"limit": 65536}, LocalProtocolError, "limit 65536 is out of range"),
        ({"limit": True}, TypeError, "limit must be an int, not bool"),
        ({"ellipsis": None, "truncate": True}, TypeError, "ellipsis must be a str"),
    ],
)
def test_refuses_bad_arguments_naming_the_field(kwargs, error, match):
    with pytest.raises(error, match=match):
        build_payload(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"title": 1}, "Alert.title must be a str, not int"),
        ({"body": b"x"}, "Alert.body must be a str, not bytes"),
        ({"action": ["View"]}, "Alert.action must be a str, not list"),
        ({"loc_args": "abc"}, "Alert.loc_args must be a sequence of str, not str"),
        ({"title_loc_args": [1]}, r"Alert.title_loc_args\[0\] must be a str, not int"),
    ],
)
def test_alert_refuses_bad_fields(kwargs, match):
    with pytest.raises(TypeError, match=match):
        Alert(**kwargs)


# --- limits ---------------------------------------------------------------------------

# b'{"aps":{"alert":""}}' is 20 bytes, so an alert of n ASCII characters makes 20 + n.
EMPTY_ALERT = len(b'{"aps":{"alert":""}}')


def test_constants_are_reused():
    assert (OLD_PAYLOAD_LIMIT, PAYLOAD_LIMIT, VOIP_PAYLOAD_LIMIT) == (256, 2048, 4096)


@pytest.mark.parametrize("limit", [OLD_PAYLOAD_LIMIT, PAYLOAD_LIMIT, VOIP_PAYLOAD_LIMIT])
def test_limit_is_inclusive(limit):
    assert len(build_payload(alert="x" * (limit - EMPTY_ALERT), limit=limit)) == limit
    with pytest.raises(PayloadTooLargeError) as info:
        build_payload(alert="x" * (limit - EMPTY_ALERT + 1), limit=limit)
    assert (info.value.size, info.value.limit) == (limit + 1, limit)


def test_default_limit_is_2048_and_the_error_names_size_and_limit():
    with pytest.raises(PayloadTooLargeError) as info:
        build_payload(alert="x" * 2093)
    assert str(info.value) == "payload is 2113 bytes; the limit is 2048"
    assert (info.value.size, info.value.limit) == (2113, 2048)
    assert isinstance(info.value, LocalProtocolError)
    assert isinstance(info.value, ValueError)


def test_multibyte_characters_count_as_their_utf8_bytes():
    # "é" is 2 bytes: 118 of them make 20 + 236 = 256 bytes.
    assert len(build_payload(alert="é" * 118, limit=256)) == 256
    with pytest.raises(PayloadTooLargeError, match="payload is 258 bytes; the limit is 256"):
        build_payload(alert="é" * 119, limit=256)


def test_payload_too_large_error_pickles():
    error = PayloadTooLargeError(2113, 2048)
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.size, copy.limit) == (
        PayloadTooLargeError,
        "payload is 2113 bytes; the limit is 2048",
        2113,
        2048,
    )


# --- raw payloads ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b'{"aps":{}}',
        b'{ "aps" : { "alert" : "spaces kept" } }',
        b'{"mdm":"9b3a-PushMagic"}',  # no aps: MDM pushes look like this
        '{"aps":{"alert":"Grüße"}}'.encode(),
        b"{}",
    ],
)
def test_raw_bytes_pass_through_unchanged(data):
    assert raw_payload(data) == data


def test_raw_str_is_utf8_encoded_as_is():
    assert raw_payload('{"aps" : {"alert":"Grüße"}}') == '{"aps" : {"alert":"Grüße"}}'.encode()


def test_raw_mapping_is_encoded_compactly():
    assert (
        raw_payload({"aps": {"alert": "é"}, "k": [1]}) == '{"aps":{"alert":"é"},"k":[1]}'.encode()
    )


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b'{"aps":', "not valid JSON"),
        (b"", "not valid JSON"),
        (b'{"aps":{}}\x00', "not valid JSON"),  # Apple: must not be null-terminated
        (b"{'aps':{}}", "not valid JSON"),
        (b'{"badge":NaN}', "not valid JSON.*NaN is not JSON"),
        (b'{"x":Infinity}', "not valid JSON"),
        (b'{"aps":"\xff"}', "not valid UTF-8"),
        ("\ufeff{}", "not valid JSON"),  # a byte-order mark
        ('{"a":"\ud800"}', "lone surrogate"),
        (b'["aps"]', "must be a JSON object, not a JSON array"),
        (b'"aps"', "must be a JSON object, not a JSON string"),
        (b"null", "must be a JSON object, not a JSON null"),
        (b"true", "must be a JSON object, not a JSON boolean"),
        ("12.5", "must be a JSON object, not a JSON number"),
        ({"x": float("inf")}, "cannot be encoded as JSON"),
    ],
)
def test_raw_refuses_what_is_not_a_json_object(data, match):
    with pytest.raises(LocalProtocolError, match=match):
        raw_payload(data)


def test_raw_checks_type_and_limit():
    with pytest.raises(TypeError, match="payload must be bytes, str or a mapping, not list"):
        raw_payload([])
    with pytest.raises(PayloadTooLargeError, match="payload is 257 bytes; the limit is 256"):
        raw_payload(b'{"k":"' + b"x" * 249 + b'"}', limit=256)
    assert len(raw_payload(b'{"k":"' + b"x" * 248 + b'"}', limit=256)) == 256
    with pytest.raises(LocalProtocolError, match="limit 70000 is out of range"):
        raw_payload(b"{}", limit=70000)


# --- truncation: examples -------------------------------------------------------------


def alert_of(payload: bytes) -> str:
    return json.loads(payload)["aps"]["alert"]


def test_truncate_leaves_a_fitting_payload_alone():
    assert build_payload(alert="Hello", limit=25, truncate=True) == b'{"aps":{"alert":"Hello"}}'


# Each case: body, the byte budget for the escaped kept text (limit minus the payload
# with an empty alert and the 3-byte "…"), the kept text.
@pytest.mark.parametrize(
    ("body", "budget", "kept"),
    [
        # ASCII: one byte a character.
        ("Hello, world", 5, "Hello"),
        ("Hello, world", 0, ""),
        # Two-byte "é": an odd budget never splits one.
        ("ééééé", 5, "éé"),
        ("ééééé", 4, "éé"),
        ("ééééé", 3, "é"),
        # Three-byte CJK and a four-byte emoji.
        ("日本語です", 8, "日本"),
        ("🙂🙂🙂", 7, "🙂"),
        # Escaped characters count as their escaped size: \" and \\ are 2, \u0001 is 6.
        ('say "hi" now', 6, 'say "'),
        ('say "hi" now', 5, "say "),
        ("a\\b\\c", 2, "a"),
        ("a\\b\\c", 3, "a\\"),
        ("a\x01bcdefg", 6, "a"),
        ("a\x01bcdefg", 7, "a\x01"),
        # Emoji with a skin tone (👍 + 🏽, 8 bytes): kept whole or dropped whole.
        ("ok 👍🏽 yes", 10, "ok "),
        ("ok 👍🏽 yes", 11, "ok 👍🏽"),
        # ZWJ family 👨‍👩‍👧 (18 bytes).
        ("a👨\u200d👩\u200d👧bcdefgh", 18, "a"),
        ("a👨\u200d👩\u200d👧bcdefgh", 19, "a👨\u200d👩\u200d👧"),
        # Flags are pairs of regional indicators (8 bytes a flag).
        ("🇫🇷🇩🇪🇮🇹", 15, "🇫🇷"),
        ("🇫🇷🇩🇪🇮🇹", 16, "🇫🇷🇩🇪"),
        # e + COMBINING ACUTE ACCENT (1 + 2 bytes) is one cluster.
        ("cafe\u0301 bar", 5, "caf"),
        ("cafe\u0301 bar", 6, "cafe\u0301"),
        # Keycap 1️⃣: digit + VS16 + COMBINING ENCLOSING KEYCAP (1 + 3 + 3 bytes).
        ("x1\ufe0f\u20e3yzzzzz", 7, "x"),
        ("x1\ufe0f\u20e3yzzzzz", 8, "x1\ufe0f\u20e3"),
        # Flag of England: black flag + tag letters + cancel tag (4 + 6 * 4 bytes).
        ("\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007fzzz", 27, ""),
    ],
)
def test_truncation_examples(body, budget, kept):
    limit = EMPTY_ALERT + 3 + budget
    assert len(build_payload(alert=body, limit=65535)) > limit  # truncation is needed
    payload = build_payload(alert=body, limit=limit, truncate=True)
    assert alert_of(payload) == kept + "…"
    assert len(payload) <= limit


def test_truncation_exact_bytes():
    payload = build_payload(alert='say "hi" now', limit=29, truncate=True)
    assert payload == '{"aps":{"alert":"say \\"…"}}'.encode()
    assert len(payload) == 29
    payload = build_payload(alert="ok 👍🏽 yes", limit=34, truncate=True)
    assert payload == '{"aps":{"alert":"ok 👍🏽…"}}'.encode()


def test_truncation_with_custom_ellipsis_and_no_ellipsis():
    assert build_payload(alert="Hello, world", limit=28, truncate=True, ellipsis="...") == (
        b'{"aps":{"alert":"Hello..."}}'
    )
    assert build_payload(alert="Hello, world", limit=25, truncate=True, ellipsis="") == (
        b'{"aps":{"alert":"Hello"}}'
    )
    # An ellipsis that needs escaping counts escaped: \" is 2 bytes.
    assert build_payload(alert="Hello, world", limit=27, truncate=True, ellipsis='"') == (
        b'{"aps":{"alert":"Hello\\""}}'
    )


def test_truncation_of_an_alert_body_keeps_the_other_fields():
    alert = Alert(title="Title \u00e9", body="Hello, world!", loc_key="K")
    payload = build_payload(alert=alert, badge=1, custom={"id": 7}, limit=91, truncate=True)
    expected = (
        '{"aps":{"alert":{"title":"Title é","body":"Hello, wo…","loc-key":"K"},"badge":1},"id":7}'
    )
    assert payload == expected.encode()
    assert len(payload) == 91


def test_truncation_of_a_long_body_is_fast_and_fits():
    body = "Grüße 👨\u200d👩\u200d👧 " * 200_000  # 4.6 million characters
    payload = build_payload(alert=body, truncate=True)
    assert len(payload) in range(PAYLOAD_LIMIT - 20, PAYLOAD_LIMIT + 1)
    assert body.startswith(alert_of(payload)[:-1])


def test_truncation_cannot_fit_even_an_empty_body():
    with pytest.raises(PayloadTooLargeError) as info:
        build_payload(alert="x" * 10, custom={"pad": "y" * 300}, limit=256, truncate=True)
    # {"aps":{"alert":""},"pad":"yyy..."} is 19 + 8 + 300 + 2 = 329 bytes, and … adds 3.
    assert str(info.value) == (
        "payload is 332 bytes even with an empty alert body and the ellipsis; the limit is 256"
    )
    assert (info.value.size, info.value.limit) == (332, 256)
    with pytest.raises(
        PayloadTooLargeError,
        match=r"^payload is 329 bytes even with an empty alert body; the limit is 256$",
    ):
        build_payload(alert="x", custom={"pad": "y" * 300}, limit=256, truncate=True, ellipsis="")


def test_truncation_needs_room_for_the_ellipsis():
    # An empty body fits (20 bytes), but not with "…" (23): no silent dropping of the ellipsis.
    with pytest.raises(PayloadTooLargeError, match="payload is 23 bytes even with"):
        build_payload(alert="Hello", limit=22, truncate=True)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"alert": Alert(loc_key="K", loc_args=["x" * 300])},
        {"alert": Alert(title="x" * 300)},
        {"badge": 1, "custom": {"pad": "x" * 300}},
    ],
)
def test_truncation_without_alert_text_cannot_help(kwargs):
    with pytest.raises(PayloadTooLargeError, match="shortens only the alert text") as info:
        build_payload(**kwargs, limit=256, truncate=True)
    assert str(info.value).startswith(f"payload is {info.value.size} bytes; the limit is 256")
    assert info.value.size > 256


# --- cluster boundaries ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "bounds"),
    [
        ("", [0]),
        ("abc", [0, 1, 2, 3]),
        ("e\u0301x", [0, 2, 3]),
        ("\u0301a", [0, 1, 2]),  # a lone mark at the start is its own cluster
        ("👍🏽👍", [0, 2, 3]),
        ("👨\u200d👩\u200d👧", [0, 5]),
        ("🇫🇷🇩🇪", [0, 2, 4]),
        ("🇫🇷🇩", [0, 2, 3]),
        ("a🇫🇷🇩🇪🇮", [0, 1, 3, 5, 6]),
        ("\r\n\n", [0, 2, 3]),
        ("\n\u0301", [0, 1, 2]),  # GB4: controls never join what follows
        ("\u200d\n", [0, 1, 2]),
        ("❤\ufe0f!", [0, 2, 3]),
        ("\u1100\u1161\u11a8x", [0, 3, 4]),  # decomposed Hangul syllable 각
        # Devanagari: Unicode 15.1's conjunct rule GB9c makes all four one cluster.
        ("क्षि", [0, 4]),
        # ZWJ joins an emoji to the emoji before it (GB11), not anything to anything.
        ("a\u200d👍", [0, 2, 3]),
        ("👍\u200d👍", [0, 3]),
    ],
)
def test_cluster_boundaries(text, bounds):
    assert _cluster_boundaries(text) == bounds


# --- properties -----------------------------------------------------------------------

# Characters chosen to hit every rule: escapes, multi-byte, marks, modifiers, ZWJ, flags.
TRICKY = (
    'ab "\\\n\x01\x7fé日\u0301\u20e3\ufe0f\u200d👍🏽👨👩👧🇫🇷🇩🇪\U0001f3f4\U000e0067\U000e007f'
    "\u1100\u1161\u11a8\u2028"
)
bodies = st.one_of(st.text(), st.text(alphabet=TRICKY), st.text(alphabet=TRICKY, min_size=50))
ellipses = st.sampled_from(["…", "", "...", '"\\', "👍🏽"])


@settings(max_examples=300)
@given(body=bodies, limit=st.integers(1, 400), ellipsis=ellipses, as_alert=st.booleans())
def test_truncation_properties(body, limit, ellipsis, as_alert):
    alert = Alert(title="T", body=body) if as_alert else body

    def text_of(payload: bytes) -> str:
        value = json.loads(payload)["aps"]["alert"]
        return value["body"] if as_alert else value

    def build(text: str) -> bytes:
        return build_payload(alert=Alert(title="T", body=text) if as_alert else text, limit=65535)

    full = build(body)
    if len(full) <= limit:
        assert build_payload(alert=alert, limit=limit, truncate=True, ellipsis=ellipsis) == full
        return
    smallest = build(ellipsis)
    if len(smallest) > limit:
        with pytest.raises(PayloadTooLargeError, match="even with an empty alert body") as info:
            build_payload(alert=alert, limit=limit, truncate=True, ellipsis=ellipsis)
        assert (info.value.size, info.value.limit) == (len(smallest), limit)
        return

    payload = build_payload(alert=alert, limit=limit, truncate=True, ellipsis=ellipsis)
    assert len(payload) <= limit
    text = text_of(payload)  # valid JSON, with the alert where it belongs
    assert text.endswith(ellipsis)
    kept = text[: len(text) - len(ellipsis)]
    assert body.startswith(kept)
    assert len(kept) < len(body)
    bounds = _cluster_boundaries(body)
    assert len(kept) in bounds  # never a partial cluster, never a partial character
    # The longest such prefix: one more cluster would not fit.
    following = bounds[bounds.index(len(kept)) + 1]
    assert len(build(body[:following] + ellipsis)) > limit


@given(text=bodies, stop=st.integers(0, 80))
def test_boundaries_are_ordered_and_stable_under_stop(text, stop):
    bounds = _cluster_boundaries(text)
    assert bounds[0] == 0
    assert bounds[-1] == len(text)
    assert bounds == sorted(set(bounds))
    assert _cluster_boundaries(text, stop=stop) == [b for b in bounds if b <= stop]
    for b in bounds[1:-1]:
        before, after = text[b - 1], text[b]
        # UAX #29's Control: Cc, Zl, Zp and most of Cf.
        controls = {unicodedata.category(before), unicodedata.category(after)} & {
            "Cc", "Zl", "Zp", "Cf"
        }  # fmt: skip
        # Never cut before a mark, modifier, selector, tag or ZWJ (GB9), nor between a
        # ZWJ after an emoji and the next emoji (GB11), nor inside a Hangul syllable
        # (GB6, GB7), unless a control character is involved (GB4/GB5 come first).
        assert controls or after not in "\u0301\u20e3\ufe0f\u200d🏽\U000e0067\U000e007f"
        emoji = "👍👨👩👧"
        assert not (b >= 2 and text[b - 2] in emoji and before == "\u200d" and after in emoji)
        assert not (before == "\u1100" and after == "\u1161")
        assert not (before == "\u1161" and after == "\u11a8")
        assert (before, after) != ("\r", "\n")


# -- the compact JSON writer agrees with json.dumps ----------------------------------------

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=8), _json_values, max_size=5))
def test_custom_keys_encode_exactly_as_json_dumps(custom):
    custom.pop("aps", None)
    expected = json.dumps(
        {"aps": {}, **custom}, ensure_ascii=False, separators=(",", ":"), allow_nan=False
    )
    try:
        expected_bytes = expected.encode("utf-8")
    except UnicodeEncodeError:
        with pytest.raises(LocalProtocolError, match="surrogate"):
            build_payload(custom=custom, limit=65535)
        return
    if len(expected_bytes) > 65535:
        return
    assert build_payload(custom=custom, limit=65535) == expected_bytes


def test_unusual_values_fall_back_to_json_dumps():
    # Non-str keys inside a value: json.dumps converts them; so do we.
    assert build_payload(custom={"m": {1: "x", None: 2}}) == b'{"aps":{},"m":{"1":"x","null":2}}'
    with pytest.raises(LocalProtocolError, match="cannot be encoded"):
        build_payload(custom={"m": {1, 2}})
    with pytest.raises(LocalProtocolError, match="cannot be encoded"):
        build_payload(custom={"m": float("nan")})


@pytest.mark.parametrize(
    "data",
    [
        "[" * 100_000,
        '{"aps":' + "[" * 100_000,
        ('{"a":' + "[" * 5000 + "]" * 5000 + "}").encode(),
    ],
    ids=["top-level", "inside-an-object", "closed-bytes"],
)
def test_raw_refuses_deep_nesting_as_a_protocol_error(data):
    with pytest.raises(LocalProtocolError, match="nests arrays or objects too deeply"):
        raw_payload(data, limit=0xFFFF)


def test_deeply_nested_mappings_are_refused_as_a_protocol_error():
    value: list[object] = []
    for _ in range(5000):
        value = [value]
    with pytest.raises(LocalProtocolError, match="nests arrays or objects too deeply"):
        raw_payload({"aps": {}, "deep": value}, limit=0xFFFF)
    with pytest.raises(LocalProtocolError, match="nests arrays or objects too deeply"):
        build_payload(custom={"deep": value}, limit=0xFFFF)


def test_msgspec_escapes_every_code_point_as_json_dumps_does():
    # The fast writer (msgspec) is used for plain values only because its string
    # escapes are the standard library's, character for character.
    text = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    expected = json.dumps({"aps": {}, "all": text}, ensure_ascii=False, separators=(",", ":"))
    assert _encode({"aps": {}, "all": text}) == expected.encode()
    assert msgspec.json.encode(text) == json.dumps(text, ensure_ascii=False).encode()


_big_ints = st.integers(-(2**200), 2**200)
_plain_values = st.recursive(
    st.none() | st.booleans() | _big_ints | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=8), _plain_values, max_size=5))
def test_plain_values_encode_as_json_dumps(custom):
    # The fast writer's domain (tuples and big ints included), and the surrogate error.
    custom.pop("aps", None)
    value = {"aps": {}, **custom}
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        expected = text.encode("utf-8")
    except UnicodeEncodeError:
        with pytest.raises(LocalProtocolError, match="surrogate"):
            _encode(value)
        return
    assert _encode(value) == expected


def test_subclasses_and_floats_take_the_standard_librarys_path():
    class Text(str):
        pass

    class Number(int):
        def __repr__(self) -> str:
            return "not-a-number"

    value = {"aps": {"alert": Text("x")}, "n": Number(5), "f": 1e16, "g": 0.5}
    assert _encode(value) == json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    assert _encode(value) == b'{"aps":{"alert":"x"},"n":5,"f":1e+16,"g":0.5}'
