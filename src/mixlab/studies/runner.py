"""Study workers: claim a trial, run the active-learning loop on it, record its curve.

Claiming. Optuna's GridSampler picks an unvisited point from its own snapshot of the
trials, so two workers asking at once can get the same point. Here every claim happens
under a lock all workers of a storage share (storage.claim_lock): read the trials, pick
the first grid point that is neither COMPLETE nor RUNNING in a live worker (nor failed
twice), and create its trial RUNNING with the point as params, all before the lock is
released, so the next claimer sees it. TPE trials are asked from the sampler under the
same lock, so that the workers together stop at n_trials.

Liveness, and how results are recorded: mixlab.studies.survey. Creating the study:
mixlab.studies.creation.

The learning curve and config of each trial are stored in its user_attrs (docs/design.md §8).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import multiprocessing
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from mixlab.studies import storage as storages
from mixlab.studies.creation import SPEC_ATTR, prepare_study, study_attrs  # noqa: F401
from mixlab.studies.spec import Range, StudySpec, describe
from mixlab.studies.survey import (  # noqa: F401
    DEFAULT_HEARTBEAT_S,
    GRACE_BEATS,
    HEARTBEAT_ATTR,
    MACHINE,
    SUPERSEDED_ATTR,
    WORKER_ATTR,
    Survey,
    is_lost,
    point_key,
    survey,
)

MAX_HEARTBEAT_S = 3600.0

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
    heartbeat_s: float = DEFAULT_HEARTBEAT_S
    # None: mixlab.active.loop.run_active_learning
    objective: Objective | None = None
    progress: bool = True


class _Heartbeat:
    """Refreshes a trial's heartbeat from a thread while the trial runs."""

    def __init__(self, storage, trial_id: int, interval_s: float) -> None:
        self._storage, self._trial_id, self._interval_s = storage, trial_id, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._storage.set_trial_system_attr(self._trial_id, HEARTBEAT_ATTR, time.time())
            except UpdateFinishedTrialError:
                return  # taken as lost by another worker; the main thread will hear of it
            except Exception as err:  # a storage hiccup: the next beat may get through
                tqdm.write(f"heartbeat of trial id {self._trial_id} failed: {err}")


