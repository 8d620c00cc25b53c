"""atheris harness for the HTTP/2 response parser (apns_legacy.h2wire.parse_response).

The input is a header block and a body: header lines ``name<TAB>value`` separated by
``\\n``, a blank line, then the body (see the seeds in fuzz/corpus/h2_response). The
invariant: a :class:`Response` or our documented :class:`RemoteProtocolError`, nothing
else; the result is consistent (200 has no reason, a timestamp is aware UTC).

Run: .venv/bin/python fuzz/fuzz_h2_response.py -atheris_runs=200000 \
    [WORK_DIR fuzz/corpus/h2_response]
"""

from __future__ import annotations

import datetime as dt
import sys

import atheris

with atheris.instrument_imports(include=["apns_legacy.h2wire"]):
    from apns_legacy.h2wire import Reason, Response, parse_response
    from apns_legacy.wire import RemoteProtocolError


def split(data: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    block, _, body = data.partition(b"\n\n")
    headers = []
    for line in block.split(b"\n"):
        name, _, value = line.partition(b"\t")
        headers.append((name, value))
    return headers, body


def TestOneInput(data: bytes) -> None:
    headers, body = split(data)
    try:
        response = parse_response(headers, body)
    except RemoteProtocolError:
        return
    assert isinstance(response, Response), response
    assert 0 <= response.status <= 999, response
    if response.status == 200:
        assert response.reason is None, response
        assert response.timestamp is None, response
    else:
        assert isinstance(response.reason, (Reason, str)), response
    if response.timestamp is not None:
        assert response.timestamp.tzinfo is dt.UTC, response


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
