"""Fault injection: a TCP fault proxy whose faults change at runtime, and process faults.

Use it to prove that a service survives what production will do to it: slow links, dropped packets,
resets, refused connections, a peer that stalls, a process killed with -9 or frozen by SIGSTOP.

>>> from gyroscope.chaos import FaultProxy, Faults
>>> with FaultProxy.background(upstream="127.0.0.1:16379") as proxy:  # doctest: +SKIP
...     proxy.update_faults(latency_ms=100, jitter_ms=20)     # every chunk waits 100-120 ms
...     proxy.set_faults(Faults(blackhole=True))              # now nothing gets through
...     proxy.cut()                                           # reset every open connection
...     proxy.clear_faults()                                  # transparent again

Process faults: ``kill(pid)``, ``pause(pid, seconds)``, ``resume(pid)`` and ``ManagedProcess``.
"""

from gyroscope.chaos._client import ControlClient, parse_assignments
from gyroscope.chaos._config import ChaosConfig, ProxyConfig
from gyroscope.chaos._faults import Direction, Faults
from gyroscope.chaos._managed import ManagedProcess
from gyroscope.chaos._process import PauseHandle, kill, pause, resume, wait_gone
from gyroscope.chaos._proxy import FaultProxy, ProxyStats
from gyroscope.chaos._services import build_services
from gyroscope.errors import ProcessFaultError, ProxyError

ProcessFault = ProcessFaultError  # the contract's short name for process-fault errors

__all__ = [
    "ChaosConfig",
    "ControlClient",
    "Direction",
    "FaultProxy",
    "Faults",
    "ManagedProcess",
    "PauseHandle",
    "ProcessFault",
    "ProcessFaultError",
    "ProxyConfig",
    "ProxyError",
    "ProxyStats",
    "build_services",
    "kill",
    "parse_assignments",
    "pause",
    "resume",
    "wait_gone",
]
