"""In-place mixup and CutMix over a batch: Triton kernels and their launch wrappers.

x[i] <- lam_i * x[i] + (1 - lam_i) * x[perm[i]] must read x[perm[i]] as it was before
the call, while rows are being overwritten. Along a cycle c0 -> c1 -> ... -> c_{L-1} -> c0
of the permutation (c_{k+1} = perm[c_k]) row c_k needs c_{k+1}, which is not yet written
when the rows are visited in cycle order; only the last row needs c0, whose block was
loaded first and kept (docs/design.md §3). Every element is read once and written once,
the traffic of a copy.

The walk follows a device-side cycle plan (mixlab.device_plans.DevicePlan): the rows
cycle after cycle, and each position's cycle bounds. It is cut into chunks of S
consecutive positions, whatever the cycles, so the launch needs no host value but B:
ceil(B / S) chunks x column blocks programs. A chunk's program walks its positions,
crossing cycle boundaries on the way; two rows it needs belong to other programs, so
`_copy_heads_kernel` copies them into `heads` first, per chunk g:
- slot g: the chunk's first row (the partner of chunk g - 1's last row, when a cycle
  runs across the boundary);
- slot n_chunks + g: the first row of the cycle that runs out of chunk g's end (the
  partner of that cycle's last row, in a later chunk).
Race-free by construction: the copies end before the walk starts (same stream); in the
walk each row is written by the one program owning its position, a program reads x only
at rows of its own chunk, each before it writes that row, and `heads` is only read. So
the result cannot depend on the order or overlap of programs. The extra traffic is at
most two rows per chunk, 2 / S of x's; mixlab.kernels.chunks picks S for the device
(the whole batch, one chunk, on the CPU, where the interpreter runs one program at a time).

CutMix is the same walk restricted to a box over the last two dims, and pastes instead of
mixing. Arithmetic is float32, stored in x's dtype; element offsets are int64 (B * D may
pass 2**31). Row indices read from the plan are clamped into [0, B): a plan of an invalid
perm (reported by a device-side check, mixlab.device_checks) cannot reach outside x.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from mixlab.kernels.chunks import default_segment_rows  # a module global: verify patches it

from mixlab.device_plans import DevicePlan
from mixlab.permutations import CyclePlan

BLOCK_SIZE = 1024  # elements of a row (or of a box) per program
NUM_WARPS = 4


@triton.jit
def _element_offsets(e, plane_len, width, box_y0, box_x0, box_h, box_w, PASTE_BOX: tl.constexpr):
    """Offset inside a sample of the e-th element moved: the row itself, or its box."""
    offs = e
    if PASTE_BOX:
        # Box element e -> (channel, box row, box column).
        box_area = box_h * box_w
        in_plane = e % box_area
        offs = (
            (e // box_area) * plane_len
            + (box_y0 + in_plane // box_w) * width
            + box_x0
            + in_plane % box_w
        )
    return offs


@triton.jit
def _combined(cur, nxt, row, lam_ptr, lam, PER_SAMPLE_LAM: tl.constexpr, PASTE_BOX: tl.constexpr):
    """The new value of `row` from its own (cur) and its partner's (nxt) old values:
    the partner's for a paste, else lam_row * cur + (1 - lam_row) * nxt as the reference
    writes it, in float32. Values travel in x's dtype (fewer registers in the loop)."""
    out = nxt
    if not PASTE_BOX:
        if PER_SAMPLE_LAM:
            lam = tl.load(lam_ptr + row)
        out = lam * cur.to(tl.float32) + (1.0 - lam) * nxt.to(tl.float32)
    return out


@triton.jit
def _row(order_ptr, position, last_row):
    """The row at a walk position, clamped into the batch."""
    return tl.minimum(tl.maximum(tl.load(order_ptr + position), 0), last_row)


