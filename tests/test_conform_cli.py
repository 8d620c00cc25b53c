"""``apns-legacy conform run`` and ``conform serve`` as users run them: real TCP and TLS on
127.0.0.1, the client as a subprocess. Few and bounded: each needs real time.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET

import trio

from apns_legacy.cli import main
from apns_legacy.conform import CASES, Grade, make_conform_pki, select_cases
from apns_legacy.conform._serve import ConformServer
from apns_legacy.conform.our_client import run_workload
from apns_legacy.tls import open_tls_stream
from apns_legacy.wire import encode_frame

OUR_CLIENT = (
    f"{shlex.quote(sys.executable)} -m apns_legacy.conform.our_client "
    "{host} {port} {certs} {workload} {result}"
)


def test_list_prints_every_case(capsys):
    assert main(["conform", "run", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == [c.id for c in CASES]
    assert main(["conform", "run", "--list", "--cases", "feedback.*"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_usage_errors_exit_2(capsys):
    assert main(["conform", "run", "--exec", OUR_CLIENT, "--cases", "nope.*"]) == 2
    assert "--cases: 'nope.*' matches no case" in capsys.readouterr().err
    assert main(["conform", "run", "--exec", "true"]) == 2
    assert "{host} and {port}" in capsys.readouterr().err
    assert main(["conform", "run"]) == 2
    assert main(["conform", "run", "--exec", OUR_CLIENT, "--deadline", "0"]) == 2


def test_run_our_client_and_write_every_report(tmp_path):
    out = tmp_path / "report"
    chosen = "reject.mid,pieces.1+5,reject.close-unread,feedback.pieces,tls.untrusted-server"
    command = [
        sys.executable, "-m", "apns_legacy", "conform", "run", "--exec", OUR_CLIENT,
        "--cases", chosen, "--out", str(out), "--agent", "ours",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    # The terminal tree: a group heading, then a mark per case.
    assert "reject\n  ✔ reject.mid:" in done.stdout
    assert "5 cases: 5 OK" in done.stdout
    index = json.loads((out / "index.json").read_text())
    assert {e["grade"] for e in index["agents"]["ours"].values()} == {"OK"}
    detail = json.loads((out / "ours" / "pieces.1+5.json").read_text())
    first = detail["connections"][0]
    assert first["to_client"]["head"] == "08080000000b"  # 08 08 <id 11>: line 10
    assert first["from_client"]["total"] > 0
    assert first["from_client"]["head"].startswith("02")
    assert any("in pieces 1+5" in t["event"] for t in detail["timeline"])
    assert detail["report"]["outcomes"]["10"]["outcome"] == "rejected"
    assert 10_000 < detail["figures"]["client_peak_rss_kib"] < 2_000_000  # a Python process
    suite = ET.parse(out / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    assert suite.get("tests") == "5"
    assert suite.get("failures") == "0"
    page = (out / "index.html").read_text()
    assert "<script" not in page
    assert "http" not in page.split("<body>")[1]
    assert page.count("<details") == 5


def test_a_hanging_client_fails_at_the_deadline(tmp_path):
    out = tmp_path / "report"
    command = [
        sys.executable, "-m", "apns_legacy", "conform", "run",
        "--exec", "sleep 60 # {host} {port}", "--cases", "reject.mid",
        "--deadline", "1", "--out", str(out), "--agent", "sleeper",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert "did not finish within the deadline of 1 s (hang)" in done.stdout
    entry = json.loads((out / "index.json").read_text())["agents"]["sleeper"]["reject.mid"]
    assert entry["grade"] == "FAILED"
    assert entry["duration_s"] < 10


async def test_serve_grades_whoever_connects(tmp_path):
    """Our sender through the shared port (case by token), the feedback case on its own
    port, and openssl s_client (a TLS client nobody here wrote) writing raw frames."""
    pki = make_conform_pki()
    certs = pki.write_certs(tmp_path / "certs")
    cases = select_cases(["reject.mid,feedback.empty,tls.client-cert"])
    results = []
    all_graded = trio.Event()

    def on_result(result) -> None:
        results.append(result)
        if len(results) == len(cases):
            all_graded.set()

    server = ConformServer(cases, pki, on_result, quiet=0.3)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            info = await nursery.start(server.serve)
            host, port = info["gateway"].split(":")
            context = pki.client_context()

            async def connect_shared() -> trio.abc.Stream:
                return await open_tls_stream(host, int(port), context)

            async def connect_feedback() -> trio.abc.Stream:
                return await open_tls_stream(host, info["cases"]["feedback.empty"], context)

            reject_mid = [json.loads(line) for line in cases[0].workload_lines()]
            await run_workload(reject_mid, connect_shared)
            await run_workload([{"feedback": True}], connect_feedback)

            frames = b"".join(
                encode_frame(item.index + 1, item.token, item.payload) for item in cases[2].workload
            )
            await trio.run_process(
                [
                    "openssl", "s_client", "-quiet", "-no_ign_eof", "-connect",
                    f"127.0.0.1:{info['cases']['tls.client-cert']}",
                    "-cert", str(certs / "client.pem"), "-key", str(certs / "client-key.pem"),
                    "-CAfile", str(certs / "ca.pem"),
                ],
                stdin=frames,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )  # fmt: skip
            await all_graded.wait()
            nursery.cancel_scope.cancel()
    grades = {r.case.id: (r.grade, r.verdict.findings) for r in results}
    assert grades == {
        "reject.mid": (Grade.OK, ()),
        "feedback.empty": (Grade.OK, ()),
        "tls.client-cert": (Grade.OK, ()),
    }
    # The agent is named after the client certificate.
    assert {r.agent for r in results} == {"Apple Push Services: com.example.app"}


async def test_serve_command_line(tmp_path):
    """`conform serve` as a subprocess: its ready line, our wrapper against a case port,
    the report written when the case is graded, exit 0 on SIGINT."""
    import signal
    from functools import partial

    out = tmp_path / "report"
    command = [
        sys.executable, "-m", "apns_legacy", "conform", "serve", "--out", str(out),
        "--cases", "tls.client-cert", "--agent", "ours", "--for", "60",
    ]  # fmt: skip
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            process = await nursery.start(
                partial(
                    trio.run_process, command, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, check=False,
                )
            )  # fmt: skip
            line = b""
            while not line.endswith(b"\n"):
                line += await process.stdout.receive_some(1)
            ready = json.loads(line)
            assert ready["workloads"] == str(out / "workloads")
            port = ready["cases"]["tls.client-cert"]
            wrapper = [
                sys.executable, "-m", "apns_legacy.conform.our_client", "127.0.0.1", str(port),
                ready["certs"], str(out / "workloads" / "tls.client-cert.jsonl"),
                str(tmp_path / "result.jsonl"),
            ]  # fmt: skip
            done = await trio.run_process(wrapper, capture_stderr=True, check=False)
            assert done.returncode == 0, done.stderr
            # The tree line on stderr says the case was graded (after its quiet period).
            log = b""
            while b"tls.client-cert:" not in log:
                chunk = await process.stderr.receive_some()
                assert chunk, log
                log += chunk
            assert b"[OK]" in log
            process.send_signal(signal.SIGINT)
            assert await process.wait() == 0
    entry = json.loads((out / "index.json").read_text())["agents"]["ours"]["tls.client-cert"]
    assert entry["grade"] == "OK"
    detail = json.loads((out / "ours" / "tls.client-cert.json").read_text())
    assert detail["figures"]["delivered"] == 10
