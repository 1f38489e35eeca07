"""Run the refine loop's small-row operations on one CPU thread, in the calling thread only.

The loop evaluates the head on a few thousand feature rows per step; handing rows of that size
to a pool of threads costs more than it saves (on a loaded machine several times more). Torch's
``set_num_threads`` would do, but it is process-wide: a server refining several sessions in
parallel threads would race on it and slow the backbone of every other request.
:func:`single_threaded` instead lowers the two thread counts torch's CPU kernels read *for the
calling thread*: OpenMP's (``omp_set_num_threads`` sets the calling thread's value) and MKL's
(``mkl_set_num_threads_local``). Other threads, and threads started later, keep the process's
setting, which the engine never changes (the command line sets it once, ``--threads``).

Measured on the 2-core development machine while other jobs loaded it: one Adam step of a
96-64-2 head on 6000 rows took 222 ms with 2 threads, 170 ms with OpenMP alone pinned, 24 ms
with OpenMP and MKL pinned for the thread, 19 ms with the process-wide ``set_num_threads(1)``.

Where torch was built without GNU OpenMP or MKL (the controls are not found), the context does
nothing: results are the same, the loop is just not pinned to one thread.
"""

from __future__ import annotations

import ctypes
import functools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

_MKL_NAMES = ("mkl_set_num_threads_local", "mkl_get_max_threads")


class _MklLocal:
    """MKL's thread-local thread count, as exported by the library torch loaded.

    MKL exports a C entry (count by value) and a Fortran one (count by reference); where the
    plain name is the Fortran entry (both names at one address, as in torch's own build), the
    count goes by reference. Every change is read back; a library that does not obey is not
    used again.
    """

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.set = lib.mkl_set_num_threads_local
        self.set.restype = ctypes.c_int
        self.get = lib.mkl_get_max_threads
        self.get.restype = ctypes.c_int
        fortran = getattr(lib, "mkl_set_num_threads_local_", None)
        address = ctypes.cast(self.set, ctypes.c_void_p).value
        self.by_reference = fortran is not None and (
            ctypes.cast(fortran, ctypes.c_void_p).value == address
        )

    def __call__(self, count: int) -> int:
        """Set this thread's count (0 = the global one); returns the previous local count."""
        if self.by_reference:
            return int(self.set(ctypes.byref(ctypes.c_int(count))))
        return int(self.set(ctypes.c_int(count)))


@functools.cache
def _controls() -> tuple[ctypes.CDLL | None, _MklLocal | None]:
    """The OpenMP runtime torch loaded and MKL's thread-local setting, or None each."""
    torch.get_num_threads()  # loads torch's CPU runtime
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None, None
    libs = dict.fromkeys(re.findall(r"(/\S+\.so(?:\.\d+)*)\s*$", maps, flags=re.MULTILINE))
    omp: ctypes.CDLL | None = None
    mkl: _MklLocal | None = None
    for path in libs:
        name = Path(path).name
        try:
            if omp is None and name.startswith("libgomp"):
                omp = ctypes.CDLL(path)
                omp.omp_get_max_threads.restype = ctypes.c_int
            elif mkl is None and name.startswith(("libtorch_cpu", "libmkl_rt")):
                lib = ctypes.CDLL(path)
                if all(hasattr(lib, n) for n in _MKL_NAMES):
                    mkl = _MklLocal(lib)
        except OSError:
            continue
    if mkl is not None and not _obeys(mkl):
        mkl = None
    return omp, mkl


def _obeys(mkl: _MklLocal) -> bool:
    """Setting this thread's MKL count to 1 reads back as 1, and clearing it restores it."""
    before = int(mkl.get())
    previous = mkl(1)
    ok = int(mkl.get()) == 1
    mkl(previous)
    return ok and int(mkl.get()) == before


@contextmanager
def single_threaded() -> Iterator[None]:
    """Within the block, torch CPU operations started from this thread use one thread.

    >>> with single_threaded():
    ...     y = torch.ones(4096, 96) @ torch.ones(96, 32)
    """
    omp, mkl = _controls()
    if omp is None and mkl is None:
        yield
        return
    torch.get_num_threads()  # torch sets up this thread's OpenMP value before we change it
    before = int(omp.omp_get_max_threads()) if omp is not None else 0
    if omp is not None:
        omp.omp_set_num_threads(1)
    mkl_before = mkl(1) if mkl is not None else 0
    try:
        yield
    finally:
        if omp is not None:
            omp.omp_set_num_threads(before)
        if mkl is not None:
            mkl(mkl_before)  # 0: back to the global setting
