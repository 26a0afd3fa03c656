"""Lock test fixtures: backend URLs for the engines scripts/services.sh starts."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from gyroscope.lock import LockBackend, open_backend
from gyroscope.testing import require_server

REDIS_URL = os.environ.get("GYRO_TEST_REDIS_URL", "redis://127.0.0.1:16379/0")
ETCD_ENDPOINTS = os.environ.get("GYRO_TEST_ETCD_ENDPOINTS", "127.0.0.1:12379")
ETCD_CLUSTER = os.environ.get(
    "GYRO_TEST_ETCD_CLUSTER", "127.0.0.1:12381,127.0.0.1:12383,127.0.0.1:12385"
)
ZK_HOSTS = os.environ.get("GYRO_TEST_ZK_HOSTS", "127.0.0.1:12181")
BACKEND_IDS = ["sqlite", "redis", "etcd", "zookeeper"]


def require(kind: str) -> None:
    if kind == "redis":
        u = urlsplit(REDIS_URL)
        require_server("redis", u.hostname or "127.0.0.1", u.port or 6379)
    elif kind == "etcd":
        host, _, port = ETCD_ENDPOINTS.split(",")[0].rpartition(":")
        require_server("etcd", host, int(port))
    elif kind == "zookeeper":
        host, _, port = ZK_HOSTS.split(",")[0].rpartition(":")
        require_server("zookeeper", host, int(port))


def backend_url(kind: str, tmp_path: Path) -> str:
    return {
        "sqlite": f"sqlite://{tmp_path}/locks.db",
        "redis": REDIS_URL,
        "etcd": f"etcd://{ETCD_ENDPOINTS}",
        "zookeeper": f"zookeeper://{ZK_HOSTS}",
    }[kind]


@pytest.fixture(params=BACKEND_IDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    require(kind)
    return kind


@pytest.fixture
def url(backend_kind: str, tmp_path: Path) -> str:
    return backend_url(backend_kind, tmp_path)


@pytest.fixture
def make_backend(url: str) -> Callable[[], Awaitable[LockBackend]]:
    async def make() -> LockBackend:
        return open_backend(url)

    return make
