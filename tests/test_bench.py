"""The benchmark harness: every peer does the reference's work, the sweep writes the
contract's files (benchmark results, docs/design.md §7), the regression gate fails
on a regression and only then, and bad options are named."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from mixlab import reference
from mixlab.benchmarks import compare, measure, options, sweep
from mixlab.benchmarks import loss as loss_bench
from mixlab.benchmarks.peers import (
    NO_CUDA,
    OPS,
    PEERS,
    centered_box,
    effective_bytes,
    make_case,
)
from mixlab.benchmarks.status import Status
from mixlab.benchmarks.status import text as status_text

# A tiny even batch (timm needs one) whose labels all differ, so that the lambda timm
# and torchvision used can be read back from their soft targets.
SHAPE, BATCH = (3, 8, 10), 6
TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 3e-2}


def _tiny_case(dtype, device):
    case = make_case(SHAPE, BATCH, dtype, device, seed=7)
    labels = torch.arange(BATCH, device=device)
    return dataclasses.replace(case, labels=labels, num_classes=BATCH)


def _box_where_changed(before: torch.Tensor, after: torch.Tensor):
    """The rectangle (y0, y1, x0, x1) of pixels that differ in any image and channel."""
    changed = (before != after).flatten(0, -3).any(dim=0)
    if not changed.any():
        return 0, 0, 0, 0
    rows, cols = changed.any(dim=1).nonzero(), changed.any(dim=0).nonzero()
    return int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1


def test_registry_names_the_issue_peers():
    assert list(PEERS) == [
        "reference",
        "timm",
        "torchvision",
        "compile",
        "mixlab-torch",
        "mixlab-triton",
    ]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("impl", list(PEERS))
def test_peer_does_the_reference_work(impl, op, device):
    """Each peer, run as the benchmark runs it, leaves reference.mix / reference.cutmix of
    the permutation and lambda it used; peers that cannot run here say why."""
    peer = PEERS[impl]
    reason = peer.status(op, device, BATCH)
    if impl == "mixlab-triton" and device.type != "cuda":
        assert reason == NO_CUDA
        return
    if impl == "torchvision" and op == "mix_elem":
        assert reason.startswith("unsupported:")
        return
    assert reason is None
    dtypes = (torch.float32, torch.bfloat16) if op == "mix" else (torch.float32,)
    for dtype in dtypes:
        case = _tiny_case(dtype, device)
        before = case.x.clone()
        prepared = peer.build(op, case)
        assert torch.equal(case.x, before), "building a peer must not touch x"
        if prepared.setup:
            prepared.setup()
        prepared.call()
        out = prepared.result()
        assert (out.data_ptr() == case.x.data_ptr()) == prepared.in_place
        perm, lam = prepared.applied()
        if op == "cutmix":
            box = _box_where_changed(before, out)
            assert box[1] - box[0] > 0, "the box is empty: the check would prove nothing"
            assert lam == pytest.approx(reference.cutmix_lam(box, *before.shape[-2:]))
            expected, _ = reference.cutmix(before, perm, box)
            torch.testing.assert_close(out, expected, atol=0, rtol=0)
        else:
            if op == "mix_elem":
                assert lam.shape == (BATCH,) and not torch.all(lam == lam[0])
            else:
                assert 0.0 < lam < 1.0
            expected = reference.mix(before, perm, lam)
            tol = TOLERANCE[dtype]
            torch.testing.assert_close(out, expected, atol=tol, rtol=tol)


def test_repeated_calls_do_the_same_work(device):
    """The reseeding setup makes a stochastic peer draw the same lambda every call."""
    case = _tiny_case(torch.float32, device)
    prepared = PEERS["torchvision"].build("cutmix", case)
    lams = []
    for _ in range(3):
        prepared.setup()
        prepared.call()
        lams.append(prepared.applied()[1])
    assert lams[0] == lams[1] == lams[2]


def test_effective_bytes_count_a_copy():
    x = torch.empty(4, 3, 10, 10)
    assert effective_bytes("mix", x, 0.3) == 2 * x.numel() * 4
    box = centered_box(10, 10, 0.5)
    assert effective_bytes("cutmix", x, reference.cutmix_lam(box, *x.shape[-2:])) == pytest.approx(
        2 * 4 * 3 * (box[1] - box[0]) * (box[3] - box[2]) * 4
    )


# ------------------------------------------------------------------------ the sweep

TINY = ["--sizes", "4x3x8x8", "--dtypes", "float32", "--repeats", "3", "--row-seconds", "0.01"]
TINY_IMPLS = ["--impls", "reference,timm,mixlab-torch,mixlab-triton"]


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    sweep.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny sweep (the loss part stubbed: it has its own tests), and its output."""
    out = tmp_path_factory.mktemp("bench")
    calls = []

    def fake_loss_bench(device, cases, dtypes, repeats, progress):
        calls.append((device, cases, dtypes, repeats))
        row = dict.fromkeys(loss_bench.COLUMNS, 1.0)
        return pd.DataFrame([{**row, "impl": "stub", "status": "ok"}])

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("mixlab.benchmarks.loss.run_loss_bench", fake_loss_bench)
        rc = sweep.run(_args(*TINY, *TINY_IMPLS, "--quick", "--out", str(out)))
    return rc, out, calls


