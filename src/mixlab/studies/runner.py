"""Study workers: claim a trial, run the active-learning loop on it, record its curve.

Claiming. Optuna's GridSampler picks an unvisited point from its own snapshot of the
trials, so two workers asking at once can get the same point. Here every claim happens
under a lock all workers of a storage share (storage.claim_lock): read the trials, pick
the first grid point that is neither COMPLETE nor RUNNING in a live worker (nor failed
twice), and create its trial RUNNING with the point as params, all before the lock is
released, so the next claimer sees it. TPE trials are asked from the sampler under the
same lock, so that the workers together stop at n_trials.

Liveness. A worker stamps its trials with who runs them (machine, pid) and a heartbeat
time it refreshes every `heartbeat_s` seconds. A RUNNING trial is lost when its process is
gone from this machine, or its heartbeat is older than GRACE_BEATS beats (a dead machine;
machines sharing a study need clocks that agree to well within that). The next claimer
fails it (FAIL without an "error" attr) and its point is run again. A lost trial is not a
failure of the point; a trial whose objective raises is FAIL with user_attr "error", and
its point is retried once. A worker whose trial was taken as lost while it still ran gets
UpdateFinishedTrialError when it records the result, and drops it: the storage accepts
one final state per trial, so every point ends COMPLETE exactly once.

The learning curve and config of each trial are stored in its user_attrs (docs/design.md §8).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import multiprocessing
import os
import platform
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from mixlab.studies import storage as storages
from mixlab.studies.spec import Range, SpecError, StudySpec, describe

WORKER_ATTR = "mixlab:worker"  # trial system attr: {"machine", "pid", "heartbeat_s"}
HEARTBEAT_ATTR = "mixlab:heartbeat"  # trial system attr: unix time of the last beat
DEFAULT_HEARTBEAT_S = 10.0
GRACE_BEATS = 6  # a RUNNING trial silent for this many heartbeats is lost
MAX_ATTEMPTS = 2  # a grid point whose objective raises is retried once

# ActiveLearningConfig -> LearningCurve (docs/design.md §8)
Objective = Callable[[Any], Any]


def _machine_id() -> str:
    # The boot id tells apart machines that share a host name (and reboots of one).
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    return f"{socket.gethostname()}/{boot}"


MACHINE = _machine_id()


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


@dataclass
class Survey:
    """Where a study stands, read from its trials."""

    total: int  # grid points (or TPE trials) this run must complete
    complete: int
    in_flight: int  # live RUNNING trials that count toward `total`
    can_claim: bool
    next_point: dict[str, Any] | None  # the grid point to claim next (None for tpe)
    best: FrozenTrial | None
    # grid points whose objective raised MAX_ATTEMPTS times: (params, last error)
    failed: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    lost: int = 0  # trials taken as lost (worker killed) and run again


def survey(settings: RunSettings, trials: list[FrozenTrial]) -> Survey:
    spec = settings.spec
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    running = [t for t in trials if t.state == TrialState.RUNNING]
    raised = [t for t in trials if _raised(t)]
    lost = sum(t.state == TrialState.FAIL and not _raised(t) for t in trials)
    if spec.sampler == "tpe":
        best = max(complete, key=_value, default=None)
        total = settings.n_trials or spec.n_trials
        open_slots = total - len(complete) - len(raised) - len(running)
        return Survey(total, len(complete), len(running), open_slots > 0, None, best, [], lost)

    points = spec.grid_points()[: settings.n_trials]
    status = {point_key(p): {"complete": 0, "running": 0, "raised": []} for p in points}
    for t in trials:
        s = status.get(point_key(t.params))
        if s is None:
            continue  # a point outside this run's --n-trials
        if t.state == TrialState.COMPLETE:
            s["complete"] += 1
        elif t.state == TrialState.RUNNING:
            s["running"] += 1
        elif _raised(t):
            s["raised"].append(t.user_attrs["error"])
    done = [p for p in points if status[point_key(p)]["complete"]]
    best = max((t for t in complete if point_key(t.params) in status), key=_value, default=None)
    claimable, failed, in_flight = [], [], 0
    for p in points:
        s = status[point_key(p)]
        if s["complete"]:
            continue
        if s["running"]:
            in_flight += 1
        elif len(s["raised"]) >= MAX_ATTEMPTS:
            failed.append((p, s["raised"][-1]))
        else:
            claimable.append(p)
    next_point = claimable[0] if claimable else None
    return Survey(
        len(points), len(done), in_flight, bool(claimable), next_point, best, failed, lost
    )


def point_key(params: dict[str, Any]) -> tuple:
    """A hashable identity of a grid point (its params)."""
    return tuple(sorted(params.items()))


def _value(trial: FrozenTrial) -> float:
    return trial.value


def _raised(trial: FrozenTrial) -> bool:
    return trial.state == TrialState.FAIL and "error" in trial.user_attrs


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not Path("/proc").is_dir():
        return True
    try:
        # A killed worker whose parent has not reaped it yet is a zombie: dead.
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def is_lost(trial: FrozenTrial, now: float) -> bool:
    """A RUNNING trial whose worker is dead (see the module docstring)."""
    worker = trial.system_attrs.get(WORKER_ATTR, {})
    if worker.get("machine") == MACHINE and not _process_alive(worker["pid"]):
        return True
    # No stamp yet (killed between creating the trial and stamping it): its start time.
    beat = trial.system_attrs.get(HEARTBEAT_ATTR, trial.datetime_start.timestamp())
    return now - beat > GRACE_BEATS * worker.get("heartbeat_s", DEFAULT_HEARTBEAT_S)


def study_attrs(spec: StudySpec) -> dict[str, Any]:
    """The study's user_attrs (docs/design.md §8)."""
    import mixlab

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "spec": _jsonable(spec.raw),
        "spec_path": spec.path,
        "objective": spec.objective,
        "mixlab_version": mixlab.__version__,
        "torch_version": metadata.version("torch"),
        "machine": f"{platform.node()}: {platform.platform()}, {cpus} CPUs",
    }


