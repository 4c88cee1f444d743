"""Running a study: create or resume it, then run worker processes on it until it needs no
more trials (the workers: mixlab.studies.worker; creating the study:
mixlab.studies.creation).
"""

from __future__ import annotations

import multiprocessing
import os
import sys

from mixlab.studies import storage as storages
from mixlab.studies.creation import prepare_study
from mixlab.studies.survey import Survey, survey
from mixlab.studies.worker import RunSettings, Worker


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
        prepare_study(settings.spec, settings.storage_url, settings.n_trials)
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
