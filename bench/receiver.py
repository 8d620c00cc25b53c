"""A lean TLS receiver for the benchmark: counts fixed-size frames, answers the probe.

Runs in its own process and imports only the standard library (``ssl``, ``socket``,
``threading``), so the sender under test never shares a core or an interpreter
with it. Like Apple's gateway it negotiates at most TLS 1.2, presents the server
certificate of the test PKI and requires a client certificate issued by its CA.

It does not parse notifications. Every frame of a benchmark run has the same size
(learnt from the first frame's header, or ``--frame-size``), so it only counts
bytes, reading up to 256 KiB at a time, and at the end of each read looks at the
header of the frame that read ended in: a normal frame header is fine. The
confirmation probe (``encode_probe``: a command-2 frame with a zero-length token,
31 bytes, header ``02 0000001a``) is always the last thing a connection writes, so
once the bytes since the last frame boundary are exactly that probe, it answers
``08 02 00000000`` (missing device token, identifier 0, as the real gateway did),
sends close_notify and closes. A connection that ends without a probe (EOF) is
counted too. Anything else at a frame boundary means the stream is not what the
benchmark wrote, and the connection is recorded as bad.

Protocol with the parent process: one JSON line on stdout when listening
(``{"port": N}``); when stdin reaches EOF it waits (bounded) for open connections
to end and prints one JSON line ``{"connections": [...]}``, then exits.
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import sys
import threading
import time
from pathlib import Path
from typing import Any

READ_SIZE = 262_144
PROBE_SIZE = 31
PROBE_HEAD = b"\x02\x00\x00\x00\x1a"
ANSWER = b"\x08\x02\x00\x00\x00\x00"
# A connection silent this long is abandoned (so the receiver never hangs).
IDLE_LIMIT = 150.0


def server_context(pki: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.maximum_version = ssl.TLSVersion.TLSv1_2  # the legacy gateway's ceiling
    context.load_cert_chain(pki / "server.pem", pki / "server-key.pem")
    context.load_verify_locations(pki / "ca.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    return context


class Counter:
    """One connection: bytes and frames counted, probe seen.

    The frame size is learnt from the first frame's header (all frames of a run have
    the same size) unless given.
    """

    def __init__(self, frame_size: int | None) -> None:
        self.frame_size = 0
        self.frame_head = b""
        if frame_size:
            self._learn(frame_size)
        self.total = 0
        self.tail = b""  # the last frame_size bytes received
        self.probe = False
        self.bad: str | None = None

    def _learn(self, frame_size: int) -> None:
        self.frame_size = frame_size
        self.frame_head = b"\x02" + (frame_size - 5).to_bytes(4, "big")

    def feed(self, data: memoryview) -> bool:
        """Count ``data``; True once the stream ends with a complete probe."""
        if not self.frame_size:
            self.tail += bytes(data)
            self.total += len(data)
            if len(self.tail) < 5:
                return False
            if self.tail[0] != 2 or self.tail.startswith(PROBE_HEAD):
                self.bad = f"the stream starts with {self.tail[:5].hex()}, not a benchmark frame"
                return False
            self._learn(5 + int.from_bytes(self.tail[1:5], "big"))
            data, self.total, self.tail = memoryview(self.tail), 0, b""
        n = len(data)
        self.total += n
        rem = self.total % self.frame_size
        if rem:
            # The bytes since the last frame boundary (the boundary may be in an
            # earlier read; ``tail`` keeps enough of it).
            since = bytes(data[n - rem :]) if rem <= n else self.tail[n - rem :] + bytes(data)
            head = since[:5]
            if head == PROBE_HEAD[: len(head)]:
                if rem == PROBE_SIZE:
                    self.probe = True
                    return True
                if rem > PROBE_SIZE:
                    self.bad = f"bytes after the probe (offset {self.total})"
            elif head != self.frame_head[: len(head)]:
                self.bad = f"unexpected frame header {head.hex()} near offset {self.total - rem}"
        if n >= self.frame_size:
            self.tail = bytes(data[n - self.frame_size :])
        else:
            self.tail = (self.tail + bytes(data))[-self.frame_size :]
        return False

    @property
    def frames(self) -> int:
        if not self.frame_size:
            return 0
        return (self.total - PROBE_SIZE if self.probe else self.total) // self.frame_size


def serve_connection(
    raw: socket.socket,
    context: ssl.SSLContext,
    frame_size: int | None,
    records: list[dict[str, Any]],
) -> None:
    record: dict[str, Any] = {"frames": 0, "bytes": 0, "probe": False, "error": None}
    counter = Counter(frame_size)
    first: float | None = None
    last: float | None = None
    try:
        raw.settimeout(IDLE_LIMIT)
        connection = context.wrap_socket(raw, server_side=True)
        record["tls"] = connection.version()
        buffer = bytearray(READ_SIZE)
        view = memoryview(buffer)
        recv_into = connection.recv_into
        while True:
            try:
                n = recv_into(buffer, READ_SIZE)
            except ssl.SSLZeroReturnError:
                n = 0
            if not n:
                break
            last = time.perf_counter()
            if first is None:
                first = last
            if counter.feed(view[:n]):
                connection.sendall(ANSWER)
                break
            if counter.bad:
                break
        try:
            # Send close_notify without waiting for the peer's (the sender may be gone).
            connection.setblocking(False)
            connection.unwrap()
        except (ssl.SSLError, OSError):
            pass
        connection.close()
    except (ssl.SSLError, OSError) as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        raw.close()
    record.update(
        frame_size=counter.frame_size,
        frames=counter.frames,
        bytes=counter.total,
        probe=counter.probe,
        seconds=(last - first) if first is not None and last is not None else 0.0,
    )
    if counter.bad:
        record["error"] = counter.bad
    records.append(record)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pki", type=Path, required=True, help="directory of TestPKI.write")
    parser.add_argument(
        "--frame-size", type=int, default=0, help="bytes per frame (default: learn it)"
    )
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    context = server_context(args.pki)
    listener = socket.create_server(("127.0.0.1", args.port), backlog=64)
    listener.settimeout(0.2)
    records: list[dict[str, Any]] = []
    threads: list[threading.Thread] = []
    stop = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    print(json.dumps({"port": listener.getsockname()[1]}), flush=True)
    while not stop.is_set():
        try:
            raw, _ = listener.accept()
        except TimeoutError:
            continue
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        thread = threading.Thread(
            target=serve_connection, args=(raw, context, args.frame_size, records), daemon=True
        )
        thread.start()
        threads.append(thread)
    listener.close()
    deadline = time.monotonic() + 10.0
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    open_count = sum(thread.is_alive() for thread in threads)
    print(json.dumps({"connections": list(records), "still_open": open_count}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
