"""The site protocol's bookkeeping: each record holds the Dice of the right interaction, and
the bench's summary reports them."""

from __future__ import annotations

import medrefine as mr
from medrefine.samples import SERIES
from medrefine_lab.benchmarks.site import SiteSet, summary
from medrefine_lab.eval.methods import MedrefineMethod
from medrefine_lab.eval.robot import RobotConfig
from medrefine_lab.eval.sequence import correct, noc, run_sequence


def test_records_hold_the_first_mask_and_the_mask_after_one_interaction() -> None:
    model = mr.load_model("nuclei-fluo-unet2d")
    cases = [mr.load_sample(name) for name in SERIES[:2]]
    robot = RobotConfig()
    # the reference: each image corrected on its own (no site, so the order does not matter)
    dice = [correct(MedrefineMethod(model, mr.RefineConfig()), c, 2, robot, 3)[0] for c in cases]
    assert all(len(d) == 4 for d in dice), "the network is poor here: every interaction is used"
    # the checks below tell the interactions apart only where their Dice differ
    assert any(d[1] != d[0] for d in dice) and any(d[1] != d[-1] for d in dice)
    records = run_sequence(lambda: MedrefineMethod(model, mr.RefineConfig()), cases, 2, robot, 3)
    for record, d in zip(records, dice, strict=True):
        assert (record.first, record.after_one, record.final) == (d[0], d[1], d[-1])
        assert record.interactions == 3 and record.noc85 == noc(d, 0.85, 3)
    text = summary(SiteSet("s", "Stained series", "dsb", model.name, 2), records, 3)
    assert "| Dice after one interaction 6+ |" in text.splitlines()[4]
    assert f"| `medrefine` | {sum(d[0] for d in dice) / 2:.3f} |" in text
