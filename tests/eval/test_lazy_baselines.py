"""The demo and the accuracy bench's own methods run without the ``eval`` extra installed, and the
graph cut baseline without PyMaxflow (it cuts with the C++ kernel)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_BLOCK = "import sys\nfor name in ('cv2', 'maxflow', 'SimpleITK'):\n    sys.modules[name] = None\n"


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _BLOCK + code], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def test_demo_runs_without_opencv_maxflow_simpleitk(tmp_path: Path) -> None:
    out = tmp_path / "demo.png"
    done = _run(
        "from medrefine.cli import main\n"
        f"raise SystemExit(main(['demo', '--interactions', '1', '--out', {str(out)!r}]))\n",
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 0 and "Dice" in done.stdout


def test_a_baseline_imports_its_library_only_when_built(tmp_path: Path) -> None:
    done = _run(
        "from medrefine_lab.eval.baselines import BASELINES, get_baseline\n"
        "assert sorted(BASELINES) == "
        "['geodesic', 'grabcut', 'graphcut', 'random_walker', 'watershed']\n"
        "print(get_baseline('geodesic').name)\n"
        "print(get_baseline('graphcut').name)\n"
        "try:\n"
        "    get_baseline('grabcut')\n"
        "except ImportError as exc:\n"
        "    print('needs', exc.name)\n",
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["geodesic", "graphcut", "needs", "cv2"]
