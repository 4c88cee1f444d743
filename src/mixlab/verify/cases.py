"""The cases every implementation is checked on, one list per op, built from a seed.

Mixing: B = 1, odd B, rows below / not a multiple of / far above a kernel block, every
permutation kind (random, flip, roll, pairs, the identity: all fixed points, one long
cycle, half fixed points), scalar and per-sample lam, CutMix boxes (inside, whole, empty).
Losses: C from 1 to 131072 (>= 128k), scalar and per-sample lam, label smoothing, every
reduction, in-place backward, a block of -inf logits longer than a kernel block, sparse
labels (mixup_cross_entropy) and dense targets (soft_cross_entropy); float64 cases for
torch.autograd.gradcheck.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mixlab.permutations import PERMUTATION_KINDS, make_permutation

OPS = ("mix_", "mix", "cutmix_", "mixup_cross_entropy", "soft_cross_entropy")
MIXING_OPS = ("mix_", "mix", "cutmix_")
PERM_KINDS = (*PERMUTATION_KINDS, "identity", "one-cycle", "fixed-points")
GRAD_OUTPUT = 1.7  # d(loss)/d(output) != 1, so a gradient that ignores it fails
MINUS_INF_COLUMNS = 16 * 1024 + 10  # longer than one forward block of the Triton kernel


@dataclass(frozen=True)
class Case:
    op: str
    name: str
    dtype: torch.dtype
    params: dict = field(compare=False, hash=False)
    seed: int = 0

    @property
    def id(self) -> str:
        return f"{self.op} {str(self.dtype).removeprefix('torch.')} {self.name}"


def permutation(kind: str, batch: int, g: torch.Generator) -> torch.Tensor:
    """make_permutation's kinds plus the identity, one cycle through all rows, and a random
    permutation of half the rows that leaves the rest fixed."""
    if kind in PERMUTATION_KINDS:
        return make_permutation(kind, batch, g)
    perm = torch.arange(batch)
    if kind == "one-cycle":
        order = torch.randperm(batch, generator=g)
        perm[order] = order.roll(-1)
    elif kind == "fixed-points":
        moved = torch.randperm(batch, generator=g)[: batch // 2]
        perm[moved] = moved[torch.randperm(len(moved), generator=g)]
    elif kind != "identity":
        raise ValueError(f"perm: unknown kind {kind!r}")
    return perm


def mixing_inputs(case: Case, device) -> dict:
    p = case.params
    g = torch.Generator().manual_seed(case.seed)
    x = torch.randn((p["batch"], *p["shape"]), generator=g).to(device=device, dtype=case.dtype)
    perm = permutation(p["perm"], p["batch"], g).to(device)
    inputs = {"x": x, "perm": perm}
    if case.op == "cutmix_":
        inputs["box"] = p["box"]
    elif p["lam"] == "per-sample":
        inputs["lam"] = torch.rand(p["batch"], generator=g).to(device)
    else:
        inputs["lam"] = p["lam"]
    return inputs


def loss_inputs(case: Case, device) -> dict:
    p = case.params
    batch, classes = p["batch"], p["classes"]
    g = torch.Generator().manual_seed(case.seed)
    logits = 3 * torch.randn(batch, classes, generator=g, dtype=torch.float64)
    low = MINUS_INF_COLUMNS if p.get("minus_inf") else 0
    if low:
        logits[:, :low] = -float("inf")
    inputs = {"logits": logits.to(device=device, dtype=case.dtype)}
    if case.op == "soft_cross_entropy":
        target = torch.softmax(torch.randn(batch, classes, generator=g), 1)
        target[:, :low] = 0.0  # no target mass where the logits are -inf
        inputs["target"] = (target / target.sum(1, keepdim=True)).to(device)
        return inputs
    y_a = torch.randint(low, classes, (batch,), generator=g)
    y_b = torch.randint(low, classes, (batch,), generator=g)
    y_b[0] = y_a[0]  # one row where both labels coincide
    lam = torch.rand(batch, generator=g).to(device) if p["lam"] == "per-sample" else 0.37
    inputs.update(y_a=y_a.to(device), y_b=y_b.to(device), lam=lam)
    return inputs


def _shape_name(batch: int, shape: tuple[int, ...]) -> str:
    return f"B={batch} shape={'x'.join(map(str, shape))}"


def _mixing_cases(op: str, dtype: torch.dtype, quick: bool) -> list[Case]:
    shapes = [(1, (5,)), (7, (3, 4, 25)), (8, (300,))]
    if not quick:
        shapes += [(5, (2, 3, 7)), (13, (1100,)), (64, (48,)), (3, (3, 224, 224))]
    kinds = PERM_KINDS if op == "mix_" else ("random", "roll", "pairs", "identity")
    cases = []
    for batch, shape in shapes:
        for kind in kinds if batch > 1 else ("identity",):
            base = {"batch": batch, "shape": shape, "perm": kind}
            name = f"{_shape_name(batch, shape)} perm={kind}"
            if op == "cutmix_":
                for box_name, box in _boxes(shape, quick):
                    params = {**base, "shape": (1, *shape) if len(shape) == 1 else shape}
                    params["box"] = box(params["shape"])
                    cases.append(Case(op, f"{name} box={box_name}", dtype, params))
                continue
            for lam in ("scalar", "per-sample") if op == "mix_" or not quick else ("scalar",):
                params = {**base, "lam": 0.3 if lam == "scalar" else lam}
                cases.append(Case(op, f"{name} lam={lam}", dtype, params))
    return cases


def _boxes(shape, quick):
    yield "inside", lambda s: (1, max(1, s[-2] - 1), 2, max(2, s[-1] - 3))
    if not quick:
        yield "whole", lambda s: (0, s[-2], 0, s[-1])
        yield "empty", lambda s: (1, 1, 0, s[-1])


# (lam, label smoothing, reduction, inplace_backward) per class count: every combination
# would be 24 cases per C; these cover each value, in pairs with the others.
_LOSS_MODES = [
    ("scalar", 0.0, "mean", False),
    ("per-sample", 0.1, "sum", False),
    ("per-sample", 0.1, "none", True),
    ("scalar", 0.1, "mean", True),
    ("per-sample", 0.0, "none", False),
]


def _loss_cases(op: str, dtype: torch.dtype, quick: bool) -> list[Case]:
    classes = [1, 10, 1000, 4099] if quick else [1, 3, 10, 1000, 4099, 32768, 131072]
    modes = _LOSS_MODES[:3] if quick else _LOSS_MODES
    cases = []
    for c in classes:
        batch = 5 if c <= 1000 else 3 if c < 32768 else 2
        for lam, eps, reduction, inplace in modes:
            params = {"batch": batch, "classes": c, "reduction": reduction, "inplace": inplace}
            name = f"B={batch} C={c} {reduction}" + (" inplace_backward" if inplace else "")
            if op == "mixup_cross_entropy":
                params.update(lam=lam, smoothing=eps)
                name = f"{name} lam={lam} eps={eps}"
            cases.append(Case(op, name, dtype, params))
    large = [(2, 131072)] if quick and dtype == torch.float32 else []
    for batch, c in large:
        params = {"batch": batch, "classes": c, "reduction": "mean", "inplace": False}
        name = f"B={batch} C={c} mean"
        if op == "mixup_cross_entropy":
            params.update(lam="per-sample", smoothing=0.1)
            name += " lam=per-sample eps=0.1"
        cases.append(Case(op, name, dtype, params))
    params = {"batch": 2, "classes": MINUS_INF_COLUMNS + 290, "reduction": "mean"}
    params.update(inplace=False, lam="scalar", smoothing=0.0, minus_inf=True)
    cases.append(Case(op, f"B=2 C={params['classes']} -inf block", dtype, params))
    return cases


def gradcheck_cases(op: str) -> list[Case]:
    """float64 cases for torch.autograd.gradcheck (backends that take float64 logits)."""
    cases = []
    for lam, eps, reduction in [("scalar", 0.1, "mean"), ("per-sample", 0.1, "none")]:
        params = {"batch": 4, "classes": 7, "reduction": reduction, "inplace": False}
        params.update(lam=lam, smoothing=eps)
        name = f"gradcheck B=4 C=7 {reduction}"
        if op == "mixup_cross_entropy":
            name += f" lam={lam} eps={eps}"
        cases.append(Case(op, name, torch.float64, params, seed=11))
    return cases


def equivalence_cases(op: str, dtypes=None, quick: bool = False) -> list[Case]:
    """Every case of `op` in `dtypes` (default float32, float16, bfloat16)."""
    if op not in OPS:
        raise ValueError(f"op: expected one of {OPS}, got {op!r}")
    dtypes = dtypes or (torch.float32, torch.float16, torch.bfloat16)
    build = _mixing_cases if op in MIXING_OPS else _loss_cases
    return [case for dtype in dtypes for case in build(op, dtype, quick)]
