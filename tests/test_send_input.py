"""``send``'s input lines: whatever a line holds, parsing gives a notification or BadLine
(never another exception), and the progress display's plain line."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apns_legacy.cli._send_display import Display, Progress, report_line
from apns_legacy.cli._send_input import (
    _TOO_DEEP,
    BadLine,
    Plan,
    _fast_line,
    _passed_payload,
    _passed_payloads,
    _plain_line,
    parse_line,
    parse_lines,
)
from apns_legacy.client import Evidence, Outcome, OutcomeKind, SenderConfig, SenderStats
from apns_legacy.wire import DeviceToken, Notification, Status

PLAN = Plan(
    config=SenderConfig(), payload=b'{"aps":{}}', expiry=0, priority=10, tokens=(), strict=False
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=20,
)
fields = st.sampled_from(["token", "payload", "expiry", "priority", "active", "topic", "x"])
lines = st.one_of(
    st.binary(),
    st.dictionaries(fields, json_values).map(lambda d: json.dumps(d).encode()),
    st.integers(1, 3000).map(lambda n: ("[" * n).encode()),
    st.integers(1, 3000).map(
        lambda n: ('{"token":"' + "a1" * 32 + '","payload":' + "[" * n).encode()
    ),
    st.integers(1, 3000).map(
        lambda n: json.dumps(
            {"token": "a1" * 32, "payload": '{"a":' + "[" * n + "]" * n + "}"}
        ).encode()
    ),
)


@given(raw=lines)
def test_a_line_is_a_notification_or_a_bad_line(raw):
    try:
        notification = parse_line(raw, PLAN)
    except BadLine as exc:
        message = str(exc)
    else:
        assert len(notification.token) == 32
        return
    assert message
    assert "\n" not in message


def test_the_plain_progress_line_names_the_counts_and_the_share_of_the_input():
    stats = SenderStats(submitted=12, accepted=10, rejected=1)
    display = Display.create(enabled=True, total=None, total_bytes=200, terminal=False)
    assert display.bar is None
    line = display.plain_line(Progress(stats, skipped=2, bytes_read=50))
    assert line.startswith("progress: 12 submitted, 10 accepted, 1 rejected, 0 failed, 2 skipped, ")
    assert ", 25% of the input after " in line


def test_on_a_terminal_a_known_size_gets_a_percentage_and_time_left():
    from rich.progress import TaskProgressColumn, TimeRemainingColumn

    known = Display.create(enabled=True, total=5, terminal=True)
    assert known.bar is not None
    kinds = {type(column) for column in known.bar.columns}
    assert {TaskProgressColumn, TimeRemainingColumn} <= kinds
    unknown = Display.create(enabled=True, total=None, terminal=True)
    assert unknown.bar is not None
    assert not {TaskProgressColumn, TimeRemainingColumn} & {type(c) for c in unknown.bar.columns}
    assert Display.create(enabled=False, total=5, terminal=True).bar is None


# -- the fast path (msgspec) against the plain one (json) --------------------------------


def plain_or_error(raw: bytes, plan: Plan = PLAN) -> Notification | str:
    """What the plain path (the standard library's json) makes of a line."""
    try:
        return _plain_line(raw, plan)
    except BadLine as exc:
        return f"BadLine: {exc}"
    except RecursionError:
        return f"BadLine: {_TOO_DEEP}"


def parsed_or_error(raw: bytes, plan: Plan = PLAN) -> Notification | str:
    try:
        return parse_line(raw, plan)
    except BadLine as exc:
        return f"BadLine: {exc}"


payload_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.sampled_from([1e16, 1e-7, -0.0, 0.1, 1.5, 123.0])
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
payload_objects = st.dictionaries(st.text(max_size=8), payload_values, max_size=5)


def spaced(text: str, spaces: list[int]) -> str:
    """``text`` with a space put after each character position listed (if outside strings
    or not, the line stays JSON only sometimes: both paths must agree either way)."""
    for position in sorted(set(spaces), reverse=True):
        text = text[:position] + " " + text[position:]
    return text


@st.composite
def payload_texts(draw: st.DrawFn) -> str:
    value = draw(payload_objects)
    style = draw(st.sampled_from(["compact", "default", "ascii", "spaced", "written"]))
    if style == "compact":
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if style == "default":
        return json.dumps(value, ensure_ascii=False)
    if style == "ascii":
        return json.dumps(value, separators=(",", ":"))
    compact = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if style == "spaced":
        return spaced(compact, draw(st.lists(st.integers(0, len(compact)), max_size=3)))
    # numbers written in other ways than Python writes them
    return draw(
        st.sampled_from(['{"a":1E2}', '{"a":1.50}', '{"a":-0}', '{"a":1e16}', '{"a":1e+16}',
                         '{"a":"\\u0041"}', '{"a":"\\/"}', '{"a":1,"a":2}', '{"a":"\\ud800"}',
                         '{"a":NaN}', '{"a":1e400}', '{"a":[1,2,]}', '{"a":"x"} '])
    )  # fmt: skip


@st.composite
def input_lines(draw: st.DrawFn) -> bytes:
    item: dict[str, object] = {}
    if draw(st.booleans()):
        item["token"] = draw(
            st.sampled_from(["a1" * 32, "A1" * 32, "<" + "a1" * 16 + " " + "b2" * 16 + ">",
                             "a1" * 31, "zz" * 32, "a1" * 40, ""])
        )  # fmt: skip
    payload: str | None = None
    if draw(st.booleans()):
        payload = draw(payload_texts())
        if draw(st.integers(0, 9)) == 0:  # the string form
            item["payload"] = payload
            payload = None
    for name, values in (
        ("expiry", st.integers(-5, 2**33) | st.sampled_from([0, 2**32 - 1, 2**32])),
        ("priority", st.sampled_from([10, 5, 0, 11])),
        ("active", st.sampled_from([True, False, None, 0])),
        ("topic", st.sampled_from(["com.example", None])),
        ("priorty", st.just(10)),
    ):
        if draw(st.integers(0, 4)) == 0:
            item[name] = draw(values)
    text = json.dumps(item, ensure_ascii=draw(st.booleans()), separators=(",", ":"))
    if payload is not None:
        text = text[:-1] + ("," if item else "") + '"payload":' + payload + "}"
    raw = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 9)) == 0:  # a damaged line
        position = draw(st.integers(0, len(raw)))
        raw = raw[:position] + draw(st.binary(max_size=3)) + raw[position:]
    return raw