class Worker:
    """One worker: claims and runs trials until the study needs no more."""

    def __init__(self, settings: RunSettings, index: int = 0) -> None:
        self.settings = settings
        self.spec = settings.spec
        self.index = index
        self.storage = storages.open_storage(settings.storage_url)
        self.study_id = self.storage.get_study_id_from_name(self.spec.name)
        # A study object is only needed to ask the TPE sampler.
        self.study = None
        if self.spec.sampler == "tpe":
            self.study = optuna.load_study(
                study_name=self.spec.name,
                storage=self.storage,
                sampler=optuna.samplers.TPESampler(),
            )
        if settings.objective is None:
            from mixlab.active.loop import run_active_learning

            self.objective = run_active_learning
        else:
            self.objective = settings.objective
        self.distributions = {
            axis: CategoricalDistribution(values)
            for axis, values in self.spec.axes.items()
            if isinstance(values, list)
        }

    def run(self) -> int:
        """Run trials until every point is done (or n_trials reached); returns how many
        trials this worker ran."""
        poll_s = min(1.0, self.settings.heartbeat_s)
        ran = 0
        bar = None
        while True:
            with storages.claim_lock(self.settings.storage_url, self.spec.name):
                state = survey(self.spec, self.settings.n_trials, self._read_trials())
                claimed = self._claim(state) if state.can_claim else None
            bar = bar or self._progress_bar(state)
            self._show(bar, state)
            if claimed is None:
                if not state.in_flight:
                    bar.close()
                    return ran
                time.sleep(poll_s)  # others run the last trials: wait, they may die
                continue
            self._run_trial(*claimed)
            ran += 1

    def _read_trials(self) -> list[FrozenTrial]:
        """All trials, after failing the lost RUNNING ones."""
        trials = self.storage.get_all_trials(self.study_id, deepcopy=False)
        now = time.time()
        lost = [t for t in trials if t.state == TrialState.RUNNING and is_lost(t, now)]
        for t in lost:
            tqdm.write(
                f"{self.spec.name}: trial {t.number} ({describe(t.params)}) lost its worker "
                f"{t.system_attrs.get(WORKER_ATTR)}; running it again"
            )
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, t.number)
            with contextlib.suppress(UpdateFinishedTrialError):  # it finished after all
                self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
        if lost:
            trials = self.storage.get_all_trials(self.study_id, deepcopy=False)
        return trials

    def _stamp(self) -> dict[str, Any]:
        worker = {"machine": MACHINE, "pid": os.getpid(), "heartbeat_s": self.settings.heartbeat_s}
        return {WORKER_ATTR: worker, HEARTBEAT_ATTR: time.time()}

    def _claim(self, state: Survey) -> tuple[int, int, dict[str, Any]]:
        """Create this worker's next trial, RUNNING; returns (trial id, number, params)."""
        if state.next_point is not None:
            point = state.next_point
            template = optuna.trial.create_trial(
                state=TrialState.RUNNING,
                params=point,
                distributions={axis: self.distributions[axis] for axis in point},
                system_attrs=self._stamp(),
            )
            trial_id = self.storage.create_new_trial(self.study_id, template_trial=template)
            return trial_id, self.storage.get_trial(trial_id).number, point
        trial = self.study.ask()
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, trial.number)
        for key, value in self._stamp().items():
            self.storage.set_trial_system_attr(trial_id, key, value)
        for axis, values in self.spec.axes.items():
            _suggest(trial, axis, values)
        return trial_id, trial.number, dict(trial.params)

    def _run_trial(self, trial_id: int, number: int, params: dict[str, Any]) -> None:
        config = self.spec.config(params)
        label = f"{self.spec.name}: trial {number} ({describe(params)})"
        with _Heartbeat(self.storage, trial_id, self.settings.heartbeat_s):
            try:
                try:
                    curve = self.objective(config)
                    value = float(getattr(curve, self.spec.objective))
                    if not math.isfinite(value):
                        raise ValueError(f"objective {self.spec.objective} is {value}")
                except Exception as err:
                    tqdm.write(f"{label} failed: {type(err).__name__}: {err}")
                    self.storage.set_trial_user_attr(
                        trial_id, "error", f"{type(err).__name__}: {err}"
                    )
                    self.storage.set_trial_user_attr(
                        trial_id, "traceback", traceback.format_exc()[-4000:]
                    )
                    self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
                    return
                except BaseException:
                    # Interrupted (Ctrl-C): not the point's fault; it runs again.
                    self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
                    raise
                attrs = {"config": dataclasses.asdict(config), **curve.to_dict()}
                self._record(trial_id, params, value, attrs, label)
            except UpdateFinishedTrialError:
                tqdm.write(f"{label} was taken as lost by another worker; result dropped")

    def _record(self, trial_id: int, params: dict, value: float, attrs: dict, label: str) -> None:
        """Store a finished result. A grid point gets one COMPLETE trial: checked under the
        claim lock, so a result whose trial was taken as lost while it still ran is kept
        (as a new trial) when its point is not complete yet, and dropped when it is."""
        if self.spec.sampler != "grid":
            for key, attr in attrs.items():
                self.storage.set_trial_user_attr(trial_id, key, attr)
            self.storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [value])
            return
        with storages.claim_lock(self.settings.storage_url, self.spec.name):
            trials = self.storage.get_all_trials(self.study_id, deepcopy=False)
            index = self.spec.point_index(params)
            done = any(
                t.state == TrialState.COMPLETE and self.spec.point_index(t.params) == index
                for t in trials
            )
            if done:
                tqdm.write(f"{label}: its point was completed by another worker; dropped")
                with contextlib.suppress(UpdateFinishedTrialError):
                    self.storage.set_trial_user_attr(trial_id, SUPERSEDED_ATTR, True)
                    self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
                return
            try:
                for key, attr in attrs.items():
                    self.storage.set_trial_user_attr(trial_id, key, attr)
                self.storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [value])
            except UpdateFinishedTrialError:
                tqdm.write(f"{label} was taken as lost while it ran; its result is kept")
                template = optuna.trial.create_trial(
                    params=params,
                    distributions={axis: self.distributions[axis] for axis in params},
                    value=value,
                    user_attrs=attrs,
                    system_attrs=self._stamp(),
                )
                self.storage.create_new_trial(self.study_id, template_trial=template)

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


def summarize(settings: RunSettings) -> Survey:
    """Where the study stands now."""
    storage = storages.open_storage(settings.storage_url)
    study_id = storage.get_study_id_from_name(settings.spec.name)
    trials = storage.get_all_trials(study_id, deepcopy=False)
    return survey(settings.spec, settings.n_trials, trials)


def _worker_process(settings: RunSettings, index: int, n_workers: int) -> None:
    import torch

    # Share the cores instead of every worker using all of them.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch.set_num_threads(max(1, (cores or 1) // n_workers))
    try:
        with storages.errors_named(settings.storage_url):
            Worker(settings, index).run()
    except storages.StorageError as err:
        print(f"mixlab ablate: worker {index}: {err}", file=sys.stderr)
        sys.exit(3)


def run_study(settings: RunSettings, workers: int = 1) -> Survey:
    """Create or resume the study, run `workers` worker processes on it (in this process
    when 1) until it needs no more trials, and return where it stands."""
    with storages.errors_named(settings.storage_url):
        prepare_study(settings.spec, settings.storage_url)
        if workers == 1:
            Worker(settings).run()
            return summarize(settings)
    ctx = multiprocessing.get_context("spawn")  # no fork: torch and threads do not survive it
    procs = [
        ctx.Process(target=_worker_process, args=(settings, i, workers), name=f"worker {i}")
        for i in range(workers)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    for p in procs:
        if p.exitcode:
            print(f"mixlab ablate: {p.name} exited with code {p.exitcode}", file=sys.stderr)
    return summarize(settings)
