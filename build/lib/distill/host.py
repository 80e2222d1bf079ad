"""The host a run computes on, where it matters for speed: glibc's allocator on a CPU.

PyTorch's CPU tensors come from ``malloc``. glibc serves blocks above its mmap threshold (at most 32 MiB
by its own rule) with fresh ``mmap`` calls and gives them back on ``free``, and trims the heap's top once
128 KiB are free: so every training step maps the batch's activations (tens of MB) in anew and faults in
every page of them again, in the kernel's time (BENCHMARKS.md, "Where a CPU epoch goes", measures what
it costs). :func:`keep_freed_memory` raises both thresholds to 1 GiB, so freed activations stay in the
heap and the next step reuses them; the process's resident memory then stays near its peak instead of
falling between steps.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import platform

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters, from glibc's malloc.h
KEEP_BYTES = 1 << 30


@functools.lru_cache(maxsize=1)
def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed blocks of up to 1 GiB for reuse; True if it took the settings.

    A no-op (False) off glibc (macOS, musl) and with ``DISTILL_MALLOC=default`` in the environment. Once
    per process."""
    if os.environ.get("DISTILL_MALLOC") == "default" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, KEEP_BYTES)) and bool(libc.mallopt(M_TRIM_THRESHOLD, KEEP_BYTES))
    except (OSError, AttributeError):
        return False
