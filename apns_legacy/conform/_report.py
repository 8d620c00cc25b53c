"""Reports: a terminal tree (h2spec style), JUnit XML, JSON (an index plus one file per
case, with the hex wire log and the timeline) and one self-contained HTML page
(agents by cases, autobahn style).

:class:`ReportWriter` rewrites the index, the JUnit file and the HTML page after
every case, so an interrupted run keeps everything graded so far; results of other
agents already in the folder are kept (run several clients into one folder and the
page compares them).
"""

from __future__ import annotations

import html
import json
import os
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final, TextIO

from ._model import Grade
from ._results import CaseResult

MARKS: Final = {
    Grade.OK: "✔",
    Grade.NON_STRICT: "~",
    Grade.FAILED: "\u00d7",  # x-like mark, as h2spec prints
    Grade.INFORMATIONAL: "i",
    Grade.UNIMPLEMENTED: "-",
}
_COLOURS: Final = {
    "OK": "#4caf50",
    "NON-STRICT": "#e0c000",
    "FAILED": "#e53935",
    "INFORMATIONAL": "#64b5f6",
    "UNIMPLEMENTED": "#bdbdbd",
}


def is_failure(grade: Grade, *, strict: bool) -> bool:
    """Whether a grade fails the run (NON-STRICT only with ``--strict``)."""
    return grade is Grade.FAILED or (strict and grade is Grade.NON_STRICT)


