"""The simulator's settings: one frozen, validated value (as `SenderConfig` is for the sender).

:class:`SimulatorConfig` is what :func:`open_simulator`, :func:`serve_simulator`,
:class:`Simulator`, the test fixtures and ``apns-legacy serve`` all take. The keyword
shortcuts of those functions (``open_simulator(invalid_tokens=[...])``) are typed by
:class:`SimulatorOptions`, which names the same fields (a test keeps the two in step),
so that mypy checks every setting at every call.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final, TypedDict

import attrs

from ..tls import Environment
from ..wire import MAX_LONG_TOKEN_LENGTH, PAYLOAD_LIMIT, TOKEN_LENGTH
from ._faults import Fault

#: Default seconds a gateway connection may stay silent before the simulator closes it.
#: Apple never documented its timeout; field reports saw idle connections dropped after
#: about 30 minutes (samuraisam/pyapns #58) to 2 hours (uniqush-push #47). The shorter
#: one is what a client must survive.
DEFAULT_IDLE_TIMEOUT: Final = 1800.0
#: Default most TCP connections open at once (both ports). Apple allowed "multiple,
#: parallel connections" without a documented number; this keeps a forgotten test
#: server's memory bounded (about 100 MB of TLS state at the limit).
DEFAULT_MAX_CONNECTIONS: Final = 1000


class ErrorClose(enum.Enum):
    """How a gateway connection closes after an error frame (or a silent refusal)."""

    #: Close at once. If the client kept writing and its bytes wait unread in the TCP
    #: receive buffer, the close is a TCP reset (RST), after the frame has left: what
    #: every Linux server does when it closes with unread data, and what clients of
    #: Apple's gateway saw ("connection reset" while writing). The default.
    RESET_IF_UNREAD = "reset-if-unread"
    #: Send TLS close_notify and a FIN, then read and drop until the client closes
    #: (for at most ``DRAIN_LIMIT`` seconds): always a clean close.
    DRAIN = "drain"
    #: Always a TCP reset right after the frame has left.
    RESET = "reset"


def _tokens(values: Iterable[bytes]) -> frozenset[bytes]:
    if isinstance(values, bytes | bytearray | memoryview):
        raise TypeError("tokens must be an iterable of bytes, not one bytes value")
    return frozenset(bytes(value) for value in values)


def _faults(values: Iterable[Fault]) -> tuple[Fault, ...]:
    return tuple(values)


def _optional_path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)


def _check_faults(
    instance: object, attribute: attrs.Attribute[Any], value: tuple[Any, ...]
) -> None:
    for fault in value:
        if not isinstance(fault, Fault) or type(fault) is Fault:
            raise TypeError(f"faults: not a fault: {fault!r} (use the Fault.* constructors)")


def _in_range(low: int, high: int) -> Any:
    def check(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
        if not low <= value <= high:
            raise ValueError(f"{attribute.name} must be {low}..{high}, not {value}")

    return check


def _at_least_one(instance: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{attribute.name} must be at least 1, not {value}")


def _not_negative(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{attribute.name} must be 0 or more, not {value}")


def _positive(instance: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{attribute.name} must be more than 0, not {value}")


def check_keep_records(
    instance: object, attribute: attrs.Attribute[Any], value: bool | int
) -> None:
    """The ``keep_records`` validator of both simulators' configurations."""
    if not isinstance(value, bool) and (type(value) is not int or value < 0):
        raise ValueError(f"keep_records must be True, False or a count of 0 or more, not {value!r}")


def record_limit(keep: bool | int) -> int | None:
    """How many accepted notifications ``keep_records`` keeps in memory (None: all)."""
    return None if keep is True else int(keep)


