"""The experiments behind ``docs/accuracy.md``, run by ``medrefine bench report``.

Each :class:`Spec` is one accuracy experiment on a dataset folder under ``--data-root``. Case
counts are chosen so that the whole report runs in under an hour on 2 CPU cores; every figure
states how many cases it rests on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from medrefine_lab.eval.robot.types import RobotConfig

BASELINES_2D = ("grabcut", "graphcut", "geodesic", "random_walker", "watershed")
BASELINES_3D = ("graphcut", "geodesic", "watershed")
OURS = ("medrefine", "medrefine:paper", "marks-only")
FLUO_TEST_SHIFT = ("256x320_color_light", "1024x1024_gray_light")
FIRST_ROUNDS = 4  # rounds of strokes in the one-refine experiments' single interaction
ONE_REFINE = ("medrefine", "marks-only") + BASELINES_2D
ONE_REFINE_NEW = ("medrefine", "medrefine+newclass", "marks-only") + BASELINES_2D


@dataclass(frozen=True)
class Spec:
    """One experiment: ``key`` names its output folder and its section in the report."""

    key: str
    title: str
    dataset: str
    model: str
    methods: tuple[str, ...]
    cases: int
    interactions: int = 5
    robot: RobotConfig = field(default_factory=RobotConfig)
    groups: tuple[str, ...] | None = None
    skip: int = 0


def specs(quick: bool = False) -> list[Spec]:
    """Every experiment of the report; ``quick`` shrinks each to 2 cases and 2 interactions."""
    nuclei, hippo, fetal = "dsb2018_nuclei", "msd_hippocampus", "hc18_fetal_head"
    out = [
        Spec(
            "nuclei",
            "1. Nuclei (DSB 2018, 2D), per-class scribbles",
            nuclei,
            "nuclei-unet2d",
            OURS + BASELINES_2D,
            16,
        ),
        Spec(
            "nuclei-20",
            "1b. Nuclei, 20 interactions",
            nuclei,
            "nuclei-unet2d",
            ("medrefine", "marks-only", "graphcut"),
            8,
            interactions=20,
        ),
        Spec(
            "hippocampus",
            "2. Hippocampus (MSD Task04, 3D, two classes)",
            hippo,
            "hippocampus-unet3d",
            OURS + BASELINES_3D,
            16,
        ),
        Spec(
            "fetalhead",
            "3. Fetal head (HC18 ultrasound, 2D)",
            fetal,
            "fetalhead-unet2d",
            OURS + BASELINES_2D + ("medrefine:shifted", "medrefine:shifted,gate.steps=0"),
            10,
        ),
        Spec(
            "shift",
            "4. Distribution shift: fluorescence-trained nuclei network on stained and "
            "brightfield images",
            nuclei,
            "nuclei-fluo-unet2d",
            OURS + ("medrefine:shifted",) + BASELINES_2D,
            12,
            groups=FLUO_TEST_SHIFT,
        ),
        Spec(
            "new-structure",
            "5. A structure the network never learned: the nuclei network on fetal-head images",
            fetal,
            "nuclei-unet2d",
            ("medrefine", "medrefine:shifted", "medrefine+newclass", "marks-only") + BASELINES_2D,
            6,
        ),
        Spec(
            "ablation-nuclei",
            "6. Ablations on nuclei (region growing, trainable depth, iterations, warm vs reset)",
            nuclei,
            "nuclei-unet2d",
            (
                "medrefine",
                "medrefine:marks.grow=on",
                "medrefine:loop.trainable_layers=1",
                "medrefine:loop.max_iterations=10",
                "medrefine:loop.max_iterations=50",
                "medrefine:loop.warm_start=off",
                "medrefine:gate.kind=none",
                "medrefine:gate.anchor_reach=1000",
                "medrefine:gate.edges=0",
            ),
            8,
        ),
        Spec(
            "ablation-shift",
            "6a. Ablations under the shift (the shifted settings: anchor, evidence, widening "
            "steps, iterations; how wide the gate may open)",
            nuclei,
            "nuclei-fluo-unet2d",
            (
                "medrefine:shifted",
                "medrefine:shifted,gate.anchor_reach=1000",
                "medrefine:shifted,gate.anchor_relax=on",
                "medrefine:shifted,gate.steps=0",
                "medrefine:shifted,gate.evidence=0",
                "medrefine:shifted,loop.wide_iterations=20",
                "medrefine:shifted,gate.steps=1",
                "medrefine:shifted,gate.local_width=64",
                "medrefine:gate.steps=99,gate.widest=1e9",
                "medrefine:gate.steps=2,gate.widest=48",
                "medrefine:gate.kind=none",
            ),
            12,
            groups=FLUO_TEST_SHIFT,
        ),
        Spec(
            "mode-click",
            "6b. Clicks instead of scribbles (nuclei)",
            nuclei,
            "nuclei-unet2d",
            ("medrefine", "marks-only", "graphcut"),
            8,
            robot=RobotConfig(mode="click"),
        ),
        Spec(
            "mode-box",
            "6c. A box, then clicks (nuclei)",
            nuclei,
            "nuclei-unet2d",
            ("medrefine", "marks-only", "graphcut"),
            8,
            robot=RobotConfig(mode="box"),
        ),
    ]
    held_out = "settings were chosen on the first cases of each test split; these come after them"
    out += [
        Spec(
            "held-out-nuclei",
            f"7. Held-out nuclei (test cases 17-37; {held_out})",
            nuclei,
            "nuclei-unet2d",
            ("medrefine", "marks-only", "medrefine:gate.edges=0", "medrefine:shifted"),
            21,
            skip=16,
        ),
        Spec(
            "held-out-hippocampus",
            f"7b. Held-out hippocampus (test cases 17-36; {held_out})",
            hippo,
            "hippocampus-unet3d",
            ("medrefine", "marks-only", "medrefine:gate.edges=0"),
            20,
            skip=16,
        ),
        Spec(
            "held-out-fetalhead",
            f"7c. Held-out fetal head (test cases 11-30; {held_out})",
            fetal,
            "fetalhead-unet2d",
            ("medrefine", "marks-only", "medrefine:gate.edges=0", "medrefine:shifted"),
            20,
            skip=10,
        ),
    ]
    out.append(
        Spec(
            "held-out-new-class",
            "7d. Held-out pairing, never tuned on: the fetal-head network asked for a new class "
            "(nucleus, `add_class`) on stained nuclei images",
            nuclei,
            "fetalhead-unet2d",
            ("medrefine+newclass",) + BASELINES_2D,
            6,
            groups=("256x320_color_light",),
        )
    )
    out.append(
        Spec(
            "held-out-new-class-fluo",
            "7e. Held-out pairing and images, never tuned on: the fetal-head network asked for a "
            "new class (nucleus, `add_class`) on fluorescence nuclei images (no setting of a new "
            "class was chosen on fluorescence images)",
            nuclei,
            "fetalhead-unet2d",
            ("medrefine+newclass",) + BASELINES_2D,
            6,
            groups=("256x256_gray_dark",),
        )
    )
    # A person's first interaction: several strokes per class, then one refine (target 4).
    first = RobotConfig(first_rounds=FIRST_ROUNDS)
    one = f"one refine after {FIRST_ROUNDS} rounds of strokes; D1 is the figure"
    out += [
        Spec(f"one-refine-{key}", f"9{n}. {title} ({one})", data, model, methods, cases, 1, first)
        for n, key, title, data, model, methods, cases in (
            ("", "nuclei", "Nuclei", nuclei, "nuclei-unet2d", ONE_REFINE, 8),
            ("b", "fetalhead", "Fetal head", fetal, "fetalhead-unet2d", ONE_REFINE, 8),
            ("c", "new-structure", "New structure", fetal, "nuclei-unet2d", ONE_REFINE_NEW, 6),
        )
    ]
    out.append(
        Spec(
            "one-refine-shift",
            f"9d. Distribution shift ({one})",
            nuclei,
            "nuclei-fluo-unet2d",
            ONE_REFINE + ("medrefine:shifted",),
            12,
            1,
            first,
            groups=FLUO_TEST_SHIFT,
        )
    )
    if quick:
        return [
            Spec(
                s.key,
                s.title,
                s.dataset,
                s.model,
                s.methods[:2],
                2,
                min(s.interactions, 2),
                s.robot,
                s.groups,
                s.skip,
            )
            for s in out
        ]
    return out
