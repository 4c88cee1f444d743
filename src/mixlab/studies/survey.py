"""Where a study stands, read from its trials: which grid points are complete, running in
a live worker, or failed; which RUNNING trials lost their worker.

Liveness. A worker stamps its trials with who runs them (machine, pid) and a heartbeat
time it refreshes every `heartbeat_s` seconds. A RUNNING trial is lost when its process is
gone from this machine, or its heartbeat is older than GRACE_BEATS beats (a dead machine;
machines sharing a study need clocks that agree to well within that). The next claimer
fails it (FAIL without an "error" attr) and its point is run again. A lost trial is not a
failure of the point; a trial whose objective raises is FAIL with user_attr "error", and
its point is retried once. Results are recorded under the claim lock, after checking the
point is not COMPLETE yet: a worker whose trial was taken as lost while it still ran keeps
its result (as a new COMPLETE trial) if its point is still open, and drops it (its trial
FAIL, user_attr SUPERSEDED_ATTR) if another worker completed the point first. So every
grid point ends COMPLETE exactly once, and finished compute is not thrown away.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from mixlab.studies.spec import StudySpec

WORKER_ATTR = "mixlab:worker"  # trial system attr: {"machine", "pid", "heartbeat_s"}
HEARTBEAT_ATTR = "mixlab:heartbeat"  # trial system attr: unix time of the last beat
# trial user attr of a FAIL trial whose result came after its point was completed
SUPERSEDED_ATTR = "mixlab:superseded"
DEFAULT_HEARTBEAT_S = 10.0
GRACE_BEATS = 6  # a RUNNING trial silent for this many heartbeats is lost
MAX_ATTEMPTS = 2  # a grid point whose objective raises is retried once


def _machine_id() -> str:
    # The boot id tells apart machines that share a host name (and reboots of one).
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    return f"{socket.gethostname()}/{boot}"


MACHINE = _machine_id()


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


def survey(spec: StudySpec, n_trials: int | None, trials: list[FrozenTrial]) -> Survey:
    """n_trials: tpe: the study's total (default the spec's); grid: the first points."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    running = [t for t in trials if t.state == TrialState.RUNNING]
    raised = [t for t in trials if _raised(t)]
    lost = sum(
        t.state == TrialState.FAIL and not _raised(t) and SUPERSEDED_ATTR not in t.user_attrs
        for t in trials
    )
    if spec.sampler == "tpe":
        best = max(complete, key=_value, default=None)
        total = n_trials or spec.n_trials
        open_slots = total - len(complete) - len(raised) - len(running)
        return Survey(total, len(complete), len(running), open_slots > 0, None, best, [], lost)

    # Only the points that have trials are looked at, and the grid only up to the first
    # free point: a claim costs time in proportion to the trials, not to the grid.
    run_size = min(n_trials or spec.grid_size, spec.grid_size)

    def index_in_run(trial: FrozenTrial) -> int | None:
        index = spec.point_index(trial.params)
        return index if index is not None and index < run_size else None

    status: dict[int, dict[str, Any]] = {}
    for t in trials:
        index = index_in_run(t)
        if index is None:
            continue  # a point outside this run's --n-trials
        s = status.setdefault(index, {"complete": 0, "running": 0, "raised": []})
        if t.state == TrialState.COMPLETE:
            s["complete"] += 1
        elif t.state == TrialState.RUNNING:
            s["running"] += 1
        elif _raised(t):
            s["raised"].append(t.user_attrs["error"])
    done = sum(bool(s["complete"]) for s in status.values())
    best = max((t for t in complete if index_in_run(t) is not None), key=_value, default=None)
    failed, in_flight = [], 0
    for index in sorted(status):
        s = status[index]
        if s["complete"]:
            continue
        if s["running"]:
            in_flight += 1
        elif len(s["raised"]) >= MAX_ATTEMPTS:
            failed.append((spec.point(index), s["raised"][-1]))
    next_point = None
    for index in range(run_size):
        s = status.get(index)
        if s is None or not (s["complete"] or s["running"] or len(s["raised"]) >= MAX_ATTEMPTS):
            next_point = spec.point(index)
            break
    return Survey(run_size, done, in_flight, next_point is not None, next_point, best, failed, lost)


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
