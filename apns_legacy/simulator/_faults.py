"""Scripted faults: frozen values describing what the simulator should do wrong, and when.

Build them with the constructors on :class:`Fault` (``Fault.shutdown_after(100)``,
``Fault.reject(nth=5, status=Status.PROCESSING_ERROR)``, ...) and hand them to
``open_simulator(faults=...)`` or ``Simulator.add_fault``.

Every fault has ``times``: how often it may fire in the simulator's life (``None``:
without limit). Faults that are *events* (shut down, reset, reject, refuse a handshake)
fire once by default; faults that are *conditions* (slow reading, idle timeout, delayed
error frames) apply every time by default.

Count-based faults count either per connection (``per=FaultScope.CONNECTION``, the default:
"the 3rd notification on a connection") or across the whole server
(``per=FaultScope.SERVER``: "every 100th notification the server sees"; the count starts
again after each firing).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any

import attrs

from ..wire import Status


class FaultScope(enum.Enum):
    """What a count-based fault counts over."""

    #: Count on each connection separately; fires on every connection that gets there.
    CONNECTION = "connection"
    #: Count across all gateway connections; the count restarts after each firing.
    SERVER = "server"


class SimulatorService(enum.Enum):
    """Which listener a handshake fault applies to."""

    GATEWAY = "gateway"
    FEEDBACK = "feedback"


def _positive(instance: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{attribute.name} must be at least 1, not {value}")


def _non_negative(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{attribute.name} must be 0 or more, not {value}")


def _int_tuple(values: Iterable[int]) -> tuple[int, ...]:
    return tuple(int(value) for value in values)


@attrs.frozen(kw_only=True)
class Fault:
    """Base of all faults. Use the static constructors; see the module docstring."""

    #: How many times the fault may fire; ``None`` for no limit.
    times: int | None = attrs.field(default=1, validator=_positive)

    @staticmethod
    def shutdown_after(
        notifications: int, *, per: FaultScope = FaultScope.CONNECTION, times: int | None = 1
    ) -> ShutdownAfter:
        """After accepting the Nth notification, answer status 10 (shutdown) and close.

        The identifier is that of the Nth notification: the last one accepted, as
        Apple's gateway did for maintenance.
        """
        return ShutdownAfter(notifications=notifications, per=per, times=times)

    @staticmethod
    def reset_after(
        *,
        notifications: int | None = None,
        bytes: int | None = None,
        per: FaultScope = FaultScope.CONNECTION,
        times: int | None = 1,
    ) -> ResetAfter:
        """Close abruptly (TCP RST, no error frame) after N accepted notifications or N bytes.

        With ``bytes``, the bytes up to the limit are served and the rest of that read
        is dropped.
        """
        return ResetAfter(notifications=notifications, bytes=bytes, per=per, times=times)

    @staticmethod
    def drop_after(
        *,
        notifications: int | None = None,
        bytes: int | None = None,
        per: FaultScope = FaultScope.CONNECTION,
        times: int | None = 1,
    ) -> DropAfter:
        """Close cleanly (TLS close_notify and a FIN, no error frame) after N accepted
        notifications or N bytes; what the client writes afterwards is read and dropped
        until it closes, so the close never turns into a reset (unlike ``reset_after``).
        """
        return DropAfter(notifications=notifications, bytes=bytes, per=per, times=times)

    @staticmethod
    def reject(
        *,
        nth: int | None = None,
        token: bytes | None = None,
        status: Status | int = Status.PROCESSING_ERROR,
        per: FaultScope = FaultScope.CONNECTION,
        times: int | None = 1,
    ) -> Reject:
        """Reject the Nth well-formed notification, or any notification to ``token``.

        The error frame carries ``status`` and the notification's identifier; the
        connection closes as for any rejection.
        """
        return Reject(nth=nth, token=token, status=status, per=per, times=times)

    @staticmethod
    def delay_errors(seconds: float, *, times: int | None = None) -> DelayErrors:
        """Wait ``seconds`` before writing each error frame (reading and discarding meanwhile)."""
        return DelayErrors(seconds=seconds, times=times)

    @staticmethod
    def split_errors(
        pieces: Iterable[int] = (1, 5), *, gap: float = 0.5, times: int | None = None
    ) -> SplitErrors:
        """Write each 6-byte error frame in ``pieces`` (sizes adding up to 6), each its own
        write and so its own TLS record, ``gap`` seconds apart (reading and dropping meanwhile).
        """
        return SplitErrors(pieces=pieces, gap=gap, times=times)

    @staticmethod
    def stop_reading(after_bytes: int = 0, *, times: int | None = None) -> StopReading:
        """Serve the first ``after_bytes`` bytes of a gateway connection, then never read again.

        The connection stays open (no idle timeout, no close) until the client gives up or
        the simulator stops, so the client's writes fill the buffers and then block.
        ``times`` counts connections.
        """
        return StopReading(after_bytes=after_bytes, times=times)

    @staticmethod
    def latency(
        seconds: float,
        *,
        window: int = 1 << 20,
        service: SimulatorService | None = None,
        times: int | None = None,
    ) -> Latency:
        """Delay every byte of a connection by ``seconds`` in each direction (one way).

        Applies below TLS, from the first byte: the handshake is delayed too; order is
        kept; a close or reset reaches the client ``seconds`` after the simulator made it,
        and one from the client reaches the simulator as late. At most ``window`` bytes
        travel in each direction at once (like a TCP window), so back-pressure still
        reaches the writer. ``service``: only the gateway or only the feedback service
        (default: both). ``times`` counts connections.
        """
        return Latency(seconds=seconds, window=window, service=service, times=times)

    @staticmethod
    def slow_reader(
        bytes_per_second: float, *, read_size: int | None = None, times: int | None = None
    ) -> SlowReader:
        """Read gateway connections at most this fast, so that the sender meets back-pressure.

        ``read_size`` is the most read at once (default: a tenth of a second's worth).
        ``times`` counts connections.
        """
        return SlowReader(bytes_per_second=bytes_per_second, read_size=read_size, times=times)

    @staticmethod
    def idle_timeout(seconds: float, *, times: int | None = None) -> IdleTimeout:
        """Close a gateway connection (no frame) when nothing arrived for ``seconds``."""
        return IdleTimeout(seconds=seconds, times=times)

    @staticmethod
    def refuse_handshake(
        *, times: int | None = 1, service: SimulatorService = SimulatorService.GATEWAY
    ) -> RefuseHandshake:
        """Close the TCP connection before any TLS byte is exchanged."""
        return RefuseHandshake(times=times, service=service)


@attrs.frozen(kw_only=True)
class ShutdownAfter(Fault):
    """See :meth:`Fault.shutdown_after`."""

    notifications: int = attrs.field(validator=_positive)
    per: FaultScope = FaultScope.CONNECTION


@attrs.frozen(kw_only=True)
class _CutAfter(Fault):
    """A connection ended by the simulator after N notifications or N bytes."""

    notifications: int | None = attrs.field(default=None, validator=_positive)
    bytes: int | None = attrs.field(default=None, validator=_positive)
    per: FaultScope = FaultScope.CONNECTION

    def __attrs_post_init__(self) -> None:
        if (self.notifications is None) == (self.bytes is None):
            name = "reset_after" if isinstance(self, ResetAfter) else "drop_after"
            raise ValueError(f"{name} needs exactly one of notifications= and bytes=")


@attrs.frozen(kw_only=True)
class ResetAfter(_CutAfter):
    """See :meth:`Fault.reset_after`. Exactly one of ``notifications`` and ``bytes``."""


@attrs.frozen(kw_only=True)
class DropAfter(_CutAfter):
    """See :meth:`Fault.drop_after`. Exactly one of ``notifications`` and ``bytes``."""


@attrs.frozen(kw_only=True)
class Reject(Fault):
    """See :meth:`Fault.reject`. Exactly one of ``nth`` and ``token``."""

    nth: int | None = attrs.field(default=None, validator=_positive)
    token: bytes | None = None
    status: Status | int = Status.PROCESSING_ERROR
    per: FaultScope = FaultScope.CONNECTION

    def __attrs_post_init__(self) -> None:
        if (self.nth is None) == (self.token is None):
            raise ValueError("reject needs exactly one of nth= and token=")
        if not 0 <= self.status <= 0xFF:
            raise ValueError(f"status must fit in one byte (0..255), not {self.status}")


@attrs.frozen(kw_only=True)
class DelayErrors(Fault):
    """See :meth:`Fault.delay_errors`."""

    times: int | None = attrs.field(default=None, validator=_positive)
    seconds: float = attrs.field(validator=_non_negative)


@attrs.frozen(kw_only=True)
class SplitErrors(Fault):
    """See :meth:`Fault.split_errors`."""

    times: int | None = attrs.field(default=None, validator=_positive)
    pieces: tuple[int, ...] = attrs.field(default=(1, 5), converter=_int_tuple)
    gap: float = attrs.field(default=0.5, validator=_non_negative)

    @pieces.validator
    def _check_pieces(
        self, attribute: attrs.Attribute[tuple[int, ...]], value: tuple[int, ...]
    ) -> None:
        if len(value) < 2 or any(size < 1 for size in value) or sum(value) != 6:
            raise ValueError(
                f"pieces must be 2 or more sizes of at least 1 adding up to 6, not {value}"
            )


@attrs.frozen(kw_only=True)
class StopReading(Fault):
    """See :meth:`Fault.stop_reading`."""

    times: int | None = attrs.field(default=None, validator=_positive)
    after_bytes: int = attrs.field(default=0, validator=_non_negative)


@attrs.frozen(kw_only=True)
class Latency(Fault):
    """See :meth:`Fault.latency`."""

    times: int | None = attrs.field(default=None, validator=_positive)
    seconds: float = attrs.field(validator=_non_negative)
    window: int = attrs.field(default=1 << 20, validator=_positive)
    service: SimulatorService | None = None


@attrs.frozen(kw_only=True)
class SlowReader(Fault):
    """See :meth:`Fault.slow_reader`."""

    times: int | None = attrs.field(default=None, validator=_positive)
    bytes_per_second: float = attrs.field()
    read_size: int | None = attrs.field(default=None, validator=_positive)

    @bytes_per_second.validator
    def _check_rate(self, attribute: attrs.Attribute[float], value: float) -> None:
        if not value > 0:
            raise ValueError(f"bytes_per_second must be more than 0, not {value}")

    @property
    def chunk(self) -> int:
        """Bytes read at once."""
        if self.read_size is not None:
            return self.read_size
        return max(1, min(65536, int(self.bytes_per_second / 10)))


@attrs.frozen(kw_only=True)
class IdleTimeout(Fault):
    """See :meth:`Fault.idle_timeout`."""

    times: int | None = attrs.field(default=None, validator=_positive)
    seconds: float = attrs.field(validator=_non_negative)


@attrs.frozen(kw_only=True)
class RefuseHandshake(Fault):
    """See :meth:`Fault.refuse_handshake`."""

    service: SimulatorService = SimulatorService.GATEWAY
