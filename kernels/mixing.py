"""In-place mixup and CutMix over a batch: Triton kernels and their launch wrappers.

x[i] <- lam_i * x[i] + (1 - lam_i) * x[perm[i]] must read x[perm[i]] as it was before
the call, while rows are being overwritten. Along a cycle c0 -> c1 -> ... -> c_{L-1} -> c0
of the permutation (c_{k+1} = perm[c_k]) row c_k needs c_{k+1}, which is not yet written
when the rows are visited in cycle order; only the last row needs c0, whose block the
program loaded first and kept (docs/design.md §3). Each program owns one cycle and one
block of columns, so no two programs touch the same element: race-free by construction,
whatever order the programs run in. Every element is read once and written once, the
traffic of a copy.

A random permutation has about ln B cycles: too few programs to fill a GPU, each walking
most of the batch. So long cycles are cut into segments (mixlab.permutations.SegmentPlan)
and the work takes two launches:
1. `_copy_heads_kernel` copies the first row (block) of every segment into `heads`;
2. `_walk_kernel` gives each program one segment and one block of columns: it takes its
   first row from `heads`, walks its rows like a whole cycle, and mixes its last row
   with the copy of the successor segment's first row.
Race-free by construction: launch 1 only reads x, and ends before launch 2 starts (same
stream), so `heads` holds values from before the call. In launch 2 the segments
partition the rows, each row of x is written by the one program owning its segment, a
program reads x only at rows of its own segment other than the first, each before it
writes that row, and `heads` is only read. So the result cannot depend on the order or
overlap of programs, and x is still read once and written once; the extra traffic is the
copied heads, about 1.5 / S of x's when segments hold S rows. `default_segment_rows`
picks S for the device.

Involutions (flip, random pairings: cycles of length <= 2) take a specialised path that
swaps and mixes the two rows without a loop. CutMix is the same walk restricted to a box
over the last two dims, and pastes instead of mixing.

The cycle plan (mixlab.permutations.cycle_plan) is computed once per permutation on the
host. Arithmetic is float32, stored in x's dtype; element offsets are int64 (B * D may
pass 2**31).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from mixlab.permutations import CyclePlan, SegmentPlan

BLOCK_SIZE = 1024  # elements of a row (or of a box) per program
NUM_WARPS = 4
# Programs per streaming multiprocessor that segmentation aims at. Little's law: an
# H100 needs ~3 MB in flight (3.35 TB/s x ~1 us), ~25 KiB per SM; 8 programs each moving
# a 4 KiB float32 block cover it. Not tuned on a GPU (none here).
PROGRAMS_PER_SM = 8


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
def _load(ptr, mask, PASTE_BOX: tl.constexpr):
    """A paste moves the values as they are; mixing computes in float32."""
    value = tl.load(ptr, mask=mask)
    if not PASTE_BOX:
        value = value.to(tl.float32)
    return value


@triton.jit
def _combined(cur, nxt, row, lam_ptr, lam, PER_SAMPLE_LAM: tl.constexpr, PASTE_BOX: tl.constexpr):
    """The new value of `row` from its own (cur) and its partner's (nxt) old values:
    the partner's for a paste, else lam_row * cur + (1 - lam_row) * nxt as the reference
    writes it."""
    out = nxt
    if not PASTE_BOX:
        if PER_SAMPLE_LAM:
            lam = tl.load(lam_ptr + row)
        out = lam * cur + (1.0 - lam) * nxt
    return out


@triton.jit
def _copy_heads_kernel(
    x_ptr,
    order_ptr,
    starts_ptr,  # segment g is order[starts[g]:starts[g + 1]]
    heads_ptr,  # (n_segments, n_elems): the copies, in x's dtype
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
    segment = pid // n_blocks
    e = (pid % n_blocks) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = e < n_elems
    offs = _element_offsets(e, plane_len, width, box_y0, box_x0, box_h, box_w, PASTE_BOX)
    head = tl.load(order_ptr + tl.load(starts_ptr + segment))
    value = tl.load(x_ptr + head * row_len + offs, mask=mask)
    tl.store(heads_ptr + segment * n_elems + e, value, mask=mask)


@triton.jit
def _walk_kernel(
    x_ptr,
    order_ptr,  # rows piece by piece (cycles, or segments), each in walk order
    starts_ptr,  # piece j is order[starts[j]:starts[j + 1]]
    successor_ptr,  # SEGMENTED only: the segment whose first row follows segment j's last
    heads_ptr,  # SEGMENTED only: _copy_heads_kernel's copies of the segments' first rows
    lam_ptr,  # (B,) float32 when PER_SAMPLE_LAM, else unused
    lam,  # the scalar lam when neither PER_SAMPLE_LAM nor PASTE_BOX
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
    INVOLUTION: tl.constexpr,
    SEGMENTED: tl.constexpr,
    BLOCK_SIZE: tl.constexpr,
):
    tl.static_assert(not (INVOLUTION and SEGMENTED), "involutions walk whole cycles")
    # One flat grid axis (up to 2**31 - 1 programs, where CUDA's second axis stops at 65535).
    pid = tl.program_id(0).to(tl.int64)
    piece = pid // n_blocks
    e = (pid % n_blocks) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = e < n_elems
    offs = _element_offsets(e, plane_len, width, box_y0, box_x0, box_h, box_w, PASTE_BOX)
    begin = tl.load(starts_ptr + piece)
    end = tl.load(starts_ptr + piece + 1)
    first = tl.load(order_ptr + begin)
    dtype = x_ptr.dtype.element_ty
    if SEGMENTED:
        # Both copies were taken before any row was written (the previous launch).
        kept = _load(heads_ptr + piece * n_elems + e, mask, PASTE_BOX)
        successor = tl.load(successor_ptr + piece)
        closing = _load(heads_ptr + successor * n_elems + e, mask, PASTE_BOX)
    else:
        kept = _load(x_ptr + first * row_len + offs, mask, PASTE_BOX)
        closing = kept  # a whole cycle closes on its own first row
    if INVOLUTION:
        # A fixed point (second == first) or a swap: load both rows, write both, no loop.
        is_pair = end - begin > 1
        second = tl.load(order_ptr + end - 1)
        other = _load(x_ptr + second * row_len + offs, mask, PASTE_BOX)
        out_first = _combined(kept, other, first, lam_ptr, lam, PER_SAMPLE_LAM, PASTE_BOX)
        out_second = _combined(other, kept, second, lam_ptr, lam, PER_SAMPLE_LAM, PASTE_BOX)
        # A fixed point pastes its own box: nothing to write. Mixing writes it (rounding).
        mask_first = mask
        if PASTE_BOX:
            mask_first = mask & is_pair
        tl.store(x_ptr + first * row_len + offs, out_first.to(dtype), mask=mask_first)
        tl.store(x_ptr + second * row_len + offs, out_second.to(dtype), mask=mask & is_pair)
    else:
        row = first
        cur = kept
        for k in range(begin + 1, end):
            nxt_row = tl.load(order_ptr + k)
            nxt = _load(x_ptr + nxt_row * row_len + offs, mask, PASTE_BOX)
            out = _combined(cur, nxt, row, lam_ptr, lam, PER_SAMPLE_LAM, PASTE_BOX)
            tl.store(x_ptr + row * row_len + offs, out.to(dtype), mask=mask)
            row = nxt_row
            cur = nxt
        out = _combined(cur, closing, row, lam_ptr, lam, PER_SAMPLE_LAM, PASTE_BOX)
        tl.store(x_ptr + row * row_len + offs, out.to(dtype), mask=mask)


def default_segment_rows(batch: int, n_blocks: int, device: torch.device) -> int:
    """The most rows one program walks: enough segments x column blocks for
    PROGRAMS_PER_SM programs on every SM (and the work split evenly among that many).

    On the CPU the interpreter runs one program at a time, so cycles stay whole (batch).
    Scratch stays bounded: fewer than 2 * PROGRAMS_PER_SM * SMs * BLOCK_SIZE elements for
    the segments plus one row per cycle, whatever the batch.
    """
    if device.type != "cuda":
        return batch
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    return max(1, batch * n_blocks // (PROGRAMS_PER_SM * sms))


def mix_(
    x: torch.Tensor,
    plan: CyclePlan | SegmentPlan,
    lam: float | torch.Tensor,
    *,
    segment_rows: int | None = None,
) -> None:
    """In place: x[i] <- lam_i x[i] + (1 - lam_i) x[perm[i]], with x's values before the call.

    x: contiguous (B, ...) float32/float16/bfloat16; plan: the permutation's cycle plan
    (on the CPU spares a device-to-host copy when it gets segmented), or a segment plan
    to run as given; lam: a float, or a contiguous (B,) float32 tensor on x's device;
    segment_rows: the longest walk of one program (default: default_segment_rows).
    """
    row_len = x.numel() // x.shape[0]
    if row_len == 0:
        return
    per_sample = isinstance(lam, torch.Tensor)
    _walk(
        x,
        plan,
        segment_rows,
        n_elems=row_len,
        region=(0, 0, 0, 0, 0, 0),
        lam_args=(lam, 0.0) if per_sample else (None, lam),
        PER_SAMPLE_LAM=per_sample,
        PASTE_BOX=False,
    )


def cutmix_(
    x: torch.Tensor,
    plan: CyclePlan | SegmentPlan,
    box: tuple[int, int, int, int],
    *,
    segment_rows: int | None = None,
) -> None:
    """In place: x[i][..., y0:y1, x0:x1] <- x[perm[i]][..., y0:y1, x0:x1] (pre-call values).

    x: contiguous (B, ..., H, W); box = (y0, y1, x0, x1) inside (H, W); plan and
    segment_rows as for mix_.
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
        n_elems=box_len,
        region=(height * width, width, y0, x0, y1 - y0, x1 - x0),
        lam_args=(None, 0.0),
        PER_SAMPLE_LAM=False,
        PASTE_BOX=True,
    )


