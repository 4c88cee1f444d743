"""Every kernel specialisation the wrappers launch, compiled for real GPUs without one.

`launch_specs()` runs the launch wrappers (mixing, the device plan, cross-entropy) on CPU
tensors with every Triton launch recorded instead of run, so the specialisations are the
wrappers' own (dtypes, constexpr flags, block sizes, warps, and the 16-divisibility the
JIT assumes for aligned pointers and sizes), found by Triton's own binder, not a copy of
the argument lists. `compile_row()` compiles one for one arch with triton.compile and
reads the result: registers and spills from the bundled ptxas (-v), shared memory from the
metadata, the widest global load and store in the PTX, scalar (non-vector) data accesses
inside loops, and the occupancy that the registers, warps and shared memory allow.

It needs kernels compiled rather than interpreted, so `readiness()` runs it in a child
process with TRITON_INTERPRET=0. `python -m mixlab.gpu_readiness [--full] --out FILE`
writes the table as JSON; `make test` compiles the representative set (every mixing and
plan specialisation, the cross-entropy kernels at their smallest and largest blocks in
bf16), --full every dtype and block size.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from tqdm import tqdm

ARCHS = (80, 90, 100)
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# Per-SM limits of sm_80 / sm_90 / sm_100: registers, warps, blocks, shared memory (bytes).
SM_LIMITS = {
    80: (65536, 64, 32, 167936),
    90: (65536, 64, 32, 233472),
    100: (65536, 64, 32, 233472),
}
VECTOR_BITS = 128


def launch_specs(full: bool = False) -> list[tuple]:
    """(kernel, args, kwargs, description) of every launch the wrappers make over a
    sweep of inputs: aligned (sizes multiples of 16) unless said otherwise."""
    from triton.runtime.jit import JITFunction

    from mixlab.device_plans import DevicePlan
    from mixlab.kernels import cross_entropy, mixing, plans
    from mixlab.permutations import cycle_plan

    calls: list[tuple] = []
    what = {"case": ""}

    def record(self, *args, grid, warmup, **kwargs):
        calls.append((self, args, kwargs, what["case"]))

    saved, JITFunction.run = JITFunction.run, record
    try:
        perm = torch.randperm(128)
        what["case"] = "plan"
        plans.decompose(perm)  # recorded, not run: the walk takes the host plan's copy
        what["case"] = "plan with lam"
        plans.decompose(perm, torch.rand(128))
        device_plan = DevicePlan.from_cycle_plan(cycle_plan(perm))
        for dtype in DTYPES:
            x = torch.zeros(128, 3, 32, 32, dtype=dtype)
            what["case"] = f"mix {dtype}"
            mixing.mix_(x, device_plan, 0.3, segment_rows=4)
            what["case"] = f"mix per-sample lam {dtype}"
            mixing.mix_(x, device_plan, torch.rand(128), segment_rows=4)
            what["case"] = f"cutmix {dtype}"
            mixing.cutmix_(x, device_plan, (0, 16, 0, 16), segment_rows=4)
        for dtype in DTYPES if full else (torch.bfloat16,):
            for n_cols in (16, 256, 1024, 4096, 16384, 32768) if full else (16, 32768):
                _record_cross_entropy(cross_entropy, dtype, n_cols, what)
    finally:
        JITFunction.run = saved
    unique = {}
    for fn, args, kwargs, case in calls:
        unique.setdefault(_key(fn, args, kwargs), (fn, args, kwargs, case))
    return list(unique.values())


def _record_cross_entropy(cross_entropy, dtype, n_cols, what) -> None:
    logits = torch.zeros(64, n_cols, dtype=dtype)
    y = torch.zeros(64, dtype=torch.int64)
    lam = torch.full((64,), 0.5)
    rows = torch.zeros(64)
    for smoothing in (0.0, 0.1):
        what["case"] = f"mixup ce C={n_cols} eps={smoothing} {dtype}"
        cross_entropy.mixup_ce_forward(logits, y, y, lam, smoothing)
        cross_entropy.mixup_ce_backward(rows, logits, y, y, lam, smoothing, rows, logits)
    what["case"] = f"mixup ce C={n_cols} float lam {dtype}"  # lam's stride 0, a float
    cross_entropy.mixup_ce_forward(logits, y, y, 0.5, 0.0)
    cross_entropy.mixup_ce_backward(rows, logits, y, y, 0.5, 0.0, rows, logits)
    what["case"] = f"soft ce C={n_cols} {dtype}"
    cross_entropy.soft_ce_forward(logits, logits)
    cross_entropy.soft_ce_backward(rows, logits, logits, rows, rows, logits)


def _key(fn, args, kwargs) -> str:
    described = [
        str(a.dtype)
        if isinstance(a, torch.Tensor)
        else (a % 16 == 0, a == 1)
        if isinstance(a, int) and not isinstance(a, bool)
        else type(a).__name__
        for a in args
    ]
    return f"{fn.__name__}{described}{sorted(kwargs.items())}"


def compile_row(spec: tuple, arch: int) -> dict:
    """Compile one launch for sm_<arch> and describe the result."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler.compiler import ASTSource, make_backend
    from triton.runtime.jit import create_function_from_signature

    fn, args, kwargs, case = spec
    target = GPUTarget("cuda", arch, 32)
    backend = make_backend(target)
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    bound, specialization, options = binder(*args, **kwargs)
    options, signature, constexprs, attrs = fn._pack_args(
        backend, kwargs, bound, specialization, options
    )
    compiled = triton.compile(
        ASTSource(fn, signature, constexprs, attrs), target=target, options=options.__dict__
    )
    ptx = compiled.asm["ptx"]
    usage = ptxas_usage(ptx, arch)
    num_warps = compiled.metadata.num_warps
    shared = compiled.metadata.shared
    widths = access_widths(ptx)
    return {
        "kernel": fn.__name__,
        "case": case,
        "arch": f"sm_{arch}",
        "num_warps": num_warps,
        "registers": usage["registers"],
        "spill_bytes": usage["spill_stores"] + usage["spill_loads"],
        "shared_bytes": shared,
        "load_bits": widths["load_bits"],
        "store_bits": widths["store_bits"],
        "scalar_loop_accesses": widths["scalar_loop_accesses"],
        "occupancy": occupancy(usage["registers"], num_warps, shared, arch),
        "flags": {k: v for k, v in kwargs.items() if k.isupper()},
    }


