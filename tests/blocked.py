"""Run code in a fresh interpreter where some packages cannot be imported, as on a machine that
lacks them: a viewer's client without PyTorch, a base install without an extra."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterable
from typing import Any

#: Installed first in the child: importing a blocked package (or a module under it) raises
#: ModuleNotFoundError, exactly as when it is not installed.
_BLOCKER = """
import importlib.abc, sys

BLOCKED = {blocked!r}


class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
        return None


for _name in [m for m in sys.modules if any(m == b or m.startswith(b + ".") for b in BLOCKED)]:
    del sys.modules[_name]
sys.meta_path.insert(0, _Blocker())
"""


def run_blocked(blocked: Iterable[str], code: str, timeout: float = 300.0) -> dict[str, Any]:
    """Run ``code`` in a new interpreter with ``blocked`` (top-level or dotted module names)
    unimportable and return the JSON object it prints on its last line of output.

    Fails the calling test (with the child's stderr) when the child exits non-zero.
    """
    script = _BLOCKER.format(blocked=sorted(blocked)) + textwrap.dedent(code)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout, env=env
    )
    assert proc.returncode == 0, f"child failed:\n{proc.stderr[-6000:]}"
    lines = proc.stdout.strip().splitlines()
    assert lines, f"child printed nothing:\n{proc.stderr[-6000:]}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result
