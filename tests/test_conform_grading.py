"""The conformance case model and grading, as pure code: hand-made records, no I/O."""

from __future__ import annotations

import json

import pytest

from apns_legacy.conform import (
    CASES,
    ClientReport,
    Grade,
    Observation,
    Reported,
    grade,
    make_token,
    parse_result_lines,
    select_cases,
    token_case,
    token_index,
)
from apns_legacy.conform._grading import ranges
from apns_legacy.conform._model import Arrival, BadFrame, ConnectionLog, Expect, Fate, WireLog


def case(case_id):
    return select_cases([case_id])[0]


def arrive(obs, index, connection=1, fate=Fate.DELIVERED, command=2, priority=10, expiry=0):
    obs.arrivals.append(
        Arrival(
            connection=connection,
            at=0.0,
            index=index,
            token=make_token(1, index),
            identifier=index + 1,
            command=command,
            priority=priority,
            expiry=expiry,
            fate=fate,
        )
    )


def connections(obs, count):
    for number in range(1, count + 1):
        obs.connections.append(ConnectionLog(number=number, opened=number * 0.5, handshake="ok"))


def accepted_report(indices, overrides=None):
    outcomes = {i: Reported(outcome="accepted") for i in indices}
    outcomes.update(overrides or {})
    return ClientReport(outcomes=outcomes)


def perfect_reject_mid():
    """What a correct client leaves behind in reject.mid: 0-19, 20 rejected, 21-49 resent."""
    obs = Observation()
    connections(obs, 2)
    for i in range(20):
        arrive(obs, i)
    arrive(obs, 20, fate=Fate.REJECTED)
    for i in range(21, 50):
        arrive(obs, i, connection=2)
    report = accepted_report(range(50), {20: Reported(outcome="rejected", status=8)})
    return obs, report


def test_catalogue_ids_are_unique_and_cover_the_issue_list():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    groups = {c.group for c in CASES}
    assert {
        "reject",
        "shutdown",
        "reset",
        "delay",
        "pieces",
        "env",
        "idle",
        "slow",
        "frames",
        "command",
        "feedback",
        "tls",
        "info",
    } <= groups
    for c in CASES:
        assert c.requirement
        assert c.behaviour
        assert c.expectation
        assert c.title


def test_tokens_carry_case_and_index():
    token = make_token(7, 1234)
    assert len(token) == 32
    assert token_case(token) == 7
    assert token_index(token) == 1234
    assert len(make_token(7, 3, 31)) == 31
    assert token_index(make_token(7, 3, 31)) == 3
    assert token_case(bytes(32)) is None
    assert token_index(bytes(32)) is None


def test_case_tokens_are_distinct_across_the_catalogue():
    tokens = [item.token for c in CASES for item in c.workload]
    assert len(tokens) == len(set(tokens))


def test_workload_lines_are_json_with_payload_as_string():
    lines = [json.loads(line) for line in case("frames.priority").workload_lines()]
    assert lines[3]["priority"] == 7
    assert lines[6]["expiry"] == 1900000000
    assert all(isinstance(line["payload"], str) for line in lines)
    assert json.loads(case("command.simple").workload_lines()[0])["command"] == 0
    assert case("feedback.empty").workload_lines() == ['{"feedback": true}']


def test_select_cases_by_glob_group_and_list():
    assert [c.id for c in select_cases(["pieces.*"])] == ["pieces.1+5", "pieces.3+3"]
    assert {c.id for c in select_cases(["tls"])} == {
        "tls.client-cert",
        "tls.untrusted-server",
        "tls.wrong-name",
    }
    assert len(select_cases(["reject.mid,feedback.*"])) == 4
    with pytest.raises(ValueError, match=r"nothing\.here"):
        select_cases(["nothing.here"])


def test_ranges():
    assert ranges([5, 1, 2, 3, 9, 10]) == "1-3, 5, 9-10"
    assert ranges([]) == ""


def test_correct_client_is_ok():
    obs, report = perfect_reject_mid()
    verdict = grade(case("reject.mid"), obs, report)
    assert verdict.grade is Grade.OK, verdict.findings
    assert verdict.figures["delivered"] == 49
    assert verdict.figures["connections"] == 2


def test_wire_only_grading_without_a_report():
    obs, _ = perfect_reject_mid()
    assert grade(case("reject.mid"), obs, None).grade is Grade.OK


