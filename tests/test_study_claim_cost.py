"""A claim costs time in proportion to the study's trials, not to its grid: a worker claims
the next queued trial with Optuna's ask(), and the survey it reads before (and the check that
its point is its own, queue.superseded) look at the trials only, never at the grid, whose
points are computed from their index, never expanded (mixlab.studies.survey, queue,
StudySpec.point / point_index). Only enqueueing walks the grid, from its start to the next
chunk of open points (tests/test_study_short_queue.py)."""

from __future__ import annotations

import itertools

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState
from test_study_runner import write_spec

from mixlab.studies import queue, survey
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


def _work_per_survey(monkeypatch, folder, grid_seeds: int, trials_done: int) -> tuple:
    """(grid points built, point lookups) of one survey and one superseded check, for a
    grid of 3 x grid_seeds points of which the first `trials_done` are COMPLETE and the next
    ten queued."""
    axes = {**AXES, "seed": list(range(grid_seeds)), "query_size": 5}
    spec = load_spec(write_spec(folder, name=f"g{grid_seeds}", axes=axes))
    dist = {a: CategoricalDistribution(v) for a, v in spec.axes.items()}
    trials = [
        optuna.trial.create_trial(params=spec.point(i), distributions=dist, value=0.5)
        for i in range(trials_done)
    ]
    trials += [
        optuna.trial.create_trial(
            state=TrialState.WAITING, system_attrs={"fixed_params": spec.point(i)}
        )
        for i in range(trials_done, trials_done + 10)
    ]
    for number, t in enumerate(trials):
        t.number = number
    first_queued = spec.point(trials_done)  # the trial a worker claims next
    built, looked_up = [], []
    point, point_index = StudySpec.point, StudySpec.point_index
    monkeypatch.setattr(StudySpec, "point", lambda self, i: built.append(i) or point(self, i))
    monkeypatch.setattr(
        StudySpec, "point_index", lambda self, p: looked_up.append(p) or point_index(self, p)
    )
    state = survey.survey(spec, None, trials)
    assert (state.complete, state.waiting, state.can_claim) == (trials_done, 10, True)
    assert state.open == spec.grid_size - trials_done - 10  # counted, not listed
    assert not queue.superseded(trials, trials_done, first_queued)  # it runs
    return len(built), len(looked_up)


def test_a_survey_does_no_more_work_for_a_larger_grid(monkeypatch, tmp_path):
    small = _work_per_survey(monkeypatch, tmp_path, grid_seeds=100, trials_done=50)
    large = _work_per_survey(monkeypatch, tmp_path, grid_seeds=2000, trials_done=50)
    assert small == large and small[0] == 0  # no grid point built
