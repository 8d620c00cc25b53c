"""Helpers shared by the tests.

Wire part: drive the sans-IO decoders over chunked input and run every reader three
ways, as h11's ``tr()`` does (the whole buffer, one byte at a time, and with trailing
bytes of an unfinished next unit).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Protocol

import pytest
import trio
import trio.testing
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from apns_legacy.simulator import Simulator
from apns_legacy.simulator._latency import open_latency_stream
from apns_legacy.tls import Environment, TLSStream
from apns_legacy.wire import (
    NEED_DATA,
    BadNotification,
    ConnectionClosed,
    RemoteProtocolError,
)

# -- wire ------------------------------------------------------------------------------


class Decoder(Protocol):
    """What the three wire decoders have in common."""

    @property
    def buffered(self) -> int: ...

    def receive_data(self, data: bytes) -> None: ...

    def receive_eof(self) -> None: ...

    def next_event(self) -> object: ...


def unhex(text: str) -> bytes:
    """Bytes from hex as PROTOCOL.md prints it: spaces and ``|`` are ignored."""
    return bytes.fromhex(text.replace("|", " "))


def is_final(event: object) -> bool:
    """After these events a decoder yields nothing more worth asking for."""
    return isinstance(event, ConnectionClosed | BadNotification)


def drain(decoder: Decoder) -> list[object]:
    """Every event ready now; stops at NEED_DATA or at a final event."""
    events: list[object] = []
    while True:
        event = decoder.next_event()
        if event is NEED_DATA:
            return events
        events.append(event)
        if is_final(event):
            return events


def decode(decoder: Decoder, chunks: Sequence[bytes], *, eof: bool = True) -> list[object]:
    """Feed ``chunks`` one by one, draining after each, then EOF (unless ``eof=False``)."""
    events: list[object] = []
    for chunk in chunks:
        decoder.receive_data(chunk)
        events += drain(decoder)
        if events and is_final(events[-1]):
            return events
    if eof:
        decoder.receive_eof()
        events += drain(decoder)
    return events


def bytewise(data: bytes) -> list[bytes]:
    """``data`` as one-byte chunks."""
    return [data[i : i + 1] for i in range(len(data))]


def split_at(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    """``data`` cut at the given offsets (any order, duplicates allowed)."""
    points = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points)]


def tr(
    make_decoder: Callable[[], Decoder],
    data: bytes,
    expected: list[object],
    *,
    trailing: bytes,
) -> None:
    """Run a reader three ways; each must give ``expected`` (h11's ``tr()``).

    ``expected`` are the events for ``data`` followed by EOF, so it ends with
    :class:`ConnectionClosed` or a :class:`BadNotification`. ``trailing`` is the start of
    a next unit that is not complete: in the third run it must be left buffered, and an
    EOF after it is a :class:`RemoteProtocolError`.
    """
    assert decode(make_decoder(), [data]) == expected, "whole buffer"
    assert decode(make_decoder(), bytewise(data)) == expected, "byte by byte"

    decoder = make_decoder()
    decoder.receive_data(data + trailing)
    events = drain(decoder)
    if expected and isinstance(expected[-1], ConnectionClosed):
        assert events == expected[:-1], "with trailing bytes"
        assert decoder.buffered == len(trailing)
        decoder.receive_eof()
        with pytest.raises(RemoteProtocolError):
            drain(decoder)
    else:
        # A bad notification ends the stream: what follows it is never parsed.
        assert events == expected, "with trailing bytes"


def tr_raises(make_decoder: Callable[[], Decoder], data: bytes, match: str) -> None:
    """``data`` then EOF raises :class:`RemoteProtocolError`, whole and byte by byte."""
    for chunks in ([data], bytewise(data)):
        with pytest.raises(RemoteProtocolError, match=match):
            decode(make_decoder(), chunks)


def rejection(make_decoder: Callable[[], Decoder], data: bytes) -> BadNotification:
    """The :class:`BadNotification` that ``data`` gives, the same all three ways."""
    events = decode(make_decoder(), [data])
    assert events, "no event at all"
    bad = events[-1]
    assert isinstance(bad, BadNotification), events
    tr(make_decoder, data, events, trailing=b"\x01\x00")
    return bad


# -- TLS servers on loopback -------------------------------------------------------------


async def echo_upper(stream):
    while data := await stream.receive_some():
        await stream.send_all(data.upper())


@asynccontextmanager
async def tls_server(context, handler=echo_upper):
    """Serve on 127.0.0.1:0; yields (port, channel of per-connection outcomes).

    An outcome is ("ok", peer certificate) or ("error", exception).
    """
    send, receive = trio.open_memory_channel(100)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]

    async def handle(tcp):
        stream = TLSStream(tcp, context, server_side=True)
        try:
            await stream.do_handshake()
            await handler(stream)
        except trio.BrokenResourceError as exc:
            await send.send(("error", exc))
        else:
            await send.send(("ok", stream.peer_certificate))
        finally:
            await stream.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handle, listeners)
        yield port, receive
        nursery.cancel_scope.cancel()


# -- command line ------------------------------------------------------------------------


async def run_on_terminal(command: Sequence[str]) -> tuple[int, str]:
    """Run ``command`` with its stderr on a pseudo-terminal (stdout to /dev/null); its exit
    code and everything it drew on the terminal, once it exited. The caller bounds the
    time (``trio.fail_after``)."""
    controller, terminal = os.openpty()
    output = b""
    try:
        process = await trio.lowlevel.open_process(
            list(command), stdout=subprocess.DEVNULL, stderr=terminal
        )
        os.close(terminal)
        terminal = -1
        while True:  # until the child's end of the terminal is closed
            try:
                chunk = await trio.to_thread.run_sync(os.read, controller, 65536)
            except OSError:  # EIO on Linux once the child has exited
                break
            if not chunk:
                break
            output += chunk
        code = await process.wait()
    finally:
        os.close(controller)
        if terminal != -1:
            os.close(terminal)
    return code, output.decode(errors="replace")


async def run_cli(
    *arguments: str, stdin: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m apns_legacy ARGUMENTS``; the CompletedProcess (stdout and stderr as
    text). The caller bounds the time (``trio.fail_after``)."""
    done = await trio.run_process(
        [sys.executable, "-m", "apns_legacy", *arguments],
        stdin=stdin,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env=env,
    )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


def write_p8(path: Path, curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    """Write a new key (P-256 unless ``curve``) as Apple hands out .p8 files: PEM PKCS#8,
    unencrypted. Returns the key."""
    private = ec.generate_private_key(curve or ec.SECP256R1())
    path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return private


async def read_ready_line(
    stream: trio.abc.ReceiveStream, who: str = "the process", log: Path | None = None
) -> bytes:
    """Bytes up to and including a process's first line (its JSON ready line). The caller
    bounds the time; ``log`` (its stderr file) goes into the message if it exits first."""
    data = b""
    while b"\n" not in data:
        chunk = await stream.receive_some(4096)
        if not chunk:
            detail = f"; its log: {await trio.Path(log).read_text()}" if log is not None else ""
            raise AssertionError(f"{who} exited before its ready line: {data!r}{detail}")
        data += chunk
    return data


async def stop_with(process: trio.Process, signum: int) -> tuple[int, bytes]:
    """Send ``signum`` to a command run with ``stderr=PIPE``; its exit code and stderr."""
    assert process.stderr is not None
    process.send_signal(signum)
    code = await process.wait()
    stderr = b""
    while chunk := await process.stderr.receive_some(65536):
        stderr += chunk
    return code, stderr


@asynccontextmanager
async def reaped(process: trio.Process) -> AsyncIterator[trio.Process]:
    """Kill ``process`` if the block leaves it running; always wait for it, close its pipes."""
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()
            for pipe in (process.stdin, process.stdout, process.stderr):
                if pipe is not None:
                    await pipe.aclose()


class InProcessGateway:
    """Connections to a :class:`Simulator`'s gateway handler over trio memory streams.

    ``lockstep`` uses lockstep streams (no buffering at all); ``one_way`` puts the
    simulator's latency layer between the two ends; ``handshake`` is how long each
    connect takes (virtual time on the autojump clock).
    """

    def __init__(
        self,
        sim: Simulator,
        nursery: trio.Nursery,
        *,
        lockstep: bool = False,
        one_way: float = 0.0,
        handshake: float = 0.0,
    ) -> None:
        self.sim = sim
        self.nursery = nursery
        self.lockstep = lockstep
        self.one_way = one_way
        self.handshake = handshake

    async def connect(self) -> trio.abc.Stream:
        pair = (
            trio.testing.lockstep_stream_pair if self.lockstep else trio.testing.memory_stream_pair
        )
        client, server = pair()
        self.nursery.start_soon(self._serve, server)
        if self.handshake:
            await trio.sleep(self.handshake)
        return client

    async def _serve(self, stream: trio.abc.Stream) -> None:
        try:
            if self.one_way:
                async with open_latency_stream(stream, self.one_way) as delayed:
                    await self._gateway(delayed)
            else:
                await self._gateway(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _gateway(self, stream: trio.abc.Stream) -> None:
        await self.sim.serve_gateway_stream(
            stream, topic="com.example.app", environments=[Environment.SANDBOX]
        )
