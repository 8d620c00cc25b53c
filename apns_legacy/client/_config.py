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
    #: With nothing more to write, end the window with a confirmation probe this many
    #: seconds after the last write (at once on ``flush`` and on close). The gateway's
    #: answer to the probe is what proves the notifications before it were taken; the
    #: price is one reconnect per quiet spell, since the gateway closes after answering.
    #: Half a second confirms a burst before gateways and middleboxes that drop idle
    #: connections quickly can lose it.
    confirm_after: float = attrs.field(default=0.5, validator=_positive_time)
    #: How long to wait for the answer to a confirmation probe. Without one, the
    #: notifications it was to confirm end ``failed`` ("unconfirmed"): the gateway may
    #: or may not have taken them, and nothing else can tell. Apple answered within
    #: about 200 ms; the default leaves room for slow networks and slow readers.
    probe_timeout: float = attrs.field(default=20.0, validator=_positive_time)
    #: A write that does not finish in this many seconds (the gateway stopped reading)
    #: ends the connection; what was in flight is resent or fails after ``max_losses``.
    write_timeout: float = attrs.field(default=15.0, validator=_positive_time)
    #: Opt-in, for servers that never answer probes (they take a zero-length token):
    #: count a notification as accepted, with ``Evidence.ASSUMED``, once the kernel
    #: reports its bytes acknowledged by the server's TCP stack and ``settle_after``
    #: more seconds pass without an error response. That is an assumption, not
    #: evidence: the summary, the report and the command line's exit code say so.
    #: Command 0, which has no error responses, always settles this way.
    assume_accepted: bool = False
    #: The quiet period of ``assume_accepted`` (and command 0), counted from the
    #: moment the server's TCP stack had acknowledged the bytes, not from our write.
    settle_after: float = attrs.field(default=1.0, validator=_positive_time)
    #: Most notifications written and unconfirmed on one connection. A full window is
    #: ended with a confirmation probe, and the slot opens a fresh connection for the
    #: rest. With several connections the first window is 1,024, doubling with each
    #: clean one up to this.
    #: After a connection dies without a word, the next one writes a single
    #: notification and a probe, and the window doubles with each confirmed one.
    window_size: int = attrs.field(default=200_000, validator=_positive)
    #: Keep a connection per slot with its TLS handshake done while the current one
    #: runs, so that the replay after a rejection (or the next window after a probe)
    #: starts at once instead of after a connect and a handshake: on a 20 ms round
    #: trip that is 40 to 60 ms saved per rejection. One spare normally; up to three
    #: while connections end faster than a handshake takes (frequent rejections), each
    #: replaced as soon as it is taken. So one "connection" means one writing at a time
    #: plus its spares: set False for a gateway that limits or counts connections. A
    #: spare the gateway closes while it waits is never used; closed within a second
    #: of its handshake, it turns spares off for the slot, closed later (an idle
    #: timeout) it makes later spares wait at most half as long. One unused for a
    #: minute is closed.
    spare_connection: bool = True
    #: Offer the TLS session of an earlier connection on each new one (session
    #: tickets or ids, where the gateway allows them): the resumed handshake skips
    #: the certificate exchange and, in TLS 1.2, one round trip. Only sessions made
    #: with the same context, to the same host, port and server name, are offered.
    resume_tls_sessions: bool = True
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
    #: Connections in a row that end without settling anything (stalled writes,
    #: unanswered probes, drops) before the queued notifications fail; later work
    #: then gets one attempt at a time until a connection makes progress again.
    max_unproductive: int = attrs.field(default=4, validator=_positive)
    #: Longest a graceful close waits for outstanding outcomes before failing them.
    close_timeout: float = attrs.field(default=60.0, validator=_positive_time)
