"""`mixlab report` on synthetic inputs that follow the data contracts: an Optuna study
whose trials carry the params and user_attrs of docs/design.md §8, a benchmark folder (§7)
and an equivalence file (§4). The study's AULCs are built so that every
expected number (paired gains, signs, win fractions) is known by hand."""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from mixlab.report import cli as report_cli
from mixlab.report import load, stats
from mixlab.report.render import to_markdown
from mixlab.report.sections import ablation
from mixlab.studies import storage

STRATEGIES = ("random", "entropy")
ALPHAS = (0.0, 0.4, 1.0)
BUDGETS = (20, 40)
SEEDS = (0, 1, 2)
# Mixup effect on AULC by alpha: 0.4 helps, 1.0 hurts; far larger than the noise.
ALPHA_EFFECT = {0.0: 0.0, 0.4: 0.03, 1.0: -0.02}
SEED_SHIFT = {0: 0.01, 1: -0.01, 2: 0.004}  # shared by every arm: pairing cancels it
MISSING = ("entropy", 0.4, 40, 2)  # one arm lacks seed 2 (its trial failed)
ROUNDS = 4


def synthetic_aulc() -> dict:
    rng = np.random.default_rng(1234)
    values = {}
    for s in STRATEGIES:
        for a in ALPHAS:
            for b in BUDGETS:
                for seed in SEEDS:
                    base = 0.6 + 0.05 * (s == "entropy") + 0.02 * (b == 40)
                    noise = rng.uniform(-0.003, 0.003)
                    values[(s, a, b, seed)] = base + ALPHA_EFFECT[a] + SEED_SHIFT[seed] + noise
    del values[MISSING]
    return values


AULC = synthetic_aulc()


def mixlab_report(argv: list[str]) -> int:
    """`mixlab report ARGV` through the subcommand's own parser and entry point."""
    parser = argparse.ArgumentParser(prog="mixlab report")
    report_cli.add_arguments(parser)
    return report_cli.run(parser.parse_args(argv))


def _trial(strategy, alpha, budget, seed, aulc) -> optuna.trial.FrozenTrial:
    sizes = [budget + 10 * r for r in range(ROUNDS + 1)]
    accuracy = [aulc - 0.06 + 0.03 * r for r in range(ROUNDS + 1)]
    config = {
        "dataset": "digits",
        "model": "mlp",
        "alpha": alpha,
        "initial_budget": budget,
        "query_size": 10,
        "rounds": ROUNDS,
        "strategy": strategy,
        "mixup_mode": "batch",
        "seed": seed,
        "epochs": 5,
    }
    params = {"strategy": strategy, "alpha": alpha, "initial_budget": budget, "seed": seed}
    distributions = {
        "strategy": optuna.distributions.CategoricalDistribution(STRATEGIES),
        "alpha": optuna.distributions.CategoricalDistribution(ALPHAS),
        "initial_budget": optuna.distributions.CategoricalDistribution(BUDGETS),
        "seed": optuna.distributions.CategoricalDistribution(SEEDS),
    }
    return optuna.trial.create_trial(
        params=params,
        distributions=distributions,
        value=aulc,
        user_attrs={
            "config": config,
            "labeled_sizes": sizes,
            "test_accuracy": accuracy,
            "test_loss": [1.0 - a for a in accuracy],
            "aulc": aulc,
            "final_accuracy": accuracy[-1],
            "wall_s": 1.5,
        },
    )


