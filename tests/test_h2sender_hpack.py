"""The HTTP/2 sender's HPACK: the memoizing encoder and the answers' short-path decoder.

Encoder: every block decodes to what was encoded.

The encoder memoizes header encodings that depend on the dynamic table; the property
below drives it through sequences of requests drawn from a small pool (so that headers
repeat, get indexed, are evicted by small tables) with table size changes in between,
and decodes every block with hpack's own decoder, which must always agree.
"""

from __future__ import annotations

import hpack
from hypothesis import given, settings
from hypothesis import strategies as st

from apns_legacy.client._h2sender import _RequestEncoder, _ResponseDecoder

NAMES = [
    b":authority",
    b"apns-topic",
    b"apns-push-type",
    b"apns-priority",
    b"apns-expiration",
    b"apns-collapse-id",
    b"authorization",
    b"apns-id",
    b"content-length",
    b"x-other",
]
VALUES = [b"a", b"com.example.app", b"alert", b"10", b"0", b"x" * 300, b"bearer ey" + b"j" * 150]

header = st.tuples(st.sampled_from(NAMES), st.sampled_from(VALUES))
path = st.binary(min_size=1, max_size=200).map(
    lambda b: (b":path", b"/3/device/" + b.hex().encode())
)
request = st.tuples(path, st.lists(header, max_size=8)).map(lambda t: [t[0], *t[1]])
step = st.one_of(request, st.sampled_from([0, 64, 256, 4096, 8192]))


@settings(max_examples=1000, deadline=None)
@given(st.lists(step, min_size=1, max_size=40))
def test_every_block_decodes_to_its_headers(steps):
    encoder = _RequestEncoder()
    decoder = hpack.Decoder()
    decoder.max_header_list_size = 1 << 20
    for item in steps:
        if isinstance(item, int):
            # A peer's SETTINGS_HEADER_TABLE_SIZE, as h2 applies it to the encoder.
            # Only changes: hpack itself (4.2.0) forgets a pending size update when the
            # same size is set twice before the next block (plain hpack.Encoder too).
            if item == encoder.header_table_size:
                continue
            encoder.header_table_size = item
            decoder.max_allowed_table_size = max(item, decoder.max_allowed_table_size)
            continue
        block = encoder.encode(item)
        assert decoder.decode(block, raw=True) == item


def test_repeated_headers_cost_one_byte_and_secrets_stay_out_of_the_table():
    encoder = _RequestEncoder()
    decoder = hpack.Decoder()
    common = [(b"apns-topic", b"com.example.app"), (b"authorization", b"bearer eyJ" + b"x" * 150)]
    first = encoder.encode([(b":path", b"/3/device/aa"), *common])
    second = encoder.encode([(b":path", b"/3/device/bb"), *common])
    assert decoder.decode(first, raw=True)[1:] == common
    assert decoder.decode(second, raw=True)[1:] == common
    # apns-topic indexed: one byte the second time; authorization never indexed.
    assert len(second) < len(first)
    assert [name for name, _ in encoder.header_table.dynamic_entries] == [b"apns-topic"]
    assert second[:1] == b"\x14"  # :path: never indexed, static name index 4


# -- the decoder of answers ---------------------------------------------------------------

ANSWER_NAMES = [b":status", b"apns-id", b"apns-unique-id", b"content-type", b"x-long" * 30]
ANSWER_VALUES = [b"200", b"410", b"eabeae54-14a8-11e5-b60b-1697f925ec7b", b"", b"v" * 200]


def _string(value: bytes, huffman: bool) -> bytes:
    # RFC 7541 5.2: H bit, 7-bit prefix length (multi-byte past 126), the octets.
    if huffman:
        value = hpack.huffman.HuffmanEncoder(
            hpack.huffman_constants.REQUEST_CODES, hpack.huffman_constants.REQUEST_CODES_LENGTH
        ).encode(value)
    length = len(value)
    if length < 127:
        prefix = bytes([(0x80 if huffman else 0) | length])
    else:
        rest, out = length - 127, bytearray([(0x80 if huffman else 0) | 127])
        while rest >= 128:
            out.append((rest & 0x7F) | 0x80)
            rest >>= 7
        out.append(rest)
        prefix = bytes(out)
    return prefix + value


