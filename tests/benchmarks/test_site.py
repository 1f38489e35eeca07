"""``medrefine bench site``: the third-party set's network, and the summary's last check."""

from __future__ import annotations

import medrefine as mr
from medrefine_lab.benchmarks.site import SiteSet, model_of, site_sets, summary
from medrefine_lab.eval.sequence import SequenceRecord


def test_the_third_party_set_cuts_its_network_at_the_last_layer_for_a_site() -> None:
    s = next(s for s in site_sets() if s.key == "third-party")
    model = model_of(s)
    assert model.preprocessing.channels == 1  # SegResNet takes grey; colour is turned grey
    site = mr.Site(model)  # refuses a head that is not per-pixel
    case = mr.load_sample("nuclei-stained")
    mask = mr.Session(model, site=site).set_image(case.image)
    truth = case.label > 0
    dice = 2 * (truth & (mask == 1)).sum() / (truth.sum() + (mask == 1).sum())
    print(f"third-party network on the stained sample: Dice {dice:.3f}")
    assert dice > 0.5, dice  # fitted on a crop of this image, it finds its nuclei elsewhere too


def test_the_summary_states_the_site_s_last_check() -> None:
    record = SequenceRecord("medrefine+site", 1, "c", 0.5, 1, 2, 0.9, 2, 1.0, "network", True, 0.6)
    text = summary(SiteSet("s", "Set", "dsb", "m", 1), [record], 3, "held out, why")
    assert (
        "1 of 1 images accepted; 0 started from a site head. The last check: held out, why." in text
    )
    assert "The last check" not in summary(SiteSet("s", "Set", "dsb", "m", 1), [record], 3)
