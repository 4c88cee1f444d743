"""mixlab.native (the "torch" CPU backend) against mixlab.reference, and its build cache.

The walk's correctness rests on its decomposition (cycles x column tiles, docs/design.md
§3), so the cases force what could break it: fixed points (B=1, odd pairings),
one long cycle (roll), many tiles per row with ragged ends (tiny tiles, D not a multiple
of the vector width), and several threads splitting the tasks.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from mixlab import native, reference
from mixlab.native import build
from mixlab.permutations import PERMUTATION_KINDS, make_permutation
from mixlab.verify.tolerance import DTYPES as DTYPE_NAMES
from mixlab.verify.tolerance import TOLERANCE as TOLERANCES

DTYPES = tuple(DTYPE_NAMES.values())

# (B, D): B=1, 2, odd and ~1024 small rows; D=1, D not a multiple of a tile or of the
# vector width, D larger than a default tile (4096 float32 / 8192 half elements).
SHAPES = [(b, d) for b in (1, 2, 7) for d in (1, 300, 10007)] + [(1023, 1), (1023, 37)]
# "tiny" cuts rows into 64-element tiles: many tiles per row and per task set.
TILINGS = {"default": (native.TILE_BYTES, native.MIN_RUN_BYTES), "tiny": (256, 64)}


@pytest.fixture
def threaded(monkeypatch):
    """Use threads even for small inputs, so that tasks really are split between them."""
    monkeypatch.setattr(native, "PARALLEL_MIN_BYTES", 0)


def _compare(out, ref, dtype, record, kernel, case):
    tol = TOLERANCES[dtype]
    max_err = (out.float() - ref.float()).abs().max().item()
    passed = torch.allclose(out.float(), ref.float(), atol=tol, rtol=tol, equal_nan=True)
    record(
        kernel=kernel,
        backend="torch",
        dtype=dtype,
        case=case,
        max_err=max_err,
        atol=tol,
        passed=passed,
    )
    assert passed, f"{case} {dtype}: max error {max_err}"
    return max_err


def _tiling(monkeypatch, name: str) -> None:
    """Default tiles with the default thread policy (one thread for small inputs), or
    tiny tiles split between threads even for small inputs."""
    tile, run = TILINGS[name]
    monkeypatch.setattr(native, "TILE_BYTES", tile)
    monkeypatch.setattr(native, "MIN_RUN_BYTES", run)
    if name == "tiny":
        monkeypatch.setattr(native, "PARALLEL_MIN_BYTES", 0)


@pytest.mark.parametrize("tiling", TILINGS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_mix_matches_reference(dtype, tiling, monkeypatch, record_equivalence):
    _tiling(monkeypatch, tiling)
    gen = torch.Generator().manual_seed(0)
    cases = [(si, ki) for si in range(len(SHAPES)) for ki in range(len(PERMUTATION_KINDS))]
    for si, ki in cases:
        (batch, row_len), kind = SHAPES[si], PERMUTATION_KINDS[ki]
        # scalar and per-sample lam alternate, so every shape and every kind meets both
        lam_kind = ("scalar", "per-sample")[(si + ki) % 2]
        x = torch.randn(batch, row_len, generator=gen).to(dtype)
        perm = make_permutation(kind, batch, gen)
        lam = 0.3 if lam_kind == "scalar" else torch.rand(batch, generator=gen)
        expected = reference.mix(x, perm, lam)
        out = x.clone()
        native.mix_(out, perm, lam)
        case = f"B={batch} D={row_len} perm={kind} lam={lam_kind} tiles={tiling}"
        max_err = _compare(out, expected, dtype, record_equivalence, "mix", case)
        # Same float32 operations, no FMA contraction, round-to-nearest-even stores:
        # the walk reproduces the reference bit for bit, not just within tolerance.
        assert max_err == 0.0, case


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_mix_image_batch_with_more_threads_than_cores(dtype, threaded, record_equivalence):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(33, 3, 20, 21, generator=gen).to(dtype)
    perm = make_permutation("random", 33, gen)
    lam = torch.rand(33, generator=gen)
    before = torch.get_num_threads()
    torch.set_num_threads(5)
    try:
        out = x.clone()
        native.mix_(out, perm, lam)
    finally:
        torch.set_num_threads(before)
    case = "B=33 3x20x21 perm=random lam=per-sample threads=5"
    _compare(out, reference.mix(x, perm, lam), dtype, record_equivalence, "mix", case)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_mix_lam_one_is_identity_and_lam_zero_is_the_permuted_batch(dtype):
    x = torch.randn(9, 500).to(dtype)
    perm = make_permutation("random", 9, torch.Generator().manual_seed(2))
    out = x.clone()
    native.mix_(out, perm, 1.0)
    assert torch.equal(out, x)
    native.mix_(out, perm, 0.0)
    assert torch.equal(out, x[perm])


def test_mix_propagates_inf_and_nan_like_the_reference():
    x = torch.randn(6, 40)
    x[1, 3], x[4, 7], x[2, 0] = float("inf"), float("nan"), float("-inf")
    perm = make_permutation("roll", 6)
    for lam in (0.0, 0.5, 1.0):
        out = x.clone()
        native.mix_(out, perm, lam)
        torch.testing.assert_close(out, reference.mix(x, perm, lam), equal_nan=True)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda x, p: native.mix_(x, torch.tensor([0, 1, 9, 2]), 0.5), "perm: values"),
        (lambda x, p: native.mix_(x, torch.tensor([0, 1, -1, 2]), 0.5), "perm: values"),
        (lambda x, p: native.mix_(x, p.int(), 0.5), "perm"),
        (lambda x, p: native.mix_(x.transpose(1, 2), p, 0.5), "x: expected a contiguous"),
        (lambda x, p: native.mix_(x.double(), p, 0.5), "x: expected"),
        (lambda x, p: native.mix_(x, p, torch.rand(4, dtype=torch.float64)), "lam"),
        (lambda x, p: native.mix_(x, p, torch.rand(3)), "lam"),
        (lambda x, p: native.cutmix_(x, p, (0, 6, 0, 2)), "box"),
        (lambda x, p: native.cutmix_(x, p, (2, 1, 0, 2)), "box"),
        (lambda x, p: native.cutmix_(x.view(4, 75), p, (0, 1, 0, 1)), "x: CutMix"),
    ],
)
def test_bad_arguments_are_refused_before_any_write(call, message):
    x = torch.randn(4, 3, 5, 5)
    before = x.clone()
    with pytest.raises(ValueError, match=message):
        call(x, torch.tensor([1, 0, 3, 2]))
    assert torch.equal(x, before)


CUTMIX_SHAPES = [(1, 8, 8), (7, 3, 16, 13), (4, 2, 3, 9, 10), (1023, 1, 4, 5)]


def _boxes(height: int, width: int):
    return {
        "full": (0, height, 0, width),
        "pixel": (height - 1, height, 0, 1),
        "inner": (1, height - 2, 2, width - 1),
        "empty": (2, 2, 0, width),
    }


@pytest.mark.parametrize("tiling", TILINGS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_cutmix_matches_reference(dtype, tiling, monkeypatch, record_equivalence):
    _tiling(monkeypatch, tiling)
    gen = torch.Generator().manual_seed(3)
    for shape, kind in [(s, k) for s in CUTMIX_SHAPES for k in PERMUTATION_KINDS]:
        x = torch.randn(shape, generator=gen).to(dtype)
        perm = make_permutation(kind, shape[0], gen)
        for box_name, box in _boxes(shape[-2], shape[-1]).items():
            expected, _ = reference.cutmix(x, perm, box)
            out = x.clone()
            native.cutmix_(out, perm, box)
            case = f"{'x'.join(map(str, shape))} perm={kind} box={box_name} tiles={tiling}"
            _compare(out, expected, dtype, record_equivalence, "cutmix", case)
            assert torch.equal(out, expected), case  # a paste is exact


# ---- the build cache ---------------------------------------------------------------------


def test_cached_library_is_reused(tmp_path, monkeypatch):
    first = native.library_path(tmp_path)
    stat = first.stat()

    def no_rebuild(*args):
        raise AssertionError("the cached library was compiled again")

    monkeypatch.setattr(build, "_build", no_rebuild)
    second = native.library_path(tmp_path)
    assert second == first
    assert (second.stat().st_ino, second.stat().st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    # no temporary left behind: the library and its hash
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name, first.name + ".sha256"]


def test_other_flags_get_their_own_library(tmp_path, monkeypatch):
    default = native.library_path(tmp_path)
    monkeypatch.setattr(native, "CFLAGS", (*native.CFLAGS, "-DMIXLAB_TEST_VARIANT"))
    assert native.library_path(tmp_path) != default


# Each process imports torch first, then waits until both are ready, so that their
# first builds of the same library overlap.
RACE_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import torch
    from mixlab import native, reference
    ready = Path(sys.argv[1]) / "ready"
    ready.mkdir(exist_ok=True)
    (ready / sys.argv[2]).touch()
    while len(list(ready.iterdir())) < 2:
        time.sleep(0.01)
    x = torch.randn(64, 1000)
    perm = torch.randperm(64)
    out = x.clone()
    native.mix_(out, perm, 0.25)
    assert torch.equal(out, reference.mix(x, perm, 0.25))
    print(native.library_path())
    """
)


