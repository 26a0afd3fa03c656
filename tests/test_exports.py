"""Each subsystem's public API is what its ``__init__`` exports; this fails when the exports drift."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import gyroscope

PACKAGES = sorted(
    info.name
    for info in pkgutil.walk_packages(gyroscope.__path__, "gyroscope.")
    if info.ispkg and not info.name.rsplit(".", 1)[-1].startswith("_")
)


def test_every_subsystem_is_a_package() -> None:
    expected = {"bench", "chaos", "cli", "core", "demo", "gateway", "lock", "logs", "monitor"}
    expected |= {"backup", "platform", "testing"}
    assert expected <= {name.split(".")[1] for name in PACKAGES}


@pytest.mark.parametrize("name", PACKAGES)
def test_all_names_resolve_and_nothing_private_is_exported(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert len(exported) == len(set(exported)), f"{name}.__all__ repeats a name"
    for attr in exported:
        assert hasattr(module, attr), f"{name}.__all__ names {attr!r}, which does not exist"
        assert not attr.startswith("_"), f"{name}.__all__ exports private {attr!r}"
