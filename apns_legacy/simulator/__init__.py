"""The simulator: a gateway (port 2195) and feedback service (port 2196) that behave like
Apple's legacy binary APNs, byte for byte, with scripted faults. See README "Simulator"."""

from __future__ import annotations

from ._faults import (
    DelayErrors,
    Fault,
    FaultScope,
    IdleTimeout,
    RefuseHandshake,
    Reject,
    ResetAfter,
    ShutdownAfter,
    SimulatorService,
    SlowReader,
)
from ._records import AcceptedRecord, ErrorRecord, SimulatorStats
from ._server import open_simulator, serve_simulator
from ._simulator import Simulator

__all__ = [
    "open_simulator",
    "serve_simulator",
    "Simulator",
    "SimulatorStats",
    "AcceptedRecord",
    "ErrorRecord",
    # faults
    "Fault",
    "FaultScope",
    "SimulatorService",
    "ShutdownAfter",
    "ResetAfter",
    "Reject",
    "DelayErrors",
    "SlowReader",
    "IdleTimeout",
    "RefuseHandshake",
]