def test_sweep_writes_the_contract_files(tiny_run):
    rc, out, loss_calls = tiny_run
    assert rc == 0
    mixing = pd.read_csv(out / "mixing.csv")
    numbers = ["median_ms", "q25_ms", "q75_ms", "gbps", "samples_per_s", "copy_gbps", "frac_copy"]
    contract = ["op", "impl", "shape", "batch", "dtype", "device", *numbers, "status"]
    assert list(mixing.columns[: len(contract)]) == contract
    assert set(mixing["op"]) == set(OPS)
    assert (mixing["shape"] == "3x8x8").all() and (mixing["batch"] == 4).all()

    triton = mixing[mixing["impl"] == "mixlab-triton"]
    assert len(triton) == 3 and (triton["status"] == Status.NO_CUDA).all()
    assert status_text(Status.NO_CUDA, triton["reason"].iloc[0]) == NO_CUDA
    assert triton[numbers].isna().all().all()

    ok = mixing[mixing["status"] == "ok"]
    assert set(ok["impl"]) == {"reference", "timm", "mixlab-torch"}
    assert (ok[numbers] > 0).all().all()
    assert (ok["q25_ms"] <= ok["median_ms"]).all() and (ok["median_ms"] <= ok["q75_ms"]).all()
    mix = ok[ok["op"] != "cutmix"]
    x_bytes = 4 * 3 * 8 * 8 * 4
    assert mix["gbps"].to_numpy() == pytest.approx(2 * x_bytes / mix["median_ms"] / 1e6)
    assert ok["frac_copy"].to_numpy() == pytest.approx(ok["gbps"] / ok["copy_gbps"])

    loss = pd.read_csv(out / "loss.csv")
    # the loss bench's columns, with the status's reason beside it
    assert list(loss.columns.drop("reason")) == loss_bench.COLUMNS
    assert loss.columns.get_loc("reason") == loss.columns.get_loc("status") + 1
    assert loss["impl"].tolist() == ["stub"]
    [(device, cases, dtypes, _)] = loss_calls
    assert cases == options.QUICK_LOSS_CASES and dtypes == [torch.float32]

    meta = json.loads((out / "meta.json").read_text())
    for key in ("machine", "cpu", "cores", "torch", "triton", "device", "date", "git commit"):
        assert key in meta
    assert meta["args"]["impls"] == TINY_IMPLS[1]

    doc = json.loads((out / "benchmark.json").read_text())
    assert (doc["format"], doc["format_version"]) == ("mixlab-bench", 1)
    assert doc["meta"] == meta
    rows = pd.DataFrame(doc["mixing"])  # mixing.csv's rows, in its order
    text = [*compare.KEYS, "status", "reason", "pairing", "machine", "commit"]
    assert rows[text].fillna("").equals(mixing[text].fillna(""))
    assert rows["frac_copy"].to_numpy() == pytest.approx(mixing["frac_copy"], nan_ok=True)
    for row in doc["mixing"]:
        if row["status"] != "ok":
            assert "samples_ms" not in row and row["median_ms"] is None
            continue
        assert len(row["samples_ms"]) == len(row["copy_samples_ms"]) == row["rounds"] >= 3
        assert statistics.median(row["samples_ms"]) == pytest.approx(row["median_ms"])
    assert pd.DataFrame(doc["loss"])["impl"].tolist() == ["stub"]
    # --compare reads the JSON as it reads mixing.csv
    from_json = compare.load_results(out / "benchmark.json")
    assert from_json[compare.KEYS].equals(mixing[compare.KEYS])
    assert from_json["frac_copy"].to_numpy() == pytest.approx(mixing["frac_copy"], nan_ok=True)


