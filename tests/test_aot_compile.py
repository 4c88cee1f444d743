"""Every kernel specialisation the wrappers launch compiles for sm_80, sm_90 and sm_100,
without spills and, for aligned inputs, with 128-bit global accesses in the main loops.

Compiled ahead of time by Triton (no GPU here) in a child process
(mixlab.gpu_readiness); the representative set: every mixing and plan specialisation,
the cross-entropy kernels at their smallest and largest blocks (bf16).
`python -m mixlab.gpu_readiness --full` compiles every dtype and block size. The table is
written to reports/gpu_readiness.json for `mixlab report`'s "GPU readiness" section.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mixlab.gpu_readiness import ARCHS, occupancy, readiness

REPO = Path(__file__).resolve().parents[1]
KERNELS = {"_walk_kernel", "_copy_heads_kernel", "_decompose_kernel"}
KERNELS |= {"_ce_fwd_kernel", "_ce_bwd_kernel"}


@pytest.fixture(scope="module")
def rows():
    rows = readiness()
    path = Path(os.environ.get("MIXLAB_GPU_READINESS_OUT", REPO / "reports/gpu_readiness.json"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=1))
    return rows


def test_every_kernel_compiles_for_every_arch(rows):
    assert {r["kernel"] for r in rows} == KERNELS
    for kernel in KERNELS:
        cases = {r["case"] for r in rows if r["kernel"] == kernel}
        for case in cases:
            archs = {r["arch"] for r in rows if r["kernel"] == kernel and r["case"] == case}
            assert archs == {f"sm_{a}" for a in ARCHS}, (kernel, case)
    assert all(r["registers"] > 0 for r in rows)  # ptxas -v was read


def test_no_register_spills(rows):
    spilled = [(r["kernel"], r["case"], r["arch"]) for r in rows if r["spill_bytes"]]
    assert spilled == []


def _vector_rows(rows):
    """Rows whose inputs allow 128-bit accesses: aligned, 16 bytes or more per thread.
    CutMix boxes (offsets per box row) and tiny cross-entropy blocks are only reported."""
    for r in rows:
        if "cutmix" in r["case"] or "C=16 " in r["case"]:
            continue
        yield r


def test_main_loops_use_128_bit_accesses(rows):
    checked = 0
    for r in _vector_rows(rows):
        where = (r["kernel"], r["case"], r["arch"])
        assert r["load_bits"] == 128, where
        if r["kernel"] != "_ce_fwd_kernel":  # the forward stores one loss per row
            assert r["store_bits"] == 128, where
        # Inside loops only the per-row lambda of a per-sample mix is a scalar access.
        allowed = 1 if r["flags"].get("PER_SAMPLE_LAM") else 0
        assert r["scalar_loop_accesses"] <= allowed, where
        checked += 1
    assert checked >= 3 * len(ARCHS) * 3  # mixing, heads and plan kernels at least


def test_occupancy_model():
    # 4 warps at 48 registers: 48*32 = 1536 per warp, 65536 / (1536*4) = 10 blocks.
    assert occupancy(48, 4, 0, 90) == 40 / 64
    assert occupancy(128, 16, 0, 80) == 16 / 64  # the registers hold one block
    assert occupancy(32, 4, 100_000, 80) == 4 / 64  # shared memory allows one block


def test_report_section_shows_every_row(rows, tmp_path):
    from mixlab.report.gpu_readiness import gpu_readiness_sections
    from mixlab.report.render import Note, Table

    path = tmp_path / "readiness.json"
    path.write_text(json.dumps(rows))
    [section] = gpu_readiness_sections(path, tmp_path)
    [table] = [b for b in section.blocks if isinstance(b, Table)]
    assert len(table.frame) == len(rows)
    for column in ("kernel", "arch", "registers", "spills (B)", "shared (B)", "occupancy"):
        assert column in table.frame.columns
    assert (tmp_path / "table_gpu_readiness.csv").exists()
    [missing] = gpu_readiness_sections(tmp_path / "none.json", tmp_path)
    assert isinstance(missing.blocks[0], Note)
