"""glibc's malloc told to keep freed request buffers for reuse instead of returning them.

Why: a 256-row request allocates and frees buffers of ~1 MB (the body, the parsed tensor).
glibc serves blocks over its mmap threshold (128 kB until a larger block is freed) with fresh
mmap()ed pages and gives freed memory at the top of the heap back to the kernel over its trim
threshold; either way the next request writes to new pages, and every 4 kB page costs a fault.
Measured, one worker, one client, minor page faults per request (`/proc/<pid>/stat` field 10
over the run): 256-row JSON (1 MB, wrk) 471 -> 0; 256-row gRPC (h2load) 134-139 -> 1-2.
The price: freed memory stays in the process, up to TRIM_THRESHOLD beyond what is in use.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest allowed value on 64-bit: bodies up to 32 MiB
TRIM_THRESHOLD = 64 * 1024 * 1024  # free memory kept at the heap's top before returning it

logger = logging.getLogger(__name__)


def reuse_freed_memory() -> bool:
    """Apply the thresholds to this process; False where the C library is not glibc (musl,
    macOS), which is left as it is. Call it in each worker process."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt, _ = libc.mallopt, libc.gnu_get_libc_version  # the second exists only in glibc
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1 or \
            mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1:
        logger.warning("glibc refused the malloc thresholds; large requests will page-fault more")
        return False
    return True
