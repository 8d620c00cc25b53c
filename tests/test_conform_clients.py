"""Every case against deliberately broken clients (and a careful one), in-process.

Each broken behaviour must be graded FAILED or NON-STRICT by the cases meant to
catch it, and only by those: the expected non-OK set is spelled out per client.
The scripted gateways run over memory streams with real TLS, on trio's autojump
clock (the cases' 1.5 s delays and 2.5 s pauses cost nothing).
"""

from __future__ import annotations

import json

import pytest
from conform_clients import (
    CAREFUL,
    HOT_LOOP,
    NEVER_READS,
    NEVER_RESENDS,
    NEVER_VERIFIES,
    RESENDS_REJECTED,
    client,
)

from apns_legacy.conform import (
    CASES,
    ConformPKI,
    Grade,
    grade_in_process,
    make_conform_pki,
    parse_result_lines,
)
from apns_legacy.conform.our_client import run_workload

F, N = Grade.FAILED, Grade.NON_STRICT

#: Cases where the gateway ends a connection mid-stream (error response or not).
_INTERRUPTED = {
    "reject.mid",
    "reject.two-in-window",
    "reject.close-unread",
    "shutdown.status-10",
    "reset.no-frame",
    "delay.error-1500ms",
    "pieces.1+5",
    "pieces.3+3",
    "idle.drop",
    "command.simple-close",
    "command.enhanced-reject",
    "frames.token-length",
    "frames.payload-limit",
    "frames.priority",
}
_REJECTING = {
    "reject.mid",
    "reject.two-in-window",
    "reject.close-unread",
    "delay.error-1500ms",
    "pieces.1+5",
    "pieces.3+3",
    "command.enhanced-reject",
}
_FRAMES = {"frames.token-length", "frames.payload-limit", "frames.priority"}

EXPECTED = {
    # Correct behaviour, but it writes the malformed workload lines instead of
    # refusing them, which the frames cases grade NON-STRICT (the gateway caught them).
    CAREFUL: dict.fromkeys(_FRAMES, N),
    # Never resends: everything after an error or a close is lost.
    # (idle.drop: over memory streams a write to a closed peer fails at once, so it
    # reconnects; only over TCP does the write vanish. See test_conform_cli.)
    # A silent close is "done" to it, so the wrong environment reads as success.
    NEVER_RESENDS: dict.fromkeys(_INTERRUPTED - {"idle.drop"} | {"env.wrong"}, F),
    # Resends the rejected one: FAILED wherever a rejection happens (and the malformed
    # lines loop until it gives up); status 10's named notification arrives twice.
    RESENDS_REJECTED: dict.fromkeys(_REJECTING | _FRAMES, F) | {"shutdown.status-10": N},
    # Never reads: loses what the gateway discarded and reports it accepted.
    NEVER_READS: dict.fromkeys(_INTERRUPTED - {"idle.drop"} | {"env.wrong"}, F),
    # Reconnects at once: only the cases where every connection fails can tell.
    HOT_LOOP: dict.fromkeys({"env.wrong", "tls.untrusted-server", "tls.wrong-name"}, F)
    | dict.fromkeys(_FRAMES, N),
    # Trusts any server certificate.
    NEVER_VERIFIES: dict.fromkeys({"tls.untrusted-server", "tls.wrong-name"}, F)
    | dict.fromkeys(_FRAMES, N),
}


@pytest.fixture(scope="module")
def conform_pki() -> ConformPKI:
    return make_conform_pki()


@pytest.mark.parametrize("behaviour", list(EXPECTED), ids=lambda b: b.name)
async def test_each_behaviour_is_caught_by_the_right_cases(behaviour, conform_pki, autojump_clock):
    grades = {}
    details = {}
    for case in CASES:
        result = await grade_in_process(case, client(behaviour), pki=conform_pki)
        grades[case.id] = result.grade
        details[case.id] = result.verdict.findings
    expected = {case.id: EXPECTED[behaviour].get(case.id, Grade.OK) for case in CASES}
    expected["info.throughput"] = (
        Grade.INFORMATIONAL
        if expected["info.throughput"] is Grade.OK
        else expected["info.throughput"]
    )
    wrong = {
        case_id: (grades[case_id].value, details[case_id])
        for case_id in grades
        if grades[case_id] is not expected[case_id]
    }
    assert not wrong, "\n".join(f"{k}: {v}" for k, v in wrong.items())


async def _ours(env):
    lines = [json.loads(line) for line in env.case.workload_lines()]
    results = await run_workload(lines, env.connect)
    return parse_result_lines([json.dumps(r) for r in results])


# Known findings about our own sender (none at the moment; an entry here is a strict
# expected failure, so a fix shows up).
_OURS_KNOWN: dict[str, str] = {}


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=_OURS_KNOWN[c.id]))
        if c.id in _OURS_KNOWN
        else c
        for c in CASES
    ],
    ids=lambda c: c.id,
)
async def test_our_sender(case, conform_pki, autojump_clock):
    result = await grade_in_process(case, _ours, pki=conform_pki)
    expected = Grade.INFORMATIONAL if case.informational else Grade.OK
    assert result.grade is expected, result.verdict.findings
