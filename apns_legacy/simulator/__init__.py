"""The simulator: a gateway (port 2195) and feedback service (port 2196) that behave like
Apple's legacy binary APNs, byte for byte, with scripted faults. See README "Simulator"."""

from __future__ import annotations

from ._config import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    ErrorClose,
    SimulatorConfig,
    SimulatorOptions,
)
from ._faults import (
    DelayErrors,
    DropAfter,
    Fault,
    FaultScope,
    IdleTimeout,
    Latency,
    RefuseHandshake,
    Reject,
    ResetAfter,
    ShutdownAfter,
    SimulatorService,
    SlowReader,
    SplitErrors,
    StopReading,
)
from ._http2 import (
    DEFAULT_MAX_CONCURRENT_STREAMS,
    Http2AcceptedRecord,
    Http2Faults,
    Http2Simulator,
    Http2SimulatorConfig,
    Http2Stats,
    open_http2_simulator,
)
from ._latency import LatencyStream, open_latency_stream
from ._records import AcceptedRecord, ErrorRecord, SimulatorStats
from ._server import ListenError, ServerCertificates, open_simulator, serve_simulator
from ._simulator import Simulator

__all__ = [
    "open_simulator",
    "serve_simulator",
    "Simulator",
    "SimulatorConfig",
    "SimulatorOptions",
    "ErrorClose",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_CONNECTIONS",
    "ServerCertificates",
    "ListenError",
    "open_latency_stream",
    "LatencyStream",
    "SimulatorStats",
    "AcceptedRecord",
    "ErrorRecord",
    # faults
    "Fault",
    "FaultScope",
    "SimulatorService",
    "ShutdownAfter",
    "ResetAfter",
    "DropAfter",
    "Reject",
    "DelayErrors",
    "SplitErrors",
    "SlowReader",
    "StopReading",
    "IdleTimeout",
    "Latency",
    "RefuseHandshake",
    # HTTP/2
    "open_http2_simulator",
    "Http2Simulator",
    "Http2SimulatorConfig",
    "Http2Faults",
    "Http2Stats",
    "Http2AcceptedRecord",
    "DEFAULT_MAX_CONCURRENT_STREAMS",
]
