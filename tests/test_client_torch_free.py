"""``import medrefine.client`` and the types a remote session uses need numpy, grpcio and protobuf
only: a child interpreter in which PyTorch, ONNX, ONNX Runtime, SciPy and matplotlib cannot be
imported runs them, and proves the block holds by failing to import the engine."""

from __future__ import annotations

from blocked import run_blocked

#: What a client must never need (the blocker makes importing them fail).
TORCH_AND_CO = ("torch", "onnx", "onnxruntime", "scipy", "matplotlib")

_CLIENT = """
import json, sys

import numpy as np

HEAVY = {
    "torch", "onnx", "onnxruntime", "scipy", "matplotlib", "skimage", "PIL", "nibabel",
    "tifffile", "nrrd", "pydicom", "highdicom",
}
CORE = ("engine", "kernels", "models", "backends", "onnx", "site", "io", "samples", "eval")

import medrefine as mr
import medrefine.client as client
from medrefine import errors
from medrefine.records import Interaction
from medrefine.serve import convert
from medrefine.v1 import refine_pb2 as pb

out = {}
marks = [
    mr.Scribble(1, [(2, 2), (5, 9)], 1),
    mr.Click(0, (3, 4), 2),
    mr.Box(1, (1, 1), (6, 6)),
    mr.Paint(0, np.array([[1, 2], [2, 3]])),
]
protos = [convert.mark_to_proto(m) for m in marks]
back = [convert.mark_from_proto(p, 2, 100) for p in protos]
out["marks_round_trip"] = [convert.mark_to_proto(b) for b in back] == protos

mask = (np.arange(96 * 112).reshape(96, 112) % 3).astype(np.uint8)
delta = convert.encode_delta(None, 0, mask, 3)
out["delta_round_trip"] = bool(np.array_equal(convert.apply_delta(None, delta, mask.shape), mask))

summary = pb.RefineSummary(iterations=7, satisfied=True, loss_trace=[1.0, 0.5], mode="head")
result = convert.summary_from_proto(summary, mask, 2)
out["result"] = [type(result).__name__, result.iterations, list(result.loss_trace)]
out["interaction"] = Interaction("refine", tuple(marks[:1]), result).kind
version = convert.version_from_proto(
    pb.SiteVersion(version=3, kind="fit", images=4, checked=True, network_dice=[0.5],
                   site_dice=[0.7], in_use=True, reason="better")
)
out["site_version"] = [type(version).__name__, version.version, version.in_use]
out["volume"] = mr.Volume(np.zeros((4, 5), np.float32), spacing=(1.0, 2.0)).spacing
out["progress"] = mr.RefineProgress(1, 10, 0.5, 0).iteration
out["protocol"] = mr.SessionLike.__name__

remote = client.RemoteSession("127.0.0.1:1", "nuclei-unet2d", timeout=1)
out["remote"] = [remote.pending == (), remote.mask_version, remote.num_classes]
try:
    remote.marks
    out["no_image"] = "no error"
except errors.StateError as exc:
    out["no_image"] = type(exc).__name__
remote.close()

out["heavy_loaded"] = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)
out["core_loaded"] = sorted(
    m for m in sys.modules if m.startswith("medrefine.") and m.split(".")[1] in CORE
)
try:
    import medrefine.engine.session.session  # needs PyTorch: must fail here
    out["engine"] = "imported"
except ModuleNotFoundError as exc:
    out["engine"] = exc.name
try:
    mr.Session
    out["lazy_session"] = "imported"
except ModuleNotFoundError as exc:
    out["lazy_session"] = exc.name
print(json.dumps(out))
"""


def test_client_and_its_types_need_no_torch() -> None:
    out = run_blocked(TORCH_AND_CO, _CLIENT)
    assert out["heavy_loaded"] == [], "medrefine.client pulled these in"
    assert out["core_loaded"] == [], "medrefine.client pulled in the engine's packages"
    assert out["marks_round_trip"] and out["delta_round_trip"]
    assert out["result"] == ["RefineResult", 7, [1.0, 0.5]]
    assert out["interaction"] == "refine"
    assert out["site_version"] == ["SiteVersion", 3, True]
    assert out["volume"] == [1.0, 2.0]
    assert out["progress"] == 1 and out["protocol"] == "SessionLike"
    assert out["remote"] == [True, 0, 0]
    assert out["no_image"] == "StateError"
    # the block held: the engine, in process, could not be imported
    assert out["engine"] in TORCH_AND_CO, out["engine"]
    assert out["lazy_session"] in TORCH_AND_CO, out["lazy_session"]


def test_the_blocker_blocks_what_it_names_and_nothing_else() -> None:
    out = run_blocked(
        ("torch",),
        """
        import json
        try:
            import torch.nn
            blocked = False
        except ModuleNotFoundError as exc:
            blocked = exc.name
        import numpy
        print(json.dumps({"blocked": blocked, "numpy": numpy.__name__}))
        """,
    )
    assert out == {"blocked": "torch.nn", "numpy": "numpy"} or out == {
        "blocked": "torch",
        "numpy": "numpy",
    }
