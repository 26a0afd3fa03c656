"""The public API: every name in __all__ resolves (lazy ones included), nothing private leaks."""

from __future__ import annotations

import gyroscope.backup as api


def test_exports_resolve() -> None:
    for name in api.__all__:
        assert getattr(api, name) is not None, name
    assert sorted(api.__all__) == sorted(set(api.__all__))
    assert not [n for n in api.__all__ if n.startswith("_")]