def make_study(storage, name: str = "synthetic", keep=lambda key: True) -> None:
    """The synthetic study; `keep(strategy, alpha, budget, seed)` selects its trials."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    study.set_user_attr("spec", {"name": name, "axes": {"alpha": list(ALPHAS)}})
    study.set_user_attr("spec_path", "ablations/synthetic.toml")
    study.set_user_attr("objective", "aulc")
    study.set_user_attr("mixlab_version", "0.1.0")
    study.set_user_attr("torch_version", "2.14.1")
    study.set_user_attr("machine", "test machine")
    for key, v in AULC.items():
        if keep(key):
            study.add_trial(_trial(*key, v))
    failed = _trial(*MISSING, 0.5)
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.FAIL,
            params=failed.params,
            distributions=failed.distributions,
            user_attrs={"error": "synthetic failure"},
        )
    )


def make_bench(folder: Path) -> Path:
    folder.mkdir(parents=True)
    rows = []
    for impl in ("reference", "mixlab-torch", "mixlab-triton"):
        for shape, batch in (("3x32x32", 128), ("3x32x32", 1024), ("3x224x224", 32)):
            for dtype in ("float32", "bfloat16"):
                ok = impl != "mixlab-triton"
                frac = {"reference": 0.05, "mixlab-torch": 0.85}.get(impl, math.nan)
                ms = 10.0 / frac if ok else math.nan
                rows.append(
                    {
                        "op": "mix",
                        "impl": impl,
                        "shape": shape,
                        "batch": batch,
                        "dtype": dtype,
                        "device": "cpu",
                        "median_ms": ms,
                        "q25_ms": ms * 0.9,
                        "q75_ms": ms * 1.1,
                        "gbps": 8 * frac,
                        "samples_per_s": batch / ms * 1e3,
                        "copy_gbps": 8.0 if ok else math.nan,
                        "frac_copy": frac,
                        "status": "ok" if ok else "not measured: no CUDA device",
                    }
                )
    unsupported = {**rows[0], "impl": "timm", "status": "unsupported: odd batch"}
    rows.append(unsupported | {k: math.nan for k in ("median_ms", "gbps", "frac_copy")})
    pd.DataFrame(rows).to_csv(folder / "mixing.csv", index=False)
    loss_rows = []
    peers = (("dense_reference", 30.0, 3.2), ("mixlab-torch", 12.0, 1.05), ("mixlab-triton", 0, 0))
    for impl, ms, mem in peers:
        for batch, classes in ((1024, 1000), (256, 32000)):
            ok = impl != "mixlab-triton"
            loss_rows.append(
                {
                    "impl": impl,
                    "batch": batch,
                    "classes": classes,
                    "dtype": "float32",
                    "device": "cpu",
                    "median_ms": ms if ok else math.nan,
                    "q25_ms": ms if ok else math.nan,
                    "q75_ms": ms if ok else math.nan,
                    "peak_extra_mb": mem * batch * classes * 4 / 1e6 if ok else math.nan,
                    "peak_extra_over_logits": mem if ok else math.nan,
                    "status": "ok" if ok else "not measured: no CUDA device",
                }
            )
    pd.DataFrame(loss_rows).to_csv(folder / "loss.csv", index=False)
    meta = {
        "machine": "test",
        "cpu": "x86",
        "cores": 2,
        "torch": "2.14.1",
        "triton": "3.8",
        "device": "cpu",
        "date": "2026-01-01",
        "git commit": "abc",
        "args": {},
    }
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


def make_equivalence(path: Path) -> Path:
    rows = []
    for kernel in ("mix", "mixup_ce"):
        for backend in ("triton", "torch"):
            for dtype, atol in (("torch.float32", 1e-5), ("torch.bfloat16", 1e-2)):
                for case in ("B=1 D=3", "B=7 D=300"):
                    err = atol / 10
                    passed = True
                    if (kernel, backend, dtype, case) == (
                        "mixup_ce",
                        "triton",
                        "torch.bfloat16",
                        "B=7 D=300",
                    ):
                        err, passed = 0.5, False
                    rows.append(
                        {
                            "kernel": kernel,
                            "backend": backend,
                            "dtype": dtype,
                            "case": case,
                            "max_err": err,
                            "atol": atol,
                            "passed": passed,
                            "test": f"tests/test_x.py::{kernel}",
                        }
                    )
    doc = {
        "device": "cpu",
        "triton_interpret": "1",
        "torch": "2.14.1",
        "machine": "test",
        "rows": rows,
    }
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("report_inputs")
    storage = f"sqlite:///{root / 'study.db'}"
    make_study(storage)
    return {
        "storage": storage,
        "bench": make_bench(root / "bench"),
        "equivalence": make_equivalence(root / "equivalence.json"),
        "root": root,
    }


@pytest.fixture(scope="module")
def report(inputs) -> Path:
    out = inputs["root"] / "report"
    argv = ["--storage", inputs["storage"], "--study", "synthetic"]
    argv += ["--bench", str(inputs["bench"]), "--equivalence", str(inputs["equivalence"])]
    assert mixlab_report([*argv, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def trials(inputs) -> pd.DataFrame:
    return load.load_study("synthetic", inputs["storage"]).trials


# ------------------------------------------------------------------ loading


def test_study_loads_complete_trials_with_their_curves(inputs):
    study = load.load_study(None, inputs["storage"])  # the storage's only study
    assert study.name == "synthetic"
    assert len(study.trials) == len(AULC)
    assert study.state_counts == {"COMPLETE": len(AULC), "FAIL": 1}
    assert len(study.curves) == len(AULC) * (ROUNDS + 1)
    # axes the spec held fixed come from the trial's config
    assert set(study.trials["query_size"]) == {10}
    assert set(study.trials["mixup_mode"]) == {"batch"}
    assert study.settings["dataset"] == "digits"
    row = study.trials.set_index(["strategy", "alpha", "initial_budget", "seed"])
    assert row.loc[("entropy", 0.4, 20, 1), "aulc"] == pytest.approx(AULC[("entropy", 0.4, 20, 1)])


def test_journal_file_storage_loads(tmp_path):
    path = tmp_path / "study.log"
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    make_study(storage, name="journal")
    study = load.load_study("journal", str(path))
    assert len(study.trials) == len(AULC)


def test_spec_names_the_study_and_its_default_storage(tmp_path, monkeypatch):
    """`--spec` reads the study where `mixlab ablate SPEC` (no --storage) writes it."""
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "synthetic_spec.toml"
    spec.write_text(
        'name = "synthetic_spec"\ndataset = "digits"\nmodel = "mlp"\n'
        '[axes]\nstrategy = ["random", "entropy"]\nalpha = [0.0, 0.4, 1.0]\n'
        "initial_budget = [20, 40]\nseed = [0, 1, 2]\n"
    )
    url = storage.default_url("synthetic_spec")
    make_study(storage.open_storage(url, create=True), "synthetic_spec")
    assert mixlab_report(["--spec", str(spec), "--out", "out"]) == 0
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Ablation study: synthetic_spec" in md
    assert f"| storage | {url} |" in md


def test_bad_spec_is_an_error_naming_spec(tmp_path, capsys):
    spec = tmp_path / "bad.toml"
    spec.write_text('name = "bad"\nunknown_key = 1\n')
    assert mixlab_report(["--spec", str(spec), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "--spec" in err and "unknown_key" in err
    assert not (tmp_path / "out").exists()


def test_unknown_study_is_an_error_naming_study_before_writing(inputs, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--storage", inputs["storage"], "--study", "nope", "--out", str(out)]
    assert mixlab_report(argv) == 2
    err = capsys.readouterr().err
    assert "--study" in err and "nope" in err and "synthetic" in err
    assert not out.exists()


def test_missing_journal_file_is_an_error_naming_storage(tmp_path, capsys):
    argv = ["--storage", str(tmp_path / "none.log"), "--out", str(tmp_path / "out")]
    assert mixlab_report(argv) == 2
    assert "--storage" in capsys.readouterr().err
    assert not (tmp_path / "none.log").exists()


@pytest.mark.parametrize("broken", ["equivalence", "bench"])
def test_broken_input_file_is_an_error_naming_its_argument(tmp_path, capsys, broken):
    eq, bench = tmp_path / "eq.json", tmp_path / "bench"
    bench.mkdir()
    if broken == "equivalence":
        eq.write_text('{"rows": [')  # cut off mid-write
    else:
        pd.DataFrame({"op": ["mix"], "impl": ["reference"]}).to_csv(bench / "mixing.csv")
    out = tmp_path / "out"
    argv = ["--bench", str(bench), "--equivalence", str(eq), "--out", str(out)]
    assert mixlab_report(argv) == 2
    assert f"--{broken}:" in capsys.readouterr().err
    assert not out.exists()


def test_provenance_masks_the_storage_password():
    url = "postgresql+psycopg://mix:s3cret@db:5432/st"
    empty = pd.DataFrame(columns=[*load.AXES, "aulc"])
    text = to_markdown("t", [ablation.provenance(load.Study("s", url, empty, empty))])
    assert "postgresql+psycopg://mix:***@db:5432/st" in text and "s3cret" not in text


# ------------------------------------------------------------------ statistics


def test_t_interval_matches_scipy():
    values = [0.61, 0.65, 0.6, 0.66]
    expected = scipy_stats.t.interval(
        0.95, len(values) - 1, loc=np.mean(values), scale=scipy_stats.sem(values)
    )
    assert stats.t_interval(values) == pytest.approx(expected)
    assert all(math.isnan(v) for v in stats.t_interval([0.5]))


def test_arm_table_has_every_arm(trials):
    axes = stats.arm_axes(trials)
    assert axes == ["strategy", "alpha", "initial_budget"]
    arms = stats.summarise_arms(trials, axes)
    assert len(arms) == len(STRATEGIES) * len(ALPHAS) * len(BUDGETS)
    seeds = arms.set_index(axes)["n_seeds"]
    assert seeds.loc[MISSING[:3]] == 2
    assert (seeds.drop(MISSING[:3]) == 3).all()
    mean = arms.set_index(axes).loc[("random", 1.0, 20), "aulc_mean"]
    assert mean == pytest.approx(np.mean([AULC[("random", 1.0, 20, s)] for s in SEEDS]))


def test_gain_over_alpha0_is_the_mean_of_seed_paired_differences(trials):
    axes = ["strategy", "alpha", "initial_budget"]
    gains = stats.paired_tests(trials, axes, "alpha", 0).set_index(axes)
    assert len(gains) == len(STRATEGIES) * (len(ALPHAS) - 1) * len(BUDGETS)
    for (s, a, b), row in gains.iterrows():
        seeds = [seed for seed in SEEDS if (s, a, b, seed) in AULC]
        expected = np.mean([AULC[(s, a, b, seed)] - AULC[(s, 0.0, b, seed)] for seed in seeds])
        assert row["diff_mean"] == pytest.approx(expected, abs=1e-12)
        assert row["n_pairs"] == len(seeds)
        assert np.sign(row["diff_mean"]) == np.sign(ALPHA_EFFECT[a])
        assert row["test"] == "paired t"  # 2 or 3 pairs: too few for Wilcoxon
    # The arm missing seed 2 is paired on seeds 0, 1 only, which differs from the
    # difference of its unpaired means.
    unpaired = np.mean([AULC[(*MISSING[:3], s)] for s in (0, 1)]) - np.mean(
        [AULC[("entropy", 0.0, 40, s)] for s in SEEDS]
    )
    assert gains.loc[MISSING[:3], "diff_mean"] != pytest.approx(unpaired, abs=1e-4)


def test_tests_against_random_pair_same_alpha_and_budget(trials):
    axes = ["strategy", "alpha", "initial_budget"]
    tests = stats.paired_tests(trials, axes, "strategy", "random")
    assert set(tests["strategy"]) == {"entropy"}
    assert len(tests) == len(ALPHAS) * len(BUDGETS)
    assert (tests["diff_mean"] > 0.04).all()  # entropy is built 0.05 better
    assert (tests["p_holm"] >= tests["p"]).all()
    assert tests["p_holm"].to_numpy() == pytest.approx(stats.holm(tests["p"]))


def test_holm_on_a_known_example():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, max(0.04*1, 0.06)=0.06
    assert stats.holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    adjusted = stats.holm([0.02, math.nan, 0.4])  # NaN is not part of the family
    assert adjusted[0] == pytest.approx(0.04) and adjusted[2] == pytest.approx(0.4)
    assert math.isnan(adjusted[1])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_paired_test_chooses_wilcoxon_when_it_can_reach_significance():
    diffs = [0.01, 0.02, 0.015, 0.03, 0.012, 0.018]
    name, statistic, p = stats.paired_test(diffs)
    assert name == "Wilcoxon signed-rank"
    assert p == pytest.approx(scipy_stats.wilcoxon(diffs).pvalue)
    assert p == pytest.approx(2 / 2**6)  # all positive: the exact test's smallest p
    name, _, p = stats.paired_test(diffs[:5])
    assert name == "paired t"
    assert p == pytest.approx(scipy_stats.ttest_1samp(diffs[:5], 0).pvalue)
    assert stats.paired_test([0.0, 0.0, 0.0])[2] == 1.0


def test_wilcoxon_only_where_it_could_survive_holm():
    # Smallest exact two-sided p is 2 / 2**n; Holm's first step compares it with 0.05 / m.
    assert stats.wilcoxon_min_pairs(1) == 6
    assert stats.wilcoxon_min_pairs(18) == 10  # 2/2**9 = 0.0039 > 0.05/18; 2/2**10 < it
    diffs = [0.01, 0.02, 0.015, 0.03, 0.012, 0.018]
    assert stats.paired_test(diffs, family_size=18)[0] == "paired t"
    assert stats.paired_test(diffs * 2, family_size=18)[0] == "Wilcoxon signed-rank"


def test_win_matrix(trials):
    axes = ["strategy", "alpha", "initial_budget"]
    matrix = stats.win_matrix(trials, axes)
    assert matrix.shape == (12, 12)
    best, worst = "entropy, α=0.4, budget=40", "random, α=1, budget=20"
    assert matrix.index[0] == best and matrix.index[-1] == worst
    assert matrix.loc[best, worst] == 1.0 and matrix.loc[worst, best] == 0.0
    values = matrix.to_numpy()
    off = ~np.eye(12, dtype=bool)
    assert values[off] + values.T[off] == pytest.approx(np.ones(off.sum()))
    assert np.isnan(np.diag(values)).all()


# ------------------------------------------------------------------ the written report


def test_report_files_are_written(report):
    for name in (
        "report.md",
        "index.html",
        "table_arms.csv",
        "table_gain_over_alpha0.csv",
        "table_tests_vs_alpha_0.csv",
        "table_tests_vs_strategy_random.csv",
        "table_win_matrix.csv",
        "table_mixing.csv",
        "table_loss.csv",
        "table_equivalence.csv",
        "fig_learning_curves.png",
        "fig_gain_over_alpha0.png",
        "fig_win_matrix.png",
        "fig_mixing_frac_copy.png",
        "fig_mixing_time.png",
        "fig_loss_time.png",
        "fig_loss_memory.png",
    ):
        assert (report / name).is_file(), name
        assert (report / name).stat().st_size > 0, name
    # the heatmap's table: one cell per (strategy, α ≠ 0, budget), the seed-paired mean
    gains = pd.read_csv(report / "table_gain_over_alpha0.csv")
    assert len(gains) == len(STRATEGIES) * (len(ALPHAS) - 1) * len(BUDGETS)
    for row in gains.itertuples():
        key = (row.strategy, row.alpha, row.initial_budget)
        seeds = [seed for seed in SEEDS if (*key, seed) in AULC]
        diffs = [
            AULC[(*key, seed)] - AULC[(row.strategy, 0.0, row.initial_budget, seed)]
            for seed in seeds
        ]
        assert row.diff_mean == pytest.approx(np.mean(diffs), abs=1e-12)


def test_html_is_self_contained_and_every_image_exists(report):
    page = (report / "index.html").read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    assert len(images) == 7
    for src in images:
        assert not src.startswith(("/", "http:", "https:", "file:"))
        assert (report / src).is_file(), src
    links = re.findall(r'href="([^"]+)"', page)
    assert {"table_arms.csv", "table_gain_over_alpha0.csv", "table_win_matrix.csv"} <= set(links)
    for href in links:
        assert (report / href).is_file(), href
    assert "<script" not in page.lower()
    assert not re.search(r'(src|href)="(https?:)?//', page)
    md = (report / "report.md").read_text()
    assert re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md) == images


def test_report_content(report):
    md = (report / "report.md").read_text()
    page = (report / "index.html").read_text()
    # best arm bold in both renderings; its AULC = the built best arm's mean
    best = np.mean([AULC[("entropy", 0.4, 40, s)] for s in (0, 1)])
    assert f"**{100 * best:.1f} ±" in md
    assert f'<td class="best">{100 * best:.1f} ±' in page
    assert "no CUDA: Triton throughput not measured" in md
    assert "no CUDA: Triton loss not measured" in md
    # the triton row of the mixing table: both dtype cells empty
    assert "|  | mixlab-triton |  |  |" in md  # op named on its first row only
    assert "timm: unsupported: odd batch (1 row left empty)" in md
    # equivalence: counts per cell and the failing row listed
    assert "✓ 2/2, worst 1e-06" in md and "✗ 1/2, worst 0.5" in md
    assert "Failing comparisons" in md and "0.5" in md
    assert "16 comparisons against `mixlab.reference`, 1 failed" in md
    # provenance
    assert "ablations/synthetic.toml" in md and "test machine" in md
    assert "0, 1, 2" in md
    assert "no ablation study given" not in md
    # headline: the built best arm, and every α=0.4 arm better, every α=1 arm worse
    assert "Best arm by mean AULC: entropy, α=0.4, budget=40" in md
    gains = pd.read_csv(report / "table_tests_vs_alpha_0.csv")
    better = int(((gains["p_holm"] < 0.05) & (gains["diff_mean"] > 0)).sum())
    worse = int(((gains["p_holm"] < 0.05) & (gains["diff_mean"] < 0)).sum())
    assert better + worse > 0
    assert f"no mixup (α = 0): {better} of 8 arms significantly better, {worse} significantly" in md
    assert ((gains["diff_mean"] > 0) == (gains["alpha"] == 0.4)).all()


def test_missing_parts_are_said_not_invented(tmp_path):
    out = tmp_path / "report"
    argv = [
        "--bench",
        str(tmp_path / "no_bench"),
        "--equivalence",
        str(tmp_path / "no.json"),
        "--out",
        str(out),
    ]
    assert mixlab_report(argv) == 0
    md = (out / "report.md").read_text()
    assert "no ablation study given" in md
    assert f"no benchmark results in {tmp_path / 'no_bench'}" in md
    assert "run `make test`" in md
    assert not list(out.glob("*.png"))
    assert "<img" not in (out / "index.html").read_text()


@pytest.mark.parametrize(
    ("keep", "says"),
    [
        (lambda k: False, ["study partial has no complete trials yet"]),
        (lambda k: k[3] == 0, ["every arm has a single seed"]),
        (
            lambda k: k[0] == "entropy" and k[1] != 0.0,
            ["no random-sampling arm in the study", "no α = 0 arm in the study"],
        ),
    ],
    ids=["no-complete-trials", "one-seed", "no-baselines"],
)
def test_partial_study_is_reported_with_what_is_missing(tmp_path, keep, says):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    make_study(storage, "partial", keep)
    out = tmp_path / "report"
    argv = ["--storage", storage, "--bench", str(tmp_path / "none"), "--out", str(out)]
    assert mixlab_report(argv) == 0
    md = (out / "report.md").read_text()
    assert all(message in md for message in says)
    for src in re.findall(r'<img src="([^"]+)"', (out / "index.html").read_text()):
        assert (out / src).is_file()


def test_a_second_run_removes_stale_figures(tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    (out / "fig_old.png").write_bytes(b"x")
    argv = ["--bench", str(tmp_path / "none"), "--out", str(out)]
    assert mixlab_report(argv) == 0
    assert not (out / "fig_old.png").exists()
