"""The public API is what ``gyroscope.monitor.__all__`` names; it must not drift."""

from __future__ import annotations

import gyroscope.monitor as monitor


def test_every_export_exists_and_is_listed_once() -> None:
    assert len(monitor.__all__) == len(set(monitor.__all__))
    for name in monitor.__all__:
        assert getattr(monitor, name) is not None
    public = {
        n
        for n in vars(monitor)
        if (not n.startswith("_") and n[0].isupper()) or n in monitor.__all__
    }
    assert public - set(monitor.__all__) - {"annotations"} == set()
