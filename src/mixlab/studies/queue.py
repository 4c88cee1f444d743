"""The study's queue: its points enqueued once as WAITING trials, claimed with Optuna's ask().

Enqueueing (enqueue_open) happens under storage.enqueue_lock when a run starts (and, rarely,
when a worker finds a point of its run that no trial holds: a retry that a kill or a torn
journal tail left unwritten). It enqueues, in grid order, every point of the run that no
trial holds (survey.PointStatus.held); for TPE, an empty WAITING slot per trial the run still
needs, so that the workers together stop at n_trials. So a point is enqueued once however
many workers start together.

Claiming is Optuna's: `study.ask()` moves a WAITING trial to RUNNING atomically on RDB and
journal storage, so two workers never hold the same queued trial. A point can still have two
queued trials in one rare race (a retry enqueued by a worker that failed a lost trial, at
the moment another one enqueues the open points): `superseded` settles it. A claimed trial
runs only if its point has no COMPLETE trial and no WAITING or RUNNING trial numbered before
it; otherwise it yields (FAIL, SUPERSEDED_ATTR). As trials are never reopened and a new trial
gets a higher number, of two trials of a point the later one always sees the earlier one
(live, complete, or finished for good): at most one COMPLETE trial per point.
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from mixlab.studies.spec import StudySpec
from mixlab.studies.survey import point_key, point_statuses, run_size, survey, trial_point

_LIVE = (TrialState.WAITING, TrialState.RUNNING)


def enqueue_open(study: optuna.Study, spec: StudySpec, n_trials: int | None) -> int:
    """Enqueue what this run needs and no trial holds (see the module docstring); the caller
    holds storage.enqueue_lock. Returns how many trials it enqueued."""
    trials = study.get_trials(deepcopy=False)
    if spec.sampler == "tpe":
        missing = ({} for _ in range(survey(spec, n_trials, trials).open))  # sampled when asked
    else:
        size = run_size(spec, n_trials)
        statuses = point_statuses(spec, size, trials)
        missing = (spec.point(i) for i in range(size) if not _held(statuses.get(i)))
    enqueued = 0
    # A progress bar on a terminal only: a large grid takes one storage write per point.
    bar = tqdm(missing, desc=f"{spec.name}: enqueue", unit="trial", leave=False, disable=None)
    for params in bar:
        study.enqueue_trial(params)
        enqueued += 1
    return enqueued


def _held(status) -> bool:
    return status is not None and status.held


def superseded(trials: list[FrozenTrial], number: int, params: dict) -> bool:
    """Whether trial `number` of grid point `params` must yield its point (see the module
    docstring)."""
    key = point_key(params)
    for t in trials:
        if t.number == number or point_key(trial_point(t)) != key:
            continue
        if t.state == TrialState.COMPLETE or (t.state in _LIVE and t.number < number):
            return True
    return False


def successors(spec: StudySpec, trials: list[FrozenTrial], trial: FrozenTrial) -> list[int]:
    """Numbers of the WAITING trials that could take over `trial`'s result, first first: the
    retries of `trial` (Optuna's retry callback lists it in their "retry_history"), and for a
    grid, any queued trial of its point."""
    key = point_key(trial.params)
    return [
        t.number
        for t in trials
        if t.state == TrialState.WAITING
        and (
            trial.number in t.system_attrs.get("retry_history", [])
            or (spec.sampler == "grid" and point_key(trial_point(t)) == key)
        )
    ]
