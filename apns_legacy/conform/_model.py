"""The case model: what a case scripts, what it gives the client, what it expects.

Pure values (attrs, no I/O). A :class:`Case` names the Apple or TN2265 text it
checks, the scripted gateway's behaviour (:class:`Script`), the workload handed to
the client (:class:`WorkItem`, one JSON line each) and what counts as OK. The
gateway's record (:class:`Observation`) and the client's own report
(:class:`ClientReport`) are graded against it in ``_grading``.

Tokens carry the case: ``c5 <case number> <index, 4 bytes> <filler>``, so a
gateway that serves many cases on one port (``conform serve``) knows from the
first notification which case a connection belongs to, and every notification
maps back to its workload line whatever identifier the client chose.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final

import attrs

#: First byte of every workload token.
TOKEN_MARK: Final = 0xC5


class Grade(enum.Enum):
    """Autobahn's vocabulary."""

    #: Every notification delivered exactly once; failures reported as the case expects.
    OK = "OK"
    #: Nothing lost, but duplicates, or reconnecting faster than a sane backoff.
    NON_STRICT = "NON-STRICT"
    #: A loss, the rejected notification resent, a misreport, or a hang past the deadline.
    FAILED = "FAILED"
    #: Figures only (latencies, reconnects, bytes).
    INFORMATIONAL = "INFORMATIONAL"
    #: The client said it does not support what the case needs.
    UNIMPLEMENTED = "UNIMPLEMENTED"


class Service(enum.Enum):
    GATEWAY = "gateway"
    FEEDBACK = "feedback"


class ServerCert(enum.Enum):
    """Which certificate the scripted gateway shows."""

    TRUSTED = "trusted"
    #: Issued by a CA the client was not given: the client must refuse the handshake.
    UNTRUSTED = "untrusted"
    #: Issued by the client's CA for another host name: the client must refuse it.
    WRONG_NAME = "wrong-name"


class Expect(enum.Enum):
    """What should become of one workload line."""

    #: Delivered exactly once (duplicates allowed only where the case says so).
    DELIVER = "deliver"
    #: Rejected by the gateway with the line's status; never written again after that.
    REJECT = "reject"
    #: Malformed by PROTOCOL.md: the client should refuse it before writing it; if it
    #: writes it anyway the gateway refuses it as Apple would.
    REFUSE = "refuse"
    #: Cannot be delivered in this case (wrong environment, untrusted server): the
    #: client must report a failure and must not claim acceptance.
    UNDELIVERABLE = "undeliverable"


class Close(enum.Enum):
    GRACEFUL = "graceful"
    #: SO_LINGER 0: the kernel sends RST (what a close with unread data does anyway).
    RESET = "reset"


@attrs.frozen(kw_only=True)
class ErrorStyle:
    """How the scripted gateway writes an error response and ends the connection."""

    #: Seconds between the bad notification and its error response; what the client
    #: writes meanwhile is read and dropped (Apple discarded it).
    delay: float = 0.0
    #: Sizes of the pieces of the 6 bytes, each its own TLS record and write.
    pieces: tuple[int, ...] = (6,)
    #: Seconds between pieces.
    piece_gap: float = 0.05
    #: Stop reading after the bad notification and close with what the client wrote
    #: still unread (a TCP reset follows the error response).
    close: Close = Close.GRACEFUL

    def __attrs_post_init__(self) -> None:
        if sum(self.pieces) != 6 or any(p <= 0 for p in self.pieces):
            raise ValueError(f"error response pieces {self.pieces} must be positive and add to 6")


@attrs.frozen(kw_only=True)
class FeedbackEntry:
    token: bytes
    timestamp: int
    topic: str


@attrs.frozen(kw_only=True)
class Script:
    """The scripted gateway (or feedback service) of one case."""

    #: Workload index -> status: answered every time that notification arrives.
    reject: Mapping[int, int] = attrs.field(factory=dict)
    error: ErrorStyle = ErrorStyle()
    #: After the first arrival of this index: status 10 naming it, then close.
    shutdown_after: int | None = None
    #: After the first arrival of this index: TCP reset, no error response.
    reset_after: int | None = None
    #: After the first arrival of this index: close without a word (command 0 errors).
    silent_close_after: int | None = None
    #: Complete every handshake, then close without a word (wrong environment).
    close_after_handshake: bool = False
    #: Close (FIN, no frame) a connection that was idle this many seconds.
    idle_drop: float | None = None
    #: Read at most this many bytes per second (back-pressure).
    read_rate: int | None = None
    server_cert: ServerCert = ServerCert.TRUSTED
    #: Feedback service: the lists per topic, and the size of each write (TLS record).
    feedback: tuple[FeedbackEntry, ...] = ()
    feedback_piece: int | None = None


