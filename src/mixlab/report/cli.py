"""`mixlab report`: the comparison report of an ablation study, a benchmark run and the
kernel equivalence results, written as report.md, index.html, PNG figures and CSV
tables in one folder. A missing input is said in the report, never invented."""

from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from mixlab.output import check_output_folder
from mixlab.report import figures, stats
from mixlab.report.gpu_readiness import DEFAULT_PATH as READINESS_PATH
from mixlab.report.gpu_readiness import gpu_readiness_sections
from mixlab.report.load import Bench, Equivalence, Study, load_bench, load_equivalence, load_study
from mixlab.report.render import Code, Figure, Note, Section, Table, Text, to_html, to_markdown
from mixlab.studies import storage
from mixlab.studies.spec import SpecError, load_spec

STATE_NAMES = {"COMPLETE": "complete", "FAIL": "failed", "RUNNING": "running"}
SIGNIFICANCE = stats.SIGNIFICANCE
# The baselines every arm is tested against: no mixup, and random sampling.
BASELINES = {"alpha": 0.0, "strategy": "random"}
BASELINE_NAMES = {"alpha": "no mixup (α = 0)", "strategy": "random sampling"}
MAX_WIN_MATRIX_ARMS = 20
NO_CUDA = "not measured: no CUDA"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--study", help="Optuna study name (default: the storage's only study)")
    parser.add_argument(
        "--storage",
        help="Optuna storage of the study, as given to `mixlab ablate`: a journal file path, "
        "postgresql://USER@HOST/DB or sqlite:///PATH "
        f"(default: {storage.default_url('NAME')})",
    )
    parser.add_argument(
        "--spec",
        help="study spec (TOML): report the study `mixlab ablate SPEC` runs, in its storage",
    )
    parser.add_argument(
        "--bench", default="reports/bench/latest", help="folder written by `mixlab bench --out`"
    )
    parser.add_argument(
        "--equivalence",
        default="reports/equivalence.json",
        help="kernel equivalence results (written by `make test` or `mixlab verify --json`)",
    )
    parser.add_argument("--out", default="reports/latest", help="folder to write the report to")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    try:
        study = _study(args)
        bench = load_bench(args.bench)
        equivalence = load_equivalence(args.equivalence)
        check_output_folder(out)
    except (ValueError, storage.StorageError) as error:
        print(f"mixlab report: {error}", file=sys.stderr)
        return 2
    write_report(out, study, bench, equivalence, bench_dir=args.bench, eq_path=args.equivalence)
    print(f"mixlab report: wrote {out / 'index.html'} and {out / 'report.md'}")
    return 0


def _study(args: argparse.Namespace) -> Study | None:
    """The study named by --study/--storage, or by --spec (its name, and its storage
    unless --storage is given), as `mixlab ablate` stores it; None when none is named."""
    name, url = args.study, args.storage
    if args.spec:
        try:
            name = name or load_spec(args.spec).name
        except SpecError as err:
            raise ValueError(f"--spec: {err}") from None
    if name is None and url is None:
        return None
    return load_study(name, storage.normalize_url(url or storage.default_url(name)))


def write_report(
    out: Path,
    study: Study | None,
    bench: Bench | None,
    equivalence: Equivalence | None,
    *,
    bench_dir: str | Path,
    eq_path: str | Path,
) -> list[Section]:
    """Write report.md, index.html, fig_*.png and table_*.csv into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    # A report is one run: figures and tables of an earlier run must not linger.
    for stale in [*out.glob("fig_*.png"), *out.glob("table_*.csv")]:
        stale.unlink()
    sections = [_inputs_section(study, bench, equivalence, bench_dir, eq_path)]
    parts = [
        ("ablation", lambda: ablation_sections(study, out)),
        ("benchmark", lambda: benchmark_sections(bench, bench_dir, out)),
        ("equivalence", lambda: equivalence_sections(equivalence, eq_path, out)),
        ("gpu readiness", lambda: gpu_readiness_sections(READINESS_PATH, out)),
    ]
    # disable=None: a bar on a terminal, silent in logs and tests
    with tqdm(parts, desc="mixlab report", unit="part", disable=None) as bar:
        for name, build in bar:
            bar.set_postfix_str(name)
            sections += build()
    title = "mixlab report"
    (out / "report.md").write_text(to_markdown(title, sections))
    (out / "index.html").write_text(to_html(title, sections))
    return sections


# ---------------------------------------------------------------- formatting helpers


def _pct(x: float) -> str:
    return "" if pd.isna(x) else f"{100 * x:.1f}"


def _mean_ci(mean: float, low: float, high: float, signed: bool = False) -> str:
    """Mean ± half-width of the 95% CI, in percent (points); the mean alone when n < 2."""
    if pd.isna(mean):
        return ""
    text = f"{100 * mean:+.1f}" if signed else f"{100 * mean:.1f}"
    return text if pd.isna(low) else f"{text} ± {100 * (high - low) / 2:.1f}"


def _p(p: float) -> str:
    return "" if pd.isna(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def _axes_frame(table: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    return pd.DataFrame({stats.AXIS_NAMES[a]: table[a].map(stats.axis_value) for a in axes})


def _marks(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame("", index=frame.index, columns=frame.columns)


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def _kv_table(items: dict) -> Table:
    frame = pd.DataFrame({"": list(items), "value": [str(v) for v in items.values()]})
    return Table(frame, label_columns=2)


# ---------------------------------------------------------------- inputs


def _inputs_section(study, bench, equivalence, bench_dir, eq_path) -> Section:
    if study is None:
        study_status = "not given"
    else:
        study_status = f"{study.name} — {len(study.trials)} complete trials"
    rows = {
        "ablation study": study_status,
        "benchmark": f"{bench.folder}" if bench else f"missing ({bench_dir})",
        "kernel equivalence": f"{equivalence.path}" if equivalence else f"missing ({eq_path})",
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    return Section("Inputs", [_kv_table(rows)])


# ---------------------------------------------------------------- ablation


def ablation_sections(study: Study | None, out: Path) -> list[Section]:
    if study is None:
        return [
            Section(
                "Ablation study",
                [
                    Note(
                        "no ablation study given: run `mixlab ablate SPEC`, then pass "
                        "`--spec SPEC` or `--study NAME --storage URL`."
                    )
                ],
            )
        ]
    trials = study.trials
    head = Section(f"Ablation study: {study.name}")
    if trials.empty:
        head.blocks.append(Note(f"study {study.name} has no complete trials yet."))
        return [head, _provenance(study)]
    axes = stats.arm_axes(trials)
    seeds = sorted(trials["seed"].dropna().unique())
    arms = stats.summarise_arms(trials, axes)
    swept = ", ".join(stats.AXIS_NAMES[a] for a in axes)
    head.blocks.append(
        Text(
            f"{len(trials)} complete trials: {len(arms)} arms × up to {len(seeds)} seeds. "
            f"An arm is one setting of the swept axes ({swept}); "
            "AULC is the area under the learning curve (accuracy vs labeled examples), "
            "normalized to [0, 1] and shown in %. Intervals are 95% t-intervals over seeds."
        )
    )
    if arms["n_seeds"].max() < 2:
        head.blocks.append(
            Note(
                "every arm has a single seed: no confidence intervals, and no paired tests "
                "(they need a grid study with a seed axis)."
            )
        )
    tests = {
        axis: stats.paired_tests(trials, axes, axis, baseline)
        for axis, baseline in BASELINES.items()
        if axis in axes and (trials[axis] == baseline).any()
    }
    head.blocks.append(_headline(arms, axes, tests))
    sections = [head, _curves_section(study, axes, out), _arms_section(arms, axes, out)]
    sections += _gain_sections(trials, axes, tests, out)
    sections.append(_win_section(trials, axes, out))
    sections.append(_provenance(study))
    return sections


def _curves_section(study: Study, axes: list[str], out: Path) -> Section:
    section = Section("Learning curves", level=3)
    if study.curves.empty:
        section.blocks.append(Note("the trials carry no learning curves (labeled_sizes)."))
        return section
    figures.learning_curves(study.curves, axes, out / "fig_learning_curves.png")
    section.blocks.append(
        Figure(
            "fig_learning_curves.png",
            "learning curves per strategy and alpha",
            "Test accuracy after each query round; line = mean over seeds, band = 95% CI. "
            "Grey: no mixup (α=0).",
        )
    )
    return section


def _arms_section(arms: pd.DataFrame, axes: list[str], out: Path) -> Section:
    arms.to_csv(out / "table_arms.csv", index=False)
    frame = _axes_frame(arms, axes)
    frame["seeds"] = arms["n_seeds"].astype(str)
    frame["AULC (%)"] = [
        _mean_ci(m, lo, hi)
        for m, lo, hi in arms[["aulc_mean", "aulc_ci_low", "aulc_ci_high"]].to_numpy()
    ]
    frame["final accuracy (%)"] = [
        _mean_ci(m, lo, hi)
        for m, lo, hi in arms[
            ["final_accuracy_mean", "final_accuracy_ci_low", "final_accuracy_ci_high"]
        ].to_numpy()
    ]
    marks = _marks(frame)
    for column, metric in (
        ("AULC (%)", "aulc_mean"),
        ("final accuracy (%)", "final_accuracy_mean"),
    ):
        best = arms[metric] == arms[metric].max()
        marks.loc[best.to_numpy(), column] = "best"
    table = Table(
        frame,
        "AULC and final accuracy per arm: mean ± 95% CI over seeds (best in bold)",
        marks,
        "table_arms.csv",
        label_columns=len(axes),
    )
    return Section("AULC and final accuracy per arm", [table], level=3)


def _gain_sections(
    trials: pd.DataFrame, axes: list[str], tests: dict[str, pd.DataFrame], out: Path
) -> list[Section]:
    heat = Section(f"Gain over {BASELINE_NAMES['alpha']}", level=3)
    sections = [heat]
    if "alpha" not in tests:
        heat.blocks.append(
            Note("no α = 0 arm in the study: the gain over no mixup is not computed.")
        )
    else:
        # The heatmap's columns are the initial budgets even when the study fixes one.
        heat_axes = axes if "initial_budget" in axes else [*axes, "initial_budget"]
        gains = stats.paired_tests(trials, heat_axes, "alpha", 0)
        gains.to_csv(out / "table_gain_over_alpha0.csv", index=False)
        if gains.empty:  # e.g. trials whose configs name no initial budget
            heat.blocks.append(Note("no trial names its initial budget: no heatmap."))
        else:
            figures.gain_heatmap(gains, out / "fig_gain_over_alpha0.png")
            heat.blocks.append(
                Figure(
                    "fig_gain_over_alpha0.png",
                    "AULC gain over alpha=0 by alpha and initial budget",
                    "Cell = mean over seeds of AULC(α) − AULC(α=0) for the same seed and the "
                    "same other settings, in percentage points; red = mixup hurts, blue = "
                    "helps.",
                    "table_gain_over_alpha0.csv",
                )
            )
        sections.append(_tests_section(tests["alpha"], axes, "alpha", out))
    if "strategy" not in tests:
        sections.append(
            Section(
                f"Paired tests against {BASELINE_NAMES['strategy']}",
                [Note("no random-sampling arm in the study: this comparison is not made.")],
                level=3,
            )
        )
    else:
        sections.append(_tests_section(tests["strategy"], axes, "strategy", out))
    return sections


def _headline(arms: pd.DataFrame, axes: list[str], tests: dict[str, pd.DataFrame]) -> Text:
    best = arms.loc[arms["aulc_mean"].idxmax()]
    parts = [f"Best arm by mean AULC: {stats.arm_label(best, axes)} ({_pct(best['aulc_mean'])}%)."]
    for axis, table in tests.items():
        significant = table["p_holm"] < SIGNIFICANCE
        better = int((significant & (table["diff_mean"] > 0)).sum())
        worse = int((significant & (table["diff_mean"] < 0)).sum())
        parts.append(
            f"Against {BASELINE_NAMES[axis]}: {better} of {len(table)} arms significantly "
            f"better, {worse} significantly worse (Holm-corrected p < {SIGNIFICANCE})."
        )
    return Text(" ".join(parts))


def _baseline_text(axis: str) -> str:
    return f"{stats.AXIS_NAMES[axis]} = {stats.axis_value(BASELINES[axis])}"


def _tests_section(tests: pd.DataFrame, axes: list[str], axis: str, out: Path) -> Section:
    name = f"table_tests_vs_{axis}_{stats.axis_value(BASELINES[axis])}.csv"
    tests.to_csv(out / name, index=False)
    frame = _axes_frame(tests, axes)
    frame["pairs"] = tests["n_pairs"].astype(str)
    frame["Δ AULC (pp)"] = [
        _mean_ci(m, lo, hi, signed=True)
        for m, lo, hi in tests[["diff_mean", "diff_ci_low", "diff_ci_high"]].to_numpy()
    ]
    frame["test"] = tests["test"]
    frame["statistic"] = tests["statistic"].map(lambda s: "" if pd.isna(s) else f"{s:.2f}")
    frame["p"] = tests["p"].map(_p)
    frame["p (Holm)"] = tests["p_holm"].map(_p)
    marks = _marks(frame)
    marks.loc[(tests["p_holm"] < SIGNIFICANCE).to_numpy(), "p (Holm)"] = "best"
    caption = (
        f"Each arm against the arm with {_baseline_text(axis)} and the same other settings, "
        "paired by seed. Δ = arm − baseline, mean ± 95% CI. Two-sided tests; Holm's "
        f"correction over the {len(tests)} tests of this table; bold: p (Holm) < {SIGNIFICANCE}."
    )
    family = int(tests["p"].notna().sum())
    min_pairs = stats.wilcoxon_min_pairs(family)
    explain = Text(
        f"Test per row: Wilcoxon signed-rank with ≥ {min_pairs} paired seeds, else the "
        f"paired t-test: with fewer pairs the exact Wilcoxon test's smallest p (2 / 2^n) "
        f"could not pass Holm's correction over {family} tests at {SIGNIFICANCE}."
    )
    table = Table(frame, caption, marks, name, label_columns=len(axes))
    title = f"Paired tests against {BASELINE_NAMES[axis]}"
    return Section(title, [table, explain], level=3)


def _win_section(trials: pd.DataFrame, axes: list[str], out: Path) -> Section:
    matrix = stats.win_matrix(trials, axes)
    matrix.to_csv(out / "table_win_matrix.csv")
    section = Section("Win matrix", level=3)
    if len(matrix) < 2:
        section.blocks.append(Note("a single arm: no win matrix."))
        return section
    shown = matrix.iloc[:MAX_WIN_MATRIX_ARMS, :MAX_WIN_MATRIX_ARMS]
    figures.win_matrix(shown, out / "fig_win_matrix.png")
    caption = (
        "Cell = fraction of the shared seeds on which the row arm's AULC beats the column "
        "arm's (ties count ½); arms ordered by mean AULC, best first."
    )
    if len(matrix) > len(shown):
        caption += f" The {len(shown)} best of {len(matrix)} arms are shown; the CSV has all."
    section.blocks.append(
        Figure("fig_win_matrix.png", "win matrix of arms", caption, "table_win_matrix.csv")
    )
    return section


def _provenance(study: Study) -> Section:
    attrs = study.attrs
    trials = study.trials
    states = ", ".join(
        f"{n} {STATE_NAMES.get(s, s.lower())}" for s, n in sorted(study.state_counts.items())
    )
    fixed = stats.fixed_axes(trials) if not trials.empty else {}
    items = {
        "study": study.name,
        "storage": storage.mask_password(study.storage_url),
        "trials": states or "none",
        "seeds": ", ".join(str(s) for s in sorted(trials["seed"].dropna().unique())),
        "objective": attrs.get("objective", "aulc"),
        "spec file": attrs.get("spec_path", "not recorded"),
        "fixed axes": ", ".join(
            f"{a}={stats.axis_value(v)}" for a, v in fixed.items() if a != "seed"
        )
        or "none",
        "settings": ", ".join(f"{k}={v}" for k, v in study.settings.items()) or "not recorded",
        "mixlab": attrs.get("mixlab_version", "not recorded"),
        "torch": attrs.get("torch_version", "not recorded"),
        "machine": attrs.get("machine", "not recorded"),
        "report made with": ", ".join(
            f"{p} {_version(p)}" for p in ("optuna", "pandas", "scipy", "seaborn")
        ),
    }
    blocks = [_kv_table(items)]
    if "spec" in attrs:
        blocks.append(Code(json.dumps(attrs["spec"], indent=2, default=str), "the study spec"))
    return Section("Provenance of the study", blocks, level=3)


# ---------------------------------------------------------------- benchmark


def benchmark_sections(bench: Bench | None, bench_dir, out: Path) -> list[Section]:
    head = Section("Benchmark")
    if bench is None:
        head.blocks.append(
            Note(f"no benchmark results in {bench_dir}: run `mixlab bench --out {bench_dir}`.")
        )
        return [head]
    if bench.meta:
        keep = ("machine", "cpu", "cores", "device", "torch", "triton", "date", "git commit")
        head.blocks.append(_kv_table({k: bench.meta[k] for k in keep if k in bench.meta}))
    else:
        head.blocks.append(Note(f"no meta.json in {bench.folder}: machine and versions unknown."))
    return [head, _mixing_section(bench.mixing, out), _loss_section(bench.loss, bench.meta, out)]


def _not_measured_notes(frame: pd.DataFrame, what: str) -> list[Note]:
    """One note per reason a row has no numbers; those cells stay empty."""
    notes = []
    for status, rows in frame[frame["status"] != "ok"].groupby("status", sort=True):
        impls = ", ".join(sorted(rows["impl"].unique()))
        empty = f"{len(rows)} row{'s' if len(rows) > 1 else ''} left empty"
        if str(status).startswith(NO_CUDA) and "triton" in impls:
            notes.append(Note(f"no CUDA: Triton {what} not measured ({impls}: {empty})."))
        else:
            notes.append(Note(f"{impls}: {status} ({empty})."))
    return notes


def _mixing_section(mixing: pd.DataFrame | None, out: Path) -> Section:
    section = Section("Mixing step: throughput", level=3)
    if mixing is None:
        section.blocks.append(Note("no mixing.csv in the benchmark folder."))
        return section
    section.blocks += _not_measured_notes(mixing, "throughput")
    mixing.to_csv(out / "table_mixing.csv", index=False)
    if (mixing["status"] == "ok").any():
        figures.mixing_throughput(mixing, "frac_copy", out / "fig_mixing_frac_copy.png")
        figures.mixing_throughput(mixing, "median_ms", out / "fig_mixing_time.png")
        section.blocks += [
            Figure(
                "fig_mixing_frac_copy.png",
                "fraction of copy bandwidth vs size",
                "Effective bandwidth (2 × bytes of x per in-place mix) divided by the "
                "bandwidth of `y.copy_(x)` of the same size measured in the same run; "
                "dashed line = the copy, the physical limit of an in-place mix.",
            ),
            Figure(
                "fig_mixing_time.png",
                "median time vs size",
                "Median time per mixing step (log-log).",
            ),
        ]
    section.blocks.append(_mixing_table(mixing))
    return section


def _mixing_table(mixing: pd.DataFrame) -> Table:
    """op × impl rows, dtype columns: median fraction of copy bandwidth over the sizes
    (and its range); best per op and dtype in bold; unmeasured cells empty."""
    ok = mixing[mixing["status"] == "ok"]
    dtypes = figures.dtype_order(mixing)
    rank = {op: i for i, op in enumerate(figures.op_order(mixing))}
    keys = mixing[["op", "impl"]].drop_duplicates()
    keys = keys.sort_values(["op", "impl"], key=lambda c: c.map(rank) if c.name == "op" else c)
    keys = keys.reset_index(drop=True)
    frame = keys.rename(columns={"impl": "implementation"})
    # the op is named once, on the first row of its group
    frame["op"] = frame["op"].where(frame["op"] != frame["op"].shift(), "")
    marks = pd.DataFrame("", index=frame.index, columns=[*frame.columns, *dtypes])
    for dtype in dtypes:
        cells, medians = [], []
        for op, impl in keys.to_numpy():
            v = ok.loc[
                (ok["op"] == op) & (ok["impl"] == impl) & (ok["dtype"] == dtype), "frac_copy"
            ]
            medians.append(v.median() if len(v) else math.nan)
            cells.append(f"{v.median():.2f} ({v.min():.2f}–{v.max():.2f})" if len(v) else "")
        frame[dtype] = cells
        medians = pd.Series(medians)
        for op in keys["op"].unique():
            in_op = (keys["op"] == op).to_numpy()
            best = in_op & (medians == medians[in_op].max()).to_numpy()
            marks.loc[best, dtype] = "best"
    return Table(
        frame,
        "Fraction of copy bandwidth: median over sizes (min–max); best per op in bold",
        marks,
        "table_mixing.csv",
        label_columns=2,
    )


def _loss_section(loss: pd.DataFrame | None, meta: dict | None, out: Path) -> Section:
    section = Section("Loss: time and peak memory", level=3)
    if loss is None:
        reason = (meta or {}).get("loss_status") or "no loss.csv in the benchmark folder"
        section.blocks.append(Note(f"loss: {reason}."))
        return section
    section.blocks += _not_measured_notes(loss, "loss")
    loss.to_csv(out / "table_loss.csv", index=False)
    if (loss["status"] == "ok").any():
        figures.loss_bars(loss, "median_ms", out / "fig_loss_time.png")
        figures.loss_bars(loss, "peak_extra_over_logits", out / "fig_loss_memory.png")
        section.blocks += [
            Figure(
                "fig_loss_time.png", "loss time per implementation", "Median time, lower is better."
            ),
            Figure(
                "fig_loss_memory.png",
                "loss peak memory per implementation",
                "Peak memory beyond the inputs, relative to the size of the logits; "
                "dashed line = one logits-sized buffer (the gradient).",
            ),
        ]
    section.blocks.append(_loss_table(loss))
    return section


def _loss_table(loss: pd.DataFrame) -> Table:
    """impl rows, (B, C, dtype) columns: median time and peak extra memory; fastest in bold."""
    data = loss.assign(
        column=lambda d: (
            "B="
            + d["batch"].astype(str)
            + " C="
            + d["classes"].astype(str)
            + " "
            + d["dtype"].astype(str)
        )
    )
    impls = sorted(data["impl"].unique())
    rank = {d: i for i, d in enumerate(figures.dtype_order(data))}
    order = data.assign(rank=data["dtype"].map(rank)).sort_values(["rank", "classes"])
    columns = list(dict.fromkeys(order["column"]))
    frame = pd.DataFrame({"implementation": impls})
    marks = pd.DataFrame("", index=frame.index, columns=["implementation", *columns])
    for column in columns:
        part = data[(data["column"] == column) & (data["status"] == "ok")].set_index("impl")
        frame[column] = [
            f"{part.at[i, 'median_ms']:.2f} ms, {part.at[i, 'peak_extra_over_logits']:.2f}×"
            if i in part.index
            else ""
            for i in impls
        ]
        if len(part):
            fastest = part["median_ms"].idxmin()
            marks.loc[impls.index(fastest), column] = "best"
    return Table(
        frame,
        "Loss forward+backward: median time, peak extra memory (× logits); fastest in bold",
        marks,
        "table_loss.csv",
    )


# ---------------------------------------------------------------- equivalence


def equivalence_sections(equivalence: Equivalence | None, eq_path, out: Path) -> list[Section]:
    head = Section("Kernel equivalence")
    if equivalence is None:
        head.blocks.append(
            Note(
                f"no equivalence results at {eq_path}: run `make test` (the equivalence "
                "tests write reports/equivalence.json)."
            )
        )
        return [head]
    rows = equivalence.rows
    rows.to_csv(out / "table_equivalence_rows.csv", index=False)
    meta = equivalence.meta
    failed = rows[~rows["passed"]]
    head.blocks.append(
        Text(
            f"{len(rows)} comparisons against `mixlab.reference`, {len(failed)} failed. "
            f"Device {meta.get('device', '?')}, TRITON_INTERPRET={meta.get('triton_interpret')}, "
            f"torch {meta.get('torch', '?')}, {meta.get('machine', '?')}."
        )
    )
    if rows.empty:
        head.blocks.append(Note("the equivalence file holds no rows."))
        return [head]
    head.blocks.append(_equivalence_matrix(rows, out))
    if failed.empty:
        head.blocks.append(Text(f"All {len(rows)} comparisons are within tolerance."))
    else:
        listing = failed[["kernel", "backend", "dtype", "case", "max_err", "atol", "test"]].copy()
        listing["max_err"] = listing["max_err"].map(lambda e: f"{e:.3g}")
        listing["atol"] = listing["atol"].map(lambda e: f"{e:.3g}")
        head.blocks.append(Table(listing.reset_index(drop=True), "Failing comparisons"))
    return [head]


def _equivalence_matrix(rows: pd.DataFrame, out: Path) -> Table:
    """kernel × backend rows, dtype columns: passed/total and the worst max error."""
    keys = ["kernel", "backend", "dtype"]
    counts = rows.groupby(keys).agg(passed=("passed", "sum"), total=("passed", "size"))
    worst = rows.sort_values("max_err", na_position="first").groupby(keys).tail(1)
    worst = worst.set_index(keys)[["max_err", "atol"]]
    summary = counts.join(worst.rename(columns={"max_err": "worst_err", "atol": "atol_at_worst"}))
    summary = summary.reset_index()
    summary.to_csv(out / "table_equivalence.csv", index=False)
    dtypes = figures.dtype_order(summary)
    pairs = summary[["kernel", "backend"]].drop_duplicates().reset_index(drop=True)
    frame = pairs.copy()
    marks = pd.DataFrame("", index=frame.index, columns=[*pairs.columns, *dtypes])
    for dtype in dtypes:
        part = summary[summary["dtype"] == dtype].set_index(["kernel", "backend"])
        cells = []
        for i, key in enumerate(map(tuple, pairs.to_numpy())):
            if key not in part.index:
                cells.append("")
                continue
            r = part.loc[key]
            ok = r["passed"] == r["total"]
            cells.append(
                f"{'✓' if ok else '✗'} {r['passed']}/{r['total']}, "
                f"worst {r['worst_err']:.2g} (atol {r['atol_at_worst']:.2g})"
            )
            marks.loc[i, dtype] = "pass" if ok else "fail"
        frame[dtype] = cells
    return Table(
        frame,
        "Equivalence matrix: passed/total comparisons, the worst max |error| and its atol "
        "(a comparison passes within atol + rtol·|reference|, DESIGN.md §3)",
        marks,
        "table_equivalence.csv",
        label_columns=2,
    )
