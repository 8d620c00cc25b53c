"""What an HTTP/2 answer means to a legacy client, and the replay ledger of ``exact`` mode.

Mapping (HTTP2.md §5; the issue's table), from an :class:`Http2Outcome` to the binary
status the client sees (0: nothing, binary silence) and an optional feedback entry:

==========================================  ==================  =====================
Upstream                                    Client              Feedback
==========================================  ==================  =====================
200                                         nothing             no
410 Unregistered / ExpiredToken             nothing             yes, Apple's timestamp
400 BadDeviceToken, DeviceTokenNotForTopic  8                   no (``feedback-only``:
                                                                nothing, and yes)
413 PayloadTooLarge                         7                   no
400 MissingDeviceToken, 404 BadPath         2                   no
400 MissingTopic, TopicDisallowed           3                   no
400 BadTopic                                6                   no
400 PayloadEmpty                            4                   no
403 family (credentials), given up          1, operator alert   no
(a failure: ``Http2Outcome.apns_reason``)
other 400s, 405 (a bridge bug)              255, operator alert no
==========================================  ==================  =====================

Transient answers (429, 500, 503, GOAWAY, lost connections, ExpiredProviderToken)
never get here: the HTTP/2 sender retries them with back-off and only a give-up
arrives, as a failure (status 1). In ``feedback-only`` mode no upstream answer ever
becomes a status: the client sees silence, the operator the log.

The ledger (``exact`` mode, HTTP2.md §6 rule 3). When a client connection reports
the failure of notification *k*, it has already forwarded some notifications after
*k* upstream; Apple's gateway would have discarded them, so the client resends them
(renumbered) on its next connection. The ledger keeps those :class:`Entry` objects,
per client identity, keyed by content (token, payload, expiry, priority). A resent
frame whose content matches the oldest unconsumed entry with that content takes it
over instead of going upstream again: its outcome (already known, or still to come)
is the entry's. A failure among them is then reported on that next connection, one
per connection, in order. Entries expire after ``ttl`` seconds and the ledger keeps
at most ``size`` of them (oldest dropped first).

Matching is by content on every connection of the identity, not strictly in order on
one connection: a client with several connections (our own sender, for one) spreads
its replay over all of them, interleaved with fresh notifications, so neither "in
order" nor "drop on the first mismatch" holds there. The price: a deliberate repeat
of exactly the same notification within ``ttl`` of a reported failure, before the
replay of the first copy, is taken for the replay (the device then sees it once).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable
from typing import Final, Protocol

from ..client import Http2Outcome, OutcomeKind
from ..h2wire import Reason
from ..wire import Status
from ._config import BridgeMode

#: A notification's content, as the ledger compares it.
Key = tuple[bytes, bytes, int | None, int | None]

#: Statuses of entries: ``None`` pending, 0 fine (no frame), >0 the binary status.
PENDING: Final = None
OK: Final = 0

_STATUS_BY_REASON: Final = {
    Reason.BAD_DEVICE_TOKEN.value: Status.INVALID_TOKEN,
    Reason.DEVICE_TOKEN_NOT_FOR_TOPIC.value: Status.INVALID_TOKEN,
    Reason.PAYLOAD_TOO_LARGE.value: Status.INVALID_PAYLOAD_SIZE,
    Reason.MISSING_DEVICE_TOKEN.value: Status.MISSING_DEVICE_TOKEN,
    Reason.BAD_PATH.value: Status.MISSING_DEVICE_TOKEN,
    Reason.MISSING_TOPIC.value: Status.MISSING_TOPIC,
    Reason.TOPIC_DISALLOWED.value: Status.MISSING_TOPIC,
    Reason.BAD_TOPIC.value: Status.INVALID_TOPIC_SIZE,
    Reason.PAYLOAD_EMPTY.value: Status.MISSING_PAYLOAD,
}
#: Reasons that are the bridge's own configuration (credentials): status 1 and an alert.
_CREDENTIAL_REASONS: Final = frozenset(
    r.value
    for r in (
        Reason.BAD_CERTIFICATE,
        Reason.BAD_CERTIFICATE_ENVIRONMENT,
        Reason.FORBIDDEN,
        Reason.INVALID_PROVIDER_TOKEN,
        Reason.MISSING_PROVIDER_TOKEN,
        Reason.UNRELATED_KEY_ID_IN_TOKEN,
        Reason.BAD_ENVIRONMENT_KEY_ID_IN_TOKEN,
        Reason.EXPIRED_PROVIDER_TOKEN,
    )
)


class Mapped:
    """What one upstream outcome means downstream."""

    __slots__ = ("alert", "configuration", "feedback", "status")

    def __init__(
        self,
        status: int,
        feedback: int | None = None,
        alert: str | None = None,
        *,
        configuration: bool = False,
    ) -> None:
        #: The binary status for the client (0: silence).
        self.status = status
        #: Feedback timestamp (UTC epoch seconds) to list the token with, if any.
        self.feedback = feedback
        #: An operator-visible error (the bridge's configuration, or a bridge bug).
        self.alert = alert
        #: The alert is about the bridge's credentials or topic (health: failing).
        self.configuration = configuration


def map_outcome(outcome: Http2Outcome, mode: BridgeMode, now: float) -> Mapped:
    """The client status and feedback entry for ``outcome`` (see the module docstring)."""
    kind = outcome.kind
    if kind is OutcomeKind.ACCEPTED:
        return Mapped(OK)
    if kind is OutcomeKind.REJECTED:
        http = int(outcome.status or 0)
        reason = outcome.reason or ""
        if http == 410:
            stamp = outcome.timestamp
            seconds = int(stamp.timestamp()) if stamp is not None else int(now)
            return Mapped(OK, feedback=seconds)
        status = _STATUS_BY_REASON.get(reason)
        if status is None and http == 413:
            status = Status.INVALID_PAYLOAD_SIZE
        if status is Status.INVALID_TOKEN and mode is BridgeMode.FEEDBACK_ONLY:
            return Mapped(OK, feedback=int(now))
        if status is not None:
            return Mapped(OK if mode is BridgeMode.FEEDBACK_ONLY else int(status))
        if reason in _CREDENTIAL_REASONS:
            alert = f"APNs refused the bridge's credentials: {http} {reason}"
            return Mapped(_quiet(mode, Status.PROCESSING_ERROR), alert=alert, configuration=True)
        alert = f"APNs refused a request the bridge built: {http} {reason} (a bridge bug?)"
        return Mapped(_quiet(mode, Status.UNKNOWN), alert=alert)
    # Failed: a configuration fault the sender saw (Apple's reason, structured), or given
    # up after retries / APNs unreachable (no Apple reason: status 1).
    text = outcome.reason or ""
    apns_reason = outcome.apns_reason
    if apns_reason is not None:
        status = _STATUS_BY_REASON.get(apns_reason)
        if status is not None:
            return Mapped(_quiet(mode, status), alert=text, configuration=True)
        return Mapped(
            _quiet(mode, Status.PROCESSING_ERROR),
            alert=text,
            configuration=apns_reason in _CREDENTIAL_REASONS,
        )
    return Mapped(_quiet(mode, Status.PROCESSING_ERROR), alert=text)


def _quiet(mode: BridgeMode, status: int) -> int:
    return OK if mode is BridgeMode.FEEDBACK_ONLY else int(status)


class Owner(Protocol):
    """Whoever waits for an entry's outcome (the client connection that holds it)."""

    def resolved(self, entry: Entry) -> None: ...


