"""The client layer: the sender pool, the feedback client and the token store."""

from __future__ import annotations

from ._config import (
    PRODUCTION_FEEDBACK,
    PRODUCTION_GATEWAY,
    SANDBOX_FEEDBACK,
    SANDBOX_GATEWAY,
    SenderConfig,
)
from ._feedback import FeedbackError, read_feedback, read_feedback_stream
from ._gc import BULK_GC_THRESHOLDS, bulk_gc
from ._h2sender import (
    PRODUCTION_HOST,
    SANDBOX_HOST,
    Http2Outcome,
    Http2Sender,
    Http2SenderConfig,
    open_http2_sender,
)
from ._keeper import BAD_TOKEN_REASONS, GONE_REASONS, INVALID_TOKEN_REASON, StoreKeeper
from ._open import open_sender
from ._outcomes import BroadcastOutcome, Evidence, Outcome, OutcomeKind, SenderStats
from ._sender import Connector, Sender
from ._store import Device, FeedbackResult, StoreCounts, StoreError, TokenStore
from ._sync import SyncSender, send_all

__all__ = [
    "PRODUCTION_GATEWAY",
    "SANDBOX_GATEWAY",
    "PRODUCTION_FEEDBACK",
    "SANDBOX_FEEDBACK",
    "SenderConfig",
    "Sender",
    "Connector",
    "open_sender",
    "send_all",
    "SyncSender",
    "Outcome",
    "BroadcastOutcome",
    "OutcomeKind",
    "Evidence",
    "SenderStats",
    "bulk_gc",
    # HTTP/2
    "open_http2_sender",
    "Http2Sender",
    "Http2SenderConfig",
    "Http2Outcome",
    "PRODUCTION_HOST",
    "SANDBOX_HOST",
    "BULK_GC_THRESHOLDS",
    # feedback cleanup
    "read_feedback",
    "read_feedback_stream",
    "FeedbackError",
    "TokenStore",
    "StoreKeeper",
    "BAD_TOKEN_REASONS",
    "GONE_REASONS",
    "INVALID_TOKEN_REASON",
    "Device",
    "FeedbackResult",
    "StoreCounts",
    "StoreError",
]
