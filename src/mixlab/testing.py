"""pytest helpers for kernel authors: mixlab's equivalence cases, in your own CI.

    import pytest
    from mixlab import testing

    @pytest.mark.parametrize("case", testing.equivalence_cases("mix_"))
    def test_my_mix_matches_the_reference(case):
        testing.check_equivalence(my_mix_, case)

    @pytest.mark.parametrize("case", testing.program_order_cases("mix_"))
    def test_my_mix_does_not_race(case):  # Triton kernels, with TRITON_INTERPRET=1
        testing.check_program_order(my_mix_, case)

An implementation has the signature of mixlab's function of the op (mixlab.verify.impls).
These are the cases and the checks of `mixlab verify`.
"""

from __future__ import annotations

from collections.abc import Callable

from mixlab.verify import races
from mixlab.verify.cases import MIXING_OPS, Case, gradcheck_cases
from mixlab.verify.cases import equivalence_cases as _cases
from mixlab.verify.impls import Impl
from mixlab.verify.matrix import failures
from mixlab.verify.runner import program_order_cases as _program_order_cases
from mixlab.verify.runner import run_one


def _params(cases: list[Case]) -> list:
    import pytest

    return [pytest.param(case, id=case.id) for case in cases]


def equivalence_cases(op: str, *, dtypes=None, quick: bool = True, gradcheck: bool = False):
    """pytest.param(Case) for every case of `op` (mix_, mix, cutmix_, mixup_cross_entropy,
    soft_cross_entropy); gradcheck adds the float64 cases of the losses."""
    cases = _cases(op, dtypes, quick)
    if gradcheck and op not in MIXING_OPS:
        cases += gradcheck_cases(op)
    return _params(cases)


def program_order_cases(op: str):
    """pytest.param(Case) for the cases `check_program_order` reruns in other orders."""
    return _params(_program_order_cases(op))


def _assert_passed(rows: list[dict], case: Case) -> None:
    failed = failures(rows)
    assert not failed, f"{case.id}:\n" + "\n".join(failed)


def check_equivalence(impl: Callable, case: Case, *, device="cpu") -> None:
    """Run `impl` on the case; AssertionError naming every failed comparison."""
    rows, note = run_one(Impl(case.op, getattr(impl, "__name__", "impl"), impl), case, None, device)
    assert note is None, note
    _assert_passed(rows, case)


def check_program_order(impl: Callable, case: Case, *, orders=races.ORDERS) -> None:
    """Rerun `impl`'s interpreted Triton launches in `orders` (mixlab.verify.races) and trace
    them for cross-program hazards; AssertionError naming what differs or races."""
    impl_ = Impl(case.op, getattr(impl, "__name__", "impl"), impl)
    rows = []
    for order in orders:
        new_rows, note = run_one(impl_, case, order, "cpu")
        assert note is None, note
        rows += new_rows
    _assert_passed(rows, case)
