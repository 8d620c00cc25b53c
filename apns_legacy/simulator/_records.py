"""What the simulator remembers: accepted notifications, error frames, counters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

import attrs


@attrs.frozen(kw_only=True)
class AcceptedRecord:
    """One notification the gateway accepted.

    ``token`` is lower-case hex; ``payload`` is the payload decoded as UTF-8 (bytes
    that are not UTF-8 show as U+FFFD); ``time`` is UNIX seconds of the read that
    brought it. Fields a command does not carry are ``None``.
    """

    connection: int
    command: int
    identifier: int | None
    token: str
    payload: str
    expiry: int | None
    priority: int | None
    time: float
    topic: str | None

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-able dict (the JSON-lines format of ``record_path``)."""
        return attrs.asdict(self)


@attrs.frozen(kw_only=True)
class ErrorRecord:
    """One 6-byte error frame the gateway wrote (``08 status identifier``)."""

    connection: int
    status: int
    identifier: int
    reason: str
    time: float


@attrs.define(kw_only=True)
class SimulatorStats:
    """Counters since the simulator started. All plain ints; read them any time."""

    #: Gateway connections served (after TLS; refused handshakes are not counted).
    gateway_connections: int = 0
    #: Feedback connections served (after TLS).
    feedback_connections: int = 0
    #: TLS handshakes that failed or timed out (both ports).
    handshake_failures: int = 0
    #: Connections closed before TLS by a refuse-handshake fault.
    refused_handshakes: int = 0
    #: Connections closed because the certificate does not allow this environment.
    wrong_environment: int = 0
    #: Application bytes read from gateway connections.
    bytes_received: int = 0
    #: Most bytes a gateway connection held unparsed after parsing a read (at most one
    #: incomplete frame, or one command-2 item).
    max_buffered: int = 0
    #: Notifications accepted.
    accepted: int = 0
    #: Notifications refused (with or without an error frame).
    rejected: int = 0
    #: Error frames written.
    error_frames: int = 0
    #: Connections closed for a bad notification or unknown command without a frame.
    silent_closes: int = 0
    #: Connections closed with a TCP reset by a fault.
    resets: int = 0
    #: Connections closed cleanly by a drop-after fault.
    drops: int = 0
    #: Connections closed with a reset after an error frame because the client's bytes
    #: were waiting unread (``ErrorClose.RESET_IF_UNREAD``).
    unread_resets: int = 0
    #: Connections closed for being idle (``idle_timeout``, or the idle-timeout fault).
    idle_closes: int = 0
    #: Connections that stopped being read (stop-reading fault).
    stalls: int = 0
    #: TCP connections open now (both ports).
    open_connections: int = 0
    #: TCP connections closed at once because ``max_connections`` were open.
    over_limit: int = 0
    #: Feedback tuples written.
    feedback_items_sent: int = 0
    #: Unexpected exceptions in connection handlers (bugs; logged at ERROR).
    internal_errors: int = 0


class JsonLinesWriter:
    """Appends each accepted record to a file as one JSON object a line."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: IO[str] | None = self.path.open("a", encoding="utf-8")

    def write(self, record: AcceptedRecord) -> None:
        if self._file is not None:
            self._file.write(json.dumps(record.to_json(), separators=(",", ":")) + "\n")

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
