"""A study worker: claims queued trials with Optuna's ask(), runs the active-learning loop on
each, and records its curve.

How points are queued (a short queue, topped up by the workers) and claimed:
mixlab.studies.queue; liveness: mixlab.studies.liveness.

Recording. A grid trial completes only if its point does not have to yield to another trial
(queue.superseded). A worker whose trial was taken as lost while it still ran (its write
refused with UpdateFinishedTrialError) keeps its result by claiming, the way ask() does, the
WAITING trial that took its point over (its retry) and completing that one. When there is
none (the point is complete, or its retry already runs in another worker, which will record
it), the result is dropped: a point is recorded once.

The learning curve and config of each trial are stored in its user_attrs (docs/design.md §8).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
from tqdm import tqdm

from mixlab.studies import liveness, queue
from mixlab.studies import storage as storages
from mixlab.studies.spec import Range, StudySpec, describe
from mixlab.studies.survey import (
    FIXED_PARAMS,
    SPARE_ATTR,
    SUPERSEDED_ATTR,
    Survey,
    point_statuses,
    survey,
)

# ActiveLearningConfig -> LearningCurve (docs/design.md §8)
Objective = Callable[[Any], Any]


@dataclass(frozen=True)
class RunSettings:
    """Everything a worker process needs (picklable: workers are spawned)."""

    spec: StudySpec
    storage_url: str
    # tpe: the study's total trials (default: the spec's n_trials); grid: run only the
    # first n_trials grid points (default: all of them)
    n_trials: int | None = None
    heartbeat_s: float = liveness.DEFAULT_HEARTBEAT_S
    # None: mixlab.active.loop.run_active_learning
    objective: Objective | None = None
    progress: bool = True


class Worker:
    """One worker: claims and runs trials until the study needs no more."""

    def __init__(self, settings: RunSettings, index: int = 0) -> None:
        self.settings = settings
        self.spec = settings.spec
        self.index = index
        self.heartbeat_s = settings.heartbeat_s
        self.storage = storages.open_storage(
            settings.storage_url, heartbeat=liveness.rdb_heartbeat(self.heartbeat_s)
        )
        self.study_id = self.storage.get_study_id_from_name(self.spec.name)
        # A grid's params all come from the queue: nothing is sampled.
        tpe = self.spec.sampler == "tpe"
        sampler = optuna.samplers.TPESampler() if tpe else optuna.samplers.RandomSampler()
        self.study = optuna.load_study(
            study_name=self.spec.name, storage=self.storage, sampler=sampler
        )
        if settings.objective is None:
            from mixlab.active.loop import run_active_learning

            self.objective = run_active_learning
        else:
            self.objective = settings.objective

    def run(self) -> int:
        """Run trials until every point is done (or n_trials reached); returns how many
        trials this worker ran."""
        poll_s = min(1.0, self.heartbeat_s)
        ran = 0
        bar = None
        while True:
            liveness.fail_lost_trials(self.study, self.storage, self.study_id, self.heartbeat_s)
            state = survey(self.spec, self.settings.n_trials, self.study.get_trials(deepcopy=False))
            bar = bar or self._progress_bar(state)
            self._show(bar, state)
            if state.open and state.waiting < queue.REFILL_BELOW:
                # The next chunk (or a retry that a kill or a torn journal tail left unwritten).
                with storages.enqueue_lock(self.settings.storage_url, self.spec.name):
                    queue.enqueue_open(self.study, self.spec, self.settings.n_trials)
                continue
            if state.can_claim:
                claimed = self._claim()
                if claimed is not None:
                    self._run_trial(*claimed)
                    ran += 1
            elif state.in_flight:
                time.sleep(poll_s)  # others run the last trials: wait, they may die
            else:
                bar.close()
                return ran

    def _trial_id(self, number: int) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)

    def _claim(self) -> tuple[int, int, dict[str, Any]] | None:
        """Claim the next queued trial; returns (trial id, number, params), or None when
        another worker was first or its point belongs to another trial."""
        with warnings.catch_warnings():
            # Optuna expects heartbeats with optimize(); this worker beats itself (Heartbeat).
            warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
            trial = self.study.ask()
        trial_id = self._trial_id(trial.number)
        try:
            if FIXED_PARAMS not in self.storage.get_trial(trial_id).system_attrs:
                # ask() makes a new trial when other workers emptied the queue first.
                self.storage.set_trial_user_attr(trial_id, SPARE_ATTR, True)
                self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
                return None
            params = self._own(trial, trial_id)
            if self.spec.sampler == "grid" and self._yield(trial_id, trial.number, params):
                return None
        except UpdateFinishedTrialError:
            return None  # taken as lost already (a very long pause): its retry is queued
        return trial_id, trial.number, params

    def _own(self, trial: optuna.Trial, trial_id: int) -> dict[str, Any]:
        """Beat, take the params, stamp: what a worker does to the trial it just claimed."""
        if liveness.has_heartbeat(self.storage):
            # At once: Optuna never takes a trial with no beat as lost.
            self.storage.record_heartbeat(trial_id)
        for axis, values in self.spec.axes.items():
            _suggest(trial, axis, values)
        for key, value in liveness.stamp(trial.number, self.heartbeat_s).items():
            self.storage.set_trial_system_attr(trial_id, key, value)
        return dict(trial.params)

    def _yield(self, trial_id: int, number: int, params: dict[str, Any]) -> bool:
        """Fail the trial if its point belongs to another trial (queue.superseded)."""
        if not queue.superseded(self.study.get_trials(deepcopy=False), number, params):
            return False
        self.storage.set_trial_user_attr(trial_id, SUPERSEDED_ATTR, True)
        self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
        return True

    def _run_trial(self, trial_id: int, number: int, params: dict[str, Any]) -> None:
        config = self.spec.config(params)
        label = f"{self.spec.name}: trial {number} ({describe(params)})"
        with liveness.Heartbeat(self.storage, trial_id, self.heartbeat_s):
            try:
                curve = self.objective(config)
                value = float(getattr(curve, self.spec.objective))
                if not math.isfinite(value):
                    raise ValueError(f"objective {self.spec.objective} is {value}")
            except Exception as err:
                tqdm.write(f"{label} failed: {type(err).__name__}: {err}")
                # Taken as lost meanwhile: its retry runs the point again.
                with contextlib.suppress(UpdateFinishedTrialError):
                    self._fail(trial_id, err, traceback.format_exc()[-4000:])
                    self._retry_raised(params)
                return
            except BaseException:
                # Interrupted (Ctrl-C): not the point's fault; it runs again.
                with contextlib.suppress(UpdateFinishedTrialError):
                    if self.storage.set_trial_state_values(trial_id, TrialState.FAIL):
                        liveness.RETRY(self.study, self.storage.get_trial(trial_id))
                raise
        attrs = {"config": dataclasses.asdict(config), **curve.to_dict()}
        self._record(trial_id, number, params, value, attrs, label)

    def _fail(self, trial_id: int, err: Exception, trace: str) -> None:
        self.storage.set_trial_user_attr(trial_id, "error", f"{type(err).__name__}: {err}")
        self.storage.set_trial_user_attr(trial_id, "traceback", trace)
        self.storage.set_trial_state_values(trial_id, TrialState.FAIL)

    def _retry_raised(self, params: dict[str, Any]) -> None:
        """Enqueue a grid point whose objective raised again, unless it was tried
        MAX_ATTEMPTS times (a tpe trial that raised counts toward n_trials)."""
        if self.spec.sampler != "grid":
            return
        statuses = point_statuses(
            self.spec, self.spec.grid_size, self.study.get_trials(deepcopy=False)
        )
        if not statuses[self.spec.point_index(params)].held:
            self.study.enqueue_trial(params)

    def _record(self, trial_id: int, number: int, params, value: float, attrs, label) -> None:
        """Complete the trial with its result (see the module docstring)."""
        try:
            if self.spec.sampler == "grid" and self._yield(trial_id, number, params):
                tqdm.write(f"{label}: its point was completed by another trial; dropped")
                return
            for key, attr in attrs.items():
                self.storage.set_trial_user_attr(trial_id, key, attr)
            self.storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [value])
        except UpdateFinishedTrialError:
            self._take_over(trial_id, value, attrs, label)

    def _take_over(self, trial_id: int, value: float, attrs: dict, label: str) -> None:
        """Record the result of a trial taken as lost on the WAITING trial that took its
        point over, if there is one (see the module docstring)."""
        mine = self.storage.get_trial(trial_id)
        for number in queue.successors(self.spec, self.study.get_trials(deepcopy=False), mine):
            successor_id = self._trial_id(number)
            with contextlib.suppress(UpdateFinishedTrialError):
                # The atomic WAITING -> RUNNING move that ask() makes, of this one trial.
                if self.storage.set_trial_state_values(successor_id, TrialState.RUNNING):
                    params = self._own(optuna.Trial(self.study, successor_id), successor_id)
                    tqdm.write(f"{label} was taken as lost while it ran; kept as trial {number}")
                    self._record(successor_id, number, params, value, attrs, label)
                    return
        tqdm.write(f"{label} was taken as lost while it ran and its point is done or run again")

    def _progress_bar(self, state: Survey) -> tqdm:
        # Trials done in the whole study (all workers), out of the trials it needs.
        return tqdm(
            desc=f"{self.spec.name} [worker {self.index}]",
            total=state.total,
            initial=state.complete,
            unit="trial",
            position=self.index,
            disable=not self.settings.progress,
            dynamic_ncols=True,
        )

    def _show(self, bar: tqdm, state: Survey) -> None:
        bar.n = state.complete
        if state.best is not None:
            bar.set_postfix_str(f"best {self.spec.objective} {state.best.value:.4f}", False)
        bar.refresh()


def _suggest(trial: optuna.Trial, axis: str, values: list | Range) -> None:
    if isinstance(values, list):
        trial.suggest_categorical(axis, values)
    elif isinstance(values.low, int):
        trial.suggest_int(axis, values.low, values.high, step=values.step or 1, log=values.log)
    else:
        trial.suggest_float(axis, values.low, values.high, step=values.step, log=values.log)
