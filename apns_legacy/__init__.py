"""apns-legacy: sender, simulator and feedback tools for Apple's legacy binary push protocol.

The names a user needs are importable from ``apns_legacy`` (the README lists them).
The layers live in subpackages (``wire`` -> ``tls`` -> ``client``/``simulator`` ->
``wallet``/``cli``), and each exports its own public names for the less common uses
(``apns_legacy.simulator.Fault``'s kinds, ``apns_legacy.tls``'s credential errors, ...).

Only the wire layer is imported eagerly. The others are imported on first use of one
of their names (PEP 562), so that ``import apns_legacy.wire`` (or using only the
codec) pulls in no trio, no OpenSSL and no sockets, as a sans-IO layer promises.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__ as __version__
from .wire import (
    NEED_DATA,
    PAYLOAD_LIMIT,
    TOKEN_LENGTH,
    Alert,
    BadNotification,
    Command,
    ConnectionClosed,
    DeviceToken,
    ErrorResponse,
    ErrorResponseDecoder,
    FeedbackDecoder,
    FeedbackItem,
    GatewayDecoder,
    LocalProtocolError,
    Notification,
    PayloadTooLargeError,
    ProtocolError,
    ReceivedNotification,
    RemoteProtocolError,
    Status,
    build_payload,
    encode_frame,
    encode_probe,
    pass_payload,
    raw_payload,
)

if TYPE_CHECKING:
    from .client import (
        Evidence,
        FeedbackError,
        Outcome,
        OutcomeKind,
        Sender,
        SenderConfig,
        SenderStats,
        SyncSender,
        TokenStore,
        open_sender,
        read_feedback,
        send_all,
    )
    from .simulator import Fault, Simulator, SimulatorConfig, open_simulator
    from .tls import (
        Credentials,
        CredentialsError,
        Environment,
        TestPKI,
        TLSHandshakeError,
        TLSStream,
        client_context,
        inspect_certificate,
        make_test_pki,
        open_tls_stream,
        server_context,
    )

# The names of the layers above the wire, imported on first use.
_LAZY: dict[str, str] = {
    **dict.fromkeys(
        [
            "Credentials",
            "CredentialsError",
            "Environment",
            "TestPKI",
            "TLSHandshakeError",
            "TLSStream",
            "client_context",
            "inspect_certificate",
            "make_test_pki",
            "open_tls_stream",
            "server_context",
        ],
        "tls",
    ),
    **dict.fromkeys(
        [
            "Evidence",
            "FeedbackError",
            "Outcome",
            "OutcomeKind",
            "Sender",
            "SenderConfig",
            "SenderStats",
            "TokenStore",
            "open_sender",
            "read_feedback",
            "send_all",
            "SyncSender",
        ],
        "client",
    ),
    **dict.fromkeys(["Fault", "Simulator", "SimulatorConfig", "open_simulator"], "simulator"),
}

__all__ = [
    "__version__",
    # wire (sans-IO)
    "Notification",
    "DeviceToken",
    "Command",
    "Status",
    "build_payload",
    "raw_payload",
    "pass_payload",
    "Alert",
    "PAYLOAD_LIMIT",
    "TOKEN_LENGTH",
    "encode_frame",
    "encode_probe",
    "GatewayDecoder",
    "ErrorResponseDecoder",
    "FeedbackDecoder",
    "ReceivedNotification",
    "BadNotification",
    "ErrorResponse",
    "FeedbackItem",
    "ConnectionClosed",
    "NEED_DATA",
    "ProtocolError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "PayloadTooLargeError",
    # tls
    "Credentials",
    "CredentialsError",
    "Environment",
    "TestPKI",
    "TLSHandshakeError",
    "TLSStream",
    "client_context",
    "inspect_certificate",
    "make_test_pki",
    "open_tls_stream",
    "server_context",
    # client
    "Evidence",
    "FeedbackError",
    "Outcome",
    "OutcomeKind",
    "Sender",
    "SenderConfig",
    "SenderStats",
    "TokenStore",
    "open_sender",
    "read_feedback",
    "send_all",
    "SyncSender",
    # simulator
    "Fault",
    "Simulator",
    "SimulatorConfig",
    "open_simulator",
]


def __getattr__(name: str) -> Any:
    layer = _LAZY.get(name)
    if layer is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{layer}"), name)
    globals()[name] = value  # next time, a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
