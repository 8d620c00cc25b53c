"""What the three atheris harnesses share: cutting the input, driving a decoder, and
checking the invariants.

The invariant (h11's and websockets' fuzz invariant): a decoder fed any bytes, in any
chunking, yields events or raises our documented :class:`RemoteProtocolError`; any
other exception propagates and atheris reports it as a crash. On top of that:

* the whole input and the same input cut at fuzzer-chosen points give the same
  events and the same outcome (the decoders' docstring promises this);
* after draining, a decoder never holds more than the largest unit it can legally
  be in the middle of (``bound``);
* a gateway decoder stops at its first :class:`BadNotification` and afterwards
  buffers nothing more.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Protocol

import atheris

from apns_legacy.wire import (
    NEED_DATA,
    BadNotification,
    ConnectionClosed,
    RemoteProtocolError,
)

#: Most cut points taken from one input.
MAX_CUTS = 12


class Decoder(Protocol):
    @property
    def buffered(self) -> int: ...

    def receive_data(self, data: bytes) -> None: ...

    def receive_eof(self) -> None: ...

    def next_event(self) -> object: ...


def cuts_from(data: bytes) -> list[bytes]:
    """``data`` cut at points that the fuzzer chooses (read from ``data`` itself)."""
    fdp = atheris.FuzzedDataProvider(data)
    count = fdp.ConsumeIntInRange(0, MAX_CUTS)
    points = sorted(fdp.ConsumeIntInRange(0, len(data)) for _ in range(count))
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def run(
    make: Callable[[], Decoder],
    chunks: Sequence[bytes],
    *,
    bound: int,
    check: Callable[[object], None],
) -> tuple[list[object], bool]:
    """Feed ``chunks``, drain after each, then EOF and drain again.

    Returns the events and whether a RemoteProtocolError ended the stream. ``check``
    looks at every event and raises if it breaks a rule.
    """
    decoder = make()
    events: list[object] = []

    def pump() -> bool:
        # True once a final event has arrived: nothing more may be asked for.
        while (event := decoder.next_event()) is not NEED_DATA:
            check(event)
            events.append(event)
            if isinstance(event, BadNotification | ConnectionClosed):
                return True
        return False

    try:
        for i, chunk in enumerate(chunks):
            decoder.receive_data(chunk)
            if pump():
                if isinstance(events[-1], BadNotification):
                    # Everything after a bad notification is dropped, not buffered.
                    for rest in chunks[i + 1 :]:
                        decoder.receive_data(rest)
                    if decoder.buffered != 0:
                        raise AssertionError(f"{decoder.buffered} bytes kept after the end")
                else:
                    raise AssertionError("ConnectionClosed before EOF")
                return events, False
            if decoder.buffered > bound:
                raise AssertionError(f"{decoder.buffered} bytes buffered, bound {bound}")
        decoder.receive_eof()
        pump()
        if not events or not isinstance(events[-1], BadNotification | ConnectionClosed):
            raise AssertionError(f"no final event after EOF: {events[-1:]}")
    except RemoteProtocolError:
        return events, True
    return events, False


def check_both_ways(
    make: Callable[[], Decoder],
    data: bytes,
    *,
    bound: int,
    check: Callable[[object], None],
) -> None:
    """Run ``data`` whole and cut; both must pass the checks and agree."""
    whole = run(make, [data], bound=bound, check=check)
    chunked = run(make, cuts_from(data), bound=bound, check=check)
    if whole != chunked:
        raise AssertionError(f"chunking changed the result:\n{whole}\n{chunked}")
