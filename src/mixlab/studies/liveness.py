"""Whether the worker of a RUNNING trial is alive, and what becomes of a trial whose worker died.

On an RDB storage (PostgreSQL, SQLite) this is Optuna's heartbeat: the storage is opened with
`heartbeat_interval` and `grace_period` (rdb_heartbeat), a worker records a heartbeat from a
thread while its trial runs (Heartbeat), and `optuna.storages.fail_stale_trials` fails the
trials silent for longer than the grace period; their `heartbeat_stale_trial_callback`,
Optuna's RetryHeartbeatStaleTrialCallback, enqueues each again as a WAITING trial with the
same params.

Optuna's journal storage has no heartbeat (JournalStorage implements no BaseHeartbeat in
Optuna 5.0), so for the journal alone a worker stamps its trial with who runs it (machine,
pid) and refreshes a heartbeat time in a system attr; a RUNNING trial is lost when its process
is gone from this machine or its heartbeat is older than GRACE_BEATS beats (machines sharing a
study need clocks that agree to well within that). A lost journal trial is failed and handed
to the same retry callback.

A lost trial is not its point's fault: it is retried as often as it is lost.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from mixlab.studies.spec import describe

# trial system attr: {"machine", "pid", "heartbeat_s", "trial"}; "trial" is the number of the
# trial it was written for (Optuna's retry callback copies it onto the retry, where it is stale)
WORKER_ATTR = "mixlab:worker"
HEARTBEAT_ATTR = "mixlab:heartbeat"  # journal trial system attr: unix time of the last beat
DEFAULT_HEARTBEAT_S = 10.0
MAX_HEARTBEAT_S = 3600.0
GRACE_BEATS = 6  # a RUNNING trial silent for this many heartbeats is lost


def _machine_id() -> str:
    # The boot id tells apart machines that share a host name (and reboots of one).
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    return f"{socket.gethostname()}/{boot}"


MACHINE = _machine_id()


@contextlib.contextmanager
def quiet_experimental() -> Iterator[None]:
    """Optuna marks its heartbeat API experimental; mixlab relies on it knowingly."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        yield


with quiet_experimental():
    # Renamed from RetryFailedTrialCallback in Optuna 4.9 (the old name is deprecated).
    RETRY = RetryHeartbeatStaleTrialCallback(max_retry=None)


def has_heartbeat(storage) -> bool:
    """An RDB storage opened with Optuna's heartbeat (a worker's)."""
    return isinstance(storage, RDBStorage) and storage.get_heartbeat_interval() is not None


def rdb_heartbeat(heartbeat_s: float) -> dict[str, Any]:
    """RDBStorage's liveness arguments for a worker beating every `heartbeat_s` seconds."""
    return {
        "heartbeat_interval": heartbeat_s,
        "grace_period": GRACE_BEATS * heartbeat_s,
        "heartbeat_stale_trial_callback": RETRY,
    }


def stamp(number: int, heartbeat_s: float) -> dict[str, Any]:
    """The system attrs a worker writes on the trial it claimed (WORKER_ATTR first)."""
    worker = {"machine": MACHINE, "pid": os.getpid(), "heartbeat_s": heartbeat_s, "trial": number}
    return {WORKER_ATTR: worker, HEARTBEAT_ATTR: time.time()}


def worker_of(trial: FrozenTrial) -> dict[str, Any]:
    """The stamp of the worker running `trial` ({} when it is not stamped yet)."""
    worker = trial.system_attrs.get(WORKER_ATTR, {})
    return worker if worker.get("trial") == trial.number else {}


class Heartbeat:
    """Beats for a trial from a thread while it runs: Optuna's record_heartbeat on an RDB
    storage, the journal's heartbeat attr otherwise."""

    def __init__(self, storage, trial_id: int, interval_s: float) -> None:
        self._storage, self._trial_id, self._interval_s = storage, trial_id, interval_s
        self._rdb = has_heartbeat(storage)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        if self._rdb:
            self._storage.record_heartbeat(self._trial_id)
        else:
            self._storage.set_trial_system_attr(self._trial_id, HEARTBEAT_ATTR, time.time())

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._beat()
            except UpdateFinishedTrialError:
                return  # taken as lost by another worker; the main thread will hear of it
            except Exception as err:  # a storage hiccup: the next beat may get through
                tqdm.write(f"heartbeat of trial id {self._trial_id} failed: {err}")


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


def is_lost(trial: FrozenTrial, now: float, heartbeat_s: float) -> bool:
    """A RUNNING journal trial whose worker is dead (see the module docstring); `heartbeat_s`
    is assumed for a trial not stamped yet."""
    worker = worker_of(trial)
    if worker.get("machine") == MACHINE and not _process_alive(worker["pid"]):
        return True
    # Not stamped yet (killed right after claiming it), or a beat copied from the trial it
    # retries: its claim time counts as a beat.
    start = trial.datetime_start.timestamp()
    beat = max(trial.system_attrs.get(HEARTBEAT_ATTR, start) if worker else start, start)
    return now - beat > GRACE_BEATS * worker.get("heartbeat_s", heartbeat_s)


def fail_lost_trials(study: optuna.Study, storage, study_id: int, heartbeat_s: float) -> None:
    """Fail the RUNNING trials whose worker died and enqueue each again (RETRY)."""
    now = time.time()
    if has_heartbeat(storage):
        with quiet_experimental():
            optuna.storages.fail_stale_trials(study)
        # Optuna never fails a RUNNING trial that has no heartbeat yet: one whose worker was
        # killed between ask() and its first beat. The stamp follows that beat.
        lost = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if not worker_of(t) and now - t.datetime_start.timestamp() > GRACE_BEATS * heartbeat_s
        ]
    else:
        # Optuna's JournalStorage has no heartbeat: mixlab's stamp and beat stand in for it.
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        lost = [t for t in running if is_lost(t, now, heartbeat_s)]
    for t in lost:
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        with contextlib.suppress(UpdateFinishedTrialError):  # another worker was first
            if storage.set_trial_state_values(trial_id, TrialState.FAIL):
                tqdm.write(
                    f"{study.study_name}: trial {t.number} ({describe(t.params)}) lost its "
                    f"worker {worker_of(t) or '(not stamped)'}; running it again"
                )
                RETRY(study, storage.get_trial(trial_id))