def fresh_plan(limit: int = 2048) -> Plan:
    return Plan(
        config=SenderConfig(payload_limit=limit),
        payload=b'{"aps":{}}',
        expiry=0,
        priority=10,
        tokens=(),
        strict=False,
    )


@given(raw=input_lines(), limit=st.sampled_from([2048, 40]))
def test_the_fast_path_agrees_with_the_plain_path_byte_for_byte(raw, limit):
    plan = fresh_plan(limit)
    expected = plain_or_error(raw, plan)
    assert parsed_or_error(raw, plan) == expected
    assert parsed_or_error(raw, plan) == expected  # again: a payload seen before
    fast = _fast_line(raw, plan)
    if fast is not None:  # what the fast path says is what the plain path says
        assert fast == plain_or_error(raw, plan)


@given(
    raws=st.lists(input_lines() | st.sampled_from([b"", b" ", b"\t\r", None]) | lines, max_size=8),
    limit=st.sampled_from([2048, 40]),
)
def test_parse_lines_says_of_each_line_what_parse_line_says(raws, limit):
    numbered = list(enumerate(raws, start=7))
    expected: list[tuple[int, object]] = []
    line_by_line = fresh_plan(limit)
    for number, raw in numbered:
        if raw is None:
            expected.append((number, "longer than 1048576 bytes"))
        elif not raw.strip():
            expected.append((number, None))
        else:
            try:
                expected.append((number, parse_line(raw, line_by_line)))
            except BadLine as exc:
                expected.append((number, str(exc)))
    assert parse_lines(numbered, fresh_plan(limit)) == expected


@given(
    texts=st.lists(payload_texts() | st.sampled_from(['{"a":1}{"b":2}', "{}", "{}\n{}"])),
    limit=st.sampled_from([2048, 40, 10]),
)
def test_payloads_checked_together_pass_as_each_would_alone(texts, limit):
    values = [text.encode("utf-8", "surrogatepass") for text in texts]
    expected = [_passed_payload(value, limit) for value in values]
    assert _passed_payloads(values, limit) == expected


@given(value=payload_objects)
def test_a_compact_payload_object_passes_through_as_the_same_bytes(value):
    compact = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    raw = ('{"token":"' + "a1" * 32 + '","payload":' + compact + "}").encode(
        "utf-8", "surrogatepass"
    )
    expected = plain_or_error(raw)
    assert parsed_or_error(raw) == expected
    if isinstance(expected, Notification):
        assert expected.payload == compact.encode()


