"""The HTTP/2 provider API, sans-IO: requests, responses, reasons and provider tokens.

Beside :mod:`apns_legacy.wire` and built on it. No trio, no sockets, no OpenSSL, no
clock: the caller passes the time in. (Unlike ``wire``, this layer brings in
``cryptography`` and PyJWT, for ES256.)
"""

from __future__ import annotations

from ._jwt import (
    MAX_TOKEN_AGE,
    MIN_REFRESH_INTERVAL,
    REFRESH_AFTER,
    ProviderKey,
    ProviderToken,
    ProviderTokenCache,
    TokenDecision,
    TokenRejected,
    VerifiedToken,
    make_provider_token,
    verify_provider_token,
)
from ._reasons import Reason, reason_from_str
from ._request import (
    COLLAPSE_ID_LIMIT,
    HTTP2_PAYLOAD_LIMIT,
    HTTP2_VOIP_PAYLOAD_LIMIT,
    AppSettings,
    PushType,
    Request,
    build_request,
    check_apns_id,
    infer_push_type,
    payload_limit,
)
from ._response import Response, encode_error_body, parse_response, timestamp_from_ms

__all__ = [
    "COLLAPSE_ID_LIMIT",
    "HTTP2_PAYLOAD_LIMIT",
    "HTTP2_VOIP_PAYLOAD_LIMIT",
    "MAX_TOKEN_AGE",
    "MIN_REFRESH_INTERVAL",
    "REFRESH_AFTER",
    "AppSettings",
    "ProviderKey",
    "ProviderToken",
    "ProviderTokenCache",
    "PushType",
    "Reason",
    "Request",
    "Response",
    "TokenDecision",
    "TokenRejected",
    "VerifiedToken",
    "build_request",
    "check_apns_id",
    "encode_error_body",
    "infer_push_type",
    "make_provider_token",
    "parse_response",
    "payload_limit",
    "reason_from_str",
    "timestamp_from_ms",
    "verify_provider_token",
]
