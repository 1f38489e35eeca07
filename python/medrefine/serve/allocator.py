"""glibc's mmap threshold, fixed for a long-running server process.

glibc serves an allocation above its *mmap threshold* with its own ``mmap`` and returns it to the
system on ``free``; smaller ones come from the heap, whose freed space mostly stays resident.
By default the threshold adapts: each freed mmapped block raises it to that block's size (up to
32 MiB). A session's temporaries (backbone slabs, refine chunks, masks: a few to 32 MiB) then
land in the heap, and a server's resident set grows by hundreds of MiB with no live data behind
it (measured with ``medrefine bench memory --malloc default``: peak 2705 MiB against 1967 MiB
for a 256x256x128 session). ``medrefine serve`` fixes the threshold at start, which also turns
the adaptation off. Setting ``MALLOC_MMAP_THRESHOLD_`` in the environment does the same before
the process starts; when it is set, it is left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

from medrefine.errors import InputError

M_MMAP_THRESHOLD = -3  # mallopt's parameter number (glibc malloc.h)
MAX_THRESHOLD = 32 << 20  # glibc's largest accepted value on 64-bit (HEAP_MAX_SIZE / 2)
ENV = "MALLOC_MMAP_THRESHOLD_"


def fix_mmap_threshold(nbytes: int) -> str:
    """Fix glibc's mmap threshold at ``nbytes`` (bytes) for this process.

    Returns:
        What happened, for the server's log: ``"set to N bytes"``, ``"kept (ENV=... in the
        environment)"``, or ``"not available (...)"`` off glibc (nothing changed then).

    Raises:
        InputError: ``nbytes`` outside 4096..32 MiB.
    """
    if not 4096 <= nbytes <= MAX_THRESHOLD:
        raise InputError(
            f"mmap threshold must be in 4096..{MAX_THRESHOLD} bytes (4 KiB..32 MiB), got {nbytes}"
        )
    if ENV in os.environ:
        return f"kept ({ENV}={os.environ[ENV]} in the environment)"
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError) as exc:
        return f"not available ({exc})"
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if mallopt(M_MMAP_THRESHOLD, nbytes) != 1:
        return "not available (mallopt refused it)"
    return f"set to {nbytes} bytes"
