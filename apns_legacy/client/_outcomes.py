"""What became of each notification, and the sender's running totals."""

from __future__ import annotations

import collections
import enum
from collections.abc import Mapping
from typing import Any, Final

import attrs

from ..h2wire import Reason, reason_from_str
from ..wire import Broadcast, Notification, Status, status_from_int, status_name


class OutcomeKind(enum.Enum):
    """The three ways a notification can end (DESIGN.md, "Delivery semantics")."""

    #: Not settled yet. Only seen on an outcome you kept a reference to early.
    PENDING = "pending"
    #: The gateway took it; ``evidence`` says how we know.
    ACCEPTED = "accepted"
    #: The gateway named it in an error response; ``status`` says why.
    REJECTED = "rejected"
    #: The sender gave up on it; ``reason`` says why.
    FAILED = "failed"


# Enum members are slow to reach through their class in Python 3.11 (about 90 ns a
# time); the outcome constructors run once per notification.
_PENDING: Final = OutcomeKind.PENDING


class Evidence(enum.Enum):
    """How the sender knows a notification was accepted."""

    #: The gateway answered something written after it on the same connection (our
    #: confirmation probe, or a later notification it rejected): it read this one
    #: and did not refuse it.
    CONFIRMED = "confirmed"
    #: The gateway's status-10 (shutdown) response named it, or a later one, as the
    #: last notification it accepted.
    SHUTDOWN = "shutdown"
    #: No evidence: the server's TCP stack acknowledged the bytes and no error
    #: response came for ``settle_after`` seconds (``assume_accepted``, or command 0,
    #: which has no error responses). An assumption, reported as one.
    ASSUMED = "assumed"


