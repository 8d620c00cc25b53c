"""Small helpers for the commands' messages."""

from __future__ import annotations


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``"1 token"``, ``"2 tokens"``; ``plural_form`` for irregular words (``"entries"``)."""
    word = singular if count == 1 else (plural_form or singular + "s")
    return f"{count} {word}"


def os_error(exc: OSError) -> str:
    """An ``OSError`` as words, without the ``[Errno N]`` prefix: ``"File exists"``."""
    return exc.strerror or str(exc)
