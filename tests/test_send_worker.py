"""``send --input`` parsed in a second process (``cli/_send_worker.py``): the worker, a
real subprocess reading a real file descriptor, gives exactly what parsing in the
sending process gives (the same notifications, bad-line messages and line numbers);
a failed read or a dead worker stops the input with a reason; and ``--parse auto``
chooses the worker only where it can help."""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from apns_legacy.cli._send import PARSE_PROCESS_FROM, parse_in_process
from apns_legacy.cli._send_input import MAX_LINE, InputFailed, LineSplitter, Plan, parse_lines
from apns_legacy.cli._send_worker import worker_chunks
from apns_legacy.client import SenderConfig


def token(i: int) -> str:
    return f"{i:064x}"


def varied_input(count: int, seed: int) -> bytes:
    """Every kind of line the parser tells apart, shuffled among good ones."""
    rng = random.Random(seed)
    odd_lines = [
        b"",
        b"   ",
        b"not json",
        b'{"token": "' + b"zz" * 32 + b'"}',
        json.dumps({"token": token(1), "priorty": 5}).encode(),
        json.dumps({"token": token(2), "priority": 7}).encode(),
        json.dumps({"token": token(3), "payload": [1]}).encode(),
        json.dumps({"token": token(4), "payload": {"aps": {"alert": "x" * 3000}}}).encode(),
        json.dumps({"token": "abcd"}).encode(),
        json.dumps({"payload": {}}).encode(),
        json.dumps({"token": token(5), "active": False}).encode(),
        json.dumps({"token": token(6), "topic": "t", "registered_at": 1}).encode(),
        json.dumps({"token": token(7), "payload": '{"aps": {"alert": "as a string"}}'}).encode(),
        json.dumps({"token": token(8), "payload": {"aps": {}, "f": 1.50}}).encode(),
        json.dumps({"token": token(9), "payload": {"aps": {"alert": "é ✓"}}}).encode(),
        json.dumps({"token": token(10), "expiry": 1_700_000_000, "priority": 5}).encode(),
        json.dumps({"token": token(11), "expiry": -1}).encode(),
        b'{"token": "' + token(12).encode() + b'", "payload": {"a": "\xff"}}',  # not UTF-8
        b"[" * 5000 + b"]" * 5000,
        b'{"token":"' + token(13).encode() + b'","payload":{"aps":{"alert":"compact"}}}',
        json.dumps({"token": "a" * 66}).encode(),  # 33 bytes: only with long tokens
    ]
    lines = [
        json.dumps({"token": token(n), "payload": {"aps": {"alert": f"n{n % 7}"}}}).encode()
        for n in range(count)
    ]
    for line in odd_lines:
        lines.insert(rng.randrange(len(lines) + 1), line)
    lines.insert(rng.randrange(len(lines)), b"x" * (MAX_LINE + 10))  # overlong: skipped
    text = b"\r\n".join(lines[:10]) + b"\r\n" + b"\n".join(lines[10:])
    return b"\xef\xbb\xbf" + text  # a byte order mark first, no newline at the end


def plan_of(**settings) -> Plan:
    return Plan(
        config=SenderConfig(
            payload_limit=settings.pop("payload_limit", 2048),
            allow_long_tokens=settings.pop("allow_long_tokens", False),
        ),
        payload=settings.pop("payload", None),
        expiry=settings.pop("expiry", 0),
        priority=settings.pop("priority", 10),
        tokens=(),
        strict=False,
    )


def parsed_here(data: bytes, plan: Plan) -> list[tuple[int, object]]:
    splitter = LineSplitter()
    return parse_lines(splitter.feed(data) + splitter.finish(), plan)


