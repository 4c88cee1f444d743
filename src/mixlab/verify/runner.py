"""Cases x implementations x dtypes, with progress, into the equivalence JSON's rows.

Where an implementation may launch Triton kernels and they run under the interpreter, a
few cases per op also run under mixlab.verify.races' schedules (reversed, shuffled, loads
before stores), and the forward run's trace is searched for cross-program hazards; the
kernel column then reads "<op> program order". Mixing kernels run there with cycles cut
into segments of at most 2 rows, the cross-program hand-over a GPU launch has (the
interpreter's default is whole cycles).
"""

from __future__ import annotations

import contextlib
import importlib
import sys

import torch
from tqdm.auto import tqdm

from mixlab.verify import races
from mixlab.verify.cases import MIXING_OPS, Case, equivalence_cases, gradcheck_cases
from mixlab.verify.checks import check_case
from mixlab.verify.impls import Impl

PROGRAM_ORDER_CASES = {
    "mix_": (
        "B=7 shape=3x4x25 perm=random lam=per-sample",
        "B=8 shape=300 perm=one-cycle lam=scalar",
        "B=8 shape=300 perm=pairs lam=per-sample",
    ),
    "cutmix_": ("B=7 shape=3x4x25 perm=random box=inside",),
    "mixup_cross_entropy": ("B=5 C=1000 sum lam=per-sample eps=0.1",),
    "soft_cross_entropy": ("B=5 C=1000 none inplace_backward",),
}


def program_order_cases(op: str) -> list[Case]:
    wanted = PROGRAM_ORDER_CASES.get(op, ())
    return [c for c in equivalence_cases(op, (torch.float32,), quick=True) if c.name in wanted]


def plan(impls: list[Impl], dtypes, quick: bool, program_order: bool) -> list[tuple]:
    """(impl, case, schedule order or None) for every run to make."""
    tasks = []
    for impl in impls:
        cases = equivalence_cases(impl.op, dtypes, quick)
        if impl.float64 and impl.op not in MIXING_OPS:
            cases += gradcheck_cases(impl.op)
        tasks += [(impl, case, None) for case in cases]
        if program_order and impl.triton:
            orders = races.ORDERS
            tasks += [(impl, c, o) for c in program_order_cases(impl.op) for o in orders]
    return tasks


@contextlib.contextmanager
def _gpu_like_segments(op: str):
    kernels = importlib.import_module("mixlab.kernels.mixing") if op in MIXING_OPS else None
    if not hasattr(kernels, "default_segment_rows"):
        yield
        return
    original = kernels.default_segment_rows
    kernels.default_segment_rows = lambda batch, n_blocks, device: 2
    try:
        yield
    finally:
        kernels.default_segment_rows = original


def _row(impl: Impl, case: Case, check: str, order: str | None, **result) -> dict:
    kernel = impl.op if order is None else f"{impl.op} program order"
    prefix = "" if order is None else f"{order}: "
    return {
        "kernel": kernel,
        "backend": impl.label,
        "dtype": case.dtype,
        "case": f"{prefix}{check} {case.name}",
        "test": "mixlab verify",
        **result,
    }


def run_one(impl: Impl, case: Case, order: str | None, device) -> tuple[list[dict], str | None]:
    """The rows of one run, and a note when the run does not apply."""
    trace = None
    try:
        if order is None:
            checked = check_case(case, impl.fn, device)
        else:
            with _gpu_like_segments(impl.op), races.schedule(order, seed=case.seed) as trace:
                checked = check_case(case, impl.fn, device)
    except Exception as err:  # a crash is a failed case, named, not the end of the run
        if case.dtype == torch.float64 and str(err).startswith("logits"):
            return [], f"{impl.op} {impl.label}: no float64 logits, gradcheck not run ({err})"
        detail = f"{type(err).__name__}: {err}".splitlines()[0][:300]
        row = _row(impl, case, "call", order, max_err=None, atol=0.0, passed=False)
        return [{**row, "detail": detail}], None
    if trace is not None and not trace.launches:
        return [], f"{impl.op} {impl.label}: no Triton launch seen, program-order check n/a"
    rows = [_row(impl, case, check, order, **vars(c)) for check, c in checked]
    if order == "forward":
        hazards = trace.hazards()
        row = _row(impl, case, "no cross-program hazard", "trace", max_err=0.0, atol=0.0)
        rows.append({**row, "passed": not hazards, **({"detail": hazards[0]} if hazards else {})})
    return rows, None


def run(impls: list[Impl], dtypes, quick: bool, device, program_order: bool, progress=True):
    """All rows, and the notes of runs that did not apply (each once)."""
    rows, notes = [], []
    tasks = plan(impls, dtypes, quick, program_order)
    bar = tqdm(tasks, desc="mixlab verify", unit="case", disable=not progress, file=sys.stderr)
    for impl, case, order in bar:
        bar.set_postfix_str(f"{impl.op} {impl.label}", refresh=False)
        new_rows, note = run_one(impl, case, order, device)
        rows += new_rows
        if note and note not in notes:
            notes.append(note)
    return rows, notes
