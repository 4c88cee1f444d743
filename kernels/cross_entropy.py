"""Fused soft-label cross-entropy: Triton kernels and their launch wrappers (docs/design.md §3).

Per row i, with z the logits, lse_i = log sum_c exp(z_ic) and a soft target t_i:

    loss_i = sum_c t_ic * (lse_i - z_ic) = lse_i * sum_c t_ic - sum_c t_ic * z_ic
    dloss_i / dz_ic = exp(z_ic - lse_i) * sum_c t_ic - t_ic

For mixup the target is sparse, t = (1 - eps)(lam * onehot(y_a) + (1 - lam) * onehot(y_b)) + eps/C,
so sum_c t_ic = 1 and sum_c t_ic z_ic = (1 - eps)(lam z[y_a] + (1 - lam) z[y_b]) + eps/C sum_c z_ic:
the (B, C) target is never built. Dense targets (`soft_ce_*`) take the same two sweeps.

Sweep 1 (forward, one program per row) streams the row once in blocks with an online
max/sum-exp and keeps lse_i (O(B)). Sweep 2 (backward, one program per row and column block)
reads the row again and writes (softmax - t) * g once, already scaled by the incoming
gradient g: three passes over the logits in all, where computing the gradient in the forward
and rescaling it in the backward takes five. The output buffer may be the logits themselves
(each element is read and then written by the same program); whether that is allowed is
decided by the caller (mixlab.losses), which tells autograd.

Style after flash-attention's flash_attn/ops/triton/cross_entropy.py (online softmax, row
offsets in int64, block sizes per pass); arithmetic in float32 whatever the logits' dtype.
"""

from __future__ import annotations

import contextlib
import functools

import torch
import triton
import triton.language as tl

MAX_BLOCK_FWD = 16 * 1024  # sweep 1 loops over the row: large blocks, few iterations
MAX_BLOCK_BWD = 4 * 1024  # sweep 2 spreads each row over programs: smaller blocks, more of them
MIN_BLOCK = 16  # tiny C (1, 3, 10) runs masked in one comfortably sized block


@triton.jit
def _weighted(w, z_rel):
    """w * z_rel, with 0 where the weight is 0: a class without target mass adds nothing even
    where its logit is -inf (0 * -inf is NaN), as in the reference."""
    return w * tl.where(w == 0.0, 0.0, z_rel)


@triton.jit
def _lam(lam_ptr, lam_stride, lam_value, row):
    """The row's lam: the float lam_value, or where it is NaN the tensor's (a float lam is
    checked in [0, 1] on the host, so NaN is free to mean "none")."""
    return tl.where(lam_value == lam_value, lam_value, tl.load(lam_ptr + row * lam_stride))


