"""A result whose trial was taken as lost while it still ran (a worker paused past the
heartbeat grace, then resumed) is recorded, on the retry Optuna's callback enqueued, if that
retry is still waiting; dropped if another worker claimed the retry or completed the point
first; and never recorded twice; on the journal and on PostgreSQL
(mixlab.studies.worker.Worker._record / _take_over)."""

from __future__ import annotations

import os

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState
from pg_cluster import pg_cluster
from test_study_runner import (
    assert_each_point_complete_once,
    quick_objective,
    read_trials,
    settings,
    write_spec,
)

from mixlab.studies import liveness, runner, storage
from mixlab.studies.spec import load_spec
from mixlab.studies.survey import SUPERSEDED_ATTR, trial_point

TARGET = {"strategy": "entropy", "alpha": 0.4, "seed": 1}  # the point the test interferes with


@pytest.fixture(scope="module")
def postgres_url():
    with pg_cluster() as url:
        yield url


@pytest.fixture(params=["journal", pytest.param("postgresql", marks=[pytest.mark.postgres])])
def url(request, tmp_path):
    if request.param == "journal":
        return str(tmp_path / "takeover.journal")
    return request.getfixturevalue("postgres_url")  # one database, a study name per test


def _is_target(config) -> bool:
    return all(getattr(config, k) == v for k, v in TARGET.items())


def _own_running_trial(spec, url):
    store = storage.open_storage(url)
    study_id = store.get_study_id_from_name(spec.name)
    for t in store.get_all_trials(study_id):
        if t.state == TrialState.RUNNING and liveness.worker_of(t).get("pid") == os.getpid():
            return store, study_id, t
    raise AssertionError("no RUNNING trial of this process")


def _claim_retry(store, study_id, params, complete: bool) -> bool:
    """Claim the point's queued retry as another worker would (and complete it, value 0.1);
    False when none is queued."""
    waiting = [
        t
        for t in store.get_all_trials(study_id, states=(TrialState.WAITING,))
        if trial_point(t) == params
    ]
    if not waiting:
        return False
    trial_id = store.get_trial_id_from_study_id_trial_number(study_id, waiting[0].number)
    assert store.set_trial_state_values(trial_id, TrialState.RUNNING)
    if complete:
        store.set_trial_state_values(trial_id, TrialState.COMPLETE, [0.1])
    return True


def _complete_elsewhere(store, study_id, spec, params) -> None:
    """The point completed by another worker (value 0.1): the one that claimed its queued
    retry, or, with none queued, one that recorded it as a new trial."""
    if _claim_retry(store, study_id, params, complete=True):
        return
    distributions = {a: CategoricalDistribution(v) for a, v in spec.axes.items()}
    trial = optuna.trial.create_trial(params=params, distributions=distributions, value=0.1)
    store.create_new_trial(study_id, template_trial=trial)


def _take_over(store, study_id, spec, trial) -> None:
    """What the next worker does to a trial it takes as lost: FAIL, and Optuna's retry
    callback enqueues it again."""
    trial_id = store.get_trial_id_from_study_id_trial_number(study_id, trial.number)
    assert store.set_trial_state_values(trial_id, TrialState.FAIL)
    study = optuna.load_study(study_name=spec.name, storage=store)
    liveness.RETRY(study, store.get_trial(trial_id))


def _interfering(spec, url, *, take_over: bool, complete_first: bool, claim_first=False):
    calls = []

    def objective(config):
        calls.append(config)
        if _is_target(config) and len([c for c in calls if _is_target(c)]) == 1:
            store, study_id, trial = _own_running_trial(spec, url)
            if take_over:
                _take_over(store, study_id, spec, trial)
            if complete_first:
                _complete_elsewhere(store, study_id, spec, trial.params)
            if claim_first:  # by a worker that dies at once, unstamped
                assert _claim_retry(store, study_id, trial.params, complete=False)
        return quick_objective(config)

    return objective, calls


def _run(tmp_path, url, name, **how):
    spec = load_spec(write_spec(tmp_path, name=name))
    objective, calls = _interfering(spec, url, **how)
    # short beats: a dead worker's trial is taken over in about a second
    runner.run_study(settings(spec, url, objective=objective, heartbeat_s=0.2))
    trials = read_trials(url, name)
    assert_each_point_complete_once(spec, trials)
    target = [t for t in trials if all(t.params[k] == v for k, v in TARGET.items())]
    return calls, trials, target


def test_taken_over_result_is_kept_when_its_point_is_open(tmp_path, url):
    calls, trials, target = _run(tmp_path, url, "kept", take_over=True, complete_first=False)
    assert len(calls) == 8  # the point was not run a second time: its result was kept
    (done,) = [t for t in target if t.state == TrialState.COMPLETE]
    assert done.user_attrs["aulc"] == pytest.approx(done.value)  # the curve came with it
    (lost,) = [t for t in target if t is not done]
    assert lost.state == TrialState.FAIL and done.system_attrs["failed_trial"] == lost.number


def test_taken_over_result_is_dropped_when_its_point_was_completed(tmp_path, url):
    calls, trials, target = _run(tmp_path, url, "dropped", take_over=True, complete_first=True)
    assert len(calls) == 8
    (done,) = [t for t in target if t.state == TrialState.COMPLETE]
    assert done.value == 0.1  # the other worker's result, not a second one


def test_result_of_a_rerun_is_dropped_when_the_original_was_kept(tmp_path, url):
    # This worker's trial is still RUNNING, but its point became complete meanwhile (the
    # worker it took over from finished and kept its result): never a second COMPLETE.
    calls, trials, target = _run(tmp_path, url, "rerun", take_over=False, complete_first=True)
    mine = [t for t in target if t.state == TrialState.FAIL]
    assert len(mine) == 1 and mine[0].user_attrs[SUPERSEDED_ATTR] is True
    assert "error" not in mine[0].user_attrs
    summary = runner.summarize(settings(load_spec(tmp_path / "rerun.toml"), url))
    assert summary.lost == 0 and summary.complete == 8


def test_taken_over_result_is_dropped_when_its_retry_runs_elsewhere(tmp_path, url):
    # The retry's worker dies before its first beat (Optuna's heartbeat cannot see it; the
    # missing stamp can): the point runs a third time and is recorded once, by that run.
    how = {"take_over": True, "complete_first": False, "claim_first": True}
    calls, trials, target = _run(tmp_path, url, "claimed", **how)
    assert len(calls) == 9
    assert [t.state for t in target] == [TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE]
    summary = runner.summarize(settings(load_spec(tmp_path / "claimed.toml"), url))
    assert summary.lost == 2 and summary.complete == 8