class Outcome:
    """The one and only outcome of one submitted notification.

    The sender makes one of these for each submitted notification (``submit_many``
    makes it when the notification leaves the queue or the in-flight window, so that
    a notification waiting there is one object less) and fills it in when the
    notification settles, then hands it to ``on_outcome`` (or
    :meth:`Sender.outcomes`). Treat it as read-only. (It is a plain slotted class,
    not a frozen attrs class, because the sender's hot path handles hundreds of
    thousands a second and must not allocate a second object per notification.)
    """

    __slots__ = (
        "_notification",
        "broadcast",
        "evidence",
        "identifier",
        "kind",
        "losses",
        "reason",
        "status",
        "tag",
    )

    #: For one device of a broadcast (``Sender.submit_broadcast``): what it shares with
    #: the others. None otherwise.
    broadcast: Broadcast | None

    def __init__(self, notification: Notification, tag: Any = None) -> None:
        self._notification = notification
        self.broadcast = None
        #: Whatever the caller passed to ``submit(..., tag=...)``, handed back untouched.
        self.tag = tag
        self.kind = _PENDING
        #: The gateway's status code, for rejections.
        self.status: Status | int | None = None
        #: Why it failed, for failures (None otherwise).
        self.reason: str | None = None
        #: How we know the gateway took it, for acceptances (None otherwise).
        self.evidence: Evidence | None = None
        #: The identifier it carried on its last write (None if never written).
        self.identifier: int | None = None
        #: How many connections it was in flight on that died without saying what
        #: they had processed (each time it was written again).
        self.losses = 0

    @property
    def notification(self) -> Notification:
        """The notification this is the outcome of."""
        return self._notification

    @property
    def token_bytes(self) -> bytes:
        """The raw device token."""
        return self.notification.token.value

    @property
    def possible_duplicate(self) -> bool:
        """It was in flight on a connection that died without saying what it had
        processed, and was written again: the device may see it twice."""
        return self.losses > 0

    @property
    def accepted(self) -> bool:
        return self.kind is OutcomeKind.ACCEPTED

    def __repr__(self) -> str:
        detail = f" status={self.status!r}" if self.status is not None else ""
        detail += f" reason={self.reason!r}" if self.reason else ""
        detail += f" evidence={self.evidence.value}" if self.evidence is not None else ""
        return (
            f"<Outcome {self.kind.value}{detail} token={self.notification.token!r} "
            f"identifier={self.identifier} tag={self.tag!r}>"
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, as the command line's ``--report`` writes it."""
        return {
            "token": self.notification.token.hex,
            "identifier": self.identifier,
            "outcome": self.kind.value,
            "status": None if self.status is None else int(self.status),
            "status_name": None if self.status is None else status_name(self.status),
            "reason": self.reason,
            "evidence": None if self.evidence is None else self.evidence.value,
            "possible_duplicate": self.possible_duplicate,
        }


@attrs.define
class SenderStats:
    """Running totals. ``submitted == accepted + rejected + failed + pending`` at all times."""

    submitted: int = 0
    #: Frames written, counting each write of a replayed notification again.
    written: int = 0
    accepted: int = 0
    #: Of ``accepted``: settled by assumption (``Evidence.ASSUMED``), not evidence.
    assumed: int = 0
    rejected: int = 0
    rejected_by_status: collections.Counter[int] = attrs.Factory(collections.Counter)
    failed: int = 0
    #: Of ``failed``: the confirmation probe went unanswered, so their fate is unknown.
    unconfirmed: int = 0
    #: Writes of notifications that had been written before (after an error or a loss).
    replayed: int = 0
    #: Replays that may have been delivered already (the connection died silently).
    possible_duplicates: int = 0
    connections_opened: int = 0
    #: Connections opened after the first one of each slot (to replace a lost one).
    reconnects: int = 0
    connect_failures: int = 0
    probes: int = 0
    #: Confirmation probes that got no answer within ``probe_timeout``.
    probes_unanswered: int = 0
    #: Connections ended because a write made no progress for ``write_timeout``.
    stalled_writes: int = 0
    #: Error responses naming an identifier the sender did not have in flight.
    unknown_identifiers: int = 0
    #: Connections that started on a spare opened ahead of need (no handshake waited for).
    spares_used: int = 0
    #: Connections whose TLS handshake resumed an earlier session.
    tls_resumed: int = 0

    @property
    def settled(self) -> int:
        return self.accepted + self.rejected + self.failed

    @property
    def pending(self) -> int:
        return self.submitted - self.settled

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of the binary sender's totals (statuses by name)."""
        data = attrs.asdict(self)
        data["rejected_by_status"] = {
            status_name(status_from_int(k)): v for k, v in sorted(self.rejected_by_status.items())
        }
        data["pending"] = self.pending
        return data

    def to_http2_json(self, rejected_by_reason: Mapping[str, int]) -> dict[str, Any]:
        """A JSON-ready dict of the HTTP/2 sender's totals: ``rejected_by_status`` keyed
        by HTTP status (``"400"``, ``"410"``), ``rejected_by_reason`` by Apple's reason
        (ordered by status, then name; from ``Http2Sender.rejected_by_reason``), and
        none of the binary protocol's own counters (probes, assumed, unconfirmed,
        stalled writes, unknown identifiers), which are always 0 there."""
        data = {k: v for k, v in attrs.asdict(self).items() if k not in _BINARY_ONLY}
        data["rejected_by_status"] = {
            str(int(k)): v for k, v in sorted(self.rejected_by_status.items())
        }
        data["rejected_by_reason"] = dict(
            sorted(rejected_by_reason.items(), key=lambda item: (_reason_status(item[0]), item[0]))
        )
        data["pending"] = self.pending
        return data


#: SenderStats fields that only the binary sender counts.
_BINARY_ONLY: Final = frozenset(
    {
        "assumed",
        "unconfirmed",
        "probes",
        "probes_unanswered",
        "stalled_writes",
        "unknown_identifiers",
    }
)


def _reason_status(reason: str) -> int:
    # Apple's table gives each reason one status; a reason it adds later sorts last.
    known = reason_from_str(reason)
    return known.status if isinstance(known, Reason) else 999


#: What the sender's queue and windows hold: an outcome, or (from ``submit_many``) the
#: notification itself until it leaves them (see :func:`as_outcome`).
Job = Outcome | Notification


def as_outcome(job: Job) -> Outcome:
    """The outcome of a queued job (a new one for a bare notification)."""
    return job if isinstance(job, Outcome) else Outcome(job)


def job_notification(job: Job) -> Notification:
    """The notification of a queued job."""
    return job.notification if isinstance(job, Outcome) else job


class BroadcastOutcome(Outcome):
    """The outcome of one notification of a broadcast (``Sender.submit_broadcast``).

    It keeps the raw token and the broadcast's shared values (``broadcast``), and
    makes its own :class:`Notification` only when someone asks for it (a report of a
    rejection, say): a million-device broadcast then costs one object per device, not
    three.
    """

    __slots__ = ("_made", "_token")

    broadcast: Broadcast

    def __init__(self, token: bytes, broadcast: Broadcast, tag: Any = None) -> None:
        self._token = token
        self.broadcast = broadcast
        self._made: Notification | None = None  # made on demand
        self.tag = tag
        self.kind = _PENDING
        self.status = None
        self.reason = None
        self.evidence = None
        self.identifier = None
        self.losses = 0

    @property
    def notification(self) -> Notification:
        made = self._made
        if made is None:
            made = self._made = self.broadcast.notification(self._token)
        return made

    @property
    def token_bytes(self) -> bytes:
        return self._token
