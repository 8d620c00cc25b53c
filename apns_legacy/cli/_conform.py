"""``apns-legacy conform run|serve``: grade a binary-protocol client (see apns_legacy.conform)."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import trio

from ..conform import CASES, Grade, select_cases
from ..conform._pki import make_conform_pki
from ..conform._report import ReportWriter, TerminalTree, is_failure
from ..conform._results import CaseResult
from ..conform._runner import PLACEHOLDERS, run_cases
from ..conform._serve import ConformServer, announce, write_workloads
from ._exit import EXIT_FAILED, EXIT_OK, UsageError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "conform",
        help="grade a binary-protocol client against scripted gateway cases",
        description="A conformance checker for legacy binary APNs clients (in the manner of "
        "h2spec and autobahn): scripted gateways that behave as Apple's did, a workload per "
        "case, and a grade per case (OK, NON-STRICT, FAILED, INFORMATIONAL, UNIMPLEMENTED).",
    )
    modes = parser.add_subparsers(dest="mode", metavar="MODE")
    run = modes.add_parser(
        "run",
        help="run a client's command once per case",
        description="For each case: a scripted gateway on a free loopback port, then CMD with "
        "{host} {port} {certs} {workload} {result} filled in. Exit 0 when no case FAILED "
        "(with --strict: and none was NON-STRICT), 1 otherwise, 2 for bad usage.",
    )
    run.add_argument("--exec", dest="template", metavar="CMD", help="the client's command")
    run.add_argument("--list", action="store_true", help="print the case ids and titles")
    _common(run)
    run.add_argument("--work-dir", metavar="DIR", help="keep workloads, results and certificates")
    run.set_defaults(handler=_run)
    serve = modes.add_parser(
        "serve",
        help="one listener that grades whoever connects (wire only)",
        description="Serve the cases on loopback: a shared gateway port (the case is chosen by "
        "the token of the first notification) and one port per case. Prints one JSON line "
        "when ready. Grades on the wire alone.",
    )
    _common(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=0, help="shared gateway port (default: free)")
    serve.add_argument(
        "--case-ports", type=int, metavar="FROM", help="per-case ports from FROM (default: free)"
    )
    serve.add_argument("--cert-dir", metavar="DIR", help="where to write the client's certificates")
    serve.add_argument("--for", dest="duration", type=float, metavar="SECONDS", help="stop after")
    serve.set_defaults(handler=_serve)
    parser.set_defaults(handler=lambda args: _missing_mode(parser))


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cases", action="append", metavar="GLOB", help="case ids or groups, e.g. 'reject.*'"
    )
    parser.add_argument("--strict", action="store_true", help="NON-STRICT fails the run too")
    parser.add_argument("--agent", metavar="NAME", help="the client's name in the reports")
    parser.add_argument(
        "--out", metavar="DIR", default="conform-report", help="report folder (default %(default)s)"
    )
    parser.add_argument(
        "--deadline", type=float, metavar="SECONDS", help="deadline per case (default: the case's)"
    )


def _missing_mode(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _select(args: argparse.Namespace) -> list:  # type: ignore[type-arg]
    try:
        return select_cases(args.cases)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _check_deadline(args: argparse.Namespace) -> None:
    if args.deadline is not None and not 0 < args.deadline <= 3600:
        raise UsageError(f"--deadline must be more than 0 and at most 3600 s, not {args.deadline}")


def _run(args: argparse.Namespace) -> int:
    cases = _select(args)
    if args.list:
        for case in cases:
            print(f"{case.id}\t{case.title}")
        return EXIT_OK
    if not args.template:
        raise UsageError("--exec: give the client's command (or --list)")
    if not any(p in args.template for p in PLACEHOLDERS[:2]):
        raise UsageError("--exec: the command must use {host} and {port}")
    _check_deadline(args)
    tree = TerminalTree(sys.stdout)
    writer = ReportWriter(args.out, strict=args.strict)
    agent = args.agent or args.template.split()[0].rsplit("/", 1)[-1]
    results: list[CaseResult] = []

    def on_result(result: CaseResult) -> None:
        results.append(result)
        tree.add(result)
        writer.add(result)

    trio.run(
        lambda: run_cases(
            cases,
            args.template,
            agent=agent,
            on_result=on_result,
            deadline=args.deadline,
            workdir=Path(args.work_dir) if args.work_dir else None,
        )
    )
    print(tree.summary() + f"; report in {args.out}/index.html", file=sys.stdout)
    return EXIT_FAILED if any(is_failure(r.grade, strict=args.strict) for r in results) else EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    cases = _select(args)
    _check_deadline(args)
    tree = TerminalTree(sys.stderr)
    writer = ReportWriter(args.out, strict=args.strict)
    out = Path(args.out)
    certs = Path(args.cert_dir) if args.cert_dir else out / "certs"
    workloads = out / "workloads"
    results: list[CaseResult] = []
    if args.deadline is not None:
        import attrs

        cases = [attrs.evolve(case, deadline=args.deadline) for case in cases]

    def on_result(result: CaseResult) -> None:
        results.append(result)
        tree.add(result)
        writer.add(result)

    async def main() -> None:
        pki = make_conform_pki()
        pki.write_certs(certs)
        write_workloads(cases, workloads)
        server = ConformServer(cases, pki, on_result, agent=args.agent)
        async with trio.open_nursery() as nursery:
            info = await nursery.start(server.serve, args.host, args.port, args.case_ports)
            print(announce(info, certs, workloads), flush=True)
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                with trio.move_on_after(args.duration if args.duration else float("inf")):
                    async for _ in signals:
                        break
            nursery.cancel_scope.cancel()

    trio.run(main)
    print(tree.summary(), file=sys.stderr)
    failed = any(is_failure(r.grade, strict=args.strict) for r in results)
    return EXIT_FAILED if failed else EXIT_OK


__all__ = ["CASES", "Grade", "register"]
