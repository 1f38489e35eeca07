"""``medrefine serve`` fixes glibc's mmap threshold: large temporaries go back to the system."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from medrefine.cli import main
from medrefine.errors import InputError
from medrefine.serve.allocator import ENV, fix_mmap_threshold

# A child process, so the threshold of the test process is never touched. It frees an 8 MiB
# block (under glibc's adaptive rule this raises the threshold to 8 MiB), then asks for 2 MiB and
# prints whether that came from mmap (mallinfo2's hblkhd grew) rather than from the heap.
CHILD = """
import ctypes, sys
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                               "usmblks", "fsmblks", "uordblks", "fordblks",
                                               "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "fix":
    from medrefine.serve.allocator import fix_mmap_threshold
    print(fix_mmap_threshold(1 << 20), file=sys.stderr)
libc.free(libc.malloc(8 << 20))
before = libc.mallinfo2().hblkhd
block = libc.malloc(2 << 20)
print(libc.mallinfo2().hblkhd - before >= (2 << 20))
"""


def _mmapped_after_free(mode: str) -> bool:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip() == "True"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_fixed_threshold_keeps_large_blocks_out_of_the_heap() -> None:
    assert _mmapped_after_free("default") is False  # the adaptive threshold rose to 8 MiB
    assert _mmapped_after_free("fix") is True


def test_a_threshold_glibc_refuses_is_a_typed_error() -> None:
    with pytest.raises(InputError, match=r"4096\.\.33554432 bytes"):
        fix_mmap_threshold(64 << 20)


def test_environment_setting_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "65536")
    assert fix_mmap_threshold(1 << 20) == f"kept ({ENV}=65536 in the environment)"


def test_serve_refuses_a_threshold_out_of_range(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--port", "0", "--mmap-threshold-kb", "65536"]) == 2
    assert "mmap threshold must be in" in capsys.readouterr().err
