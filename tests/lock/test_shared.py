"""Read-write locks and semaphores on the engines that support them (not SQLite)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from gyroscope.lock import LockError, Semaphore
from gyroscope.testing.lock_shared_conformance import SHARED_CHECKS


@pytest.fixture(params=["redis", "etcd", "zookeeper"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    from .conftest import require

    require(request.param)
    return str(request.param)


@pytest.mark.parametrize("check", SHARED_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
async def test_shared_conformance(
    check: Callable[[Any], Awaitable[None]], make_backend: Any
) -> None:
    await check(make_backend)


def test_sqlite_says_it_has_no_semaphores(tmp_path: Path) -> None:
    with pytest.raises(LockError, match="no read-write locks or semaphores"):
        Semaphore("x", f"sqlite://{tmp_path}/l.db", limit=2)