@attrs.frozen(kw_only=True)
class WorkItem:
    """One line of the workload file."""

    index: int
    token: bytes
    payload: bytes
    expect: Expect = Expect.DELIVER
    #: Expected status for :attr:`Expect.REJECT` (or the gateway's for REFUSE).
    status: int | None = None
    #: Seconds to wait after the previous line before submitting this one.
    after: float = 0.0
    #: Command the client should use (0, 1 or 2); None: the client's default.
    command: int | None = None
    priority: int | None = None
    expiry: int | None = None

    def to_json(self) -> dict[str, Any]:
        line: dict[str, Any] = {
            "index": self.index,
            "token": self.token.hex(),
            # A string holding JSON: sent byte for byte, so sizes are exact.
            "payload": self.payload.decode("utf-8"),
        }
        if self.after:
            line["after"] = self.after
        for name in ("command", "priority", "expiry"):
            value = getattr(self, name)
            if value is not None:
                line[name] = value
        return line


@attrs.frozen(kw_only=True)
class Case:
    """One conformance case."""

    id: str
    title: str
    #: The Apple / TN2265 / field-report text the case checks.
    requirement: str
    #: What the scripted gateway does, in words.
    behaviour: str
    #: What the client must do for OK.
    expectation: str
    script: Script
    workload: tuple[WorkItem, ...]
    service: Service = Service.GATEWAY
    #: Seconds the client may take (run mode), or the case stays open (serve mode).
    deadline: float = 20.0
    #: Duplicates are unavoidable (no error response): OK when flagged by the client.
    duplicates_allowed: bool = False
    #: Figures only: OK becomes INFORMATIONAL.
    informational: bool = False
    #: More connections than this is reconnecting faster than a sane backoff (NON-STRICT).
    max_connections: int = 10
    #: This many connections or more is a hot reconnect loop (FAILED).
    hot_loop: int = 40
    #: Feedback cases: the tokens the client must report (its own topic's list).
    feedback_expected: tuple[bytes, ...] = ()

    @property
    def group(self) -> str:
        return self.id.split(".", 1)[0]

    def workload_lines(self) -> list[str]:
        """The workload file's lines (feedback cases: one ``{"feedback": true}`` line)."""
        if self.service is Service.FEEDBACK:
            return [json.dumps({"feedback": True})]
        return [json.dumps(item.to_json(), separators=(",", ":")) for item in self.workload]


def make_token(case_number: int, index: int, length: int = 32) -> bytes:
    """The workload token for line ``index`` of case ``case_number``."""
    head = bytes([TOKEN_MARK, case_number & 0xFF]) + index.to_bytes(4, "big")
    filler = hashlib.sha256(head).digest() * 4
    return (head + filler)[:length]


def token_case(token: bytes) -> int | None:
    """The case number a workload token carries, or None for a foreign token."""
    if len(token) >= 6 and token[0] == TOKEN_MARK:
        return token[1]
    return None


def token_index(token: bytes) -> int | None:
    """The workload index a token carries, or None for a foreign token."""
    if len(token) >= 6 and token[0] == TOKEN_MARK:
        return int.from_bytes(token[2:6], "big")
    return None


# -- what the gateway saw -----------------------------------------------------------


class Fate(enum.Enum):
    """What the scripted gateway did with one arriving notification."""

    DELIVERED = "delivered"
    REJECTED = "rejected"
    #: Arrived after a rejection, shutdown or reset point: Apple discarded it.
    DISCARDED = "discarded"


@attrs.frozen(kw_only=True)
class Arrival:
    connection: int
    at: float
    index: int | None
    token: bytes
    identifier: int | None
    command: int
    priority: int | None
    expiry: int | None
    fate: Fate


WIRE_KEEP: Final = 1024


