"""The shared conformance suite, against every backend's real engine."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from gyroscope.testing.lock_conformance import LOCK_CHECKS


@pytest.mark.parametrize("check", LOCK_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
async def test_conformance(check: Callable[[Any], Awaitable[None]], make_backend: Any) -> None:
    await check(make_backend)
