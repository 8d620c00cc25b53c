"""A lean HTTP/2 receiver for the HTTP/2 benchmark: answers every request 200, fast.

Standard library only (``ssl``, ``socket``, ``os.fork``), in its own processes, so the
sender under test never shares an interpreter with it: the parent accepts, and each
connection is served by a forked child (one core each, as many as the machine has).
ALPN ``h2``, the test PKI's server certificate, no client certificate (token auth).

By default it does not decode HPACK: a request's end is a HEADERS, DATA or CONTINUATION frame
carrying END_STREAM (HEADERS/CONTINUATION also needing END_HEADERS), and the answer
is one pre-encoded HEADERS frame (``:status 200`` from the static table, an
``apns-id`` literal without indexing), so the receiver's dynamic table never changes.
With ``--echo-apns-id`` it decodes every header block
(``hpack``, as h2 does) and answers with the request's own ``apns-id``: aioapns matches
answers by it.
Its SETTINGS allow 1,000 concurrent streams (as APNs does), a stream window of
2^31-1 and 16 KiB frames; the connection window is opened to 2^31-1 at once and
topped up as DATA arrives. SETTINGS and PING are acknowledged; GOAWAY or EOF ends
the connection. Answers of one read go out in one write.

Protocol with the parent process: one JSON line ``{"port": N}`` on stdout when
listening; when stdin reaches EOF it waits (bounded) for its children and prints
``{"requests": total, "connections": n, "cpu_seconds": s}`` (the children's CPU time), then exits.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import ssl
import struct
import sys
import threading
from pathlib import Path

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    0x0,
    0x1,
    0x3,
    0x4,
    0x6,
    0x7,
    0x8,
    0x9,
)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
MAX_WINDOW = 2**31 - 1
APNS_ID = b"eabeae54-14a8-11e5-b60b-1697f925ec7b"
# :status 200 (static table index 8), then apns-id as a literal without indexing.
ANSWER_BLOCK = b"\x88\x00" + bytes([7]) + b"apns-id" + bytes([len(APNS_ID)]) + APNS_ID
IDLE_LIMIT = 150.0


def frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", stream_id)
        + payload
    )


def opening() -> bytes:
    settings = struct.pack(">HIHIHI", 0x3, 1000, 0x4, MAX_WINDOW, 0x5, 16_384)
    return frame(SETTINGS, 0, 0, settings) + frame(
        WINDOW_UPDATE, 0, 0, struct.pack(">I", MAX_WINDOW - 65_535)
    )


def answer(stream_id: int) -> bytes:
    return frame(HEADERS, END_STREAM | END_HEADERS, stream_id, ANSWER_BLOCK)


def answer_with(stream_id: int, apns_id: bytes) -> bytes:
    block = b"\x88\x00" + bytes([7]) + b"apns-id" + bytes([len(apns_id)]) + apns_id
    return frame(HEADERS, END_STREAM | END_HEADERS, stream_id, block)


def header_fragment(kind: int, flags: int, payload: bytes) -> bytes:
    """A HEADERS or CONTINUATION frame's header block fragment (padding, priority cut)."""
    if kind == HEADERS:
        start, end = 0, len(payload)
        if flags & PADDED:
            start, end = 1, end - payload[0]
        if flags & PRIORITY:
            start += 5
        return payload[start:end]
    return payload


