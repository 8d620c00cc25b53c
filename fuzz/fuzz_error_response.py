"""atheris harness for ErrorResponseDecoder (the provider's view of the gateway's stream).

Run: /tmp/venv/bin/python fuzz/fuzz_error_response.py -atheris_runs=200000 \
    [WORK_DIR fuzz/corpus/error_response]
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["apns_legacy.wire"]):
    from apns_legacy.wire import ErrorResponse, ErrorResponseDecoder, Status

from _common import check_both_ways


def check(event: object) -> None:
    if isinstance(event, ErrorResponse):
        assert isinstance(event.status, Status) or type(event.status) is int, event
        assert 0 <= event.status <= 0xFF, event
        assert 0 <= event.identifier <= 0xFFFFFFFF, event


def TestOneInput(data: bytes) -> None:
    # At most one unfinished 6-byte response is ever held.
    check_both_ways(ErrorResponseDecoder, data, bound=5, check=check)


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
