"""A study spec: the TOML file that says what `mixlab ablate` sweeps.

    name = "digits_demo"            # the Optuna study name (also the default storage file)
    dataset = "digits"              # dataset, model, data_root, device: fixed for the study
    model = "mlp"
    sampler = "grid"                # "grid" (every point) or "tpe" (n_trials samples)
    objective = "aulc"              # or "final_accuracy"; maximized

    [training]                      # any other ActiveLearningConfig field, fixed
    epochs = 20

    [axes]                          # the swept axes: a list (grid / a TPE choice),
    alpha = [0.0, 0.2, 1.0]         # a scalar (fixed), or, with tpe only, a range
    strategy = ["random", "entropy"]   # {low, high, log?, step?}
    seed = [0, 1, 2]

Everything is checked here, before anything touches a storage: unknown keys, wrong types
and ranges under the grid sampler by this module; values (an unknown strategy, dataset,
...) by building and validating the ActiveLearningConfig of every grid point, so the
active-learning loop stays the one place that knows which values exist.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixlab.studies.spec_values import Range, check_choices, check_keys, check_range, check_value
from mixlab.validation import is_int

# The axes a study can sweep (docs/design.md §8) and their types, in grid order: the
# product varies the last axis fastest, so every seed of a setting is run back to back.
AXES: dict[str, type] = {
    "strategy": str,
    "alpha": float,
    "initial_budget": int,
    "query_size": int,
    "rounds": int,
    "mixup_mode": str,
    "seed": int,
}
SAMPLERS = ("grid", "tpe")
OBJECTIVES = ("aulc", "final_accuracy")
# Top-level keys of the study itself, and config fields that name what is studied.
STUDY_KEYS = ("name", "description", "sampler", "objective", "n_trials")
SETTING_KEYS = ("dataset", "model", "data_root", "device")
TABLES = ("training", "axes")
# Study names become file names (reports/studies/NAME.journal).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# The most grid points a spec may describe: a study ends with one trial per point, and
# every survey of it reads all of its trials.
MAX_GRID_POINTS = 100_000


class SpecError(ValueError):
    """A study spec that cannot be run; the message names the file and the key."""


@dataclass(frozen=True)
class StudySpec:
    name: str
    path: str
    sampler: str
    objective: str
    n_trials: int | None
    # ActiveLearningConfig fields held fixed: settings, [training] and scalar axes
    fixed: dict[str, Any]
    # swept axes, in AXES order: a list of values, or a Range (tpe only)
    axes: dict[str, list | Range]
    # the parsed TOML, as stored in the study's user_attrs
    raw: dict[str, Any]

    def grid_points(self) -> list[dict[str, Any]]:
        """Every combination of the swept axes, in a fixed order (grid sampler only)."""
        return [self.point(i) for i in range(self.grid_size)]

    @functools.cached_property
    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.axes.values() if isinstance(v, list))

    def point(self, index: int) -> dict[str, Any]:
        """The grid point at `index` in grid order (the last axis varies fastest), computed
        from the index alone: nothing is expanded."""
        point = {}
        for axis in reversed(self.axes):
            values = self.axes[axis]
            index, i = divmod(index, len(values))
            point[axis] = values[i]
        return {axis: point[axis] for axis in self.axes}

    def point_index(self, params: dict[str, Any]) -> int | None:
        """The index of the grid point `params` (None when it is not one)."""
        if params.keys() != self.axes.keys():
            return None
        index = 0
        for axis, values in self.axes.items():
            position = self._positions[axis].get(params[axis])
            if position is None:
                return None
            index = index * len(values) + position
        return index

    @functools.cached_property
    def _positions(self) -> dict[str, dict[Any, int]]:
        return {axis: {v: i for i, v in enumerate(values)} for axis, values in self.axes.items()}

    def config(self, params: dict[str, Any]):
        """The ActiveLearningConfig of one trial: the fixed fields plus its params."""
        return _config_class()(**self.fixed, **params)


def load_spec(path: str | Path) -> StudySpec:
    """Parse and validate the spec at `path`; raises SpecError naming what is wrong."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise SpecError(f"{path}: no such spec file") from None
    except IsADirectoryError:
        raise SpecError(f"{path}: is a folder, not a spec file") from None
    except OSError as err:
        raise SpecError(f"{path}: cannot read the spec ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        raise SpecError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{path}: not valid TOML: {err}") from None
    return parse_spec(raw, str(path))


