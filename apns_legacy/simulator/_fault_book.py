"""The simulator's live faults: which may still fire, and the server-wide counts.

Kept apart from the fault values so that those stay plain frozen data. The gateway's
hot path asks only :attr:`FaultBook.per_notification` (is there anything to check at
all?) before calling the checks, so a simulator without faults does no work per
notification here.
"""

from __future__ import annotations

import attrs

from ._faults import (
    DelayErrors,
    DropAfter,
    Fault,
    FaultScope,
    IdleTimeout,
    Latency,
    RefuseHandshake,
    Reject,
    ResetAfter,
    ShutdownAfter,
    SimulatorService,
    SlowReader,
    SplitErrors,
    StopReading,
)


@attrs.define(eq=False)
class _Slot:
    """One added fault with its bookkeeping."""

    fault: Fault
    fired: int = 0
    # The server-wide count (FaultScope.SERVER) since the fault was added or last fired.
    count: int = 0

    @property
    def live(self) -> bool:
        return self.fault.times is None or self.fired < self.fault.times


@attrs.frozen
class ConnectionFaults:
    """The condition faults taken for one connection when it opened."""

    slow_reader: SlowReader | None = None
    idle_timeout: IdleTimeout | None = None
    stop_reading: StopReading | None = None


class FaultBook:
    """The faults of one simulator."""

    def __init__(self) -> None:
        self._slots: list[_Slot] = []
        #: True when some fault must look at each notification or at byte counts.
        self.per_notification = False

    def add(self, fault: Fault) -> None:
        """Arm ``fault``; it may fire from the next event on."""
        if not isinstance(fault, Fault) or type(fault) is Fault:
            raise TypeError(f"not a fault: {fault!r} (use the Fault.* constructors)")
        self._slots.append(_Slot(fault))
        self._refresh()

    @property
    def faults(self) -> list[Fault]:
        """The faults that may still fire."""
        return [slot.fault for slot in self._slots if slot.live]

    def _refresh(self) -> None:
        self._slots = [slot for slot in self._slots if slot.live]
        self.per_notification = any(
            isinstance(slot.fault, ShutdownAfter | ResetAfter | DropAfter | Reject)
            for slot in self._slots
        )

    def _fire(self, slot: _Slot) -> None:
        slot.fired += 1
        slot.count = 0
        if not slot.live:
            self._refresh()

    # -- once per connection -------------------------------------------------------------

    def refuse_handshake(self, service: SimulatorService) -> bool:
        """Whether to close this new TCP connection before TLS (fires the fault)."""
        for slot in self._slots:
            fault = slot.fault
            if isinstance(fault, RefuseHandshake) and fault.service is service and slot.live:
                self._fire(slot)
                return True
        return False

    def take_latency(self, service: SimulatorService) -> Latency | None:
        """The latency fault for a new TCP connection to ``service``, if any (fires it)."""
        for slot in self._slots:
            fault = slot.fault
            if (
                isinstance(fault, Latency)
                and slot.live
                and (fault.service is None or fault.service is service)
            ):
                self._fire(slot)
                return fault
        return None

    def take_connection_faults(self) -> ConnectionFaults:
        """The slow-reader, idle-timeout and stop-reading faults for a new gateway connection."""
        slow: SlowReader | None = None
        idle: IdleTimeout | None = None
        stop: StopReading | None = None
        for slot in list(self._slots):
            fault = slot.fault
            if slow is None and isinstance(fault, SlowReader) and slot.live:
                slow = fault
                self._fire(slot)
            elif idle is None and isinstance(fault, IdleTimeout) and slot.live:
                idle = fault
                self._fire(slot)
            elif stop is None and isinstance(fault, StopReading) and slot.live:
                stop = fault
                self._fire(slot)
        return ConnectionFaults(slow_reader=slow, idle_timeout=idle, stop_reading=stop)

    def error_delay(self) -> float:
        """Seconds to wait before the next error frame (fires a delay fault if any)."""
        for slot in self._slots:
            if isinstance(slot.fault, DelayErrors) and slot.live:
                self._fire(slot)
                return slot.fault.seconds
        return 0.0

    def error_split(self) -> SplitErrors | None:
        """How to cut the next error frame into pieces, if at all (fires a split fault)."""
        for slot in self._slots:
            if isinstance(slot.fault, SplitErrors) and slot.live:
                self._fire(slot)
                return slot.fault
        return None

    # -- per notification and per read -------------------------------------------------------

    def check_reject(self, seen_on_connection: int, token: bytes) -> Reject | None:
        """Called for each well-formed notification before it is accepted.

        ``seen_on_connection`` counts well-formed notifications on this connection,
        this one included.
        """
        found: Reject | None = None
        for slot in self._slots:
            fault = slot.fault
            if not isinstance(fault, Reject) or not slot.live:
                continue
            if fault.token is not None:
                hit = token == fault.token
            elif fault.per is FaultScope.CONNECTION:
                hit = seen_on_connection == fault.nth
            else:
                slot.count += 1
                hit = slot.count == fault.nth
            if hit and found is None:
                found = fault
                self._fire(slot)
        return found

    def check_accepted(
        self, accepted_on_connection: int
    ) -> ShutdownAfter | ResetAfter | DropAfter | None:
        """Called after each accepted notification: shut down, reset or drop now?"""
        found: ShutdownAfter | ResetAfter | DropAfter | None = None
        for slot in self._slots:
            fault = slot.fault
            if not isinstance(fault, ShutdownAfter | ResetAfter | DropAfter) or not slot.live:
                continue
            limit = fault.notifications
            if limit is None:
                continue
            if fault.per is FaultScope.CONNECTION:
                hit = accepted_on_connection == limit
            else:
                slot.count += 1
                hit = slot.count >= limit
            if hit and found is None:
                found = fault
                self._fire(slot)
        return found

    def check_bytes(
        self, received_before: int, size: int
    ) -> tuple[int, ResetAfter | DropAfter] | None:
        """Called for each read of ``size`` bytes: how many to keep before a reset or drop.

        ``None`` means no byte-count fault fires within this read.
        """
        cut: int | None = None
        chosen: _Slot | None = None
        for slot in self._slots:
            fault = slot.fault
            if (
                not isinstance(fault, ResetAfter | DropAfter)
                or fault.bytes is None
                or not slot.live
            ):
                continue
            done = received_before if fault.per is FaultScope.CONNECTION else slot.count
            if done >= fault.bytes:
                # A per-connection limit already passed on this connection: it fired
                # then, or the fault was added later; either way not again here.
                continue
            keep = fault.bytes - done
            if keep <= size and (cut is None or keep < cut):
                cut, chosen = keep, slot
        for slot in self._slots:
            fault = slot.fault
            if (
                isinstance(fault, ResetAfter | DropAfter)
                and fault.bytes is not None
                and fault.per is FaultScope.SERVER
            ):
                slot.count += size if cut is None else cut
        if chosen is None or cut is None:
            return None
        fired = chosen.fault
        assert isinstance(fired, ResetAfter | DropAfter)
        self._fire(chosen)
        return cut, fired
