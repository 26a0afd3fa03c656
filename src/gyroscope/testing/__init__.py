"""Test support other tests (ours and our users') reuse: a fake clock, ports, real-server checks,
and the lock conformance suites and history checker (run them against your own lock backend)."""

from gyroscope.testing._clock import FakeClock
from gyroscope.testing._net import free_port, port_open, require_server, wait_for_port
from gyroscope.testing.lock_conformance import LOCK_CHECKS, MakeBackend
from gyroscope.testing.lock_history import (
    Event,
    Recorder,
    Violation,
    check_history,
    holds,
    load_history,
)
from gyroscope.testing.lock_shared_conformance import SHARED_CHECKS

__all__ = [
    "LOCK_CHECKS",
    "SHARED_CHECKS",
    "Event",
    "FakeClock",
    "MakeBackend",
    "Recorder",
    "Violation",
    "check_history",
    "free_port",
    "holds",
    "load_history",
    "port_open",
    "require_server",
    "wait_for_port",
]