def test_the_fast_path_takes_the_usual_lines():
    token = "a1" * 32
    for line, payload in (
        (f'{{"token":"{token}","payload":{{"aps":{{"alert":"Hi é","badge":1}},"n":0.5}}}}',
         '{"aps":{"alert":"Hi é","badge":1},"n":0.5}'),
        (f'{{"token":"{token}","payload":"{{\\"aps\\":{{}}}}","expiry":5,"priority":5}}',
         '{"aps":{}}'),
        (f'{{"token":"{token}","topic":"t","active":true,"registered_at":"2026-01-01T00:00:00Z"}}',
         '{"aps":{}}'),
    ):  # fmt: skip
        notification = _fast_line(line.encode(), PLAN)
        assert notification is not None, line
        assert notification.payload == payload.encode()


def test_the_plain_path_decides_what_the_fast_path_leaves():
    token = "a1" * 32
    for payload, expected in (
        ('{ "aps" : {} }', b'{"aps":{}}'),  # spaces: written compactly, as before
        ('{"aps":{},"n":1.50}', b'{"aps":{},"n":1.5}'),
        ('{"aps":{},"n":1E2}', b'{"aps":{},"n":100.0}'),
        ('{"aps":{"alert":"\\u0041"}}', b'{"aps":{"alert":"A"}}'),
        ('{"aps":{},"aps":1}', b'{"aps":1}'),
    ):
        raw = f'{{"token":"{token}","payload":{payload}}}'.encode()
        assert _fast_line(raw, PLAN) is None
        assert parse_line(raw, PLAN).payload == expected


def test_error_messages_are_the_plain_paths():
    token = "a1" * 32
    cases = {
        b"\xff": "not UTF-8 (byte 1)",
        b'{"token":"' + token.encode() + b'","payload":{"a":"\xff"}}': "not UTF-8 (byte 93)",
        b'{"token":"x"': "not JSON: Expecting ',' delimiter: line 1 column 13 (char 12)",
        b"[1]": "must be a JSON object with token and payload",
        b'{"priorty":5}': "unknown field 'priorty' (the fields are token, payload, expiry, "
        "priority)",
        b'{"token":"' + token.encode() + b'","active":false}': "active: false, a deactivated "
        "device (export with --active)",
        b'{"payload":{}}': "token: missing",
        b'{"token":"' + token.encode() + b'","expiry":-1}': "expiry: must be 0 to 4294967295 "
        "(UNIX seconds), not -1",
        b'{"token":"' + token.encode() + b'","priority":7}': "priority: must be 10 or 5, not 7",
        b'{"token":"' + token.encode() + b'","priority":null}': "priority: must be an integer, "
        "not null",
        b'{"token":"' + token.encode() + b'","payload":[1]}': "payload: must be a JSON object, "
        "or a string holding one",
    }
    for raw, message in cases.items():
        with pytest.raises(BadLine) as caught:
            parse_line(raw, PLAN)
        assert str(caught.value) == message, raw


# -- --report lines ----------------------------------------------------------------------


@st.composite
def outcomes(draw: st.DrawFn) -> Outcome:
    notification = Notification(
        token=DeviceToken(draw(st.binary(min_size=32, max_size=32))), payload=b'{"aps":{}}'
    )
    outcome = Outcome(notification, tag=draw(st.integers(1, 2**40)))
    outcome.kind = draw(st.sampled_from(list(OutcomeKind)))
    outcome.identifier = draw(st.none() | st.integers(0, 2**32 - 1))
    outcome.status = draw(st.none() | st.sampled_from(list(Status)) | st.integers(0, 255))
    outcome.reason = draw(
        st.none()
        | st.text()
        | st.sampled_from(['connection lost: [Errno 104] ü\n"x"', "DEL \x7f", "tab\t~"])
    )
    outcome.evidence = draw(st.none() | st.sampled_from(list(Evidence)))
    outcome.losses = draw(st.integers(0, 3))
    return outcome


@given(outcome=outcomes())
def test_report_lines_are_the_bytes_json_dumps_wrote(outcome):
    entry = {"line": outcome.tag, **outcome.to_json()}
    expected = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
    assert report_line(outcome) == expected


def test_report_lines_escape_what_json_dumps_escapes():
    # json.dumps (ensure_ascii) escapes DEL too, which is ASCII; msgspec writes it as is.
    notification = Notification(token=DeviceToken(bytes(32)), payload=b'{"aps":{}}')
    for reason in ("DEL \x7f", "é", 'quote "', "newline \n", "plain"):
        outcome = Outcome(notification, tag=1)
        outcome.kind = OutcomeKind.FAILED
        outcome.reason = reason
        entry = {"line": 1, **outcome.to_json()}
        assert report_line(outcome) == (json.dumps(entry, separators=(",", ":")) + "\n").encode()