def serve(connection: ssl.SSLSocket, echo: bool) -> int:
    """Serve one connection; the number of requests answered.

    ``echo``: decode every header block (hpack) and answer with the request's own
    ``apns-id``, for clients that match answers by it (aioapns does)."""
    decoder = None
    if echo:
        import hpack  # only here: the default mode needs the standard library only

        decoder = hpack.Decoder()
        decoder.max_header_list_size = 1 << 20
    fragments: dict[int, bytearray] = {}
    ids: dict[int, bytes] = {}
    unpack = struct.unpack_from
    buffer = bytearray()
    answered = 0
    consumed = 0
    pending_end: set[int] = set()  # END_STREAM seen on a HEADERS awaiting CONTINUATION
    connection.settimeout(IDLE_LIMIT)
    while len(buffer) < len(PREFACE):
        data = connection.recv(65_536)
        if not data:
            return 0
        buffer += data
    if bytes(buffer[: len(PREFACE)]) != PREFACE:
        return 0
    del buffer[: len(PREFACE)]
    connection.sendall(opening())
    while True:
        out = bytearray()
        offset = 0
        end = len(buffer)
        closing = False
        while end - offset >= 9:
            length = (buffer[offset] << 16) | (buffer[offset + 1] << 8) | buffer[offset + 2]
            kind = buffer[offset + 3]
            flags = buffer[offset + 4]
            (stream_id,) = unpack(">I", buffer, offset + 5)
            stream_id &= 0x7FFF_FFFF
            if end - offset < 9 + length:
                break
            if kind == DATA:
                consumed += length
                if flags & END_STREAM:
                    out += (
                        answer_with(stream_id, ids.pop(stream_id, APNS_ID))
                        if echo
                        else answer(stream_id)
                    )
                    answered += 1
            elif kind in (HEADERS, CONTINUATION):
                if decoder is not None:
                    payload = bytes(buffer[offset + 9 : offset + 9 + length])
                    fragments.setdefault(stream_id, bytearray()).extend(
                        header_fragment(kind, flags, payload)
                    )
                    if flags & END_HEADERS:
                        for name, value in decoder.decode(
                            bytes(fragments.pop(stream_id)), raw=True
                        ):
                            if name == b"apns-id":
                                ids[stream_id] = value
                if kind == HEADERS and flags & END_STREAM:
                    pending_end.add(stream_id)
                if flags & END_HEADERS and stream_id in pending_end:
                    pending_end.discard(stream_id)
                    out += (
                        answer_with(stream_id, ids.pop(stream_id, APNS_ID))
                        if echo
                        else answer(stream_id)
                    )
                    answered += 1
            elif kind == SETTINGS:
                if not flags & ACK:
                    out += frame(SETTINGS, ACK, 0, b"")
            elif kind == PING:
                if not flags & ACK:
                    out += frame(PING, ACK, 0, bytes(buffer[offset + 9 : offset + 9 + length]))
            elif kind == GOAWAY:
                closing = True
            offset += 9 + length
        del buffer[:offset]
        if consumed > 1 << 30:
            out += frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", consumed))
            consumed = 0
        if out:
            connection.sendall(out)
        if closing:
            return answered
        try:
            data = connection.recv(262_144)
        except (OSError, TimeoutError):
            return answered
        if not data:
            return answered
        buffer += data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--pki", type=Path, required=True, help="a folder with server.pem, server-key.pem"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--echo-apns-id",
        action="store_true",
        help="decode header blocks and answer with the request's apns-id (needs hpack)",
    )
    args = parser.parse_args()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.pki / "server.pem", args.pki / "server-key.pem")
    context.set_alpn_protocols(["h2"])
    listener = socket.create_server((args.host, 0), backlog=128)
    print(json.dumps({"port": listener.getsockname()[1]}), flush=True)
    results_read, results_write = os.pipe()
    children: list[int] = []
    stop = threading.Event()

    def wait_for_stdin() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=wait_for_stdin, daemon=True).start()
    listener.settimeout(0.2)
    while not stop.is_set():
        try:
            raw, _ = listener.accept()
        except TimeoutError:
            continue
        except OSError:
            break
        raw.settimeout(None)
        pid = os.fork()
        if pid == 0:  # the child: serve this connection, report, exit
            listener.close()
            count = 0
            try:
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with context.wrap_socket(raw, server_side=True) as connection:
                    count = serve(connection, args.echo_apns_id)
            except (OSError, ssl.SSLError):
                pass
            os.write(results_write, f"{count}\n".encode())
            os._exit(0)
        raw.close()
        children.append(pid)
    os.close(results_write)
    for pid in children:
        os.waitpid(pid, 0)
    counts = [int(line) for line in os.read(results_read, 1 << 20).split()]
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        json.dumps(
            {
                "requests": sum(counts),
                "connections": len(counts),
                "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
