"""Entry point: builds the parser from the command modules and dispatches.

Each command module has ``register(subparsers)``, which adds its parser and sets
``handler`` to a function taking the parsed namespace and returning the exit code.
The exit codes and :class:`UsageError` live in ``_exit`` (which imports nothing from
the commands, so the commands never import this module).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .._version import __version__
from . import _bridge, _cert, _conform, _demo, _feedback, _send, _serve, _tokens, _wallet
from ._exit import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, Failed, UsageError
from ._logging import LOG_FORMATS, configure
from ._settings import CONFIGURABLE, prepare

__all__ = ["build_parser", "main"]


def _add_global_options(
    parser: argparse.ArgumentParser, *, top: bool, configurable: bool = True
) -> None:
    # On the top-level parser with defaults, and again on every command (defaults
    # suppressed, so they only override what was given before the command): `-v`
    # works before and after the command name.
    default: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    group = parser.add_argument_group("output and settings (before or after the command)")
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        help="more log output on stderr (-vv: debug)",
        **({"default": 0} if top else default),
    )
    group.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="stderr as plain text (default) or one JSON object a line",
        **({"default": "text"} if top else default),
    )
    if configurable:
        group.add_argument(
            "--config",
            metavar="FILE",
            help=f"settings for {' and '.join(CONFIGURABLE)} (TOML; see the README, Operations)",
            **default,
        )


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every command's parser, and the actions' parsers under them (``tokens stats``)."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:  # argparse has no public list of subparsers
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[name] = sub
                for child in _subparsers(sub).values():
                    found.setdefault(f"{name} {child.prog.rpartition(' ')[2]}", child)
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="apns-legacy",
        description="Sender, simulator and feedback tools for Apple's legacy binary push "
        "protocol (gateway port 2195, feedback port 2196).",
    )
    parser.add_argument("--version", action="version", version=f"apns-legacy {__version__}")
    _add_global_options(parser, top=True)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Commands register themselves here as they are built.
    for register in _command_registrars():
        register(subparsers)
    for name, sub in _subparsers(parser).items():
        _add_global_options(sub, top=False, configurable=name in CONFIGURABLE)
    return parser


Registrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def _command_registrars() -> list[Registrar]:
    # One line per command module; each module's register() adds its subparser.
    return [
        _cert.register,
        _serve.register,
        _send.register,
        _feedback.register,
        _tokens.register,
        _demo.register,
        _wallet.register,
        _conform.register,
        _bridge.register,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        prepare(
            {name: sub for name, sub in _subparsers(parser).items() if " " not in name},
            arguments,
            os.environ,
        )
    except UsageError as exc:
        print(f"apns-legacy: {exc}", file=sys.stderr)
        return EXIT_USAGE
    args = parser.parse_args(arguments)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    configure(args.verbose, args.log_format)
    try:
        code: int = handler(args)
    except UsageError as exc:
        print(f"apns-legacy {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Failed as exc:
        print(f"apns-legacy {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of stdout went away (`... | head`): not an error worth a traceback.
        # Point stdout at /dev/null so that the interpreter's final flush stays quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_FAILED
    return code