@triton.jit
def _ce_fwd_kernel(
    loss_ptr,
    lse_ptr,
    target_sum_ptr,  # dense targets only: sum_c t_ic, which the backward needs
    valid_ptr,  # sparse targets only: int32 flags (y_a, y_b, lam), cleared by a bad value
    logits_ptr,
    target_ptr,  # dense targets only
    y_a_ptr,
    y_b_ptr,
    y_a_stride,  # labels may be strided views, e.g. a column of a (B, 2) tensor
    y_b_stride,
    lam_ptr,
    lam_stride,  # 0 when one lam is broadcast over the batch
    lam_value,  # a float lam itself (no tensor to fill on the host); NaN: read lam_ptr
    smoothing,
    n_cols,
    logits_row_stride,
    target_row_stride,
    DENSE_TARGET: tl.constexpr,
    HAS_SMOOTHING: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    logits_ptr += row * logits_row_stride
    target_ptr += row * target_row_stride
    m = -float("inf")  # running max
    s = 0.0  # running sum of exp(z - m)
    # Target terms are summed relative to r, the first block's max: with a large common
    # offset in the logits (1e4 + randn) the loss is then not the difference of two large
    # numbers (lse - sum t z), which in float32 would lose ~1e-3 of an O(1) loss.
    r = 0.0
    t_dot_z = 0.0  # sum_c t_c (z_c - r)
    t_sum = 0.0
    z_sum = 0.0  # sum_c (z_c - r)
    for start in range(0, n_cols, BLOCK_C):
        cols = start + tl.arange(0, BLOCK_C)
        mask = cols < n_cols
        z = tl.load(logits_ptr + cols, mask=mask, other=-float("inf")).to(tl.float32)
        m_new = tl.maximum(m, tl.max(z, 0))
        # While every logit so far is -inf (a masked block), shift by 0: exp(-inf - -inf)
        # would be NaN where the answer is exp(-inf) = 0.
        m_shift = tl.where(m_new == -float("inf"), 0.0, m_new)
        s = s * tl.exp(m - m_shift) + tl.sum(tl.exp(z - m_shift), 0)
        m = m_new
        r = tl.where(start == 0, m_shift, r)
        if DENSE_TARGET:
            t = tl.load(target_ptr + cols, mask=mask, other=0.0).to(tl.float32)
            t_dot_z += tl.sum(_weighted(t, z - r), 0)
            t_sum += tl.sum(t, 0)
        elif HAS_SMOOTHING:
            z_sum += tl.sum(tl.where(mask, z - r, 0.0), 0)
    lse_rel = (m - r) + tl.log(s)  # lse - r
    if DENSE_TARGET:
        loss = lse_rel * t_sum - t_dot_z
        tl.store(target_sum_ptr + row, t_sum)
    else:
        lam = _lam(lam_ptr, lam_stride, lam_value, row)
        y_a = tl.load(y_a_ptr + row * y_a_stride)
        y_b = tl.load(y_b_ptr + row * y_b_stride)
        # The values are checked where they are read anyway (the caller asserts on the
        # flags: mixlab.device_checks); a bad label reads column 0 instead. NaN fails too.
        a_bad = (y_a < 0) | (y_a >= n_cols)
        b_bad = (y_b < 0) | (y_b >= n_cols)
        z_a = tl.load(logits_ptr + tl.where(a_bad, 0, y_a)).to(tl.float32) - r
        z_b = tl.load(logits_ptr + tl.where(b_bad, 0, y_b)).to(tl.float32) - r
        mass = 1.0 - smoothing
        loss = lse_rel - _weighted(mass * lam, z_a) - _weighted(mass * (1.0 - lam), z_b)
        if HAS_SMOOTHING:
            loss -= smoothing / n_cols * z_sum
    tl.store(loss_ptr + row, loss)
    # float64: the sum of two float32s is exact there, so the backward can split it into
    # float32 hi + lo and take z - hi exactly (see _ce_bwd_kernel).
    tl.store(lse_ptr + row, r.to(tl.float64) + lse_rel.to(tl.float64))
    if not DENSE_TARGET:  # last: the flags are no input of this program
        tl.store(valid_ptr, 0, mask=a_bad)
        tl.store(valid_ptr + 1, 0, mask=b_bad)
        tl.store(valid_ptr + 2, 0, mask=(lam != lam) | (lam < 0.0) | (lam > 1.0))


@triton.jit
def _ce_bwd_kernel(
    grad_ptr,  # may alias logits_ptr
    grad_loss_ptr,
    grad_loss_stride,  # 0 for a broadcast (mean/sum) incoming gradient
    logits_ptr,
    lse_ptr,
    target_sum_ptr,
    target_ptr,
    y_a_ptr,
    y_b_ptr,
    y_a_stride,
    y_b_stride,
    lam_ptr,
    lam_stride,
    lam_value,
    smoothing,
    n_cols,
    logits_row_stride,
    target_row_stride,
    DENSE_TARGET: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask = cols < n_cols
    g = tl.load(grad_loss_ptr + row * grad_loss_stride).to(tl.float32)
    z = tl.load(logits_ptr + row * logits_row_stride + cols, mask=mask, other=0.0)
    # lse = hi + lo: z - hi is exact for logits near the max, so a large common offset
    # (1e4 + randn) costs the softmax no precision; float32 lse alone would cost ~1e-4.
    lse = tl.load(lse_ptr + row)
    lse_hi = lse.to(tl.float32)
    lse_lo = (lse - lse_hi.to(tl.float64)).to(tl.float32)
    p = tl.exp((z.to(tl.float32) - lse_hi) - lse_lo)
    if DENSE_TARGET:
        t = tl.load(target_ptr + row * target_row_stride + cols, mask=mask, other=0.0)
        p = p * tl.load(target_sum_ptr + row)
        t = t.to(tl.float32)
    else:
        # Both target-class terms in float32 before the one rounding of the store, so that
        # p - t does not cancel in bf16; the two where()s add up when y_a == y_b.
        lam = _lam(lam_ptr, lam_stride, lam_value, row)
        y_a = tl.load(y_a_ptr + row * y_a_stride)
        y_b = tl.load(y_b_ptr + row * y_b_stride)
        t = tl.where(cols == y_a, lam, 0.0) + tl.where(cols == y_b, 1.0 - lam, 0.0)
        t = (1.0 - smoothing) * t + smoothing / n_cols
    grad = (p - t) * g
    tl.store(grad_ptr + row * logits_row_stride + cols, grad, mask=mask)


@functools.cache
def _launch_shape(n_cols: int, max_block: int) -> tuple[int, int, int]:
    """(block, warps, column blocks) for rows of n_cols; cached, and plain integer arithmetic
    rather than triton.next_power_of_2 / cdiv, whose constexpr wrappers cost µs per call."""
    block = max(MIN_BLOCK, min(1 << (n_cols - 1).bit_length(), max_block))
    warps = 4 if block < 2048 else (8 if block < 8192 else 16)
    return block, warps, -(-n_cols // block)


def _device_guard(t: torch.Tensor):
    # Without it Triton launches on the current CUDA device, not the tensor's.
    return torch.cuda.device(t.device) if t.is_cuda else _NO_GUARD


_NO_GUARD = contextlib.nullcontext()  # reusable: it holds no state
_NAN = float("nan")


def _target_args(logits, dummy, target, y_a, y_b, lam, smoothing):
    """The arguments both kernels take, from target_ptr to target_row_stride, in order.

    Only one target form is live (DENSE_TARGET); `dummy`, any float32 tensor of the
    launch, stands in for the pointers of the other, and for lam's where lam is a float.
    """
    dense = target is not None
    rows = isinstance(lam, torch.Tensor)
    return (
        target if dense else logits,
        y_a if not dense else dummy,
        y_b if not dense else dummy,
        y_a.stride(0) if not dense else 0,
        y_b.stride(0) if not dense else 0,
        lam if rows else dummy,
        lam.stride(0) if rows else 0,
        _NAN if rows or dense else lam,
        smoothing,
        logits.shape[1],
        logits.stride(0),
        target.stride(0) if dense else 0,
    )


def _forward(logits, *, target=None, y_a=None, y_b=None, lam=None, smoothing=0.0, valid=None):
    n_rows, n_cols = logits.shape
    dense = target is not None
    loss = torch.empty(n_rows, dtype=torch.float32, device=logits.device)
    lse = torch.empty_like(loss, dtype=torch.float64)
    # `loss` as an unused dummy pointer for what the target form does not have
    target_sum = torch.empty_like(loss) if dense else loss
    if valid is None:
        valid = loss if dense else torch.ones(3, dtype=torch.int32, device=logits.device)
    block, warps, _ = _launch_shape(n_cols, MAX_BLOCK_FWD)
    with _device_guard(logits):
        _ce_fwd_kernel[(n_rows,)](
            loss,
            lse,
            target_sum,
            valid,
            logits,
            *_target_args(logits, loss, target, y_a, y_b, lam, smoothing),
            DENSE_TARGET=dense,
            HAS_SMOOTHING=smoothing > 0.0,
            BLOCK_C=block,
            num_warps=warps,
        )
    return loss, lse, target_sum


def _backward(
    grad_loss,
    logits,
    lse,
    out,
    *,
    target=None,
    target_sum=None,
    y_a=None,
    y_b=None,
    lam=None,
    smoothing=0.0,
):
    n_rows, n_cols = logits.shape
    dense = target is not None
    block, warps, col_blocks = _launch_shape(n_cols, MAX_BLOCK_BWD)
    with _device_guard(logits):
        _ce_bwd_kernel[(n_rows, col_blocks)](
            out,
            grad_loss,
            grad_loss.stride(0),
            logits,
            lse,
            target_sum if dense else grad_loss,
            *_target_args(logits, grad_loss, target, y_a, y_b, lam, smoothing),
            DENSE_TARGET=dense,
            BLOCK_C=block,
            num_warps=warps,
        )
    return out


def mixup_ce_forward(logits, y_a, y_b, lam, smoothing, valid=None):
    """Per-row mixup cross-entropy (float32) and log-sum-exp (float64), of shape (B,).

    logits: (B, C) contiguous; y_a, y_b: (B,) int labels (any stride); lam: a float in
    [0, 1], or (B,) float32 (any stride, 0 to broadcast one value); smoothing: eps in
    [0, 1]. valid: int32 (3,) ones, or None; the kernel sets valid[0] to 0 if a label of
    y_a lies outside [0, C), valid[1] for y_b, valid[2] for a lam outside [0, 1] (such
    rows' losses are garbage)."""
    kw = dict(y_a=y_a, y_b=y_b, lam=lam, smoothing=smoothing, valid=valid)
    loss, lse, _ = _forward(logits, **kw)
    return loss, lse


def mixup_ce_backward(grad_loss, logits, y_a, y_b, lam, smoothing, lse, out):
    """out <- (softmax(logits) - t) * grad_loss[:, None] in out's dtype; out may be logits."""
    return _backward(grad_loss, logits, lse, out, y_a=y_a, y_b=y_b, lam=lam, smoothing=smoothing)


def soft_ce_forward(logits, target):
    """Per-row cross-entropy against dense targets (B, C): (loss, lse, target_sum), float32
    but lse float64."""
    return _forward(logits, target=target)


def soft_ce_backward(grad_loss, logits, target, lse, target_sum, out):
    """out <- (softmax(logits) * sum(t) - t) * grad_loss[:, None]; out may be logits."""
    return _backward(grad_loss, logits, lse, out, target=target, target_sum=target_sum)