async def parsed_by_worker(descriptor: int, plan: Plan) -> tuple[list, int]:
    items: list = []
    read = 0
    with trio.fail_after(60):
        async for bytes_read, chunk in worker_chunks(descriptor, plan):
            assert bytes_read >= read
            read = bytes_read
            items += chunk
    return items, read


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"payload": b'{"aps":{"alert":"default"}}', "expiry": 99, "priority": 5},
        {"payload_limit": 256, "allow_long_tokens": True},
    ],
)
async def test_the_worker_parses_exactly_as_the_sending_process(tmp_path, settings):
    data = varied_input(30_000, seed=len(settings))
    path = tmp_path / "input.jsonl"
    path.write_bytes(data)
    plan = plan_of(**settings)
    descriptor = os.open(path, os.O_RDONLY)
    try:
        items, read = await parsed_by_worker(descriptor, plan)
    finally:
        os.close(descriptor)
    expected = parsed_here(data, plan_of(**settings))
    assert read == len(data)
    assert items == expected
    # The input is several of the worker's reads, and has every kind of line.
    assert len(data) > 4 * 262_144
    kinds = {type(item).__name__ for _, item in items}
    assert kinds == {"Notification", "str", "NoneType"}


async def test_a_pipe_in_small_pieces_gives_the_same_lines(tmp_path):
    data = varied_input(2_000, seed=7)
    plan = plan_of()
    reading, writing = os.pipe()

    async def produce() -> None:
        # Pieces of awkward sizes, with pauses: the worker sees lines cut anywhere.
        view = memoryview(data)
        while view:
            size = min(len(view), 4_093)
            await trio.to_thread.run_sync(os.write, writing, view[:size])
            view = view[size:]
            await trio.lowlevel.checkpoint()
        os.close(writing)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            items, read = await parsed_by_worker(reading, plan)
    finally:
        os.close(reading)
    assert read == len(data)
    assert items == parsed_here(data, plan_of())


async def test_an_input_that_cannot_be_read_stops_with_the_reason(tmp_path):
    path = tmp_path / "input.jsonl"
    path.write_text("")
    descriptor = os.open(path, os.O_WRONLY)  # reading it fails: EBADF
    try:
        with pytest.raises(InputFailed, match=r"^cannot read further \(Bad file descriptor\)$"):
            await parsed_by_worker(descriptor, plan_of())
    finally:
        os.close(descriptor)


async def test_leaving_early_ends_the_worker(tmp_path):
    # --strict or a signal stops the input after the first chunk: the worker, still
    # reading a pipe nobody closes, is killed rather than left behind.
    reading, writing = os.pipe()
    os.write(writing, (json.dumps({"token": token(1)}) + "\n").encode() * 500)  # < 64 KiB
    chunks = worker_chunks(reading, plan_of(payload=b"{}"))
    try:
        with trio.fail_after(30):
            async with contextlib.aclosing(chunks):
                async for _, items in chunks:
                    assert items
                    break
    finally:
        os.close(reading)
        os.close(writing)


def test_auto_uses_the_worker_for_a_large_file_or_a_pipe_only(tmp_path):
    small = tmp_path / "small.jsonl"
    small.write_bytes(b"\n" * 100)
    large = tmp_path / "large.jsonl"
    with large.open("wb") as file:
        file.truncate(PARSE_PROCESS_FROM)  # sparse: the size is what counts
    cores = len(os.sched_getaffinity(0))
    reading, writing = os.pipe()
    descriptors = [os.open(small, os.O_RDONLY), os.open(large, os.O_RDONLY), reading]
    try:
        small_fd, large_fd, pipe_fd = descriptors
        assert not parse_in_process("auto", small_fd, http2=False)
        assert parse_in_process("auto", large_fd, http2=False) == (cores >= 2)
        assert parse_in_process("auto", pipe_fd, http2=False) == (cores >= 2)
        assert not parse_in_process("auto", large_fd, http2=True)
        assert not parse_in_process("inline", large_fd, http2=False)
        assert parse_in_process("process", small_fd, http2=True)
        assert not parse_in_process("process", None, http2=False)  # --token
    finally:
        for descriptor in descriptors:
            os.close(descriptor)
        os.close(writing)


def test_the_worker_alone_reads_standard_input_and_writes_messages(tmp_path):
    # The worker as the sending process starts it, driven by hand: an empty input
    # gives exactly one message, the last, with no rows.
    import msgspec

    settings = json.dumps(
        {"payload": None, "expiry": 0, "priority": 10, "payload_limit": 2048,
         "allow_long_tokens": False}
    )  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "apns_legacy.cli._send_worker", settings],
        input=b"", capture_output=True, timeout=60, check=True,
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    body = done.stdout[4:]
    assert int.from_bytes(done.stdout[:4], "big") == len(body)
    assert msgspec.msgpack.decode(body) == [0, [], True]