def test_compare_fails_on_a_regression_and_only_then(tiny_run, tmp_path, capsys):
    _, out, _ = tiny_run
    saved = pd.read_csv(out / "mixing.csv")
    # A baseline far below anything measured now: no regression, whatever the noise.
    worse = saved.assign(frac_copy=saved["frac_copy"] / 100)
    # The same, but where mixlab-torch got 100x the share it gets now: its regression.
    better = worse.copy()
    torch_rows = better["impl"] == "mixlab-torch"
    better.loc[torch_rows, "frac_copy"] = saved.loc[torch_rows, "frac_copy"] * 100
    better.to_csv(tmp_path / "better.csv", index=False)
    (tmp_path / "worse").mkdir()
    worse.to_csv(tmp_path / "worse" / "mixing.csv", index=False)

    argv = [*TINY, *TINY_IMPLS, "--no-loss"]
    rc = sweep.run(
        _args(*argv, "--out", str(tmp_path / "a"), "--compare", str(tmp_path / "better.csv"))
    )
    printed = capsys.readouterr().out
    assert rc == 1
    table = printed.split("3 regression(s)")[1].strip().splitlines()[2:]  # after the header
    assert len(table) == 3 and all(" mixlab-torch " in line for line in table)

    rc = sweep.run(_args(*argv, "--out", str(tmp_path / "b"), "--compare", str(tmp_path / "worse")))
    assert rc == 0
    assert "no implementation's frac_copy fell" in capsys.readouterr().out


def test_regressions_threshold_is_relative():
    keys = dict(op="mix", impl="x", shape="3x8x8", batch=4, dtype="float32", device="cpu")
    base = pd.DataFrame([{**keys, "frac_copy": 0.50, "status": "ok"}])
    assert compare.regressions(base.assign(frac_copy=0.46), base, 0.10).empty
    assert len(compare.regressions(base.assign(frac_copy=0.44), base, 0.10)) == 1
    failed = base.assign(frac_copy=float("nan"), status="error: boom")
    assert compare.regressions(failed, base, 0.10)["status"].tolist() == ["error: boom"]
    with pytest.raises(ValueError, match="share no measured row"):
        compare.regressions(base.assign(device="cuda"), base, 0.10)


def test_a_call_over_the_time_budget_is_skipped_and_said(tmp_path):
    out = tmp_path / "slow"
    rc = sweep.run(
        _args(
            *TINY,
            "--impls",
            "reference",
            "--ops",
            "mix",
            "--max-call-s",
            "1e-9",
            "--no-loss",
            "--out",
            str(out),
        )
    )
    assert rc == 0
    [row] = pd.read_csv(out / "mixing.csv").itertuples()
    assert row.status == Status.NOT_MEASURED and math.isnan(row.median_ms)
    assert row.reason.startswith("one call took")