class TerminalTree:
    """Prints each result as it comes, under its group's heading."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._group: str | None = None
        # A terminal that cannot print the marks (a Latin-1 locale) gets ASCII ones.
        try:
            "".join(MARKS.values()).encode(getattr(out, "encoding", None) or "utf-8")
            self.marks = dict(MARKS)
        except (UnicodeEncodeError, LookupError):
            self.marks = dict(MARKS) | {Grade.OK: "+", Grade.FAILED: "x"}
        self.counts: dict[Grade, int] = dict.fromkeys(Grade, 0)

    def add(self, result: CaseResult) -> None:
        case = result.case
        if case.group != self._group:
            self._group = case.group
            print(case.group, file=self.out)
        self.counts[result.grade] += 1
        mark = self.marks[result.grade]
        print(f"  {mark} {case.id}: {case.title} [{result.grade.value}]", file=self.out)
        for finding in result.verdict.findings[:4]:
            print(f"      {finding}", file=self.out)
        self.out.flush()

    def summary(self) -> str:
        parts = [f"{n} {grade.value}" for grade, n in self.counts.items() if n]
        if not parts:
            return "no case was graded"
        return f"{sum(self.counts.values())} cases: " + ", ".join(parts)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name) or "agent"


class ReportWriter:
    """Writes ``index.json``, ``junit.xml``, ``index.html`` and ``<agent>/<case>.json``."""

    def __init__(self, folder: str | os.PathLike[str], *, strict: bool = False) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.strict = strict
        self.index: dict[str, Any] = {"agents": {}, "cases": {}}
        self.details: dict[tuple[str, str], dict[str, Any]] = {}
        existing = self.folder / "index.json"
        if existing.exists():
            try:
                self.index = json.loads(existing.read_text(encoding="utf-8"))
                for agent, cases in self.index.get("agents", {}).items():
                    for case_id, entry in cases.items():
                        path = self.folder / entry["file"]
                        if path.exists():
                            self.details[agent, case_id] = json.loads(path.read_text("utf-8"))
            except (ValueError, KeyError, OSError):
                self.index = {"agents": {}, "cases": {}}

    def add(self, result: CaseResult) -> None:
        detail = result.to_json()
        relative = f"{_safe(result.agent)}/{_safe(result.case.id)}.json"
        path = self.folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(detail, indent=1) + "\n", encoding="utf-8")
        entry = result.summary() | {"file": relative}
        self.index.setdefault("agents", {}).setdefault(result.agent, {})[result.case.id] = entry
        self.index.setdefault("cases", {})[result.case.id] = {
            "title": result.case.title,
            "group": result.case.group,
        }
        self.index["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.details[result.agent, result.case.id] = detail
        self._write("index.json", json.dumps(self.index, indent=1) + "\n")
        self._write("junit.xml", junit_xml(self.details.values(), strict=self.strict))
        self._write("index.html", html_page(self.index, self.details))

    def _write(self, name: str, text: str) -> None:
        # Write then rename: a reader (or an interrupted run) never sees half a file.
        target = self.folder / name
        temporary = target.with_suffix(target.suffix + ".tmp")
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(target)


def junit_xml(details: Iterable[dict[str, Any]], *, strict: bool = False) -> str:
    """One ``<testsuite>`` per agent, one ``<testcase>`` per case.

    FAILED is a ``<failure>``; NON-STRICT too with ``strict``, else a pass with the
    findings in ``<system-out>``; UNIMPLEMENTED is ``<skipped>``.
    """
    suites = ET.Element("testsuites", name="apns-legacy conform")
    by_agent: dict[str, list[dict[str, Any]]] = {}
    for detail in details:
        by_agent.setdefault(detail["agent"], []).append(detail)
    for agent, cases in sorted(by_agent.items()):
        failures = skipped = 0
        suite = ET.SubElement(suites, "testsuite", name=agent)
        for detail in sorted(cases, key=lambda d: d["case"]):
            element = ET.SubElement(
                suite,
                "testcase",
                classname=f"conform.{detail['group']}",
                name=detail["case"],
                time=f"{detail['duration_s']:.3f}",
            )
            grade = Grade(detail["grade"])
            text = "\n".join(detail["findings"])
            if is_failure(grade, strict=strict):
                failures += 1
                failure = ET.SubElement(
                    element, "failure", type=grade.value, message=text.split("\n")[0][:200]
                )
                failure.text = text
            elif grade is Grade.UNIMPLEMENTED:
                skipped += 1
                ET.SubElement(element, "skipped", message=text[:200])
            if grade is not Grade.OK:
                out = ET.SubElement(element, "system-out")
                out.text = f"{grade.value}\n{text}\n{json.dumps(detail['figures'])}"
        suite.set("tests", str(len(cases)))
        suite.set("failures", str(failures))
        suite.set("skipped", str(skipped))
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def _hex_block(direction: dict[str, Any]) -> str:
    head = direction["head"]
    text = " ".join(head[i : i + 2] for i in range(0, len(head), 2))
    if direction["tail"]:
        tail = direction["tail"]
        text += f"\n... {direction['skipped']} bytes not kept ...\n"
        text += " ".join(tail[i : i + 2] for i in range(0, len(tail), 2))
    return text


def html_page(index: dict[str, Any], details: dict[tuple[str, str], dict[str, Any]]) -> str:
    """One HTML page, no external assets: a grade table (cases by agents) and details."""
    e = html.escape
    agents = sorted(index.get("agents", {}))
    cases = index.get("cases", {})
    rows = []
    for case_id in cases:
        cells = [f"<th class=case>{e(case_id)}<br><small>{e(cases[case_id]['title'])}</small></th>"]
        for agent in agents:
            entry = index["agents"][agent].get(case_id)
            if entry is None:
                cells.append("<td></td>")
                continue
            anchor = f"{_safe(agent)}--{_safe(case_id)}"
            colour = _COLOURS.get(entry["grade"], "#fff")
            cells.append(
                f'<td style="background:{colour}"><a href="#{anchor}">{e(entry["grade"])}</a></td>'
            )
        rows.append("<tr>" + "".join(cells) + "</tr>")
    sections = []
    for (agent, case_id), detail in sorted(details.items()):
        anchor = f"{_safe(agent)}--{_safe(case_id)}"
        findings = "".join(f"<li>{e(f)}</li>" for f in detail["findings"]) or "<li>none</li>"
        timeline = "\n".join(
            f"{t['t']:9.3f}  #{t['connection']}  {t['event']}" for t in detail["timeline"]
        )
        wires = "".join(
            f"<h4>connection {c['number']} ({e(c['ending'])})</h4>"
            f"<p>client to gateway, {c['from_client']['total']} bytes:</p>"
            f"<pre>{e(_hex_block(c['from_client']))}</pre>"
            f"<p>gateway to client, {c['to_client']['total']} bytes:</p>"
            f"<pre>{e(_hex_block(c['to_client']))}</pre>"
            for c in detail["connections"][:20]
        )
        sections.append(
            f'<details id="{anchor}"><summary><b>{e(agent)}</b> · {e(case_id)}: '
            f"{e(detail['grade'])}</summary>"
            f"<p><i>{e(detail['title'])}</i></p>"
            f"<p><b>Checks:</b> {e(detail['requirement'])}</p>"
            f"<p><b>Gateway:</b> {e(detail['behaviour'])}</p>"
            f"<p><b>Expected:</b> {e(detail['expectation'])}</p>"
            f"<p><b>Findings:</b></p><ul>{findings}</ul>"
            f"<p><b>Figures:</b> <code>{e(json.dumps(detail['figures']))}</code></p>"
            f"<p><b>Timeline</b> (seconds, connection, event):</p><pre>{e(timeline)}</pre>"
            f"{wires}</details>"
        )
    head = "".join(f"<th>{e(a)}</th>" for a in agents)
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=utf-8>"
        "<title>apns-legacy conform report</title><style>"
        "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
        "td,th{border:1px solid #999;padding:3px 8px;text-align:center}"
        "th.case{text-align:left;font-weight:normal}td a{color:#000;text-decoration:none}"
        "pre{background:#f4f4f4;padding:4px;white-space:pre-wrap;font-size:85%}"
        "details{margin:4px 0}</style></head><body>"
        f"<h1>apns-legacy conform</h1><p>Updated {e(str(index.get('updated', '')))}. "
        "Grades: OK, NON-STRICT (nothing lost; duplicates or fast reconnects), FAILED, "
        "INFORMATIONAL, UNIMPLEMENTED.</p>"
        f"<table><tr><th>case</th>{head}</tr>{''.join(rows)}</table>"
        f"<h2>Details</h2>{''.join(sections)}</body></html>\n"
    )
