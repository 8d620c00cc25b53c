"""atheris harness for FeedbackDecoder (the feedback service's stream of tuples).

Run: /tmp/venv/bin/python fuzz/fuzz_feedback.py -atheris_runs=200000 [WORK_DIR fuzz/corpus/feedback]
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["apns_legacy.wire"]):
    from apns_legacy.wire import FeedbackDecoder, FeedbackItem

from _common import check_both_ways


def check(event: object) -> None:
    if isinstance(event, FeedbackItem):
        assert type(event.token) is bytes, event
        assert 1 <= len(event.token) <= 100, event
        assert 0 <= event.timestamp <= 0xFFFFFFFF, event
        assert event.time.tzinfo is not None


def TestOneInput(data: bytes) -> None:
    # At most one unfinished tuple: a 6-byte header and a token of up to 100 bytes.
    check_both_ways(FeedbackDecoder, data, bound=6 + 100 - 1, check=check)


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
