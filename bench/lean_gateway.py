"""A lean legacy gateway for bench/latency.py: the sender measured, not our simulator.

Runs in its own process and imports only the standard library (``ssl``, ``socket``,
``select``, ``threading``). Like Apple's gateway (and ``bench/receiver.py``) it
negotiates at most TLS 1.2, presents the server certificate of the test PKI and requires
a client certificate issued by its CA. Each connection has one thread.

What it does with the stream. It parses command-2 frames just enough: the frame header,
each item's header, the token item (1) and the identifier item (3); the payload, expiry
and priority are skipped, not checked. For each frame, in order:

* no token or a zero-length one (the confirmation probe, ``encode_probe``): answers
  ``08 02 00000000`` (missing device token, identifier 0 wherever the identifier item
  sits, as Apple's gateway, the simulator and ``bench/receiver.py`` do) and closes;
* a token in the invalid set (``--invalid-file``): answers ``08 08 <identifier>``
  (invalid token) and closes;
* anything else is accepted: counted per token.

Any other command byte, or items that do not add up to the frame's length, closes
without a word (Apple's "zero bytes back"), recorded as a protocol error. After the bad
frame nothing more is parsed: the rest of that read and everything after it is
discarded. The close is the simulator's default (``ErrorClose.RESET_IF_UNREAD``): if the
client's bytes wait unread (queued in the delay line or in the socket) it is a TCP reset
(no close_notify; ``SO_LINGER`` 0 once the error frame has left the socket), otherwise
close_notify and a plain close, which the kernel still turns into a reset if the client
wrote more in the meantime. A client's close_notify or EOF is answered with
close_notify and a close.

Latency (``--delay SECONDS``, one way): delays inside the server, placed below TLS as
the simulator's ``Fault.latency`` (``apns_legacy/simulator/_latency.py``) places its
``LatencyStream``. TLS runs on an ``ssl.SSLObject`` over memory BIOs; the raw bytes
between the socket and the BIOs pass through two delay lines:

* in: the socket is read as soon as bytes arrive (up to 256 KiB a read); each chunk is
  stamped ``arrival + delay`` and fed to TLS at that time, in order. The client's EOF
  or reset is queued the same way and seen that much later.
* out: whatever TLS produces (handshake flights, the error frame, close_notify) is
  stamped ``now + delay`` and written to the socket at that time, in order. The close
  is queued behind the data as an end marker and done ``delay`` after the gateway
  decided it; a graceful close with client bytes queued unread becomes a reset then.
* at most 1 MiB waits in the in direction (the simulator's window): past it the socket
  is not read, so the client's writes block as on a full TCP window.

So the handshake, every record, the error frame and the close or reset are all delayed
as in the simulator. Differences: timing comes from ``select`` in a thread per
connection rather than trio's clock (both wake within a fraction of a millisecond), the
delay line coalesces what is due when the thread wakes (the simulator's pump does the
same), TLS is OpenSSL through the standard library rather than pyOpenSSL, and nothing
is validated beyond the above (the simulator's decoder checks payload size, token
length, expiry and priority). Per rejection the simulator spends milliseconds of Python
(its decoder, its latency pumps, TLS in pyOpenSSL); this gateway spends the frame loop
below and a few calls into OpenSSL.

Protocol with the parent process: one JSON line on stdout when listening
(``{"port": N}``); when stdin reaches EOF (or ``--for`` seconds have passed) it stops
accepting, waits (at most 10 s) for open connections to end and prints one JSON line:
``accepted`` (frames accepted in all), ``tokens`` (hex token to times accepted),
``errors`` (``[status, identifier, hex token]`` per error frame written),
``connections``, ``resets``, ``protocol_errors``, ``problems``, ``still_open`` and
``cpu_seconds`` (the process's CPU time since it was ready); then it exits.
"""

from __future__ import annotations

import argparse
import collections
import json
import select
import socket
import ssl
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

