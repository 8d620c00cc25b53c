"""What the sender does after a connection ends: pure decisions over plain records.

A connection reports how it ended as an :class:`Ended` record; :class:`ConnectionPolicy`
turns the stream of those records into the window size for the next connection and,
when the evidence says retrying is pointless, a reason to give up. No I/O and no
clock here (durations arrive in the records), so every rule is tested directly
with hand-made records.

The rules:

* **Careful replay.** A connection that died without a word (reset, silent close,
  stalled write) leaves its window's fate unknown. The next connection writes one
  notification and a confirmation probe (:data:`CAREFUL_WINDOW`), so that a gateway
  that answers at all is seen to answer, and a notification that kills connections
  is isolated instead of taking a whole window down with it each time; the window
  then doubles with each confirmed one up to half of what the dead connection had
  written, and grows by an eighth at a time beyond that (TCP's slow start and
  congestion avoidance, in spirit), but never again to seven eighths of the smallest
  window that died that way, until :data:`_FORGET_DROP` (64) connections in a row
  have ended clean: a gateway that drops every connection after so many bytes is met
  with windows that fit. Unlike TCP, probing past the drop point is not free: every
  window lost takes one of its notifications' ``max_losses`` lives, and parallel
  connections growing together die together.
* **Slow start, with several connections.** Their first window is
  :data:`_INITIAL_WINDOW` (1,024) and doubles with each clean one up to
  ``window_size``. Until the gateway has answered once, nothing says whether the
  device list is stale, and each connection writes whatever a round trip lets it
  before the first answer (thousands of frames at 20 ms), all of it again after an
  early rejection; several connections starting together multiply that. A clean run
  pays one probe and reconnect per doubling (eight to reach 200,000). One connection
  starts at ``window_size``: it wastes one round trip's writing at most, and keeps
  to a single connection where Apple asked providers not to open and close them
  needlessly (the conformance case ``slow.reader`` counts them).
* **Wrong environment.** Apple's gateway accepted a certificate for the other
  environment in the handshake and then closed at once without an error response.
  That is the diagnosis only when the evidence says so: quick silent closes with
  nothing settled, the last of them on a careful connection (one notification and a
  probe, which any working gateway answers). A gateway that drops connections
  mid-stream answers the careful probe, and never earns the diagnosis. With command 0 a silent
  close is how the gateway rejects, so the rule does not apply.
* **Idle drops.** A gateway (or a middlebox) that drops a connection we had been
  quiet on for a while, with notifications waiting for their confirmation probe,
  drops idle connections sooner than ``confirm_after``: from then on the probe is
  written within half that quiet time.
* **Rejection-sized windows.** Everything written after a rejected notification is
  discarded by the gateway and written again, and a fast writer gets a whole round
  trip of frames (and the socket buffers) past the bad one before the answer arrives.
  When rejections come often (stale device lists), the window is sized to about twice
  the recent run of accepted notifications between rejections (an average over the
  last few; a run counts the clean windows confirmed since the previous rejection
  too, so a window that fell short of the next rejection does not shrink the
  estimate), so the waste per rejection stays near one window instead of a round
  trip's worth; clean windows double it back. Never past the ceiling that silent
  drops set: a gateway that drops connections after so many bytes sends rejections
  too, and a window fitted to those alone would outgrow the drop.
* **Unproductive connections.** ``max_unproductive`` connections in a row that
  ended without settling anything (stalled writes, unanswered probes, drops) fail the
  queue, so that a gateway that stopped reading cannot hold a run forever.
"""

from __future__ import annotations

import enum
from typing import Final

import attrs

from ..wire import Command

#: The window of a connection after one died without a word: one notification and a probe.
CAREFUL_WINDOW: Final = 1
# A silent close this soon after the handshake counts towards the wrong-environment rule.
_QUICK_CLOSE: Final = 2.0
_QUICK_CLOSES_FATAL: Final = 2
# The smallest window fitted to the rejection rate.
_MIN_FITTED: Final = 16
# The first window (doubling with each clean one up to window_size).
_INITIAL_WINDOW: Final = 1024
# Clean connections in a row after which the drop point is forgotten.
_FORGET_DROP: Final = 64
# A close after at least this long without a write is taken for an idle drop.
_IDLE_DROP: Final = 0.1


class EndKind(enum.Enum):
    """How a connection ended."""

    #: The gateway's error response settled the window (a rejection, the answer to a
    #: confirmation probe, or status 10), and the gateway closed.
    ANSWERED = "answered"
    #: Closed or reset by the gateway without an error response: fate unknown.
    LOST = "lost"
    #: A write made no progress for ``write_timeout``: the gateway stopped reading.
    STALLED = "stalled"
    #: The confirmation probe got no answer within ``probe_timeout``.
    UNCONFIRMED = "unconfirmed"
    #: Nothing in flight for ``idle_timeout``: we closed it.
    IDLE = "idle"
    #: We closed it (the sender closing, or a server that never answers probes
    #: settled by assumption).
    CLOSED = "closed"


