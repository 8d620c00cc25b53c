"""atheris harness for the HTTP/2 sender's answer decoder (``_ResponseDecoder``).

The sender decodes APNs answers' header blocks with a short path of its own and hands
anything else to hpack's decoder. This harness is differential: the input is a series
of header blocks (separated by ``\\xff\\xfe``), decoded in order by ours and by a plain
``hpack.Decoder``; each block must give the same headers, or both must raise an
``hpack.HPACKError`` of the same type, and the two dynamic tables must stay equal.

Run: .venv/bin/python fuzz/fuzz_h2_answer.py -atheris_runs=200000 \
    [WORK_DIR fuzz/corpus/h2_answer]
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["apns_legacy.client._h2sender"]):
    import hpack

    from apns_legacy.client._h2sender import _ResponseDecoder

SEPARATOR = b"\xff\xfe"


def decode(decoder: hpack.Decoder, block: bytes) -> object:
    try:
        return decoder.decode(block, raw=True)
    except hpack.HPACKError as exc:
        return type(exc)


def TestOneInput(data: bytes) -> None:
    ours, theirs = _ResponseDecoder(), hpack.Decoder()
    for block in data.split(SEPARATOR):
        mine, reference = decode(ours, block), decode(theirs, block)
        assert mine == reference, (block, mine, reference)
        if isinstance(reference, type):
            return  # a connection error: the peer's decoder state no longer matters
        assert list(ours.header_table.dynamic_entries) == list(
            theirs.header_table.dynamic_entries
        ), block


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
