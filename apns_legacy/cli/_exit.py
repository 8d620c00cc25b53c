"""Exit codes and the usage error every command raises; imports nothing from the commands.

Exit codes (docs/DESIGN.md): 0 success, 1 some notifications rejected or failed (or the
command's job failed), 2 bad usage or input, 130 interrupted at once by a second
Ctrl-C, 128 + N stopped gracefully by signal N (``send``).
"""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130


class UsageError(Exception):
    """Bad arguments or input found after parsing; printed as one line, exit code 2."""


class Failed(Exception):
    """The command's job failed (a damaged store, say); printed as one line, exit code 1."""
