"""Reading the report's three inputs into pandas: an Optuna study (docs/design.md §8), a
benchmark folder (§7) and the equivalence results of the test suite (§4).

Every loader returns None (or an empty part) for what is absent instead of raising, so
a partial report can say what is missing. What is present but wrong (a study name the
storage does not hold, a CSV without the contract's columns, broken JSON) is a
ValueError naming the command-line argument.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mixlab.benchmarks import status
from mixlab.studies import storage
from mixlab.studies.spec import AXES as SPEC_AXES

# The axes a study can sweep (docs/design.md §8), in the order tables show them.
AXES = tuple(SPEC_AXES)
# The columns the report reads from `mixlab bench` output (docs/design.md §7).
MIXING_COLUMNS = ("op", "impl", "shape", "batch", "dtype", "median_ms", "frac_copy", "status")
LOSS_COLUMNS = (
    "impl",
    "batch",
    "classes",
    "dtype",
    "median_ms",
    "peak_extra_over_logits",
    "status",
)
# Of those, the ones that hold numbers (empty where a row was not measured).
NUMERIC_COLUMNS = ("batch", "classes", "median_ms", "frac_copy", "peak_extra_over_logits")
EQUIVALENCE_COLUMNS = ("kernel", "backend", "dtype", "case", "max_err", "atol", "passed", "test")


@dataclass
class Study:
    name: str
    storage_url: str
    # one row per COMPLETE trial: the AXES, aulc, final_accuracy, wall_s, number
    trials: pd.DataFrame
    # one row per (trial, round): the AXES, labeled_size, test_accuracy
    curves: pd.DataFrame
    attrs: dict = field(default_factory=dict)
    state_counts: dict = field(default_factory=dict)
    # the settings no axis sweeps (dataset, model, epochs, ...), from a trial's config
    settings: dict = field(default_factory=dict)


@dataclass
class Bench:
    folder: Path
    mixing: pd.DataFrame | None
    loss: pd.DataFrame | None
    meta: dict | None


@dataclass
class Equivalence:
    path: Path
    rows: pd.DataFrame
    meta: dict


def load_study(name: str | None, storage_url: str) -> Study:
    """The study `name` in `storage_url` (or the storage's only study when name is None).

    Raises ValueError naming --study / --storage when the study cannot be identified.
    Opening the storage the way `mixlab ablate` does (mixlab.studies.storage) reads the
    same studies it writes; a storage file that does not exist is not created.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        opened = storage.open_storage(storage_url)
    except FileNotFoundError as err:
        raise ValueError(str(err)) from None
    names = [s.study_name for s in optuna.get_all_study_summaries(opened, False)]
    if name is None:
        if len(names) != 1:
            raise ValueError(
                f"--study: storage {storage.mask_password(storage_url)} holds {len(names)} studies "
                f"({', '.join(names) or 'none'}); name one"
            )
        name = names[0]
    elif name not in names:
        raise ValueError(
            f"--study: no study {name!r} in {storage.mask_password(storage_url)} "
            f"(it holds: {', '.join(names) or 'no studies'})"
        )
    study = optuna.load_study(study_name=name, storage=opened)
    all_trials = study.get_trials(deepcopy=False)
    state_counts: dict[str, int] = {}
    for t in all_trials:
        state_counts[t.state.name] = state_counts.get(t.state.name, 0) + 1
    complete = [t for t in all_trials if t.state == optuna.trial.TrialState.COMPLETE]
    trial_rows, curve_rows = [], []
    for t in complete:
        axes = _trial_axes(t.params, t.user_attrs.get("config", {}))
        attrs = t.user_attrs
        trial_rows.append(
            {
                "number": t.number,
                **axes,
                "aulc": float(attrs.get("aulc", t.value)),
                "final_accuracy": float(attrs.get("final_accuracy", math.nan)),
                "wall_s": float(attrs.get("wall_s", math.nan)),
            }
        )
        sizes, accs = attrs.get("labeled_sizes", []), attrs.get("test_accuracy", [])
        curve_rows += [
            {"number": t.number, **axes, "labeled_size": int(n), "test_accuracy": float(a)}
            for n, a in zip(sizes, accs, strict=False)
        ]
    columns = ["number", *AXES, "aulc", "final_accuracy", "wall_s"]
    trials = pd.DataFrame(trial_rows, columns=columns)
    curves = pd.DataFrame(curve_rows, columns=["number", *AXES, "labeled_size", "test_accuracy"])
    config = complete[0].user_attrs.get("config", {}) if complete else {}
    settings = {k: v for k, v in config.items() if k not in AXES}
    return Study(name, storage_url, trials, curves, dict(study.user_attrs), state_counts, settings)


def _trial_axes(params: dict, config: dict) -> dict:
    # Swept axes are trial params; an axis held fixed by the spec is only in the config.
    return {axis: params.get(axis, config.get(axis)) for axis in AXES}


def load_bench(folder: str | Path) -> Bench | None:
    folder = Path(folder)
    if not folder.is_dir():
        return None
    mixing = _read_csv(folder / "mixing.csv", MIXING_COLUMNS)
    loss = _read_csv(folder / "loss.csv", LOSS_COLUMNS)
    meta_path = folder / "meta.json"
    meta = _read_json(meta_path, "--bench") if meta_path.is_file() else None
    if meta is not None and not isinstance(meta, dict):
        raise ValueError(f"--bench: {meta_path} is not a JSON object")
    if mixing is None and loss is None:
        return None
    return Bench(folder, mixing, loss, meta)


def _read_csv(path: Path, columns: tuple[str, ...]) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise ValueError(f"--bench: {path} is empty") from None
    except (UnicodeDecodeError, pd.errors.ParserError) as err:
        raise ValueError(f"--bench: {path} is not a CSV file ({err})") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"--bench: {path} lacks the columns {', '.join(missing)}")
    for column in (c for c in NUMERIC_COLUMNS if c in columns):
        _require_numbers(frame, column, f"--bench: {path}")
    try:  # files of either form: status text, or Status values and a reason
        frame = status.with_reason(frame)
    except ValueError as err:
        raise ValueError(f"--bench: {path}: {err}") from None
    return frame if len(frame) else None


