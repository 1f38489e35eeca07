"""RefineConfig: frozen nested sections, every field checked at construction, dotted overrides."""

from __future__ import annotations

import dataclasses
import doctest
import importlib
import math

import pytest

import medrefine as mr
from medrefine.engine.config import (
    GateConfig,
    LoopConfig,
    MarksConfig,
    ObjectiveConfig,
    PropagateConfig,
)
from medrefine.errors import InputError
from medrefine_lab.benchmarks.accuracy import parse_methods
from medrefine_lab.eval.experiments import specs
from medrefine_lab.eval.methods import method_config

RefineConfig = mr.RefineConfig


def test_top_level_name_is_the_nested_config() -> None:
    cfg = RefineConfig()
    assert isinstance(cfg.loop, LoopConfig) and isinstance(cfg.gate, GateConfig)
    assert (cfg.loop.max_iterations, cfg.objective.anchor_weight, cfg.marks.write) == (
        20,
        1.0,
        True,
    )
    assert (cfg.gate.kind, cfg.gate.widest, cfg.gate.local_width) == ("adaptive", 24.0, 24.0)


def test_sections_are_frozen() -> None:
    cfg = RefineConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.gate.widest = 48.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.loop = LoopConfig()  # type: ignore[misc]


@pytest.mark.parametrize(
    ("build", "field", "shown"),
    [
        (lambda: GateConfig(kind="spatail"), "gate.kind", "'spatail'"),  # type: ignore[arg-type]
        (lambda: LoopConfig(head_eval="ful"), "loop.head_eval", "'ful'"),  # type: ignore[arg-type]
        (lambda: GateConfig(prototypes=0), "gate.prototypes", "[1, 1024]"),
        (lambda: MarksConfig(box_band=-3), "marks.box_band", "[0, 1024]"),
        (lambda: LoopConfig(max_iterations=2.5), "loop.max_iterations", "2.5"),  # type: ignore[arg-type]
        (lambda: ObjectiveConfig(anchor_samples=-5), "objective.anchor_samples", "-5"),
        (lambda: LoopConfig(seed=-1), "loop.seed", "-1"),
        (lambda: LoopConfig(lr=1e30), "loop.lr", "(0, 1]"),
        (lambda: LoopConfig(momentum=math.nan), "loop.momentum", "nan"),
        (lambda: LoopConfig(lr=math.inf), "loop.lr", "inf"),
        (lambda: LoopConfig(warm_start=1), "loop.warm_start", "1"),  # type: ignore[arg-type]
        (lambda: MarksConfig(grow_criterion="mean"), "marks.grow_criterion", "'mean'"),  # type: ignore[arg-type]
        (lambda: MarksConfig(box_center_fraction=0.0), "marks.box_center_fraction", "(0, 1]"),
        (lambda: GateConfig(sigma=0.0), "gate.sigma", "gate.sigma"),
        (lambda: GateConfig(factor=-1.0), "gate.factor", "-1.0"),
        (lambda: GateConfig(widest=0.0), "gate.widest", "(0, inf]"),
        (lambda: GateConfig(steps=-1), "gate.steps", "[0, 100]"),
        (lambda: GateConfig(edges=math.nan), "gate.edges", "nan"),
        (lambda: ObjectiveConfig(alpha="1"), "objective.alpha", "'1'"),  # type: ignore[arg-type]
        (lambda: LoopConfig(trainable_layers=0), "loop.trainable_layers", "[1, 1000]"),
        (lambda: PropagateConfig(shown_prior=-1.0), "propagate.shown_prior", "-1.0"),
    ],
)
def test_every_bad_field_is_refused_at_construction_with_its_name_value_and_range(
    build, field: str, shown: str
) -> None:
    with pytest.raises(InputError) as err:
        build()
    assert field in str(err.value) and shown in str(err.value)


def test_a_section_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(InputError, match=r"RefineConfig\.gate must be a GateConfig"):
        RefineConfig(gate=LoopConfig())  # type: ignore[arg-type]


def test_optional_fields_take_none_and_inf_only_where_the_range_allows() -> None:
    assert LoopConfig(trainable_layers=None).trainable_layers is None
    assert MarksConfig(grow_max_distance=None).grow_max_distance is None
    assert GateConfig(widest=math.inf, anchor_reach=math.inf).widest == math.inf
    with pytest.raises(InputError, match=r"gate\.sigma"):
        GateConfig(sigma=math.inf)


def test_every_field_has_one_docstring_line_with_its_name() -> None:
    for cls in (LoopConfig, ObjectiveConfig, MarksConfig, GateConfig):
        doc = cls.__doc__ or ""
        for f in dataclasses.fields(cls):
            assert f"        {f.name}: " in doc, f"{cls.__name__}.{f.name} is not documented"