@st.composite
def literal_without_indexing(draw):
    # RFC 7541 6.2.2 (0000) and 6.2.3 (0001): never change the dynamic table.
    kind = draw(st.sampled_from([0x00, 0x10]))
    value = _string(draw(st.sampled_from(ANSWER_VALUES)), draw(st.booleans()))
    name_index = draw(st.sampled_from([0, 8, 14, 31, 60]))  # 31, 60: multi-byte
    if name_index == 0:
        name = _string(draw(st.sampled_from(ANSWER_NAMES)), draw(st.booleans()))
        return bytes([kind]) + name + value
    if name_index < 15:
        return bytes([kind | name_index]) + value
    return bytes([kind | 15, name_index - 15]) + value


answer_field = st.one_of(
    literal_without_indexing(),
    st.integers(1, 70).map(lambda i: bytes([0x80 | i])),  # indexed (62+: dynamic, or bad)
    st.tuples(st.sampled_from(ANSWER_NAMES), st.sampled_from(ANSWER_VALUES)),  # by hpack
    st.binary(max_size=6),  # anything at all
)
answer_step = st.tuples(
    st.sampled_from([None, None, 0, 8, 64, 4096, 8192]),  # a table size update first
    st.lists(answer_field, max_size=6),
)


@settings(max_examples=1000, deadline=None)
@given(st.lists(answer_step, min_size=1, max_size=30), st.sampled_from([200, 1000, 65536]))
def test_the_answer_decoder_agrees_with_hpack(steps, list_limit):
    """Block by block, the short path gives what hpack's decoder gives (headers, the
    error, the dynamic table afterwards), whatever the block holds."""
    encoder = hpack.Encoder()  # fields "by hpack" index themselves: dynamic entries
    ours, theirs = _ResponseDecoder(), hpack.Decoder()
    for decoder in (ours, theirs):
        decoder.max_header_list_size = list_limit
    for size, fields in steps:
        block = b"".join(
            encoder.encode([field]) if isinstance(field, tuple) else field for field in fields
        )
        if size is not None:
            block = (bytes([0x20 | size]) if size < 31 else b"\x3f" + _int_rest(size)) + block
        results = []
        for decoder in (ours, theirs):
            try:
                results.append(("ok", [tuple(h) for h in decoder.decode(block, raw=True)]))
            except hpack.HPACKError as exc:
                results.append(("error", type(exc)))
        assert results[0] == results[1]
        assert ours.header_table.dynamic_entries == theirs.header_table.dynamic_entries
        assert ours.header_table_size == theirs.header_table_size
        if results[0][0] == "error":
            return  # h2 ends the connection at a decoding error: the state is moot


def _int_rest(value: int) -> bytes:
    rest, out = value - 31, bytearray()
    while rest >= 128:
        out.append((rest & 0x7F) | 0x80)
        rest >>= 7
    out.append(rest)
    return bytes(out)


def test_an_apns_answer_takes_the_short_path():
    """:status 200 from the static table and apns-id as a literal never indexed: no
    entry appears, and the headers are the answer's."""
    apns_id = b"eabeae54-14a8-11e5-b60b-1697f925ec7b"
    block = b"\x88" + b"\x10" + _string(b"apns-id", True) + _string(apns_id, False)
    decoder = _ResponseDecoder()
    assert decoder._short(block) == [(b":status", b"200"), (b"apns-id", apns_id)]
    assert decoder.decode(block, raw=True) == [(b":status", b"200"), (b"apns-id", apns_id)]
    assert decoder.header_table.dynamic_entries == hpack.Decoder().header_table.dynamic_entries
    assert decoder._short(b"\x40" + _string(b"a", False) + _string(b"b", False)) is None


def test_table_size_updates_and_indexing_literals_leave_the_short_path():
    """Blocks the short path must not read (they change the table) decode as hpack's."""
    indexing = b"\x40" + _string(b"apns-id", False) + _string(b"x", False)
    for block in [b"\x28\x01\x00", b"\x20\x88", b"\x3f\xe1\x1f\x88", indexing + b"\xbe"]:
        ours, theirs = _ResponseDecoder(), hpack.Decoder()
        assert ours.decode(block, raw=True) == theirs.decode(block, raw=True)
        assert ours.header_table_size == theirs.header_table_size
        assert ours.header_table.dynamic_entries == theirs.header_table.dynamic_entries