@attrs.define
class WireLog:
    """The first and the last :data:`WIRE_KEEP` bytes of one direction."""

    head: bytearray = attrs.Factory(bytearray)
    tail: bytearray = attrs.Factory(bytearray)
    total: int = 0

    def add(self, data: bytes | bytearray) -> None:
        self.total += len(data)
        room = WIRE_KEEP - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > WIRE_KEEP:
                del self.tail[: len(self.tail) - WIRE_KEEP]

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "head": self.head.hex(),
            # Bytes between head and tail that were not kept.
            "skipped": max(0, self.total - len(self.head) - len(self.tail)),
            "tail": self.tail.hex(),
        }


@attrs.define(kw_only=True)
class ConnectionLog:
    number: int
    opened: float
    closed: float | None = None
    handshake: str = "pending"
    client_name: str | None = None
    ending: str = ""
    bytes_in: int = 0
    bytes_out: int = 0
    #: First and last KiB of each direction (plaintext, after TLS).
    wire_in: WireLog = attrs.Factory(lambda: WireLog())
    wire_out: WireLog = attrs.Factory(lambda: WireLog())


@attrs.frozen(kw_only=True)
class BadFrame:
    connection: int
    at: float
    command: int
    status: int
    identifier: int
    reason: str


@attrs.define(kw_only=True)
class Observation:
    """Everything the scripted gateway recorded for one case."""

    connections: list[ConnectionLog] = attrs.Factory(list)
    arrivals: list[Arrival] = attrs.Factory(list)
    bad_frames: list[BadFrame] = attrs.Factory(list)
    #: (time, connection, text), in order.
    timeline: list[tuple[float, int, str]] = attrs.Factory(list)
    #: Feedback: tuples written in full, and whether the client stayed to the end.
    feedback_written: int = 0
    feedback_complete: bool = False
    #: Foreign tokens (not from the workload).
    foreign: int = 0
    #: Confirmation probes (zero-length token frames) answered with status 2.
    probes: int = 0

    def note(self, at: float, connection: int, text: str) -> None:
        self.timeline.append((round(at, 6), connection, text))


# -- what the client said -----------------------------------------------------------


@attrs.frozen(kw_only=True)
class Reported:
    """One line of the client's result file."""

    outcome: str  # accepted | rejected | failed | refused
    status: int | None = None
    possible_duplicate: bool = False


@attrs.frozen(kw_only=True)
class ClientReport:
    """What the client reported, and how its process ended (run mode only)."""

    outcomes: Mapping[int, Reported] = attrs.field(factory=dict)
    unimplemented: str | None = None
    feedback: tuple[tuple[bytes, int], ...] | None = None
    exit_code: int | None = None
    #: Lines of the result file that could not be read.
    problems: tuple[str, ...] = ()


OUTCOMES: Final = frozenset({"accepted", "rejected", "failed", "refused"})


def parse_result_lines(lines: list[str], *, exit_code: int | None = None) -> ClientReport:
    """Read a result file: JSON lines ``{"index", "outcome", "status"?,
    "possible_duplicate"?}``, ``{"unimplemented": "why"}``, or for feedback cases
    ``{"feedback_token": hex, "timestamp": n}``. Bad lines are kept as problems."""
    outcomes: dict[int, Reported] = {}
    unimplemented: str | None = None
    feedback: list[tuple[bytes, int]] | None = None
    problems: list[str] = []
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
            if not isinstance(line, dict):
                raise ValueError("not a JSON object")
            if "unimplemented" in line:
                unimplemented = str(line["unimplemented"]) or "unimplemented"
            elif "feedback_token" in line:
                feedback = feedback or []
                feedback.append(
                    (bytes.fromhex(str(line["feedback_token"])), int(line.get("timestamp", 0)))
                )
            else:
                index = line["index"]
                outcome = line["outcome"]
                if not isinstance(index, int) or outcome not in OUTCOMES:
                    raise ValueError(f"index must be an int and outcome one of {sorted(OUTCOMES)}")
                status = line.get("status")
                outcomes[index] = Reported(
                    outcome=outcome,
                    status=int(status) if status is not None else None,
                    possible_duplicate=bool(line.get("possible_duplicate", False)),
                )
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(f"result line {number}: {exc}")
    return ClientReport(
        outcomes=outcomes,
        unimplemented=unimplemented,
        feedback=tuple(feedback) if feedback is not None else None,
        exit_code=exit_code,
        problems=tuple(problems),
    )