@triton.jit
def _copy_heads_kernel(
    x_ptr,
    order_ptr,  # (B,) the plan: rows in walk order
    begin_ptr,  # (B,) first position of each position's cycle
    end_ptr,  # (B,) one past its last position
    heads_ptr,  # (2 * n_chunks, n_elems): the copies, in x's dtype
    n_rows,
    chunk_rows,  # S: walk positions per chunk
    n_chunks,
    row_len,  # elements per sample
    n_elems,  # elements moved per sample: row_len, or the box's
    n_blocks,
    plane_len,  # PASTE_BOX only: height * width, width, and the box
    width,
    box_y0,
    box_x0,
    box_h,
    box_w,
    PASTE_BOX: tl.constexpr,
    BLOCK_SIZE: tl.constexpr,
):
    pid = tl.program_id(0).to(tl.int64)
    chunk = pid // n_blocks
    e = (pid % n_blocks) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = e < n_elems
    offs = _element_offsets(e, plane_len, width, box_y0, box_x0, box_h, box_w, PASTE_BOX)
    start = chunk * chunk_rows
    stop = tl.minimum(start + chunk_rows, n_rows)
    head = _row(order_ptr, start, n_rows - 1)
    value = tl.load(x_ptr + head * row_len + offs, mask=mask)
    tl.store(heads_ptr + chunk * n_elems + e, value, mask=mask)
    # The cycle running out of this chunk's end: its first row, for its last row's program.
    crosses = tl.load(end_ptr + stop - 1) > stop
    first_pos = tl.minimum(tl.maximum(tl.load(begin_ptr + stop - 1), 0), n_rows - 1)
    first = _row(order_ptr, first_pos, n_rows - 1)
    value = tl.load(x_ptr + first * row_len + offs, mask=mask & crosses)
    tl.store(heads_ptr + (n_chunks + chunk) * n_elems + e, value, mask=mask & crosses)


