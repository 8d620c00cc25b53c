"""One graded case: the case, the verdict, the record, the client's report, as JSON."""

from __future__ import annotations

from typing import Any

import attrs

from ._grading import Verdict
from ._model import Case, ClientReport, Grade, Observation


@attrs.frozen(kw_only=True)
class CaseResult:
    case: Case
    agent: str
    verdict: Verdict
    observation: Observation
    report: ClientReport | None
    timed_out: bool = False
    #: UNIX time the case started, and how long it took.
    started: float = 0.0
    duration: float = 0.0
    #: The client's command and the tail of its output (run mode).
    command: str | None = None
    output: str = ""

    @property
    def grade(self) -> Grade:
        return self.verdict.grade

    def summary(self) -> dict[str, Any]:
        """The line for this case in ``index.json``."""
        return {
            "case": self.case.id,
            "group": self.case.group,
            "title": self.case.title,
            "grade": self.grade.value,
            "findings": list(self.verdict.findings),
            "duration_s": round(self.duration, 3),
        }

    def to_json(self) -> dict[str, Any]:
        """Everything about this case: the per-case JSON file."""
        case = self.case
        obs = self.observation
        data = self.summary()
        data.update(
            {
                "agent": self.agent,
                "requirement": case.requirement,
                "behaviour": case.behaviour,
                "expectation": case.expectation,
                "deadline_s": case.deadline,
                "timed_out": self.timed_out,
                "started": self.started,
                "figures": dict(self.verdict.figures),
                "command": self.command,
                "client_output": self.output,
                "timeline": [
                    {"t": t, "connection": conn, "event": text} for t, conn, text in obs.timeline
                ],
                "connections": [
                    {
                        "number": c.number,
                        "opened": round(c.opened, 6),
                        "closed": None if c.closed is None else round(c.closed, 6),
                        "handshake": c.handshake,
                        "client_name": c.client_name,
                        "ending": c.ending,
                        "from_client": c.wire_in.to_json(),
                        "to_client": c.wire_out.to_json(),
                    }
                    for c in obs.connections
                ],
                "bad_frames": [attrs.asdict(b) for b in obs.bad_frames],
                "report": None
                if self.report is None
                else {
                    "outcomes": {
                        str(index): attrs.asdict(reported)
                        for index, reported in sorted(self.report.outcomes.items())
                    },
                    "unimplemented": self.report.unimplemented,
                    "feedback": None
                    if self.report.feedback is None
                    else [[t.hex(), ts] for t, ts in self.report.feedback],
                    "exit_code": self.report.exit_code,
                    "problems": list(self.report.problems),
                },
            }
        )
        return data