class Entry:
    """One notification forwarded upstream, whose outcome one client connection waits for.

    ``status`` is ``None`` until the answer comes, then 0 (nothing to report) or the
    binary status. ``owner`` is told when it resolves; it changes when a replay on
    another connection takes the entry over from the ledger.
    """

    __slots__ = ("key", "ledgered", "owner", "status")

    def __init__(self, key: Key, owner: Owner | None) -> None:
        self.key = key
        self.status: int | None = PENDING
        self.owner = owner
        #: In a ledger, not taken yet.
        self.ledgered = False

    def resolve(self, status: int) -> None:
        if self.status is not None:
            return
        self.status = status
        owner = self.owner
        if owner is not None:
            # Resolved once and for all: nobody waits any more (and the entry, kept in a
            # ledger or a window a while longer, must not keep its connection alive).
            self.owner = None
            owner.resolved(self)


class ReplayLedger:
    """The ``exact`` mode's memory of one client identity (see the module docstring).

    Args:
        ttl: seconds an entry is kept.
        size: most entries kept (the oldest are dropped first).
        clock: monotonic seconds.
    """

    def __init__(self, *, ttl: float, size: int, clock: Callable[[], float]) -> None:
        self.ttl = ttl
        self.size = size
        self.clock = clock
        self._by_key: dict[Key, collections.deque[Entry]] = {}
        self._order: collections.deque[tuple[float, Entry]] = collections.deque()
        self._count = 0
        #: Entries taken by a replay (never sent upstream twice).
        self.matched = 0
        #: Entries that expired or were pushed out unmatched.
        self.expired = 0

    def __len__(self) -> int:
        self._purge()
        return self._count

    @property
    def backlog(self) -> int:
        """Items in the age queue, taken ones not yet dropped included (at most about
        twice the live entries: memory follows ``size``, not the traffic)."""
        return len(self._order)

    def add(self, entries: Iterable[Entry]) -> None:
        """Remember ``entries`` (in the order they were forwarded), owned by nobody."""
        deadline = self.clock() + self.ttl
        for entry in entries:
            entry.owner = None
            entry.ledgered = True
            self._by_key.setdefault(entry.key, collections.deque()).append(entry)
            self._order.append((deadline, entry))
            self._count += 1
        self._purge()

    def live(self) -> list[tuple[float, Entry]]:
        """The entries not taken or expired, oldest first, with their deadlines."""
        self._purge()
        return [(deadline, entry) for deadline, entry in self._order if entry.ledgered]

    def restore(self, key: Key, status: int | None, deadline: float) -> None:
        """Remember an entry read back from the store (after a restart), resolved
        already: ``status`` as it was, or, if no answer was known when it was written,
        ``OK``: it went upstream, so a replay must not send it again (at most once).
        Call in the order they were saved, before :meth:`add`."""
        entry = Entry(key, None)
        entry.status = OK if status is None else status
        entry.ledgered = True
        self._by_key.setdefault(key, collections.deque()).append(entry)
        self._order.append((deadline, entry))
        self._count += 1
        self._purge()

    def take(self, key: Key, owner: Owner) -> Entry | None:
        """The oldest unconsumed entry with content ``key``, now owned by ``owner``."""
        if not self._count:
            return None
        self._purge()
        queue = self._by_key.get(key)
        if not queue:
            return None
        entry = queue.popleft()
        if not queue:
            del self._by_key[key]
        entry.ledgered = False
        # An entry still waiting for its answer reports to the new connection.
        entry.owner = owner if entry.status is None else None
        self._count -= 1
        self.matched += 1
        if len(self._order) > 2 * self._count + 64:
            # Taken entries stay in the age queue until they reach its head; drop them
            # now and then, so that the queue is bounded by ``size``, not by traffic.
            self._order = collections.deque(item for item in self._order if item[1].ledgered)
        return entry

    def _purge(self) -> None:
        now = self.clock()
        order = self._order
        while order and (order[0][0] <= now or self._count > self.size):
            _, entry = order.popleft()
            if not entry.ledgered:
                continue  # taken already
            entry.ledgered = False
            queue = self._by_key[entry.key]
            queue.remove(entry)  # the oldest of its key: at or near the front
            if not queue:
                del self._by_key[entry.key]
            self._count -= 1
            self.expired += 1
