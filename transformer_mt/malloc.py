"""The process's memory allocator setting, made by every CLI before its work starts (no PyTorch here)."""
from __future__ import annotations

import ctypes
import os
import platform

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)


def retain_freed_memory() -> bool:
    """Let glibc keep freed tensor memory for reuse instead of handing it back to the OS each time.

    By default glibc serves blocks above 32 MiB (a training batch's logits, their gradient) and, as
    its heap shrinks, many smaller ones with fresh pages from the OS, and returns them when freed,
    so that every training step faults its pages back in; kept, they cost nothing to reuse
    (docs/performance.md has the side-by-side figures). PyTorch's CPU tuning guide suggests a caching malloc
    (jemalloc, tcmalloc) for this; glibc's own thresholds do it here. Left alone where the user
    already chose (MALLOC_* or GLIBC_TUNABLES set, or a preloaded library) and off glibc.
    Returns whether the setting was applied.
    """
    chose = any(name.startswith("MALLOC_") for name in os.environ) or bool(
        {"GLIBC_TUNABLES", "LD_PRELOAD"} & os.environ.keys())
    if chose or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    largest = 2**31 - 1  # mallopt takes a C int
    return bool(mallopt(_M_MMAP_THRESHOLD, largest)) and bool(mallopt(_M_TRIM_THRESHOLD, largest))
