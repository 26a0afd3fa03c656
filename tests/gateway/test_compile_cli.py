"""``gyro gateway compile`` on an installed copy of gyroscope (no clone, no make): it builds the
compiled gateway in place, the next start uses it, and ``--clean`` removes exactly its files."""

from __future__ import annotations

import importlib.machinery
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gyroscope.gateway import _compile
from gyroscope.gateway._native import HOT, MANIFEST, PURE_ENV

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def _run(site: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop(PURE_ENV, None)
    return subprocess.run(
        [sys.executable, *argv], env=env, capture_output=True, text=True, timeout=900, check=False
    )


def _build(site: Path) -> str:
    code = "import gyroscope; from gyroscope.gateway import BUILD; print(BUILD, gyroscope.__file__)"
    out = _run(site, "-c", code)
    assert out.returncode == 0, out.stderr
    build, where = out.stdout.rsplit(" ", 1)
    assert Path(where.strip()).is_relative_to(site)  # the copy, not this checkout
    return build


def _built_files(site: Path) -> set[Path]:
    return {p for p in site.rglob("*") if p.name.endswith(SUFFIX) or p.name == MANIFEST}


def test_compile_builds_an_installed_copy_and_clean_removes_only_its_files(tmp_path: Path) -> None:
    problem = _compile.toolchain_problem()
    if problem is not None:
        if os.environ.get("CI") == "true":  # make test installs gcc, python3-dev and mypy
            pytest.fail(f"cannot compile the gateway: {problem}")
        pytest.skip(problem)
    site = tmp_path / "site-packages"
    shutil.copytree(
        _compile.GATEWAY.parent,
        site / "gyroscope",
        ignore=shutil.ignore_patterns(f"*{SUFFIX}", MANIFEST, "__pycache__"),
    )
    foreign = site / f"otherpackage__mypyc{SUFFIX}"  # another package's runtime: not ours
    foreign.write_bytes(b"\x7fELF")
    assert _build(site) == "pure"

    done = _run(site, "-m", "gyroscope.cli", "gateway", "compile")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"compiled {len(HOT)} gateway modules" in done.stdout
    assert _build(site) == "compiled"
    ours = _built_files(site) - {foreign}
    assert len(ours) == len(HOT) + 2  # an extension per module, the shared runtime, the manifest

    cleaned = _run(site, "-m", "gyroscope.cli", "gateway", "compile", "--clean")
    assert cleaned.returncode == 0, cleaned.stderr
    assert f"({len(ours)} files)" in cleaned.stdout
    assert _built_files(site) == {foreign}
    assert _build(site) == "pure"
    assert {p.name for p in site.iterdir()} == {"gyroscope", foreign.name}  # no caches left


def test_compile_without_a_toolchain_says_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from click.testing import CliRunner

    from gyroscope.cli._main import cli

    cleaned: list[bool] = []
    monkeypatch.setattr(_compile, "toolchain_problem", lambda: "no C compiler (cc); install gcc")
    monkeypatch.setattr(_compile, "clean", lambda: cleaned.append(True) or [])
    result = CliRunner().invoke(cli, ["gateway", "compile"])
    assert result.exit_code == 1
    assert "cannot compile the gateway: no C compiler (cc); install gcc" in result.output
    assert cleaned == []  # the build already there (if any) is kept


def test_clean_where_it_may_not_write_says_so_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from click.testing import CliRunner

    from gyroscope.cli._main import cli

    def refuse() -> list[Path]:
        raise PermissionError(
            13, "Permission denied", "/usr/lib/python3/gyroscope_gateway__mypyc.so"
        )

    monkeypatch.setattr(_compile, "clean", refuse)
    result = CliRunner().invoke(cli, ["gateway", "compile", "--clean"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "gyro: error: cannot remove the compiled gateway: [Errno 13] Permission denied: "
        "'/usr/lib/python3/gyroscope_gateway__mypyc.so'"
    ]