@triton.jit
def _walk_kernel(
    x_ptr,
    order_ptr,
    begin_ptr,
    end_ptr,
    heads_ptr,  # _copy_heads_kernel's copies
    lam_ptr,  # (B,) float32 when PER_SAMPLE_LAM, else unused
    lam,  # the scalar lam when neither PER_SAMPLE_LAM nor PASTE_BOX
    n_rows,
    chunk_rows,
    n_chunks,
    rotation,  # program p walks chunk (p + rotation) mod n_chunks: tests vary the order
    row_len,
    n_elems,
    n_blocks,
    plane_len,
    width,
    box_y0,
    box_x0,
    box_h,
    box_w,
    PER_SAMPLE_LAM: tl.constexpr,
    PASTE_BOX: tl.constexpr,  # CutMix: paste the partner's box, leave the rest
    BLOCK_SIZE: tl.constexpr,
):
    # One flat grid axis (up to 2**31 - 1 programs, where CUDA's second axis stops at 65535).
    pid = tl.program_id(0).to(tl.int64)
    chunk = (pid // n_blocks + rotation) % n_chunks
    e = (pid % n_blocks) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = e < n_elems
    offs = _element_offsets(e, plane_len, width, box_y0, box_x0, box_h, box_w, PASTE_BOX)
    last_row = n_rows - 1
    start = chunk * chunk_rows
    stop = tl.minimum(start + chunk_rows, n_rows)
    dtype = x_ptr.dtype.element_ty
    row = _row(order_ptr, start, last_row)
    cur = tl.load(x_ptr + row * row_len + offs, mask=mask)
    # The first row of the cycle in progress: this one, or a copy when it began earlier.
    cycle_start = tl.minimum(tl.maximum(tl.load(begin_ptr + start), 0), start)
    began_earlier = cycle_start < start
    slot = n_chunks + cycle_start // chunk_rows
    copied = tl.load(heads_ptr + slot * n_elems + e, mask=mask & began_earlier)
    cycle_first = tl.where(began_earlier, copied, cur)
    for k in range(start, stop):
        end = tl.load(end_ptr + k)
        closes = end <= k + 1  # k is its cycle's last position
        goes_on = end > k + 1
        inside = k + 1 < stop
        at_stop = k + 1 >= stop
        nxt_row = _row(order_ptr, tl.minimum(k + 1, last_row), last_row)
        # The next row: the partner within the cycle, or the first row of the next cycle.
        nxt = tl.load(x_ptr + nxt_row * row_len + offs, mask=mask & inside)
        head = tl.load(heads_ptr + (chunk + 1) * n_elems + e, mask=mask & at_stop & goes_on)
        partner = tl.where(closes, cycle_first, tl.where(inside, nxt, head))
        out = _combined(cur, partner, row, lam_ptr, lam, PER_SAMPLE_LAM, PASTE_BOX)
        write = mask
        if PASTE_BOX:
            # A fixed point pastes its own box: nothing to write. Mixing writes it (rounding).
            write = mask & ((tl.load(begin_ptr + k) < k) | goes_on)
        tl.store(x_ptr + row * row_len + offs, out.to(dtype), mask=write)
        cycle_first = tl.where(closes, nxt, cycle_first)
        cur = nxt
        row = nxt_row


def mix_(
    x: torch.Tensor,
    plan: DevicePlan | CyclePlan,
    lam: float | torch.Tensor,
    *,
    segment_rows: int | None = None,
    rotation: int = 0,
) -> None:
    """In place: x[i] <- lam_i x[i] + (1 - lam_i) x[perm[i]], with x's values before the call.

    x: contiguous (B, ...) float32/float16/bfloat16; plan: the permutation's cycle plan
    (a host CyclePlan is moved over: the tests' reference); lam: a float, or a contiguous
    (B,) float32 tensor on x's device; segment_rows: walk positions per program (default:
    default_segment_rows); rotation: which chunk the first program takes (any gives the
    same result; the tests vary it).
    """
    row_len = x.numel() // x.shape[0]
    if row_len == 0:
        return
    per_sample = isinstance(lam, torch.Tensor)
    _walk(
        x,
        plan,
        segment_rows,
        rotation,
        n_elems=row_len,
        region=(0, 0, 0, 0, 0, 0),
        lam_args=(lam, 0.0) if per_sample else (x, lam),
        PER_SAMPLE_LAM=per_sample,
        PASTE_BOX=False,
    )


def cutmix_(
    x: torch.Tensor,
    plan: DevicePlan | CyclePlan,
    box: tuple[int, int, int, int],
    *,
    segment_rows: int | None = None,
    rotation: int = 0,
) -> None:
    """In place: x[i][..., y0:y1, x0:x1] <- x[perm[i]][..., y0:y1, x0:x1] (pre-call values).

    x: contiguous (B, ..., H, W); box = (y0, y1, x0, x1) inside (H, W); plan,
    segment_rows and rotation as for mix_.
    """
    y0, y1, x0, x1 = box
    height, width = x.shape[-2], x.shape[-1]
    row_len = x.numel() // x.shape[0]
    box_len = (row_len // (height * width)) * (y1 - y0) * (x1 - x0)
    if box_len == 0:
        return
    _walk(
        x,
        plan,
        segment_rows,
        rotation,
        n_elems=box_len,
        region=(height * width, width, y0, x0, y1 - y0, x1 - x0),
        lam_args=(x, 0.0),
        PER_SAMPLE_LAM=False,
        PASTE_BOX=True,
    )


def _walk(x, plan, segment_rows, rotation, *, n_elems, region, lam_args, **flags) -> None:
    """Copy the chunks' heads, then walk the chunks: a grid from B and x's shape alone."""
    if isinstance(plan, CyclePlan):
        plan = DevicePlan.from_cycle_plan(plan).to(x.device)
    batch, row_len = x.shape[0], x.numel() // x.shape[0]
    n_blocks = -(-n_elems // BLOCK_SIZE)  # triton.cdiv, a constexpr function, costs µs
    if segment_rows is None:
        segment_rows = default_segment_rows(batch, n_blocks, x.device)
    n_chunks = -(-batch // segment_rows)
    heads = x.new_empty((2 * n_chunks, n_elems))
    grid = (n_chunks * n_blocks,)
    rows = (plan.order, plan.begin, plan.end)
    launch = {"PASTE_BOX": flags["PASTE_BOX"], "BLOCK_SIZE": BLOCK_SIZE, "num_warps": NUM_WARPS}
    sizes = (batch, segment_rows, n_chunks)
    _copy_heads_kernel[grid](x, *rows, heads, *sizes, row_len, n_elems, n_blocks, *region, **launch)
    _walk_kernel[grid](
        x,
        *rows,
        heads,
        *lam_args,
        *sizes,
        rotation % n_chunks,
        row_len,
        n_elems,
        n_blocks,
        *region,
        PER_SAMPLE_LAM=flags["PER_SAMPLE_LAM"],
        **launch,
    )
