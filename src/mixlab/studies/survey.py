"""Where a study stands, read from its trials: which grid points are complete, queued,
running, or failed; how many trials were lost with their worker.

Trial kinds (docs/design.md §8). A trial is enqueued WAITING with its point in Optuna's
"fixed_params" system attr (mixlab.studies.queue) and takes its params when a worker claims
it. A FAIL trial is one of:
- raised: its objective raised (user_attr "error"); a grid point is tried MAX_ATTEMPTS times;
- lost: its worker died or was interrupted (no attr); it was enqueued again;
- superseded (SUPERSEDED_ATTR): it yielded its point to another trial of the same point;
- spare (SPARE_ATTR): Optuna's ask() found the queue emptied by other workers and made a new,
  empty trial, finished at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from mixlab.studies.spec import StudySpec

FIXED_PARAMS = "fixed_params"  # Optuna's system attr of an enqueued trial
SUPERSEDED_ATTR = "mixlab:superseded"
SPARE_ATTR = "mixlab:spare"
MAX_ATTEMPTS = 2  # a grid point whose objective raises is retried once


@dataclass
class Survey:
    """Where a study stands, read from its trials."""

    total: int  # grid points (or TPE trials) this run must complete
    complete: int
    in_flight: int  # RUNNING trials that count toward `total`
    waiting: int  # WAITING trials that count toward `total`
    can_claim: bool  # a queued trial of this run is there to claim
    open: int  # grid points (TPE trials) of this run that no trial holds: to be enqueued
    best: FrozenTrial | None
    # grid points whose objective raised MAX_ATTEMPTS times: (params, last error)
    failed: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    lost: int = 0  # trials taken as lost (worker killed) and run again


@dataclass
class PointStatus:
    """The trials of one grid point."""

    complete: int = 0
    running: int = 0
    waiting: int = 0
    raised: list[str] = field(default_factory=list)  # their errors, in trial order

    @property
    def held(self) -> bool:
        """Complete, queued, running, or given up: nothing to enqueue for it."""
        return bool(self.complete or self.running or self.waiting) or self.given_up

    @property
    def given_up(self) -> bool:
        return not self.complete and len(self.raised) >= MAX_ATTEMPTS


def trial_point(trial: FrozenTrial) -> dict[str, Any]:
    """A trial's point: the fixed params it was enqueued with (whole, while a worker that
    just claimed it is still setting its params one by one), else its params (a TPE slot's
    are sampled)."""
    return trial.system_attrs.get(FIXED_PARAMS) or trial.params


def point_key(params: dict[str, Any]) -> tuple:
    """A hashable identity of a grid point (its params)."""
    return tuple(sorted(params.items()))


def run_size(spec: StudySpec, n_trials: int | None) -> int:
    """How many trials (tpe) or first grid points (grid) this run must complete."""
    if spec.sampler == "tpe":
        return n_trials or spec.n_trials
    return min(n_trials or spec.grid_size, spec.grid_size)


def point_statuses(spec: StudySpec, size: int, trials: list[FrozenTrial]) -> dict[int, PointStatus]:
    """The status of every grid point below `size` that has trials. Only the trials are
    looked at, never the grid: this costs time in proportion to the trials."""
    statuses: dict[int, PointStatus] = {}
    for t in trials:
        index = spec.point_index(trial_point(t))
        if index is None or index >= size:
            continue  # a point outside this run's --n-trials
        s = statuses.setdefault(index, PointStatus())
        if t.state == TrialState.COMPLETE:
            s.complete += 1
        elif t.state == TrialState.RUNNING:
            s.running += 1
        elif t.state == TrialState.WAITING:
            s.waiting += 1
        elif _raised(t):
            s.raised.append(t.user_attrs["error"])
    return statuses


def survey(spec: StudySpec, n_trials: int | None, trials: list[FrozenTrial]) -> Survey:
    """n_trials: tpe: the study's total (default the spec's); grid: the first points."""
    total = run_size(spec, n_trials)
    lost = sum(is_lost_trial(t) for t in trials)
    if spec.sampler == "tpe":
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        running = sum(t.state == TrialState.RUNNING for t in trials)
        waiting = sum(t.state == TrialState.WAITING for t in trials)
        # A trial that raised counts toward the total (it is not retried); a lost one does not
        # (it was enqueued again).
        taken = len(complete) + sum(_raised(t) for t in trials) + running
        best = max(complete, key=_value, default=None)
        can_claim = waiting > 0 and taken < total
        open_slots = max(0, total - taken - waiting)
        return Survey(total, len(complete), running, waiting, can_claim, open_slots, best, [], lost)

    statuses = point_statuses(spec, total, trials)
    done = sum(bool(s.complete) for s in statuses.values())
    best = max(
        (t for t in trials if t.state == TrialState.COMPLETE and _in_run(spec, t, total)),
        key=_value,
        default=None,
    )
    pending = [s for s in statuses.values() if not s.complete]
    in_flight = sum(s.running for s in pending)
    # Queued trials of complete points too: claimed, they yield (mixlab.studies.queue).
    waiting = sum(s.waiting for s in statuses.values())
    failed = [(spec.point(i), s.raised[-1]) for i, s in sorted(statuses.items()) if s.given_up]
    open_points = total - sum(s.held for s in statuses.values())
    return Survey(total, done, in_flight, waiting, waiting > 0, open_points, best, failed, lost)


def is_lost_trial(trial: FrozenTrial) -> bool:
    """A FAIL trial that failed with its worker (see the module docstring)."""
    marked = (SUPERSEDED_ATTR, SPARE_ATTR, "error")
    return trial.state == TrialState.FAIL and not any(k in trial.user_attrs for k in marked)


def _in_run(spec: StudySpec, trial: FrozenTrial, size: int) -> bool:
    index = spec.point_index(trial.params)
    return index is not None and index < size


def _value(trial: FrozenTrial) -> float:
    return trial.value


def _raised(trial: FrozenTrial) -> bool:
    return trial.state == TrialState.FAIL and "error" in trial.user_attrs