def test_dotted_overrides_parse_to_each_fields_type() -> None:
    cfg = RefineConfig().with_overrides(
        "objective.alpha=0.5, marks.grow=on,loop.trainable_layers=1,loop.optimizer=sgd,"
        "gate.widest=inf,gate.steps=3"
    )
    assert cfg.objective.alpha == 0.5 and cfg.marks.grow is True
    assert (cfg.loop.trainable_layers, cfg.loop.optimizer) == (1, "sgd")
    assert (cfg.gate.widest, cfg.gate.steps) == (math.inf, 3)
    assert cfg.gate.sigma == GateConfig().sigma  # untouched fields keep their defaults
    none = RefineConfig().with_overrides("marks.grow_max_distance=none")
    assert none.marks.grow_max_distance is None
    assert RefineConfig().with_overrides("") == RefineConfig()
    brief = RefineConfig().with_overrides("gate.widest=48,loop.lr=0.02")
    assert (brief.gate.widest, brief.loop.lr) == (48.0, 0.02)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("nope=1", "unknown RefineConfig setting 'nope=1'.*gate.widest"),
        ("gate_widest=48", "unknown RefineConfig setting.*gate.widest"),  # the old flat names
        ("gate.nope=1", "unknown RefineConfig setting"),
        ("gate.widest", "unknown RefineConfig setting"),
        ("marks.grow=maybe", "marks.grow expects on/off"),
        ("loop.max_iterations=2.5", "loop.max_iterations expects an integer"),
        ("loop.lr=fast", "loop.lr expects a number"),
        ("loop.lr=0", r"loop.lr must be a number in \(0, 1\], got 0.0"),
        ("loop.lr=1e30", "loop.lr"),
        ("objective.alpha=-1", "objective.alpha"),
        ("loop.optimizer=lbfgs", "loop.optimizer must be one of"),
        ("gate.kind=spatail", "gate.kind must be one of"),
        ("gate.sigma=0", "gate.sigma"),
        ("gate.factor=0", "gate.factor"),
        ("gate.tau=0", "gate.tau"),
        ("gate.anchor_reach=-1", "gate.anchor_reach"),
        ("gate.local_width=nan", "gate.local_width"),
        ("gate.fallback=-2", "gate.fallback"),
        ("gate.edges=nan", "gate.edges"),
        ("gate.widest=0", "gate.widest"),
        ("gate.evidence=-2", "gate.evidence"),
        ("loop.wide_iterations=-1", "loop.wide_iterations"),
        ("gate.steps=-1", "gate.steps"),
        ("gate.widest=48;loop.lr=0.02", "separated by ',', not ';'"),
    ],
)
def test_bad_overrides(spec: str, match: str) -> None:
    with pytest.raises(InputError, match=match):
        RefineConfig().with_overrides(spec)


def test_presets_are_classmethods_of_the_nested_config() -> None:
    p = RefineConfig.paper()
    assert (p.loop.optimizer, p.loop.warm_start, p.marks.write) == ("sgd", False, False)
    assert (p.objective.anchor_weight, p.gate.kind, p.loop.lr) == (0.0, "none", 0.1)
    s = RefineConfig.shifted()
    assert s.gate.widest == math.inf
    assert dataclasses.replace(s, gate=GateConfig()) == RefineConfig()


def test_method_specs_take_dotted_overrides_after_a_preset() -> None:
    assert method_config("") == RefineConfig()
    assert method_config("paper") == RefineConfig.paper()
    shifted = method_config("shifted,gate.steps=0")
    assert shifted == dataclasses.replace(
        RefineConfig.shifted(), gate=dataclasses.replace(RefineConfig.shifted().gate, steps=0)
    )
    assert method_config("gate.widest=48").gate.widest == 48.0
    with pytest.raises(InputError, match=r"gate\.steps"):
        method_config("shifted,gate_steps=0")


def test_accuracy_methods_split_at_commas_and_keep_overrides_with_their_method() -> None:
    text = (
        "marks-only,medrefine:gate.widest=48,loop.lr=0.02,medrefine:shifted,gate.steps=0,graphcut"
    )
    assert parse_methods(text) == (
        "marks-only",
        "medrefine:gate.widest=48,loop.lr=0.02",
        "medrefine:shifted,gate.steps=0",
        "graphcut",
    )
    with pytest.raises(InputError, match="not ';'"):
        parse_methods("medrefine:gate.widest=48;loop.lr=0.02")
    with pytest.raises(InputError, match="follows no method"):
        parse_methods("gate.widest=48,marks-only")


def test_every_report_experiment_method_has_valid_settings() -> None:
    for spec in specs():
        for method in spec.methods:
            name, _, overrides = method.partition(":")
            if name.startswith("medrefine"):
                method_config(overrides)  # raises on an unknown or bad setting


def test_report_ablations_change_only_the_named_setting() -> None:
    default = RefineConfig()
    assert method_config("gate.edges=0") == dataclasses.replace(
        default, gate=dataclasses.replace(default.gate, edges=0.0)
    )
    assert method_config("gate.kind=none").gate.kind == "none"
    ladder = method_config("gate.steps=2,gate.widest=48").gate
    assert (ladder.steps, ladder.widest, ladder.local_width) == (2, 48.0, 24.0)
    wide = method_config("shifted,gate.local_width=64").gate
    assert (wide.local_width, wide.widest) == (64.0, math.inf)


@pytest.mark.parametrize(
    "module",
    [
        "medrefine.engine.config",
        "medrefine.engine.refine.constraints",
        "medrefine.types",
        "medrefine.engine.head.threads",
        "medrefine_lab.eval.methods",
    ],
)
def test_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
