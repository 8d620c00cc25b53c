"""The wrapper that puts this project's own sender under ``apns-legacy conform run``.

Usage (the ``--exec`` template)::

    apns-legacy conform run --exec \\
        'python -m apns_legacy.conform.our_client {host} {port} {certs} {workload} {result}'

It reads the workload (JSON lines: ``index``, ``token`` hex, ``payload`` as a string
of JSON, optional ``after`` seconds, ``command``, ``priority``, ``expiry``), sends it
with :func:`apns_legacy.open_sender` (default :class:`~apns_legacy.SenderConfig`,
``command`` from the workload) and writes one result line per notification:
``{"index", "outcome", "status", "possible_duplicate"}``. A line the library
refuses before sending (a 31-byte token, a 2049-byte payload, priority 7) is
reported ``refused``. For feedback cases (``{"feedback": true}``) it reads the
feedback service with :func:`apns_legacy.read_feedback_stream` and writes
``{"feedback_token", "timestamp"}`` lines.

The same logic, as :func:`run_workload`, grades the sender in-process in the tests.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import trio

from ..client import Outcome, SenderConfig, open_sender, read_feedback_stream
from ..tls import Credentials, client_context, open_tls_stream
from ..wire import Command, DeviceToken, LocalProtocolError, Notification

Connect = Callable[[], Awaitable[trio.abc.Stream]]


async def run_workload(lines: Sequence[dict[str, Any]], connect: Connect) -> list[dict[str, Any]]:
    """Send (or, for feedback, read) the workload; the result lines."""
    if lines and lines[0].get("feedback"):
        stream = await connect()
        try:
            items = await read_feedback_stream(stream)
        finally:
            await trio.aclose_forcefully(stream)
        return [{"feedback_token": i.token.hex(), "timestamp": i.timestamp} for i in items]
    results: list[dict[str, Any]] = []

    def on_outcome(outcome: Outcome) -> None:
        results.append(
            {
                "index": outcome.tag,
                "outcome": outcome.kind.value,
                "status": None if outcome.status is None else int(outcome.status),
                "possible_duplicate": outcome.possible_duplicate,
            }
        )

    command = Command(lines[0].get("command", 2)) if lines else Command.FRAME
    config = SenderConfig(command=command)
    async with open_sender(connect=connect, config=config, on_outcome=on_outcome) as sender:
        for line in lines:
            if line.get("after"):
                await trio.sleep(float(line["after"]))
            try:
                notification = Notification(
                    token=DeviceToken.from_hex(line["token"], allow_long=False),
                    payload=line["payload"].encode("utf-8"),
                    expiry=int(line.get("expiry", 0)),
                    priority=int(line.get("priority", 10)),
                )
                await sender.submit(notification, tag=line["index"])
            except LocalProtocolError as exc:
                results.append({"index": line["index"], "outcome": "refused", "reason": str(exc)})
        await sender.flush(confirm=True)
    return results


def _read_lines(path: str) -> list[dict[str, Any]]:
    text = Path(path).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def _main(host: str, port: int, certs: Path, workload: str, result: str) -> None:
    credentials = Credentials.load(certs / "client.pem", certs / "client-key.pem")
    context = client_context(credentials, ca=certs / "ca.pem")

    async def connect() -> trio.abc.Stream:
        return await open_tls_stream(host, port, context)

    results = await run_workload(_read_lines(workload), connect)
    text = "".join(json.dumps(line) + "\n" for line in results)
    await trio.Path(result).write_text(text, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 5:
        print(
            "usage: python -m apns_legacy.conform.our_client HOST PORT CERTS WORKLOAD RESULT",
            file=sys.stderr,
        )
        return 2
    host, port, certs, workload, result = args
    trio.run(_main, host, int(port), Path(certs), workload, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