def _jsonable(value):
    return json.loads(json.dumps(value))


def prepare_study(spec: StudySpec, url: str) -> None:
    """Create the study (or check that the existing one was made from this spec)."""
    with storages.claim_lock(url, spec.name):
        # Under the lock: workers starting together on an empty database would race to
        # create Optuna's tables.
        storage = storages.open_storage(url, create=True)
        existing = {s.study_name for s in storage.get_all_studies()}
        if spec.name in existing:
            stored = optuna.load_study(study_name=spec.name, storage=storage).user_attrs
            ours = _jsonable(spec.raw)
            if stored.get("spec") != ours:
                old = stored.get("spec", {})
                changed = sorted(k for k in {*old, *ours} if old.get(k) != ours.get(k))
                raise SpecError(
                    f"{spec.path}: study {spec.name!r} in {storages.mask_password(url)} was "
                    f"created from a different spec (differs in: {', '.join(changed)}); "
                    "rename the study or use another --storage"
                )
            return
        study = optuna.create_study(study_name=spec.name, storage=storage, direction="maximize")
        for key, value in study_attrs(spec).items():
            study.set_user_attr(key, value)


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
                state = survey(self.settings, self._read_trials())
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
                for key, attr in attrs.items():
                    self.storage.set_trial_user_attr(trial_id, key, attr)
                self.storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [value])
            except UpdateFinishedTrialError:
                tqdm.write(f"{label} was taken as lost by another worker; result dropped")

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
    return survey(settings, storage.get_all_trials(study_id, deepcopy=False))


def _worker_process(settings: RunSettings, index: int, n_workers: int) -> None:
    import torch

    # Share the cores instead of every worker using all of them.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch.set_num_threads(max(1, (cores or 1) // n_workers))
    Worker(settings, index).run()


def run_study(settings: RunSettings, workers: int = 1) -> Survey:
    """Create or resume the study, run `workers` worker processes on it (in this process
    when 1) until it needs no more trials, and return where it stands."""
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
