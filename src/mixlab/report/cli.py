"""`mixlab report`: the comparison report of an ablation study, a benchmark run and the
kernel equivalence results, written as report.md, index.html, PNG figures and CSV
tables in one folder. A missing input is said in the report, never invented."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from mixlab.output import check_output_folder
from mixlab.report.formatting import kv_table
from mixlab.report.gpu_readiness import DEFAULT_PATH as READINESS_PATH
from mixlab.report.gpu_readiness import gpu_readiness_sections
from mixlab.report.load import Bench, Equivalence, Study, load_bench, load_equivalence, load_study
from mixlab.report.render import Section, to_html, to_markdown
from mixlab.report.sections.ablation import ablation_sections
from mixlab.report.sections.benchmark import benchmark_sections
from mixlab.report.sections.equivalence import equivalence_sections
from mixlab.studies import storage
from mixlab.studies.spec import SpecError, load_spec


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
    return Section("Inputs", [kv_table(rows)])
