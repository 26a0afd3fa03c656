"""Prometheus exposition for every service: each service owns a ``CollectorRegistry``.

Several services of the same kind run in one process (three demo replicas under ``gyro up``), so no
service registers into the global default registry.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from gyroscope.core._http import Response

__all__ = ["CollectorRegistry", "metrics_response"]


def metrics_response(*registries: CollectorRegistry) -> Response:
    """A ``/metrics`` response in the Prometheus text format for the given registries."""
    body = b"".join(generate_latest(r) for r in registries)
    return Response(body, headers=[("content-type", CONTENT_TYPE_LATEST)])
