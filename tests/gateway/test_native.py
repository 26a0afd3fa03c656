"""Choosing between the compiled hot path and the sources (``gyroscope.gateway._native``)."""

from __future__ import annotations

import importlib.machinery
import os
import sys
from pathlib import Path

import pytest

import gyroscope.gateway
from gyroscope.gateway._native import HOT, PURE_ENV, compiled_modules, select_build

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


@pytest.fixture
def package(tmp_path: Path) -> Path:
    """A stand-in package directory holding every hot module's source and an extension file."""
    for name in HOT:
        (tmp_path / f"{name}.py").write_text("")
        (tmp_path / f"{name}{SUFFIX}").write_bytes(b"")
    yield tmp_path
    sys.path_importer_cache.pop(str(tmp_path), None)


def test_a_fresh_build_runs_compiled(package: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PURE_ENV, raising=False)
    for name in HOT:
        os.utime(package / f"{name}.py", (1, 1))
    assert set(compiled_modules(package)) == set(HOT)
    assert select_build(package) == "compiled"
    assert str(package) not in sys.path_importer_cache


def test_a_source_edited_after_the_build_runs_the_sources(
    package: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(PURE_ENV, raising=False)
    for name in HOT:
        os.utime(package / f"{name}.py", (1, 1))
    os.utime(package / "_exchange.py")  # edited now, after its extension was built
    assert select_build(package) == "pure (stale build)"
    assert "compiled _exchange older than its source" in caplog.text
    finder = sys.path_importer_cache[str(package)]
    spec = finder.find_spec("_exchange")  # type: ignore[union-attr]
    assert spec is not None and spec.origin == str(package / "_exchange.py")


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
