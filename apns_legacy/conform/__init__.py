"""``apns-legacy conform``: grade any binary-protocol APNs client, as h2spec and autobahn do.

A catalogue of scripted cases (:data:`CASES`), each a gateway or feedback service
that behaves as Apple's did in one situation, a workload for the client, and
expectations per grade (:class:`Grade`). ``conform run`` drives a client's command
once per case; ``conform serve`` grades whoever connects; :func:`grade_in_process`
grades a Python client over memory streams. Reports: a terminal tree, JUnit XML,
JSON, one HTML page.

An application package: it uses the wire, TLS and client layers; only the command
line imports it.
"""

from __future__ import annotations

from ._catalogue import CASES, CLIENT_TOPIC, case_by_number, case_number, select_cases
from ._gateway import CaseGateway
from ._grading import Verdict, grade
from ._harness import ClientEnv, ClientUnderTest, grade_in_process
from ._model import (
    Case,
    ClientReport,
    Expect,
    Grade,
    Observation,
    Reported,
    Script,
    Service,
    WorkItem,
    make_token,
    parse_result_lines,
    token_case,
    token_index,
)
from ._pki import P12_PASSPHRASE, ConformPKI, make_conform_pki
from ._results import CaseResult

__all__ = [
    "CASES",
    "CLIENT_TOPIC",
    "Case",
    "CaseGateway",
    "CaseResult",
    "ClientEnv",
    "ClientReport",
    "ClientUnderTest",
    "ConformPKI",
    "Expect",
    "Grade",
    "Observation",
    "P12_PASSPHRASE",
    "Reported",
    "Script",
    "Service",
    "Verdict",
    "WorkItem",
    "case_by_number",
    "case_number",
    "grade",
    "grade_in_process",
    "make_conform_pki",
    "make_token",
    "parse_result_lines",
    "select_cases",
    "token_case",
    "token_index",
]
