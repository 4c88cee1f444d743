"""The library peers of the mixing benchmark: timm's Mixup and torchvision's v2 MixUp/CutMix,
each built as its users call it (mixlab.benchmarks.peers registers them)."""

from __future__ import annotations

import numpy as np
import torch

from mixlab.benchmarks.cases import PEER_SEED, Case, Prepared
from mixlab.permutations import make_permutation


def _lam_from_target(
    target: torch.Tensor, labels: torch.Tensor, perm: torch.Tensor, per_sample: bool
) -> float | torch.Tensor:
    """Read lambda back from a soft target lam*onehot(y) + (1-lam)*onehot(y[perm])
    (no label smoothing): it is the weight on a row's own label, wherever the row's
    partner has another label."""
    distinct = labels != labels[perm]
    own = target[torch.arange(labels.numel(), device=labels.device), labels].float()
    if per_sample:
        if not bool(distinct.all()):
            raise ValueError("labels: per-sample lambda needs every row's partner label to differ")
        return own
    if not bool(distinct.any()):
        raise ValueError("labels: every row has its partner's label; lambda is not readable")
    return float(own[distinct][0])


def _build_library(op: str, case: Case, mixer, pairing: str, reseed, in_place: bool) -> Prepared:
    perm = make_permutation(pairing, case.batch).to(case.x.device)
    last: dict[str, torch.Tensor] = {}

    def call():
        last["x"], last["target"] = mixer(case.x, case.labels)

    return Prepared(
        call=call,
        result=lambda: last["x"],
        applied=lambda: (
            perm,
            _lam_from_target(last["target"], case.labels, perm, per_sample=op == "mix_elem"),
        ),
        setup=reseed,
        in_place=in_place,
    )


def build_timm(op: str, case: Case) -> Prepared:
    from timm.data import Mixup

    common = dict(label_smoothing=0.0, num_classes=case.num_classes, prob=1.0)
    if op == "cutmix":
        mixer = Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, correct_lam=True, **common)
    else:
        mode = "elem" if op == "mix_elem" else "batch"
        mixer = Mixup(mixup_alpha=1.0, cutmix_alpha=0.0, mode=mode, **common)

    def reseed() -> None:  # timm draws lambda and box from numpy's global RNG
        np.random.seed(PEER_SEED)

    return _build_library(op, case, mixer, "flip", reseed, in_place=True)


def build_torchvision(op: str, case: Case) -> Prepared:
    from torchvision.transforms import v2

    kind = v2.CutMix if op == "cutmix" else v2.MixUp
    mixer = kind(alpha=1.0, num_classes=case.num_classes)

    def reseed() -> None:  # torchvision draws lambda and box from torch's global RNG
        torch.manual_seed(PEER_SEED)

    return _build_library(op, case, mixer, "roll", reseed, in_place=False)
