"""Implementations for tests/test_verify.py to pass to `mixlab verify --impl`: deliberately
wrong ones, which it must catch and name, and a controllable one for --compare."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

import mixlab


def _lam_rows(lam, x: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(lam, dtype=torch.float32).expand(x.shape[0]).contiguous()


def reads_overwritten_rows(x, perm, lam):
    """The textbook loop done in place: row i reads x[perm[i]] after that row may already
    have been overwritten (wrong for any permutation with a cycle longer than one)."""
    lam = _lam_rows(lam, x)
    for i in range(x.shape[0]):
        x[i] = (lam[i] * x[i].float() + (1 - lam[i]) * x[perm[i]].float()).to(x.dtype)
    return x


def ce_without_smoothing(
    logits, y_a, y_b, lam, *, label_smoothing=0.0, reduction="mean", inplace_backward=False
):
    """mixlab's loss with the label-smoothing term forgotten."""
    return mixlab.mixup_cross_entropy(
        logits, y_a, y_b, lam, reduction=reduction, inplace_backward=inplace_backward
    )


NOISE = 0.0  # tests set it: an error that grows while staying within tolerance, or not


def noisy_mix_(x, perm, lam):
    mixlab.mix_(x, perm, lam, backend="torch")
    return x.add_(NOISE)


@triton.jit
def _copy_then_mix_kernel(
    x_ptr, scratch_ptr, perm_ptr, lam_ptr, n_rows, row_len, BLOCK: tl.constexpr
):
    """Program 0 copies x to scratch; programs 1..B mix rows from scratch. Right when program 0
    runs first, as the interpreter runs it; a race on a GPU, where nothing orders programs."""
    pid = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    if pid == 0:
        for r in range(n_rows):
            for start in range(0, row_len, BLOCK):
                m = start + offs < row_len
                value = tl.load(x_ptr + r * row_len + start + offs, mask=m)
                tl.store(scratch_ptr + r * row_len + start + offs, value, mask=m)
    else:
        row = pid - 1
        partner = tl.load(perm_ptr + row)
        lam = tl.load(lam_ptr + row)
        for start in range(0, row_len, BLOCK):
            m = start + offs < row_len
            own = tl.load(scratch_ptr + row * row_len + start + offs, mask=m).to(tl.float32)
            other = tl.load(scratch_ptr + partner * row_len + start + offs, mask=m).to(tl.float32)
            out = lam * own + (1.0 - lam) * other
            tl.store(x_ptr + row * row_len + start + offs, out.to(x_ptr.dtype.element_ty), mask=m)


def racy_mix_(x, perm, lam):
    scratch = torch.zeros_like(x)
    batch = x.shape[0]
    row_len = x.numel() // batch
    _copy_then_mix_kernel[(batch + 1,)](
        x, scratch, perm, _lam_rows(lam, x), batch, row_len, BLOCK=256
    )
    return x


@triton.jit
def _masked_off_store_then_load_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    """Each program stores with its mask all off, then loads: a held-back store of no
    address must not disturb the load (races.schedule's loads-first order)."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(out_ptr + offs, tl.zeros((BLOCK,), tl.float32), mask=offs < 0)
    value = tl.load(x_ptr + offs, mask=offs < n)
    tl.store(out_ptr + offs, value * 2.0, mask=offs < n)


def masked_off_store_then_load(x):
    out = torch.zeros_like(x)
    _masked_off_store_then_load_kernel[(triton.cdiv(x.numel(), 16),)](x, out, x.numel(), BLOCK=16)
    return out
