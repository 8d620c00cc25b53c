"""Device tokens as a value type (PROTOCOL.md section 7).

Tokens travel as raw bytes; people and databases hold them as hex. Clients of the
binary era disagreed on how forgiving to be (node-apn stripped every non-hex
character and so sent zero-length tokens; PyAPNs padded or truncated to 32 bytes).
We accept the common decorations, spaces and ``<...>`` as printed by
``-[NSData description]``, and refuse everything else with the position of the
offending character, never padding or truncating.
"""

from __future__ import annotations

from typing import Final

import attrs

from ._errors import LocalProtocolError
from ._fastinit import slot_setter, validate

#: What every device token of the binary era was.
TOKEN_LENGTH: Final = 32
#: Apple's 2018 text for command 2, item 1: "Up to 100 bytes".
MAX_LONG_TOKEN_LENGTH: Final = 100

_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")
_DECORATION: Final = frozenset(" \t<>")


def check_token_length(length: int, *, allow_long: bool = False) -> None:
    """Raise :class:`LocalProtocolError` unless ``length`` is a legal token size."""
    if length == TOKEN_LENGTH:
        return
    if allow_long and TOKEN_LENGTH <= length <= MAX_LONG_TOKEN_LENGTH:
        return
    limit = (
        f"{TOKEN_LENGTH} to {MAX_LONG_TOKEN_LENGTH} bytes"
        if allow_long
        else f"{TOKEN_LENGTH} bytes"
    )
    raise LocalProtocolError(f"device token is {length} bytes; it must be {limit}")


def _check_bytes(instance: DeviceToken, attribute: attrs.Attribute[bytes], value: bytes) -> None:
    if type(value) is not bytes:
        raise TypeError(f"DeviceToken.value must be bytes, not {type(value).__name__}")
    if not TOKEN_LENGTH <= len(value) <= MAX_LONG_TOKEN_LENGTH:
        raise LocalProtocolError(
            f"device token is {len(value)} bytes; it must be {TOKEN_LENGTH} to "
            f"{MAX_LONG_TOKEN_LENGTH} bytes"
        )


@attrs.frozen(repr=False, order=True, init=False)
class DeviceToken:
    """A device token: 32 bytes by default, 32 to 100 where the caller allows long tokens.

    Build one with :meth:`from_hex` or :meth:`from_bytes`; both check the length.
    """

    value: bytes = attrs.field(validator=_check_bytes)

    # Written out (init=False), for speed: see _fastinit.
    def __init__(self, value: bytes) -> None:
        if type(value) is not bytes or not TOKEN_LENGTH <= len(value) <= MAX_LONG_TOKEN_LENGTH:
            validate(self, _TOKEN_FIELDS, value)
        _set_value(self, value)

    @classmethod
    def from_bytes(cls, value: bytes, *, allow_long: bool = False) -> DeviceToken:
        """Wrap raw token bytes (or a bytearray or memoryview), checking the length."""
        if type(value) is not bytes:
            # Through memoryview, which takes only bytes-like objects: bytes(32) would
            # be 32 zero bytes and pass the length check.
            value = bytes(memoryview(value))
        if len(value) != TOKEN_LENGTH:
            check_token_length(len(value), allow_long=allow_long)
        return cls(value)

    @classmethod
    def from_hex(cls, text: str, *, allow_long: bool = False) -> DeviceToken:
        """Parse hex such as ``"a1b2..."``, ``"A1 B2 ..."`` or ``"<a1b2c3d4 ...>"``.

        Raises:
            LocalProtocolError: a character that is not hex (its 1-based position is
                named), an odd number of digits, or a length other than allowed.
        """
        if text.isascii() and text.isalnum():
            # The common case, plain hex: let bytes.fromhex do the work in C. Anything
            # it refuses goes through the loop below for a precise message.
            try:
                value = bytes.fromhex(text)
            except ValueError:
                pass
            else:
                return cls.from_bytes(value, allow_long=allow_long)
        digits = []
        for position, char in enumerate(text, start=1):
            if char in _HEX_DIGITS:
                digits.append(char)
            elif char not in _DECORATION:
                raise LocalProtocolError(
                    f"device token has {char!r} at position {position}; "
                    "only hex digits, spaces and <> are allowed"
                )
        if not digits:
            raise LocalProtocolError("device token is empty")
        if len(digits) % 2:
            raise LocalProtocolError(
                f"device token has {len(digits)} hex digits; an even number is needed"
            )
        return cls.from_bytes(bytes.fromhex("".join(digits)), allow_long=allow_long)

    @property
    def hex(self) -> str:
        """Lower-case hex, no separators: the form used in reports and stores."""
        return self.value.hex()

    def __str__(self) -> str:
        return self.value.hex()

    def __repr__(self) -> str:
        h = self.value.hex()
        return f"DeviceToken({h[:8]}…{h[-4:]})"

    def __len__(self) -> int:
        return len(self.value)


_TOKEN_FIELDS: Final = tuple(attrs.fields(DeviceToken))
_set_value: Final = slot_setter(DeviceToken, "value")
