"""Grading: compare what the gateway recorded (and what the client reported) with the case.

Pure functions. The rules, in the order they are applied:

- the client said it does not support the case (``{"unimplemented": ...}``):
  UNIMPLEMENTED, nothing else is looked at;
- FAILED: a hang past the deadline; a line that should be delivered never was; a
  rejected notification written again after its error response; a notification
  reported ``accepted`` that the gateway rejected or never took, or reported
  ``rejected``/``failed`` that the gateway took; a malformed frame where the
  workload had none; a command other than the one asked for; priority or expiry
  changed on the way; data sent to a server the client should have refused; a hot
  reconnect loop; a feedback list reported wrong;
- NON-STRICT: nothing lost, but a duplicate (not flagged by the client where the
  case makes them unavoidable), a rejection reported with the wrong status or not
  at all, a malformed line written instead of refused locally (the gateway caught
  it), or more connections than a sane backoff makes;
- otherwise OK (INFORMATIONAL for figure-only cases).

Without a client report (``conform serve``, or a client that writes none) only the
wire is graded.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from ._model import (
    Arrival,
    Case,
    ClientReport,
    Expect,
    Fate,
    Grade,
    Observation,
    Reported,
    Service,
    WorkItem,
)


@attrs.frozen(kw_only=True)
class Verdict:
    grade: Grade
    #: Why the grade is not OK, FAILED reasons first.
    findings: tuple[str, ...] = ()
    figures: Mapping[str, Any] = attrs.field(factory=dict)


def ranges(indices: Iterable[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3, 7"``."""
    values = sorted(set(indices))
    parts: list[str] = []
    start = prev = None
    for value in values:
        if start is None:
            start = prev = value
        elif prev is not None and value == prev + 1:
            prev = value
        else:
            parts.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = value
    if start is not None:
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ", ".join(parts)


class _Findings:
    def __init__(self) -> None:
        self.failed: list[str] = []
        self.non_strict: list[str] = []

    def fail(self, text: str) -> None:
        self.failed.append(text)

    def soft(self, text: str) -> None:
        self.non_strict.append(text)


def grade(
    case: Case,
    observation: Observation,
    report: ClientReport | None,
    *,
    timed_out: bool = False,
) -> Verdict:
    """Grade one case. ``report`` is None when only the wire can be graded."""
    figures = _figures(case, observation, report)
    if report is not None and report.unimplemented is not None:
        return Verdict(
            grade=Grade.UNIMPLEMENTED,
            findings=(f"the client does not support this: {report.unimplemented}",),
            figures=figures,
        )
    found = _Findings()
    if timed_out:
        found.fail(f"the client did not finish within the deadline of {case.deadline:g} s (hang)")
    if report is not None:
        for problem in report.problems:
            found.soft(problem)
    if case.service is Service.FEEDBACK:
        _grade_feedback(case, observation, report, found)
    else:
        _grade_gateway(case, observation, report, found)
    _grade_connections(case, observation, found)
    if found.failed:
        result = Grade.FAILED
    elif found.non_strict:
        result = Grade.NON_STRICT
    elif case.informational:
        result = Grade.INFORMATIONAL
    else:
        result = Grade.OK
    findings = tuple(dict.fromkeys(found.failed + found.non_strict))  # once each, in order
    return Verdict(grade=result, findings=findings, figures=figures)


