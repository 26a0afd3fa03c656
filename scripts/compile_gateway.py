"""Compile the gateway's hot path with mypyc, next to its sources (run by make).

    scripts/compile_gateway.py           compile if a C compiler and the Python headers exist
    scripts/compile_gateway.py --clean   remove the compiled modules (the sources run)
    scripts/compile_gateway.py --stamp F touch F after a successful compile (make's target)

Without a compiler or headers it says so in one line, removes any earlier build (which would be
stale) and exits 0: the gateway then runs its sources, slower but identical in behaviour. A
compile error is a defect of ours and exits 1. ``gyroscope.gateway._compile`` does the work (also
behind ``gyro gateway compile``); ``gyroscope.gateway._native`` explains how the build is chosen
at import time.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
BUILD_DIR = ROOT / ".venv" / "mypyc-build"


def compiler() -> ModuleType:
    """``gyroscope.gateway._compile`` loaded by path: importing the package would load the
    build about to be replaced."""
    path = SRC / "gyroscope" / "gateway" / "_compile.py"
    spec = importlib.util.spec_from_file_location("_gyroscope_compile", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clean", action="store_true", help="remove the compiled modules")
    parser.add_argument("--stamp", type=Path, help="touch this file after a successful compile")
    args = parser.parse_args()
    build = compiler()
    build.clean()
    if args.clean:
        return 0
    problem = build.toolchain_problem()
    if problem is not None:
        print(f"compile_gateway: {problem}; the gateway runs its Python sources", file=sys.stderr)
        return 0
    try:
        count = build.compile_hot(BUILD_DIR)
    except build.BuildFailed as exc:
        print(f"compile_gateway: build failed ({exc}); see the errors above", file=sys.stderr)
        return 1
    print(f"compile_gateway: compiled {count} gateway modules", file=sys.stderr)
    if args.stamp is not None:
        args.stamp.touch()
    return 0


if __name__ == "__main__":
    sys.exit(main())
