"""Creating a study, atomically from a user's point of view, and enqueueing a run's points.

Creation is several writes (the study, then its attributes); the spec attribute is written
last and marks the study complete. A study without it was cut short by a kill before any
worker started: the next run finishes it instead of refusing it. A journal with a torn or
corrupt tail is first cut back to its intact prefix (mixlab.studies.journal). Then, still
under the lock, the first chunk of the run's open points is enqueued (mixlab.studies.queue):
a kill part-way through leaves a queue the next run or worker completes.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib import metadata
from typing import Any

import optuna

from mixlab.studies import queue
from mixlab.studies import storage as storages
from mixlab.studies.spec import SpecError, StudySpec

SPEC_ATTR = "spec"  # study user attr, written last when the study is created


def study_attrs(spec: StudySpec) -> dict[str, Any]:
    """The study's user_attrs (docs/design.md §8)."""
    import mixlab

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        SPEC_ATTR: _jsonable(spec.raw),
        "spec_path": spec.path,
        "objective": spec.objective,
        "mixlab_version": mixlab.__version__,
        "torch_version": metadata.version("torch"),
        "machine": f"{platform.node()}: {platform.platform()}, {cpus} CPUs",
    }


def _jsonable(value):
    return json.loads(json.dumps(value))


def prepare_study(spec: StudySpec, url: str, n_trials: int | None = None) -> None:
    """Create the study (or check that the existing one was made from this spec, or
    finish one a kill cut short), then enqueue the first chunk of the run's open points
    (n_trials: as for survey.run_size); see the module docstring."""
    with storages.enqueue_lock(url, spec.name):
        # Under the lock: workers starting together on an empty database would race to
        # create Optuna's tables.
        recovered = storages.recover_journal(url)
        if recovered:
            print(f"mixlab ablate: {recovered}", file=sys.stderr)
        storage = storages.open_storage(url, create=True)
        existing = {s.study_name for s in storage.get_all_studies()}
        if spec.name in existing:
            study = optuna.load_study(study_name=spec.name, storage=storage)
            if SPEC_ATTR in study.user_attrs:
                _check_same_spec(spec, url, study.user_attrs[SPEC_ATTR])
            else:
                _write_attrs(study, spec)
        else:
            study = optuna.create_study(study_name=spec.name, storage=storage, direction="maximize")
            _write_attrs(study, spec)
        queue.enqueue_open(study, spec, n_trials)


def _write_attrs(study: optuna.Study, spec: StudySpec) -> None:
    attrs = study_attrs(spec)
    for key, value in attrs.items():
        if key != SPEC_ATTR:
            study.set_user_attr(key, value)
    study.set_user_attr(SPEC_ATTR, attrs[SPEC_ATTR])


def _check_same_spec(spec: StudySpec, url: str, stored: dict) -> None:
    ours = _jsonable(spec.raw)
    if stored != ours:
        changed = sorted(k for k in {*stored, *ours} if stored.get(k) != ours.get(k))
        raise SpecError(
            f"{spec.path}: study {spec.name!r} in {storages.mask_password(url)} was "
            f"created from a different spec (differs in: {', '.join(changed)}); "
            "rename the study or use another --storage"
        )
