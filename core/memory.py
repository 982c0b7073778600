"""Large freed blocks handed back to the system, so a run's footprint follows what it holds, not what it
once held.

    memory.keep_large_blocks_apart()   # at a run's start: large blocks mapped on their own, returned when freed

It acts on glibc's allocator (Linux) and does nothing elsewhere.

Why: glibc serves a block above its mmap threshold (128 KB at first) with a mapping of its own, returned
to the system when freed, but each such free raises the threshold to the block's size (up to 32 MB); from
then on blocks up to that size come from the allocator's arenas, one per thread, and stay there once
freed. A fixed threshold keeps every block of 1 MB or more a mapping of its own. What it reaches is what
glibc serves: NumPy arrays, tf.data's batches of strings, and TensorFlow's tensors when oneDNN is off (with
oneDNN on, tensors of 256 KB or more come from oneDNN's own pool, which keeps them: docs/platform-notes.md).
Measured on the 31 MB texts run, side by side: 1.35 GB held while the export check ran, against 1.42; the
check's own process 1,045 MB against 1,083. malloc_trim(0) at the run's phase ends (after the vocabulary
pass, before the export check) returned 15 MB or less: not used.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_MMAP_THRESHOLD = -3  # mallopt's parameter (malloc.h)
THRESHOLD = 1 << 20  # bytes: blocks of at least this size get a mapping of their own


@functools.cache
def _glibc():
    """glibc, or None (another C library, another system)."""
    try:
        found = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return found if hasattr(found, "mallopt") else None


def keep_large_blocks_apart() -> bool:
    """Fix the mmap threshold at THRESHOLD (which also stops glibc raising it). True where it took."""
    libc = _glibc()
    return bool(libc and libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD) == 1)
