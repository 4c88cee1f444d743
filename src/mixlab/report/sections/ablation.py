"""The report's ablation-study sections: headline, learning curves, arms, gains and
paired tests against the baselines, the win matrix and the study's provenance."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from mixlab.report import figures, stats
from mixlab.report.formatting import (
    axes_frame,
    empty_marks,
    kv_table,
    mean_ci,
    p_value,
    package_version,
    pct,
)
from mixlab.report.load import Study
from mixlab.report.render import Code, Figure, Note, Section, Table, Text
from mixlab.studies import storage

STATE_NAMES = {"COMPLETE": "complete", "FAIL": "failed", "RUNNING": "running"}
SIGNIFICANCE = stats.SIGNIFICANCE
# The baselines every arm is tested against: no mixup, and random sampling.
BASELINES = {"alpha": 0.0, "strategy": "random"}
BASELINE_NAMES = {"alpha": "no mixup (α = 0)", "strategy": "random sampling"}
MAX_WIN_MATRIX_ARMS = 20


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
        return [head, provenance(study)]
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
    sections.append(provenance(study))
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
    frame = axes_frame(arms, axes)
    frame["seeds"] = arms["n_seeds"].astype(str)
    frame["AULC (%)"] = [
        mean_ci(m, lo, hi)
        for m, lo, hi in arms[["aulc_mean", "aulc_ci_low", "aulc_ci_high"]].to_numpy()
    ]
    frame["final accuracy (%)"] = [
        mean_ci(m, lo, hi)
        for m, lo, hi in arms[
            ["final_accuracy_mean", "final_accuracy_ci_low", "final_accuracy_ci_high"]
        ].to_numpy()
    ]
    marks = empty_marks(frame)
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
    parts = [f"Best arm by mean AULC: {stats.arm_label(best, axes)} ({pct(best['aulc_mean'])}%)."]
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
    frame = axes_frame(tests, axes)
    frame["pairs"] = tests["n_pairs"].astype(str)
    frame["Δ AULC (pp)"] = [
        mean_ci(m, lo, hi, signed=True)
        for m, lo, hi in tests[["diff_mean", "diff_ci_low", "diff_ci_high"]].to_numpy()
    ]
    frame["test"] = tests["test"]
    frame["statistic"] = tests["statistic"].map(lambda s: "" if pd.isna(s) else f"{s:.2f}")
    frame["p"] = tests["p"].map(p_value)
    frame["p (Holm)"] = tests["p_holm"].map(p_value)
    marks = empty_marks(frame)
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


def provenance(study: Study) -> Section:
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
            f"{p} {package_version(p)}" for p in ("optuna", "pandas", "scipy", "seaborn")
        ),
    }
    blocks = [kv_table(items)]
    if "spec" in attrs:
        blocks.append(Code(json.dumps(attrs["spec"], indent=2, default=str), "the study spec"))
    return Section("Provenance of the study", blocks, level=3)
