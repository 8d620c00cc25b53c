"""apns-legacy: sender, simulator and feedback tools for Apple's legacy binary push protocol.

The public API is flat: everything is importable from ``apns_legacy``. The layers
live in subpackages (``wire`` -> ``tls`` -> ``client``/``simulator`` -> ``cli``)
and each re-exports its own public names.

Only the wire layer is imported eagerly. The others are imported on first use of one
of their names (PEP 562), so that ``import apns_legacy.wire`` (or using only the
codec) pulls in no trio, no OpenSSL and no sockets, as a sans-IO layer promises.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import wire as _wire
from ._version import __version__ as __version__
from .wire import *  # noqa: F403

if TYPE_CHECKING:
    from .client import *  # noqa: F403
    from .simulator import *  # noqa: F403
    from .tls import *  # noqa: F403

# Layers imported on demand, in the order their names are searched.
_LAZY_LAYERS = ("tls", "client", "simulator")


def _layer(name: str) -> Any:
    return importlib.import_module(f"{__name__}.{name}")


def __getattr__(name: str) -> Any:
    if name == "__all__":
        names = ["__version__", *_wire.__all__]
        for layer in _LAZY_LAYERS:
            names += _layer(layer).__all__
        return names
    for layer in _LAZY_LAYERS:
        module = _layer(layer)
        if name in module.__all__:
            value = getattr(module, name)
            globals()[name] = value  # next time, a plain module attribute
            return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__getattr__("__all__")))
