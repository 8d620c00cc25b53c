"""Entry point: builds the parser from the command modules and dispatches.

Each command module has ``register(subparsers)``, which adds its parser and sets
``handler`` to a function taking the parsed namespace and returning the exit code.
The exit codes and :class:`UsageError` live in ``_exit`` (which imports nothing from
the commands, so the commands never import this module).

Command modules are imported only when needed: when the arguments name a command,
only that command's module (``send`` never loads the bridge's HTTP/2 server, the
Wallet web service or the conformance checker); for the top-level help or an unknown
command, all of them. That keeps a cron job's ``apns-legacy feedback`` or ``send``
from paying for every other command's imports at start (0.76 s to 0.2 s).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, Final

from .._version import __version__
from ._exit import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, Failed, UsageError
from ._logging import LOG_FORMATS, configure
from ._settings import CONFIGURABLE, prepare, scan

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


#: Each command, in the order of the help, and the module that registers it.
COMMANDS: Final = {
    "cert": "_cert",
    "serve": "_serve",
    "send": "_send",
    "feedback": "_feedback",
    "tokens": "_tokens",
    "demo": "_demo",
    "wallet": "_wallet",
    "conform": "_conform",
    "bridge": "_bridge",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of ``command`` alone (imports only its module)."""
    parser = argparse.ArgumentParser(
        prog="apns-legacy",
        description="Sender, simulator and feedback tools for Apple's legacy binary push "
        "protocol (gateway port 2195, feedback port 2196).",
    )
    parser.add_argument("--version", action="version", version=f"apns-legacy {__version__}")
    _add_global_options(parser, top=True)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Commands register themselves here as they are built.
    for register in _command_registrars(command):
        register(subparsers)
    for name, sub in _subparsers(parser).items():
        _add_global_options(sub, top=False, configurable=name in CONFIGURABLE)
    return parser


Registrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def _command_registrars(command: str | None) -> list[Registrar]:
    names = list(COMMANDS) if command is None else [command]
    return [importlib.import_module(f".{COMMANDS[name]}", __package__).register for name in names]


def _named_command(arguments: list[str]) -> str | None:
    """The command the arguments name (found as the settings find it, values of
    ``--config`` and ``--log-format`` skipped), unless help is asked for before it."""
    position, _ = scan(arguments, COMMANDS)
    if position is None or {"-h", "--help", "--version"} & set(arguments[:position]):
        return None
    return arguments[position]


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_named_command(arguments))
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
