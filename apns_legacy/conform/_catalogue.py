"""The case catalogue: what Apple's gateway did, as scripted cases.

Each case cites the text it checks (PROTOCOL.md's sources: Apple's Binary Provider
API [A18/ALF], TN2265, and the field reports clients were written against). Case
numbers (their position here, from 1) go into the workload tokens, so keep the
order stable and add new cases at the end.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from typing import Final

from ._model import (
    Case,
    Close,
    ErrorStyle,
    Expect,
    FeedbackEntry,
    Script,
    ServerCert,
    Service,
    WorkItem,
    make_token,
)

#: The client certificate's topic in every case (the feedback list is per topic).
CLIENT_TOPIC: Final = "com.example.app"
OTHER_TOPIC: Final = "com.example.other"

_A18_ERROR: Final = (
    'Apple [A18]: on a malformed notification APNs "returns an error-response packet and '
    "closes the connection. Any notifications that you sent after the malformed notification "
    'using the same connection are discarded, and must be resent."'
)


def _payload(case: str, index: int) -> bytes:
    return f'{{"aps":{{"alert":"{case} {index}"}}}}'.encode()


def _items(
    number: int,
    case: str,
    count: int,
    *,
    reject: dict[int, int] | None = None,
    command: int | None = None,
    spacing: float = 0.0,
    expect: Expect = Expect.DELIVER,
) -> tuple[WorkItem, ...]:
    reject = reject or {}
    return tuple(
        WorkItem(
            index=i,
            token=make_token(number, i),
            payload=_payload(case, i),
            expect=Expect.REJECT if i in reject else expect,
            status=reject.get(i),
            after=spacing if i else 0.0,
            command=command,
        )
        for i in range(count)
    )


def _build() -> tuple[Case, ...]:
    cases: list[Case] = []

    def add(case_id: str, **fields: object) -> None:
        cases.append(Case(id=case_id, **fields))  # type: ignore[arg-type]

    def number() -> int:
        return len(cases) + 1

    n = number()
    add(
        "reject.mid",
        title="rejection mid-stream: status 8 for notification 20 of 50",
        requirement=_A18_ERROR,
        behaviour="Accepts 0-19, answers 20 with 08 08 <its id> and closes; 21-49 discarded.",
        expectation="20 reported rejected (8) and never written again; 21-49 resent on a new "
        "connection, each delivered exactly once.",
        script=Script(reject={20: 8}),
        workload=_items(n, "reject.mid", 50, reject={20: 8}),
    )
    n = number()
    add(
        "reject.two-in-window",
        title="two rejections in one window: status 8 for 15 and 40 of 60",
        requirement=_A18_ERROR,
        behaviour="Rejects 15 (discarding 16-59), then on the next connection rejects 40.",
        expectation="Both reported rejected; everything else delivered exactly once.",
        script=Script(reject={15: 8, 40: 8}),
        workload=_items(n, "reject.two-in-window", 60, reject={15: 8, 40: 8}),
    )
    n = number()
    add(
        "reject.close-unread",
        title="error response followed by a reset (the gateway closes with unread data)",
        requirement="java-apns ApnsServerSimulator.fail: a server that closes with unread data "
        "sends RST, and 'the client could see the close before the packet'. Apple's gateway "
        "stopped reading at the bad notification.",
        behaviour="Rejects 10 of 400, stops reading, writes the error response, and closes "
        "with SO_LINGER 0 while the client's later writes sit unread.",
        expectation="10 rejected and never resent; 11-399 delivered exactly once.",
        script=Script(reject={10: 8}, error=ErrorStyle(close=Close.RESET)),
        workload=_items(n, "reject.close-unread", 400, reject={10: 8}),
    )
    n = number()
    add(
        "shutdown.status-10",
        title="status 10 (shutdown) naming the last accepted notification (25 of 50)",
        requirement='Apple [A18]: status 10 "indicates that the APNs server closed the '
        "connection (for example, to perform maintenance). The notification identifier in the "
        "error response indicates the last notification that was successfully sent. Any "
        'notifications you sent after it have been discarded and must be resent."',
        behaviour="Accepts 0-25, writes 08 0a <id of 25>, closes; 26-49 discarded.",
        expectation="25 reported accepted (not rejected); only 26-49 resent; each delivered "
        "exactly once.",
        script=Script(shutdown_after=25),
        workload=_items(n, "shutdown.status-10", 50),
    )
    n = number()
    add(
        "reset.no-frame",
        title="TCP reset after notification 25 of 50, no error response",
        requirement="PROTOCOL.md section 5: a connection can die without the 6-byte packet "
        "(a reset: 'the client could see the close before the packet'); the provider cannot "
        "know what was taken and must resend what it cannot account for.",
        behaviour="Accepts 0-25, then closes with SO_LINGER 0 (RST); the rest is lost.",
        expectation="Nothing lost; duplicates are unavoidable and OK only when the client "
        "reports them as possible duplicates.",
        script=Script(reset_after=25),
        workload=_items(n, "reset.no-frame", 50),
        duplicates_allowed=True,
    )
    n = number()
    add(
        "delay.error-1500ms",
        title="error response 1.5 s late while the client keeps writing",
        requirement="node-apn 'Handling Errors': the error packet \"can take as long as 200 "
        'ms"; TN2265: "It\'s possible to send over 500 notifications before a write fails". '
        "A client that treats silence as success loses what it wrote meanwhile.",
        behaviour="60 notifications 50 ms apart; 10 is rejected, but 08 08 <id> comes 1.5 s "
        "later; what arrives meanwhile is read and dropped.",
        expectation="10 reported rejected; 11-59 all delivered exactly once (the client must "
        "keep unanswered notifications until the answer comes).",
        script=Script(reject={10: 8}, error=ErrorStyle(delay=1.5)),
        workload=_items(n, "delay.error-1500ms", 60, reject={10: 8}, spacing=0.05),
        deadline=30.0,
    )
    n = number()
    add(
        "pieces.1+5",
        title="error response in two TLS records of 1 and 5 bytes",
        requirement="PROTOCOL.md section 5: the 6-byte packet is a stream, not a message "
        "(PyAPNs assumed read(6) returns all 6 bytes; a short read was silently ignored).",
        behaviour="Rejects 10 of 30 with 08 | 08 00 00 00 <id> as two records 50 ms apart.",
        expectation="As reject.mid: 10 rejected, the rest delivered exactly once.",
        script=Script(reject={10: 8}, error=ErrorStyle(pieces=(1, 5))),
        workload=_items(n, "pieces.1+5", 30, reject={10: 8}),
    )
    n = number()
    add(
        "pieces.3+3",
        title="error response in two TLS records of 3 and 3 bytes",
        requirement="PROTOCOL.md section 5 (as pieces.1+5).",
        behaviour="Rejects 10 of 30 with 08 08 00 | 00 00 <id> as two records 50 ms apart.",
        expectation="10 rejected, the rest delivered exactly once.",
        script=Script(reject={10: 8}, error=ErrorStyle(pieces=(3, 3))),
        workload=_items(n, "pieces.3+3", 30, reject={10: 8}),
    )
    n = number()
    add(
        "env.wrong",
        title="wrong environment: handshake completes, then a silent close, every time",
        requirement='node-apn connection.js: "Apple will successfully authenticate production '
        'certificates in sandbox, but will then immediately close the connection"; Apple '
        '[AOLD]: "APNs treats rapid connection and disconnection as a denial-of-service '
        'attack."',
        behaviour="Every connection: TLS handshake, 0.1 s reading and dropping, close; "
        "nothing is ever accepted.",
        expectation="All 10 reported failed; at most 8 connections (a backoff, no hot loop).",
        script=Script(close_after_handshake=True),
        workload=_items(n, "env.wrong", 10, expect=Expect.UNDELIVERABLE),
        deadline=30.0,
        max_connections=8,
    )
    n = number()
    idle = list(_items(n, "idle.drop", 10))
    idle[5] = WorkItem(
        index=5, token=idle[5].token, payload=idle[5].payload, after=2.5, expect=Expect.DELIVER
    )
    add(
        "idle.drop",
        title="idle connection dropped; the first write after the idle period",
        requirement="Field reports (java-apns #214, PyAPNs #94, uniqush #47): idle connections "
        "were closed (EOF) and the first push after the idle period vanished.",
        behaviour="Closes (FIN, no frame) any connection idle for 1 s. The workload pauses "
        "2.5 s between lines 4 and 5.",
        expectation="All 10 delivered exactly once, 5 included.",
        script=Script(idle_drop=1.0),
        workload=tuple(idle),
    )
    n = number()
    add(
        "slow.reader",
        title="slow reader: the gateway reads 64 KB/s (back-pressure)",
        requirement='TN2265: "Around 1,700 notifications writes can fail just because the pipe '
        'is full"; a client must wait for the socket rather than drop or buffer without bound.',
        behaviour="Reads at most 64,000 bytes per second from each connection.",
        expectation="All 2,000 delivered exactly once, on one connection.",
        script=Script(read_rate=64_000),
        workload=_items(n, "slow.reader", 2000),
        deadline=30.0,
        max_connections=2,
    )
    n = number()
    tokens = list(_items(n, "frames.token-length", 10))
    for index, length in ((3, 31), (6, 33)):
        tokens[index] = WorkItem(
            index=index,
            token=make_token(n, index, length),
            payload=tokens[index].payload,
            expect=Expect.REFUSE,
            status=5,
        )
    add(
        "frames.token-length",
        title="tokens of 31 and 33 bytes in the workload (32 is the only length used)",
        requirement="PROTOCOL.md sections 4 and 7: tokens were 32 bytes for the whole life of "
        "the binary API; status 5 'Invalid token size'. PyAPNs' enhanced format padded or "
        "truncated to 32 bytes silently.",
        behaviour="Answers a token of any length but 32 with 08 05 <id> and closes.",
        expectation="3 and 6 refused before writing (or rejected with 5), never sent padded "
        "or truncated; the other 8 delivered exactly once.",
        script=Script(),
        workload=tuple(tokens),
    )
    n = number()
    sizes = list(_items(n, "frames.payload-limit", 8))
    for index, size, expect in ((2, 2048, Expect.DELIVER), (4, 2049, Expect.REFUSE)):
        head = b'{"aps":{"alert":"'
        tail = b'"}}'
        payload = head + b"x" * (size - len(head) - len(tail)) + tail
        sizes[index] = WorkItem(
            index=index,
            token=sizes[index].token,
            payload=payload,
            expect=expect,
            status=7 if expect is Expect.REFUSE else None,
        )
    add(
        "frames.payload-limit",
        title="payloads of 2048 (the limit) and 2049 bytes",
        requirement="Apple [A18] item 2: payload up to 2 KB (2048 bytes); status 7 'Invalid "
        "payload size'.",
        behaviour="Accepts up to 2048 bytes; answers 2049 with 08 07 <id> and closes.",
        expectation="2 (2048 bytes) delivered; 4 (2049) refused before writing or rejected "
        "with 7; the rest delivered exactly once.",
        script=Script(),
        workload=tuple(sizes),
    )
    n = number()
    prio = list(_items(n, "frames.priority", 8))
    prio[3] = WorkItem(
        index=3,
        token=prio[3].token,
        payload=prio[3].payload,
        priority=7,
        expect=Expect.REFUSE,
        status=128,
    )
    prio[5] = WorkItem(index=5, token=prio[5].token, payload=prio[5].payload, priority=5)
    prio[6] = WorkItem(index=6, token=prio[6].token, payload=prio[6].payload, expiry=1900000000)
    add(
        "frames.priority",
        title="priority 5, an expiry, and priority 7 (undefined) in the workload",
        requirement="Apple [A18] item 5: priority 10 or 5; item 4: expiry in UNIX seconds. "
        "PROTOCOL.md section 4: other priorities are undocumented (status 128 is the closest).",
        behaviour="Checks items 3, 4 and 5 (lengths 4, 4, 1; priority 5 or 10); answers "
        "anything else with 08 80 <id> and closes.",
        expectation="5 arrives with priority 5, 6 with expiry 1900000000; 3 refused before "
        "writing (or rejected); the rest delivered exactly once.",
        script=Script(),
        workload=tuple(prio),
    )
    n = number()
    add(
        "command.simple",
        title="command 0 (simple format): 20 notifications",
        requirement="Apple [ALF]: |COMMAND 0|TOKENLEN|TOKEN|PAYLOADLEN|PAYLOAD|, no identifier, "
        "no error response.",
        behaviour="Accepts everything.",
        expectation="All 20 delivered exactly once as command 0.",
        script=Script(),
        workload=_items(n, "command.simple", 20, command=0),
    )
    n = number()
    add(
        "command.simple-close",
        title="command 0: a silent close after notification 15 of 30",
        requirement='Apple [ALF]: "With the legacy format, if you send a notification packet '
        "that is malformed in some way ... APNs responds by severing the connection. It gives "
        'no indication why."',
        behaviour="Accepts 0-15 as command 0, then closes without a word; the rest is lost.",
        expectation="Nothing lost; duplicates are unavoidable and OK when reported as possible "
        "duplicates.",
        script=Script(silent_close_after=15),
        workload=_items(n, "command.simple-close", 30, command=0),
        duplicates_allowed=True,
    )
    n = number()
    enhanced = list(_items(n, "command.enhanced", 20, command=1))
    enhanced[4] = WorkItem(
        index=4,
        token=enhanced[4].token,
        payload=enhanced[4].payload,
        command=1,
        expiry=1900000000,
    )
    add(
        "command.enhanced",
        title="command 1 (enhanced format): 20 notifications, one with an expiry",
        requirement="Apple [ALF] Listing B-2: |COMMAND 1|ID|EXPIRY|TOKENLEN|TOKEN|PAYLOADLEN|"
        "PAYLOAD|.",
        behaviour="Accepts everything.",
        expectation="All 20 delivered exactly once as command 1; 4 with expiry 1900000000.",
        script=Script(),
        workload=tuple(enhanced),
    )
    n = number()
    add(
        "command.enhanced-reject",
        title="command 1: status 8 for notification 12 of 30",
        requirement=_A18_ERROR,
        behaviour="Rejects 12 with 08 08 <id>, closes; 13-29 discarded.",
        expectation="12 reported rejected; the rest delivered exactly once as command 1.",
        script=Script(reject={12: 8}),
        workload=_items(n, "command.enhanced-reject", 30, reject={12: 8}, command=1),
    )
    n = number()
    entries = tuple(
        FeedbackEntry(token=make_token(n, i), timestamp=1_700_000_000 + i, topic=CLIENT_TOPIC)
        for i in range(20)
    )
    add(
        "feedback.pieces",
        title="feedback: 20 tuples written in 7-byte pieces",
        requirement='Apple [A18]: "Read the stream from the feedback service until there is no '
        'more data to read"; tuples are timestamp | length | token (PyAPNs stopped at a short '
        "read).",
        behaviour="Writes the 20 tuples 7 bytes at a time (each its own TLS record), then closes.",
        expectation="All 20 reported with their timestamps.",
        script=Script(feedback=entries, feedback_piece=7),
        workload=(),
        service=Service.FEEDBACK,
        feedback_expected=tuple(e.token for e in entries),
        max_connections=3,
    )
    n = number()
    add(
        "feedback.empty",
        title="feedback: an empty list",
        requirement="Apple [A18]: the service lists only failures since the last connection; "
        "none is a normal answer.",
        behaviour="Completes the handshake and closes at once.",
        expectation="Nothing reported, no error, no retry loop.",
        script=Script(),
        workload=(),
        service=Service.FEEDBACK,
        max_connections=3,
    )
    n = number()
    mine = tuple(
        FeedbackEntry(token=make_token(n, i), timestamp=1_700_000_100 + i, topic=CLIENT_TOPIC)
        for i in range(5)
    )
    theirs = tuple(
        FeedbackEntry(token=make_token(n, 100 + i), timestamp=1_700_000_200, topic=OTHER_TOPIC)
        for i in range(5)
    )
    add(
        "feedback.topics",
        title="feedback: per-topic lists (only the certificate's own topic)",
        requirement='Apple [A16 NOTE]: "If you have multiple apps, you must connect to the '
        'feedback service once for each app, using the corresponding certificate."',
        behaviour="Holds 5 tuples for com.example.app and 5 for com.example.other; writes only "
        "those of the client certificate's topic.",
        expectation="Exactly the 5 com.example.app tuples reported.",
        script=Script(feedback=mine + theirs),
        workload=(),
        service=Service.FEEDBACK,
        feedback_expected=tuple(e.token for e in mine),
        max_connections=3,
    )
    n = number()
    add(
        "tls.client-cert",
        title="TLS: the client certificate is required and verified",
        requirement="Apple [A18]: the provider must present its client certificate "
        "(peer-to-peer authentication).",
        behaviour="Requires a client certificate from the test CA; accepts everything.",
        expectation="All 10 delivered exactly once.",
        script=Script(),
        workload=_items(n, "tls.client-cert", 10),
    )
    n = number()
    add(
        "tls.untrusted-server",
        title="TLS: a server certificate from a CA the client was not given",
        requirement="Apple [A16 NOTE]: the provider must trust the gateway's CA (Entrust); a "
        "client that does not verify the server hands its pushes to anyone.",
        behaviour="Shows a certificate from another CA; records anything the client writes.",
        expectation="The client refuses the handshake: nothing written, all 5 reported "
        "failed, no hot loop.",
        script=Script(server_cert=ServerCert.UNTRUSTED),
        workload=_items(n, "tls.untrusted-server", 5, expect=Expect.UNDELIVERABLE),
        max_connections=8,
        deadline=30.0,
    )
    n = number()
    add(
        "tls.wrong-name",
        title="TLS: a server certificate from the right CA for another host name",
        requirement="RFC 6125 name checks: a certificate for wrong.invalid does not identify "
        "the host the client connected to.",
        behaviour="Shows a certificate from the client's CA for wrong.invalid only.",
        expectation="The client refuses the handshake: nothing written, all 5 reported failed.",
        script=Script(server_cert=ServerCert.WRONG_NAME),
        workload=_items(n, "tls.wrong-name", 5, expect=Expect.UNDELIVERABLE),
        max_connections=8,
        deadline=30.0,
    )
    n = number()
    add(
        "info.throughput",
        title="throughput: 5,000 notifications, figures only",
        requirement='Apple [A18]: "batch multiple notifications in a single transmission"; '
        'TN2265: below 9,000 notifications/s "your server might benefit from improved error '
        'handling logic".',
        behaviour="Accepts everything; records bytes, connections and timing.",
        expectation="Figures only (INFORMATIONAL), unless something is lost.",
        script=Script(),
        workload=_items(n, "info.throughput", 5000),
        informational=True,
        deadline=60.0,
    )
    return tuple(cases)


#: Every case, in a fixed order (a case's number is its position from 1).
CASES: Final[tuple[Case, ...]] = _build()


def case_number(case: Case) -> int:
    """The case's number (its position from 1), by id: a case with another deadline
    (``attrs.evolve``) keeps its number."""
    for number, known in enumerate(CASES, 1):
        if known.id == case.id:
            return number
    raise ValueError(f"{case.id!r} is not in the catalogue")


def case_by_number(number: int) -> Case | None:
    return CASES[number - 1] if 1 <= number <= len(CASES) else None


def select_cases(patterns: Iterable[str] | None) -> list[Case]:
    """Cases whose id matches any glob (``reject.*``, ``tls.*,feedback.empty``).

    Raises:
        ValueError: a pattern matches no case.
    """
    if not patterns:
        return list(CASES)
    wanted: list[str] = []
    for pattern in patterns:
        wanted += [p.strip() for p in pattern.split(",") if p.strip()]
    chosen: list[Case] = []
    for pattern in wanted:
        matched = [c for c in CASES if fnmatch.fnmatchcase(c.id, pattern) or c.group == pattern]
        if not matched:
            raise ValueError(f"--cases: {pattern!r} matches no case (see --list)")
        chosen += [c for c in matched if c not in chosen]
    return [c for c in CASES if c in chosen]