def _walk(x, plan, segment_rows, *, n_elems, region, lam_args, **flags) -> None:
    """Launch the walk over whole cycles, or copy the segments' heads and walk segments."""
    row_len = x.numel() // x.shape[0]
    n_blocks = triton.cdiv(n_elems, BLOCK_SIZE)
    if isinstance(plan, CyclePlan):
        if segment_rows is None:
            segment_rows = default_segment_rows(x.shape[0], n_blocks, x.device)
        if not plan.is_involution and segment_rows < plan.max_cycle_len:
            plan = plan.segments(segment_rows)
    plan = plan.to(x.device)
    segmented = isinstance(plan, SegmentPlan)
    grid = ((plan.starts.numel() - 1) * n_blocks,)
    launch = {"PASTE_BOX": flags["PASTE_BOX"], "BLOCK_SIZE": BLOCK_SIZE, "num_warps": NUM_WARPS}
    successor, heads = None, None
    if segmented:
        successor = plan.successor
        heads = x.new_empty((plan.n_segments, n_elems))
        _copy_heads_kernel[grid](
            x, plan.order, plan.starts, heads, row_len, n_elems, n_blocks, *region, **launch
        )
    _walk_kernel[grid](
        x,
        plan.order,
        plan.starts,
        successor,
        heads,
        *lam_args,
        row_len,
        n_elems,
        n_blocks,
        *region,
        PER_SAMPLE_LAM=flags["PER_SAMPLE_LAM"],
        INVOLUTION=not segmented and plan.is_involution,
        SEGMENTED=segmented,
        **launch,
    )
