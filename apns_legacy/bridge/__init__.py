"""The bridge: legacy binary clients in (gateway 2195, feedback 2196), HTTP/2 APNs out.

See the README, "Bridge". ``load_config`` reads the TOML file; ``open_bridge`` runs it.
"""

from __future__ import annotations

from ._bridge import Bridge, BridgeListenError, BridgeStats, open_bridge
from ._config import (
    PRODUCTION_HOST,
    SANDBOX_HOST,
    AppConfig,
    BridgeConfig,
    BridgeConfigError,
    BridgeMode,
    UpstreamConfig,
    load_config,
    parse_config,
)
from ._replay import Mapped, ReplayLedger, map_outcome
from ._session import Ending, SessionStats
from ._store import FeedbackStore

__all__ = [
    "open_bridge",
    "Bridge",
    "BridgeStats",
    "BridgeListenError",
    "BridgeConfig",
    "BridgeConfigError",
    "BridgeMode",
    "AppConfig",
    "UpstreamConfig",
    "PRODUCTION_HOST",
    "SANDBOX_HOST",
    "load_config",
    "parse_config",
    "FeedbackStore",
    "ReplayLedger",
    "Mapped",
    "map_outcome",
    "Ending",
    "SessionStats",
]
