"""Settings of the long-running commands from a file and the environment.

For ``feedback`` and ``serve`` (the commands that run as services), every long option
can also come from a TOML file or an environment variable. One precedence, highest
first:

1. the command line;
2. environment variables ``APNS_LEGACY_<COMMAND>_<OPTION>``, upper case with ``-``
   as ``_`` (``APNS_LEGACY_FEEDBACK_DB=/var/lib/apns/devices.db``);
3. the file given with ``--config FILE`` (or ``APNS_LEGACY_CONFIG``), one table per
   command, option names as keys::

       [feedback]
       cert = "/etc/apns-legacy/push.p12"
       passphrase-env = "APNS_P12_PASSPHRASE"
       db = "/var/lib/apns-legacy/devices.db"
       every = "24h"

4. the built-in defaults.

Flags (``--sandbox``) take ``true``/``false`` (``1``/``0``, ``yes``/``no`` in the
environment); repeatable options take a TOML list. An unknown key, a bad value or an
option the command does not have is an error naming the file or the variable.
Passphrases never go in either: ``passphrase-env`` names the variable that holds one.
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Mapping
from typing import Any, Final

from ._exit import UsageError

#: The commands that read settings from a file and the environment.
CONFIGURABLE: Final = ("feedback", "serve")
#: Commands whose own ``--config FILE`` is their configuration (not these settings).
OWN_CONFIG: Final = ("wallet", "bridge")
ENV_PREFIX: Final = "APNS_LEGACY_"
CONFIG_ENV: Final = "APNS_LEGACY_CONFIG"
_TRUE: Final = {"1", "true", "yes", "on"}
_FALSE: Final = {"0", "false", "no", "off"}


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The command's long options by name without dashes (``passphrase-env``)."""
    found = {}
    for action in parser._actions:  # argparse has no public list of a parser's actions
        for string in action.option_strings:
            if string.startswith("--") and string not in ("--help", "--config"):
                found[string[2:]] = action
    return found


def _is_flag(action: argparse.Action) -> bool:
    return action.nargs == 0 and isinstance(action.const, bool)


def _value(action: argparse.Action, raw: Any, where: str) -> Any:
    """A setting converted as argparse would convert it on the command line."""
    if _is_flag(action):
        if isinstance(raw, str) and raw.lower() in _TRUE | _FALSE:
            raw = raw.lower() in _TRUE
        if not isinstance(raw, bool):
            raise UsageError(f"{where}: must be true or false, not {raw!r}")
        return action.const if raw else not action.const
    if action.nargs == 0:
        raise UsageError(f"{where}: this option cannot be set here")
    values = raw if isinstance(action, argparse._AppendAction) else [raw]
    if not isinstance(values, list):
        raise UsageError(f"{where}: must be a list")
    converted = []
    for value in values:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise UsageError(f"{where}: must be a string or a number, not {value!r}")
        text = str(value)
        try:
            item = action.type(text) if callable(action.type) else text
        except (TypeError, ValueError):
            raise UsageError(f"{where}: invalid value {text!r}") from None
        if action.choices is not None and item not in action.choices:
            choices = ", ".join(map(str, action.choices))
            raise UsageError(f"{where}: must be one of {choices}, not {text!r}")
        converted.append(item)
    return converted if isinstance(action, argparse._AppendAction) else converted[0]


def read_file(path: str) -> dict[str, Any]:
    """The parsed TOML file.

    Raises:
        UsageError: unreadable or not TOML (naming the file and the line).
    """
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise UsageError(f"--config {path}: cannot read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"--config {path}: not TOML: {exc}") from None


def apply(
    command: str,
    parser: argparse.ArgumentParser,
    config_path: str | None,
    environ: Mapping[str, str],
) -> None:
    """Make the file's and the environment's settings the defaults of ``parser``.

    The command line still wins: argparse uses a default only for an option not given.
    An option that was required on the command line is not any more once set here.
    """
    options = _options(parser)
    settings: dict[str, tuple[Any, str]] = {}
    if config_path is not None:
        table = read_file(config_path).get(command, {})
        if not isinstance(table, dict):
            raise UsageError(f"--config {config_path}: [{command}] must be a table")
        for key, raw in table.items():
            name = key.replace("_", "-")
            if name not in options:
                raise UsageError(
                    f"--config {config_path}: [{command}] {key}: `{command}` has no --{name}"
                )
            settings[name] = (raw, f"--config {config_path}: [{command}] {key}")
    prefix = f"{ENV_PREFIX}{command.upper()}_"
    for variable, raw in environ.items():
        if not variable.startswith(prefix):
            continue
        name = variable[len(prefix) :].lower().replace("_", "-")
        if name not in options:
            raise UsageError(f"{variable}: `{command}` has no --{name}")
        settings[name] = (raw, variable)
    for name, (raw, where) in settings.items():
        action = options[name]
        action.default = _value(action, raw, where)
        action.required = False


def scan(argv: list[str], commands: Mapping[str, object]) -> tuple[int | None, str | None]:
    """``(position of the command, --config value)`` from the raw arguments, before
    argparse runs (which would refuse a missing ``--cert`` that the settings are about
    to provide). The values of ``--config`` and ``--log-format`` are never taken for
    the command, even when spelled like one."""
    position: int | None = None
    config = None
    tokens = iter(enumerate(argv))
    for index, token in tokens:
        if token == "--":
            break
        if token == "--config":
            config = next(tokens, (0, None))[1]
        elif token.startswith("--config="):
            config = token.partition("=")[2]
        elif token == "--log-format":
            next(tokens, None)
        elif position is None and token in commands:
            position = index
    return position, config


def prepare(
    subparsers: Mapping[str, argparse.ArgumentParser],
    argv: list[str],
    environ: Mapping[str, str],
) -> None:
    """Find the command and ``--config`` in ``argv``, and apply the settings for it."""
    position, config = scan(argv, subparsers)
    command = None if position is None else argv[position]
    if command not in CONFIGURABLE:
        if config is not None and (command or "").split(" ")[0] not in OWN_CONFIG:
            raise UsageError(
                f"--config: only {' and '.join(CONFIGURABLE)} read settings from a file"
            )
        return
    apply(command, subparsers[command], config or environ.get(CONFIG_ENV), environ)
