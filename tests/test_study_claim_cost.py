"""A claim costs time in proportion to the study's trials, not to its grid: the survey
looks at the points that have trials and walks the grid only up to the first free point,
and grid points are computed from their index, never expanded (mixlab.studies.survey,
StudySpec.point / point_index)."""

from __future__ import annotations

import itertools

import optuna
from optuna.distributions import CategoricalDistribution
from test_study_runner import write_spec

from mixlab.studies import survey
from mixlab.studies.spec import StudySpec, load_spec

AXES = {"alpha": [0.0, 0.5, 1.0], "seed": list(range(7)), "query_size": [5, 10]}


def test_points_by_index_match_the_product_order(tmp_path):
    spec = load_spec(write_spec(tmp_path, axes=AXES))
    names = list(spec.axes)
    expected = [dict(zip(names, v, strict=True)) for v in itertools.product(*spec.axes.values())]
    assert spec.grid_size == len(expected) == 42
    assert [spec.point(i) for i in range(42)] == expected
    assert [spec.point_index(p) for p in expected] == list(range(42))
    assert spec.point_index({**expected[0], "alpha": 0.25}) is None  # not a grid value
    assert spec.point_index({"alpha": 0.0}) is None  # not every axis


def _points_built(monkeypatch, folder, grid_seeds: int, trials_done: int) -> int:
    """How many grid points one survey builds, for a grid of 3 x grid_seeds points of
    which the first `trials_done` are COMPLETE."""
    axes = {**AXES, "seed": list(range(grid_seeds)), "query_size": 5}
    spec = load_spec(write_spec(folder, name=f"g{grid_seeds}", axes=axes))
    dist = {a: CategoricalDistribution(v) for a, v in spec.axes.items()}
    trials = [
        optuna.trial.create_trial(params=spec.point(i), distributions=dist, value=0.5)
        for i in range(trials_done)
    ]
    built = []
    real = StudySpec.point
    monkeypatch.setattr(StudySpec, "point", lambda self, i: built.append(i) or real(self, i))
    state = survey.survey(spec, None, trials)
    assert state.complete == trials_done and state.next_point == real(spec, trials_done)
    return len(built)


def test_a_survey_builds_no_more_points_for_a_larger_grid(monkeypatch, tmp_path):
    small = _points_built(monkeypatch, tmp_path, grid_seeds=100, trials_done=50)
    large = _points_built(monkeypatch, tmp_path, grid_seeds=2000, trials_done=50)
    assert small == large == 1  # the next point only
