"""``conform run``: for each case, a scripted gateway on a free loopback port and one run
of the client's command, then the grade (h2specd's ``--exec``, BoGo's shim).

The command is a template; ``{host}``, ``{port}``, ``{certs}``, ``{workload}`` and
``{result}`` are replaced (shell-quoted) and it runs under ``/bin/sh -c`` in its own
process group, with ``APNS_CONFORM_CASE``, ``APNS_CONFORM_SERVICE`` (``gateway`` or
``feedback``) and ``APNS_CONFORM_P12_PASSPHRASE`` in its environment. A client still
running at the case's deadline is killed (its whole process group) and the case is
FAILED (a hang).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

import attrs
import trio

from ._catalogue import case_number
from ._gateway import CaseGateway
from ._grading import grade
from ._model import Case, ClientReport, parse_result_lines
from ._pki import P12_PASSPHRASE, ConformPKI, make_conform_pki
from ._results import CaseResult

PLACEHOLDERS: Final = ("{host}", "{port}", "{certs}", "{workload}", "{result}")
#: Most client output kept per case (the tail).
_OUTPUT_KEEP: Final = 8192
#: After the client exits, how long its connections may take to close.
_LINGER: Final = 1.0


def fill(template: str, values: dict[str, str]) -> str:
    """Replace each ``{name}`` in ``template`` with the shell-quoted value."""
    command = template
    for name, value in values.items():
        command = command.replace("{" + name + "}", shlex.quote(value))
    return command


# Runs the shell, waits, and writes the peak RSS of everything it waited for (the
# client and its children: RUSAGE_CHILDREN of a process that exists for this case only).
_MEASURE: Final = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[2:])\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "open(sys.argv[1], 'w').write(str(peak))\n"
    "sys.exit(code if code >= 0 else 128 - code)\n"
)


async def _run_command(
    command: str, env: dict[str, str], deadline: float, rss_path: Path
) -> tuple[int | None, bool, str]:
    """Run ``command``; (exit code or None, timed out, output tail)."""
    output = bytearray()
    process = await trio.lowlevel.open_process(
        [sys.executable, "-c", _MEASURE, str(rss_path), "/bin/sh", "-c", command],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    timed_out = False
    try:
        async with trio.open_nursery() as nursery:

            async def collect() -> None:
                assert process.stdout is not None
                while chunk := await process.stdout.receive_some(65536):
                    output.extend(chunk)
                    if len(output) > 2 * _OUTPUT_KEEP:
                        del output[:-_OUTPUT_KEEP]

            nursery.start_soon(collect)
            with trio.move_on_after(deadline) as scope:
                await process.wait()
            timed_out = scope.cancelled_caught
            _kill_group(process.pid)
    finally:
        _kill_group(process.pid)
        with trio.CancelScope(shield=True):
            await process.wait()
    text = output[-_OUTPUT_KEEP:].decode("utf-8", "replace")
    return (None if timed_out else process.returncode), timed_out, text


def _kill_group(pid: int) -> None:
    # The client's whole process group: a shell, its child, whatever they started.
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


async def run_case(
    case: Case,
    template: str,
    *,
    pki: ConformPKI,
    certs: Path,
    folder: Path,
    agent: str,
    deadline: float | None = None,
) -> CaseResult:
    """Run the client's command once against ``case`` and grade it."""
    if deadline is not None:
        case = attrs.evolve(case, deadline=deadline)
    contexts = pki.server_contexts()
    started = time.time()
    begin = trio.current_time()
    await trio.Path(folder).mkdir(parents=True, exist_ok=True)
    workload = folder / "workload.jsonl"
    result = folder / "result.jsonl"
    await trio.Path(workload).write_text(
        "".join(line + "\n" for line in case.workload_lines()), encoding="utf-8"
    )
    if await trio.Path(result).exists():
        await trio.Path(result).unlink()
    gateway = CaseGateway(case, case_number(case), contexts[case.script.server_cert])
    limit = case.deadline
    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        await nursery.start(trio.serve_listeners, gateway.serve_transport, listeners)
        command = fill(
            template,
            {
                "host": "127.0.0.1",
                "port": str(port),
                "certs": str(certs),
                "workload": str(workload),
                "result": str(result),
            },
        )
        env = dict(os.environ)
        env.update(
            APNS_CONFORM_CASE=case.id,
            APNS_CONFORM_SERVICE=case.service.value,
            APNS_CONFORM_P12_PASSPHRASE=P12_PASSPHRASE.decode(),
        )
        rss_path = folder / "peak-rss-kib"
        exit_code, timed_out, output = await _run_command(command, env, limit, rss_path)
        # The gateway still reads what the client wrote before it exited (a slow
        # reader may be seconds behind), up to the rest of the deadline.
        remaining = limit - (trio.current_time() - begin)
        with trio.move_on_after(max(_LINGER, remaining)):
            await gateway.wait_closed()
        nursery.cancel_scope.cancel()
    report: ClientReport | None = None
    if await trio.Path(result).exists():
        text = await trio.Path(result).read_text(encoding="utf-8", errors="replace")
        report = parse_result_lines(text.splitlines(), exit_code=exit_code)
    verdict = grade(case, gateway.observation, report, timed_out=timed_out)
    figures = dict(verdict.figures)
    figures["client_exit_code"] = exit_code
    if not timed_out and await trio.Path(rss_path).exists():
        text = await trio.Path(rss_path).read_text()
        figures["client_peak_rss_kib"] = int(text) if text.isdigit() else None
    return CaseResult(
        case=case,
        agent=agent,
        verdict=type(verdict)(grade=verdict.grade, findings=verdict.findings, figures=figures),
        observation=gateway.observation,
        report=report,
        timed_out=timed_out,
        started=started,
        duration=trio.current_time() - begin,
        command=command,
        output=output,
    )


async def run_cases(
    cases: Sequence[Case],
    template: str,
    *,
    agent: str,
    on_result: Callable[[CaseResult], None],
    deadline: float | None = None,
    workdir: Path | None = None,
    pki: ConformPKI | None = None,
) -> list[CaseResult]:
    """Run every case in order, handing each result to ``on_result`` as it comes."""
    pki = pki or make_conform_pki()
    results: list[CaseResult] = []
    with tempfile.TemporaryDirectory(prefix="apns-conform-") as scratch:
        base = workdir or Path(scratch)
        certs = pki.write_certs(base / "certs")
        for case in cases:
            result = await run_case(
                case,
                template,
                pki=pki,
                certs=certs,
                folder=base / case.id,
                agent=agent,
                deadline=deadline,
            )
            results.append(result)
            on_result(result)
    return results