@attrs.frozen
class Ended:
    """The record a connection leaves behind."""

    kind: EndKind
    #: Seconds from the end of the TLS handshake to the end.
    duration: float
    #: Notifications written on it (replays included, the probe not).
    written: int
    #: Notifications in flight whose fate it left unknown (resent as possible duplicates).
    unknown: int
    #: Something was accepted or rejected on it on the gateway's word.
    progress: bool
    #: The gateway closed it cleanly (EOF, or TLS cut short), not with a reset.
    silent: bool
    #: It ran with the careful window.
    careful: bool
    #: Seconds since our last write when it ended (0 while a write was under way).
    quiet_for: float = 0.0
    #: Notifications accepted on it on the gateway's word.
    accepted: int = 0
    #: The gateway rejected a notification on it (not the confirmation probe).
    rejected: bool = False
    #: In words, for logs and failure reasons.
    reason: str = ""
    #: The TLS layer refused the session (a certificate problem), in words.
    tls_refusal: str | None = None


@attrs.frozen
class GiveUp:
    """Stop retrying: fail what is queued, with ``reason``."""

    reason: str
    #: True: every later submission fails too (a certificate problem). False: later
    #: work gets one attempt at a time until a connection makes progress again.
    permanent: bool


class ConnectionPolicy:
    """Window sizes and give-up decisions for one sender, from its connections' ends."""

    def __init__(
        self,
        *,
        command: Command,
        window_size: int,
        max_unproductive: int,
        confirm_after: float = 1.0,
        connections: int = 1,
    ) -> None:
        self._command = command
        self._window_size = window_size
        self._max_unproductive = max_unproductive
        #: The window for the next connection (slow start with several connections).
        self.window = window_size if connections == 1 else min(window_size, _INITIAL_WINDOW)
        # Past this, the window grows slowly (TCP's ssthresh).
        self._ceiling = window_size
        # Below the smallest window that died without a word (the drop point); forgotten
        # after _FORGET_DROP clean connections in a row.
        self._cap = window_size
        self._clean_since_drop = 0
        # Recent run of accepted notifications before a rejection (moving average).
        self._run: float | None = None
        # Accepted on connections ended without a rejection since the last one.
        self._since_rejection = 0
        #: How long the next connection waits for more work before probing.
        self.confirm_after = confirm_after
        self._quick_closes = 0
        self._unproductive = 0

    @property
    def careful(self) -> bool:
        """The next connection writes one notification and a probe."""
        return self.window <= CAREFUL_WINDOW

    def on_end(self, ended: Ended) -> GiveUp | None:
        """Take one connection's end into account; a :class:`GiveUp` stops retrying."""
        if ended.tls_refusal is not None:
            return GiveUp(
                f"the gateway refused the TLS session: {ended.tls_refusal}", permanent=True
            )
        if ended.unknown and ended.kind in (EndKind.LOST, EndKind.STALLED):
            self.window = min(self._window_size, CAREFUL_WINDOW)
            self._ceiling = max(CAREFUL_WINDOW, min(self._ceiling, ended.written // 2))
            if not ended.careful and ended.written > CAREFUL_WINDOW:
                self._cap = min(self._cap, max(2, ended.written * 7 // 8))
                self._clean_since_drop = 0
        elif ended.rejected:
            # The run since the previous rejection, across the clean windows between.
            run = self._since_rejection + ended.accepted + 1
            self._since_rejection = 0
            self._run = run if self._run is None else 0.7 * self._run + 0.3 * run
            fitted = max(_MIN_FITTED, round(2 * self._run))
            # Never past what connections that died silently were seen to carry: a
            # gateway that drops every connection after so many bytes also sends
            # rejections, and a window fitted to those alone would outgrow the drop.
            self.window = min(self._window_size, self._ceiling, fitted)
        elif ended.progress:
            self._since_rejection += ended.accepted
            if self.window < self._ceiling:
                self.window = min(self._ceiling, self.window * 2)
            else:
                self.window += max(1, self.window // 8)
                self._ceiling = self.window
            self.window = min(self._window_size, self.window)
            self._clean_since_drop += 1
            if self._clean_since_drop >= _FORGET_DROP:
                self._cap = self._window_size
        self.window = min(self.window, self._cap)
        if ended.kind is EndKind.LOST and ended.unknown and ended.quiet_for >= _IDLE_DROP:
            self.confirm_after = min(self.confirm_after, ended.quiet_for / 2)
        if ended.progress:
            self._quick_closes = 0
            self._unproductive = 0
            return None
        if ended.kind in (EndKind.IDLE, EndKind.CLOSED, EndKind.ANSWERED):
            return None
        silence_rejects = self._command is Command.SIMPLE
        if (
            ended.kind is EndKind.LOST
            and ended.silent
            and ended.unknown
            and ended.duration < _QUICK_CLOSE
            and not silence_rejects
        ):
            self._quick_closes += 1
            if self._quick_closes >= _QUICK_CLOSES_FATAL and ended.careful:
                return GiveUp(
                    "the gateway closed the connection right after the TLS handshake "
                    f"{self._quick_closes} times without an error response, even after a "
                    "single notification and a confirmation probe; the certificate is probably for "
                    "the other environment (sandbox vs production), or the gateway does "
                    "not accept it",
                    permanent=True,
                )
        if ended.kind is EndKind.LOST and (silence_rejects or not ended.careful):
            # Command 0: max_losses bounds a notification that keeps closing. Otherwise
            # the careful connection that follows tells whether the gateway answers at
            # all (parallel connections dying together count once that way).
            return None
        self._unproductive += 1
        if self._unproductive >= self._max_unproductive:
            count = self._unproductive
            self._unproductive = self._max_unproductive - 1  # later work: one attempt
            return GiveUp(
                f"{count} connections in a row ended without the gateway settling "
                f"anything (last: {ended.reason})",
                permanent=False,
            )
        return None
