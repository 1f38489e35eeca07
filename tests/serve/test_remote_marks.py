"""RemoteSession.marks mirrors Session.marks through refine, undo, redo, reset and a reopened
session; and a client without PyTorch drives a live server (the server runs in this process,
the client in a child interpreter that cannot import torch, onnx, scipy or matplotlib)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import medrefine as mr
from blocked import run_blocked
from medrefine.client import RemoteSession
from medrefine.engine.budget.cache import FeatureCache
from medrefine.serve import convert
from medrefine.types import Mark

from .conftest import Served, marks_2d


def _wire(marks: tuple[Mark, ...]) -> list[bytes]:
    """Marks as their proto bytes (a Paint's pixels are an array: no == on the dataclass)."""
    return [convert.mark_to_proto(m).SerializeToString() for m in marks]


def test_marks_follow_the_session_through_its_history(served: Served, nuclei: np.ndarray) -> None:
    local = mr.Session(mr.load_model("nuclei-unet2d"), cache=FeatureCache())
    with RemoteSession(served.target, model="nuclei-unet2d") as remote:
        remote.set_image(nuclei)
        local.set_image(nuclei)
        assert remote.marks == local.marks == ()
        first, second = marks_2d()[:2], marks_2d()[2:]
        for step in (first, second):
            for mark in step:
                remote.add(mark)
                local.add(mark)
            assert _wire(remote.marks) == _wire(local.marks)  # pending ones included
            remote.refine()
            local.refine()
            assert _wire(remote.marks) == _wire(local.marks)
        remote.add_class("lesion")
        local.add_class("lesion")
        for step in ("undo", "undo", "redo", "reset", "undo", "redo"):
            getattr(remote, step)()
            getattr(local, step)()
            assert _wire(remote.marks) == _wire(local.marks), step
        remote.undo()
        local.undo()
        assert len(local.marks) == 4  # back before the reset
        reopened = RemoteSession(served.target, "nuclei-unet2d", session_id=remote.session_id)
        with reopened:
            reopened.set_image(nuclei)  # the server still holds the session: resumed
            assert reopened.resumed
            assert _wire(reopened.marks) == _wire(local.marks)


_CLIENT = """
import json, sys

import numpy as np

import medrefine as mr
from medrefine.client import RemoteSession

image = np.load({image!r})
with RemoteSession({target!r}, "nuclei-unet2d", timeout=120) as remote:
    network = remote.set_image(image)
    remote.add(mr.Scribble(1, [(20, 20), (30, 45), (36, 60)], 2))
    remote.add(mr.Click(0, (80, 90), 3))
    refined = remote.refine()
    marks = len(remote.marks)
    undone = remote.undo()
    out = {{
        "masks": [int(network.sum()), int(refined.mask.sum()), int(undone.sum())],
        "marks": [marks, len(remote.marks)],
        "history": [i.kind for i in remote.history],
        "heavy": sorted(
            m for m in sys.modules
            if m.split(".")[0] in {{"torch", "onnx", "onnxruntime", "scipy", "matplotlib"}}
        ),
    }}
    remote.close_session()
print(json.dumps(out))
"""


def test_a_client_without_torch_round_trips(
    served: Served, nuclei: np.ndarray, tmp_path: Path
) -> None:
    path = tmp_path / "nuclei.npy"
    np.save(path, nuclei)
    code = _CLIENT.format(image=str(path), target=served.target)
    out = run_blocked(("torch", "onnx", "onnxruntime", "scipy", "matplotlib"), code)
    local = mr.Session(mr.load_model("nuclei-unet2d"), cache=FeatureCache())
    network = local.set_image(nuclei)
    local.add(mr.Scribble(1, [(20, 20), (30, 45), (36, 60)], 2))
    local.add(mr.Click(0, (80, 90), 3))
    refined = local.refine()
    assert out["masks"] == [int(network.sum()), int(refined.mask.sum()), int(network.sum())]
    assert out["marks"] == [2, 0]
    assert out["history"] == []
    assert out["heavy"] == []