def test_a_loss_fails_and_names_the_lines():
    obs, report = perfect_reject_mid()
    obs.arrivals = [a for a in obs.arrivals if a.index not in (30, 31, 32)]
    verdict = grade(case("reject.mid"), obs, report)
    assert verdict.grade is Grade.FAILED
    assert "lost 3: 30-32 (never accepted by the gateway)" in verdict.findings


def test_resending_the_rejected_one_fails():
    obs, report = perfect_reject_mid()
    arrive(obs, 20, connection=2, fate=Fate.REJECTED)
    verdict = grade(case("reject.mid"), obs, report)
    assert verdict.grade is Grade.FAILED
    assert any("written again after the gateway rejected it" in f for f in verdict.findings)


def test_a_duplicate_is_non_strict():
    obs, report = perfect_reject_mid()
    arrive(obs, 5, connection=2)
    verdict = grade(case("reject.mid"), obs, report)
    assert verdict.grade is Grade.NON_STRICT
    assert verdict.findings == ("delivered more than once: 5",)


def test_duplicates_after_a_reset_are_ok_only_when_flagged():
    c = case("reset.no-frame")
    obs = Observation()
    connections(obs, 2)
    for i in range(26):
        arrive(obs, i)
    for i in range(20, 50):
        arrive(obs, i, connection=2)
    flagged = {i: Reported(outcome="accepted", possible_duplicate=i >= 20) for i in range(50)}
    assert grade(c, obs, ClientReport(outcomes=flagged)).grade is Grade.OK
    assert grade(c, obs, None).grade is Grade.OK
    unflagged = accepted_report(range(50))
    verdict = grade(c, obs, unflagged)
    assert verdict.grade is Grade.NON_STRICT
    assert "not reported as possible duplicates: 20-25" in verdict.findings[0]


def test_misreports_fail():
    obs, report = perfect_reject_mid()
    outcomes = dict(report.outcomes)
    outcomes[20] = Reported(outcome="accepted")
    verdict = grade(case("reject.mid"), obs, ClientReport(outcomes=outcomes))
    assert verdict.grade is Grade.FAILED
    assert "20 reported accepted but the gateway rejected it (status 8)" in verdict.findings
    outcomes = dict(report.outcomes)
    outcomes[3] = Reported(outcome="failed")
    verdict = grade(case("reject.mid"), obs, ClientReport(outcomes=outcomes))
    assert "3 reported failed but the gateway accepted it" in verdict.findings


def test_status_10_reported_as_a_rejection_fails():
    # node-apn 1.x emits a transmissionError for the notification status 10 names.
    c = case("shutdown.status-10")
    obs = Observation()
    connections(obs, 2)
    for i in range(26):
        arrive(obs, i)
    for i in range(26, 50):
        arrive(obs, i, connection=2)
    assert grade(c, obs, accepted_report(range(50))).grade is Grade.OK
    report = accepted_report(range(50), {25: Reported(outcome="rejected", status=10)})
    verdict = grade(c, obs, report)
    assert verdict.grade is Grade.FAILED
    assert verdict.findings == ("25 reported rejected (status 10) but the gateway accepted it",)


def test_wrong_status_or_missing_report_is_non_strict():
    obs, report = perfect_reject_mid()
    outcomes = dict(report.outcomes)
    outcomes[20] = Reported(outcome="rejected", status=7)
    assert grade(case("reject.mid"), obs, ClientReport(outcomes=outcomes)).grade is Grade.NON_STRICT
    del outcomes[20]
    verdict = grade(case("reject.mid"), obs, ClientReport(outcomes=outcomes))
    assert verdict.findings == ("no outcome reported for 20",)


def test_hang_fails_and_unimplemented_wins():
    obs, report = perfect_reject_mid()
    verdict = grade(case("reject.mid"), obs, report, timed_out=True)
    assert verdict.grade is Grade.FAILED
    assert "hang" in verdict.findings[0]
    declined = ClientReport(unimplemented="command 0")
    assert grade(case("command.simple"), Observation(), declined).grade is Grade.UNIMPLEMENTED