def _require_numbers(frame: pd.DataFrame, column: str, where: str) -> None:
    """Numbers (or empty cells) in `column`, converted in place; ValueError otherwise."""
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() & frame[column].notna()
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise ValueError(
            f"{where}: column {column} holds {frame[column].iloc[row]!r} in row {row + 1}, "
            "not a number"
        )
    frame[column] = values


def load_equivalence(path: str | Path) -> Equivalence | None:
    path = Path(path)
    if not path.is_file():
        return None
    doc = _read_json(path, "--equivalence")
    raw_rows = doc.get("rows", []) if isinstance(doc, dict) else None
    if not isinstance(raw_rows, list):
        raise ValueError(f'--equivalence: {path} is not an equivalence file (no "rows" list)')
    for i, row in enumerate(raw_rows):
        missing = [c for c in EQUIVALENCE_COLUMNS if not isinstance(row, dict) or c not in row]
        if missing:
            raise ValueError(f"--equivalence: {path}: rows[{i}] lacks {', '.join(missing)}")
    rows = pd.DataFrame(raw_rows, columns=list(EQUIVALENCE_COLUMNS))
    for column in ("max_err", "atol"):
        _require_numbers(rows, column, f"--equivalence: {path}")
    rows["dtype"] = rows["dtype"].astype(str).str.removeprefix("torch.")
    rows["passed"] = rows["passed"].eq(True)  # only an explicit pass counts
    meta = {k: v for k, v in doc.items() if k != "rows"}
    return Equivalence(path, rows, meta)


def _read_json(path: Path, argument: str):
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{argument}: {path} is not valid JSON ({err})") from None
