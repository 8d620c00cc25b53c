"""apns-legacy: sender, simulator and feedback tools for Apple's legacy binary push protocol.

The public API is flat: everything is importable from ``apns_legacy``. The layers
live in subpackages (``wire`` -> ``tls`` -> ``client``/``simulator`` -> ``cli``)
and each re-exports its own public names.
"""

from __future__ import annotations

from . import client as _client
from . import simulator as _simulator
from . import tls as _tls
from . import wire as _wire
from ._version import __version__
from .client import *  # noqa: F403
from .simulator import *  # noqa: F403
from .tls import *  # noqa: F403
from .wire import *  # noqa: F403

__all__ = ["__version__", *_wire.__all__, *_tls.__all__, *_client.__all__, *_simulator.__all__]
