"""Keeping a long forward pass's freed memory from piling up in the C heap.

glibc serves allocations under its mmap threshold from heap arenas and keeps freed chunks there;
the threshold is dynamic and rises (up to 32 MiB) after large blocks are freed. A long forward
frees and reallocates activations of many sizes every layer, the arenas fragment, and the
resident size grew by ~48 MB per layer at T = 4096 on SmolLM2 (+1.4 GB over 30 layers), while
the same run with a fixed 1 MiB threshold stays flat (+0.55 GB peak). ``malloc_trim`` after
each layer did not help (the freed chunks share pages with live ones), so long analyses fix the
threshold: every allocation of 1 MiB or more is its own mapping, returned to the OS when freed.
It changes no number; it is process-wide, set once, and only on glibc (a no-op elsewhere).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools

# Below this many tokens per batch a layer's temporaries are small and fragmentation does not matter.
FIX_FROM_TOKENS = 1024
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
_THRESHOLD_BYTES = 1 << 20


@functools.cache
def fix_mmap_threshold() -> bool:
    """Once per process: allocations >= 1 MiB bypass the heap arenas. True when it took effect."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return False
    if libc is None or not hasattr(libc, "mallopt") or not hasattr(libc, "malloc_trim"):  # not glibc
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, _THRESHOLD_BYTES))
