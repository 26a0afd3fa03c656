"""Which build of the gateway's hot path runs: compiled (mypyc) modules, or these sources.

The modules a proxied request passes through (``HOT``) are compiled to C extensions by ``make``
(``scripts/compile_gateway.py``) when a C compiler and the Python headers are present; the
extension sits next to its source and Python's import prefers it. It spends less than half the
Python time per request of the interpreted sources. The sources stay the reference: every
behaviour is the same, and the test suite runs the gateway tests on both builds.

Two safeguards decide, before any hot module is imported:

- ``GYRO_GATEWAY_PURE=1`` in the environment runs the sources (to profile line by line, or to rule
  the compiled build out when chasing a problem);
- a compiled build made from other sources than those present (a module edited since the last
  ``make``) is never run: the sources are, with one warning saying how to rebuild.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import logging
import os
import sys
from pathlib import Path

__all__ = [
    "BUILD",
    "HOT",
    "MANIFEST",
    "PURE_ENV",
    "compiled_modules",
    "read_manifest",
    "select_build",
    "source_digests",
]

log = logging.getLogger("gyroscope.gateway")

PURE_ENV = "GYRO_GATEWAY_PURE"

# Everything a plain request and its answer touch, and what those import at module level.
HOT = (
    "_client",
    "_endpoint",
    "_exchange",
    "_gateway",
    "_head",
    "_health",
    "_memo",
    "_policies",
    "_request",
    "_response",
    "_stats",
    "_upstream",
)

_HERE = Path(__file__).parent
# Written by scripts/compile_gateway.py next to the extensions: "module sha256" per line.
MANIFEST = "_native.sources"


def compiled_modules(directory: Path = _HERE) -> dict[str, Path]:
    """The hot modules that have a compiled extension in ``directory``, by name."""
    found: dict[str, Path] = {}
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        for name in HOT:
            path = directory / f"{name}{suffix}"
            if name not in found and path.exists():
                found[name] = path
    return found


def source_digests(directory: Path = _HERE) -> dict[str, str]:
    """SHA-256 of each hot module's source: what a build was made from (``MANIFEST``)."""
    return {
        name: hashlib.sha256((directory / f"{name}.py").read_bytes()).hexdigest() for name in HOT
    }


def read_manifest(directory: Path = _HERE) -> dict[str, str]:
    try:
        text = (directory / MANIFEST).read_text()
    except OSError:
        return {}
    return dict(line.split(" ", 1) for line in text.splitlines() if " " in line)


def select_build(directory: Path = _HERE) -> str:
    """Which build runs: ``compiled``, ``pure``, or ``pure (stale build)``. For the last two,
    this package's imports are made to load sources only, so no compiled module runs.

    A build is current when every hot source still has the digest it was compiled from. (Not
    file times: a module's extension is only a stub that is not rebuilt when its code changes,
    and a checkout sets times without changing content.)
    """
    compiled = compiled_modules(directory)
    if not compiled:
        return "pure"
    built_from = read_manifest(directory)
    stale = sorted(
        name
        for name, digest in source_digests(directory).items()
        if name not in compiled or built_from.get(name) != digest
    )
    if os.environ.get(PURE_ENV) == "1":
        build = "pure"
    elif stale:
        log.warning(
            "gateway: compiled build of %s does not match the sources; running the sources "
            "(rebuild with: make in a clone, or gyro gateway compile)",
            ", ".join(stale),
        )
        build = "pure (stale build)"
    else:
        return "compiled"
    # Submodules are found through the package's directory: a finder there that knows only
    # source files makes every import of this package skip the extensions.
    sys.path_importer_cache[str(directory)] = importlib.machinery.FileFinder(
        str(directory),
        (importlib.machinery.SourceFileLoader, importlib.machinery.SOURCE_SUFFIXES),
    )
    return build


BUILD = select_build()
"""The build this process runs; ``gyro gateway serve`` logs it at start."""
