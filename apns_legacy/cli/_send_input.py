"""Input of ``apns-legacy send``: the checked plan, JSON lines, and splitting a stream.

An input line is one JSON object: ``token`` (hex), ``payload`` (an object, or a string
holding one, sent as is), optional ``expiry`` (UNIX seconds) and ``priority`` (10 or
5). The columns of ``tokens export --format jsonl`` are accepted and ignored, so the
export is valid input, except that a line with ``"active": false`` (a deactivated
device) is skipped. Other fields are refused, so a typo such as ``priorty`` is not
silently ignored. Errors name the field and the rule, e.g. ``token: device token has
'x' at position 5; ...``. A UTF-8 byte order mark at the start of the input is
skipped.

Speed: a line is first decoded by msgspec into a typed struct in one pass (its
payload kept as the raw bytes it arrived as), and a payload object that is already
the compact JSON this program would write is sent as those bytes, without being
decoded into Python objects and written again. Whatever that fast path cannot vouch
for (an error of any kind, floats or numbers not in their shortest form, whitespace,
escapes msgspec writes differently, deep nesting) goes through the plain path with the
standard library's ``json``, which decides and words every error; so the fast path
changes the speed only, never a result or a message (tests/test_send_input.py compares
the two on arbitrary lines). :func:`parse_lines` takes the lines of a chunk of input
at once: it decodes them one by one, then checks the payload objects it has not seen
before together (one ``decode_lines`` and one ``encode_lines`` for all of them), and
gives each line that is not plainly good to :func:`parse_line`, so that a chunk with
a bad line still gets the same message, with the same line number.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

import attrs
import msgspec

from ..wire import (
    PRIORITY_CONSERVE_POWER,
    PRIORITY_IMMEDIATE,
    DeviceToken,
    LocalProtocolError,
    Notification,
    raw_payload,
)
from ..wire._events import notification_from

FIELDS: Final = ("token", "payload", "expiry", "priority")
#: The other columns of ``tokens export --format jsonl``: accepted, not used.
STORE_FIELDS: Final = (
    "topic",
    "registered_at",
    "active",
    "deactivated_at",
    "deactivated_reason",
    "feedback_time",
)
if TYPE_CHECKING:
    # Only for types: the process that parses input lines beside the sending one
    # (_send_worker) imports this module, and needs no sender, no trio and no OpenSSL.
    from ..client import Http2SenderConfig, SenderConfig

_BOM: Final = b"\xef\xbb\xbf"
# Distinct payloads remembered for sharing (see _line_payload).
_SHARED_PAYLOADS: Final = 1024
UINT32_MAX: Final = 0xFFFF_FFFF
#: Bytes per read of the input; lines are split out of these pieces.
READ_SIZE: Final = 65_536
#: A longer input line is reported as bad (and skipped) without being kept in memory.
MAX_LINE: Final = 1 << 20


def _config_limit(plan: Plan) -> int:
    # The binary SenderConfig has both fields; Http2SenderConfig has neither.
    limit: int | None = getattr(plan.config, "payload_limit", None)
    if limit is None:
        raise TypeError("an HTTP/2 plan needs its payload_limit")
    return limit


def _config_long(plan: Plan) -> bool:
    return bool(getattr(plan.config, "allow_long_tokens", False))


@attrs.frozen(kw_only=True)
class Plan:
    """What to send and how, checked before anything connects."""

    #: The binary sender's settings, or the HTTP/2 sender's (``send --http2``).
    config: SenderConfig | Http2SenderConfig
    #: The payload from --payload or --alert/--badge/--sound, if given.
    payload: bytes | None
    expiry: int
    priority: int
    #: The --token values (empty with --input).
    tokens: tuple[DeviceToken, ...]
    strict: bool
    #: The largest payload an input line may carry (default: the binary config's).
    payload_limit: int = attrs.field(default=attrs.Factory(_config_limit, takes_self=True))
    #: Whether tokens of 32 to 100 bytes are allowed (default: the binary config's).
    allow_long_tokens: bool = attrs.field(default=attrs.Factory(_config_long, takes_self=True))
    #: Payloads seen on input lines, so that equal ones share one bytes object.
    shared_payloads: dict[bytes, bytes] = attrs.field(factory=dict, eq=False, repr=False)
    #: Payload objects found compact by the fast path (bounded like shared_payloads):
    #: the same bytes again need no second look.
    passed_objects: dict[bytes, bytes] = attrs.field(factory=dict, eq=False, repr=False)


class BadLine(Exception):
    """An input line that cannot be sent; the message names the field."""


class InputFailed(Exception):
    """The input could not be read to its end (the message says why)."""


def cannot_read(exc: OSError) -> str:
    """The reason an input could not be read further."""
    return f"cannot read further ({exc.strerror or exc})"


#: What a chunk of input becomes, parsed in place or by the worker (_send_worker):
#: bytes read so far, and each line as a notification, the message of a bad line, or
#: None for a blank one, with its line number.
ParsedChunk = tuple[int, list[tuple[int, Notification | str | None]]]


def parse_line(raw: bytes, plan: Plan) -> Notification:
    """One input line (without its newline) as a notification.

    Raises:
        BadLine: the message names the field and the rule it breaks.
    """
    try:
        return _parse_line(raw, plan)
    except RecursionError:
        # JSON parsing and writing recurse; a line nested deeper than the stack allows
        # (a thousand "[" do it) is a bad line like any other, never a crash.
        raise BadLine(_TOO_DEEP) from None


_TOO_DEEP: Final = "arrays or objects nested too deeply"
_TOO_LONG: Final = f"longer than {MAX_LINE} bytes"


def parse_lines(
    lines: list[tuple[int, bytes | None]], plan: Plan
) -> list[tuple[int, Notification | str | None]]:
    """The lines of a :class:`LineSplitter`, each as a notification, the message of
    its :class:`BadLine`, or None for a blank line; in order, with their numbers.

    The same as :func:`parse_line` a line, with fewer calls for the usual line: the
    fast path first, and only a line it leaves is looked at again (blank, or the plain
    path's to decide). The payload objects not seen before are checked together
    (:func:`_passed_payloads`: one decode and one encode for all of them).
    """
    items: list[tuple[int, Notification | str | None]] = []
    append = items.append
    # Lines whose payload object is new: (index in items, raw line, decoded line, payload).
    waiting: list[tuple[int, bytes, _Line, bytes]] = []
    passed_objects = plan.passed_objects
    for number, raw in lines:
        if raw is None:
            append((number, _TOO_LONG))
            continue
        line = _fast_fields(raw, plan)
        if line is not None:
            value = bytes(line.payload)
            if value[:1] == b"{" and value not in passed_objects:
                waiting.append((len(items), raw, line, value))
                append((number, None))  # a place held, filled in below
                continue
            notification = _fast_notification(line, value, None, plan)
            if notification is not None:
                append((number, notification))
                continue
        append(_slow_line(number, raw, plan))
    if waiting:
        passing = _passed_payloads([value for _, _, _, value in waiting], plan.payload_limit)
        for (index, raw, line, value), passed in zip(waiting, passing, strict=True):
            number = items[index][0]
            notification = None if passed is None else _fast_notification(line, value, passed, plan)
            items[index] = (
                (number, notification)
                if notification is not None
                else _slow_line(number, raw, plan)
            )
    return items


def _slow_line(number: int, raw: bytes, plan: Plan) -> tuple[int, Notification | str | None]:
    """A line the fast path leaves: blank (None), or what :func:`parse_line` says."""
    if not raw.strip():
        return number, None  # blank lines are allowed and numbered
    try:
        return number, parse_line(raw, plan)
    except BadLine as exc:
        return number, str(exc)


def _parse_line(raw: bytes, plan: Plan) -> Notification:
    notification = _fast_line(raw, plan)
    if notification is None:
        notification = _plain_line(raw, plan)
    return notification


class _Line(msgspec.Struct, forbid_unknown_fields=True):
    """An input line as msgspec decodes it: the payload and the store's columns raw."""

    token: str
    payload: msgspec.Raw = msgspec.Raw()
    expiry: int | msgspec.UnsetType = msgspec.UNSET
    priority: int | msgspec.UnsetType = msgspec.UNSET
    # The columns of `tokens export`: checked to be JSON, not decoded (but "active").
    topic: msgspec.Raw = msgspec.Raw()
    registered_at: msgspec.Raw = msgspec.Raw()
    active: Any = True
    deactivated_at: msgspec.Raw = msgspec.Raw()
    deactivated_reason: msgspec.Raw = msgspec.Raw()
    feedback_time: msgspec.Raw = msgspec.Raw()


class _NotShortest(ValueError):
    """A float in a payload that Python would write differently."""


def _shortest_float(text: str) -> float:
    # json.dumps writes float.__repr__; a float written any other way in the input
    # (1.50, 1E2, 1e16 for 1e+16) would be rewritten, so it cannot pass through.
    value = float(text)
    if float.__repr__(value) != text:
        raise _NotShortest(text)
    return value


_LINE_DECODER: Final = msgspec.json.Decoder(_Line)
_UNSET: Final = msgspec.UNSET
_PAYLOAD_DECODER: Final = msgspec.json.Decoder(float_hook=_shortest_float)
_ENCODE: Final = msgspec.json.Encoder().encode
_ENCODE_LINES: Final = msgspec.json.Encoder().encode_lines
#: A payload object with at most this many "{" and "[" (so nested no deeper) may pass
#: through; deeper ones take the plain path, whose recursion limits decide.
_PASS_NESTING: Final = 64


def _fast_line(raw: bytes, plan: Plan) -> Notification | None:
    """The notification of a well-formed line, or None for the plain path to decide."""
    line = _fast_fields(raw, plan)
    if line is None:
        return None
    return _fast_notification(line, bytes(line.payload), None, plan)


def _fast_fields(raw: bytes, plan: Plan) -> _Line | None:
    """The line decoded, if UTF-8 and of the right shape, its expiry and priority valid."""
    if not raw.isascii():
        try:
            raw.decode("utf-8")  # msgspec does not check the bytes it skips
        except UnicodeDecodeError:
            return None
    try:
        line = _LINE_DECODER.decode(raw)
    except (msgspec.MsgspecError, RecursionError, ValueError):
        return None
    if line.active is False:
        return None
    expiry = plan.expiry if line.expiry is _UNSET else line.expiry
    priority = plan.priority if line.priority is _UNSET else line.priority
    if not 0 <= expiry <= UINT32_MAX or priority not in _PRIORITIES:
        return None
    return line


def _fast_notification(
    line: _Line, raw_value: bytes, passed: bytes | None, plan: Plan
) -> Notification | None:
    """The notification of a line :func:`_fast_fields` passed, given its payload's
    bytes (``passed``: what :func:`_passed_payload` made of them, if known)."""
    if not raw_value:
        if plan.payload is None:
            return None
        payload = plan.payload
    else:
        if passed is None:
            passed = plan.passed_objects.get(raw_value)
        if passed is None:
            passed = _passed_payload(raw_value, plan.payload_limit)
            if passed is None:
                return None
        if raw_value[:1] == b"{" and raw_value not in plan.passed_objects:
            passed_objects = plan.passed_objects
            if len(passed_objects) >= _SHARED_PAYLOADS:
                passed_objects.clear()
            passed_objects[passed] = passed
        shared = plan.shared_payloads
        if len(shared) >= _SHARED_PAYLOADS:
            shared.clear()
        payload = shared.setdefault(passed, passed)
    token = line.token
    expiry = plan.expiry if line.expiry is _UNSET else line.expiry
    priority = plan.priority if line.priority is _UNSET else line.priority
    try:
        if len(token) == 64:
            # Plain hex of a 32-byte token, the usual case: what from_hex does for it.
            # (bytes.fromhex skips spaces between bytes: 64 characters make 32 bytes
            # only if there are none, and a character that is not hex raises.)
            value = bytes.fromhex(token)
            if len(value) != 32:
                return None
            return notification_from(value, payload, expiry, priority)
        device_token = DeviceToken.from_hex(token, allow_long=plan.allow_long_tokens)
    except (LocalProtocolError, ValueError):
        return None
    return Notification(token=device_token, payload=payload, expiry=expiry, priority=priority)


_PRIORITIES: Final = frozenset((PRIORITY_IMMEDIATE, PRIORITY_CONSERVE_POWER))


def _passed_payload(value: bytes, limit: int) -> bytes | None:
    """The payload bytes the plain path would make of ``value``, if cheaply known."""
    first = value[:1]
    if first == b'"':  # a string holding the payload: raw_payload checks it, as always
        try:
            text = msgspec.json.decode(value)
            return raw_payload(text, limit=limit)
        except (msgspec.MsgspecError, LocalProtocolError, RecursionError, ValueError):
            return None
    size = len(value)
    if first != b"{" or size > limit:
        return None
    # More than _PASS_NESTING "{" and "[" need as many closing ones to be JSON: a
    # shorter value cannot be nested that deep (it is no JSON, for msgspec to refuse).
    if size > 2 * _PASS_NESTING and value.count(b"{") + value.count(b"[") > _PASS_NESTING:
        return None
    try:
        decoded = _PAYLOAD_DECODER.decode(value)
        # Already compact, in the form the plain path writes: pass it through.
        if _ENCODE(decoded) == value:
            return value
    except (msgspec.MsgspecError, RecursionError, ValueError):
        pass
    return None


def _passed_payloads(values: list[bytes], limit: int) -> list[bytes | None]:
    """:func:`_passed_payload` of each payload object in ``values``, with one decode
    and one encode for all those that may pass (most, usually).

    Each value is one JSON value without a newline (msgspec found it on one input
    line), so joined by newlines they are JSON lines, one value a line, and written
    again by ``encode_lines`` they are the same bytes exactly if each one is.
    """
    results: list[bytes | None] = [None] * len(values)
    candidates = [
        (position, value)
        for position, value in enumerate(values)
        if len(value) <= 2 * _PASS_NESTING
        or (len(value) <= limit and value.count(b"{") + value.count(b"[") <= _PASS_NESTING)
    ]
    joined = b"\n".join(value for _, value in candidates)
    try:
        decoded = _PAYLOAD_DECODER.decode_lines(joined)
        if len(decoded) != len(candidates):  # not one value each, after all
            raise ValueError
        written = _ENCODE_LINES(decoded)
    except (msgspec.MsgspecError, RecursionError, ValueError):
        # One of them is not JSON that can pass: each one on its own, then.
        return [_passed_payload(value, limit) for value in values]
    if written == joined + b"\n":
        for position, value in candidates:
            results[position] = value if len(value) <= limit else None
        return results
    # Some written differently: the others pass (msgspec writes no newline in a value).
    for (position, value), again in zip(candidates, written.split(b"\n"), strict=False):
        if again == value and len(value) <= limit:
            results[position] = value
    return results


def _plain_line(raw: bytes, plan: Plan) -> Notification:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadLine(f"not UTF-8 (byte {exc.start + 1})") from None
    try:
        item = json.loads(text)
    except ValueError as exc:
        raise BadLine(f"not JSON: {exc}") from None
    except RecursionError:
        raise BadLine(f"not JSON this program reads: {_TOO_DEEP}") from None
    if not isinstance(item, dict):
        raise BadLine("must be a JSON object with token and payload")
    for key in item:
        if key not in FIELDS and key not in STORE_FIELDS:
            raise BadLine(f"unknown field {key!r} (the fields are {', '.join(FIELDS)})")
    if item.get("active", True) is False:
        raise BadLine("active: false, a deactivated device (export with --active)")
    token = item.get("token")
    if not isinstance(token, str):
        raise BadLine("token: missing" if token is None else "token: must be a hex string")
    try:
        device_token = DeviceToken.from_hex(token, allow_long=plan.allow_long_tokens)
    except LocalProtocolError as exc:
        raise BadLine(f"token: {exc}") from None
    return Notification(
        token=device_token,
        payload=_line_payload(item, plan),
        expiry=_int_field(item, "expiry", plan.expiry),
        priority=_int_field(item, "priority", plan.priority),
    )


def _line_payload(item: dict[str, Any], plan: Plan) -> bytes:
    if "payload" not in item:
        if plan.payload is None:
            raise BadLine("payload: missing (or give --payload/--alert for lines without one)")
        return plan.payload
    value = item["payload"]
    if not isinstance(value, dict | str):
        raise BadLine("payload: must be a JSON object, or a string holding one")
    try:
        payload = raw_payload(value, limit=plan.payload_limit)
    except LocalProtocolError as exc:
        raise BadLine(f"payload: {exc}") from None
    # Lines that carry the same payload share one bytes object, which lets the sender
    # encode a run of them as a broadcast (see wire encode_batch). Bounded.
    shared = plan.shared_payloads
    if len(shared) >= _SHARED_PAYLOADS:
        shared.clear()
    return shared.setdefault(payload, payload)


def _int_field(item: dict[str, Any], name: str, default: int) -> int:
    value = item.get(name, default)
    if type(value) is not int:
        raise BadLine(f"{name}: must be an integer, not {json.dumps(value)}")
    if name == "expiry" and not 0 <= value <= UINT32_MAX:
        raise BadLine(f"expiry: must be 0 to {UINT32_MAX} (UNIX seconds), not {value}")
    if name == "priority" and value not in (PRIORITY_IMMEDIATE, PRIORITY_CONSERVE_POWER):
        raise BadLine(f"priority: must be 10 or 5, not {value}")
    return value


class LineSplitter:
    """Numbers and splits a byte stream into lines, holding at most one partial line.

    :meth:`feed` and :meth:`finish` return ``(line_number, line)`` pairs; ``line``
    is None for a line longer than ``max_line`` bytes, which is dropped, not kept.
    """

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self.number = 0
        self._partial = bytearray()
        self._overlong = False
        #: The first bytes, held until it is clear whether they are a byte order mark.
        self._head: bytes | None = b""

    @property
    def buffered(self) -> int:
        """Bytes held of the line not finished yet."""
        return len(self._partial)

    def feed(self, chunk: bytes) -> list[tuple[int, bytes | None]]:
        if self._head is not None:
            # A UTF-8 byte order mark (Windows editors write one) is not part of line 1.
            head = self._head + chunk
            if len(head) < len(_BOM) and _BOM.startswith(head):
                self._head = head
                return []
            self._head = None
            chunk = head.removeprefix(_BOM)
        pieces = chunk.split(b"\n")
        tail = pieces.pop()  # after the last newline: the start of a line not finished
        lines: list[tuple[int, bytes | None]] = []
        if pieces:
            # The first line may continue the one held; the others are whole in chunk.
            lines.append(self._line(pieces[0]))
            whole = pieces[1:]
            if b"\r" in chunk:  # the length limit counts it, as for a line held
                whole = [piece if len(piece) > self.max_line else piece.rstrip(b"\r")
                         for piece in whole]  # fmt: skip
            rest: list[bytes | None] = [*whole]
            if len(chunk) > self.max_line:
                rest = [None if len(piece) > self.max_line else piece for piece in whole]
            number = self.number
            lines += zip(range(number + 1, number + 1 + len(rest)), rest, strict=True)
            self.number = number + len(rest)
        if not self._overlong:
            self._partial += tail
            if len(self._partial) > self.max_line:
                self._overlong = True
                self._partial.clear()
        return lines

    def finish(self) -> list[tuple[int, bytes | None]]:
        """The last line, if the input did not end with a newline."""
        if self._head:  # the input was shorter than a byte order mark
            self._partial += self._head.removeprefix(_BOM)
        self._head = None
        if self._partial or self._overlong:
            return [self._line(b"")]
        return []

    def _line(self, tail: bytes) -> tuple[int, bytes | None]:
        self.number += 1
        if self._overlong:
            self._overlong = False
            return self.number, None
        if self._partial:
            line = bytes(self._partial + tail)
            self._partial.clear()
        else:
            line = tail
        if len(line) > self.max_line:
            return self.number, None
        return self.number, line.rstrip(b"\r")