def ptxas_usage(ptx: str, arch: int) -> dict:
    """Registers and spill bytes from `ptxas -v` (the ptxas that ships with Triton)."""
    from triton.backends.nvidia.compiler import get_ptxas, sm_arch_from_capability

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "k.ptx")
        src.write_text(ptx)
        result = subprocess.run(
            [get_ptxas(arch).path, "-v", f"--gpu-name={sm_arch_from_capability(arch)}", str(src)]
            + ["-o", str(Path(tmp, "k.cubin"))],
            capture_output=True,
            text=True,
            check=True,
        )
    log = result.stdout + result.stderr

    def number(pattern: str) -> int:
        found = re.search(pattern, log)
        return int(found.group(1)) if found else 0

    return {
        "registers": number(r"Used (\d+) registers"),
        "spill_stores": number(r"(\d+) bytes spill stores"),
        "spill_loads": number(r"(\d+) bytes spill loads"),
    }


_ACCESS = re.compile(r"\b(ld|st)\.global(?:\.[a-z]+)*?(?:\.v(\d))?\.[bfsu](\d+)\b")


def access_widths(ptx: str) -> dict:
    """Widest global load and store (bits per thread and instruction), and the scalar
    16/32-bit global accesses inside loop bodies (between a label and a branch back)."""
    lines = ptx.splitlines()
    labels = {}
    for i, line in enumerate(lines):
        label = re.match(r"\s*(\$?[\w.]+):", line)
        if label:
            labels[label.group(1)] = i
    in_loop = [False] * len(lines)
    for i, line in enumerate(lines):
        branch = re.search(r"\bbra(?:\.uni)?\s+(\$?\w+);", line)
        if branch and branch.group(1) in labels and labels[branch.group(1)] < i:
            for j in range(labels[branch.group(1)], i):
                in_loop[j] = True
    widest = {"ld": 0, "st": 0}
    scalar_in_loops = 0
    for i, line in enumerate(lines):
        for op, vec, bits in _ACCESS.findall(line):
            width = int(bits) * int(vec or 1)
            widest[op] = max(widest[op], width)
            if in_loop[i] and not vec and int(bits) <= 32:
                scalar_in_loops += 1
    return {
        "load_bits": widest["ld"],
        "store_bits": widest["st"],
        "scalar_loop_accesses": scalar_in_loops,
    }


def occupancy(registers: int, num_warps: int, shared: int, arch: int) -> float:
    """Resident warps per SM over the most an SM holds, as registers (allocated per warp
    in units of 256), warps, blocks and shared memory allow."""
    max_regs, max_warps, max_blocks, max_shared = SM_LIMITS[arch]
    regs_per_warp = -(-max(registers, 1) * 32 // 256) * 256
    blocks = min(max_blocks, max_warps // num_warps, max_regs // (regs_per_warp * num_warps))
    if shared:
        blocks = min(blocks, max_shared // shared)
    return blocks * num_warps / max_warps


def readiness(full: bool = False, archs=ARCHS) -> list[dict]:
    """The table, compiled in a child process (kernels must be compiled, not interpreted)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "rows.json")
        cmd = [sys.executable, "-m", "mixlab.gpu_readiness", "--out", str(out)]
        cmd += ["--archs", *map(str, archs)] + (["--full"] if full else [])
        subprocess.run(cmd, check=True, env={**os.environ, "TRITON_INTERPRET": "0"})
        return json.loads(out.read_text())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--full", action="store_true", help="every dtype and block size")
    parser.add_argument("--archs", type=int, nargs="+", default=list(ARCHS))
    args = parser.parse_args(argv)
    specs = launch_specs(args.full)
    jobs = [(spec, arch) for spec in specs for arch in args.archs]
    rows = [compile_row(spec, arch) for spec, arch in tqdm(jobs, desc="compile", unit="kernel")]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
