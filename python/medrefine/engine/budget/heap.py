"""Give the C heap's free memory back to the system after an interaction.

glibc serves allocations below its mmap threshold from its heap, and by default the threshold
adapts upward (to 32 MiB) as large blocks are freed, so a refine's temporaries of a few to 32 MiB
come from the heap too. Freed, they mostly stay resident: a 3D session at 128x256x256 grew by
about 15 MiB per refine under glibc's defaults (454 MiB over 30 refines; docs/session-safety.md)
with no live data behind it. ``malloc_trim(0)`` returns every free page of the heap to the
system; it takes about a millisecond. A server that fixes the threshold
(``medrefine serve --mmap-threshold-kb``) needs it less, but it does no harm there.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None off glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def trim() -> bool:
    """Return the heap's free pages to the system; whether any were (False off glibc)."""
    release = _malloc_trim()
    return bool(release(0)) if release is not None else False
