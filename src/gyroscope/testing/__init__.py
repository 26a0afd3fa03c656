"""Test support other tests (ours and our users') reuse: a fake clock, ports, real-server checks."""

from gyroscope.testing._clock import FakeClock
from gyroscope.testing._net import free_port, port_open, require_server, wait_for_port

__all__ = ["FakeClock", "free_port", "port_open", "require_server", "wait_for_port"]
