"""Study specs (mixlab.studies.spec): the shipped ablations, grid enumeration, and every
kind of bad spec rejected with a message naming the key, before any storage is touched."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from mixlab.cli import main as mixlab_main
from mixlab.studies.spec import Range, SpecError, load_spec, parse_spec

ABLATIONS = Path(__file__).resolve().parents[1] / "ablations"


def base_spec(**changes) -> dict:
    spec = {
        "name": "tiny",
        "dataset": "digits",
        "model": "mlp",
        "training": {"epochs": 2},
        "axes": {"alpha": [0.0, 0.5], "strategy": ["random", "entropy"], "seed": [0, 1, 2]},
    }
    spec.update(changes)
    return spec


def with_axes(**axes) -> dict:
    spec = base_spec()
    spec["axes"] = {**spec["axes"], **axes}
    return spec


def test_grid_points_are_the_ordered_product_of_the_listed_axes():
    spec = parse_spec(with_axes(rounds=3))
    points = spec.grid_points()
    assert len(points) == 2 * 2 * 3
    # AXES order (strategy before alpha), the last axis (seed) varying fastest
    assert points[:4] == [
        {"strategy": "random", "alpha": 0.0, "seed": 0},
        {"strategy": "random", "alpha": 0.0, "seed": 1},
        {"strategy": "random", "alpha": 0.0, "seed": 2},
        {"strategy": "random", "alpha": 0.5, "seed": 0},
    ]
    assert points == parse_spec(with_axes(rounds=3)).grid_points()
    # a scalar axis is held fixed: in every config, in no trial's params
    config = spec.config(points[-1])
    assert (config.rounds, config.epochs, config.strategy, config.seed) == (3, 2, "entropy", 2)
    assert spec.sampler == "grid" and spec.objective == "aulc" and spec.n_trials is None


def test_integer_alphas_become_floats():
    spec = parse_spec(with_axes(alpha=[0, 1]))
    assert spec.axes["alpha"] == [0.0, 1.0]
    assert all(isinstance(a, float) for a in spec.axes["alpha"])


def test_tpe_spec_takes_ranges():
    raw = base_spec(sampler="tpe", n_trials=7, objective="final_accuracy")
    raw["axes"] = {
        "alpha": {"low": 0.01, "high": 2.0, "log": True},
        "initial_budget": {"low": 20, "high": 60, "step": 10},
        "strategy": ["random", "margin"],
        "seed": 0,
    }
    spec = parse_spec(raw)
    assert spec.axes["alpha"] == Range(0.01, 2.0, True, None)
    assert spec.axes["initial_budget"] == Range(20, 60, False, 10)
    assert spec.axes["strategy"] == ["random", "margin"]
    assert spec.fixed["seed"] == 0
    assert (spec.sampler, spec.n_trials, spec.objective) == ("tpe", 7, "final_accuracy")


BAD_SPECS = {
    "unknown top-level key": (base_spec(epochs=3), ["unknown key epochs"]),
    "unknown training key": (base_spec(training={"epoch": 3}), ["training.epoch"]),
    "axis in training": (base_spec(training={"alpha": 0.2}), ["training.alpha"]),
    "unknown axis": (with_axes(beta=[1, 2]), ["axes.beta"]),
    "unknown strategy": (with_axes(strategy=["random", "nope"]), ["strategy", "nope"]),
    "unknown dataset": (base_spec(dataset="imagenet"), ["dataset", "imagenet"]),
    "unknown mixup mode": (with_axes(mixup_mode=["batch", "sideways"]), ["sideways"]),
    "unknown sampler": (base_spec(sampler="random"), ["sampler", "'random'"]),
    "unknown objective": (base_spec(objective="loss"), ["objective", "'loss'"]),
    "range under grid": (with_axes(alpha={"low": 0.0, "high": 1.0}), ["axes.alpha", "tpe"]),
    "n_trials under grid": (base_spec(n_trials=5), ["n_trials", "tpe"]),
    "tpe without n_trials": (base_spec(sampler="tpe"), ["n_trials"]),
    "empty list": (with_axes(seed=[]), ["axes.seed", "empty"]),
    "repeated value": (with_axes(seed=[0, 1, 0]), ["axes.seed", "repeated"]),
    "string alpha": (with_axes(alpha=["high"]), ["axes.alpha", "float"]),
    "float seed": (with_axes(seed=[0.5]), ["axes.seed", "int"]),
    "bool budget": (with_axes(initial_budget=True), ["axes.initial_budget", "int"]),
    "bad name": (base_spec(name="my study/1"), ["name"]),
    "missing name": ({"dataset": "digits"}, ["name"]),
    "axes not a table": (base_spec(axes=[1, 2]), ["axes", "table"]),
}
BAD_TPE_AXES = {
    "range of names": ({"strategy": {"low": 0, "high": 1}}, ["axes.strategy", "list"]),
    "log range at 0": ({"alpha": {"low": 0.0, "high": 1.0, "log": True}}, ["log", "low > 0"]),
    "low above high": ({"rounds": {"low": 5, "high": 2}}, ["axes.rounds", "low"]),
    "log with step": (
        {"alpha": {"low": 0.1, "high": 1.0, "log": True, "step": 0.1}},
        ["log and step"],
    ),
    "unknown range key": ({"alpha": {"low": 0.1, "high": 1.0, "size": 3}}, ["axes.alpha.size"]),
    "range without high": ({"alpha": {"low": 0.1}}, ["low and high"]),
    "float range for int axis": ({"rounds": {"low": 1.5, "high": 3}}, ["axes.rounds", "int"]),
}


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_bad_spec_is_an_error_naming_the_key(case):
    raw, expected = BAD_SPECS[case]
    with pytest.raises(SpecError) as err:
        parse_spec(raw, "bad.toml")
    message = str(err.value)
    assert message.startswith("bad.toml: ")
    for part in expected:
        assert part in message, message


@pytest.mark.parametrize("case", list(BAD_TPE_AXES))
def test_bad_tpe_range_is_an_error_naming_the_key(case):
    axes, expected = BAD_TPE_AXES[case]
    raw = base_spec(sampler="tpe", n_trials=3)
    raw["axes"] = axes
    with pytest.raises(SpecError) as err:
        parse_spec(raw, "bad.toml")
    for part in expected:
        assert part in str(err.value), str(err.value)


def test_load_spec_reports_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(SpecError, match="no such spec file"):
        load_spec(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("name = 'x'\n[axes\n")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(broken)


def test_bad_spec_writes_nothing(tmp_path, capsys):
    spec = tmp_path / "bad.toml"
    spec.write_text('name = "bad"\nsampler = "grid"\n[axes]\nstrategy = ["random", "nope"]\n')
    storage = tmp_path / "studies" / "bad.journal"
    assert mixlab_main(["ablate", str(spec), "--storage", str(storage)]) == 2
    assert "nope" in capsys.readouterr().err
    assert not storage.parent.exists()


def test_bad_storage_url_is_an_error_naming_storage(tmp_path, capsys):
    spec = tmp_path / "ok.toml"
    spec.write_text('name = "ok"\n[axes]\nseed = [0, 1]\n')
    assert mixlab_main(["ablate", str(spec), "--storage", "mysql://host/db"]) == 2
    assert "--storage" in capsys.readouterr().err


def test_shipped_demo_spec_covers_the_required_grid():
    spec = load_spec(ABLATIONS / "digits_demo.toml")
    assert spec.sampler == "grid" and spec.fixed["dataset"] == "digits"
    axes = spec.axes
    assert len(axes["alpha"]) >= 3 and 0.0 in axes["alpha"]
    assert len(axes["initial_budget"]) >= 2
    assert len(axes["strategy"]) >= 3 and "random" in axes["strategy"]
    assert len(axes["seed"]) >= 3
    assert len(spec.grid_points()) == math.prod(len(v) for v in axes.values())


def test_shipped_full_spec_covers_every_strategy_alpha_mode_and_five_seeds():
    spec = load_spec(ABLATIONS / "digits_full.toml")
    axes = spec.axes
    assert set(axes["strategy"]) == {
        "random",
        "entropy",
        "margin",
        "least_confidence",
        "bald",
        "coreset",
        "alfamix",
    }
    assert axes["alpha"] == [0.0, 0.1, 0.2, 0.4, 1.0]
    assert set(axes["mixup_mode"]) == {"batch", "augment"}
    assert len(axes["seed"]) == 5


def test_shipped_cifar_spec_is_the_documented_setting():
    spec = load_spec(ABLATIONS / "cifar10_al.toml")
    fixed = spec.fixed
    assert fixed["dataset"] == "cifar10" and fixed["data_root"]
    assert (fixed["initial_budget"], fixed["query_size"], fixed["rounds"]) == (1000, 100, 10)
    assert fixed["model"] in ("resnet18", "cnn")
