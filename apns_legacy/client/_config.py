"""The sender's settings, with the reasoning behind each default."""

from __future__ import annotations

from typing import Final

import attrs

from ..wire import PAYLOAD_LIMIT, Command

#: Apple's production gateway (retired 2021-03-31; kept as the protocol's default).
PRODUCTION_GATEWAY: Final = ("gateway.push.apple.com", 2195)
#: Apple's sandbox (development) gateway.
SANDBOX_GATEWAY: Final = ("gateway.sandbox.push.apple.com", 2195)
#: Apple's feedback services.
PRODUCTION_FEEDBACK: Final = ("feedback.push.apple.com", 2196)
SANDBOX_FEEDBACK: Final = ("feedback.sandbox.push.apple.com", 2196)


_positive = attrs.validators.gt(0)
_positive_time = attrs.validators.gt(0.0)


@attrs.frozen(kw_only=True)
class SenderConfig:
    """How a :class:`Sender` behaves. Every field has a default that suits Apple's gateway."""

    #: Parallel connections to the gateway (Apple allowed several).
    connections: int = attrs.field(default=1, validator=_positive)
    #: Command 2 (frames, with priority) unless talking to something older.
    command: Command = Command.FRAME
    #: Largest payload in bytes, checked at submit (2048 since iOS 8; 256 before; 4096 VoIP).
    payload_limit: int = attrs.field(default=PAYLOAD_LIMIT, validator=_positive)
    #: Accept tokens of 33 to 100 bytes (Apple's 2018 text); 32 only by default.
    allow_long_tokens: bool = False
    #: Seconds without an error response after a write before it counts as accepted.
    #: Apple's error response "can take as long as 200 ms" (node-apn); PushSharp 4
    #: waited 750 ms, node-apn 2.5 s at shutdown. One second is five times the
    #: measured worst case and short enough to keep windows small.
    settle_after: float = attrs.field(default=1.0, validator=_positive_time)
    #: Most notifications written and unsettled on one connection; when full, the
    #: writer waits for settling (back-pressure) instead of forgetting anything.
    window_size: int = attrs.field(default=200_000, validator=_positive)
    #: When a window fills, end it with a confirmation probe instead of waiting out
    #: the quiet period: one round trip and one reconnect per ``window_size``
    #: notifications instead of ``settle_after`` seconds of idle writer, and the
    #: window's outcomes are confirmed, not inferred. (One reconnect per 200,000
    #: notifications is far from the rapid reconnecting Apple treated as an attack.)
    #: Not possible with command 0.
    probe_when_full: bool = True
    #: Most notifications waiting to be written; ``submit`` waits when it is full.
    queue_size: int = attrs.field(default=50_000, validator=_positive)
    #: Coalesce frames into writes of about this many bytes (TN2265: batch writes).
    write_size: int = attrs.field(default=65_536, validator=_positive)
    #: A notification in flight on this many connections that died without an error
    #: response is given up (``failed``) rather than written yet again.
    max_losses: int = attrs.field(default=3, validator=_positive)
    #: Consecutive failed connection attempts before the queued notifications fail.
    max_connect_attempts: int = attrs.field(default=5, validator=_positive)
    #: Exponential backoff between connection attempts, with full jitter.
    backoff_initial: float = attrs.field(default=0.1, validator=_positive_time)
    backoff_max: float = attrs.field(default=30.0, validator=_positive_time)
    #: TCP connect plus TLS handshake.
    connect_timeout: float = attrs.field(default=10.0, validator=_positive_time)
    #: Close a connection idle this long (field reports: gateways and middleboxes
    #: dropped idle connections after 30 min to 2 h, and the next write vanished).
    idle_timeout: float = attrs.field(default=300.0, validator=_positive_time)
    #: After a failed write, wait this long for the error response that explains it.
    error_wait: float = attrs.field(default=1.0, validator=_positive_time)
    #: A graceful close ends with a confirmation probe, so every outcome is known
    #: for certain rather than by quiet period (not possible with command 0).
    confirm_on_close: bool = True
    #: Longest a graceful close waits for outstanding outcomes before failing them.
    close_timeout: float = attrs.field(default=60.0, validator=_positive_time)
