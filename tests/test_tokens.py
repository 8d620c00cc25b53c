"""DeviceToken: hex parsing with the usual decorations, length rules, repr."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from strategies import tokens

from apns_legacy.wire import (
    MAX_LONG_TOKEN_LENGTH,
    TOKEN_LENGTH,
    DeviceToken,
    LocalProtocolError,
    check_token_length,
)

HEX = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
RAW = bytes(range(32))


@pytest.mark.parametrize(
    "text",
    [
        HEX,
        HEX.upper(),
        "000102030405060708090A0B0C0D0E0F101112131415161718191a1b1c1d1e1f",
        "<00010203 04050607 08090a0b 0c0d0e0f 10111213 14151617 18191a1b 1c1d1e1f>",
        " 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f 10 11 12 13 14 15 16 17 18 19 1a 1b "
        "1c 1d 1e 1f ",
        "\t" + HEX + "\t",
    ],
)
def test_from_hex_accepts_spaces_angle_brackets_and_either_case(text):
    token = DeviceToken.from_hex(text)
    assert token.value == RAW
    assert type(token.value) is bytes
    assert token == DeviceToken(RAW)


@pytest.mark.parametrize(
    ("text", "char", "position"),
    [
        ("g" + HEX[1:], "'g'", 1),
        (HEX[:10] + "-" + HEX[11:], "'-'", 11),
        ("<" + HEX[:63] + "z>", "'z'", 65),
        (HEX[:63] + "\n", "'\\n'", 64),
        (HEX[:2] + "é" + HEX[3:], "'é'", 3),
        ("0x" + HEX[2:], "'x'", 2),
    ],
)
def test_from_hex_names_the_position_of_a_non_hex_character(text, char, position):
    with pytest.raises(LocalProtocolError, match=re.escape(f"{char} at position {position};")):
        DeviceToken.from_hex(text)


def test_from_hex_refuses_non_ascii_digits():
    # str.isdigit() would let these through; bytes.fromhex would then choke.
    with pytest.raises(LocalProtocolError, match="position 1"):
        DeviceToken.from_hex("\u0661" + HEX[1:])  # ARABIC-INDIC DIGIT ONE


@pytest.mark.parametrize("text", [HEX[:-1], HEX + "0", "<" + HEX[:-1] + ">"])
def test_from_hex_refuses_an_odd_digit_count(text):
    with pytest.raises(LocalProtocolError, match="even number"):
        DeviceToken.from_hex(text)


@pytest.mark.parametrize("text", ["", "   ", "<>", "< >"])
def test_from_hex_refuses_an_empty_token(text):
    with pytest.raises(LocalProtocolError, match="empty"):
        DeviceToken.from_hex(text)


@pytest.mark.parametrize("n_bytes", [1, 16, 31, 33, 64, 100, 101])
def test_from_hex_refuses_wrong_length_by_default(n_bytes):
    with pytest.raises(LocalProtocolError, match=f"{n_bytes} bytes; it must be 32 bytes"):
        DeviceToken.from_hex("ab" * n_bytes)


@pytest.mark.parametrize("n_bytes", [32, 33, 64, 100])
def test_allow_long_accepts_32_to_100_bytes(n_bytes):
    token = DeviceToken.from_hex("ab" * n_bytes, allow_long=True)
    assert len(token) == n_bytes
    assert DeviceToken.from_bytes(b"\xab" * n_bytes, allow_long=True) == token


@pytest.mark.parametrize("n_bytes", [0, 1, 31, 101, 200])
def test_allow_long_still_refuses_outside_32_to_100(n_bytes):
    with pytest.raises(LocalProtocolError, match="32 to 100 bytes"):
        DeviceToken.from_bytes(b"\x01" * n_bytes, allow_long=True)


def test_from_bytes_checks_length_and_copies_bytes_like():
    assert DeviceToken.from_bytes(RAW).value == RAW
    token = DeviceToken.from_bytes(bytearray(RAW))
    assert type(token.value) is bytes
    assert type(DeviceToken.from_bytes(memoryview(RAW)).value) is bytes
    for bad in (RAW[:31], RAW + b"\x00", b""):
        with pytest.raises(LocalProtocolError, match="must be 32 bytes"):
            DeviceToken.from_bytes(bad)


def test_from_bytes_refuses_an_int():
    # bytes(32) would be 32 zero bytes: a token made of nothing.
    with pytest.raises(TypeError):
        DeviceToken.from_bytes(32)  # type: ignore[arg-type]


def test_constructor_checks_type_and_the_outer_length_bounds():
    with pytest.raises(TypeError, match="must be bytes"):
        DeviceToken(bytearray(RAW))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        DeviceToken(HEX)  # type: ignore[arg-type]
    for size in (0, 31, 101):
        with pytest.raises(LocalProtocolError):
            DeviceToken(b"\x00" * size)
    assert len(DeviceToken(b"\x00" * 100)) == 100


def test_repr_is_short_and_str_is_the_hex():
    token = DeviceToken(RAW)
    assert repr(token) == "DeviceToken(00010203…1e1f)"
    assert len(repr(DeviceToken(b"\xff" * 100))) < 30
    assert str(token) == HEX
    assert token.hex == HEX


def test_tokens_are_values():
    a = DeviceToken(RAW)
    b = DeviceToken.from_hex(HEX.upper())
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    assert DeviceToken(b"\x00" * 32) < a
    with pytest.raises(AttributeError):
        a.value = b"\x00" * 32  # type: ignore[misc]


@given(token=tokens(allow_long=True))
def test_hex_round_trip(token):
    assert DeviceToken.from_hex(token.hex, allow_long=True) == token
    assert DeviceToken.from_hex(token.hex.upper(), allow_long=True) == token
    spaced = "<" + " ".join(token.hex[i : i + 8] for i in range(0, len(token.hex), 8)) + ">"
    assert DeviceToken.from_hex(spaced, allow_long=True) == token


def test_check_token_length():
    assert (TOKEN_LENGTH, MAX_LONG_TOKEN_LENGTH) == (32, 100)
    check_token_length(32)
    check_token_length(32, allow_long=True)
    check_token_length(100, allow_long=True)
    for length in (0, 31, 33, 100):
        with pytest.raises(LocalProtocolError, match="must be 32 bytes"):
            check_token_length(length)
    for length in (0, 31, 101):
        with pytest.raises(LocalProtocolError, match="32 to 100 bytes"):
            check_token_length(length, allow_long=True)