def test_reconnect_rate():
    c = case("env.wrong")
    report = ClientReport(outcomes={i: Reported(outcome="failed") for i in range(10)})
    for count, expected in ((3, Grade.OK), (9, Grade.NON_STRICT), (40, Grade.FAILED)):
        obs = Observation()
        connections(obs, count)
        assert grade(c, obs, report).grade is expected, count
    obs = Observation()
    connections(obs, 2)
    lying = ClientReport(outcomes={i: Reported(outcome="accepted") for i in range(10)})
    verdict = grade(c, obs, lying)
    assert verdict.grade is Grade.FAILED
    assert verdict.findings == ("0-9 reported accepted; nothing can have been",)


def test_malformed_lines_refused_locally_are_ok_and_on_the_wire_non_strict():
    c = case("frames.token-length")
    good = [i.index for i in c.workload if i.expect is Expect.DELIVER]
    obs = Observation()
    connections(obs, 1)
    for i in good:
        arrive(obs, i)
    report = accepted_report(good, {3: Reported(outcome="refused"), 6: Reported(outcome="refused")})
    assert grade(c, obs, report).grade is Grade.OK
    obs.bad_frames.append(
        BadFrame(
            connection=1,
            at=0,
            command=2,
            status=5,
            identifier=4,
            reason="token is 31 bytes, not 32",
        )
    )
    assert grade(c, obs, report).grade is Grade.NON_STRICT
    arrive(obs, 3)  # arrived well-formed: the client padded it to 32 bytes
    assert grade(c, obs, report).grade is Grade.FAILED


def test_malformed_frame_in_an_ordinary_case_fails():
    obs, report = perfect_reject_mid()
    obs.bad_frames.append(
        BadFrame(
            connection=1,
            at=0,
            command=2,
            status=128,
            identifier=3,
            reason="priority 7 is neither 5 nor 10",
        )
    )
    assert grade(case("reject.mid"), obs, report).grade is Grade.FAILED


def test_command_priority_and_expiry_are_checked():
    c = case("frames.priority")
    good = [i.index for i in c.workload if i.expect is Expect.DELIVER]
    obs = Observation()
    connections(obs, 1)
    for i in good:
        arrive(obs, i, priority=5 if i == 5 else 10, expiry=1900000000 if i == 6 else 0)
    report = accepted_report(good, {3: Reported(outcome="refused")})
    assert grade(c, obs, report).grade is Grade.OK
    obs.arrivals = [a for a in obs.arrivals if a.index != 5]
    arrive(obs, 5, priority=10)
    verdict = grade(c, obs, report)
    assert verdict.findings == ("5: priority 5 arrived as 10",)
    obs = Observation()
    connections(obs, 1)
    for i in range(20):
        arrive(obs, i, command=2)
    verdict = grade(case("command.simple"), obs, accepted_report(range(20)))
    assert verdict.findings == ("asked for command 0, wrote command 2",)


def test_feedback_grading():
    c = case("feedback.topics")
    obs = Observation(feedback_written=5, feedback_complete=True)
    connections(obs, 1)
    mine = [(e.token, e.timestamp) for e in c.script.feedback if e.topic == "com.example.app"]
    theirs = [(e.token, e.timestamp) for e in c.script.feedback if e.topic != "com.example.app"]
    assert grade(c, obs, ClientReport(feedback=tuple(mine))).grade is Grade.OK
    assert grade(c, obs, ClientReport(feedback=tuple(mine[:3]))).grade is Grade.FAILED
    assert grade(c, obs, ClientReport(feedback=tuple(mine + theirs))).grade is Grade.FAILED
    shifted = tuple((t, ts + 1) for t, ts in mine)
    assert grade(c, obs, ClientReport(feedback=shifted)).grade is Grade.FAILED
    assert grade(case("feedback.empty"), obs, ClientReport()).grade is Grade.OK


def test_informational_case():
    c = case("info.throughput")
    obs = Observation()
    connections(obs, 1)
    for i in range(5000):
        arrive(obs, i)
    assert grade(c, obs, None).grade is Grade.INFORMATIONAL
    obs.arrivals.pop()
    assert grade(c, obs, None).grade is Grade.FAILED


def test_parse_result_lines():
    report = parse_result_lines(
        [
            '{"index": 0, "outcome": "accepted"}',
            '{"index": 1, "outcome": "rejected", "status": 8}',
            '{"index": 2, "outcome": "accepted", "possible_duplicate": true}',
            "",
            "not json",
            '{"index": "x", "outcome": "accepted"}',
            '{"index": 3, "outcome": "maybe"}',
        ],
        exit_code=0,
    )
    assert report.outcomes[1] == Reported(outcome="rejected", status=8)
    assert report.outcomes[2].possible_duplicate
    assert len(report.problems) == 3
    assert report.problems[0].startswith("result line 5")
    assert parse_result_lines(['{"unimplemented": "command 0"}']).unimplemented == "command 0"
    fb = parse_result_lines(['{"feedback_token": "0a0b", "timestamp": 5}'])
    assert fb.feedback == ((b"\x0a\x0b", 5),)


