"""A simulated OpenAI-compatible LLM server for demos, tests and capacity experiments.

It behaves like a continuous-batching inference server (vLLM, TGI) under load: a fixed number of
sequence slots, a FIFO queue in front of them, time to first token that grows with prompt length
and queueing, decode steps that slow as the batch grows, and throughput that flattens past a knee
(``gyroscope.demo._engine`` explains the model). Faults are switched on at runtime through
``POST /admin/faults``, ``gyro demo fault`` or ``DemoServer.set_faults``.

>>> cfg = DemoServerConfig(name="d1", listen="127.0.0.1:0", slots=4, seed=1)
>>> server = DemoServer(cfg)   # await server.start(); print(server.url); await server.stop()
>>> [spec.name for spec in build_services(DemoConfig(replicas=[cfg]), Path("."))]
['demo/d1']
"""

from __future__ import annotations

from pathlib import Path

from gyroscope.core import ServiceSpec
from gyroscope.demo._config import DemoConfig, DemoServerConfig
from gyroscope.demo._engine import Timing
from gyroscope.demo._faults import Faults, merge_faults, parse_fault_args
from gyroscope.demo._server import CRASH_EXIT_CODE, DemoServer

__all__ = [
    "CRASH_EXIT_CODE",
    "DemoConfig",
    "DemoServer",
    "DemoServerConfig",
    "Faults",
    "Timing",
    "build_services",
    "merge_faults",
    "parse_fault_args",
]


def build_services(section: DemoConfig, data_dir: Path) -> list[ServiceSpec]:
    """One service spec per replica in the ``demo:`` section (the demo server keeps no data)."""
    return [_spec(cfg) for cfg in section.replicas]


def _spec(cfg: DemoServerConfig) -> ServiceSpec:
    # A helper, so each factory closes over its own config (not the loop variable's last value).
    return ServiceSpec(name=f"demo/{cfg.name}", config=cfg, factory=lambda: DemoServer(cfg))