def test_concurrent_first_builds_do_not_race(tmp_path):
    cache = tmp_path / "cache"
    env = {**os.environ, "MIXLAB_CACHE_DIR": str(cache)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE_SCRIPT, str(tmp_path), name],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    assert outputs[0][0] == outputs[1][0]
    name = Path(outputs[0][0].strip()).name
    assert sorted(p.name for p in cache.iterdir()) == [name, name + ".sha256"]


def test_missing_compiler_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="C compiler"):
        native.library_path(tmp_path)


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86-64 instruction-set levels")
@pytest.mark.parametrize("march", ["x86-64", "x86-64-v3"])
def test_older_instruction_sets_match_reference(march, tmp_path, monkeypatch):
    """The AVX2/F16C and plain SSE2 code paths, which a CPU with AVX-512 never takes."""
    flags = tuple(f"-march={march}" if f == "-march=native" else f for f in native.CFLAGS)
    monkeypatch.setattr(native, "CFLAGS", flags)
    monkeypatch.setattr(native, "_library", native.bind(native.library_path(tmp_path)))
    _tiling(monkeypatch, "tiny")
    gen = torch.Generator().manual_seed(4)
    for dtype in DTYPES:
        x = torch.randn(7, 301, generator=gen).to(dtype)
        perm = make_permutation("random", 7, gen)
        lam = torch.rand(7, generator=gen)
        out = x.clone()
        native.mix_(out, perm, lam)
        assert torch.equal(out, reference.mix(x, perm, lam)), (march, dtype)
