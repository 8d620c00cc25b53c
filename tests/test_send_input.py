"""``send``'s input lines: whatever a line holds, parsing gives a notification or BadLine
(never another exception), and the progress display's plain line."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from apns_legacy.cli._send_display import Display, Progress
from apns_legacy.cli._send_input import BadLine, Plan, parse_line
from apns_legacy.client import SenderConfig, SenderStats

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
