"""Log output of the command line: plain text (the default) or one JSON object a line.

Two streams of records, both on stderr:

* the library's own loggers (``apns_legacy.*``), shown from WARNING, or INFO with
  ``-v`` and DEBUG with ``-vv``;
* the commands' messages (logger ``apns_legacy.cli``), always shown: in text mode
  they are the plain lines the commands always printed; with ``--log-format json``
  each is an object with ``time`` (ISO 8601 UTC), ``level``, ``logger``, ``message``
  and the record's structured fields (``event``, ``tokens``, ``deactivated``, ...),
  for a log collector.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Final

from pythonjsonlogger.json import JsonFormatter

#: The commands' own messages.
CLI_LOGGER: Final = "apns_legacy.cli"
LOG_FORMATS: Final = ("text", "json")
_LIBRARY_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _json_formatter() -> logging.Formatter:
    # python-json-logger: the record's extra fields become keys of the object.
    return JsonFormatter(
        "{levelname}{name}{message}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
    )


def configure(verbosity: int, log_format: str) -> None:
    """Set up both streams on the current ``sys.stderr`` (called once per ``main``)."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbosity, 2)]
    json_lines = log_format == "json"
    library = logging.getLogger("apns_legacy")
    cli = logging.getLogger(CLI_LOGGER)
    for logger, formatter in (
        (library, _json_formatter() if json_lines else logging.Formatter(_LIBRARY_FORMAT)),
        (cli, _json_formatter() if json_lines else logging.Formatter("%(message)s")),
    ):
        for old in list(logger.handlers):
            logger.removeHandler(old)
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(formatter)
        logger.addHandler(handler)
        logger.propagate = False
    library.setLevel(level)
    cli.setLevel(logging.INFO)


def say(logger: logging.Logger, level: int, message: str, **fields: Any) -> None:
    """A command's message, with structured fields for the JSON format."""
    logger.log(level, "%s", message, extra=fields)
