"""The study's queue: a short run of its points enqueued as WAITING trials, claimed with
Optuna's ask().

The queue is kept short: enqueue_open tops it up to CHUNK WAITING trials with the next open
points of the run in grid order (survey.PointStatus.held: no trial holds them); for TPE,
with empty WAITING slots, never more than the trials the run still needs, so that the
workers together stop at n_trials. A run starts after CHUNK writes however large its grid,
and a survey walks about CHUNK WAITING trials (plus retries). It happens under
storage.enqueue_lock, when a run starts and whenever a worker finds fewer than REFILL_BELOW
WAITING trials while the run has open points (worker.Worker.run): a point is enqueued once
however many workers top up together, and the open points are read from the trials, so a
kill between or during top-ups strands none (the next worker or run enqueues them).

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

import itertools

import optuna
from optuna.trial import FrozenTrial, TrialState

from mixlab.studies.spec import StudySpec
from mixlab.studies.survey import point_key, point_statuses, run_size, survey, trial_point

_LIVE = (TrialState.WAITING, TrialState.RUNNING)
# A fixed chunk (workers do not know how many share the study): two dozen workers stay busy
# between top-ups, each a lock and at most CHUNK writes (~0.2 s on a loaded journal).
CHUNK = 32
# Topped up before it runs dry, so that workers rarely race ask() for the last trial.
REFILL_BELOW = CHUNK // 2


def enqueue_open(study: optuna.Study, spec: StudySpec, n_trials: int | None) -> int:
    """Top the queue up to CHUNK with the next open points of this run (see the module
    docstring); the caller holds storage.enqueue_lock. Returns how many trials it enqueued."""
    trials = study.get_trials(deepcopy=False)
    state = survey(spec, n_trials, trials)
    room = max(0, min(CHUNK - state.waiting, state.open))
    if spec.sampler == "tpe":
        missing = ({} for _ in range(room))  # sampled when asked
    else:
        size = run_size(spec, n_trials)
        statuses = point_statuses(spec, size, trials)
        # Scans the held points before the first open ones (as many as the trials), no more.
        open_points = (i for i in range(size) if not _held(statuses.get(i)))
        missing = (spec.point(i) for i in itertools.islice(open_points, room))
    for params in missing:
        study.enqueue_trial(params)
    return room


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
