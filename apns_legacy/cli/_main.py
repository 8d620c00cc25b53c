"""Entry point: builds the parser from the command modules and dispatches.

Each command module has ``register(subparsers)``, which adds its parser and sets
``handler`` to a function taking the parsed namespace and returning the exit code.
Exit codes (DESIGN.md): 0 success, 1 some notifications rejected or failed (or the
command's job failed), 2 bad usage or input.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from .._version import __version__

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad arguments or input found after parsing; printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="apns-legacy",
        description="Sender, simulator and feedback tools for Apple's legacy binary push "
        "protocol (gateway port 2195, feedback port 2196).",
    )
    parser.add_argument("--version", action="version", version=f"apns-legacy {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output on stderr (-vv: debug)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Commands register themselves here as they are built.
    for register in _command_registrars():
        register(subparsers)
    return parser


Registrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def _command_registrars() -> list[Registrar]:
    # One line per command module; each module's register() adds its subparser.
    # (Imported here: the command modules import UsageError and exit codes from us.)
    from . import _cert, _conform, _demo, _feedback, _send, _serve, _tokens

    return [
        _cert.register,
        _serve.register,
        _send.register,
        _feedback.register,
        _tokens.register,
        _demo.register,
        _conform.register,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(
        level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        code: int = handler(args)
    except UsageError as exc:
        print(f"apns-legacy {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return code
