"""The public API is what ``gyroscope.gateway.__all__`` lists: every name resolves, nothing private."""

from __future__ import annotations

import gyroscope.gateway as gateway


def test_every_exported_name_exists_and_is_public():
    assert len(set(gateway.__all__)) == len(gateway.__all__)
    for name in gateway.__all__:
        assert not name.startswith("_")
        assert getattr(gateway, name) is not None


def test_the_main_entry_points_are_exported():
    for name in ("Gateway", "GatewayConfig", "build_services", "make_policy", "POLICIES"):
        assert name in gateway.__all__