@attrs.frozen(kw_only=True)
class SimulatorConfig:
    """How a simulator behaves and where it listens. Every field has a default.

    Build one, then pass it as ``config=``; ``attrs.evolve(config, field=value)`` or the
    keyword shortcuts of :func:`open_simulator` change single fields.
    """

    #: Address to listen on (``open_simulator`` and ``serve`` only).
    host: str = "127.0.0.1"
    #: Gateway port; 0 picks a free one (read it back from ``Simulator.gateway_address``).
    gateway_port: int = attrs.field(default=0, validator=_in_range(0, 0xFFFF))
    #: Feedback port; 0 picks a free one.
    feedback_port: int = attrs.field(default=0, validator=_in_range(0, 0xFFFF))
    #: The environment this server plays; client certificates must allow it.
    environment: Environment = attrs.field(default=Environment.SANDBOX, converter=Environment)
    #: Tokens answered with status 8 (invalid token).
    invalid_tokens: frozenset[bytes] = attrs.field(factory=frozenset, converter=_tokens)
    #: Tokens accepted, then listed by the feedback service with the time of the push.
    uninstalled_tokens: frozenset[bytes] = attrs.field(factory=frozenset, converter=_tokens)
    #: Largest payload (2048; 256 for the pre-iOS 8 era).
    payload_limit: int = attrs.field(default=PAYLOAD_LIMIT, validator=_in_range(1, 0xFFFF))
    #: 32, or up to 100 for Apple's 2018 "up to 100 bytes".
    max_token_length: int = attrs.field(
        default=TOKEN_LENGTH, validator=_in_range(TOKEN_LENGTH, MAX_LONG_TOKEN_LENGTH)
    )
    #: Answer an unknown command byte or broken command-2 framing with ``08 80 <id>``
    #: instead of closing silently (TN2265).
    protocol_error_frames: bool = False
    #: How the connection closes after an error frame; see :class:`ErrorClose`.
    error_close: ErrorClose = attrs.field(default=ErrorClose.RESET_IF_UNREAD, converter=ErrorClose)
    #: Offer TLS 1.3 (Apple's legacy gateway topped out at TLS 1.2).
    allow_tls13: bool = False
    #: Seconds before a wrong-environment client is dropped (node-apn waited 100 ms).
    wrong_environment_delay: float = attrs.field(default=0.1, validator=_not_negative)
    #: Write the feedback stream in pieces of this many bytes (``None``: one write).
    feedback_chunk_size: int | None = attrs.field(default=None, validator=_at_least_one)
    #: Faults armed from the start (see :class:`Fault`).
    faults: tuple[Fault, ...] = attrs.field(default=(), converter=_faults, validator=_check_faults)
    #: Append each accepted notification to this file as a JSON line.
    record_path: Path | None = attrs.field(default=None, converter=_optional_path)
    #: Keep accepted notifications in ``Simulator.accepted``: True (all), False (none),
    #: or an int (the first N).
    keep_records: bool | int = attrs.field(default=True, validator=check_keep_records)
    #: Seconds a client may take over the TLS handshake.
    handshake_timeout: float = attrs.field(default=10.0, validator=_positive)
    #: Close a gateway connection (no frame) when nothing arrived for this long;
    #: ``None``: never. See :data:`DEFAULT_IDLE_TIMEOUT`.
    idle_timeout: float | None = attrs.field(default=DEFAULT_IDLE_TIMEOUT, validator=_positive)
    #: Most TCP connections open at once, both ports together; more are closed before
    #: TLS. ``None``: no limit. See :data:`DEFAULT_MAX_CONNECTIONS`.
    max_connections: int | None = attrs.field(
        default=DEFAULT_MAX_CONNECTIONS, validator=_at_least_one
    )


class SimulatorOptions(TypedDict, total=False):
    """The fields of :class:`SimulatorConfig` as keyword arguments (all optional).

    The types are those ``SimulatorConfig(...)`` accepts (before its converters).
    """

    host: str
    gateway_port: int
    feedback_port: int
    environment: Environment | str
    invalid_tokens: Iterable[bytes]
    uninstalled_tokens: Iterable[bytes]
    payload_limit: int
    max_token_length: int
    protocol_error_frames: bool
    error_close: ErrorClose | str
    allow_tls13: bool
    wrong_environment_delay: float
    feedback_chunk_size: int | None
    faults: Iterable[Fault]
    record_path: str | Path | None
    keep_records: bool | int
    handshake_timeout: float
    idle_timeout: float | None
    max_connections: int | None


def make_config(config: SimulatorConfig | None, changes: SimulatorOptions) -> SimulatorConfig:
    """``config`` (default: all defaults) with the keyword shortcuts applied."""
    if config is None:
        return SimulatorConfig(**changes)
    if not isinstance(config, SimulatorConfig):
        raise TypeError(f"config must be a SimulatorConfig, not {type(config).__name__}")
    return attrs.evolve(config, **changes) if changes else config
