"""Compile the gateway's hot path (``_native.HOT``) with mypyc, next to its sources.

Two callers: ``make``, through ``scripts/compile_gateway.py``, in a source tree; and
``gyro gateway compile``, for an installed package (``pip install 'gyroscope[compile]'``). Either
way the extensions land beside the modules they replace, the shared runtime beside the
``gyroscope`` package, and ``_native.MANIFEST`` records the sources they were built from, last,
so a build cut short is never taken for a current one.

This module imports nothing of gyroscope at module level, so the script can load it by path
without importing the package (and a build it is about to replace).
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import os
import shutil
import sys
import sysconfig
from pathlib import Path
from types import ModuleType

__all__ = ["GATEWAY", "GROUP", "ROOT", "BuildFailed", "clean", "compile_hot", "toolchain_problem"]

GATEWAY = Path(__file__).resolve().parent
ROOT = GATEWAY.parent.parent  # holds the gyroscope package: src/, or site-packages
# Names the shared runtime library (GROUP__mypyc.*.so in ROOT), so ``clean`` removes ours and
# never another package's in a shared site-packages.
GROUP = "gyroscope_gateway"


class BuildFailed(Exception):
    """mypyc or the C compiler failed: a defect of ours, with the errors printed above."""


@functools.cache
def native() -> ModuleType:
    """``gyroscope.gateway._native``: the package's, when it is imported; else this directory's,
    loaded by path once (loading it decides the build, so not again mid-build)."""
    loaded = sys.modules.get("gyroscope.gateway._native")
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location("_gyroscope_native", GATEWAY / "_native.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def clean() -> list[Path]:
    """Remove the compiled build (the sources run from the next start); the files removed."""
    removed = []
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidates = [GATEWAY / f"{name}{suffix}" for name in native().HOT]
        candidates.append(ROOT / f"{GROUP}__mypyc{suffix}")
        for path in candidates:
            if path.exists():
                path.unlink()  # a running process keeps its mapped copy; new files get new inodes
                removed.append(path)
    manifest = GATEWAY / native().MANIFEST
    if manifest.exists():
        manifest.unlink()
        removed.append(manifest)
    return removed


def toolchain_problem() -> str | None:
    """What is missing to compile, in a few words, or None."""
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler}); install gcc"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        return "no Python headers; install python3-dev"
    for module, package in (("mypyc", "mypy"), ("setuptools", "setuptools")):
        if importlib.util.find_spec(module) is None:
            return f"{package} is not installed; pip install 'gyroscope[compile]'"
    if not os.access(GATEWAY, os.W_OK) or not os.access(ROOT, os.W_OK):
        return f"{GATEWAY} is not writable"
    return None


def compile_hot(build_dir: Path) -> int:
    """Compile every hot module (C sources and objects under ``build_dir``); how many."""
    from mypyc.build import mypycify
    from setuptools import setup  # type: ignore[import-untyped]

    hot = native().HOT
    files = [f"gyroscope/gateway/{name}.py" for name in hot]
    digests = native().source_digests(GATEWAY)  # what is compiled, read before compiling it
    here = Path.cwd()
    os.chdir(ROOT)  # module names are found from here; the shared runtime lands here
    try:
        setup(
            name="gyroscope-gateway-native",
            ext_modules=mypycify(
                [
                    # The same build wherever it runs: no config file (an enclosing project's
                    # could apply), optional packages gyroscope may import need not be there,
                    # and mypy's cache stays with the build, not in ROOT (a site-packages).
                    "--config-file=",
                    "--ignore-missing-imports",
                    "--follow-imports=silent",
                    f"--cache-dir={build_dir / 'mypy-cache'}",
                    *files,
                ],
                opt_level="3",
                target_dir=str(build_dir / "c"),
                group_name=GROUP,
            ),
            script_args=[
                "-q",
                "build_ext",
                "--inplace",
                "--build-temp",
                str(build_dir / "temp"),
                "--build-lib",
                str(build_dir / "lib"),
            ],
        )
    except SystemExit as exc:  # how setuptools reports a failed build
        clean()
        raise BuildFailed(str(exc)) from None
    finally:
        os.chdir(here)
    lines = "".join(f"{name} {digest}\n" for name, digest in digests.items())
    (GATEWAY / native().MANIFEST).write_text(lines)  # last: the build is complete
    return len(hot)