@pytest.mark.parametrize(
    "option, value, named",
    [
        ("--impls", "reference,numpy", "'numpy'"),
        ("--dtypes", "float64", "'float64'"),
        ("--sizes", "cifar,3x32x32", "'3x32x32'"),
        ("--sizes", "0x3x8x8", "'0x3x8x8'"),
        ("--ops", "mixup", "'mixup'"),
        ("--repeats", "0", "0"),
        ("--threshold", "1.5", "1.5"),
        ("--budget-s", "0", "0"),
        ("--compare", "/nonexistent/run", "/nonexistent/run"),
    ],
)
def test_bad_options_are_named_before_anything_is_written(tmp_path, option, value, named):
    out = tmp_path / "never"
    with pytest.raises(ValueError) as err:
        sweep.run(_args("--out", str(out), option, value))
    assert option in str(err.value) and named in str(err.value)
    assert not out.exists()


def test_the_pytest_benchmark_suite_measures_through_the_same_core(tmp_path):
    """bench/ times with pytest-benchmark but measures through mixlab.benchmarks.measure:
    its saved JSON holds mixing.csv's rows, which --compare reads as a baseline."""
    saved = tmp_path / "bench.json"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "bench/test_mixing_bench.py", "-q"),
            *("-p", "no:cacheprovider", "--benchmark-only", f"--benchmark-json={saved}"),
            *("--mix-sizes", "4x3x8x8", "--mix-dtypes", "float32"),
            *("-k", "reference or mixlab-torch"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[1],
        # not as an xdist worker, as this test may run in one (pytest-benchmark would then
        # disable itself)
        env={k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    doc = json.loads(saved.read_text())
    versions = doc["machine_info"]["mixlab"]["versions"]  # added through pytest-benchmark's hook
    assert versions["torch"] == importlib.metadata.version("torch")
    rows = compare.load_results(saved)
    assert sorted(set(rows["impl"])) == ["mixlab-torch", "reference"]
    assert set(rows["op"]) == set(OPS) and (rows["status"] == "ok").all()
    assert (rows["rounds"] >= 3).all()
    assert rows["frac_copy"].to_numpy() == pytest.approx(rows["gbps"] / rows["copy_gbps"])
    x_bytes = 4 * 3 * 8 * 8 * 4
    mix = rows[rows["op"] != "cutmix"]
    assert mix["gbps"].to_numpy() == pytest.approx(2 * x_bytes / mix["median_ms"] / 1e6)
    # the rates come from the very samples pytest-benchmark timed, not from a second run
    for bench in doc["benchmarks"]:
        assert bench["stats"]["rounds"] == bench["extra_info"]["rounds"]


def test_the_probe_forgives_a_slow_first_call_and_the_budget_sets_the_rounds():
    calls = []

    def once_slow():  # a one-time cost on the first call (a compilation, a native build)
        calls.append(None)
        time.sleep(0.3 if len(calls) == 1 else 0.001)

    cpu = torch.device("cpu")
    assert measure.probe_s(once_slow, None, cpu, max_call_s=0.1) < 0.1
    with pytest.raises(measure.TooSlow, match="over the --max-call-s budget of 1e-09 s"):
        measure.probe_s(lambda: time.sleep(0.001), None, cpu, max_call_s=1e-9)
    budget = measure.Budget(seconds=1.0, min_rounds=3, max_rounds=50)
    assert [budget.rounds(s) for s in (10.0, 0.1, 1e-6)] == [3, 10, 50]


def test_round_robin_takes_one_timed_call_of_each_per_round_each_beside_the_baseline():
    log = []
    calls = [lambda name=name: log.append(name) for name in ("a", "b", "c")]
    budget = measure.Budget(seconds=10.0, min_rounds=4, max_rounds=4)
    timed = measure.time_round_robin(calls, lambda: log.append("copy"), torch.device("cpu"), budget)
    assert [(fn.n, copy.n) for fn, copy in timed] == [(4, 4)] * 3
    rounds = log[-4 * 9 :]  # after the probes and the warm-up round
    # each timed call right after an untimed one of its own (settle=1)
    assert rounds == ["a", "a", "copy", "b", "b", "copy", "c", "c", "copy"] * 4
