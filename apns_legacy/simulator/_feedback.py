"""The feedback service's list: per topic, tokens whose app is gone, with a time.

Apple's rules (PROTOCOL.md section 8): on connect the service writes every pending
``timestamp | length | token`` tuple for the certificate's topic and closes; the
list is cleared once read, so a second reader gets nothing.

Choices where Apple says nothing: one entry per token and topic (a later push to
the same uninstalled token updates its time, keeping its place in the list);
entries are taken from the list when the connection starts, so two readers at
once never both get one; if writing them fails, they are put back.
"""

from __future__ import annotations

import datetime as _dt
from typing import Protocol

import trio

from ..wire import encode_feedback_item
from . import _streams


def timestamp_of(value: int | float | _dt.datetime) -> int:
    """UNIX seconds (uint32) from an int, a float or an aware datetime."""
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            raise ValueError("feedback timestamps must be timezone-aware datetimes")
        seconds = int(value.timestamp())
    else:
        seconds = int(value)
    if not 0 <= seconds <= 0xFFFF_FFFF:
        raise ValueError(f"timestamp {seconds} does not fit in 4 bytes")
    return seconds


class FeedbackStore:
    """Pending feedback tuples, one ordered ``token -> timestamp`` map per topic."""

    def __init__(self) -> None:
        self._by_topic: dict[str | None, dict[bytes, int]] = {}

    def add(self, topic: str | None, token: bytes, timestamp: int) -> None:
        """Add or update the entry for ``token`` under ``topic``."""
        self._by_topic.setdefault(topic, {})[bytes(token)] = timestamp

    def pending(self, topic: str | None) -> list[tuple[int, bytes]]:
        """The entries waiting for ``topic`` as ``(timestamp, token)``, without taking them."""
        return [(ts, token) for token, ts in self._by_topic.get(topic, {}).items()]

    def take(self, topic: str | None) -> list[tuple[int, bytes]]:
        """Remove and return the entries for ``topic``, oldest first."""
        entries = self._by_topic.pop(topic, {})
        return [(ts, token) for token, ts in entries.items()]

    def put_back(self, topic: str | None, entries: list[tuple[int, bytes]]) -> None:
        """Return entries whose delivery failed; newer entries for the same token win."""
        current = self._by_topic.get(topic, {})
        merged = {token: ts for ts, token in entries}
        for token, ts in current.items():
            merged[token] = max(ts, merged.get(token, ts))
        if merged:
            self._by_topic[topic] = merged

    @staticmethod
    def encode(entries: list[tuple[int, bytes]]) -> bytes:
        """The bytes the service writes for ``entries``."""
        return b"".join(encode_feedback_item(ts, token) for ts, token in entries)


class FeedbackSource(Protocol):
    """Where a feedback connection takes its tuples from (:class:`FeedbackStore`, a bridge's)."""

    def take(self, topic: str | None) -> list[tuple[int, bytes]]: ...

    def put_back(self, topic: str | None, entries: list[tuple[int, bytes]]) -> None: ...


async def serve_feedback(
    stream: trio.abc.Stream,
    source: FeedbackSource,
    *,
    topic: str | None,
    chunk_size: int | None = None,
) -> int:
    """Write ``topic``'s pending tuples from ``source`` to ``stream`` and close it.

    The entries are taken when the connection starts and put back if writing fails.
    Returns how many tuples were written.
    """
    entries = source.take(topic)
    data = FeedbackStore.encode(entries)
    chunk = chunk_size or len(data) or 1
    try:
        for start in range(0, len(data), chunk):
            await stream.send_all(data[start : start + chunk])
    except BaseException:
        source.put_back(topic, entries)
        raise
    await _streams.close(stream)
    return len(entries)
