"""``send --input``: the input lines parsed in a second process, beside the sending one.

Parsing a JSON line (``_send_input``) costs about as much CPU as sending it, so on a
machine with a second core a large input goes faster when another process parses it:
the worker reads the input (its standard input is the ``--input`` file or pipe),
splits and parses the lines exactly as the sending process would (the same
``LineSplitter`` and ``parse_lines``: the same notifications, the same messages for bad
lines, the same line numbers), and writes them to its standard output as messages the
sending process turns back into notifications.

A message is a 4-byte big-endian length and a msgpack array ``[bytes_read, rows,
end]``: ``rows`` are, in input order, ``[number, token, payload, expiry, priority]``
for a notification, ``[number, message]`` for a bad line and ``[number, null]`` for a
blank one; ``end`` is false while more is coming, true on the message after the end of
the input, and the reason if the input could not be read further (an ``OSError``).
A worker that ends without such a last message (killed, or a bug) is reported by the
sending process with its exit code. Either way the sending process stops the input
there and says where to resume: nothing is taken for sent that was not.

The worker runs in a session of its own, so the terminal's Ctrl-C reaches only the
sending process, which stops reading and kills the worker (it ends too, with a broken
pipe, if the sending process is gone). It imports no trio, no OpenSSL and no sender.
"""

from __future__ import annotations

import gc
import json
import os
import struct
import sys
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any, Final

import msgspec

from ..wire import Notification
from ..wire._events import notification_from
from ._send_input import (
    READ_SIZE,
    InputFailed,
    LineSplitter,
    ParsedChunk,
    Plan,
    cannot_read,
    parse_lines,
)

#: The length prefix of a message.
_LENGTH: Final = struct.Struct(">I")
#: Bytes per read of the input in the worker (several chunks' worth of lines a message).
WORKER_READ_SIZE: Final = 4 * READ_SIZE
#: The folder this apns_legacy is in: first on the worker's path, so that it runs this
#: very code (a checkout, or another version on PYTHONPATH, as bench/run.py --at does).
_PACKAGE_ROOT: Final = str(Path(__file__).resolve().parents[2])
#: Distinct payloads shared between notifications (as _send_input does), at most.
_SHARED_PAYLOADS: Final = 1024
#: The pipe's size asked for, and the most read from it at once.
_PIPE_SIZE: Final = 1 << 20


def _plan_settings(plan: Plan) -> str:
    return json.dumps(
        {
            "payload": None if plan.payload is None else plan.payload.hex(),
            "expiry": plan.expiry,
            "priority": plan.priority,
            "payload_limit": plan.payload_limit,
            "allow_long_tokens": plan.allow_long_tokens,
        }
    )


def _plan_from(settings: str) -> Plan:
    values = json.loads(settings)
    payload = values["payload"]
    return Plan(
        config=None,  # type: ignore[arg-type]  # the two limits below are given
        payload=None if payload is None else bytes.fromhex(payload),
        expiry=values["expiry"],
        priority=values["priority"],
        tokens=(),
        strict=False,
        payload_limit=values["payload_limit"],
        allow_long_tokens=values["allow_long_tokens"],
    )


def _row(number: int, item: Notification | str | None) -> tuple[Any, ...]:
    if type(item) is Notification:
        return (number, item.token.value, item.payload, item.expiry, item.priority)
    return (number, item)


def worker_main(settings: str) -> int:
    """The worker: standard input in, messages out; 0 at the end of the input."""
    # Collect young objects less often, as bulk_gc (client/_gc.py) does for the
    # sending process (importing it from there would import the sender): a chunk's
    # objects form no cycles and are gone after its message is written.
    gc.set_threshold(50_000, 20, 20)
    plan = _plan_from(settings)
    encode = msgspec.msgpack.Encoder().encode
    splitter = LineSplitter()
    bytes_read = 0
    while True:
        end: bool | str
        try:
            chunk = os.read(0, WORKER_READ_SIZE)
        except OSError as exc:
            # A line cut short by the failure is not a line: nothing more is parsed.
            rows, end = [], cannot_read(exc)
        else:
            bytes_read += len(chunk)
            lines = splitter.feed(chunk) if chunk else splitter.finish()
            rows = [_row(number, item) for number, item in parse_lines(lines, plan)]
            end = not chunk
        body = encode((bytes_read, rows, end))
        try:
            _write_all(_LENGTH.pack(len(body)) + body)
        except BrokenPipeError:  # the sending process is gone: nothing to do
            return 0
        if end:
            return 0


def _write_all(data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(1, view) :]


async def worker_chunks(source: int, plan: Plan) -> AsyncGenerator[ParsedChunk, None]:
    """The parsed input of ``source`` (a file descriptor), chunk by chunk, from a worker.

    Raises:
        InputFailed: the input could not be read to its end, or the worker ended
            before it (the chunks yielded before that were whole and in order).
    """
    import trio  # the sending process has it already; the worker never gets here

    paths = [_PACKAGE_ROOT, *filter(None, [os.environ.get("PYTHONPATH")])]
    reading, writing = os.pipe()
    _widen_pipe(writing)
    try:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "apns_legacy.cli._send_worker", _plan_settings(plan)],
            stdin=source,
            stdout=writing,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)},
            start_new_session=True,  # no Ctrl-C from the terminal: the sender decides
        )
    except BaseException:
        os.close(reading)
        raise
    finally:
        os.close(writing)  # the worker has its own copy: its exit ends the stream
    messages = trio.lowlevel.FdStream(reading)  # owns the descriptor from here on
    decode = msgspec.msgpack.Decoder().decode
    shared: dict[bytes, bytes] = {}
    buffer = bytearray()
    finished = False
    try:
        while not finished:
            data = await messages.receive_some(_PIPE_SIZE)
            if not data:
                break
            buffer += data
            start = 0
            while not finished and len(buffer) - start >= _LENGTH.size:
                (size,) = _LENGTH.unpack_from(buffer, start)
                end = start + _LENGTH.size + size
                if len(buffer) < end:
                    break
                bytes_read, rows, finished = decode(memoryview(buffer)[start + _LENGTH.size : end])
                start = end
                if len(shared) > _SHARED_PAYLOADS:
                    shared.clear()
                yield bytes_read, _items(rows, shared)
                if type(finished) is str:
                    raise InputFailed(finished)
            del buffer[:start]
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True):
            code = await process.wait()
            await messages.aclose()
    if not finished:
        raise InputFailed(f"the process reading it ended before its end (exit code {code})")


def _items(
    rows: list[list[Any]], shared: dict[bytes, bytes]
) -> list[tuple[int, Notification | str | None]]:
    # The values are checked again as they become a DeviceToken and a Notification
    # (notification_from: the constructors' checks, for less): the worker is not
    # trusted to have done it. Lines with the same payload share one bytes object, as
    # when parsed in place.
    share = shared.setdefault
    return [
        (row[0], row[1])
        if len(row) == 2
        else (row[0], notification_from(row[1], share(row[2], row[2]), row[3], row[4]))
        for row in rows
    ]


def _widen_pipe(descriptor: int) -> None:
    # A pipe holds 64 KiB by default: a message is several times that, and each read
    # would return a sixteenth of what it asks for. Best effort (Linux only).
    try:
        import fcntl

        fcntl.fcntl(descriptor, getattr(fcntl, "F_SETPIPE_SZ", 1031), _PIPE_SIZE)
    except (ImportError, OSError):  # not on Linux, or not allowed
        pass


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1]))
