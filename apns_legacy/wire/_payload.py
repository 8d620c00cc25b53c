"""Payloads: compact UTF-8 JSON for the ``payload`` field (docs/PROTOCOL.md section 6).

Apple wants a JSON object with an ``aps`` dictionary, raw UTF-8 (the ``\\U``
notation is not supported), not null-terminated, and at most 2048 bytes since
iOS 8 (256 before; 4096 for VoIP pushes by node-apn's account). The gateway checks
the size only, so the limit is checked here, before anything is sent.

Payloads of plain values (str, int, bool, None, lists and str-keyed dicts of them)
are written by msgspec, whose compact output is the same bytes as ``json.dumps(...,
ensure_ascii=False, separators=(",", ":"))`` for them (tests/test_payload.py checks
every code point's escape and arbitrary values); anything else (floats, subclasses,
other types, deep nesting) by the standard library's rules.

Truncation shortens the alert text so that the *encoded* bytes fit. JSON escaping
is per character (``"`` becomes ``\\"``, a control character ``\\u001f``, anything
else is its raw UTF-8), so the encoded size of ``prefix + ellipsis`` is the size of
the payload with an empty body plus the escaped sizes of the two parts. The cut
only falls on a grapheme-cluster boundary (see :func:`_cluster_boundaries`), so a
flag, a family emoji or an accented letter is kept whole or dropped whole.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from json.encoder import encode_basestring as _escape
from typing import Any, Final

import attrs
import msgspec
import regex

from ._errors import LocalProtocolError
from ._frames import PAYLOAD_LIMIT

_MAX_LIMIT: Final = 0xFFFF  # the payload length field is 2 bytes


class PayloadTooLargeError(LocalProtocolError):
    """The encoded payload is larger than the limit.

    Attributes:
        size: The encoded size in bytes (for truncation failures: the smallest size
            truncation could reach).
        limit: The limit in bytes.
    """

    def __init__(self, size: int, limit: int, message: str | None = None) -> None:
        super().__init__(message or f"payload is {size} bytes; the limit is {limit}")
        self.size = size
        self.limit = limit

    def __reduce__(self) -> tuple[type[PayloadTooLargeError], tuple[int, int, str]]:
        return type(self), (self.size, self.limit, str(self))


# --- validation -----------------------------------------------------------------------


def _check_limit(limit: int) -> None:
    if type(limit) is not int:
        raise TypeError(f"limit must be an int, not {type(limit).__name__}")
    if not 1 <= limit <= _MAX_LIMIT:
        raise LocalProtocolError(f"limit {limit} is out of range: it must be 1..{_MAX_LIMIT}")


def _check_str(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")


def _str_list(name: str, value: object) -> list[str]:
    # A lone str is a Sequence[str] too; refuse it rather than send one argument a letter.
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a sequence of str, not {type(value).__name__}")
    for i, item in enumerate(value):
        _check_str(f"{name}[{i}]", item)
    return list(value)


def _optional_str(instance: Alert, attribute: attrs.Attribute[str | None], value: object) -> None:
    if value is not None:
        _check_str(f"Alert.{attribute.name}", value)


# Converters for the optional argument lists: checked, and kept as tuples (frozen means
# frozen). One named function each, so that the error names the field.
def _title_loc_args(value: Sequence[str] | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(_str_list("Alert.title_loc_args", value))


def _loc_args(value: Sequence[str] | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(_str_list("Alert.loc_args", value))


# --- values ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Alert:
    """The ``alert`` dictionary [APK]. Fields left as ``None`` are left out of the JSON.

    ``title``, ``title_loc_key`` and ``title_loc_args`` date from iOS 8.2, ``subtitle``
    from iOS 10; ``action`` is for Safari website pushes (with ``title`` and ``body``).
    """

    title: str | None = attrs.field(default=None, validator=_optional_str)
    subtitle: str | None = attrs.field(default=None, validator=_optional_str)
    body: str | None = attrs.field(default=None, validator=_optional_str)
    title_loc_key: str | None = attrs.field(default=None, validator=_optional_str)
    title_loc_args: tuple[str, ...] | None = attrs.field(default=None, converter=_title_loc_args)
    action_loc_key: str | None = attrs.field(default=None, validator=_optional_str)
    loc_key: str | None = attrs.field(default=None, validator=_optional_str)
    loc_args: tuple[str, ...] | None = attrs.field(default=None, converter=_loc_args)
    launch_image: str | None = attrs.field(default=None, validator=_optional_str)
    action: str | None = attrs.field(default=None, validator=_optional_str)

    def to_dict(self) -> dict[str, Any]:
        """The JSON dictionary, keys in field order, ``None`` fields left out."""
        out: dict[str, Any] = {}
        for name, key in _ALERT_KEYS:
            value = getattr(self, name)
            if value is not None:
                out[key] = list(value) if isinstance(value, tuple) else value
        return out


_ALERT_KEYS: Final = tuple(
    (field.name, field.name.replace("_", "-")) for field in attrs.fields(Alert)
)


# --- encoding -------------------------------------------------------------------------


#: The message for JSON nested deeper than Python's parser and writer can follow
#: (both recurse, so a few hundred to a thousand levels, depending on the stack).
_TOO_DEEP: Final = "payload nests arrays or objects too deeply"


def _encode(obj: object) -> bytes:
    return _encode_checked(obj, _plain(obj, 0))


def _encode_checked(obj: object, plain: bool) -> bytes:
    """``obj`` as compact JSON; ``plain``: whether ``_plain(obj, 0)`` holds."""
    if plain:
        # Plain values only: msgspec writes exactly what json.dumps would (the same
        # escapes; no floats, whose text it writes differently), much faster.
        try:
            return _msgspec_encode(obj)
        except (UnicodeEncodeError, msgspec.MsgspecError, TypeError, OverflowError):
            pass  # a lone surrogate, say: the path below words the error
    # allow_nan=False: NaN and Infinity are not JSON, and Python would write them anyway.
    try:
        text = _json(obj)
    except RecursionError:
        raise LocalProtocolError(_TOO_DEEP) from None
    except _Unusual:
        # Anything _compact does not know (non-str keys, str or dict subclasses with
        # their own behaviour, ...): json.dumps decides, and raises for what it refuses.
        try:
            text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise LocalProtocolError(f"payload cannot be encoded as JSON: {exc}") from exc
        except RecursionError:
            raise LocalProtocolError(_TOO_DEEP) from None
    return _utf8(text)


_msgspec_encode: Final = msgspec.json.Encoder().encode
_PLAIN_SCALARS: Final = frozenset((str, int, bool, type(None)))
#: Deeper values take the standard library's path (and its recursion limits).
_PLAIN_DEPTH: Final = 32


def _plain(obj: object, depth: int) -> bool:
    """Whether ``obj`` holds only str, int, bool, None, and lists, tuples and dicts with
    str keys of those (exact types, no subclasses), nested at most _PLAIN_DEPTH deep."""
    kind = type(obj)
    if kind is dict:
        if depth >= _PLAIN_DEPTH:
            return False
        for key, value in obj.items():  # type: ignore[attr-defined]
            if type(key) is not str:
                return False
            inner = type(value)
            if inner is not str and inner is not int and not _plain(value, depth + 1):
                return False
        return True
    if kind in _PLAIN_SCALARS:
        return True
    if kind is list or kind is tuple:
        if depth >= _PLAIN_DEPTH:
            return False
        return all(type(value) is str or _plain(value, depth + 1) for value in obj)  # type: ignore[attr-defined]
    return False


class _Unusual(Exception):
    """A value the compact writer leaves to json.dumps."""


def _json(obj: object) -> str:
    """``obj`` as json.dumps(ensure_ascii=False, separators=(",", ":")) would write it.

    json.dumps builds a new encoder on every call, which costs more than encoding a
    small payload; this writer does the same job for the plain types a payload is
    made of, with the standard library's own string escaping, and is checked against
    json.dumps byte for byte by a property test. Anything else raises _Unusual.
    """
    if type(obj) is str:
        return _escape(obj)
    if type(obj) is dict:
        for key in obj:
            if type(key) is not str:
                raise _Unusual
        # Strings, the usual value, inline; anything else recursively.
        return (
            "{"
            + ",".join(
                [
                    _escape(key) + ":" + (_escape(value) if type(value) is str else _json(value))
                    for key, value in obj.items()
                ]
            )
            + "}"
        )
    if type(obj) is list or type(obj) is tuple:
        return "[" + ",".join([_json(value) for value in obj]) + "]"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if obj is None:
        return "null"
    if type(obj) is int:
        return int.__repr__(obj)
    if type(obj) is float and math.isfinite(obj):
        return float.__repr__(obj)
    raise _Unusual


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise LocalProtocolError(
            f"payload text contains a lone surrogate (U+{ord(text[exc.start]):04X}), "
            "which UTF-8 cannot encode"
        ) from exc


def _escaped_size(text: str) -> int:
    """Bytes ``text`` takes inside a JSON string, quotes not counted."""
    return len(_encode(text)) - 2


def _check_size(data: bytes, limit: int) -> bytes:
    if len(data) > limit:
        raise PayloadTooLargeError(len(data), limit)
    return data


def build_payload(
    *,
    alert: str | Alert | None = None,
    badge: int | None = None,
    sound: str | None = None,
    content_available: bool = False,
    mutable_content: bool = False,
    category: str | None = None,
    thread_id: str | None = None,
    url_args: Sequence[str] | None = None,
    custom: Mapping[str, Any] | None = None,
    limit: int = PAYLOAD_LIMIT,
    truncate: bool = False,
    ellipsis: str = "…",
) -> bytes:
    """Build a payload: ``{"aps":{...}}`` then the custom keys, compact UTF-8 JSON.

    ``aps`` keys come in this order: ``alert``, ``badge``, ``sound``,
    ``content-available``, ``mutable-content``, ``category``, ``thread-id``,
    ``url-args``; arguments left at their default are left out. ``aps`` is always
    present, so no arguments at all give ``{"aps":{}}``.

    Args:
        alert: The alert text, or an :class:`Alert` dictionary.
        badge: The badge number; 0 clears the badge.
        sound: A sound file name, or ``"default"``.
        content_available: Send ``"content-available":1`` (background update).
        mutable_content: Send ``"mutable-content":1`` (iOS 10 service extension).
        category: The notification category (iOS 8).
        thread_id: The thread identifier (iOS 10).
        url_args: Safari website push URL arguments.
        custom: Top-level keys after ``aps``, in the given order; values must be
            JSON-serialisable. A key named ``aps`` is refused.
        limit: The byte limit: ``PAYLOAD_LIMIT`` (2048), ``OLD_PAYLOAD_LIMIT`` (256)
            or ``VOIP_PAYLOAD_LIMIT`` (4096); 1..65535.
        truncate: If the payload is too large, shorten the alert text (a str
            ``alert`` or ``Alert.body``) at a grapheme boundary and append ``ellipsis``.
        ellipsis: Appended to truncated text; may be ``""``.

    Returns:
        The encoded payload, at most ``limit`` bytes.

    Raises:
        PayloadTooLargeError: The payload is over ``limit`` and truncation was off,
            had no alert text to shorten, or could not shorten it enough.
        LocalProtocolError: A value is out of range or not JSON-serialisable, or
            ``custom`` has an ``aps`` key.
        TypeError: An argument has the wrong type.
    """
    # Checks that pass cost one test each; the check functions word the errors.
    if type(limit) is not int or not 1 <= limit <= _MAX_LIMIT:
        _check_limit(limit)
    if type(ellipsis) is not str:
        _check_str("ellipsis", ellipsis)
    # Whether the payload is plain (see _plain), worked out while it is put together
    # rather than by walking it afterwards: what _plain(root, 0) would say.
    plain = True
    aps: dict[str, Any] = {}
    if alert is not None:
        if type(alert) is str:
            aps["alert"] = alert
        elif isinstance(alert, Alert):
            aps["alert"] = alert_dict = alert.to_dict()
            plain = _plain(alert_dict, 2)
        else:
            _check_str("alert", alert)
            aps["alert"] = alert
            plain = False
    if badge is not None:
        if type(badge) is not int:
            raise TypeError(f"badge must be an int, not {type(badge).__name__}")
        if badge < 0:
            raise LocalProtocolError(f"badge must not be negative, got {badge}")
        aps["badge"] = badge
    if sound is not None:
        if type(sound) is not str:
            _check_str("sound", sound)
            plain = False
        aps["sound"] = sound
    if content_available is not False or mutable_content is not False:  # the rare case
        for name, key, flag in (
            ("content_available", "content-available", content_available),
            ("mutable_content", "mutable-content", mutable_content),
        ):
            if type(flag) is not bool:
                raise TypeError(f"{name} must be a bool, not {type(flag).__name__}")
            if flag:
                aps[key] = 1
    if category is not None:
        if type(category) is not str:
            _check_str("category", category)
            plain = False
        aps["category"] = category
    if thread_id is not None:
        if type(thread_id) is not str:
            _check_str("thread_id", thread_id)
            plain = False
        aps["thread-id"] = thread_id
    if url_args is not None:
        aps["url-args"] = args = _str_list("url_args", url_args)
        plain = plain and _plain(args, 2)

    root: dict[str, Any] = {"aps": aps}
    if custom is not None:
        if type(custom) is not dict and not isinstance(custom, Mapping):
            raise TypeError(f"custom must be a mapping, not {type(custom).__name__}")
        for key, value in custom.items():
            if type(key) is not str:
                _check_str("custom key", key)
                plain = False
            if key == "aps":
                raise LocalProtocolError(
                    "custom has a key named 'aps'; use the build_payload arguments for aps "
                    "keys, or raw_payload for a hand-made payload"
                )
            root[key] = value
            if plain:
                kind = type(value)
                plain = kind is str or kind is int or _plain(value, 1)

    data = _encode_checked(root, plain)
    if len(data) <= limit:
        return data
    if not truncate:
        raise PayloadTooLargeError(len(data), limit)
    return _truncate_alert(root, len(data), limit, ellipsis)


def _truncate_alert(root: dict[str, Any], size: int, limit: int, ellipsis: str) -> bytes:
    # Find the text: a str alert, or the body of an alert dictionary. ``root`` is our
    # own fresh dict, so it is edited in place.
    holder: dict[str, Any] = root["aps"]
    key = "alert"
    if isinstance(holder.get(key), dict):
        holder, key = holder[key], "body"
    text = holder.get(key)
    if not isinstance(text, str):
        raise PayloadTooLargeError(
            size,
            limit,
            f"payload is {size} bytes; the limit is {limit} (truncate=True shortens only "
            "the alert text, and this payload has none)",
        )
    holder[key] = ""
    fixed = len(_encode(root)) + _escaped_size(ellipsis)
    budget = limit - fixed  # bytes left for the escaped prefix of the text
    if budget < 0:
        with_ellipsis = " and the ellipsis" if ellipsis else ""
        raise PayloadTooLargeError(
            fixed,
            limit,
            f"payload is {fixed} bytes even with an empty alert body{with_ellipsis}; "
            f"the limit is {limit}",
        )
    holder[key] = text[: _longest_prefix(text, budget)] + ellipsis
    return _encode(root)


def _longest_prefix(text: str, budget: int) -> int:
    """Length of the longest prefix ending on a cluster boundary whose escaped size fits."""
    # Every character takes at least one byte, so no prefix longer than ``budget``
    # characters can fit: only the boundaries up to there are computed, and each
    # probe of the binary search encodes at most ``budget`` characters.
    # O(budget log budget) whatever the length of the text.
    bounds = _cluster_boundaries(text, stop=budget)
    # The escaped size grows with the boundary index; 0 (the empty prefix) always fits.
    index = bisect_right(bounds, budget, key=lambda end: _escaped_size(text[:end])) - 1
    return bounds[index]


# --- grapheme clusters (UAX #29) -------------------------------------------------------
#
# Python's standard library has no grapheme segmentation; the ``regex`` module's ``\X``
# matches one extended grapheme cluster as UAX #29 defines it (including the emoji ZWJ
# sequences of GB11, flags, Hangul syllables and the Indic conjuncts of GB9c), kept up
# to date with Unicode by its maintainers.

_CLUSTER: Final = regex.compile(r"\X")


def _cluster_boundaries(text: str, stop: int | None = None) -> list[int]:
    """Indices where ``text`` may be cut: 0, every cluster boundary, and ``len(text)``.

    With ``stop``, only boundaries up to ``stop`` are returned (they are the same as in
    the whole text: clusters are found from the start, so a boundary depends only on
    the text before it and the character after it).
    """
    bounds = [0]
    for match in _CLUSTER.finditer(text):
        end = match.end()
        if stop is not None and end > stop:
            break
        bounds.append(end)
    return bounds


# --- other payloads -------------------------------------------------------------------


def pass_payload() -> bytes:
    """The payload for a Wallet (PassKit) pass update: ``{"aps":{}}``.

    The device ignores the payload and fetches the pass. This is grocer's form; others
    seen are ``{"aps":""}`` (a Stack Overflow answer) and ``{}`` (an HTTP/2-era client).
    Pass pushes go to the production gateway with the Pass Type ID certificate.
    """
    return b'{"aps":{}}'


def raw_payload(data: bytes | str | Mapping[str, Any], *, limit: int = PAYLOAD_LIMIT) -> bytes:
    """A hand-made payload, checked but not rewritten.

    ``aps`` is not required (MDM pushes are ``{"mdm":"<PushMagic>"}``, and the gateway
    does not check), but the payload must be a JSON object.

    Args:
        data: JSON text as ``bytes`` (UTF-8) or ``str``, passed through as is; or a
            mapping, encoded compactly.
        limit: The byte limit, 1..65535.

    Returns:
        The payload bytes.

    Raises:
        PayloadTooLargeError: The payload is over ``limit``.
        LocalProtocolError: The text is not UTF-8, not JSON, not a JSON object, or
            nests arrays or objects deeper than Python's JSON parser can follow.
        TypeError: ``data`` has the wrong type.
    """
    _check_limit(limit)
    if isinstance(data, Mapping):
        return _check_size(_encode(dict(data)), limit)
    if isinstance(data, str):
        text, raw = data, _utf8(data)
    elif isinstance(data, bytes):
        raw = data
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise LocalProtocolError(f"payload is not valid UTF-8: {exc}") from exc
    else:
        raise TypeError(f"payload must be bytes, str or a mapping, not {type(data).__name__}")
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise LocalProtocolError(f"payload is not valid JSON: {exc}") from exc
    except RecursionError:
        raise LocalProtocolError(_TOO_DEEP) from None
    if not isinstance(value, dict):
        raise LocalProtocolError(f"payload must be a JSON object, not a JSON {_json_kind(value)}")
    return _check_size(raw, limit)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_JSON_KINDS: Final = {list: "array", str: "string", type(None): "null", bool: "boolean"}


def _json_kind(value: object) -> str:
    return _JSON_KINDS.get(type(value), "number")
