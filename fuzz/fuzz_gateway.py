"""atheris harness for GatewayDecoder (the server's view of a provider's stream).

Run: /tmp/venv/bin/python fuzz/fuzz_gateway.py -atheris_runs=200000 [WORK_DIR fuzz/corpus/gateway]
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["apns_legacy.wire"]):
    from apns_legacy.wire import BadNotification, GatewayDecoder, ReceivedNotification

from _common import check_both_ways

# (payload_limit, max_token_length). Every input runs under the defaults and under one
# of the others, picked by its length; a small payload limit makes "over the limit"
# reachable for the fuzzer.
DEFAULT_LIMITS = (2048, 32)
OTHER_LIMITS = [(256, 100), (16, 32), (16, 100)]


def check_with_limits(data: bytes, payload_limit: int, max_token_length: int) -> None:
    def make() -> GatewayDecoder:
        return GatewayDecoder(payload_limit=payload_limit, max_token_length=max_token_length)

    def check(event: object) -> None:
        if isinstance(event, ReceivedNotification):
            # A notification the decoder lets through obeys the decoder's own limits.
            assert type(event.token) is bytes
            assert type(event.payload) is bytes
            assert 32 <= len(event.token) <= max_token_length, event
            assert 1 <= len(event.payload) <= payload_limit, event
            assert event.priority in (None, 5, 10), event
        elif isinstance(event, BadNotification):
            assert 0 <= event.identifier <= 0xFFFFFFFF, event

    # The largest unit held at once: a command-1 header, token, payload length, payload.
    bound = 11 + max_token_length + 2 + payload_limit
    check_both_ways(make, data, bound=bound, check=check)


def TestOneInput(data: bytes) -> None:
    check_with_limits(data, *DEFAULT_LIMITS)
    check_with_limits(data, *OTHER_LIMITS[len(data) % len(OTHER_LIMITS)])


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
