"""Keeping a backup's memory flat: large buffers go straight to and from the OS.

A backup allocates many short-lived buffers of 256 KiB to 16 MiB (chunks, their compressed and
encrypted copies, packs) from several threads. glibc serves such blocks with mmap only up to a
threshold that it *raises* (up to 32 MiB) each time a large block is freed; after that they come
from per-thread heaps (arenas), which fragment and rarely shrink, so the peak RSS of a full backup
of 1 GB was ~2x restic's. A fixed threshold (which also turns the raising off) keeps it near restic's
at no measurable cost in time.
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["bound_heap"]

M_MMAP_THRESHOLD = -3  # glibc's <malloc.h>
THRESHOLD = 1 << 20


def bound_heap() -> bool:
    """Serve allocations of 1 MiB or more with mmap in this process; True if it took effect.

    >>> bound_heap() in (True, False)
    True
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False  # no mallopt in this C library: nothing to tune
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, THRESHOLD))
