"""Parsing an HTTP/2 APNs response into a typed, frozen :class:`Response`.

Apple's responses (HTTP2.md 1.3): success is ``:status 200`` with an ``apns-id`` and
an empty body; an error carries a JSON body ``{"reason": "..."}``, and for 410 also
``"timestamp"``, milliseconds since the epoch. Anything that does not fit raises
:class:`~apns_legacy.wire.RemoteProtocolError` (the peer broke the protocol); no
other exception escapes (``fuzz/fuzz_h2_response.py`` checks that).
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterable
from typing import Final

import attrs

from apns_legacy.wire import RemoteProtocolError

from ._reasons import Reason, reason_from_str

#: A 410's timestamp beyond this many milliseconds cannot be a date (year 9999).
_MAX_TIMESTAMP_MS: Final = 253_402_300_799_999
#: A response body larger than this is not an APNs response.
MAX_BODY: Final = 64 * 1024

RawHeader = tuple[bytes | str, bytes | str]


@attrs.frozen(kw_only=True)
class Response:
    """What APNs answered for one request.

    Attributes:
        status: the HTTP status (200, 400, 403, 404, 405, 410, 413, 429, 500, 503...).
        reason: ``None`` on success; a :class:`Reason`, or the text of a reason not
            in Apple's table.
        apns_id: the ``apns-id`` header, if sent.
        timestamp: for 410, when APNs confirmed the token was no longer valid (an
            aware UTC datetime, millisecond precision); otherwise ``None``.
        unique_id: ``apns-unique-id`` (development environment only), if sent.
    """

    status: int
    reason: Reason | str | None = None
    apns_id: str | None = None
    timestamp: _dt.datetime | None = None
    unique_id: str | None = None

    @property
    def ok(self) -> bool:
        """True for 200."""
        return self.status == 200


def _text(value: bytes | str, what: str) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            raise RemoteProtocolError(f"{what} is not ASCII") from None
    return value


def timestamp_from_ms(value: int) -> _dt.datetime:
    """An aware UTC datetime for ``value`` milliseconds since the epoch."""
    seconds, millis = divmod(value, 1000)
    return _dt.datetime.fromtimestamp(seconds, _dt.UTC) + _dt.timedelta(milliseconds=millis)


def parse_response(headers: Iterable[RawHeader], body: bytes) -> Response:
    """The :class:`Response` for a response's headers (with ``:status``) and body.

    Raises:
        RemoteProtocolError: no or a malformed ``:status``, a duplicate header the
            parser reads, an error status without a JSON ``{"reason": ...}`` body, a
            malformed 410 timestamp, or a body over 64 KiB.
    """
    found: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name = _text(raw_name, "a header name").lower()
        if name in (":status", "apns-id", "apns-unique-id"):
            if name in found:
                raise RemoteProtocolError(f"the response repeats the header {name}")
            found[name] = _text(raw_value, f"header {name}")
    if ":status" not in found:
        raise RemoteProtocolError("the response has no :status")
    text = found[":status"]
    if not (len(text) == 3 and text.isascii() and text.isdigit()):
        raise RemoteProtocolError(f":status {text!r} is not a 3-digit code")
    status = int(text)
    if len(body) > MAX_BODY:
        raise RemoteProtocolError(f"response body is {len(body)} bytes; the limit is {MAX_BODY}")
    apns_id = found.get("apns-id")
    unique_id = found.get("apns-unique-id")
    if status == 200:
        return Response(status=status, apns_id=apns_id, unique_id=unique_id)

    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise RemoteProtocolError(f"status {status} with a body that is not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("reason"), str):
        raise RemoteProtocolError(f'status {status} without a JSON {{"reason": ...}} body')
    reason = reason_from_str(document["reason"])
    timestamp = None
    raw_timestamp = document.get("timestamp")
    if raw_timestamp is not None:
        if type(raw_timestamp) is not int or not 0 <= raw_timestamp <= _MAX_TIMESTAMP_MS:
            raise RemoteProtocolError(
                f"timestamp {raw_timestamp!r} is not milliseconds since the epoch"
            )
        timestamp = timestamp_from_ms(raw_timestamp)
    return Response(
        status=status, reason=reason, apns_id=apns_id, timestamp=timestamp, unique_id=unique_id
    )


def encode_error_body(reason: Reason | str, timestamp_ms: int | None = None) -> bytes:
    """The JSON body of an error response (the simulator's side of :func:`parse_response`)."""
    document: dict[str, object] = {"reason": str(reason)}
    if timestamp_ms is not None:
        document["timestamp"] = timestamp_ms
    return json.dumps(document, separators=(",", ":")).encode()