READ_SIZE = 262_144
WINDOW = 1 << 20  # most client bytes waiting in the in-direction delay line
IDLE_LIMIT = 150.0  # a connection silent this long is closed
FLUSH_LIMIT = 1.0  # longest a reset waits for written bytes to leave the socket
MAX_FRAME = 1 << 16  # a larger frame length is taken as garbage
GRACEFUL = "graceful"
RESET = "reset"
GONE = "gone"  # the client reset: just close
# TCP_NOTSENT_LOWAT (Linux 25): the socket is writable only once nothing is left unsent.
NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)
_LINGER_ZERO = struct.pack("ii", 1, 0)


def server_context(pki: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.maximum_version = ssl.TLSVersion.TLSv1_2  # the legacy gateway's ceiling
    context.load_cert_chain(pki / "server.pem", pki / "server-key.pem")
    context.load_verify_locations(pki / "ca.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def unread_bytes(sock: socket.socket) -> int:
    """Bytes in the socket's receive queue (FIONREAD); 0 where unknown."""
    try:
        import fcntl
        import termios

        answer = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except (ImportError, OSError):
        return 0
    return int(struct.unpack("i", answer)[0])


class Record:
    """What the gateway accepted and answered, over all connections (under a lock)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tokens: collections.Counter[bytes] = collections.Counter()
        self.errors: list[tuple[int, int, str]] = []
        self.connections = 0
        self.resets = 0
        self.protocol_errors = 0
        self.problems: list[str] = []

    def to_json(self, still_open: int, cpu_seconds: float) -> dict[str, Any]:
        with self.lock:
            return {
                "cpu_seconds": round(cpu_seconds, 3),
                "accepted": sum(self.tokens.values()),
                "tokens": {token.hex(): count for token, count in self.tokens.items()},
                "errors": list(self.errors),
                "connections": self.connections,
                "resets": self.resets,
                "protocol_errors": self.protocol_errors,
                "problems": list(self.problems),
                "still_open": still_open,
            }


class Connection:
    """One gateway connection: socket, delay lines, TLS over memory BIOs, frame loop."""

    def __init__(
        self,
        sock: socket.socket,
        context: ssl.SSLContext,
        delay: float,
        invalid: frozenset[bytes],
        record: Record,
        deadline: float,
    ) -> None:
        self.sock = sock
        self.delay = delay
        self.invalid = invalid
        self.record = record
        self.deadline = deadline
        self.into_tls = ssl.MemoryBIO()
        self.from_tls = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.into_tls, self.from_tls, server_side=True)
        self.handshaken = False
        # In: (due, bytes | None for EOF | the error that ended the client's side).
        self.incoming: collections.deque[tuple[float, bytes | OSError | None]] = collections.deque()
        self.incoming_bytes = 0
        self.reading = True  # the socket is still read (no EOF, error or close yet)
        self.open = True  # the gateway still reads the client's stream
        # Out: (due, bytes | an end marker: GRACEFUL, RESET or GONE).
        self.outgoing: collections.deque[tuple[float, bytes | str]] = collections.deque()
        self.unsent = b""  # due bytes the socket has not taken yet
        self.broken = False  # a write failed: the client is gone
        self.buffer = bytearray()
        self.tokens: collections.Counter[bytes] = collections.Counter()

    # -- the loop --------------------------------------------------------------------

    def run(self) -> None:
        sock = self.sock
        try:
            sock.setblocking(False)
            last_activity = time.monotonic()
            while True:
                now = time.monotonic()
                if now > self.deadline or now - last_activity > IDLE_LIMIT:
                    self._problem("deadline" if now > self.deadline else "idle limit")
                    return
                if self.open:
                    self._deliver(now)
                if self._send_due(now):
                    return  # the end marker came: the connection is closed
                wait = self._next_due(now)
                readers = [sock] if self.reading and self.incoming_bytes < WINDOW else []
                writers = [sock] if self.unsent else []
                if not readers and not writers and wait is None:
                    return  # nothing can happen any more
                timeout = IDLE_LIMIT if wait is None else wait
                readable, _, _ = select.select(readers, writers, [], timeout)
                if readable:
                    last_activity = time.monotonic()
                    self._read_socket(last_activity)
        except Exception as exc:  # a bug: report it, never hang the bench
            self._problem(f"{type(exc).__name__}: {exc}")
        finally:
            sock.close()
            with self.record.lock:
                self.record.tokens.update(self.tokens)

    def _next_due(self, now: float) -> float | None:
        dues = []
        if self.open and self.incoming:
            dues.append(self.incoming[0][0])
        if self.outgoing and not self.unsent:
            dues.append(self.outgoing[0][0])
        return max(0.0, min(dues) - now) if dues else None

    def _read_socket(self, now: float) -> None:
        item: bytes | OSError | None
        try:
            data = self.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            item = exc
        else:
            item = data or None
        if item is None or isinstance(item, OSError):
            self.reading = False
        else:
            self.incoming_bytes += len(item)
        self.incoming.append((now + self.delay, item))

    def _deliver(self, now: float) -> None:
        """Hand due client bytes to TLS, then run the handshake and the frame loop."""
        fed = False
        while self.open and self.incoming and self.incoming[0][0] <= now:
            _, item = self.incoming.popleft()
            if isinstance(item, bytes):
                self.incoming_bytes -= len(item)
                self.into_tls.write(item)
            elif item is None:
                self.into_tls.write_eof()
            else:  # the client reset: nothing more to say or wait for
                self.open = False
                self.outgoing.clear()
                self.unsent = b""
                self.outgoing.append((now, GONE))
                return
            fed = True
        if fed:
            self._process()
        self._stamp(now)

    def _stamp(self, now: float) -> None:
        out = self.from_tls.read()
        if out:
            self.outgoing.append((now + self.delay, out))

    def _send_due(self, now: float) -> bool:
        """Write what is due, in order; True once the connection has been closed."""
        while True:
            if self.unsent:
                if self.broken:
                    self.unsent = b""
                    continue
                try:
                    sent = self.sock.send(self.unsent)
                except (BlockingIOError, InterruptedError):
                    return False
                except OSError:
                    self.broken = True
                    continue
                self.unsent = self.unsent[sent:]
                if self.unsent:
                    return False
            if not self.outgoing or self.outgoing[0][0] > now:
                return False
            _, head = self.outgoing.popleft()
            if isinstance(head, bytes):
                chunk = [head]
                while self.outgoing and self.outgoing[0][0] <= now:
                    item = self.outgoing[0][1]
                    if not isinstance(item, bytes):
                        break
                    self.outgoing.popleft()
                    chunk.append(item)
                self.unsent = b"".join(chunk)
                continue
            self._close(head)
            return True

    def _close(self, mode: str) -> None:
        if mode == GONE:
            self.sock.close()
            return
        if mode == GRACEFUL and self.incoming_bytes:
            mode = RESET  # client bytes arrived that the gateway never read
        if mode == RESET:
            with self.record.lock:
                self.record.resets += 1
            try:
                self.sock.setsockopt(socket.IPPROTO_TCP, NOTSENT_LOWAT, 1)
                select.select([], [self.sock], [], FLUSH_LIMIT)
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
            except OSError:
                pass
        self.sock.close()

    # -- TLS and frames --------------------------------------------------------------

    def _process(self) -> None:
        tls = self.tls
        if not self.handshaken:
            try:
                tls.do_handshake()
            except ssl.SSLWantReadError:
                return
            except (ssl.SSLError, OSError) as exc:
                self._problem(f"handshake: {exc}")
                self._finish(GRACEFUL)
                return
            self.handshaken = True
            with self.record.lock:
                self.record.connections += 1
        while self.open:
            try:
                data = tls.read(READ_SIZE)
            except ssl.SSLWantReadError:
                return
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                data = b""
            except ssl.SSLError as exc:
                self._problem(f"TLS: {exc}")
                self._finish(RESET)
                return
            if not data:
                self._finish(GRACEFUL)  # the client closed: close_notify and close
                return
            self.buffer += data
            self._frames()

    def _frames(self) -> None:
        buf = self.buffer
        size = len(buf)
        pos = 0
        invalid = self.invalid
        tokens = self.tokens
        while size - pos >= 5:
            if buf[pos] != 2:
                self._protocol_error(f"command byte {buf[pos]} at a frame boundary")
                return
            end = pos + 5 + int.from_bytes(buf[pos + 1 : pos + 5], "big")
            if end - pos > MAX_FRAME:
                self._protocol_error(f"frame length {end - pos - 5}")
                return
            if end > size:
                break
            token = b""
            identifier = 0
            i = pos + 5
            while i + 3 <= end:
                item = buf[i]
                start = i + 3
                i = start + (buf[i + 1] << 8 | buf[i + 2])
                if item == 1:
                    token = bytes(buf[start:i])
                elif item == 3:
                    identifier = int.from_bytes(buf[start:i], "big")
            if i != end:
                self._protocol_error("items do not add up to the frame length")
                return
            pos = end
            if not token:
                self._answer(2, 0, token)  # identifier 0, as Apple's gateway did
                return
            if token in invalid:
                self._answer(8, identifier, token)
                return
            tokens[token] += 1
        del buf[:pos]

    def _answer(self, status: int, identifier: int, token: bytes) -> None:
        """The error frame in one write, then the close (Apple's way)."""
        self.tls.write(bytes((8, status)) + identifier.to_bytes(4, "big"))
        with self.record.lock:
            self.record.errors.append((status, identifier, token.hex()))
        self._finish(GRACEFUL)

    def _protocol_error(self, what: str) -> None:
        with self.record.lock:
            self.record.protocol_errors += 1
            self.record.problems.append(f"protocol error: {what}")
        self._finish(GRACEFUL)

    def _finish(self, mode: str) -> None:
        """Stop reading the client's stream; queue the close behind what TLS wrote."""
        self.open = False
        self.buffer.clear()
        if mode == GRACEFUL and self.incoming_bytes + unread_bytes(self.sock):
            mode = RESET  # the client kept writing: no close_notify, a reset
        if mode == GRACEFUL:
            try:
                self.tls.unwrap()  # close_notify (not waiting for the client's)
            except (ssl.SSLError, OSError):
                pass
        now = time.monotonic()
        self._stamp(now)
        self.outgoing.append((now + self.delay, mode))

    def _problem(self, what: str) -> None:
        with self.record.lock:
            self.record.problems.append(what)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pki", type=Path, required=True, help="directory of TestPKI.write")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0, help="one-way delay in seconds")
    parser.add_argument(
        "--invalid-file", type=Path, help="invalid tokens, one in hex a line (status 8)"
    )
    parser.add_argument(
        "--for", dest="lifetime", type=float, default=600.0, help="seconds to run at most"
    )
    args = parser.parse_args(argv)
    if not 0 <= args.delay <= 10:
        parser.error(f"--delay must be 0 to 10 seconds, not {args.delay}")
    invalid = frozenset(
        bytes.fromhex(line.strip())
        for line in (args.invalid_file.read_text().splitlines() if args.invalid_file else [])
        if line.strip()
    )
    context = server_context(args.pki)
    deadline = time.monotonic() + args.lifetime
    listener = socket.create_server(("127.0.0.1", args.port), backlog=128)
    listener.settimeout(0.2)
    record = Record()
    threads: list[threading.Thread] = []
    stop = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    cpu_start = time.process_time()
    print(json.dumps({"port": listener.getsockname()[1]}), flush=True)
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            raw, _ = listener.accept()
        except TimeoutError:
            continue
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = Connection(raw, context, args.delay, invalid, record, deadline + 10.0)
        thread = threading.Thread(target=connection.run, daemon=True)
        thread.start()
        threads.append(thread)
    listener.close()
    until = time.monotonic() + 10.0
    for thread in threads:
        thread.join(max(0.0, until - time.monotonic()))
    still_open = sum(thread.is_alive() for thread in threads)
    print(json.dumps(record.to_json(still_open, time.process_time() - cpu_start)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