def _grade_gateway(
    case: Case, obs: Observation, report: ClientReport | None, found: _Findings
) -> None:
    delivered: Counter[int] = Counter()
    first_rejection: dict[int, int] = {}  # index -> connection of its first rejection
    resent_after_rejection: set[int] = set()
    for arrival in obs.arrivals:
        if arrival.index is None:
            continue
        if arrival.fate is Fate.DELIVERED:
            delivered[arrival.index] += 1
        rejected_on = first_rejection.get(arrival.index)
        if rejected_on is not None and arrival.connection > rejected_on:
            resent_after_rejection.add(arrival.index)
        if arrival.fate is Fate.REJECTED and arrival.index not in first_rejection:
            first_rejection[arrival.index] = arrival.connection

    lost: list[int] = []
    duplicated: list[int] = []
    unflagged: list[int] = []
    misreported: list[str] = []
    unreported: list[int] = []
    reached: list[int] = []  # undeliverable, yet they reached the server
    claimed: list[int] = []  # undeliverable, yet reported accepted
    outcomes: Mapping[int, Reported] = report.outcomes if report is not None else {}
    by_index = {item.index: item for item in case.workload}
    for item in case.workload:
        got = outcomes.get(item.index)
        count = delivered[item.index]
        if item.expect is Expect.DELIVER:
            if count == 0:
                lost.append(item.index)
            elif count > 1:
                duplicated.append(item.index)
                if (
                    case.duplicates_allowed
                    and report is not None
                    and not (got is not None and got.possible_duplicate)
                ):
                    unflagged.append(item.index)
            if report is not None:
                if got is None:
                    unreported.append(item.index)
                elif count and got.outcome != "accepted":
                    misreported.append(
                        f"{item.index} reported {_said(got)} but the gateway accepted it"
                    )
        elif item.expect is Expect.REJECT:
            if item.index not in first_rejection:
                if count:
                    found.fail(f"{item.index} was accepted; the case rejects it")
                else:
                    lost.append(item.index)
            if item.index in resent_after_rejection:
                found.fail(
                    f"{item.index} was written again after the gateway rejected it "
                    f"(status {item.status}): Apple rejects it again and it costs a connection"
                )
            if report is not None:
                if got is None:
                    unreported.append(item.index)
                elif got.outcome == "accepted":
                    misreported.append(
                        f"{item.index} reported accepted but the gateway rejected it "
                        f"(status {item.status})"
                    )
                elif got.outcome != "rejected" or got.status != item.status:
                    found.soft(
                        f"{item.index} reported {_said(got)}; expected rejected "
                        f"(status {item.status})"
                    )
        elif item.expect is Expect.REFUSE:
            if count:
                found.fail(
                    f"{item.index} is malformed as given ({_malformed(item)}) but arrived "
                    "well-formed: the client changed it (padded, truncated or rewrote it)"
                )
            if report is not None and got is not None and got.outcome == "accepted":
                misreported.append(f"{item.index} ({_malformed(item)}) reported accepted")
        elif item.expect is Expect.UNDELIVERABLE:
            if count:
                reached.append(item.index)
            if report is not None:
                if got is None:
                    unreported.append(item.index)
                elif got.outcome == "accepted":
                    claimed.append(item.index)

    if lost:
        found.fail(f"lost {len(lost)}: {ranges(lost)} (never accepted by the gateway)")
    if reached:
        found.fail(f"{ranges(reached)} reached a server the client should have refused")
    if claimed:
        found.fail(f"{ranges(claimed)} reported accepted; nothing can have been")
    for text in misreported[:5]:
        found.fail(text)
    if len(misreported) > 5:
        found.fail(f"... and {len(misreported) - 5} more misreported")
    if duplicated:
        if not case.duplicates_allowed:
            found.soft(f"delivered more than once: {ranges(duplicated)}")
        elif unflagged:
            found.soft(
                f"delivered more than once and not reported as possible duplicates: "
                f"{ranges(unflagged)}"
            )
    if unreported:
        found.soft(f"no outcome reported for {ranges(unreported)}")

    refusals = [item for item in case.workload if item.expect is Expect.REFUSE]
    for bad in obs.bad_frames:
        if refusals:
            found.soft(
                f"wrote a notification the gateway refuses (status {bad.status}: {bad.reason}); "
                "PROTOCOL.md limits can be checked before writing"
            )
        else:
            found.fail(f"wrote a malformed frame (status {bad.status}: {bad.reason})")

    for arrival in obs.arrivals:
        wanted = by_index.get(arrival.index) if arrival.index is not None else None
        if wanted is not None and wanted.command is not None and arrival.command != wanted.command:
            found.fail(f"asked for command {wanted.command}, wrote command {arrival.command}")
            break
    for arrival in obs.arrivals:
        spec = by_index.get(arrival.index) if arrival.index is not None else None
        if spec is None or arrival.fate is not Fate.DELIVERED:
            continue
        _check_fields(spec, arrival, found)
    if obs.foreign:
        found.soft(f"{obs.foreign} notifications with tokens that are not in the workload")


