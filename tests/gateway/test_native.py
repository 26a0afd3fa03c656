"""Choosing between the compiled hot path and the sources (``gyroscope.gateway._native``)."""

from __future__ import annotations

import importlib.machinery
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import gyroscope.gateway
from gyroscope.gateway._native import (
    HOT,
    MANIFEST,
    PURE_ENV,
    compiled_modules,
    select_build,
    source_digests,
)

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


@pytest.fixture
def package(tmp_path: Path) -> Iterator[Path]:
    """A stand-in package directory: every hot module's source, its extension, and the manifest
    of the sources the build was made from."""
    for name in HOT:
        (tmp_path / f"{name}.py").write_text(f"# {name}\n")
        (tmp_path / f"{name}{SUFFIX}").write_bytes(b"")
    digests = source_digests(tmp_path)
    (tmp_path / MANIFEST).write_text("".join(f"{n} {d}\n" for n, d in digests.items()))
    yield tmp_path
    sys.path_importer_cache.pop(str(tmp_path), None)


def test_a_current_build_runs_compiled(package: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PURE_ENV, raising=False)
    assert set(compiled_modules(package)) == set(HOT)
    assert select_build(package) == "compiled"
    assert str(package) not in sys.path_importer_cache


@pytest.mark.parametrize("change", ["edit a source", "lose the manifest", "lose an extension"])
def test_a_build_not_made_from_these_sources_runs_the_sources(
    package: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, change: str
) -> None:
    """Edited since the last make (an extension's stub is not even rebuilt then, so its file time
    proves nothing), or a build that never finished."""
    monkeypatch.delenv(PURE_ENV, raising=False)
    if change == "edit a source":
        (package / "_exchange.py").write_text("# edited\n")
    elif change == "lose the manifest":
        (package / MANIFEST).unlink()
    else:
        (package / f"_exchange{SUFFIX}").unlink()
    assert select_build(package) == "pure (stale build)"
    assert "does not match the sources" in caplog.text and "_exchange" in caplog.text
    finder = sys.path_importer_cache[str(package)]
    spec = finder.find_spec("_head")  # type: ignore[union-attr]
    assert spec is not None and spec.origin == str(package / "_head.py")


def test_the_environment_can_ask_for_the_sources(
    package: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PURE_ENV, "1")
    assert select_build(package) == "pure"
    assert str(package) in sys.path_importer_cache


def test_no_extension_means_the_sources(tmp_path: Path) -> None:
    (tmp_path / "_exchange.py").write_text("")
    assert select_build(tmp_path) == "pure"


def test_this_run_uses_the_build_it_reports() -> None:
    """In CI the compiled build must really be the one under test (make compiles it), except in
    the pass that asks for the sources."""
    from gyroscope.gateway import _exchange

    compiled = not _exchange.__file__.endswith(".py")
    assert compiled == (gyroscope.gateway.BUILD == "compiled")
    if os.environ.get("CI") == "true":
        wanted = "pure" if os.environ.get(PURE_ENV) == "1" else "compiled"
        assert wanted == gyroscope.gateway.BUILD, "make test compiles the gateway in CI"


async def test_the_gateway_says_which_build_it_runs(
    gateway: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gyroscope.gateway")
    gw = await gateway()
    assert f"listening on 127.0.0.1:{gw.port} ({gyroscope.gateway.BUILD} build)" in caplog.text
