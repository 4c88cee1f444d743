"""The cycle plan of a permutation, built on the device in one launch (no host in the loop).

For every row i it finds, by pointer jumping (ceil(log2 B) rounds, each composing the
permutation with itself):

1. the cycle's minimum row c(i): m <- min(m, m[p]); p <- p[p], from m = i, p = perm;
2. the number of steps d(i) from i forward to c(i): list ranking on the cycle cut at c(i)
   (c points to itself with weight 0): d <- d + d[q]; q <- q[q];
3. the cycle's length L = d(perm[c]) + 1, and the position of c's cycle in walk order: the
   lengths of the cycles with a smaller minimum, summed (an exclusive prefix sum over c);
4. i's position in walk order, start(c) + (L - d(i)) mod L, where it is scattered with
   its cycle's bounds.

Cycles come in order of their minimum and each is walked from its minimum, as the host
reference mixlab.permutations.cycle_plan lists them, so the two plans are equal.

One program does it all: the rounds need every row of the previous one, and a barrier
inside one program is the only grid-wide synchronisation a launch has. It also checks that
perm is a permutation (values in [0, B), and perm[inv[j]] == j for the scattered inverse)
and says whether any row fails; indices are clamped, so a bad perm cannot make it read or
write out of bounds. Given the walk's per-sample lam (CHECK_LAM), it checks that every
value lies in [0, 1] in the same pass over the rows: the check costs no launch of its own.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 1024  # rows per step of the program's loops
NUM_WARPS = 8
SCRATCH_ROWS = 7  # p, p', m, m', d, d', and the cycle starts / the inverse


@triton.jit
def _jump(ptr_rows, value_rows, n_rows, n_rounds, BLOCK: tl.constexpr, MIN: tl.constexpr):
    """n_rounds of pointer jumping: v <- min(v, v[p]) (MIN) or v + v[p]; p <- p[p]. Each
    of ptr_rows and value_rows is two rows of n_rows that the rounds alternate between;
    returns the row of value_rows holding the result."""
    for r in range(n_rounds):
        src, dst = (r % 2) * n_rows, ((r + 1) % 2) * n_rows
        tl.debug_barrier()
        for s in range(0, n_rows, BLOCK):
            i = s + tl.arange(0, BLOCK).to(tl.int64)
            mask = i < n_rows
            p = tl.load(ptr_rows + src + i, mask=mask, other=0)
            mine = tl.load(value_rows + src + i, mask=mask)
            theirs = tl.load(value_rows + src + p, mask=mask)
            value = tl.minimum(mine, theirs) if MIN else mine + theirs
            tl.store(value_rows + dst + i, value, mask=mask)
            tl.store(ptr_rows + dst + i, tl.load(ptr_rows + src + p, mask=mask), mask=mask)
    return value_rows + (n_rounds % 2) * n_rows


@triton.jit
def _decompose_kernel(
    perm_ptr,
    lam_ptr,  # (B,) float32 when CHECK_LAM, else unused
    scratch_ptr,  # (SCRATCH_ROWS, B) int64
    out_ptr,  # (3 * B + 2,) int64: order, cycle begin, cycle end per position; 1 if perm
    # is a permutation, 1 if every lam lies in [0, 1] (CHECK_LAM)
    n_rows,
    n_rounds,  # ceil(log2(B))
    CHECK_LAM: tl.constexpr,
    BLOCK: tl.constexpr,
):
    # p, m and d have two rows each, x and x + n_rows, that the rounds alternate between.
    p_a = scratch_ptr
    m_a = scratch_ptr + 2 * n_rows
    d_a = scratch_ptr + 4 * n_rows
    extra = scratch_ptr + 6 * n_rows  # the inverse, then the cycles' start positions
    last = n_rows - 1
    # Load perm clamped into range, count values outside it, scatter the inverse.
    bad = tl.zeros((), dtype=tl.int64)
    bad_lam = tl.zeros((), dtype=tl.int64)
    for s in range(0, n_rows, BLOCK):
        i = s + tl.arange(0, BLOCK).to(tl.int64)
        mask = i < n_rows
        p = tl.load(perm_ptr + i, mask=mask, other=0)
        bad += tl.sum(((p < 0) | (p > last)) & mask, 0).to(tl.int64)
        if CHECK_LAM:
            lam = tl.load(lam_ptr + i, mask=mask, other=0.0)
            outside = (lam != lam) | (lam < 0.0) | (lam > 1.0)  # NaN fails too
            bad_lam += tl.sum(outside & mask, 0).to(tl.int64)
        p = tl.minimum(tl.maximum(p, 0), last)
        tl.store(p_a + i, p, mask=mask)
        tl.store(m_a + i, i, mask=mask)
        tl.store(extra + p, i, mask=mask)
    tl.debug_barrier()
    for s in range(0, n_rows, BLOCK):
        j = s + tl.arange(0, BLOCK).to(tl.int64)
        mask = j < n_rows
        inv = tl.minimum(tl.maximum(tl.load(extra + j, mask=mask, other=0), 0), last)
        bad += tl.sum((tl.load(p_a + inv, mask=mask, other=0) != j) & mask, 0).to(tl.int64)
    # 1. Cycle minimum: m <- min(m, m[p]); p <- p[p].
    m_final = _jump(p_a, m_a, n_rows, n_rounds, BLOCK, True)
    tl.debug_barrier()
    # 2. Steps to the cycle minimum: the list i -> perm[i] cut at the minimum.
    for s in range(0, n_rows, BLOCK):
        i = s + tl.arange(0, BLOCK).to(tl.int64)
        mask = i < n_rows
        is_min = tl.load(m_final + i, mask=mask, other=0) == i
        p = tl.minimum(tl.maximum(tl.load(perm_ptr + i, mask=mask, other=0), 0), last)
        tl.store(p_a + i, tl.where(is_min, i, p), mask=mask)
        tl.store(d_a + i, tl.where(is_min, 0, 1).to(tl.int64), mask=mask)
    d_final = _jump(p_a, d_a, n_rows, n_rounds, BLOCK, False)
    tl.debug_barrier()
    # 3. Where each cycle starts in walk order: lengths of the cycles before it, summed.
    carry = tl.zeros((), dtype=tl.int64)
    for s in range(0, n_rows, BLOCK):
        c = s + tl.arange(0, BLOCK).to(tl.int64)
        mask = c < n_rows
        is_min = (tl.load(m_final + c, mask=mask, other=-1) == c) & mask
        p = tl.minimum(tl.maximum(tl.load(perm_ptr + c, mask=mask, other=0), 0), last)
        length = tl.where(is_min, tl.load(d_final + p, mask=mask, other=0) + 1, 0)
        inclusive = tl.cumsum(length, 0) + carry
        tl.store(extra + c, inclusive - length, mask=mask)
        carry += tl.sum(length, 0)
    tl.debug_barrier()
    # 4. Each row at its position, with its cycle's bounds.
    for s in range(0, n_rows, BLOCK):
        i = s + tl.arange(0, BLOCK).to(tl.int64)
        mask = i < n_rows
        c = tl.load(m_final + i, mask=mask, other=0)
        p = tl.minimum(tl.maximum(tl.load(perm_ptr + c, mask=mask, other=0), 0), last)
        length = tl.load(d_final + p, mask=mask, other=0) + 1
        begin = tl.load(extra + c, mask=mask, other=0)
        pos = begin + (length - tl.load(d_final + i, mask=mask, other=0)) % length
        ok = mask & (pos >= 0) & (pos < n_rows)
        tl.store(out_ptr + pos, i, mask=ok)
        tl.store(out_ptr + n_rows + pos, begin, mask=ok)
        tl.store(out_ptr + 2 * n_rows + pos, begin + length, mask=ok)
    tl.store(out_ptr + 3 * n_rows, (bad == 0).to(tl.int64))
    if CHECK_LAM:
        tl.store(out_ptr + 3 * n_rows + 1, (bad_lam == 0).to(tl.int64))


def decompose(perm: torch.Tensor, lam: torch.Tensor | None = None) -> torch.Tensor:
    """(3 * B + 2,) int64 on perm's device: the walk order, each position's cycle begin and
    end, 1 if perm is a permutation of range(B) (else 0), and given lam, a contiguous (B,)
    float32 tensor, 1 if every value lies in [0, 1] (else 0; unset without lam)."""
    n_rows = perm.shape[0]
    scratch = perm.new_empty((SCRATCH_ROWS, n_rows))
    out = perm.new_empty(3 * n_rows + 2)
    # Garbage in the outputs is harmless for a valid perm (every position is written) and
    # clamped by the walk for an invalid one, which the flags report.
    _decompose_kernel[(1,)](
        perm,
        perm if lam is None else lam,
        scratch,
        out,
        n_rows,
        (n_rows - 1).bit_length(),
        CHECK_LAM=lam is not None,
        BLOCK=BLOCK,
        num_warps=NUM_WARPS,
    )
    return out
