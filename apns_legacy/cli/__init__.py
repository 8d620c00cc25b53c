"""The ``apns-legacy`` command line: thin argparse over the public API."""

from __future__ import annotations

from ._main import main

__all__ = ["main"]
