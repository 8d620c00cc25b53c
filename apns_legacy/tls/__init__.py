"""The TLS layer: credentials in memory, pyOpenSSL contexts, a trio stream."""

from __future__ import annotations

__all__: list[str] = []