def test_wire_log_keeps_first_and_last_kib():
    log = WireLog()
    log.add(bytes(range(256)) * 4)
    log.add(b"\xaa" * 3000)
    log.add(b"\xbb" * 10)
    data = log.to_json()
    assert data["total"] == 4034
    assert bytes.fromhex(data["head"]) == bytes(range(256)) * 4
    tail = bytes.fromhex(data["tail"])
    assert len(tail) == 1024
    assert tail.endswith(b"\xbb" * 10)
    assert data["skipped"] == 4034 - 2048


def test_terminal_tree_marks_and_ascii_fallback():
    import io

    from apns_legacy.conform import CaseResult
    from apns_legacy.conform._grading import Verdict
    from apns_legacy.conform._report import TerminalTree

    def result(case_id, grade_):
        return CaseResult(
            case=case(case_id),
            agent="a",
            verdict=Verdict(
                grade=grade_, findings=("lost 1: 3",) if grade_ is Grade.FAILED else ()
            ),
            observation=Observation(),
            report=None,
        )

    out = io.StringIO()
    tree = TerminalTree(out)
    tree.add(result("reject.mid", Grade.OK))
    tree.add(result("reject.two-in-window", Grade.FAILED))
    assert out.getvalue().splitlines()[:3] == [
        "reject",
        "  ✔ reject.mid: rejection mid-stream: status 8 for notification 20 of 50 [OK]",
        "  \u00d7 reject.two-in-window: two rejections in one window: status 8 for 15 and 40 of 60 "
        "[FAILED]",
    ]
    assert tree.summary() == "2 cases: 1 OK, 1 FAILED"
    latin = io.TextIOWrapper(io.BytesIO(), encoding="latin-1")
    ascii_tree = TerminalTree(latin)
    ascii_tree.add(result("reject.mid", Grade.OK))
    latin.seek(0)
    assert "  + reject.mid:" in latin.read()
    assert TerminalTree(io.StringIO()).summary() == "no case was graded"


def test_junit_and_html_from_results(tmp_path):
    import xml.etree.ElementTree as ET

    from apns_legacy.conform import CaseResult
    from apns_legacy.conform._grading import Verdict
    from apns_legacy.conform._report import ReportWriter, junit_xml

    def result(agent, case_id, grade_, findings=()):
        return CaseResult(
            case=case(case_id),
            agent=agent,
            verdict=Verdict(grade=grade_, findings=findings),
            observation=Observation(),
            report=None,
        )

    writer = ReportWriter(tmp_path)
    writer.add(result("a<b>", "reject.mid", Grade.NON_STRICT, ("delivered more than once: 5",)))
    writer.add(result("a<b>", "command.simple", Grade.UNIMPLEMENTED, ("no command 0",)))
    writer.add(result("other", "reject.mid", Grade.FAILED, ("lost 1: 3",)))
    details = list(writer.details.values())
    lenient = ET.fromstring(junit_xml(details))
    strict = ET.fromstring(junit_xml(details, strict=True))
    suites = {s.get("name"): s for s in lenient.iter("testsuite")}
    assert suites["a<b>"].get("failures") == "0"
    assert suites["a<b>"].get("skipped") == "1"
    assert suites["other"].get("failures") == "1"
    assert {s.get("name"): s.get("failures") for s in strict.iter("testsuite")} == {
        "a<b>": "1",
        "other": "1",
    }
    page = (tmp_path / "index.html").read_text()
    assert "a&lt;b&gt;" in page
    assert "<b>a<b>" not in page
    assert page.count("<details") == 3
    # A second writer on the same folder keeps what the first wrote.
    again = ReportWriter(tmp_path)
    again.add(result("third", "reject.mid", Grade.OK))
    index = json.loads((tmp_path / "index.json").read_text())
    assert set(index["agents"]) == {"a<b>", "other", "third"}
    assert (tmp_path / "a_b_" / "reject.mid.json").exists()
