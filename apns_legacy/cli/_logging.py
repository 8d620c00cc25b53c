"""Log output of the command line: plain text (the default) or one JSON object a line.

Two streams of records, both on stderr:

* the library's own loggers (``apns_legacy.*``), shown from WARNING, or INFO with
  ``-v`` and DEBUG with ``-vv``;
* the commands' messages (logger ``apns_legacy.cli``), always shown: in text mode
  they are the plain lines the commands always printed; with ``--log-format json``
  each is an object with ``time``, ``level``, ``logger``, ``message`` and the
  record's structured fields (``tokens``, ``deactivated``, ...), for a log collector.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import sys
from typing import Any, Final

#: The commands' own messages.
CLI_LOGGER: Final = "apns_legacy.cli"
LOG_FORMATS: Final = ("text", "json")
_LIBRARY_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object a line; ``extra={"fields": {...}}`` adds structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _dt.datetime.fromtimestamp(record.created, _dt.UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(verbosity: int, log_format: str) -> None:
    """Set up both streams on the current ``sys.stderr`` (called once per ``main``)."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbosity, 2)]
    json_lines = log_format == "json"
    library = logging.getLogger("apns_legacy")
    cli = logging.getLogger(CLI_LOGGER)
    for logger, formatter in (
        (library, JsonFormatter() if json_lines else logging.Formatter(_LIBRARY_FORMAT)),
        (cli, JsonFormatter() if json_lines else logging.Formatter("%(message)s")),
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
    logger.log(level, "%s", message, extra={"fields": fields})
