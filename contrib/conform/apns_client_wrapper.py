"""Adapts the ``apns-client`` package (PyPI, 0.2.1, 2014) to ``apns-legacy conform run --exec``.

Run it with the Python that has apns-client installed (``install-peers.sh`` makes one):

    apns-legacy conform run --agent apns-client-0.2.1 --exec "$PEERS/py/bin/python \
        contrib/conform/apns_client_wrapper.py {host} {port} {certs} {workload} {result}"

The library is used as its README says (``Session``, ``get_connection``, ``APNs.send``,
``Result.failed/errors/needs_retry/retry``). One adaptation: it builds its TLS context
with ``SSLv3_METHOD``, and SSL 3.0 has been gone since 2014 (Apple switched it off on
2014-10-29, four months after this release; OpenSSL 3 cannot speak it), so the
wrapper maps that constant onto ``TLS_METHOD`` before importing the library. Nothing
else is changed. apns-client never verifies the server certificate.

Result lines: a token in ``result.failed`` is ``rejected`` with its code; a message
that ended with ``result.errors`` (the library cannot say which token) reports its
unsent tokens ``failed``; everything else the library considers sent is ``accepted``.
Commands 0 and 1 are not offered by the library: ``{"unimplemented": ...}``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from typing import Any

import OpenSSL.SSL

OpenSSL.SSL.SSLv3_METHOD = OpenSSL.SSL.TLS_METHOD  # SSL 3.0 no longer exists (see above)

from apnsclient import APNs, Message, Session  # noqa: E402


def groups(lines: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Consecutive lines that can share one Message: same priority and expiry, no pause of
    a second or more before them (shorter spacing is the caller's pacing; a Message is
    written as one batch), no oversized payload."""
    batch: list[dict[str, Any]] = []
    batch_key: tuple[Any, ...] = ()
    for line in lines:
        key = (line.get("priority", 10), line.get("expiry", 0), len(line["payload"]) > 256)
        if batch and (line.get("after", 0) >= 1 or key != batch_key):
            yield batch
            batch = []
        batch_key = key
        batch.append(line)
    if batch:
        yield batch


def main(host: str, port: str, certs: str, workload: str, result_path: str) -> None:
    with open(workload) as f:
        lines = [json.loads(x) for x in f if x.strip()]
    out: list[dict[str, Any]] = []
    # Certificate and key in one PEM string: 0.2.1 drops a separate key_file (its
    # Certificate.__init__ never passes it on), so that is how its users ran it.
    with open(certs + "/client.pem", "rb") as c, open(certs + "/client-key.pem", "rb") as k:
        cert = {"cert_string": c.read() + k.read()}
    session = Session()
    if lines and lines[0].get("feedback"):
        con = session.new_connection((host, int(port)), **cert)
        for token, when in APNs(con).feedback():
            stamp = (
                int(when.replace(tzinfo=None).timestamp()) if hasattr(when, "timestamp") else when
            )
            if isinstance(token, bytes):
                token = token.decode("ascii")
            out.append({"feedback_token": token, "timestamp": stamp})
    elif any(line.get("command") in (0, 1) for line in lines):
        out.append({"unimplemented": "apns-client 0.2.1 sends command 2 frames only"})
    else:
        con = session.get_connection((host, int(port)), **cert)
        service = APNs(con)
        for batch in groups(lines):
            if batch[0].get("after", 0) >= 1:
                time.sleep(batch[0]["after"])
            index_of = {line["token"]: line["index"] for line in batch}
            message = Message(
                [line["token"] for line in batch],
                payload=batch[0]["payload"],
                priority=batch[0].get("priority", 10),
                expiry=batch[0].get("expiry", 0),
            )
            outcome: dict[str, dict[str, Any]] = {}
            for attempt in range(10):
                try:
                    res = service.send(message)
                except Exception as exc:  # could not connect
                    for token in message.tokens:
                        outcome[token] = {"outcome": "failed", "reason": repr(exc)}
                    break
                retry = res.retry() if res.needs_retry() else None
                pending = set(retry.tokens) if retry is not None else set()
                for token, (code, _why) in res.failed.items():
                    outcome[token] = {"outcome": "rejected", "status": code}
                for token in message.tokens:
                    if token in outcome or token in pending:
                        continue
                    if res.errors and retry is None:
                        outcome[token] = {"outcome": "failed", "reason": str(res.errors)}
                    else:
                        outcome[token] = {"outcome": "accepted"}
                if retry is None:
                    break
                # The README: "re-schedule task with the new message after some delay";
                # and "user should limit number of retries" (10 here).
                time.sleep(min(0.1 * 2**attempt, 1.0))
                message = retry
            for token, what in outcome.items():
                out.append(dict(what, index=index_of[token]))
        session.shutdown()
    with open(result_path, "w") as f:
        for line in out:
            f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:6])
