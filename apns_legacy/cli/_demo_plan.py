"""The demo devices of ``apns-legacy demo`` (binary and ``--http2``): which of them the
simulator rejects, which apps are uninstalled, and which of those are installed again."""

from __future__ import annotations

import hashlib
import random
from typing import Final

import attrs

from ..wire import DeviceToken

INVALID: Final = 10
UNINSTALLED: Final = 50
#: Of the uninstalled apps, this many are reinstalled before the cleanup runs.
REINSTALLED: Final = 5
SHUTDOWN_AFTER: Final = 1000


@attrs.define
class Plan:
    """The demo's devices and which of them the simulator treats specially."""

    tokens: list[DeviceToken]
    invalid: list[DeviceToken]
    uninstalled: list[DeviceToken]

    @classmethod
    def make(cls, devices: int) -> Plan:
        # Deterministic, so two runs print the same numbers (timings aside).
        tokens = [
            DeviceToken(hashlib.sha256(b"apns-legacy demo device %d" % n).digest())
            for n in range(devices)
        ]
        special = random.Random(2195).sample(tokens, INVALID + UNINSTALLED)
        return cls(tokens, special[:INVALID], special[INVALID:])
