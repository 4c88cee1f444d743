"""`mixlab verify`, mixlab.testing and the program-order check (mixlab.verify).

The wrong implementations live in tests/verify_impls.py: verify must fail on each and name
the case; the racy Triton kernel passes in the interpreter's grid order and must be caught
by the program-order check.
"""

from __future__ import annotations

import json

import pytest
import torch
import verify_impls

from mixlab import cli, reference, testing
from mixlab.report.load import load_equivalence
from mixlab.verify import compare, races

F32 = ["--dtypes", "float32"]


def _verify(capsys, *argv) -> tuple[int, str]:
    rc = cli.main(["verify", "--no-progress", *argv])
    return rc, capsys.readouterr().out


def _rows(path) -> list[dict]:
    return json.loads(path.read_text())["rows"]


def test_verify_quick_passes_on_cpu_and_feeds_the_report(tmp_path, capsys):
    """`make test` runs the quick matrix of every backend; the JSON renders in the report."""
    out = tmp_path / "equivalence.json"
    rc = cli.main(["verify", "--quick", "--json", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    rows = _rows(out)
    assert rows and all(r["passed"] for r in rows)
    seen = {(r["kernel"], r["backend"]) for r in rows}
    for op in ("mix_", "mix", "cutmix_", "mixup_cross_entropy", "soft_cross_entropy"):
        assert {(op, "triton"), (op, "torch"), (op, "reference")} <= seen
    for op in ("mix_", "cutmix_", "mixup_cross_entropy", "soft_cross_entropy"):
        assert (f"{op} program order", "triton") in seen
    assert any(r["case"].startswith("trace: no cross-program hazard") for r in rows)
    assert any(r["dtype"] == "float64" and "gradcheck" in r["case"] for r in rows)
    assert "mix_ program order" in printed and "comparisons passed" in printed

    report = tmp_path / "report"
    assert cli.main(["report", "--equivalence", str(out), "--bench", str(tmp_path / "none"),
                     "--out", str(report)]) == 0  # fmt: skip
    markdown = (report / "report.md").read_text()
    assert "Equivalence matrix" in markdown and "mix_ program order" in markdown
    assert load_equivalence(out).rows["passed"].all()


def test_triton_imported_without_the_interpreter_reruns_in_a_fresh_process(tmp_path, monkeypatch):
    """As in `mixlab demo`, where the bench's torch.compile imported triton first: verify must
    still run triton on the CPU (interpreted), in a child process with TRITON_INTERPRET=1."""
    import sys

    assert "triton" in sys.modules
    monkeypatch.delenv("TRITON_INTERPRET")
    out = tmp_path / "eq.json"
    argv = ["verify", "--quick", "--no-progress", *F32, "--ops", "cutmix_", "--json", str(out)]
    assert cli.main(argv) == 0
    doc = json.loads(out.read_text())
    assert doc["triton_interpret"] == "1"
    assert {r["kernel"] for r in doc["rows"]} == {"cutmix_", "cutmix_ program order"}
    assert any(r["backend"] == "triton" for r in doc["rows"])


def test_mix_reading_overwritten_rows_fails_with_the_case_named(capsys):
    impl = "verify_impls:reads_overwritten_rows"
    rc, out = _verify(capsys, "--quick", *F32, "--impl", f"mix_={impl}")
    assert rc == 1
    assert f"FAIL mix_ [{impl}] float32 result B=8 shape=300 perm=flip lam=scalar" in out
    # Fixed points and B = 1 have nothing to overwrite: those cases pass.
    assert "perm=identity" not in "".join(line for line in out.splitlines() if "FAIL" in line)


def test_loss_missing_the_smoothing_term_fails_on_smoothed_cases_only(capsys):
    impl = "verify_impls:ce_without_smoothing"
    rc, out = _verify(capsys, "--quick", *F32, "--impl", f"mixup_cross_entropy={impl}")
    assert rc == 1
    failed = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert (
        f"FAIL mixup_cross_entropy [{impl}] float32 fwd B=5 C=10 sum lam=per-sample eps=0.1" in out
    )
    assert failed and all("eps=0.1" in line for line in failed)


def test_racy_triton_kernel_passes_in_grid_order_and_fails_the_program_order_check(
    tmp_path, capsys
):
    impl = "verify_impls:racy_mix_"
    out_json = tmp_path / "racy.json"
    rc, out = _verify(capsys, "--quick", *F32, "--impl", f"mix_={impl}", "--json", str(out_json))
    assert rc == 1
    rows = _rows(out_json)
    assert all(r["passed"] for r in rows if r["kernel"] == "mix_")  # the interpreter's order
    order_rows = [r for r in rows if r["kernel"] == "mix_ program order"]
    for schedule in ("reversed", "shuffled", "loads-first"):
        assert any(r["case"].startswith(schedule) and not r["passed"] for r in order_rows)
    hazard = next(r for r in order_rows if r["case"].startswith("trace:"))
    assert not hazard["passed"]
    assert "scratch_ptr: " in hazard["detail"]
    assert "first scratch_ptr[0] written by program 0 and read by program 1" in hazard["detail"]


def test_trace_of_the_racy_kernel_names_the_race(device):
    x = torch.randn(5, 40)
    perm = torch.tensor([3, 0, 4, 1, 2])
    expected = reference.mix(x, perm, 0.25)
    for order, right in [("forward", True), ("reversed", False), ("loads-first", False)]:
        y = x.clone()
        with races.schedule(order) as trace:
            verify_impls.racy_mix_(y, perm, 0.25)
        assert torch.allclose(y, expected, atol=1e-6) == right, order
        (line,) = trace.hazards()
        assert line.startswith("_copy_then_mix_kernel (6 programs)")
        assert "read by one program and written by another" in line


@pytest.mark.parametrize("order", races.ORDERS)
def test_a_store_masked_off_entirely_is_traced_as_writing_nothing(device, order):
    x = torch.randn(40)
    with races.schedule(order) as trace:
        out = verify_impls.masked_off_store_then_load(x)
    assert torch.equal(out, x * 2)
    assert trace.hazards() == []


def test_mixlab_mix_kernel_has_no_hazard_when_cycles_are_segmented(device):
    """The segmented walk (GPU launches) hands rows across programs through copied heads:
    the trace of both launches must show no byte shared between programs."""
    import mixlab
    from mixlab.verify.runner import _gpu_like_segments

    x = torch.randn(9, 3, 50)
    perm = torch.roll(torch.arange(9), 1)
    expected = reference.mix(x, perm, 0.3)
    for order in races.ORDERS:
        y = x.clone()
        with _gpu_like_segments("mix_"), races.schedule(order, seed=1) as trace:
            mixlab.mix_(y, perm, 0.3, backend="triton")
        assert torch.equal(y, expected), order
        # decompose perm on the device, copy the chunks' heads, then walk
        kernels = [launch.kernel for launch in trace.launches]
        assert kernels == ["_decompose_kernel", "_copy_heads_kernel", "_walk_kernel"], kernels
        assert trace.hazards() == []


def test_compare_fails_on_an_error_that_grew_or_a_case_that_fails(tmp_path, capsys, monkeypatch):
    impl = ["--impl", "mix_=verify_impls:noisy_mix_", "--quick", *F32]
    before = tmp_path / "before.json"
    monkeypatch.setattr(verify_impls, "NOISE", 0.0)
    assert _verify(capsys, *impl, "--json", str(before))[0] == 0
    assert _verify(capsys, *impl, "--compare", str(before))[0] == 0  # nothing changed

    monkeypatch.setattr(verify_impls, "NOISE", 4e-6)  # within tolerance, but 40x the floor
    rc, out = _verify(capsys, *impl, "--compare", str(before))
    assert rc == 1 and "FAIL" not in out
    assert "REGRESSION mix_ verify_impls:noisy_mix_ float32 result B=1 shape=5" in out
    assert "past the factor 10" in out
    assert _verify(capsys, *impl, "--compare", str(before), "--factor", "100")[0] == 0

    monkeypatch.setattr(verify_impls, "NOISE", 1e-3)
    rc, out = _verify(capsys, *impl, "--compare", str(before))
    assert rc == 1 and "passed before, fails now" in out


def test_compare_regressions_rules():
    row = {"kernel": "k", "backend": "b", "dtype": "float32", "case": "c", "atol": 1e-5}
    was = [{**row, "max_err": 1e-6, "passed": True}]
    assert compare.regressions(was, [{**row, "max_err": 9e-6, "passed": True}]) == []
    assert compare.regressions(was, [{**row, "max_err": 1.1e-5, "passed": True}], 10.0)
    assert compare.regressions(was, [{**row, "max_err": 2e-6, "passed": False}])
    assert compare.regressions([{**was[0], "passed": False}], [{**row, "passed": False}]) == []
    assert compare.not_rerun(was, []) == 1


@pytest.mark.parametrize(
    "argv,name",
    [
        (["--impl", "mix_"], "--impl"),
        (["--impl", "nope=verify_impls:noisy_mix_"], "--impl"),
        (["--impl", "mix_=no_such_module_here:f"], "--impl"),
        (["--impl", "mix_=verify_impls:missing"], "--impl"),
        (["--compare", "/nonexistent/previous.json"], "--compare"),
        (["--device", "tpu"], "--device"),
        (["--factor", "0.5"], "--factor"),
    ],
)
def test_bad_arguments_are_named(argv, name):
    with pytest.raises(SystemExit, match=f"^{name}"):
        cli.main(["verify", "--quick", *argv])


# ---- mixlab.testing: the pytest entry point for kernel authors ------------------------------


@pytest.mark.parametrize("case", testing.equivalence_cases("cutmix_", dtypes=[torch.float16]))
def test_testing_helpers_pass_mixlab_torch_path(case):
    import mixlab

    testing.check_equivalence(lambda x, p, box: mixlab.cutmix_(x, p, box, backend="torch"), case)


@pytest.mark.parametrize("case", testing.program_order_cases("mix_"))
def test_testing_program_order_passes_mixlab_triton(case):
    import mixlab

    testing.check_program_order(lambda x, p, lam: mixlab.mix_(x, p, lam, backend="triton"), case)


def test_testing_helpers_name_the_failing_case():
    (case,) = [
        c.values[0]
        for c in testing.equivalence_cases("mix_", dtypes=[torch.float32])
        if c.values[0].name == "B=7 shape=3x4x25 perm=roll lam=scalar"
    ]
    with pytest.raises(AssertionError, match="mix_ float32 B=7 shape=3x4x25 perm=roll"):
        testing.check_equivalence(verify_impls.reads_overwritten_rows, case)
    with pytest.raises(AssertionError, match="reversed: result"):
        testing.check_program_order(verify_impls.racy_mix_, case)