def parse_spec(raw: dict[str, Any], path: str = "<spec>") -> StudySpec:
    """Validate an already-parsed spec; `path` only labels the error messages."""

    def fail(message: str):
        raise SpecError(f"{path}: {message}")

    config_fields = [f.name for f in dataclasses.fields(_config_class())]
    training_keys = [k for k in config_fields if k not in AXES and k not in SETTING_KEYS]
    check_keys(raw, (*STUDY_KEYS, *SETTING_KEYS, *TABLES), "", fail)

    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        fail(f"name: required, letters/digits/_.- (it names the study and its file), got {name!r}")
    if not isinstance(raw.get("description", ""), str):
        fail(f"description: expected a string, got {raw['description']!r}")
    sampler = raw.get("sampler", "grid")
    if sampler not in SAMPLERS:
        fail(f"sampler: unknown sampler {sampler!r} (choose from {', '.join(SAMPLERS)})")
    objective = raw.get("objective", "aulc")
    if objective not in OBJECTIVES:
        fail(f"objective: unknown objective {objective!r} (choose from {', '.join(OBJECTIVES)})")
    n_trials = raw.get("n_trials")
    if sampler == "grid" and n_trials is not None:
        fail("n_trials: only for sampler 'tpe' (the grid sampler runs every point)")
    if sampler == "tpe" and not (is_int(n_trials) and n_trials >= 1):
        fail(f"n_trials: sampler 'tpe' needs a positive integer, got {n_trials!r}")

    training = raw.get("training", {})
    axes_table = raw.get("axes", {})
    for table, value in (("training", training), ("axes", axes_table)):
        if not isinstance(value, dict):
            fail(f"{table}: must be a table ([{table}]), got {type(value).__name__}")
    check_keys(training, training_keys, "training.", fail)
    check_keys(axes_table, list(AXES), "axes.", fail)

    fixed = {k: raw[k] for k in SETTING_KEYS if k in raw}
    fixed.update(training)
    axes: dict[str, list | Range] = {}
    for axis, kind in AXES.items():
        if axis not in axes_table:
            continue
        value = axes_table[axis]
        if isinstance(value, list):
            axes[axis] = check_choices(axis, kind, value, fail)
        elif isinstance(value, dict):
            if sampler == "grid":
                fail(f"axes.{axis}: a range needs sampler = 'tpe'; the grid takes a list")
            axes[axis] = check_range(axis, kind, value, fail)
        else:
            fixed[axis] = check_value(axis, kind, value, fail)

    size = math.prod(len(v) for v in axes.values() if isinstance(v, list))
    if sampler == "grid" and size > MAX_GRID_POINTS:
        # Counted as a product, before anything is expanded.
        fail(
            f"axes: the grid has {size:,} points, more than the {MAX_GRID_POINTS:,} a study "
            "may hold; sweep fewer values, or use sampler = 'tpe' with ranges"
        )
    spec = StudySpec(name, path, sampler, objective, n_trials, fixed, axes, raw)
    _check_configs(spec, fail)
    return spec


def _config_class():
    from mixlab.active.config import ActiveLearningConfig

    return ActiveLearningConfig


def _product(axes: dict[str, list | Range]):
    # A range contributes its two ends (used to validate a tpe spec's corners).
    choices = (v if isinstance(v, list) else [v.low, v.high] for v in axes.values())
    return itertools.product(*choices)


def _check_configs(spec: StudySpec, fail) -> None:
    """Validate the config of every grid point (of every range corner, for tpe)."""
    names = list(spec.axes)
    for values in _product(spec.axes):
        params = dict(zip(names, values, strict=True))
        try:
            spec.config(params).validate()
        except (TypeError, ValueError) as err:
            where = f" (at {describe(params)})" if params else ""
            fail(f"{err}{where}")


def check_runnable_here(spec: StudySpec) -> None:
    """What only this machine can say: a CUDA device when the spec asks for one. Checked
    by `mixlab ablate` before any storage is created (a report of the study needs none)."""
    import torch

    device = spec.fixed.get("device", _config_class().device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SpecError(
            f"{spec.path}: device: {device!r} asked for, but this machine has no CUDA device"
        )


def describe(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items())