def _check_fields(item: WorkItem, arrival: Arrival, found: _Findings) -> None:
    if item.priority is not None and arrival.priority not in (item.priority, None):
        found.fail(f"{item.index}: priority {item.priority} arrived as {arrival.priority}")
    if item.priority is not None and arrival.priority is None and item.priority != 10:
        found.fail(f"{item.index}: priority {item.priority} was not sent (10 is assumed)")
    if item.expiry is not None and arrival.command != 0 and arrival.expiry != item.expiry:
        found.fail(f"{item.index}: expiry {item.expiry} arrived as {arrival.expiry}")


def _grade_feedback(
    case: Case, obs: Observation, report: ClientReport | None, found: _Findings
) -> None:
    if not any(conn.handshake == "ok" for conn in obs.connections):
        found.fail("never connected to the feedback service")
        return
    if report is None:
        if not obs.feedback_complete:
            found.fail("the client left before the service had written its list")
        return
    expected = {entry.token: entry.timestamp for entry in case.script.feedback}
    reported = dict(report.feedback or ())
    wanted = set(case.feedback_expected)
    missing = wanted - set(reported)
    extra = set(reported) - wanted
    if missing:
        found.fail(f"{len(missing)} of the {len(wanted)} feedback tuples not reported")
    if extra:
        found.fail(
            f"{len(extra)} tuples reported that the service did not list for this certificate"
        )
    for token in wanted & set(reported):
        if reported[token] != expected[token]:
            found.fail(
                f"tuple {token.hex()[:12]}...: timestamp {reported[token]}, "
                f"the service sent {expected[token]}"
            )
            break


def _grade_connections(case: Case, obs: Observation, found: _Findings) -> None:
    count = len(obs.connections)
    if count >= case.hot_loop:
        found.fail(f"hot reconnect loop: {count} connections (limit {case.hot_loop})")
    elif count > case.max_connections:
        found.soft(
            f"{count} connections, more than {case.max_connections}: reconnecting faster "
            "than a sane backoff"
        )


def _said(got: Reported) -> str:
    if got.status is not None:
        return f"{got.outcome} (status {got.status})"
    return got.outcome


def _malformed(item: WorkItem) -> str:
    if len(item.token) != 32:
        return f"{len(item.token)}-byte token"
    if len(item.payload) > 2048:
        return f"{len(item.payload)}-byte payload"
    if item.priority not in (None, 5, 10):
        return f"priority {item.priority}"
    return "malformed"


def _figures(case: Case, obs: Observation, report: ClientReport | None) -> dict[str, Any]:
    opened = [c.opened for c in obs.connections]
    closed = [c.closed for c in obs.connections if c.closed is not None]
    gaps = [later - earlier for earlier, later in itertools.pairwise(opened)]
    delivered = [a for a in obs.arrivals if a.fate is Fate.DELIVERED]
    span = (max(closed) - min(opened)) if opened and closed else None
    figures: dict[str, Any] = {
        "connections": len(obs.connections),
        "handshakes_failed": sum(1 for c in obs.connections if c.handshake.startswith("failed")),
        "arrivals": len(obs.arrivals),
        "delivered": len(delivered),
        "duplicates": len(delivered) - len({a.index for a in delivered}),
        "bad_frames": len(obs.bad_frames),
        "probes": obs.probes,
        "bytes_from_client": sum(c.bytes_in for c in obs.connections),
        "bytes_to_client": sum(c.bytes_out for c in obs.connections),
        "min_reconnect_gap_s": round(min(gaps), 4) if gaps else None,
        "duration_s": round(span, 4) if span is not None else None,
    }
    if delivered and span:
        figures["delivered_per_s"] = round(len(delivered) / span, 1)
    if case.service is Service.FEEDBACK:
        figures["feedback_written"] = obs.feedback_written
    if report is not None:
        figures["client_exit_code"] = report.exit_code
        figures["reported"] = len(report.outcomes)
    return figures
