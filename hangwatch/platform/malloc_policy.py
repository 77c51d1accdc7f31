"""glibc's malloc, tuned so that the worker's C heap gives memory back (worker.malloc_*).

Why: a worker through 1,000,000 borrowers held 276 MB of RSS of which 85 MB was free C heap
that glibc kept (hangwatch_malloc_bytes{kind="free"}, `python -m bench.state_worker`). Two
well-known causes, both RocksDB's ordinary practice to avoid:
- arenas: glibc gives each thread that allocates its own arena (up to 8 per core), and freed
  memory stays in the arena it came from. RocksDB's flush and compaction threads, Faust's
  consumer thread and the main thread each fill and free their own. Fewer arenas
  (worker.malloc_arena_max) share the free memory.
- the dynamic mmap threshold: a freed mmapped block (an aiokafka fetch buffer, a memtable's
  arena block) raises the threshold up to 32 MB, so later blocks of that size come from the
  heap, where one live block pins the free space around it. A fixed threshold
  (worker.malloc_mmap_threshold_kb) keeps large blocks mmapped and returned when freed.

mallopt() is called once, at start, before the worker starts its threads. Not glibc (or 0):
nothing changes.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


def configure(arena_max: int, mmap_threshold_kb: int) -> bool:
    """Set glibc's arena limit and a fixed mmap threshold (0 leaves either as glibc has it).
    Returns whether glibc took them."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = True
    if arena_max:
        ok = mallopt(M_ARENA_MAX, arena_max) == 1 and ok
    if mmap_threshold_kb:
        ok = mallopt(M_MMAP_THRESHOLD, mmap_threshold_kb * 1024) == 1 and ok
    if not ok:
        log.warning("malloc: mallopt refused arena_max=%d mmap_threshold_kb=%d", arena_max, mmap_threshold_kb)
    return ok
