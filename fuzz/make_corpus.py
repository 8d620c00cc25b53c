"""Write the seed corpus: a few valid (and a few typical bad) units per harness.

Run from anywhere: /tmp/venv/bin/python fuzz/make_corpus.py
Writes fuzz/corpus/{gateway,error_response,feedback,h2_response,h2_answer}/*.bin
(overwriting same names).
"""

from __future__ import annotations

from pathlib import Path

from apns_legacy.wire import (
    Command,
    Item,
    encode_enhanced,
    encode_error_response,
    encode_feedback_item,
    encode_frame,
    encode_frame_items,
    encode_item,
    encode_probe,
    encode_simple,
)

HERE = Path(__file__).resolve().parent
TOKEN = bytes(range(32))
PAYLOAD = b'{"aps":{"alert":"Hi"}}'


def gateway_seeds() -> dict[str, bytes]:
    frame = encode_frame(0x01020304, TOKEN, PAYLOAD, 0, 10)
    pushy_order = encode_frame_items(
        [
            encode_item(Item.IDENTIFIER, b"\x00\x00\x00\x07"),
            encode_item(Item.TOKEN, TOKEN),
            encode_item(Item.PAYLOAD, PAYLOAD),
            encode_item(Item.EXPIRY, b"\x00\x00\x00\x00"),
            encode_item(Item.PRIORITY, b"\x05"),
        ]
    )
    return {
        "simple": encode_simple(TOKEN, PAYLOAD),
        "enhanced": encode_enhanced(0x01020304, 0, TOKEN, PAYLOAD),
        "frame": frame,
        "frame_minimal": encode_frame(None, TOKEN, PAYLOAD, None, None),
        "frame_pushy_order": pushy_order,
        "frame_long_token": encode_frame(9, bytes(range(100)), PAYLOAD, 1, 5),
        "frame_big_payload": encode_frame(10, TOKEN, b"{" + b" " * 300 + b"}", 0, 10),
        "mixed_stream": encode_simple(TOKEN, PAYLOAD) + frame + pushy_order + frame,
        "frame_then_probe": frame + encode_probe(Command.FRAME, 8),
        "enhanced_probe": encode_probe(Command.ENHANCED, 9),
        "unknown_item": encode_frame_items(
            [encode_item(Item.TOKEN, TOKEN), encode_item(Item.PAYLOAD, PAYLOAD), b"\x09\x00\x00"]
        ),
    }


def error_response_seeds() -> dict[str, bytes]:
    return {
        "invalid_token": encode_error_response(8, 7),
        "shutdown": encode_error_response(10, 0x01020304),
        "protocol_error": encode_error_response(128, 0),
        "two": encode_error_response(1, 1) + encode_error_response(255, 0xFFFFFFFF),
        "unknown_status": encode_error_response(42, 5),
    }


def feedback_seeds() -> dict[str, bytes]:
    return {
        "one": encode_feedback_item(1300000000, TOKEN),
        "three": b"".join(encode_feedback_item(1300000000 + i, bytes([i]) * 32) for i in range(3)),
        "odd_lengths": encode_feedback_item(1, b"\xff") + encode_feedback_item(2, bytes(100)),
    }


def h2_response_seeds() -> dict[str, bytes]:
    # fuzz_h2_response.py's input: "name<TAB>value" lines, a blank line, the body.
    apns_id = b"apns-id\teabeae54-14a8-11e5-b60b-1697f925ec7b"
    return {
        "ok": b":status\t200\n" + apns_id + b"\n\n",
        "bad_token": b":status\t400\ncontent-type\tapplication/json\n"
        + apns_id
        + b'\n\n{"reason":"BadDeviceToken"}',
        "unregistered": b':status\t410\n\n{"reason":"Unregistered","timestamp":1454402113123}',
        "unknown_reason": b':status\t429\n\n{"reason":"SomethingNew"}',
        "no_status": b'apns-id\tx\n\n{"reason":"Shutdown"}',
    }


def h2_answer_seeds() -> dict[str, bytes]:
    # fuzz_h2_answer.py's input: HPACK header blocks separated by b"\xff\xfe".
    import hpack

    apns_id = b"eabeae54-14a8-11e5-b60b-1697f925ec7b"
    plain, indexing = hpack.Encoder(), hpack.Encoder()
    quiet = [
        (b":status", b"200"),
        hpack.NeverIndexedHeaderTuple(b"apns-id", apns_id),
        hpack.NeverIndexedHeaderTuple(b"apns-unique-id", apns_id),
    ]
    rejected = [(b":status", b"400"), hpack.NeverIndexedHeaderTuple(b"apns-id", apns_id)]
    literal = bytes([0x00, 7]) + b"apns-id" + bytes([len(apns_id)]) + apns_id  # no Huffman
    return {
        "ok_short_path": plain.encode(quiet, huffman=True),
        "two_answers": plain.encode(quiet) + b"\xff\xfe" + plain.encode(rejected),
        "indexing": indexing.encode([(b":status", b"200"), (b"apns-id", apns_id)])
        + b"\xff\xfe"
        + indexing.encode([(b":status", b"200"), (b"apns-id", apns_id)]),
        "literal_name": bytes([0x88]) + literal,
        "size_update": bytes([0x3F, 0xE1, 0x1F, 0x88]),
        "bad_index": bytes([0xFF, 0x80, 0x80, 0x80, 0x80, 0x01]),
    }


def main() -> None:
    for name, seeds in [
        ("gateway", gateway_seeds()),
        ("error_response", error_response_seeds()),
        ("feedback", feedback_seeds()),
        ("h2_response", h2_response_seeds()),
        ("h2_answer", h2_answer_seeds()),
    ]:
        folder = HERE / "corpus" / name
        folder.mkdir(parents=True, exist_ok=True)
        for seed_name, data in seeds.items():
            (folder / f"{seed_name}.bin").write_bytes(data)
        print(f"{folder}: {len(seeds)} seeds")


if __name__ == "__main__":
    main()
