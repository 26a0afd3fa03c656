"""Compile the gateway's hot path with mypyc, next to its sources (run by make).

    scripts/compile_gateway.py           compile if a C compiler and the Python headers exist
    scripts/compile_gateway.py --clean   remove the compiled modules (the sources run)
    scripts/compile_gateway.py --stamp F touch F after a successful compile (make's target)

Without a compiler or headers it says so in one line, removes any earlier build (which would be
stale) and exits 0: the gateway then runs its sources, slower but identical in behaviour. A
compile error is a defect of ours and exits 1. ``gyroscope.gateway._native`` explains how the
build is chosen at import time.
"""

from __future__ import annotations

import argparse
import functools
import importlib.machinery
import importlib.util
import os
import shutil
import sys
import sysconfig
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
GATEWAY = SRC / "gyroscope" / "gateway"
BUILD_TEMP = ROOT / ".venv" / "mypyc-build"


@functools.cache
def native() -> Any:
    """``gyroscope.gateway._native`` alone, without importing the package (or a stale build);
    loaded once."""
    spec = importlib.util.spec_from_file_location("_native", GATEWAY / "_native.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def hot_modules() -> tuple[str, ...]:
    return tuple(native().HOT)


def clean() -> None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        for path in [*GATEWAY.glob(f"*{suffix}"), *SRC.glob(f"*__mypyc{suffix}")]:
            path.unlink()
    (GATEWAY / native().MANIFEST).unlink(missing_ok=True)


def toolchain_problem() -> str | None:
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler}; install gcc)"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        return "no Python headers (install python3-dev)"
    try:
        import mypyc  # noqa: F401
    except ImportError:
        return "mypyc is not installed (pip install mypy)"
    return None


def compile_hot() -> None:
    from mypyc.build import mypycify
    from setuptools import setup

    files = [f"gyroscope/gateway/{name}.py" for name in hot_modules()]
    digests = native().source_digests(GATEWAY)  # what is compiled, read before compiling it
    os.chdir(SRC)  # module names are found from here; the shared runtime lands on sys.path
    setup(
        name="gyroscope-gateway-native",
        ext_modules=mypycify(files, opt_level="3", target_dir=str(BUILD_TEMP / "c")),
        script_args=[
            "-q",
            "build_ext",
            "--inplace",
            "--build-temp",
            str(BUILD_TEMP / "temp"),
            "--build-lib",
            str(BUILD_TEMP / "lib"),
        ],
    )
    lines = "".join(f"{name} {digest}\n" for name, digest in digests.items())
    (GATEWAY / native().MANIFEST).write_text(lines)  # last: the build is complete


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clean", action="store_true", help="remove the compiled modules")
    parser.add_argument("--stamp", type=Path, help="touch this file after a successful compile")
    args = parser.parse_args()
    stamp = args.stamp.resolve() if args.stamp is not None else None  # before compile's chdir
    clean()
    if args.clean:
        return 0
    problem = toolchain_problem()
    if problem is not None:
        print(f"compile_gateway: {problem}; the gateway runs its Python sources", file=sys.stderr)
        return 0
    try:
        compile_hot()
    except SystemExit as exc:  # setuptools reports a failed build this way
        clean()
        print(f"compile_gateway: build failed ({exc}); see the errors above", file=sys.stderr)
        return 1
    print(f"compile_gateway: compiled {len(hot_modules())} gateway modules", file=sys.stderr)
    if stamp is not None:
        stamp.touch()
    return 0


if __name__ == "__main__":
    sys.exit(main())
