"""The refine path keeps to the session's device: checked on the CPU, without a GPU.

Each refine runs under :class:`~tests.engine.virtual_device.VirtualDevice`, which gives every
tensor a virtual device (``"session"`` or ``"host"``) and records the ops that would mix them on
a GPU (see that module for the rules and what they cannot see).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import medrefine as mr
from medrefine.engine.budget.cache import FeatureCache
from medrefine.engine.head.runner import rows

from .virtual_device import HOST, SESSION, VirtualDevice, refine_under_mode, report

# ----------------------------------------------------------------------- the mode itself


def test_the_mode_sees_a_host_tensor_meeting_a_session_tensor() -> None:
    """The check can fail: a factory without a device beside the features is flagged, one
    with ``device=`` is not, and ``.numpy()`` of a session tensor is flagged."""
    features = torch.randn(1, 4, 6, 5).contiguous(memory_format=torch.channels_last)
    mode = VirtualDevice()
    mode.mark([features])
    with mode:
        good = rows(features) + torch.zeros(4, device=features.device)
        assert mode.violations == []
        _ = rows(features) * torch.ones(4)  # made by the test, not medrefine: not flagged
        assert mode.violations == []
        picked = rows(features)[torch.arange(3)]  # host indices into a session tensor: fine
        assert mode.violations == [] and mode.tag(picked) == SESSION
        good.numpy()
    assert [v.op for v in mode.violations] == ["TensorBase.numpy"]


def test_a_medrefine_factory_without_a_device_is_flagged() -> None:
    from medrefine.engine.refine.objective import LossInputs, prediction_anchor

    mode = VirtualDevice()
    logits = torch.randn(5, 3)
    mode.mark([logits])
    with mode:  # a host hold from torch.from_numpy, as a caller that forgot .to(device)
        hold = torch.from_numpy(np.ones(5, np.float32))
        mode.mark([hold], HOST)
        x = LossInputs(
            logits, logits, logits, logits, logits, logits, logits.softmax(1), [], [], hold
        )
        prediction_anchor(x)
    assert mode.violations and "objective.py" in mode.violations[0].where


# ----------------------------------------------------------------------- the refine path


def _marks_2d() -> list[list[mr.Mark]]:
    return [
        [mr.Click(label=1, point=(40, 60), radius=2)],
        [mr.Scribble(label=0, points=[(100, 100), (110, 140)], radius=1)],
        [mr.Box(label=1, start=(150, 200), stop=(190, 250))],
    ]


@pytest.mark.parametrize(
    "settings",
    [
        "gate.kind=adaptive",
        "gate.kind=spatial",
        "gate.kind=feature",
        "gate.kind=none",
        "loop.head_eval=full",
    ],
)
def test_refines_on_the_2d_zoo_model_keep_to_the_session_device(settings: str) -> None:
    model = mr.load_model("nuclei-unet2d")
    config = mr.RefineConfig().with_overrides(f"{settings},loop.max_iterations=3")
    session = mr.Session(model, config, cache=FeatureCache(max_bytes=0), device="cpu")
    session.set_image(mr.load_sample("nuclei-stained").image)
    violations = refine_under_mode(session, _marks_2d())
    assert not violations, report(violations)


def test_refines_on_a_3d_zoo_model_keep_to_the_session_device() -> None:
    model = mr.load_model("hippocampus-unet3d")
    config = mr.RefineConfig().with_overrides("loop.max_iterations=3")
    session = mr.Session(model, config, cache=FeatureCache(max_bytes=0), device="cpu")
    image = mr.load_sample("hippocampus-007").image
    session.set_image(image)
    shape = session.image_shape
    centre = tuple(s // 2 for s in shape)
    marks: list[list[mr.Mark]] = [
        [mr.Click(label=1, point=centre, radius=2)],
        [mr.Click(label=2, point=tuple(c + 3 for c in centre), radius=1)],
    ]
    violations = refine_under_mode(session, marks)
    assert not violations, report(violations)


def test_the_whole_refine_path_keeps_to_the_session_device() -> None:
    """The zoo's 2D model through the default refine path, marks of two classes."""
    model = mr.load_model("nuclei-unet2d")
    config = mr.RefineConfig().with_overrides("loop.max_iterations=3")
    session = mr.Session(model, config, cache=FeatureCache(max_bytes=0), device="cpu")
    session.set_image(mr.load_sample("nuclei-stained").image)
    violations = refine_under_mode(session, _marks_2d())
    assert not violations, report(violations)


def test_the_refine_loop_on_a_cropped_head_keeps_to_the_session_device() -> None:
    """The ``crop`` evaluation mode (no zoo model uses it): a 3x3-convolution head over
    features at half the image's resolution, refined directly by the loop."""
    from medrefine.engine.head.runner import HeadRunner
    from medrefine.engine.refine import constraints
    from medrefine.engine.refine.loop import Refiner

    torch.manual_seed(0)
    head = torch.nn.Sequential(
        torch.nn.Conv2d(6, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Upsample(scale_factor=2, mode="nearest"),
        torch.nn.Conv2d(8, 3, 3, padding=1),
    ).eval()
    features = (torch.randn(1, 6, 24, 28).contiguous(memory_format=torch.channels_last),)
    runner = HeadRunner(head, features, (48, 56))
    assert runner.mode == "crop"
    config = mr.RefineConfig().with_overrides("loop.max_iterations=3")
    cons = constraints.build(
        [mr.Click(label=1, point=(10, 12), radius=2), mr.Click(label=2, point=(40, 44), radius=2)],
        (48, 56),
        config.marks,
    )
    params0 = {n: p.detach().clone() for n, p in head.named_parameters()}
    mode = VirtualDevice()
    mode.mark(features)
    mode.mark(head.parameters())
    mode.mark(params0.values())
    with mode:
        Refiner(config).run(runner, cons, params0)
    assert not mode.violations, report(mode.violations)
