"""The HTTP/2 sender's memoizing HPACK encoder: every block decodes to what was encoded.

The encoder memoizes header encodings that depend on the dynamic table; the property
below drives it through sequences of requests drawn from a small pool (so that headers
repeat, get indexed, are evicted by small tables) with table size changes in between,
and decodes every block with hpack's own decoder, which must always agree.
"""

from __future__ import annotations

import hpack
from hypothesis import given, settings
from hypothesis import strategies as st

from apns_legacy.client._h2sender import _RequestEncoder

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
