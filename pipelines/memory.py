"""Allocator settings for the processes that run passes.

A pass allocates and frees the same large buffers for every row: a decoded picture (~1 MB at 512 px), the packed
copy its pixel hash reads, the image bytes a batch holds. glibc's malloc serves such sizes from fresh `mmap`s and
hands freed heap tops back to the kernel, so every row touches new pages, and a page touched for the first time
costs a fault and a zeroed page. On the 2-core VM this project is measured on, that was a quarter of a pass's CPU:
a 3,000-image decode/heuristics/dedup run in one process took 20–22 s of CPU and ~1 M page faults, and 15.5–16 s
and ~20 k faults with the heap kept (docs/performance.md). Keeping up to `TRIM_BYTES` of freed heap and serving
blocks below `MMAP_BYTES` from the heap lets the next row reuse the pages the last one used. Memory stays bounded:
a process holds at most `TRIM_BYTES` of free heap beyond what it uses.

Arrow's own allocator (mimalloc in the pyarrow wheels) purges freed pages 10 ms after their last use, so every
batch of image bytes a pass builds touched new pages again (0.4 ms per 116 kB image in `RecordBatch.from_pylist`);
with the heap kept, Arrow allocates from it instead (the system pool), and that cost fell to ~0.08 ms.

Only glibc has these knobs (`mallopt`); elsewhere this does nothing and Arrow keeps its default pool.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

import pyarrow as pa

_M_TRIM_THRESHOLD = -1  # glibc malloc.h
_M_MMAP_THRESHOLD = -3
TRIM_BYTES = 128 << 20  # free heap a process keeps instead of returning it to the kernel
MMAP_BYTES = 32 << 20  # blocks at least this large still get their own mapping (a huge picture)

_tuned: bool | None = None


def keep_heap() -> bool:
    """Keep this process's heap and let Arrow allocate from it (once; later calls return the first result). True
    when the settings took effect."""
    global _tuned
    if _tuned is None:
        _tuned = False
        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                _tuned = bool(libc.mallopt(_M_TRIM_THRESHOLD, TRIM_BYTES)) and bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_BYTES))
            except (OSError, AttributeError):  # no loadable libc or no mallopt: keep the defaults
                _tuned = False
        if _tuned:
            pa.set_memory_pool(pa.system_memory_pool())
    return _tuned
